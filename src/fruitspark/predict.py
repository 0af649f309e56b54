"""What fruit is this? A few photos through the batch job's own decode → model → PCA → classifier.

No Spark: the photos go through :func:`fruitspark.featurize.describe_images` exactly as in the
batch job, and the PCA and the classifier are applied from the parameters the batch job exported
(``pca.npz``, ``classifier.npz``), so a cold start answers in about a second.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fruitspark.evaluate import softmax_top_k
from fruitspark.featurize import FeaturizeOptions, describe_images
from fruitspark.formats import IMAGE_EXTENSIONS
from fruitspark.layout import CLASSIFIER_NPZ, PCA_NPZ, SUMMARY
from fruitspark.model import ModelSpec, new_session, resolve_model
from fruitspark.output import OutputError
from fruitspark.reduce import project
from fruitspark.sources import ReadError, local_path_of, read_bytes, walk_images
from fruitspark.summary import load


@dataclass(frozen=True)
class Prediction:
    path: str
    labels: list[str]
    probabilities: list[float]
    error: str | None = None
    fruits: list[str] = field(default_factory=list)  # when evaluate was given a fruit level
    fruit_probabilities: list[float] = field(default_factory=list)


def _load(model_dir: str, name: str) -> bytes:
    try:
        return read_bytes(f"{model_dir.rstrip('/')}/{name}")
    except ReadError:
        hint = " (run `fruitspark evaluate` first)" if name == CLASSIFIER_NPZ else ""
        raise OutputError(f"{model_dir} has no {name}{hint}") from None


CHUNK = 64  # photos decoded and embedded together: memory stays flat for a folder of thousands


@dataclass(frozen=True)
class _Fitted:
    """What the batch job exported: the model and descriptor it used, its PCA and classifier."""

    spec: ModelSpec
    options: FeaturizeOptions
    pca: Any
    classifier: Any


def _fitted(model_dir: str) -> _Fitted:
    described = load(_load(model_dir, SUMMARY)).model
    spec = resolve_model(
        described.source or described.id,
        precision=described.precision,
        input_size=described.input_size,
        mean=tuple(described.mean),
        std=tuple(described.std),
        output_name=described.output,
    )
    if spec.sha256 != described.sha256:
        raise OutputError(f"the model file changed since {model_dir} was made (checksum differs)")
    options = FeaturizeOptions(
        descriptor=described.descriptor,
        colour_weight=described.colour_weight,
        logits=described.logits,
        views=described.views,
    )
    pca = np.load(io.BytesIO(_load(model_dir, PCA_NPZ)))
    return _Fitted(spec, options, pca, np.load(io.BytesIO(_load(model_dir, CLASSIFIER_NPZ))))


def image_paths(images: Sequence[str]) -> Iterator[tuple[str, str | None]]:
    """``(path, error)`` per image: files as given, local folders expanded to the images in them
    (sorted, every depth, the names ``run`` would list); a folder without any is an error."""
    for image in images:
        local = local_path_of(image)
        if local is None or not os.path.isdir(local):
            yield image, None
            continue
        found = sorted(path.removeprefix("file:") for path, _, _ in walk_images(local))
        if not found:
            yield image, f"no image files in this folder ({', '.join(IMAGE_EXTENSIONS)})"
        yield from ((path, None) for path in found)


def predict(model_dir: str, images: Sequence[str], *, top_k: int = 5) -> list[Prediction]:
    """Top-k labels and probabilities for each image (a folder: each image in it); a bad image
    gets an error, not a raise."""
    fitted = _fitted(model_dir)
    session = None
    if fitted.options.descriptor != "colour":
        session = new_session(Path(fitted.spec.path).read_bytes(), threads=1)
    listed = list(image_paths(images))
    predictions: list[Prediction] = []
    for start in range(0, len(listed), CHUNK):
        chunk = listed[start : start + CHUNK]
        contents: list[bytes | None] = []
        errors = [error for _, error in chunk]
        for index, (path, error) in enumerate(chunk):
            try:
                contents.append(None if error else read_bytes(path))
            except ReadError as read_error:
                contents.append(None)
                errors[index] = str(read_error)
        results = describe_images(contents, session, fitted.spec, fitted.options)
        for (path, _), error, result in zip(chunk, errors, results, strict=True):
            error = error or result.error
            if error is not None:
                predictions.append(Prediction(path, [], [], error))
            else:
                predictions.append(_classify(path, result.features, fitted, top_k))
    return predictions


def _classify(path: str, features: np.ndarray, fitted: _Fitted, top_k: int) -> Prediction:
    """The exported PCA and classifier applied to one image's descriptor, as the batch job did."""
    classifier = fitted.classifier
    vector = features
    reduced = project(vector, fitted.pca["mean"], fitted.pca["components"]).astype(np.float32)
    if str(classifier["features"]) == "pca":
        vector = reduced
    elif str(classifier["features"]) == "both":
        vector = np.concatenate([vector, reduced])
    order, probabilities = softmax_top_k(
        vector.astype(np.float64), classifier["coefficients"], classifier["intercepts"], None
    )
    fruits, fruit_probabilities = top_fruits(classifier, order[0], probabilities[0], top_k)
    return Prediction(
        path,
        [str(classifier["labels"][i]) for i in order[0][:top_k]],
        probabilities[0][:top_k].tolist(),
        fruits=fruits,
        fruit_probabilities=fruit_probabilities,
    )


def top_fruits(classifier, order: np.ndarray, probabilities: np.ndarray, k: int):
    """Each fruit's probability, the sum of its classes'; empty unless the classes have fruits."""
    if "fruits" not in classifier.files:
        return [], []
    fruit_of = classifier["fruits"]
    if np.array_equal(fruit_of, classifier["labels"]):
        return [], []
    totals: dict[str, float] = {}
    for index, probability in zip(order, probabilities, strict=True):
        totals[str(fruit_of[index])] = totals.get(str(fruit_of[index]), 0.0) + float(probability)
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:k]
    return [name for name, _ in ranked], [value for _, value in ranked]

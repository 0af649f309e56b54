"""What fruit is this? A few photos through the batch job's own decode → model → PCA → classifier.

No Spark: the photos go through :func:`fruitspark.featurize.describe_images` exactly as in the
batch job, and the PCA and the classifier are applied from the parameters the batch job exported
(``pca.npz``, ``classifier.npz``), so a cold start answers in about a second.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fruitspark.evaluate import softmax_top_k
from fruitspark.featurize import FeaturizeOptions, describe_images
from fruitspark.layout import CLASSIFIER_NPZ, PCA_NPZ, SUMMARY
from fruitspark.model import new_session, resolve_model
from fruitspark.output import OutputError
from fruitspark.reduce import project
from fruitspark.sources import ReadError, read_bytes
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


def predict(model_dir: str, images: list[str], *, top_k: int = 5) -> list[Prediction]:
    """Top-k labels and probabilities for each image; a bad image gets an error, not a raise."""
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
    classifier = np.load(io.BytesIO(_load(model_dir, CLASSIFIER_NPZ)))
    contents: list[bytes | None] = []
    read_errors: dict[int, str] = {}
    for index, image in enumerate(images):
        try:
            contents.append(read_bytes(image))
        except ReadError as error:
            contents.append(None)
            read_errors[index] = str(error)
    session = None
    if options.descriptor != "colour":
        session = new_session(Path(spec.path).read_bytes(), threads=1)
    results = describe_images(contents, session, spec, options)
    predictions = []
    labels = classifier["labels"]
    for index, (image, result) in enumerate(zip(images, results, strict=True)):
        error = read_errors.get(index, result.error)
        if error is not None:
            predictions.append(Prediction(image, [], [], error))
            continue
        vector = result.features
        reduced = project(vector, pca["mean"], pca["components"]).astype(np.float32)
        if str(classifier["features"]) == "pca":
            vector = reduced
        elif str(classifier["features"]) == "both":
            vector = np.concatenate([vector, reduced])
        order, probabilities = softmax_top_k(
            vector.astype(np.float64), classifier["coefficients"], classifier["intercepts"], None
        )
        fruits, fruit_probabilities = top_fruits(classifier, order[0], probabilities[0], top_k)
        predictions.append(
            Prediction(
                image,
                [str(labels[i]) for i in order[0][:top_k]],
                probabilities[0][:top_k].tolist(),
                fruits=fruits,
                fruit_probabilities=fruit_probabilities,
            )
        )
    return predictions


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

"""Real photos: how well features learnt on studio shots and on shop photos carry over.

Part of photos' quality study (``python benchmarks/quality.py --real-photos``; the benchmark
section ``quality`` runs it too). Per image it computes what the pipeline computes, without Spark:
``describe_images(descriptor="cnn", logits=True)`` (EfficientNet-Lite0 features and ImageNet
logits) and ``preprocess.colour_histogram``, cached under ``--cache``. Then, for three training
sets (the Fruits-360 sample's Training split, the grocery-store train photos, both) and four
descriptors (cnn, cnn + colour, cnn + logits, cnn + logits + colour; colour weighted as
``combine`` does), a standardised multinomial logistic regression (C = 0.1, i.e. Spark regParam
1 / (0.1 n), the order of magnitude evaluate's cross-validation picks on these sets) is trained
on fine labels (varieties) and scored at the fruit level (probabilities summed per fruit with the
packaged label map) on the grocery-store val photos and the labelled /photos, and at the variety
level on a blocked validation fold of Fruits-360 Training (quality.blocked_folds) and on Test
(Test also at the fruit level, over the images whose fruit is a class's, as evaluate counts).
Classifier "raw" is that regression on the raw descriptor; "raw+pca, colour x2" is evaluate's
default input since issue 12: the raw descriptor and its PCA (95 %, fitted on every image of the
run, as the pipeline does) side by side, standardised, the colour block then multiplied by 2.
Nothing is chosen on Test: it is reported so the 0.995 floor can be checked.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from fruitspark.decode import decode_image
from fruitspark.featurize import FeaturizeOptions, describe_images
from fruitspark.labels import load_label_map
from fruitspark.model import DEFAULT_MODEL, default_precision, new_session, resolve_model
from fruitspark.preprocess import COLOUR_DIM, colour_histogram

TRAINING_SETS = ("fruits360", "grocery", "both")
DESCRIPTORS = ("cnn", "cnn+colour", "cnn+logits", "cnn+logits+colour")
C = 0.1
CLASSIFIERS = {"raw": (False, 1.0), "raw+pca, colour x2": (True, 2.0)}  # (with PCA, colour boost)
PCA_VARIANCE = "v0.95"
COLOUR_WEIGHT = FeaturizeOptions.colour_weight


@dataclass(frozen=True)
class RealData:
    paths: list[str]
    source: np.ndarray  # fruits360, grocery, photos
    split: np.ndarray  # Training/Test, train/val, "" for photos
    fine: np.ndarray  # the image's folder
    fruit: np.ndarray


def list_real(fruits360: Path, grocery: Path, photos: Path) -> RealData:
    """Images of the three sets; grocery's fruit is the folder below Fruit/, photos' capitalised."""
    fruit_map = load_label_map("fruits")
    rows = []
    for source, root, splits in (
        ("fruits360", fruits360, ("Training", "Test")),
        ("grocery", grocery, ("train", "val")),
    ):
        for split in splits:
            for path in sorted((root / split).rglob("*.jpg")):
                fine = path.parent.name
                parts = path.relative_to(root / split).parts
                fruit = parts[1] if source == "grocery" else fruit_map.get(fine, fine)
                rows.append((str(path), source, split, fine, fruit))
    for path in sorted(photos.rglob("*")):
        if path.is_file() and path.parent.name != "mixed":  # mixed: several fruits, no label
            rows.append((str(path), "photos", "", path.parent.name, path.parent.name.capitalize()))
    columns = list(zip(*rows, strict=True))
    return RealData(list(columns[0]), *(np.asarray(column) for column in columns[1:]))


def _describe_task(model: str, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    spec = resolve_model(model, precision=default_precision(model))
    session = new_session(Path(spec.path).read_bytes(), threads=1)
    options = FeaturizeOptions(descriptor="cnn", logits=True, threads=1)
    contents = [Path(path).read_bytes() for path in paths]
    results = describe_images(contents, session, spec, options)
    colour = [colour_histogram(decode_image(data, min_side=spec.input_size)) for data in contents]
    return np.stack([result.features for result in results]), np.stack(colour)


def extract_real(
    data: RealData, cache: Path, jobs: int, model: str = DEFAULT_MODEL
) -> dict[str, np.ndarray]:
    """``cnn`` (``model``'s features + logits) and ``colour`` per image, from the cache when
    present."""
    import fruitspark.featurize
    import fruitspark.preprocess

    spec = resolve_model(model, precision=default_precision(model))
    digest = hashlib.sha256(spec.sha256.encode())
    for module in (fruitspark.featurize, fruitspark.preprocess):
        digest.update(Path(module.__file__).read_bytes())
    digest.update("\n".join(data.paths).encode())
    target = cache / f"real-{digest.hexdigest()[:16]}.npz"
    if target.exists():
        with np.load(target) as stored:
            return {name: stored[name] for name in stored.files}
    chunks = [data.paths[start : start + 64] for start in range(0, len(data.paths), 64)]
    started = time.perf_counter()
    with ProcessPoolExecutor(jobs) as pool:
        parts = list(pool.map(partial(_describe_task, model), chunks))
    store = {
        "cnn": np.concatenate([part[0] for part in parts]),
        "colour": np.concatenate([part[1] for part in parts]),
        "extraction_s": np.asarray(time.perf_counter() - started),
    }
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(target, **store)
    return store


def descriptor(store: dict, name: str, cnn_dim: int = 1280) -> np.ndarray:
    blocks = [store["cnn"][:, :cnn_dim]]
    if "logits" in name:
        blocks.append(store["cnn"][:, cnn_dim:])
    if "colour" in name:
        blocks.append(COLOUR_WEIGHT * np.sqrt(store["colour"]))
    return np.hstack(blocks).astype(np.float32)


def with_pca(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``x`` and its centred PCA (fitted on ``rows``, PCA_VARIANCE) side by side."""
    try:
        from benchmarks import quality
    except ImportError:  # run as a script
        import quality

    pca = quality.fit_pca(x[rows])
    return np.hstack([x, quality.project_k(pca, x, quality.pca_k(pca, PCA_VARIANCE))])


def fit_and_score(
    x,
    data: RealData,
    train: np.ndarray,
    sets: dict[str, np.ndarray],
    boost: np.ndarray | None = None,
) -> dict:
    """Fine-label LR on ``train`` (standardised columns times ``boost``); fruit top-1 on real
    photos, variety top-1 on Fruits-360 (Test: fruit top-1 too)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x[train])
    scale = np.ones(x.shape[1], np.float32) if boost is None else boost

    def prepared(rows):
        return scaler.transform(x[rows]) * scale

    model = LogisticRegression(C=C, max_iter=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(prepared(train), data.fine[train])
    fruit_of = {
        fine: fruit for fine, fruit in zip(data.fine[train], data.fruit[train], strict=True)
    }
    class_fruits = np.asarray([fruit_of[name] for name in model.classes_])
    fruits = np.unique(class_fruits)
    summing = (class_fruits[:, None] == fruits[None, :]).astype(np.float64)
    scores = {}
    for name, rows in sets.items():
        if not len(rows):
            continue
        probabilities = model.predict_proba(prepared(rows))
        if name.startswith("fruits360"):  # varieties; Test's classes unseen in Training left out
            known = np.isin(data.fine[rows], model.classes_)
            guess = model.classes_[probabilities.argmax(axis=1)]
            scores[name] = float(np.mean(guess[known] == data.fine[rows][known]))
            if name == "fruits360_test":  # fruit level: images whose fruit is a class's
                known = np.isin(data.fruit[rows], fruits)
                guess = fruits[(probabilities @ summing).argmax(axis=1)]
                scores["fruits360_test_fruit"] = float(
                    np.mean(guess[known] == data.fruit[rows][known])
                )
        else:
            guess = fruits[(probabilities @ summing).argmax(axis=1)]
            scores[name] = float(np.mean(guess == data.fruit[rows]))
    return scores


def study(data: RealData, store: dict, model: str = DEFAULT_MODEL) -> list[dict]:
    try:
        from benchmarks.quality import Dataset, blocked_folds
    except ImportError:  # run as a script
        from quality import Dataset, blocked_folds

    model_label = f"{model} {default_precision(model)}"
    where = {
        key: np.flatnonzero((data.source == source) & (data.split == split))
        for key, source, split in (
            ("f_training", "fruits360", "Training"), ("fruits360_test", "fruits360", "Test"),
            ("grocery_train", "grocery", "train"), ("grocery_val", "grocery", "val"),
            ("photos", "photos", ""),
        )
    }  # fmt: skip
    studio = Dataset(data.paths, data.fine, data.split)
    f_fit, f_val = blocked_folds(studio, where["f_training"])[0]
    run = np.concatenate([where[key] for key in where if key != "photos"])  # the run's images
    rows = []
    for training in TRAINING_SETS:
        studio_fold = [] if training == "grocery" else [f_fit]
        studio_all = [] if training == "grocery" else [where["f_training"]]
        grocery = [] if training == "fruits360" else [where["grocery_train"]]
        for name in DESCRIPTORS:
            for classifier, (pca, colour_boost) in CLASSIFIERS.items():
                if classifier != "raw" and name != DESCRIPTORS[-1]:
                    continue  # the new input for the default descriptor only
                x = descriptor(store, name)
                boost = np.ones(x.shape[1], np.float32)
                if "colour" in name:
                    boost[x.shape[1] - COLOUR_DIM :] = colour_boost
                if pca:
                    x = with_pca(x, run)
                    boost = np.concatenate([boost, np.ones(x.shape[1] - len(boost), np.float32)])
                started = time.perf_counter()
                scored = ("grocery_val", "photos") + (("fruits360_test",) if studio_all else ())
                train = np.concatenate(studio_all + grocery)
                real = fit_and_score(x, data, train, {key: where[key] for key in scored}, boost)
                validation = {}
                if training != "grocery":
                    fold = np.concatenate(studio_fold + grocery)
                    validation = fit_and_score(
                        x, data, fold, {"fruits360_validation": f_val}, boost
                    )
                rows.append(
                    {"training": training, "descriptor": name, "classifier": classifier,
                     "model": model_label,
                     **real, **validation, "fit_s": time.perf_counter() - started}
                )  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    return rows


def _root(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(x, 0.0))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _root_probabilities(z: np.ndarray) -> np.ndarray:
    return np.exp(0.5 * _log_softmax(z))


# (name, CNN block transform, logits transform): scalings that might carry across sources
TRANSFORMS = (
    ("raw", None, None),
    ("root CNN", _root, None),
    ("L2 CNN", _unit, None),
    ("log-softmax logits", None, _log_softmax),
    ("root probabilities", None, _root_probabilities),
    ("root CNN, root probabilities", _root, _root_probabilities),
)


def transfer_study(data: RealData, store: dict, cnn_dim: int = 1280) -> list[dict]:
    """Across sources: trained on one source alone, fruit top-1 on the other (grocery train ->
    the Fruits-360 Test images of its fruits; Fruits-360 Training -> grocery val), the default
    descriptor with each block transform (colour as ``combine`` weighs it)."""
    rows_of = {
        key: np.flatnonzero((data.source == source) & (data.split == split))
        for key, source, split in (
            ("shop_train", "grocery", "train"), ("grocery_val", "grocery", "val"),
            ("studio_train", "fruits360", "Training"), ("fruits360_test", "fruits360", "Test"),
        )
    }  # fmt: skip
    cnn, logits = store["cnn"][:, :cnn_dim], store["cnn"][:, cnn_dim:]
    colour = COLOUR_WEIGHT * np.sqrt(store["colour"])
    studio_test = {"fruits360_test": rows_of["fruits360_test"]}
    shop_test = {"grocery_val": rows_of["grocery_val"]}
    rows = []
    for name, on_cnn, on_logits in TRANSFORMS:
        blocks = [f(block) if f else block for f, block in ((on_cnn, cnn), (on_logits, logits))]
        x = np.hstack([*blocks, colour]).astype(np.float32)
        shop = fit_and_score(x, data, rows_of["shop_train"], studio_test)
        studio = fit_and_score(x, data, rows_of["studio_train"], shop_test)
        rows.append({"transform": name, "grocery_to_fruits360": shop["fruits360_test_fruit"],
                     "fruits360_to_grocery": studio["grocery_val"]})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def transfer_markdown(rows: list[dict]) -> str:
    lines = [
        "| block transform | grocery train -> Fruits-360 Test (fruit) | "
        "Fruits-360 Training -> grocery val (fruit) |",
        "|---|---|---|",
    ]
    lines += [
        f"| {row['transform']} | {row['grocery_to_fruits360']:.3f} | "
        f"{row['fruits360_to_grocery']:.3f} |"
        for row in rows
    ]
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    def cell(value):
        return "-" if value is None else f"{value:.3f}"

    lines = [
        "| trained on | model | descriptor | classifier | grocery val (fruit) | /photos (fruit) | "
        "Fruits-360 val fold | Fruits-360 Test | Fruits-360 Test (fruit, all known fruits) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row["training"] == "grocery":  # no Fruits-360 variety is a class: not meaningful
            row = {key: value for key, value in row.items() if not key.startswith("fruits360")}
        lines.append(
            f"| {row['training']} | {row['model']} | {row['descriptor']} | "
            f"{row.get('classifier', 'raw')} | "
            f"{cell(row.get('grocery_val'))} | {cell(row.get('photos'))} | "
            f"{cell(row.get('fruits360_validation'))} | {cell(row.get('fruits360_test'))} | "
            f"{cell(row.get('fruits360_test_fruit'))} |"
        )
    return "\n".join(lines)

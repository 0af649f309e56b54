"""Feature quality and speed on Fruits-360, without Spark: which defaults to ship.

Per image this extracts the raw EfficientNet-Lite0 features (``describe_images`` with
``descriptor="cnn"``) at several input sizes, and the colour histogram of the pipeline
(``preprocess.colour_histogram``) plus a few candidate alternatives defined below, in two worker
processes. Features are cached in an .npz under /tmp, so rerunning the analysis is cheap.

Then, with every choice made on a stratified validation split of Training (never on Test), it
measures multinomial logistic regression (scikit-learn lbfgs after StandardScaler: the same
objective as Spark ML's LogisticRegression with standardization=True and
regParam = 1 / (C * n_train)) on the CNN features, the colour histogram, and their combination
``concat(cnn, colour_weight * sqrt(hist))`` before and after the pipeline's centred PCA (fitted on
Training only). The defaults are refitted on all of Training and scored once on Test.

    python benchmarks/quality.py --data ../shared/data/fruits360-sample \
        --out benchmarks/results/quality.json
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import platform
import re
import statistics
import sys
import time
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

try:
    from benchmarks import real_photos
except ImportError:  # run as a script: benchmarks/ is on sys.path
    import real_photos

from fruitspark import efficientnet_onnx
from fruitspark.decode import decode_image
from fruitspark.featurize import FeaturizeOptions, combine, describe_images
from fruitspark.model import DEFAULT_MODEL, embed, new_session, resolve_model
from fruitspark.pipeline import RunConfig
from fruitspark.preprocess import COLOUR_SIDE, colour_histogram, resize_square, to_tensor
from fruitspark.reduce import choose_k, project

SIZES = (224, 192, 160, 128)
SPLITS = ("Training", "Test")
CACHE_DIR = Path("/tmp/fruitspark-quality")
CACHE_VERSION = "1"
BATCH = 8  # FeaturizeOptions' default batch size

# ----------------------------------------------------------------------------------------------
# Colour descriptors. "hsv18x4x4" is the pipeline's own (preprocess.colour_histogram); the others
# are candidates, measured here and proposed as code changes only if they help.
# ----------------------------------------------------------------------------------------------

_WHITE_S, _WHITE_V, _MIN_FG = 0.12, 0.90, 0.05  # the same thresholds as preprocess


def _foreground_hsv(image: Image.Image, side: int | None) -> np.ndarray:
    """The HSV pixels (N x 3, 0..255) that are not near-white, as preprocess selects them."""
    small = image.copy()
    if side is not None:
        small.thumbnail((side, side), Image.Resampling.BILINEAR)
    hsv = np.asarray(small.convert("HSV"), dtype=np.uint16).reshape(-1, 3)
    foreground = ~((hsv[:, 1] < _WHITE_S * 256) & (hsv[:, 2] > _WHITE_V * 256))
    return hsv[foreground] if foreground.mean() >= _MIN_FG else hsv


def hsv_histogram(
    image: Image.Image, bins: tuple[int, int, int], side: int | None = COLOUR_SIDE
) -> np.ndarray:
    """preprocess.colour_histogram with other bin counts or thumbnail side (same masking)."""
    hsv = _foreground_hsv(image, side)
    hue_bins, sat_bins, val_bins = bins
    index = (
        (hsv[:, 0] * hue_bins >> 8) * (sat_bins * val_bins)
        + (hsv[:, 1] * sat_bins >> 8) * val_bins
        + (hsv[:, 2] * val_bins >> 8)
    )
    counts = np.bincount(index, minlength=hue_bins * sat_bins * val_bins).astype(np.float32)
    return counts / max(float(counts.sum()), 1.0)


def hsv_soft_histogram(
    image: Image.Image, bins: tuple[int, int, int] = (18, 4, 4), side: int | None = COLOUR_SIDE
) -> np.ndarray:
    """Like hsv_histogram, but each pixel's vote is split linearly between the two nearest hue
    bins (hue is circular), so a hue near a bin edge no longer flips the descriptor."""
    hsv = _foreground_hsv(image, side).astype(np.int64)
    hue_bins, sat_bins, val_bins = bins
    position = (hsv[:, 0] + 0.5) * hue_bins / 256.0 - 0.5
    lower = np.floor(position).astype(np.int64)
    upper_share = (position - lower).astype(np.float32)
    rest = (hsv[:, 1] * sat_bins >> 8) * val_bins + (hsv[:, 2] * val_bins >> 8)
    cells = sat_bins * val_bins
    counts = np.zeros(hue_bins * cells, np.float32)
    np.add.at(counts, (lower % hue_bins) * cells + rest, 1.0 - upper_share)
    np.add.at(counts, ((lower + 1) % hue_bins) * cells + rest, upper_share)
    return counts / max(float(counts.sum()), 1.0)


COLOUR_VARIANTS = {
    "hsv18x4x4": colour_histogram,  # the pipeline's descriptor, 288-d
    "hsv36x4x4": lambda image: hsv_histogram(image, (36, 4, 4)),  # finer hue, 576-d
    "hsv18x4x4-soft": hsv_soft_histogram,  # soft hue binning, 288-d
    "hsv18x8x8": lambda image: hsv_histogram(image, (18, 8, 8)),  # finer S and V, 1152-d
    "hsv18x4x4-100px": lambda image: hsv_histogram(image, (18, 4, 4), side=None),  # full res
}
PIPELINE_COLOUR = "hsv18x4x4"


def _colour_code_hash() -> str:
    """Changes whenever a colour descriptor's code changes: the colour cache is keyed on it."""
    import fruitspark.preprocess

    own = Path(__file__).read_text()
    section = own[own.index("_WHITE_S, _WHITE_V") : own.index("def _colour_code_hash")]
    digest = hashlib.sha256((section + inspect.getsource(fruitspark.preprocess)).encode())
    return digest.hexdigest()[:12]


# ----------------------------------------------------------------------------------------------
# Data and extraction (two worker processes, one ONNX Runtime thread each, as on an executor)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    paths: list[str]
    labels: np.ndarray  # class name per image
    splits: np.ndarray  # "Training" or "Test"


def list_images(root: Path) -> Dataset:
    paths, labels, splits = [], [], []
    for split in SPLITS:
        for class_dir in sorted((root / split).iterdir()):
            if not class_dir.is_dir():
                continue
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() in (".jpg", ".jpeg", ".png"):
                    paths.append(str(file))
                    labels.append(class_dir.name)
                    splits.append(split)
    return Dataset(paths, np.asarray(labels), np.asarray(splits))


_WORKER: dict = {}


def _init_worker(specs) -> None:
    model_bytes = Path(specs[0].path).read_bytes()
    _WORKER["specs"] = {spec.input_size: spec for spec in specs}
    _WORKER["sessions"] = {spec.input_size: new_session(model_bytes, threads=1) for spec in specs}


def _cnn_task(size: int, paths: list[str]) -> tuple[np.ndarray, float]:
    """describe_images(descriptor="cnn") over ``paths`` in batches of 8, as featurize does."""
    spec, session = _WORKER["specs"][size], _WORKER["sessions"][size]
    options = FeaturizeOptions(descriptor="cnn", batch_size=BATCH, threads=1)
    contents = [Path(path).read_bytes() for path in paths]
    start = time.perf_counter()
    features = []
    for first in range(0, len(contents), BATCH):
        for result in describe_images(contents[first : first + BATCH], session, spec, options):
            if result.error is not None:
                raise RuntimeError(f"cannot describe an image: {result.error}")
            features.append(result.features)
    return np.stack(features), time.perf_counter() - start


def _speed_task(size: int, contents: list[bytes], model_only: bool) -> float:
    """Seconds for describe_images end to end over ``contents`` (bytes in memory), or for the
    model alone on the already prepared tensors."""
    spec, session = _WORKER["specs"][size], _WORKER["sessions"][size]
    if model_only:
        tensors = [
            to_tensor(resize_square(decode_image(data, min_side=size), size), spec.normalisation)
            for data in contents
        ]
        start = time.perf_counter()
        for first in range(0, len(tensors), BATCH):
            embed(session, spec, np.stack(tensors[first : first + BATCH]))
        return time.perf_counter() - start
    options = FeaturizeOptions(descriptor="cnn", batch_size=BATCH, threads=1)
    start = time.perf_counter()
    for first in range(0, len(contents), BATCH):
        describe_images(contents[first : first + BATCH], session, spec, options)
    return time.perf_counter() - start


def _colour_task(paths: list[str]) -> dict[str, np.ndarray]:
    out: dict[str, list[np.ndarray]] = {name: [] for name in COLOUR_VARIANTS}
    for path in paths:
        # decoded as describe_images decodes it (min_side only matters for large JPEGs)
        image = decode_image(Path(path).read_bytes(), min_side=max(SIZES))
        for name, function in COLOUR_VARIANTS.items():
            out[name].append(function(image))
    return {name: np.stack(values) for name, values in out.items()}


def _chunks(items: list, size: int) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _dataset_key(data: Dataset, specs) -> str:
    import fruitspark.decode
    import fruitspark.preprocess

    digest = hashlib.sha256(CACHE_VERSION.encode())
    digest.update(specs[0].sha256.encode())
    for code in (fruitspark.decode, fruitspark.preprocess, describe_images, embed):
        digest.update(inspect.getsource(code).encode())  # the per-image code the features use
    for path in data.paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def extract(data: Dataset, specs, pool: ProcessPoolExecutor, cache_dir: Path) -> dict:
    """CNN features per size and colour histograms per variant, from the cache when present."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = _dataset_key(data, specs)
    features: dict[str, np.ndarray] = {}
    timing: dict[str, float] = {}
    cnn_file = cache_dir / f"cnn-{key}.npz"
    if cnn_file.exists():
        with np.load(cnn_file) as stored:
            features.update({name: stored[name] for name in stored.files if name != "timing"})
            timing = json.loads(str(stored["timing"]))
        print(f"CNN features from the cache {cnn_file}", flush=True)
    missing = [size for size in SIZES if f"cnn{size}" not in features]
    chunks = _chunks(data.paths, 60)
    for size in missing:
        start = time.perf_counter()
        parts = list(pool.map(_cnn_task, [size] * len(chunks), chunks))
        wall = time.perf_counter() - start
        features[f"cnn{size}"] = np.concatenate([part[0] for part in parts])
        timing[f"cnn{size}"] = wall
        print(
            f"extracted CNN features at {size} px: {len(data.paths)} images in {wall:.1f} s "
            f"({len(data.paths) / wall:.1f} images/s, 2 processes)",
            flush=True,
        )
    if missing:
        partial = cnn_file.with_suffix(f".{os.getpid()}.tmp.npz")
        cnn_arrays = {name: value for name, value in features.items() if name.startswith("cnn")}
        np.savez(partial, timing=json.dumps(timing), **cnn_arrays)
        partial.replace(cnn_file)
    colour_file = cache_dir / f"colour-{key}-{_colour_code_hash()}.npz"
    if colour_file.exists():
        with np.load(colour_file) as stored:
            features.update({f"colour:{name}": stored[name] for name in stored.files})
        print(f"colour histograms from the cache {colour_file}", flush=True)
    else:
        start = time.perf_counter()
        parts = list(pool.map(_colour_task, chunks))
        colour = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        print(f"colour histograms: {time.perf_counter() - start:.1f} s", flush=True)
        partial = colour_file.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(partial, **colour)
        partial.replace(colour_file)
        features.update({f"colour:{name}": value for name, value in colour.items()})
    return {"features": features, "extraction_wall_s": timing, "cache_key": key}


def measure_speed(data: Dataset, pool: ProcessPoolExecutor, images: int, rounds: int) -> dict:
    """Images/s per input size with both workers busy (each on half of the images), the sizes
    interleaved round by round in a rotated order, so that load from other jobs on the machine
    hits every size alike; medians over rounds, and the per-round speed relative to 224 px."""
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(data.paths), size=min(images, len(data.paths)), replace=False)
    contents = [Path(data.paths[index]).read_bytes() for index in chosen]
    halves = [contents[0::2], contents[1::2]]
    for size in SIZES:  # warm-up: the first runs allocate buffers
        list(pool.map(_speed_task, [size, size], [halves[0][:16], halves[1][:16]], [False] * 2))
    runs: dict[int, list[dict]] = {size: [] for size in SIZES}
    for number in range(rounds):
        order = SIZES[number % len(SIZES) :] + SIZES[: number % len(SIZES)]
        for size in order:
            ends = list(pool.map(_speed_task, [size, size], halves, [False] * 2))
            model = list(pool.map(_speed_task, [size, size], halves, [True] * 2))
            runs[size].append(
                {
                    "images_per_s": len(contents) / max(ends),
                    "model_only_images_per_s": len(contents) / max(model),
                }
            )
    summary = {}
    for size, measured in runs.items():
        relative = [
            run["images_per_s"] / base["images_per_s"]
            for run, base in zip(measured, runs[SIZES[0]], strict=True)
        ]
        summary[str(size)] = {
            "images_per_s_median": statistics.median(m["images_per_s"] for m in measured),
            "images_per_s_best": max(m["images_per_s"] for m in measured),
            "model_only_images_per_s_median": statistics.median(
                m["model_only_images_per_s"] for m in measured
            ),
            f"relative_to_{SIZES[0]}_median": statistics.median(relative),
            "runs": measured,
        }
        print(
            f"speed at {size} px: {summary[str(size)]['images_per_s_median']:.1f} images/s "
            f"end to end (best round {summary[str(size)]['images_per_s_best']:.1f}), "
            f"{summary[str(size)]['model_only_images_per_s_median']:.1f} model alone "
            f"(x{statistics.median(relative):.2f} of {SIZES[0]} px)",
            flush=True,
        )
    return {
        "images": len(contents),
        "rounds": rounds,
        "processes": 2,
        "threads_per_process": 1,
        "batch_size": BATCH,
        "by_size": summary,
    }


# ----------------------------------------------------------------------------------------------
# Validation design. Fruits-360 images are frames of a rotating fruit; the Test frames are a
# median 15 frame numbers away from the nearest Training frame of the same class and rotation,
# while a random Training image has a neighbour 4 frames away: a random split of Training is
# near-duplicate leakage, and every configuration scores ~1.000 on it (no ranking at all).
# Validation folds therefore hold out whole blocks of BLOCK consecutive frame numbers per class
# and rotation (StratifiedGroupKFold): held-out views are then unseen arcs of the rotation.
# Blocks of 20 frames match Test's frame distances but still saturate (1-3 errors in 1400);
# blocks of 60 leave tens of errors to rank configurations by (see "design_check" in the JSON).
# ----------------------------------------------------------------------------------------------

BLOCK = 60
FOLDS = 5
_FRAME = re.compile(r"(?:(?P<rotation>.*)_)?(?P<frame>\d+)_100(?:__\w+)?")


def frame_of(path: str) -> tuple[str, int | None]:
    match = _FRAME.fullmatch(Path(path).stem)
    if match is None:
        return Path(path).stem, None
    return match.group("rotation") or "", int(match.group("frame"))


def frame_distances(data: Dataset, query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each query image, the frame distance to the nearest reference image of the same class
    and rotation (the reference set excludes the query image itself); 10**6 if there is none."""
    frames = [frame_of(path) for path in data.paths]
    table: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for index in reference:
        rotation, frame = frames[index]
        if frame is not None:
            table.setdefault((data.labels[index], rotation), []).append((frame, index))
    out = []
    for index in query:
        rotation, frame = frames[index]
        candidates = table.get((data.labels[index], rotation), [])
        distances = [abs(frame - other) for other, ref in candidates if ref != index]
        out.append(min(distances) if frame is not None and distances else 10**6)
    return np.asarray(out)


def blocked_folds(
    data: Dataset, train: np.ndarray, block: int = BLOCK
) -> list[tuple[np.ndarray, np.ndarray]]:
    """FOLDS stratified folds of ``train`` that keep each class x rotation x block together."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups = []
    for index in train:
        rotation, frame = frame_of(data.paths[index])
        group = frame // block if frame is not None else data.paths[index]
        groups.append(f"{data.labels[index]}|{rotation}|{group}")
    splitter = StratifiedGroupKFold(n_splits=FOLDS, shuffle=True, random_state=0)
    return [
        (train[fit], train[held])
        for fit, held in splitter.split(train, data.labels[train], np.asarray(groups))
    ]


# ----------------------------------------------------------------------------------------------
# Descriptors, PCA and the classifier
# ----------------------------------------------------------------------------------------------


def descriptor(store: dict, size: int | None, colour: str | None, weight: float | None):
    """cnn (colour None), colour alone (size None), or combine()'s concat(cnn, w * sqrt(hist))."""
    if colour is None:
        return store[f"cnn{size}"]
    root = np.sqrt(store[f"colour:{colour}"], dtype=np.float32)
    if size is None:
        return root
    return np.hstack([store[f"cnn{size}"], np.float32(weight) * root])


def check_combine(store: dict, size: int) -> None:
    """The vectorised descriptor above is exactly featurize.combine, row by row."""
    hist = store[f"colour:{PIPELINE_COLOUR}"]
    mine = descriptor(store, size, PIPELINE_COLOUR, 8.0)
    for row in (0, len(hist) // 2, len(hist) - 1):
        theirs = combine(store[f"cnn{size}"][row], hist[row], FeaturizeOptions(colour_weight=8.0))
        np.testing.assert_allclose(mine[row], theirs, rtol=1e-6)


@dataclass
class Pca:
    mean: np.ndarray
    components: np.ndarray  # all components, rows, by decreasing variance
    ratios: np.ndarray  # explained variance ratio per component


def fit_pca(features: np.ndarray, standardise: bool = False) -> Pca:
    """Centred PCA from the covariance matrix, as Spark ML's PCA computes it (optionally on
    standardised columns: the alternative the pipeline does not use)."""
    x = np.asarray(features, np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    if standardise:
        scale = centred.std(axis=0)
        scale[scale == 0] = 1.0
        centred = centred / scale
    covariance = centred.T @ centred / max(len(x) - 1, 1)
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1]
    values = np.clip(values[order], 0, None)
    components = vectors[:, order].T
    if standardise:
        components = components / scale  # project raw centred features onto standardised axes
    return Pca(mean, components, values / values.sum())


def pca_k(pca: Pca, setting: str) -> int:
    """'v0.95' -> smallest k reaching 95 % variance (reduce.choose_k), 'k128' -> 128."""
    if setting.startswith("k"):
        return choose_k(pca.ratios, k=int(setting[1:]), variance=None)
    return choose_k(pca.ratios, k=None, variance=float(setting[1:]))


def project_k(pca: Pca, features: np.ndarray, k: int) -> np.ndarray:
    return project(features, pca.mean, pca.components[:k]).astype(np.float32)


def fit_score(x_fit, y_fit, x_eval, y_eval, c: float) -> dict:
    """StandardScaler + multinomial LogisticRegression(lbfgs, L2): Spark ML's objective with
    standardization=True, elasticNetParam=0 and regParam = 1 / (C * n_fit)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    scaler = StandardScaler().fit(x_fit)
    model = LogisticRegression(C=c, max_iter=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter: recorded as n_iter
        model.fit(scaler.transform(x_fit), y_fit)
    proba = model.predict_proba(scaler.transform(x_eval))
    predicted = model.classes_[proba.argmax(axis=1)]
    return {
        "top1": float(np.mean(predicted == y_eval)),
        "errors": int(np.sum(predicted != y_eval)),
        "log_loss": float(log_loss(y_eval, proba, labels=model.classes_)),
        "n_iter": int(np.max(model.n_iter_)),
        "fit_s": time.perf_counter() - start,
        "C": c,
        "regParam": 1.0 / (c * len(y_fit)),
    }


def _pca_job(x_fit, y_fit, x_eval, y_eval, settings, cs, standardise=False) -> list[dict]:
    """One PCA fit (on the fit rows only), then one classifier per setting and C."""
    pca = fit_pca(x_fit, standardise=standardise)
    out = []
    for setting in settings:
        k = pca_k(pca, setting)
        z_fit, z_eval = project_k(pca, x_fit, k), project_k(pca, x_eval, k)
        for c in cs:
            out.append({"pca": setting, "k": k, **fit_score(z_fit, y_fit, z_eval, y_eval, c)})
    return out


def _raw_job(x_fit, y_fit, x_eval, y_eval, cs) -> list[dict]:
    return [
        {"pca": "raw", "k": x_fit.shape[1], **fit_score(x_fit, y_fit, x_eval, y_eval, c)}
        for c in cs
    ]


@dataclass(frozen=True)
class Config:
    """A descriptor and its reduction: size None = colour alone; colour None = CNN alone."""

    size: int | None
    colour: str | None
    weight: float | None
    pca: str  # "raw", "v0.95", "k128", ...
    standardise: bool = False

    @property
    def name(self) -> str:
        if self.colour is None:
            return "cnn"
        if self.size is None:
            return f"colour {self.colour}"
        return f"cnn+{self.colour}"

    def label(self) -> str:
        parts = [self.name, f"{self.size} px" if self.size else "", ""]
        if self.weight is not None and self.size is not None:
            parts[2] = f"w={self.weight:g}"
        parts.append(self.pca + (" (standardised)" if self.standardise else ""))
        return " ".join(part for part in parts if part)


class Runner:
    """Runs descriptor x reduction x C evaluations in two joblib workers."""

    def __init__(self, store: dict, labels: np.ndarray, jobs: int = 2):
        self.store, self.labels, self.jobs = store, labels, jobs

    def run(self, groups: list[tuple[Config, list[str], list[float]]], fit, held) -> list[dict]:
        """``groups``: (config with the PCA field ignored, PCA settings, Cs) evaluated on the
        rows ``fit`` -> ``held``; one PCA per group. Returns one record per setting and C."""
        from joblib import Parallel, delayed

        tasks = []
        for config, settings, cs in groups:
            x = descriptor(self.store, config.size, config.colour, config.weight)
            arguments = (x[fit], self.labels[fit], x[held], self.labels[held])
            if settings == ["raw"]:
                tasks.append(delayed(_raw_job)(*arguments, cs))
            else:
                tasks.append(delayed(_pca_job)(*arguments, settings, cs, config.standardise))
        results = Parallel(n_jobs=self.jobs)(tasks)
        records = []
        for (config, _, _), group in zip(groups, results, strict=True):
            for result in group:
                setting = result.pop("pca")
                chosen = Config(
                    config.size, config.colour, config.weight, setting, config.standardise
                )
                records.append({"config": chosen, **result})
        return records


def _key(record: dict) -> tuple:
    return (record["top1"], -record["log_loss"])


def _serialise(record: dict) -> dict:
    config = record["config"]
    return {
        "descriptor": config.name,
        "input_size": config.size,
        "colour": config.colour,
        "colour_weight": config.weight,
        "reduction": config.pca,
        "standardised_before_pca": config.standardise,
        **{key: value for key, value in record.items() if key != "config"},
    }


# ----------------------------------------------------------------------------------------------
# The study
# ----------------------------------------------------------------------------------------------

WEIGHTS = (0.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)  # 0 = the CNN block alone
PCA_SETTINGS = ["v0.9", "v0.95", "v0.99", "k64", "k128", "k256"]
RAW_CS = [0.1, 1.0]  # CNN and combination without PCA (10 never won)
COLOUR_CS = [1.0, 10.0]  # the colour histogram alone (0.1 never won)
STAGE1_C = [1.0]
FINAL_CS = [1.0, 10.0]  # 0.1 never won after PCA
TOLERANCE = 0.003  # prefer faster / smaller within this much validation top-1


def _percentiles(values: np.ndarray) -> dict:
    finite = values[values < 10**6]
    points = (10, 25, 50, 75, 90)
    return {f"p{p}": float(np.percentile(finite, p)) for p in points} | {
        "no_neighbour": int(np.sum(values >= 10**6))
    }


@dataclass(frozen=True)
class Splits:
    """Training, the Test images of Training's classes, and the blocked folds of Training."""

    train: np.ndarray
    test: np.ndarray
    test_all: np.ndarray
    known: set
    folds: list


def _splits(data: Dataset) -> Splits:
    labels = data.labels
    train = np.nonzero(data.splits == "Training")[0]
    known = set(labels[train].tolist())
    test_all = np.nonzero(data.splits == "Test")[0]
    test = np.asarray([index for index in test_all if labels[index] in known])
    return Splits(train, test, test_all, known, blocked_folds(data, train))


def _validation_design(data: Dataset, runner: Runner, splits: Splits) -> dict:
    """How close held-out frames are to fitted ones, and how discriminative each split is on
    two reference descriptors: random 20 %, blocks of 20 frames, blocks of BLOCK (used)."""
    from sklearn.model_selection import train_test_split

    train, (fit0, held0) = splits.train, splits.folds[0]
    random_fit, random_held = train_test_split(
        train, test_size=0.2, stratify=data.labels[train], random_state=0
    )
    validation = {
        "design": f"StratifiedGroupKFold({FOLDS}) over Training, groups = class x rotation x "
        f"blocks of {BLOCK} frame numbers; stage 1 on fold 0, finalists on all {FOLDS} folds",
        "fold_sizes": [[len(fit), len(held)] for fit, held in splits.folds],
        "frame_distance_to_nearest_fitted_frame": {
            "test_to_training": _percentiles(frame_distances(data, splits.test, train)),
            "blocked_fold0_held_to_fit": _percentiles(frame_distances(data, held0, fit0)),
            "random_20pc_held_to_fit": _percentiles(frame_distances(data, random_held, random_fit)),
        },
    }
    design = []
    reference = [
        (Config(224, PIPELINE_COLOUR, weight, ""), ["v0.95"], [1.0]) for weight in (0.0, 8.0)
    ]
    for name, (fit, held) in (
        ("random 20 %", (random_fit, random_held)),
        ("blocks of 20 frames, fold 0", blocked_folds(data, train, 20)[0]),
        (f"blocks of {BLOCK} frames, fold 0 (used)", (fit0, held0)),
    ):
        for record in runner.run(reference, fit, held):
            design.append({"split": name, **_serialise(record)})
            print(
                f"design check, {name}: {record['config'].label()}: top-1 "
                f"{record['top1']:.4f} ({record['errors']} errors)",
                flush=True,
            )
    validation["design_check"] = design
    distances = validation["frame_distance_to_nearest_fitted_frame"]
    print(f"frame distance to the nearest fitted frame: {json.dumps(distances)}", flush=True)
    return validation


def _best(records: list[dict], **where) -> dict | None:
    """The best record (top-1, then log-loss) whose config has the ``where`` values."""
    chosen = [r for r in records if all(getattr(r["config"], k) == v for k, v in where.items())]
    return max(chosen, key=_key) if chosen else None


def _is_pipeline_pca(record: dict) -> bool:
    """PCA of the pipeline's descriptor (CNN + the pipeline's colour block, weighted)."""
    config = record["config"]
    return (
        config.pca != "raw"
        and config.colour == PIPELINE_COLOUR
        and not config.standardise
        and bool(config.weight)
    )


def _stage1(runner: Runner, splits: Splits, clock: float) -> tuple[list[dict], int, list[str]]:
    """The grid on fold 0, then the candidate colour descriptors at the best size.

    Returns the records, the best input size and the colour variants tried."""
    fit0, held0 = splits.folds[0]
    groups = []
    for size in SIZES:
        groups.append((Config(size, None, None, "raw"), ["raw"], RAW_CS))
        groups.append((Config(size, PIPELINE_COLOUR, 1.0, "raw"), ["raw"], RAW_CS))
    groups += [(Config(None, name, None, "raw"), ["raw"], COLOUR_CS) for name in COLOUR_VARIANTS]
    for size in SIZES:
        groups += [(Config(size, PIPELINE_COLOUR, w, ""), PCA_SETTINGS, STAGE1_C) for w in WEIGHTS]
        groups.append((Config(size, PIPELINE_COLOUR, 1.0, "", True), PCA_SETTINGS, STAGE1_C))
    stage1 = runner.run(groups, fit0, held0)
    print(f"stage 1 grid: {len(stage1)} fits, {time.perf_counter() - clock:.0f} s", flush=True)

    top = max((r for r in stage1 if _is_pipeline_pca(r)), key=_key)["config"]
    settings = sorted({top.pca, "v0.95"})
    variants = [name for name in COLOUR_VARIANTS if name != PIPELINE_COLOUR]
    groups = [(Config(top.size, name, 1.0, "raw"), ["raw"], [1.0]) for name in variants]
    groups += [
        (Config(top.size, name, w, ""), settings, STAGE1_C)
        for name in variants
        for w in WEIGHTS[1:]
    ]
    stage1 += runner.run(groups, fit0, held0)
    print(f"stage 1b colour variants: {time.perf_counter() - clock:.0f} s", flush=True)
    return stage1, top.size, variants


def _pca_records(stage1: list[dict]) -> list[dict]:
    return [r for r in stage1 if r["config"].pca != "raw" and r["config"].size is not None]


def _stage2(runner: Runner, splits: Splits, stage1: list[dict], current: Config, clock) -> list:
    """The finalists (best three, the best of each size, the best other colour, the current
    defaults) on every fold, for each C of FINAL_CS: one record per config and C."""
    pca_pipeline = [r for r in stage1 if _is_pipeline_pca(r)]
    pca_all = _pca_records(stage1)
    finalists = sorted(pca_all, key=_key, reverse=True)[:3]
    finalists += [_best(pca_pipeline, size=size) for size in SIZES]
    finalists.append(max((r for r in pca_all if r["config"].colour != PIPELINE_COLOUR), key=_key))
    finalists.append({"config": current})
    unique = list(dict.fromkeys(r["config"] for r in finalists if r is not None))
    groups_by_fold = [(config, [config.pca], FINAL_CS) for config in unique]
    per_fold = []
    for number, (fit, held) in enumerate(splits.folds):
        for record in runner.run(groups_by_fold, fit, held):
            per_fold.append({"fold": number, **record})
    stage2 = []
    for config in unique:
        for c in FINAL_CS:
            runs = [r for r in per_fold if r["config"] == config and r["C"] == c]
            stage2.append(
                {
                    "config": config,
                    "C": c,
                    "top1": float(np.mean([r["top1"] for r in runs])),
                    "errors": int(sum(r["errors"] for r in runs)),
                    "log_loss": float(np.mean([r["log_loss"] for r in runs])),
                    "k_mean": float(np.mean([r["k"] for r in runs])),
                    "top1_by_fold": [r["top1"] for r in runs],
                }
            )
    print(f"stage 2 finalists x {FOLDS} folds: {time.perf_counter() - clock:.0f} s", flush=True)
    return stage2


def _choose_defaults(stage2: list[dict]) -> tuple[dict, dict]:
    """The best mean validation top-1; within TOLERANCE, the faster / smaller. (chosen, best)"""
    top = max(stage2, key=_key)
    near = [r for r in stage2 if r["top1"] >= top["top1"] - TOLERANCE]
    simplest = min(
        near,
        key=lambda r: (
            r["config"].size,
            r["config"].colour != PIPELINE_COLOUR,
            r["k_mean"],
            -r["top1"],
        ),
    )
    chosen = max((r for r in stage2 if r["config"] == simplest["config"]), key=_key)
    print(
        f"defaults: {chosen['config'].label()} C={chosen['C']:g} (validation "
        f"{chosen['top1']:.4f}); best was {top['config'].label()} C={top['C']:g} "
        f"({top['top1']:.4f})",
        flush=True,
    )
    return chosen, top


def _test_rows(stage1, stage2, chosen: dict, best_size: int, variants, current: Config) -> list:
    """The Test table's rows: (descriptor, its raw config or None, its PCA record or None)."""
    default = chosen["config"]
    pca_pipeline = [r for r in stage1 if _is_pipeline_pca(r)]
    pca_all = _pca_records(stage1)
    pca_cnn = [
        r
        for r in stage1
        if r["config"].pca != "raw" and r["config"].weight == 0.0 and not r["config"].standardise
    ]
    standardised = [r for r in stage1 if r["config"].standardise]
    defaults_record = {"config": default, **{k: v for k, v in chosen.items() if k != "config"}}
    rows = [("cnn", Config(size, None, None, "raw"), _best(pca_cnn, size=size)) for size in SIZES]
    rows += [(f"colour {n}", Config(None, n, None, "raw"), None) for n in COLOUR_VARIANTS]
    rows += [
        (
            f"cnn+{PIPELINE_COLOUR}",
            Config(size, PIPELINE_COLOUR, 1.0, "raw"),
            _best(pca_pipeline, size=size),
        )
        for size in SIZES
    ]
    rows += [
        (f"cnn+{n}", Config(best_size, n, 1.0, "raw"), _best(pca_all, colour=n)) for n in variants
    ]
    rows.append(
        (
            f"cnn+{PIPELINE_COLOUR}, standardised before PCA",
            None,
            _best(standardised, size=best_size),
        )
    )
    rows = [  # the defaults replace the fold-0 pick in their own row
        (
            name,
            raw,
            defaults_record
            if raw is not None and name == f"cnn+{default.colour}" and raw.size == default.size
            else pca,
        )
        for name, raw, pca in rows
    ]
    current_record = max((r for r in stage2 if r["config"] == current), key=_key)
    rows.append((f"cnn+{PIPELINE_COLOUR}, current defaults", None, current_record))
    return rows


def _test_table(runner: Runner, splits: Splits, rows, stage1, default: Config) -> list[dict]:
    """Each row refitted on all of Training and scored once on Test (raw and PCA columns)."""
    test_groups, slots = [], []
    for index, (_, raw_config, pca_record) in enumerate(rows):
        if raw_config is not None:
            fields = ("size", "colour", "weight", "pca")
            raw_val = _best(stage1, **{field: getattr(raw_config, field) for field in fields})
            test_groups.append((raw_config, ["raw"], [raw_val["C"]]))
            slots.append((index, "raw", raw_val))
        if pca_record is not None:
            config = pca_record["config"]
            test_groups.append((config, [config.pca], [pca_record["C"]]))
            slots.append((index, "pca", pca_record))
    test_results = runner.run(test_groups, splits.train, splits.test)
    table = []
    for index, (name, _, _) in enumerate(rows):
        entry = {"descriptor": name, "input_size": None}
        for (slot, kind, val), result in zip(slots, test_results, strict=True):
            if slot == index:
                entry.update(_test_entry(kind, val, result, default))
        table.append(entry)
    return table


def _test_entry(kind: str, validation: dict, result: dict, default: Config) -> dict:
    config = result["config"]
    entry = {
        "input_size": config.size,
        f"validation_top1_{kind}": validation["top1"],
        f"validation_folds_{kind}": FOLDS if "k_mean" in validation else 1,
        f"test_top1_{kind}": result["top1"],
        f"test_errors_{kind}": result["errors"],
        f"C_{kind}": result["C"],
        f"regParam_{kind}": result["regParam"],
    }
    if kind == "pca":
        entry.update(
            colour_weight=config.weight, pca=config.pca, k=result["k"], default=config == default
        )
    return entry


def _at_defaults(table: list[dict], default: Config) -> dict:
    at_default = {}
    for entry in table:
        if entry.get("default"):
            at_default["combination_pca"] = entry
        if entry["input_size"] == default.size and entry["descriptor"] == "cnn":
            at_default["cnn_raw"] = entry
        if entry["input_size"] == default.size and entry["descriptor"] == default.name:
            at_default["combination_raw"] = entry
        if entry["descriptor"] == f"colour {default.colour}":
            at_default["colour_raw"] = entry
    return at_default


def study(data: Dataset, store: dict, jobs: int) -> dict:
    """The descriptor study: validation design, the fold-0 grid, finalists on every fold, the
    defaults chosen on validation, and each descriptor scored once on Test."""
    splits = _splits(data)
    runner = Runner(store, data.labels, jobs)
    clock = time.perf_counter()
    current = Config(  # the pipeline's defaults today: 224 px, colour_weight 8, variance 0.95
        efficientnet_onnx.INPUT_SIZE,
        PIPELINE_COLOUR,
        FeaturizeOptions().colour_weight,
        f"v{RunConfig.pca_variance:g}",
    )
    validation = _validation_design(data, runner, splits)
    stage1, best_size, variants = _stage1(runner, splits, clock)
    stage2 = _stage2(runner, splits, stage1, current, clock)
    chosen, top = _choose_defaults(stage2)
    default = chosen["config"]
    rows = _test_rows(stage1, stage2, chosen, best_size, variants, current)
    table = _test_table(runner, splits, rows, stage1, default)
    print(f"Test fits: {time.perf_counter() - clock:.0f} s", flush=True)
    test_labels = set(data.labels[splits.test_all].tolist())
    return {
        "test_images": len(splits.test),
        "test_images_excluded": int(len(splits.test_all) - len(splits.test)),
        "test_classes_excluded": sorted(test_labels - splits.known),
        "training_images": len(splits.train),
        "classes": len(splits.known),
        "validation": validation,
        "stage1_fold0": [_serialise(r) for r in stage1],
        "stage2_all_folds": [_serialise(r) for r in stage2],
        "defaults": {
            **_serialise(chosen),
            "spark_regParam_full_training": 1.0 / (chosen["C"] * len(splits.train)),
            "elasticNetParam": 0.0,
            "best_validation_config": _serialise(top),
            "rule": f"max mean {FOLDS}-fold top-1 (then log-loss); within {TOLERANCE:.1%} "
            "prefer the smaller input size, the pipeline's colour descriptor, fewer components",
        },
        "table": table,
        "at_defaults": _at_defaults(table, default),
        "analysis_s": time.perf_counter() - clock,
    }


def markdown_table(result: dict) -> str:
    speed = result.get("speed", {}).get("by_size", {})
    lines = [
        "| descriptor | input px | val top-1 raw | val top-1 PCA | Test top-1 raw "
        "| Test top-1 PCA (setting, k, w) | extraction images/s |",
        "|---|---|---|---|---|---|---|",
    ]

    def pct(value):
        return f"{value:.4f}" if value is not None else "-"

    for entry in result["table"]:
        size = entry["input_size"]
        measured = speed.get(str(size), {})
        images_per_s = measured.get("images_per_s_median")
        pca = "-"
        if "test_top1_pca" in entry:
            weight = entry.get("colour_weight")
            pca = (
                f"{pct(entry['test_top1_pca'])} ({entry['pca']}, k={entry['k']}"
                + (f", w={weight:g}" if weight else "")
                + ")"
            )
        name = entry["descriptor"] + (" **← defaults**" if entry.get("default") else "")
        star = "*" if entry.get("validation_folds_pca") == FOLDS else ""
        rate = "-"
        if images_per_s and size:
            rate = f"{images_per_s:.0f} ({measured['images_per_s_best']:.0f})"
        lines.append(
            f"| {name} | {size or '-'} | {pct(entry.get('validation_top1_raw'))} "
            f"| {pct(entry.get('validation_top1_pca'))}{star} "
            f"| {pct(entry.get('test_top1_raw'))} | {pca} "
            f"| {rate} |"
        )
    lines.append("")
    lines.append(
        "Validation: frame-blocked fold 0 of Training (* = mean of the 5 folds, C tuned). "
        f"Test: {result['study']['test_images']} images of classes seen in Training "
        f"({result['study']['test_images_excluded']} excluded). images/s: describe_images "
        "end to end, 2 processes x 1 thread, median (best) of the rounds."
    )
    if result.get("real_photos"):
        lines += ["", "Real photos (benchmarks/real_photos.py):", ""]
        lines.append(real_photos.markdown(result["real_photos"]["rows"]))
    if result.get("real_photos", {}).get("transfer"):
        transfer = result["real_photos"]["transfer"]
        lines += [
            "",
            f"Across sources ({transfer['model']}, raw classifier, C = {real_photos.C}):",
            "",
        ]
        lines.append(real_photos.transfer_markdown(transfer["rows"]))
    return "\n".join(lines)


def main_real_photos(args: argparse.Namespace) -> int:
    """Only the real-photo section, merged into the saved result (the studio study is slow)."""
    data = real_photos.list_real(args.data, args.grocery, args.photos)
    store = real_photos.extract_real(data, args.cache, args.jobs, args.model)
    rows = real_photos.study(data, store, args.model)
    transfer = real_photos.transfer_study(data, store)
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    measured = {row["model"] for row in rows}  # other models' rows are kept
    kept = [r for r in result.get("real_photos", {}).get("rows", []) if r["model"] not in measured]
    result["real_photos"] = {
        "rows": kept + rows,
        "transfer": {
            "model": f"{args.model} {real_photos.default_precision(args.model)}",
            "rows": transfer,
        },
        "images": dict(Counter(data.source.tolist())),
        "extraction_s": None if np.isnan(store["extraction_s"]) else float(store["extraction_s"]),
        "load_average_at_end": os.getloadavg(),
    }
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(real_photos.markdown(result["real_photos"]["rows"]))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with Training/ and Test/")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/quality.json"))
    parser.add_argument("--cache", type=Path, default=CACHE_DIR, help="feature cache folder")
    parser.add_argument("--speed-images", type=int, default=256)
    parser.add_argument("--speed-rounds", type=int, default=7)
    parser.add_argument("--skip-speed", action="store_true", help="reuse no speed numbers")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--grocery", type=Path, help="grocery-store folder: real-photo section")
    parser.add_argument("--photos", type=Path, help="labelled photos (folder per fruit)")
    parser.add_argument("--real-photos-only", action="store_true", help="just that section")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="real-photo section's model")
    return parser


def _extract_and_time(args: argparse.Namespace, data: Dataset, specs, started: float):
    """Every size's features (cached) and, unless skipped, the speed of each size."""
    with ProcessPoolExecutor(
        args.jobs, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(specs,)
    ) as pool:
        extracted = extract(data, specs, pool, args.cache)
        print(f"features ready after {time.perf_counter() - started:.0f} s", flush=True)
        speed = (
            None
            if args.skip_speed
            else measure_speed(data, pool, args.speed_images, args.speed_rounds)
        )
    print(f"speed measured after {time.perf_counter() - started:.0f} s", flush=True)
    return extracted, speed


def _described(args, data: Dataset, specs, extracted: dict, speed, store: dict) -> dict:
    """The result's header: data, model, machine, extraction and speed, colour widths."""
    return {
        "data": str(args.data),
        "images": len(data.paths),
        "model": {
            "id": specs[0].model_id,
            "sha256": specs[0].sha256,
            "feature_dim": specs[0].feature_dim,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "extraction": {
            **extracted,
            "images_per_s_full_pass": {
                name: len(data.paths) / wall
                for name, wall in extracted["extraction_wall_s"].items()
            },
        },
        "speed": speed or {},
        "colour_variants": {
            name: int(store[f"colour:{name}"].shape[1]) for name in COLOUR_VARIANTS
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.real_photos_only:
        return main_real_photos(args)
    started = time.perf_counter()
    data = list_images(args.data)
    if not data.paths:
        parser.error(f"no images under {args.data}/{{Training,Test}}/<class>/")
    specs = [resolve_model(input_size=size) for size in SIZES]
    print(f"{len(data.paths)} images; model {specs[0].model_id} {specs[0].sha256[:12]}", flush=True)
    extracted, speed = _extract_and_time(args, data, specs, started)
    store = extracted.pop("features")
    for size in SIZES:
        check_combine(store, size)
    result = _described(args, data, specs, extracted, speed, store)
    result["study"] = study(data, store, args.jobs)
    result["table"] = result["study"].pop("table")
    result["runtime_s"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.grocery and args.photos:
        args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
        main_real_photos(args)
        result = json.loads(args.out.read_text())
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print()
    print(markdown_table(result))
    defaults = result["study"]["defaults"]
    print(
        f"\ndefaults: input {defaults['input_size']} px, colour {defaults['colour']} "
        f"weight {defaults['colour_weight']:g}, PCA {defaults['reduction']}, LR C={defaults['C']:g}"
        f" -> Spark regParam {defaults['spark_regParam_full_training']:.3g} "
        f"(elasticNetParam 0, standardization on); runtime {result['runtime_s']:.0f} s; "
        f"wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

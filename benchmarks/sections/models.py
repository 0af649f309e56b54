"""Which model and precision to pick: speed and accuracy of Lite0/1/2 in fp32 and int8, one table.

Every configuration sees the same images in the same worker processes, chunk by chunk in turn,
so their model-only timings are interleaved in time and comparable on a shared machine (the
ratios are the result, not the absolute images/s). Accuracy is measured as
``benchmarks/quality.py`` does (its functions, not a copy): on Fruits-360, multinomial logistic
regression after the pipeline's centred PCA on the blocked validation folds of Training; on real
photos, trained on grocery-store ``train`` and scored on its ``val`` (fruit level, 19 classes).
Both for the default descriptor (CNN + colour histogram) and the CNN block alone, which is the
only part that the model or its precision changes. Features are cached under /tmp.

    PYTHONPATH=src python -m benchmarks --only models   # or benchmarks/sections/models.py FOLDS
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import quality

from fruitspark.decode import decode_image
from fruitspark.model import embed, new_session, resolve_model
from fruitspark.preprocess import colour_histogram, resize_square, to_tensor

TITLE = "Models and precisions: speed and accuracy"
SLOW = True
CONFIGS = [(f"efficientnet_lite{n}", p) for n in (0, 1, 2) for p in ("fp32", "int8")]
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CACHE = Path("/tmp/fruitspark-models")
RESULT = Path(__file__).resolve().parents[1] / "results" / "models.json"
CHUNK, BATCH = 32, 8
DEFAULT_WEIGHT, DEFAULT_VARIANCE, C_BOTH, C_CNN = 8.0, "v0.95", 10.0, 1.0
_WORKER: dict = {}


def _init(specs) -> None:
    _WORKER["models"] = [(spec, new_session(Path(spec.path).read_bytes(), 1)) for spec in specs]


def _chunk(paths: list[str]) -> tuple[list[np.ndarray], list[float], np.ndarray]:
    """Each configuration's CNN features for ``paths``, its model-only seconds, the histograms."""
    contents = [Path(path).read_bytes() for path in paths]
    features, seconds, pictures = [], [], {}
    for spec, session in _WORKER["models"]:
        size = spec.input_size
        if size not in pictures:
            pictures[size] = [decode_image(data, min_side=size) for data in contents]
        tensors = np.stack(
            [to_tensor(resize_square(p, size), spec.normalisation) for p in pictures[size]]
        )
        start = time.perf_counter()
        out = [embed(session, spec, tensors[i : i + BATCH]) for i in range(0, len(tensors), BATCH)]
        seconds.append(time.perf_counter() - start)
        features.append(np.concatenate(out))
    colour = np.stack([colour_histogram(p) for p in next(iter(pictures.values()))])
    return features, seconds, colour


def extract(paths: list[str], specs) -> dict:
    """Features of every configuration (cached by model checksums and image list)."""
    key = hashlib.sha256(json.dumps([[s.sha256 for s in specs], paths]).encode()).hexdigest()
    cache = CACHE / f"features-{key[:16]}.npz"
    if cache.exists():
        return dict(np.load(cache))
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    with ProcessPoolExecutor(
        2, mp_context=get_context("spawn"), initializer=_init, initargs=(specs,)
    ) as pool:
        parts = list(pool.map(_chunk, chunks))
    store = {"colour": np.concatenate([part[2] for part in parts])}
    for index, spec in enumerate(specs):
        name = f"{spec.model_id}:{spec.precision}"
        store[name] = np.concatenate([part[0][index] for part in parts])
        store[f"seconds:{name}"] = np.asarray([part[1][index] for part in parts])
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **store)
    return store


def _descriptor(store: dict, name: str, colour_weight: float | None) -> np.ndarray:
    """The CNN block alone (``None``) or featurize.combine's concat(cnn, w * sqrt(hist))."""
    if colour_weight is None:
        return store[name]
    return np.hstack([store[name], np.float32(colour_weight) * np.sqrt(store["colour"])])


def _pca_score(x_fit, y_fit, x_eval, y_eval, c: float) -> dict:
    pca = quality.fit_pca(x_fit)
    k = quality.pca_k(pca, DEFAULT_VARIANCE)
    fit, held = quality.project_k(pca, x_fit, k), quality.project_k(pca, x_eval, k)
    return quality.fit_score(fit, y_fit, held, y_eval, c)


def _jobs(
    store: dict, fruits: quality.Dataset, grocery: dict, folds: int, configs: list
) -> list[tuple]:
    """(config, descriptor, set, fit/eval arrays, C) for every score the table needs."""
    n = len(fruits.paths)
    splits = quality.blocked_folds(fruits, np.arange(n))[:folds]
    jobs = []
    for model, precision in configs:
        name = f"{model}:{precision}"
        for label, weight, c in (("default", DEFAULT_WEIGHT, C_BOTH), ("cnn", None, C_CNN)):
            x = _descriptor(store, name, weight)
            for fit, held in splits:
                arrays = (x[fit], fruits.labels[fit], x[held], fruits.labels[held])
                jobs.append((name, label, "fruits360", arrays, c))
            fit, held = grocery["train"] + n, grocery["val"] + n
            arrays = (
                x[fit],
                grocery["labels"][grocery["train"]],
                x[held],
                grocery["labels"][grocery["val"]],
            )
            jobs.append((name, label, "grocery", arrays, c))
    return jobs


def _score(job: tuple) -> tuple:
    name, label, dataset, arrays, c = job
    result = _pca_score(*arrays, c)
    return name, label, dataset, result["top1"], result["errors"], len(arrays[3])


def _images(
    fruits_root: Path, grocery_root: Path, every: int = 1
) -> tuple[quality.Dataset, dict, list[str]]:
    """Fruits-360 Training (every ``every``-th image, for the validation folds) and grocery-store
    train + val, one path list."""
    everything = quality.list_images(fruits_root)
    keep = everything.splits == "Training"
    keep &= np.arange(len(keep)) % every == 0
    fruits = quality.Dataset(
        [p for p, k in zip(everything.paths, keep, strict=True) if k],
        everything.labels[keep],
        everything.splits[keep],
    )
    grocery_paths, labels, split = [], [], []
    for part in ("train", "val"):
        root = grocery_root / part / "Fruit"
        for path in sorted(root.rglob("*.jpg")):
            grocery_paths.append(str(path))
            labels.append(path.relative_to(root).parts[0])
            split.append(part)
    split = np.asarray(split)
    grocery = {
        "labels": np.asarray(labels),
        "train": np.flatnonzero(split == "train"),
        "val": np.flatnonzero(split == "val"),
    }
    return fruits, grocery, fruits.paths + grocery_paths


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def measure(ctx=None, folds: int | None = None, configs=None, every: int = 1) -> dict:
    """Extract with every configuration, then score each on both data sets (2 processes)."""
    started = time.perf_counter()
    folds = folds or (1 if getattr(ctx, "quick", False) else quality.FOLDS)
    configs = configs or CONFIGS
    specs = [resolve_model(model, precision=precision) for model, precision in configs]
    fruits_root = getattr(ctx, "data", DATA / "fruits360-sample")
    grocery_root = getattr(ctx, "grocery", DATA / "grocery-store")
    fruits, grocery, paths = _images(fruits_root, grocery_root, every)
    store = extract(paths, specs)
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        scores = list(pool.map(_score, _jobs(store, fruits, grocery, folds, configs)))
    rows = []
    for spec in specs:
        name = f"{spec.model_id}:{spec.precision}"
        fp32 = store[f"{spec.model_id}:fp32"]
        cosine = _cosine(store[name], fp32)
        row = {
            "model": spec.model_id,
            "precision": spec.precision,
            "input_size": spec.input_size,
            "model_images_per_s": round(2 * len(paths) / store[f"seconds:{name}"].sum(), 1),
            "cosine_to_fp32_median": round(float(np.median(cosine)), 4),
            "cosine_to_fp32_min": round(float(cosine.min()), 4),
            "onnx_mb": round(Path(spec.path).stat().st_size / 1e6, 1),
        }
        for label in ("default", "cnn"):
            for dataset in ("fruits360", "grocery"):
                hits = [
                    (t, e, n)
                    for nm, lb, ds, t, e, n in scores
                    if (nm, lb, ds) == (name, label, dataset)
                ]
                row[f"{dataset}_{label}_top1"] = round(
                    100 * float(np.mean([h[0] for h in hits])), 2
                )
                row[f"{dataset}_{label}_errors"] = int(sum(h[1] for h in hits))
                if dataset == "fruits360":
                    row[f"{dataset}_{label}_top1_by_fold"] = [round(100 * h[0], 2) for h in hits]
        rows.append(row)
    return {
        "images": {
            "fruits360_training": len(fruits.paths),
            "grocery_train": len(grocery["train"]),
            "grocery_val": len(grocery["val"]),
        },
        "folds": folds,
        "fruits360_every": every,
        "layout": "2 processes x 1 ONNX Runtime thread, batch 8, model only",
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }


def render(result: dict) -> str:
    base = next(
        r for r in result["rows"] if (r["model"], r["precision"]) == ("efficientnet_lite0", "fp32")
    )
    lines = [
        "### Models and precisions",
        "",
        f"Model speed: {result['layout']}, interleaved in one run (shared machine: read the "
        "ratios). Top-1 in %: Fruits-360 blocked validation folds of Training "
        f"({result['folds']} of {quality.FOLDS} folds, {result['images']['fruits360_training']} "
        f"images: every {result.get('fruits360_every', 1)} of Training) and "
        f"grocery-store val ({result['images']['grocery_val']} real photos, trained on "
        f"{result['images']['grocery_train']}), default descriptor / CNN block alone.",
        "",
        "| model | precision | input | model images/s | vs Lite0 fp32 | cosine to fp32 "
        "(median, min) | Fruits-360 top-1 | real photos top-1 | ONNX MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        ratio = r["model_images_per_s"] / base["model_images_per_s"]
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['input_size']} | {r['model_images_per_s']} "
            f"| {ratio:.2f} | {r['cosine_to_fp32_median']:.3f}, {r['cosine_to_fp32_min']:.3f} | "
            f"{r['fruits360_default_top1']:.2f} / {r['fruits360_cnn_top1']:.2f} | "
            f"{r['grocery_default_top1']:.1f} / {r['grocery_cnn_top1']:.1f} | {r['onnx_mb']} |"
        )
    folds = [r for r in result["rows"] if r.get("fruits360_default_top1_by_fold")]
    if folds:
        lines += ["", "Fruits-360 top-1 per fold, default descriptor:"]
        lines += [
            f"{r['model']} {r['precision']} "
            + ", ".join(f"{v:.2f}" for v in r["fruits360_default_top1_by_fold"])
            for r in folds
        ]
        lines[-len(folds) :] = [f"- {line}" for line in lines[-len(folds) :]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # models.py [FOLDS [EVERY [MODEL:PRECISION ...]]]
    folds = int(sys.argv[1]) if len(sys.argv) > 1 else quality.FOLDS
    every = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    chosen = [tuple(arg.split(":")) for arg in sys.argv[3:]] or None
    measured = measure(folds=folds, configs=chosen, every=every)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(measured, indent=1) + "\n")
    print(render(measured))

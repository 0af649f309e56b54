"""Per-step CPU ms per image outside the model, before and after issue 11, default descriptor.

Python steps are timed in this process on the same images, before and after in alternating
rounds (median of the rounds), so a shared machine slows both alike. "Before" is the code as it
was: Pillow decoding every JPEG and the colour histogram's arithmetic binning, kept here as the
reference; "after" is the package's current ``decode_image`` and ``colour_histogram``. The JVM's
side (listing and reading files, Arrow to and from Python, Parquet) cannot be timed per step from
Python: it is the run's CPU outside the Python workers, per image, from a ``fruitspark run`` of
the same images in a fresh JVM (unchanged by issue 11, so the same in both columns).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from benchmarks.common import Context, cpu_ms_per_image, fruitspark_run, median, spread, table
from fruitspark.decode import _draft_size, _upright, decode_image, to_rgb
from fruitspark.featurize import FeaturizeOptions, ImageResult, _to_batch, combine
from fruitspark.model import embed, new_session, resolve_model
from fruitspark.preprocess import (
    COLOUR_BINS,
    COLOUR_DIM,
    COLOUR_SIDE,
    colour_histogram,
    resize_square,
    to_tensor,
)

TITLE = "Per-step CPU per image"
SLOW = False
ROUNDS = 5
ROWS, BATCH = 64, 8  # the pipeline's Arrow batch and model batch


def pillow_decode(data: bytes, min_side: int) -> Image.Image:
    """Before: every image through Pillow (draft mode for big JPEGs), as decode_image was."""
    image = Image.open(io.BytesIO(data))
    if image.format in ("JPEG", "MPO"):
        image.draft("RGB", _draft_size(*image.size, min_side))
    image.load()
    return to_rgb(_upright(image))


def arithmetic_histogram(image: Image.Image) -> np.ndarray:
    """Before: the colour histogram with per-pixel arithmetic binning (same bins as now)."""
    small = image.copy()
    small.thumbnail((COLOUR_SIDE, COLOUR_SIDE), Image.Resampling.BILINEAR)
    hsv = np.asarray(small.convert("HSV"), dtype=np.uint16).reshape(-1, 3)
    foreground = ~((hsv[:, 1] < 0.12 * 256) & (hsv[:, 2] > 0.90 * 256))
    if foreground.mean() >= 0.05:
        hsv = hsv[foreground]
    h, s, v = COLOUR_BINS
    index = (hsv[:, 0] * h >> 8) * (s * v) + (hsv[:, 1] * s >> 8) * v + (hsv[:, 2] * v >> 8)
    counts = np.bincount(index, minlength=COLOUR_DIM).astype(np.float32)
    return counts / max(float(counts.sum()), 1.0)


def _ms(function: Callable, items: list) -> tuple[float, list]:
    start = time.process_time()
    out = [function(item) for item in items]
    return 1000 * (time.process_time() - start) / len(items), out


def python_steps(contents: list[bytes], spec) -> dict[str, dict[str, float]]:
    """Median CPU ms per image of each Python step, before and after, in alternating rounds."""
    size, norm = spec.input_size, spec.normalisation
    rounds: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    session = new_session(Path(spec.path).read_bytes(), threads=1)
    for _ in range(ROUNDS):
        for when, decode, histogram in (
            ("before", pillow_decode, arithmetic_histogram),
            ("after", decode_image, colour_histogram),
        ):
            times = rounds[when]
            ms, pictures = _ms(lambda data, d=decode: d(data, min_side=size), contents)
            times.setdefault("decode", []).append(ms)
            ms, squares = _ms(lambda p: resize_square(p, size), pictures)
            times.setdefault("pad + resize", []).append(ms)
            ms, tensors = _ms(lambda p: to_tensor(p, norm), squares)
            times.setdefault("normalise", []).append(ms)
            ms, colours = _ms(histogram, pictures)
            times.setdefault("colour histogram", []).append(ms)
            times.setdefault("Arrow in/out", []).append(_arrow_ms(contents, tensors, colours))
            batches = [np.stack(tensors[i : i + BATCH]) for i in range(0, len(tensors), BATCH)]
            ms, _ = _ms(lambda b: embed(session, spec, b), batches)
            times.setdefault("model (for scale)", []).append(ms / BATCH)
    return {when: {k: round(median(v), 3) for k, v in t.items()} for when, t in rounds.items()}


def _arrow_ms(contents: list[bytes], tensors: list, colours: list) -> float:
    """Bytes out of an Arrow batch and the result batch built, per image, in ROWS-row batches."""
    options = FeaturizeOptions()
    features = [combine(np.zeros(1280, np.float32), c, options) for c in colours]
    start, rows = time.process_time(), len(contents)
    for first in range(0, rows, ROWS):
        chunk = contents[first : first + ROWS]
        batch = pa.RecordBatch.from_pydict(
            {"path": [f"file:/x/{i}.jpg" for i in range(len(chunk))], "content": chunk}
        )
        batch.column("content").to_pylist()
        results = [ImageResult(100, 100, f, None) for f in features[first : first + ROWS]]
        schema = pa.schema([batch.schema.field("path"), *_result_fields()])
        _to_batch(batch, schema, results, {})
    return 1000 * (time.process_time() - start) / rows


def _result_fields():
    from fruitspark.featurize import RESULT_FIELDS

    return RESULT_FIELDS


def measure(ctx: Context) -> dict:
    files = spread(ctx.files(), 100 if ctx.quick else 300)
    contents = [(ctx.data / path).read_bytes() for path in files]
    spec = resolve_model()
    steps = python_steps(contents, spec)
    run_files = spread(ctx.files(), 300 if ctx.quick else 1500)
    run = fruitspark_run(ctx, ctx.input_tree(f"steps-{len(run_files)}", run_files), "steps")
    featurizing = cpu_ms_per_image(run, window=True)
    jvm = round(featurizing.get("driver JVM", 0.0), 3)
    for when in ("before", "after"):
        steps[when]["JVM: file reads, Arrow, Parquet (run)"] = jvm
    outside = {
        when: round(sum(v for k, v in steps[when].items() if not k.startswith("model")), 3)
        for when in ("before", "after")
    }
    return {
        "images": len(files),
        "run_images": len(run_files),
        "model": f"{spec.model_id} {spec.precision}",
        "steps": steps,
        "outside_model_ms": outside,
        "run_cpu_ms_per_image_featurizing": featurizing,
    }


def render(result: dict) -> str:
    before, after = result["steps"]["before"], result["steps"]["after"]
    rows = [
        [step, f"{before[step]:.3f}", f"{after[step]:.3f}", f"{after[step] / before[step]:.2f}"]
        for step in before
        if before[step]
    ]
    total = result["outside_model_ms"]
    rows.append(
        [
            "**outside the model, total**",
            f"**{total['before']:.2f}**",
            f"**{total['after']:.2f}**",
            f"**{total['after'] / total['before']:.2f}**",
        ]
    )
    return (
        f"CPU ms per image, default descriptor, model {result['model']}: Python steps on "
        f"{result['images']} Fruits-360 images in this process, before and after in alternating "
        f"rounds (median of {ROUNDS}); the JVM's share from a `fruitspark run` of "
        f"{result['run_images']} images (driver JVM CPU while the workers were busy, per image; "
        "the same code before and after). Shared machine: read the ratios.\n\n"
        + table(["step", "before ms", "after ms", "after / before"], rows)
    )

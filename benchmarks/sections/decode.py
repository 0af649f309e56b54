"""Decode and preprocess: each step's ms per image in one process, images already in memory.

The per-image work a task adds to the model (``decode_image`` with draft mode, ``resize_square``,
``to_tensor``, ``colour_histogram``), timed step by step; the median of three passes.
"""

from __future__ import annotations

import time

from benchmarks.common import Context, log, median, spread, table
from fruitspark.decode import decode_image
from fruitspark.model import resolve_model
from fruitspark.preprocess import colour_histogram, resize_square, to_tensor

TITLE = "Decode and preprocess"
SLOW = False
PASSES = 3
STEPS = ("decode", "resize_square", "to_tensor", "colour_histogram")


def _one_pass(contents: list[bytes], size: int, normalisation) -> dict[str, float]:
    seconds = dict.fromkeys(STEPS, 0.0)
    for content in contents:
        t0 = time.perf_counter()
        image = decode_image(content, min_side=size)
        t1 = time.perf_counter()
        square = resize_square(image, size)
        t2 = time.perf_counter()
        to_tensor(square, normalisation)
        t3 = time.perf_counter()
        colour_histogram(image)
        t4 = time.perf_counter()
        for step, took in zip(STEPS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            seconds[step] += took
    return seconds


def measure(ctx: Context) -> dict:
    spec = resolve_model()
    contents = [
        (ctx.data / path).read_bytes() for path in spread(ctx.files(), 600 if ctx.quick else 3000)
    ]
    passes = [_one_pass(contents, spec.input_size, spec.normalisation) for _ in range(PASSES)]
    totals = [sum(seconds.values()) for seconds in passes]
    middle = passes[totals.index(sorted(totals)[len(totals) // 2])]
    rate = len(contents) / median(totals)
    log(f"decode + preprocess: {rate:.0f} images/s per core")
    return {
        "images": len(contents),
        "input_size": spec.input_size,
        "images_per_s_per_core": round(rate, 1),
        "passes_images_per_s": [round(len(contents) / total, 1) for total in totals],
        "ms_per_image": {step: round(1000 * s / len(contents), 3) for step, s in middle.items()},
    }


def render(result: dict) -> str:
    rows = [[step, f"{ms:.3f}"] for step, ms in result["ms_per_image"].items()]
    rows.append(["**total**", f"{1000 / result['images_per_s_per_core']:.3f}"])
    passes = ", ".join(f"{rate:.0f}" for rate in result["passes_images_per_s"])
    return "\n".join([
        f"One process, {result['images']:,} sample JPEGs already in memory, "
        f"`decode_image(min_side={result['input_size']})` + `resize_square` + `to_tensor` + "
        f"`colour_histogram`: **{result['images_per_s_per_core']:.0f} images/s per core** "
        f"(passes: {passes}). The steps of the median pass:",
        "",
        table(["step", "ms/image"], rows),
    ])  # fmt: skip

"""Scaling with the number of images: ``fruitspark run`` on growing inputs, a fresh JVM each.

Whole classes of the sample (both splits), hard-linked into a folder per size. The bare fp32
model in the pipeline's layout is timed before and after the runs, so the whole command's
images/s at about 3,000 images is quoted as a ratio of it (issue 9). A straight line through
(images, wall s) splits the cost into per image and fixed.
"""

from __future__ import annotations

import shutil

import numpy as np

from benchmarks.bare_model import ModelPool, pipeline_layout
from benchmarks.common import Context, class_subset, ratio, table
from benchmarks.sections.e2e import measured_run

TITLE = "Scaling with the number of images"
SLOW = False
SIZES = (1000, 3000, 10_000)  # 10,000: the whole 9,480-image sample
QUICK_SIZES = (1000, 3000)
RATIO_AT = 3000


def line_fit(points: list[tuple[int, float]]) -> dict:
    """Least-squares wall s = slope * images + intercept, and its R^2."""
    x, y = (np.array(values, float) for values in zip(*points, strict=True))
    slope, intercept = np.polyfit(x, y, 1)
    residual = float(((y - (slope * x + intercept)) ** 2).sum())
    total = float(((y - y.mean()) ** 2).sum())
    return {"slope_ms": round(1000 * float(slope), 3), "intercept_s": round(float(intercept), 2),
            "r2": round(1 - residual / total, 4) if total else 1.0}  # fmt: skip


def measure(ctx: Context) -> dict:
    files = ctx.files()
    sizes = sorted({min(size, len(files)) for size in (QUICK_SIZES if ctx.quick else SIZES)})
    runs = []
    with ModelPool(ctx) as pool:
        before = pool.rate(pipeline_layout(ctx), 5.0)
        for size in sizes:
            tree = ctx.input_tree(f"scale-{size}", class_subset(files, size))
            runs.append(measured_run(ctx, tree, f"scale-{size}"))
            if tree != ctx.data:
                shutil.rmtree(tree, ignore_errors=True)
        after = pool.rate(pipeline_layout(ctx), 5.0)
    bare = {**after, "images_per_s": round((before["images_per_s"] + after["images_per_s"]) / 2, 2),
            "before": before["images_per_s"], "after": after["images_per_s"]}  # fmt: skip
    for run in runs:
        run["whole_to_bare"] = ratio(run["wall_images_per_s"], bare["images_per_s"])
    result = {"bare": bare, "runs": runs}
    if len(runs) > 1:
        result["fit"] = line_fit([(run["images"], run["wall_s"]) for run in runs])
    near = min(runs, key=lambda run: abs(run["images"] - RATIO_AT))
    if abs(near["images"] - RATIO_AT) <= 0.1 * RATIO_AT:
        result[f"at_{RATIO_AT}"] = {"images": near["images"], "bare": bare,
                                    "wall_images_per_s": near["wall_images_per_s"]}  # fmt: skip
    return result


def render(result: dict) -> str:
    bare = result["bare"]
    rows = [
        [
            f"{run['images']:,}",
            f"{run['wall_s']:.1f}",
            f"{1000 * run['wall_s'] / run['images']:.2f}",
            f"{run['stages']['featurize']:.1f}",
            f"{run['featurize_images_per_s']:.1f}",
            f"{run['wall_images_per_s']:.1f}",
            f"**{run['whole_to_bare']:.2f}**",
            f"{run['cpu_ms_per_image']['all']:.2f}",
            f"{run['outside_featurize_s']:.1f}",
            run["processes"]["others_cores"],
        ]
        for run in result["runs"]
    ]
    headers = ["images", "wall s", "wall ms/image", "featurize s", "featurize images/s",
               "whole images/s", "whole / bare model", "CPU ms/image, all processes",
               "outside featurize, s", "others' cores"]  # fmt: skip
    out = [
        "Whole classes, hard-linked into a folder per size; default settings, a fresh JVM each. "
        f"The bare fp32 model (pipeline layout) measured before and after the runs: "
        f"{bare['before']:.1f} and {bare['after']:.1f} images/s, mean {bare['images_per_s']:.1f}.",
        "",
        table(headers, rows),
    ]  # fmt: skip
    if "fit" in result:
        fit = result["fit"]
        out += ["", f"A straight line through these points: {fit['slope_ms']:.2f} ms per image "
                f"plus {fit['intercept_s']:.1f} s fixed (R^2 = {fit['r2']:.3f})."]  # fmt: skip
    return "\n".join(out)

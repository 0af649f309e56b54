"""Tuning knobs: ``fruitspark run --no-report`` with one setting changed at a time.

Images/s of single runs depend on what else the machine runs; CPU ms per image (the run's own
processes while its workers were busy) is the fairer comparison, as a ratio to the defaults'
run in the same section.
"""

from __future__ import annotations

import shutil

from benchmarks.common import Context, class_subset, mb, ratio, table
from benchmarks.sections.e2e import measured_run

TITLE = "Tuning knobs"
SLOW = False
KNOBS = (  # label, extra CLI arguments
    ("defaults", ()),
    ("--batch-size 1", ("--batch-size", "1")),
    ("--batch-size 32", ("--batch-size", "32")),
    ("--rows-per-arrow-batch 16", ("--rows-per-arrow-batch", "16")),
    ("--rows-per-arrow-batch 1024", ("--rows-per-arrow-batch", "1024")),
    ("--images-per-partition 100", ("--images-per-partition", "100")),
    ("--threads-per-task 2 (4 threads on 2 cores)", ("--threads-per-task", "2")),
)


def measure(ctx: Context) -> dict:
    files = class_subset(ctx.files(), 500 if ctx.quick else 2000)
    tree = ctx.input_tree("tuning", files)
    runs = []
    for index, (label, extra) in enumerate(KNOBS):
        run = measured_run(ctx, tree, f"tuning-{index}", (*extra, "--no-report"))
        runs.append({"label": label, **run})
    if tree != ctx.data:
        shutil.rmtree(tree, ignore_errors=True)
    default = runs[0]
    for run in runs:
        run["speed_vs_default"] = ratio(
            run["featurize_images_per_s"], default["featurize_images_per_s"]
        )
        run["cpu_vs_default"] = ratio(run["cpu_ms_per_image_featurizing"]["all"],
                                      default["cpu_ms_per_image_featurizing"]["all"])  # fmt: skip
    return {"images": default["images"], "runs": runs}


def render(result: dict) -> str:
    rows = [
        [
            run["label"],
            run["settings"].get("featurize_partitions", "?"),
            f"{run['featurize_images_per_s']:.1f}",
            f"{run['speed_vs_default']:.2f}",
            f"{run['cpu_ms_per_image_featurizing'].get('python worker', 0):.2f}",
            f"{run['cpu_ms_per_image_featurizing'].get('driver JVM', 0):.2f}",
            f"**{run['cpu_vs_default']:.2f}**",
            mb(run["peak_worker_rss_mb"]),
            run["processes"]["others_cores"],
        ]
        for run in result["runs"]
    ]
    headers = [
        "setting",
        "partitions",
        "featurize images/s",
        "vs default",
        "worker CPU ms/image",
        "JVM CPU ms/image",
        "CPU vs default",
        "peak worker RSS",
        "others' cores",
    ]
    return "\n".join([
        f"`fruitspark run --no-report` on {result['images']:,} images (whole classes), one run "
        "each, in this order. CPU ms per image while the workers were busy counts only the run's "
        "own processes: on a shared machine it is the fair column.",
        "",
        table(headers, rows),
        "",
        "Recommended: one ONNX Runtime thread per task and one task per core "
        "(`spark.task.cpus` x `--threads-per-task` = the executor's cores, never more); keep the "
        "batch and Arrow batch defaults unless this table, re-measured on your machine, says "
        "otherwise (larger batches mostly cost worker memory).",
    ])  # fmt: skip

"""Ceiling: the bare model outside Spark, processes x ONNX Runtime threads x batch size.

What no Spark job on these cores can beat: ``new_session`` + ``embed`` (the pipeline's own
session options) on pre-decoded 224 px tensors, in processes started at the same instant.
"""

from __future__ import annotations

from benchmarks.bare_model import Layout, ModelPool, pipeline_layout
from benchmarks.common import Context, log, table

TITLE = "Ceiling: the bare model outside Spark"
SLOW = False
PROCESSES = (1, 2)
THREADS = (1, 2)
BATCHES = (1, 4, 8, 16, 32)


def measure(ctx: Context) -> dict:
    seconds = 3.0 if ctx.quick else 5.0
    rows = []
    with ModelPool(ctx) as pool:
        for processes in PROCESSES:
            for threads in THREADS:
                for batch in BATCHES:
                    row = pool.rate(Layout(processes, threads, batch), seconds)
                    log(f"ceiling {processes} x {threads}, batch {batch}: {row['images_per_s']}")
                    rows.append(row)
    best = max(rows, key=lambda row: row["images_per_s"])
    layout = pipeline_layout(ctx)
    pipeline = next(
        row for row in rows if Layout(row["processes"], row["threads"], row["batch"]) == layout
    )
    one_core = max((row for row in rows if row["processes"] * row["threads"] == 1),
                   key=lambda row: row["images_per_s"])  # fmt: skip
    return {
        "model": pool.spec.model_id,
        "cores": ctx.cores,
        "seconds_per_layout": seconds,
        "rows": rows,
        "best": best,
        "pipeline_layout": pipeline,
        "one_core": one_core,
        "two_core_scaling": round(best["images_per_s"] / one_core["images_per_s"], 2),
    }


def render(result: dict) -> str:
    index = {(row["processes"], row["threads"], row["batch"]): row for row in result["rows"]}
    rows = []
    for processes in PROCESSES:
        for threads in THREADS:
            over = " (oversubscribed)" if processes * threads > result["cores"] else ""
            cells = [
                f"{index[(processes, threads, batch)]['images_per_s']:.1f}" for batch in BATCHES
            ]
            rows.append([f"{processes} x {threads}{over}", *cells])
    best, pipe, one = result["best"], result["pipeline_layout"], result["one_core"]
    others = max(row["others_cores"] for row in result["rows"])
    return "\n".join([
        f"{result['model']} on 64 pre-decoded 224 px tensors of the sample, in spawned processes "
        f"that start each timing at the same instant; {result['seconds_per_layout']:.0f} s per "
        "layout split in three windows, median images/s of all processes together (other "
        f"processes used at most {others:.2f} cores during a layout):",
        "",
        table(["processes x threads", *(f"batch {b}" for b in BATCHES)], rows),
        "",
        f"Best: **{best['images_per_s']:.1f} images/s** ({best['processes']} x {best['threads']},"
        f" batch {best['batch']}); one core alone {one['images_per_s']:.1f} (batch {one['batch']}),"
        f" so the cores scale {result['two_core_scaling']:.2f} x. The pipeline's layout "
        f"({pipe['processes']} tasks x 1 thread, batch {pipe['batch']}): "
        f"{pipe['images_per_s']:.1f} images/s ({pipe['images_per_s'] / best['images_per_s']:.2f} x "
        "the best). Tasks x threads above the cores (oversubscribed) lose: ONNX Runtime's threads "
        "spin while they wait.",
    ])  # fmt: skip

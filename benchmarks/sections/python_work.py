"""Python work without Spark: ``describe_images`` (what a task runs) in one process per core.

Decode, preprocess, model and colour histogram on image bytes already in memory, in chunks of
the pipeline's Arrow batch, next to the bare model in the same layout: the ratio is what Spark
could reach if the JVM, Arrow and scheduling cost nothing.
"""

from __future__ import annotations

from benchmarks.bare_model import PIPELINE_BATCH, PIPELINE_ROWS, ModelPool, pipeline_layout
from benchmarks.common import Context, log, median, ratio, spread

TITLE = "Python work without Spark"
SLOW = False
RUNS = 3


def measure(ctx: Context) -> dict:
    count = 200 if ctx.quick else 800
    files = spread(ctx.files(), count)
    with ModelPool(ctx) as pool:
        bare = pool.rate(pipeline_layout(ctx), 3.0 if ctx.quick else 5.0)
        rates = pool.describe_rate(files, PIPELINE_BATCH, PIPELINE_ROWS, RUNS)
    log(f"python work: {median(rates):.1f} images/s, bare model {bare['images_per_s']:.1f}")
    return {
        "images": len(files),
        "processes": ctx.cores,
        "batch": PIPELINE_BATCH,
        "rows_per_chunk": PIPELINE_ROWS,
        "images_per_s": round(median(rates), 2),
        "runs": [round(rate, 2) for rate in rates],
        "bare": bare,
        "to_bare": ratio(median(rates), bare["images_per_s"]),
    }


def render(result: dict) -> str:
    bare = result["bare"]
    return (
        f"`describe_images` (decode, preprocess, model, colour histogram) on {result['images']} "
        f"images already in memory, in {result['processes']} processes x 1 thread, batch "
        f"{result['batch']}, chunks of {result['rows_per_chunk']} rows like the Arrow batches: "
        f"**{result['images_per_s']:.1f} images/s** (runs: "
        + ", ".join(f"{rate:.1f}" for rate in result["runs"])
        + f"), **{result['to_bare']:.2f} x** the bare model in the same layout measured just "
        f"before ({bare['images_per_s']:.1f} images/s). The gap is the per-image work outside "
        "the model, on the same cores."
    )

"""Fixed costs (issue 9): what a small run costs beyond Spark's own start-up.

All in fresh processes, interleaved, in one section run: a bare Spark session (start, one tiny
job, stop) as a user starts one (PySpark's builder, its defaults: the issue's yardstick) and the
same through fruitspark's own session builder (JIT at C1, the class archive of
``fruitspark.class_archive`` once it exists); ``fruitspark run`` on 30 images from a folder; the
same 30 through a manifest of ``path,label`` only (no sizes); and the refusal of an output that
already exists. Each is quoted as a ratio of the plain bare session measured alongside.
"""

from __future__ import annotations

import shutil
import sys

from benchmarks.common import (
    BenchError,
    Context,
    fruitspark_run,
    median,
    monitored,
    ratio,
    run_python,
    spread,
    table,
)

TITLE = "Fixed costs: a 30-image run against a bare Spark session"
SLOW = False
IMAGES = 30
NAMES = {
    "plain": "bare Spark session, PySpark's defaults (start, 1 job, stop)",
    "bare": "bare Spark session, fruitspark's builder (C1, class archive)",
    "folder": "run, 30 images, folder",
    "manifest": "run, same 30, manifest path,label",
    "refuse": "refuse an existing output",
}
ROUNDS, QUICK_ROUNDS = 3, 1


def plain_session(master: str) -> dict:
    """Start a session as a user does, run one tiny job, stop (called in a fresh process)."""
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.master(master).getOrCreate()
    rows = spark.range(10).count()
    spark.stop()
    return {"rows": rows}


def bare_session(master: str) -> dict:
    """Start a session as ``fruitspark run`` does, run one tiny job, stop (in a fresh process)."""
    from fruitspark.session import spark_session

    spark = spark_session(master, jit="c1")
    rows = spark.range(10).count()
    spark.stop()
    return {"rows": rows}


def _refuse_existing(ctx: Context, images, output) -> float:
    """Wall s of ``fruitspark run`` refusing an output that holds results (exit 2)."""
    command = [sys.executable, "-m", "fruitspark.cli", "run", str(images), str(output)]
    log_file = ctx.work / "logs" / "refuse.log"
    code, wall, _, _ = monitored([*command, "--master", ctx.master], log_file)
    if code != 2:
        raise BenchError(f"refusing an existing output exited {code}, not 2")
    return wall


def measure(ctx: Context) -> dict:
    files = spread(ctx.files(), IMAGES)
    tree = ctx.input_tree("fixed-30", files)
    manifest = ctx.work / "fixed-30.csv"
    lines = ["path,label", *(f"{tree / path},{path.parts[-2]}" for path in files)]
    manifest.write_text("\n".join(lines) + "\n")
    existing = ctx.work / "out" / "fixed-existing"
    existing.mkdir(parents=True, exist_ok=True)
    (existing / "summary.json").write_text("{}")
    rounds: dict[str, list[float]] = {kind: [] for kind in NAMES}
    stages: dict[str, dict] = {}
    for number in range(QUICK_ROUNDS if ctx.quick else ROUNDS):
        for kind in ("plain", "bare"):
            job = f"{__name__}:{kind}_session"
            rounds[kind].append(run_python(ctx, job, [ctx.master], kind)["wall_s"])
        for kind, source in (("folder", tree), ("manifest", manifest)):
            run = fruitspark_run(ctx, source, f"fixed-{kind}-{number}")
            rounds[kind].append(run["wall_s"])
            stages[kind] = run["stages"]
        rounds["refuse"].append(round(_refuse_existing(ctx, tree, existing), 2))
    shutil.rmtree(existing, ignore_errors=True)
    plain = median(rounds["plain"])
    return {
        "images": len(files),
        "rounds": rounds,
        "plain_session_s": plain,
        "bare_session_s": median(rounds["bare"]),
        "run_30_s": median(rounds["folder"]),
        "manifest_30_s": median(rounds["manifest"]),
        "refuse_existing_s": median(rounds["refuse"]),
        "ratios": {kind: ratio(median(rounds[kind]), plain) for kind in NAMES if kind != "plain"},
        "stages": stages,
    }


def render(result: dict) -> str:
    ratios = result.get("ratios", {})
    rows = [
        [
            NAMES.get(kind, kind),
            ", ".join(f"{value:.1f}" for value in values),
            f"{median(values):.1f}",
            "1.00" if kind == "plain" else f"{ratios.get(kind) or 0:.2f}",
        ]
        for kind, values in result.get("rounds", {}).items()
        if values
    ]
    text = table(["measure", "wall s per round", "median s", "x plain bare session"], rows)
    for kind, stages in result.get("stages", {}).items():
        parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in stages.items())
        text += f"\n\nStages of the last {kind} run (s): {parts}."
    return text

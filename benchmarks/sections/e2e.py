"""End to end: ``fruitspark run`` on the sample in a fresh JVM, next to the bare model.

The bare fp32 model in the pipeline's layout (a process per core, one thread, batch 8) is timed
right before and right after the run, in the same section, so the featurize stage's images/s is
quoted as a ratio of it. The run's process tree is watched through ``/proc``: CPU ms per image
over all its processes, peak RSS per role. The main run is int8, the default on CPUs with an
integer dot product (``model.default_precision``); a second run with ``--precision fp32``, the
default elsewhere, gives the fp32 ratio. The result names this CPU's default. Both models are
built (once per machine: ``model.built_model_path``) before anything is timed; the seconds the
build took, if it had not been done yet, are reported apart: a first run pays them once.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.bare_model import ModelPool, pipeline_layout
from benchmarks.common import Context, cpu_ms_per_image, fruitspark_run, mb, ratio, table
from fruitspark.model import DEFAULT_MODEL, built_model_path, default_precision

TITLE = "End to end"
SLOW = False
ROLES = ("driver JVM", "driver python", "python daemon", "python worker", "other")


def measured_run(ctx: Context, input_uri: Path, name: str, extra: tuple[str, ...] = ()) -> dict:
    """``fruitspark_run`` plus what the targets read: CPU ms per image (all processes, whole
    run, and while the workers were busy), peak RSS of one worker, time outside featurize."""
    run = fruitspark_run(ctx, input_uri, name, extra)
    run["cpu_ms_per_image"] = cpu_ms_per_image(run)
    run["cpu_ms_per_image_featurizing"] = cpu_ms_per_image(run, window=True)
    run["peak_worker_rss_mb"] = max(run["processes"]["worker_rss_mb"] or [0.0])
    run["outside_featurize_s"] = round(run["wall_s"] - run["stages"]["featurize"], 2)
    return run


def measure(ctx: Context) -> dict:
    seconds = 3.0 if ctx.quick else 5.0
    tree = ctx.input_tree("e2e")
    building = time.perf_counter()
    for precision in ("fp32", "int8"):
        built_model_path(DEFAULT_MODEL, precision)
    first_build_s = round(time.perf_counter() - building, 2)
    with ModelPool(ctx) as pool:
        before = pool.rate(pipeline_layout(ctx), seconds)
        run = measured_run(ctx, tree, "e2e", ("--precision", "int8"))
        fp32 = measured_run(ctx, tree, "e2e-fp32", ("--precision", "fp32"))
        after = pool.rate(pipeline_layout(ctx), seconds)
    bare = {**after, "images_per_s": round((before["images_per_s"] + after["images_per_s"]) / 2, 2),
            "before": before["images_per_s"], "after": after["images_per_s"]}  # fmt: skip
    result = {
        "input": str(tree),
        "default_precision": default_precision(DEFAULT_MODEL),
        "first_build_s": first_build_s,
        "bare": bare,
        "run": run,
        "featurize_to_bare": ratio(run["featurize_images_per_s"], bare["images_per_s"]),
        "whole_to_bare": ratio(run["wall_images_per_s"], bare["images_per_s"]),
        "outside_featurize_s": run["outside_featurize_s"],
        "fp32_run": fp32,
        "fp32_featurize_to_bare": ratio(fp32["featurize_images_per_s"], bare["images_per_s"]),
    }
    return result


def stage_table(run: dict) -> str:
    stages = dict(run["stages"])
    total = stages.pop("total", sum(stages.values()))
    rows = [[name, f"{s:.1f}", f"{100 * s / run['wall_s']:.0f} %"] for name, s in stages.items()]
    rest = total - sum(stages.values())
    rows.append(
        [
            "the rest of `total` (imports; a summary older than the session stage: the session)",
            f"{rest:.1f}",
            f"{100 * rest / run['wall_s']:.0f} %",
        ]
    )
    rows.append(
        ["**total** (summary.json)", f"{total:.1f}", f"{100 * total / run['wall_s']:.0f} %"]
    )
    rows.append(
        ["wall time of the command (JVM start and exit included)", f"{run['wall_s']:.1f}", "100 %"]
    )
    return table(["stage", "seconds", "share of wall"], rows)  # fmt: skip


def process_table(run: dict) -> str:
    roles = run["processes"]["roles"]
    whole, busy = run["cpu_ms_per_image"], run["cpu_ms_per_image_featurizing"]
    rows = [
        [
            role,
            roles[role]["count"],
            mb(roles[role]["max_rss_mb"]),
            mb(roles[role]["max_pss_mb"]),
            f"{whole.get(role, 0):.2f}",
            f"{busy.get(role, 0):.2f}",
        ]
        for role in ROLES
        if role in roles
    ]
    rows.append(
        [
            "**all**",
            sum(r["count"] for r in roles.values()),
            mb(run["processes"]["peak_total_rss_mb"]),
            "",
            f"**{whole['all']:.2f}**",
            f"{busy['all']:.2f}",
        ]
    )
    headers = [
        "process",
        "count",
        "peak RSS (one)",
        "peak PSS (one)",
        "CPU ms/image, whole run",
        "CPU ms/image, while featurizing",
    ]
    return table(headers, rows)  # fmt: skip


def _run_text(run: dict, bare: dict) -> str:
    s = run["settings"]
    return (
        f"{run['images']:,} images ({run['featurised']:,} featurised, {run['failed']} failed, "
        f"accounting {'ok' if run['accounting_ok'] else '**FAILED**'}), "
        f"{s.get('featurize_partitions', '?')} partitions, batch {s.get('batch_size', '?')}, "
        f"{s.get('model_loads', '?')} model loads; others used "
        f"{run['processes']['others_cores']} cores during the run. Featurize stage "
        f"**{run['featurize_images_per_s']:.1f} images/s = "
        f"{run['featurize_images_per_s'] / bare['images_per_s']:.2f} x the bare model**; whole "
        f"command {run['wall_images_per_s']:.1f} images/s = "
        f"{run['wall_images_per_s'] / bare['images_per_s']:.2f} x."
    )


def _first_build_text(result: dict) -> str:
    seconds = result.get("first_build_s")
    if seconds is None or seconds < 0.5:
        return " The models were already built on this machine."
    return (
        f" Building the fp32 and int8 models from the weights, once per machine, took "
        f"{seconds:.1f} s before the timings (a first run pays it in its prepare stage)."
    )


def render(result: dict) -> str:
    bare, run = result["bare"], result["run"]
    out = [
        f"`fruitspark run {result['input']} OUT --overwrite --precision int8` in a fresh JVM "
        f"(this CPU's default: {result.get('default_precision', 'int8')}), and the bare fp32 "
        f"model in the pipeline's layout ({bare['processes']} processes x {bare['threads']} "
        f"thread, batch {bare['batch']}) just before and after it: {bare['before']:.1f} and "
        f"{bare['after']:.1f} images/s, mean **{bare['images_per_s']:.1f}**."
        + _first_build_text(result),
        "",
        _run_text(run, bare),
        "",
        stage_table(run),
        "",
        f"Outside featurize: {result['outside_featurize_s']:.1f} s of {run['wall_s']:.1f} s "
        f"({100 * result['outside_featurize_s'] / run['wall_s']:.0f} %).",
        "",
        "Processes under the command (a worker's RSS counts pages shared with the daemon it was "
        "forked from; PSS splits them):",
        "",
        process_table(run),
    ]
    if "fp32_run" in result:
        out += ["", "With `--precision fp32`: " + _run_text(result["fp32_run"], bare)]
    return "\n".join(out)

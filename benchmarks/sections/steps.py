"""Per-step CPU ms per image outside the model, before and after, default descriptor.

"Before" is HotSpot's default tiered JIT (C1 then C2) in the JVM; "after" stops it at C1
(``session.JVM_OPTIONS``). In Python, "before" pads and resizes with Pillow alone, as
``preprocess`` did until OpenCV took the enlarging (``preprocess.pillow_resize_square``), and
normalises from a Pillow image; the other steps' code is the same on both sides (a flat-buffer
features column measured no cheaper in Python than the list conversion: about 1 us a row either
way; in the JVM it is, see the float-lists experiment).
They are timed in this process on the same images (median of the rounds).

The JVM's CPU is measured by experiment, each in a fresh JVM (``benchmarks/jvm_probe.py``): the
featurize stage's plan (binaryFile scan, ``mapInArrow``, persist + count) with one part swapped
at a time, the first action (what a run's featurize stage pays, JIT warm-up included) apart from
a second one in the same JVM, the JVM's CPU split by thread (JIT compilers, task threads, the
driver's planning, GC). The step table's JVM total is the driver JVM's CPU while the Python
workers were busy in a ``fruitspark run`` of the same images, before and after, as last time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from benchmarks.common import (
    Context,
    cpu_ms_per_image,
    fruitspark_run,
    median,
    run_python,
    spread,
    table,
)
from fruitspark.decode import decode_image
from fruitspark.featurize import FeaturizeOptions, ImageResult, _to_batch, combine
from fruitspark.model import embed, new_session, resolve_model
from fruitspark.preprocess import (
    colour_histogram,
    pillow_resize_square,
    resize_square,
    to_tensor,
)

TITLE = "Per-step CPU per image"
SLOW = False
ROUNDS = 5
ROWS, BATCH = 64, 8  # the pipeline's Arrow batch and model batch
C1 = "-XX:TieredStopAtLevel=1"
JIT = {"before": "", "after": C1}  # FRUITSPARK_JVM_OPTIONS of each side
RUN_ROUNDS = 1  # the probes' real featurize, before and after, are the repeat
# (name, variant, sink, JVM options): jvm_probe.probe's arguments, one fresh JVM each
EXPERIMENTS = (
    ("real featurize, C1+C2 JIT", "real", "cache_ser", ""),
    ("real featurize, C1 only", "real", "cache_ser", C1),
    ("constant features, no decode or model, C1+C2", "zeros", "cache_ser", ""),
    ("constant features, C1 only", "zeros", "cache_ser", C1),
    (
        "constant features as float lists (before feature_column), C1",
        "lists-zeros",
        "cache_ser",
        C1,
    ),
    ("no features (nulls), C1 only", "null", "cache_ser", C1),
    ("constant features, bytes read by Python not the JVM, C1", "paths-zeros", "cache_ser", C1),
    ("constant features, noop sink instead of the cache, C1", "zeros", "noop", C1),
)
JVM_GROUPS = ("JIT compiler", "task threads", "driver calls", "GC", "other", "ended")


def _ms(function: Callable, items: list) -> tuple[float, list]:
    start = time.process_time()
    out = [function(item) for item in items]
    return 1000 * (time.process_time() - start) / len(items), out


def python_steps(contents: list[bytes], spec) -> dict[str, dict[str, float]]:
    """Median CPU ms per image of each Python step over ``ROUNDS`` rounds, before and after."""
    size, norm = spec.input_size, spec.normalisation
    resizers = {
        "before": lambda p: pillow_resize_square(p, size),
        "after": lambda p: resize_square(p, size),
    }
    times: dict[str, dict[str, list[float]]] = {}

    def record(step: str, ms: float, *sides: str) -> None:
        for side in sides or ("before", "after"):
            times.setdefault(step, {}).setdefault(side, []).append(ms)

    session = new_session(Path(spec.path).read_bytes(), threads=1)
    for _ in range(ROUNDS):
        ms, pictures = _ms(lambda data: decode_image(data, min_side=size), contents)
        record("decode", ms)
        for side, resizer in resizers.items():
            ms, squares = _ms(resizer, pictures)
            record("pad + resize", ms, side)
            ms, tensors = _ms(lambda p: to_tensor(p, norm), squares)
            record("normalise", ms, side)
        ms, colours = _ms(colour_histogram, pictures)
        record("colour histogram", ms)
        record("Arrow in/out", _arrow_ms(contents, colours))
        batches = [np.stack(tensors[i : i + BATCH]) for i in range(0, len(tensors), BATCH)]
        ms, _ = _ms(lambda b: embed(session, spec, b), batches)
        record("model (for scale)", ms / BATCH)
    return {
        step: {side: round(median(values), 3) for side, values in sides.items()}
        for step, sides in times.items()
    }


def _arrow_ms(contents: list[bytes], colours: list) -> float:
    """Bytes out of an Arrow batch and the result batch built (``_to_batch``), per image."""
    options = FeaturizeOptions()
    features = [combine(np.zeros(2280, np.float32), c, options) for c in colours]
    start, rows = time.process_time(), len(contents)
    for first in range(0, rows, ROWS):
        chunk = contents[first : first + ROWS]
        batch = pa.RecordBatch.from_pydict(
            {"path": [f"file:/x/{i}.jpg" for i in range(len(chunk))], "content": chunk}
        )
        batch.column("content").to_pylist()
        results = [ImageResult(100, 100, f, None) for f in features[first : first + ROWS]]
        _to_batch(batch, ["path"], results, {})
    return 1000 * (time.process_time() - start) / rows


def _runs(ctx: Context, tree: Path) -> dict[str, dict]:
    """``fruitspark run`` of ``tree``, before and after (the JIT options), alternating."""
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    saved = os.environ.get("FRUITSPARK_JVM_OPTIONS")
    try:
        for _ in range(RUN_ROUNDS):
            for when, options in JIT.items():
                os.environ["FRUITSPARK_JVM_OPTIONS"] = options
                run = fruitspark_run(ctx, tree, f"steps-{when}")
                runs[when].append(
                    {"window": cpu_ms_per_image(run, window=True), "whole": cpu_ms_per_image(run)}
                )
    finally:
        if saved is None:
            os.environ.pop("FRUITSPARK_JVM_OPTIONS", None)
        else:
            os.environ["FRUITSPARK_JVM_OPTIONS"] = saved
    return {when: _median_roles(entries) for when, entries in runs.items()}


def _median_roles(entries: list[dict]) -> dict:
    """Per scope (window, whole run) and role, the median of the runs' CPU ms per image."""
    out: dict[str, dict[str, float]] = {}
    for scope in ("window", "whole"):
        roles = {role for entry in entries for role in entry[scope]}
        out[scope] = {
            role: round(median([entry[scope].get(role, 0.0) for entry in entries]), 2)
            for role in sorted(roles)
        }
    return out


def experiments(ctx: Context, tree: Path) -> list[dict]:
    """Every ``EXPERIMENTS`` row in its own fresh JVM: JVM and Python CPU ms per image of the
    first action and of a second one, the JVM's split by thread group."""
    rows = []
    for name, variant, sink, java in EXPERIMENTS:
        if ctx.quick and variant == "real" and java:
            continue
        probe = run_python(
            ctx, "benchmarks.jvm_probe:probe", [str(tree), variant, sink, "64", "2", java], name
        )
        rows.append({"name": name, "variant": variant, "sink": sink, "java": java, **probe})
    return rows


def measure(ctx: Context) -> dict:
    files = spread(ctx.files(), 100 if ctx.quick else 300)
    contents = [(ctx.data / path).read_bytes() for path in files]
    spec = resolve_model()
    steps = python_steps(contents, spec)
    run_files = spread(ctx.files(), 300 if ctx.quick else 1500)
    tree = ctx.input_tree(f"steps-{len(run_files)}", run_files)
    probes = experiments(ctx, tree)
    runs = _runs(ctx, tree)
    steps["JVM while featurizing (run)"] = {
        when: runs[when]["window"].get("driver JVM", 0.0) for when in ("before", "after")
    }
    outside = {
        when: round(sum(v[when] for k, v in steps.items() if not k.startswith("model")), 3)
        for when in ("before", "after")
    }
    return {
        "images": len(files),
        "run_images": len(run_files),
        "model": f"{spec.model_id} {spec.precision}",
        "steps": steps,
        "outside_model_ms": outside,
        "runs": runs,
        "experiments": probes,
    }


def _jvm_split(runs: list[dict], index: int) -> list[str]:
    """A probe's JVM ms per image of action ``index``, total then by thread group."""
    if len(runs) <= index:
        return ["-"] * (len(JVM_GROUPS) + 1)
    ms = runs[index]["ms_per_image"]
    groups = {group: sum(v for k, v in ms.items() if k.startswith(group)) for group in JVM_GROUPS}
    return [f"{ms['jvm']:.2f}", *(f"{groups[g]:.2f}" for g in JVM_GROUPS)]


def render(result: dict) -> str:
    steps = result["steps"]
    if set(steps) == {"before", "after"}:  # a result saved before the steps were keyed first
        steps = {step: {w: steps[w].get(step, 0.0) for w in steps} for step in steps["before"]}
    rows = [
        [step, f"{sides['before']:.3f}", f"{sides['after']:.3f}",
         f"{sides['after'] / sides['before']:.2f}" if sides["before"] else "-"]
        for step, sides in steps.items()
    ]  # fmt: skip
    total = result["outside_model_ms"]
    rows.append(
        [
            "**outside the model, total**",
            f"**{total['before']:.2f}**",
            f"**{total['after']:.2f}**",
            f"**{total['after'] / total['before']:.2f}**",
        ]
    )
    text = (
        f"CPU ms per image, default descriptor, model {result['model']}. Python steps on "
        f"{result['images']} Fruits-360 images in this process (median of {ROUNDS} rounds); "
        f"the JVM from a `fruitspark run` of {result['run_images']} images in a fresh JVM, "
        "driver JVM CPU while the Python workers were busy (local mode: the JVM is the "
        "executor). Before: HotSpot's default JIT (C1 then C2) and Pillow's resize both ways "
        "(normalised from a Pillow image); after: JIT stopped at C1 and OpenCV enlarging to "
        "numpy arrays; the other Python steps are the same code. Shared machine: read the "
        "ratios.\n\n" + table(["step", "before ms", "after ms", "after / before"], rows)
    )
    return text + "\n\n" + _render_experiments(result) + _render_runs(result)


def _render_experiments(result: dict) -> str:
    probes = result.get("experiments") or []
    if not probes:
        return ""
    heads = ["JVM", *JVM_GROUPS]
    rows = []
    for probe in probes:
        first, second = probe["runs"][0]["ms_per_image"], probe["runs"][-1]["ms_per_image"]
        rows.append(
            [probe["name"], *_jvm_split(probe["runs"], 0), _jvm_split(probe["runs"], 1)[0],
             f"{first['python']:.2f}", f"{second['python']:.2f}"]
        )  # fmt: skip
    return (
        f"Where the JVM's CPU goes, by experiment on {result['run_images']} images, one fresh "
        "JVM each (`benchmarks/jvm_probe.py`): the featurize stage's plan with one part "
        "swapped, ms per image of the first action (JIT warm-up included) by thread group, "
        "then the JVM total of a second action in the same JVM, and Python's CPU of both "
        "(listing the folder not included). *driver calls*: planning and code generation on "
        "the driver's py4j thread; *ended*: threads gone before a sample saw them.\n\n"
        + table(["plan", *(f"{h} 1st" for h in heads), "JVM 2nd", "Python 1st", "Python 2nd"], rows)
    )


def _render_runs(result: dict) -> str:
    runs = result.get("runs")
    if not runs:
        return ""
    roles = sorted({role for side in runs.values() for role in side["whole"]})
    rows = [
        [role, *(f"{runs[w][s].get(role, 0.0):.2f}" for s in ("window", "whole") for w in JIT)]
        for role in roles
    ]
    heads = ["role", "featurizing before", "featurizing after", "whole before", "whole after"]
    return (
        "\n\nThe `fruitspark run`s (median of the runs), CPU ms per image by process role, "
        "while the Python workers were busy and over the whole run:\n\n" + table(heads, rows)
    )

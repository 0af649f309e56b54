"""Every speed and memory target of the open issues, in one table.

A row names the issue, the section whose result it reads, the result key(s) (dotted paths into
``benchmarks/results/<section>.json``), how the measured value is computed (one key: its value;
two keys: the first divided by the second, both measured in the same section run, so the ratio
compares things side by side) and the bound. BENCHMARKS.md shows one "Targets" table from it: a
row whose section has no result yet, or whose keys are missing, is "not measured", never met.

To add a target: add a row here (and make the section's ``measure`` write the keys it names).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass

from benchmarks.common import table

COMPARE = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
SHOW = {"<=": "≤", "<": "<", ">=": "≥", ">": ">"}


@dataclass(frozen=True)
class Target:
    issue: str
    goal: str  # what the issue asks, in a few words
    section: str
    keys: tuple[str, ...]  # one key: its value; two keys: keys[0] / keys[1]
    compare: str  # "<=", "<", ">=" or ">"
    bound: float
    unit: str = "x"  # "x" for ratios, "%" for shares (stored as fractions), else a unit

    def __post_init__(self) -> None:
        if self.compare not in COMPARE or len(self.keys) not in (1, 2):
            raise ValueError(f"bad target row: {self}")

    @property
    def computed(self) -> str:
        """How the measured value is computed, for the table."""
        return " / ".join(f"`{key}`" for key in self.keys)

    def value(self, result: Mapping) -> float | None:
        """The measured value from the section's result, or None if a key is missing (or not
        a number)."""
        values = [lookup(result, key) for key in self.keys]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return None
        if len(values) == 1:
            return float(values[0])
        return float(values[0]) / float(values[1]) if values[1] else None

    def met(self, value: float) -> bool:
        return COMPARE[self.compare](value, self.bound)

    def show(self, value: float) -> str:
        if self.unit == "%":
            return f"{100 * value:.1f} %"
        if self.unit == "x":
            return f"{value:.2f} x"
        return f"{value:,.1f} {self.unit}"


def lookup(result: Mapping, dotted: str) -> object | None:
    """``result["a"]["b"]`` for ``"a.b"``; None if any part is missing."""
    value: object = result
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


BARE = "bare model, fp32, 2 processes x 1 thread, batch 8, in the same run"
TARGETS = (
    # issue 9: fixed costs, one pass, PCA
    Target("9", "30-image run vs a bare Spark session (PySpark's defaults: start, one job, stop)",
           "fixed_costs", ("run_30_s", "plain_session_s"), "<=", 1.5),
    Target("9", "the same 30 images from a manifest of paths and labels only, vs bare session",
           "fixed_costs", ("manifest_30_s", "plain_session_s"), "<=", 1.5),
    Target("9", "refusing an existing output, vs bare session", "fixed_costs",
           ("refuse_existing_s", "plain_session_s"), "<=", 0.2),
    Target("9", "whole command on the 9,480-image sample vs Daft's featurisation alone",
           "peers", ("fruitspark.wall_s", "daft.wall_s"), "<", 1.0),
    Target("9", "outside featurize, share of the whole command (full sample)", "e2e",
           ("outside_featurize_s", "run.wall_s"), "<=", 0.10, "%"),
    Target("9", "PCA fit on 100,000 x 1,568, 2 cores, no system BLAS", "pca",
           ("fit_s",), "<=", 10.0, "s"),
    Target("9", f"whole command at 3,000 images, images/s vs the {BARE}", "scaling",
           ("at_3000.wall_images_per_s", "at_3000.bare.images_per_s"), ">=", 0.75),
    Target("9", "test suite wall time, after vs before", "test_suite",
           ("after_s", "before_s"), "<", 1.0),
    # issue 11: featurise faster than the fp32 model alone
    Target("11", f"featurize stage, int8 (the default on VNNI CPUs), vs the {BARE}", "e2e",
           ("run.featurize_images_per_s", "bare.images_per_s"), ">=", 1.2),
    Target("11", f"featurize stage with fp32 vs the {BARE}", "e2e",
           ("fp32_run.featurize_images_per_s", "bare.images_per_s"), ">=", 0.9),
    Target("11", "featurize stage vs Daft's model stage, same images and model", "peers",
           ("fruitspark.featurize_images_per_s", "daft.model_images_per_s"), ">=", 1.0),
    Target("11", "CPU ms per image, all processes of the run, vs Daft's", "peers",
           ("fruitspark.cpu_ms_per_image", "daft.cpu_ms_per_image"), "<", 1.0),
    Target("11", "per-step CPU ms/image outside the model, after vs before", "steps",
           ("outside_model_ms.after", "outside_model_ms.before"), "<=", 0.5),
    # earlier targets, still held
    Target("earlier", "peak RSS of one Python worker (full sample)", "e2e",
           ("run.peak_worker_rss_mb",), "<", 1024.0, "MB"),
    Target("earlier", "12 MP JPEG: reduced-size decode + resize vs full decode", "jpeg",
           ("12mp.speedup_total",), ">=", 5.0),
)  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    target: Target
    value: float | None
    reduced: str = ""  # why the section's run was smaller than the real benchmark, if it was

    @property
    def measured(self) -> str:
        if self.value is None:
            return "not measured"
        return self.target.show(self.value) + (f" ({self.reduced})" if self.reduced else "")

    @property
    def met(self) -> str:
        if self.value is None:
            return "-"
        return "met" if self.target.met(self.value) else "**not met**"


def reduced_run(result: Mapping) -> str:
    """ "quick run" or "N images" when the runner's record says the section ran smaller."""
    run = result.get("_run") or {}
    if run.get("limit"):
        return f"{run['limit']:,} images"
    return "quick run" if run.get("quick") else ""


def evaluate(results: Mapping[str, Mapping], targets=TARGETS) -> list[Outcome]:
    """One outcome per target from the sections' results (section name -> result dict)."""
    outcomes = []
    for target in targets:
        result = results.get(target.section)
        if result is None:
            outcomes.append(Outcome(target, None))
        else:
            outcomes.append(Outcome(target, target.value(result), reduced_run(result)))
    return outcomes


def render(results: Mapping[str, Mapping], targets=TARGETS) -> str:
    """The "Targets" table of BENCHMARKS.md."""
    rows = [
        [
            outcome.target.issue,
            outcome.target.goal,
            f"{SHOW[outcome.target.compare]} {outcome.target.show(outcome.target.bound)}",
            outcome.measured,
            outcome.met,
            f"`{outcome.target.section}`: {outcome.target.computed}",
        ]
        for outcome in evaluate(results, targets)
    ]
    return table(["issue", "target", "bound", "measured", "met?", "section: computed as"], rows)

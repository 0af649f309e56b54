"""The schema of ``summary.json``: typed, versioned, numbers stored as numbers.

Every reader (CLI, report, predict, evaluate, cloud, benchmarks) goes through :func:`load`, which
reads the current version, upgrades version 1 (outputs of fruitspark 0.1, before this schema) and
refuses a newer version in one line. Adding a field: give it a default, so older summaries still
load; renaming or removing one: bump :data:`SCHEMA_VERSION` and upgrade the old shape in
:func:`_upgrade`. Unknown keys are ignored, so a newer minor addition still reads here.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 2


class SummaryError(ValueError):
    """A summary this version cannot read; one line for the user."""


@dataclass(frozen=True)
class ImageCounts:
    listed: int = 0
    featurised: int = 0
    failed: int = 0
    processed_this_run: int = 0
    reused_from_previous_run: int = 0


@dataclass(frozen=True)
class Accounting:
    """Each listed image appears exactly once in the written features (see output.account)."""

    listed: int = 0
    rows: int = 0
    missing: int = 0
    duplicated: int = 0
    unexpected: int = 0
    ok: bool = False


@dataclass(frozen=True)
class ModelInfo:
    """What produced the features; ``predict`` and ``--resume`` rebuild or compare it."""

    id: str = ""
    source: str = ""
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    sha256: str = ""
    precision: str = "fp32"  # outputs of schema 1 were all fp32
    input_size: int = 0
    output: str | None = None
    feature_dim: int = 0
    descriptor: str = "both"
    colour_weight: float = 0.0
    logits: bool = False  # the ImageNet logits block (outputs before it had none)
    views: str = "pad"  # FeaturizeOptions.views (outputs before it had the padded view only)


@dataclass(frozen=True)
class PcaInfo:
    k: int = 0
    explained_variance: list[float] = field(default_factory=list)  # ratio per component, all
    k_requested: int | None = None  # --pca-k, when given
    variance_target: float | None = None  # --pca-variance, when k was chosen by it
    method: str = "numpy covariance"


@dataclass(frozen=True)
class Settings:
    batch_size: int = 0
    threads_per_task: int = 0
    rows_per_arrow_batch: int = 0
    images_per_partition: int = 0
    parallelism: int = 0
    featurize_partitions: int = 0
    model_loads: int | None = None  # None where Spark has no accumulators (Spark Connect)


@dataclass(frozen=True)
class SparkInfo:
    master: str = ""
    version: str = ""
    app_id: str = ""


@dataclass(frozen=True)
class ClassCount:
    label: str | None = None
    split: str | None = None
    failed: bool = False
    count: int = 0


@dataclass(frozen=True)
class Summary:
    fruitspark_version: str = ""
    run_id: str = ""
    input: str = ""
    extra_inputs: list[str] = field(default_factory=list)  # more inputs of the same run
    output: str = ""
    started_at: str = ""  # ISO 8601, UTC
    finished_at: str = ""
    images: ImageCounts = field(default_factory=ImageCounts)
    errors_by_reason: dict[str, int] = field(default_factory=dict)
    accounting: Accounting = field(default_factory=Accounting)
    model: ModelInfo = field(default_factory=ModelInfo)
    pca: PcaInfo = field(default_factory=PcaInfo)
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage, and "total"
    throughput_images_per_s: float = 0.0
    settings: Settings = field(default_factory=Settings)
    spark: SparkInfo = field(default_factory=SparkInfo)
    labels: dict[str, int] = field(default_factory=dict)  # images per label, failed included
    class_counts: list[ClassCount] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def load(data: dict[str, Any] | str | bytes) -> Summary:
    """A summary from its JSON text or parsed dict, upgraded to the current version."""
    if isinstance(data, str | bytes):
        data = json.loads(data)
    if not isinstance(data, dict):
        raise SummaryError("summary.json does not hold a JSON object")
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise SummaryError(
            f"summary.json has schema version {version}, this fruitspark reads up to "
            f"{SCHEMA_VERSION}: upgrade fruitspark to read this output"
        )
    return _build(Summary, _upgrade(data) if version == 1 else data)


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 wrote the PCA rule as text ("k = 5", "variance >= 0.95"): parsed once, here."""
    pca = dict(data.get("pca", {}))
    selection = str(pca.pop("selection", ""))
    if found := re.fullmatch(r"k = (\d+)", selection):
        pca["k_requested"] = int(found.group(1))
    elif found := re.fullmatch(r"variance >=? ?([0-9.eE+-]+)", selection):
        pca["variance_target"] = float(found.group(1))
    pca.setdefault("method", "Spark ML PCA")
    return {**data, "pca": pca, "schema_version": SCHEMA_VERSION}


def _build(cls: type, data: Any) -> Any:
    """``cls`` from a parsed JSON dict, recursively; missing keys take the field's default."""
    hints = typing.get_type_hints(cls)
    values = {}
    for item in dataclasses.fields(cls):
        if item.name in data:
            values[item.name] = _convert(hints[item.name], data[item.name])
    return cls(**values)


def _convert(kind: Any, value: Any) -> Any:
    if value is None:
        return None
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        kind = next(argument for argument in arguments if argument is not type(None))
        origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        return _build(kind, value)
    if origin is list:
        return [_convert(arguments[0], item) for item in value]
    if origin is dict:
        return {key: _convert(arguments[1], item) for key, item in value.items()}
    if kind is float:
        return float(value)
    return value


def variance_kept(pca: PcaInfo) -> float:
    """The explained variance of the k kept components."""
    return float(sum(pca.explained_variance[: pca.k]))


def describe_rule(pca: PcaInfo) -> str:
    """How k was chosen, for people: "k = 5 given" or "variance >= 0.95"."""
    if pca.k_requested is not None:
        return f"k = {pca.k_requested} given"
    if pca.variance_target is not None:
        return f"variance >= {pca.variance_target:g}"
    return "all components"

"""The main job: list → featurize → PCA → write, with every image accounted for.

Stages are functions of a Spark DataFrame; this module only sequences them, times them and
commits the output (see :mod:`fruitspark.output`).
"""

from __future__ import annotations

import io
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import numpy as np

from fruitspark import __version__
from fruitspark.decode import EMPTY_FILE
from fruitspark.featurize import FeaturizeOptions, featurize
from fruitspark.model import DEFAULT_MODEL, resolve_model
from fruitspark.output import FEATURES, STAGING, SUMMARY, OutputError, account, check_output, commit
from fruitspark.progress import watch
from fruitspark.reduce import add_pca, export_parameters, fit_pca
from fruitspark.sources import SourceError, input_root, list_inputs, partition_bytes
from fruitspark.storage import Storage

OUTPUT_COLUMNS = (
    "path", "label", "split", "size", "modified", "width", "height", "features", "pca", "error"
)  # fmt: skip
PCA_MODEL = "pca_model"
PCA_NPZ = "pca.npz"
REPORT = "report.html"
CSV = "pca_csv"


class RunFailed(RuntimeError):
    """The run finished but must not count as a success (accounting, --fail-on-error)."""


@dataclass
class RunConfig:
    """Everything a run needs besides the SparkSession; the CLI's options map one to one."""

    input: str
    output: str
    extra_inputs: tuple[str, ...] = field(
        default=(), metadata={"help": "more folders or manifests for this run (URI or URI@split)"}
    )
    model: str = DEFAULT_MODEL
    input_size: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    model_output: str | None = None
    pca_k: int | None = None
    pca_variance: float = 0.95
    csv: bool = False
    overwrite: bool = False
    resume: bool = False
    fail_on_error: bool = False
    report: bool = True
    featurize: FeaturizeOptions = field(default_factory=FeaturizeOptions)
    rows_per_arrow_batch: int = 64
    images_per_partition: int | None = None


class _Stages:
    """Wall time per stage, for the summary."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 3)


def is_manifest(uri: str) -> bool:
    return uri.lower().endswith((".parquet", ".csv"))


def run(config: RunConfig, spark=None, *, master: str | None = None) -> dict:
    """Run the job and return its summary (also written to ``OUTPUT/summary.json``).

    ``spark`` is an existing session (a notebook's, spark-submit's); without it one is made on
    ``master``, once the model is known to be usable, so a bad ``--model`` fails in a second.
    """
    from fruitspark.session import spark_session

    started_at = datetime.now(timezone.utc)
    stages = _Stages()
    with stages.time("model"):
        spec = resolve_model(
            config.model,
            input_size=config.input_size,
            mean=config.mean,
            std=config.std,
            output_name=config.model_output,
        )
    spark = spark or spark_session(master)
    storage = Storage(spark, config.output)
    previous_complete = check_output(storage, overwrite=config.overwrite, resume=config.resume)
    options = FeaturizeOptions(
        **{
            **asdict(config.featurize),
            "threads": config.featurize.threads or int(spark.conf.get("spark.task.cpus", "1")),
            "root": config.featurize.root or input_root([config.input, *config.extra_inputs]),
        }
    )
    staging = f"{STAGING}/{uuid.uuid4().hex[:12]}"
    context = spark.sparkContext
    parallelism = context.defaultParallelism
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", config.rows_per_arrow_batch)

    with stages.time("list"):
        found = list_inputs(spark, [config.input, *config.extra_inputs], partitions=parallelism * 8)
        source, listing, empty = found.source, found.listing, found.empty
        listed, total_bytes = found.listed, found.total_bytes
    if listed == 0:
        raise SourceError(f"no images found in {config.input} (looked for jpg, png, webp, bmp…)")

    previous = None
    if config.resume and previous_complete:
        previous = _reusable_rows(spark, storage, listing, spec, options)
    todo = source if previous is None else _changed(listing, previous, parallelism)
    todo_count = listed if previous is None else todo.count()
    max_bytes, open_cost = partition_bytes(todo_count, total_bytes, parallelism)
    if config.images_per_partition:
        max_bytes = config.images_per_partition * 2 * open_cost
    spark.conf.set("spark.sql.files.maxPartitionBytes", max_bytes)
    spark.conf.set("spark.sql.files.openCostInBytes", open_cost)

    featurized_uri = storage.uri(f"{staging}/featurized")
    with stages.time("featurize"), watch(spark, "featurize", todo_count):
        fresh, model_loads = featurize(todo, spec, options)
        if previous is not None:
            fresh = fresh.unionByName(previous)
        if empty is not None:
            fresh = fresh.unionByName(_empty_rows(empty))
        featurize_partitions = fresh.rdd.getNumPartitions()
        fresh.write.parquet(featurized_uri)
    featurized = spark.read.parquet(featurized_uri)
    if featurized.where("features IS NOT NULL").limit(1).count() == 0:
        reasons = [row["error"] for row in featurized.select("error").distinct().limit(3).collect()]
        raise RunFailed(
            f"no image of {config.input} could be featurised (e.g. {'; '.join(reasons)}); "
            "nothing to reduce with PCA"
        )

    with stages.time("pca"):
        fit = fit_pca(
            featurized,
            dimension=options.feature_dim(spec),
            k=config.pca_k,
            variance=None if config.pca_k else config.pca_variance,
        )
    with stages.time("write"):
        final = add_pca(featurized, fit.model).select(*OUTPUT_COLUMNS)
        final.write.parquet(storage.uri(f"{staging}/{FEATURES}"))
        fit.model.write().save(storage.uri(f"{staging}/{PCA_MODEL}"))
        buffer = io.BytesIO()
        np.savez(buffer, **export_parameters(fit))
        storage.write_bytes(f"{staging}/{PCA_NPZ}", buffer.getvalue())
        written = spark.read.parquet(storage.uri(f"{staging}/{FEATURES}"))
        if config.csv:
            _write_csv(written, storage.uri(f"{staging}/{CSV}"), fit.k)

    from pyspark.sql import functions as F

    with stages.time("account"):
        accounting = account(listing, written)
        errors = (
            written.where("error IS NOT NULL").groupBy("error").count().orderBy("count").collect()
        )
        classes = (
            written.groupBy("label", "split", F.col("error").isNotNull().alias("failed"))
            .count()
            .collect()
        )
    failed = sum(row["count"] for row in errors)
    per_label: Counter = Counter()
    for row in classes:
        per_label[row["label"]] += row["count"]
    finished_at = datetime.now(timezone.utc)
    summary = {
        "fruitspark_version": __version__,
        "input": config.input,
        "extra_inputs": list(config.extra_inputs),
        "output": storage.uri(),
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "images": {
            "listed": listed,
            "featurised": accounting["rows"] - failed,
            "failed": failed,
            "processed_this_run": todo_count,
            "reused_from_previous_run": listed - todo_count,
        },
        "errors_by_reason": {row["error"]: row["count"] for row in errors},
        "accounting": accounting,
        "model": {
            "id": spec.model_id,
            "source": config.model if config.model == DEFAULT_MODEL else spec.path,
            "mean": list(spec.normalisation.mean),
            "std": list(spec.normalisation.std),
            "sha256": spec.sha256,
            "input_size": spec.input_size,
            "output": spec.output_name,
            "feature_dim": options.feature_dim(spec),
            "descriptor": options.descriptor,
            "colour_weight": options.colour_weight,
            "logits": options.logits,
        },
        "pca": {
            "k": fit.k,
            "explained_variance": fit.explained_variance,
            "selection": fit.selection,
        },
        "stages": stages.seconds,
        "throughput_images_per_s": round(todo_count / max(stages.seconds["featurize"], 1e-9), 2),
        "settings": {
            "batch_size": options.batch_size,
            "threads_per_task": options.threads,
            "rows_per_arrow_batch": config.rows_per_arrow_batch,
            "max_partition_bytes": max_bytes,
            "parallelism": parallelism,
            "featurize_partitions": featurize_partitions,
            "model_loads": model_loads.value,
        },
        "spark": {
            "master": context.master,
            "version": spark.version,
            "app_id": context.applicationId,
        },
        "labels": dict(sorted(per_label.items())),
        "class_counts": [row.asDict() for row in classes],
    }
    parts = [FEATURES, PCA_MODEL, PCA_NPZ, *([CSV] if config.csv else [])]
    if config.report:
        _stage_report(storage, staging, summary, written)
        parts.append(REPORT)
    summary["stages"]["total"] = round((datetime.now(timezone.utc) - started_at).total_seconds(), 3)
    commit(storage, staging, parts, summary)
    if not accounting["ok"]:
        raise RunFailed(f"accounting failed: {accounting} (see {storage.uri(SUMMARY)})")
    if config.fail_on_error and failed:
        raise RunFailed(f"{failed} image(s) failed (--fail-on-error); see {storage.uri(SUMMARY)}")
    return summary


def _reusable_rows(spark, storage: Storage, listing, spec, options: FeaturizeOptions):
    """Rows of the previous output whose file is unchanged (same path, size and mtime)."""
    before = storage.read_json(SUMMARY)
    model = before.get("model", {})
    if (model.get("sha256"), model.get("input_size"), model.get("descriptor")) != (
        spec.sha256,
        spec.input_size,
        options.descriptor,
    ) or model.get("colour_weight") != options.colour_weight:
        raise OutputError(
            "cannot resume: the previous output was made with another model or descriptor; "
            "use --overwrite"
        )
    old = spark.read.parquet(storage.uri(FEATURES)).drop("pca")
    current = listing.select("path", "size", "modified")
    return old.join(current, ["path", "size", "modified"], "left_semi")


def _changed(listing, previous, partitions: int):
    """Listing rows that are new or changed: read by path in the workers, not by Spark's scan."""
    from pyspark.sql import functions as F

    todo = listing.join(previous.select("path"), "path", "left_anti")
    return todo.repartition(max(1, partitions * 2), F.col("path"))


def _empty_rows(empty):
    """Error rows for zero-byte images, in the featurised rows' schema."""
    from pyspark.sql import functions as F

    return empty.select(
        "*",
        F.lit(None).cast("int").alias("width"),
        F.lit(None).cast("int").alias("height"),
        F.lit(None).cast("array<float>").alias("features"),
        F.lit(EMPTY_FILE).alias("error"),
    )


def _write_csv(written, uri: str, k: int) -> None:
    from pyspark.sql import functions as F

    columns = [F.col("pca")[i].alias(f"pc{i + 1}") for i in range(k)]
    written.where("error IS NULL").select("path", "label", "split", *columns).write.option(
        "header", "true"
    ).csv(uri)


REPORT_SAMPLE = 20_000  # points in the PCA scatter; errors are all kept (the report caps rows)


def report_table(written):
    """What the report plots, bounded on the driver: every failed row and a sample of the rest."""
    from pyspark.sql import functions as F

    columns = ["path", "label", "split", "width", "height", "pca", "error"]
    failed = written.where(F.col("error").isNotNull()).select(*columns).limit(100_000)
    good = written.where(F.col("error").isNull())
    total = good.count()
    if total > REPORT_SAMPLE:
        good = good.sample(fraction=min(1.0, 1.2 * REPORT_SAMPLE / total), seed=7)
    import pyarrow as pa

    rows = good.select(*columns).limit(REPORT_SAMPLE).unionByName(failed).toPandas()
    return pa.Table.from_pandas(rows, preserve_index=False)


def _stage_report(storage: Storage, staging: str, summary: dict, written) -> None:
    """The report is built before the commit, so it is there when the output is complete."""
    from fruitspark.report import render_report

    html = render_report(summary, report_table(written), None)
    storage.write_bytes(f"{staging}/{REPORT}", html.encode())


def refresh_report(output: str, spark=None) -> str:
    """Rewrite ``OUTPUT/report.html`` from the output as it is now (e.g. after ``evaluate``)."""
    from fruitspark.evaluate import EVALUATION
    from fruitspark.report import render_report
    from fruitspark.session import spark_session

    spark = spark or spark_session()
    storage = Storage(spark, output)
    if not storage.exists(SUMMARY):
        raise OutputError(f"{output} is not a complete fruitspark output (no {SUMMARY})")
    evaluation = storage.read_json(EVALUATION) if storage.exists(EVALUATION) else None
    written = spark.read.parquet(storage.uri(FEATURES))
    html = render_report(storage.read_json(SUMMARY), report_table(written), evaluation)
    storage.write_bytes(REPORT, html.encode())
    return storage.uri(REPORT)

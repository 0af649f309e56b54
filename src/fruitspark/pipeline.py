"""The main job as a short sequence of named stages, with every image accounted for.

``run`` is: prepare (no Spark: model, local input, local output and its lock), then list →
featurize → reduce → write → account → report → commit. Each stage is a function of the run's
context and earlier results, and returns a small frozen result with its wall time and its part
of the summary (:mod:`fruitspark.summary`). The images are read, decoded and featurised once:
the featurised rows are cached, and the PCA sums, the projection and the write all read the cache.
The caller's session is left as found (:func:`fruitspark.sparkenv.session_as_found`).
"""

from __future__ import annotations

import io
import math
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np

from fruitspark import __version__, sparkenv
from fruitspark.decode import EMPTY_FILE
from fruitspark.feature_column import as_float_lists, lists_to_bytes
from fruitspark.featurize import FeaturizeOptions, featurize
from fruitspark.formats import IMAGE_EXTENSIONS, is_image_name
from fruitspark.layout import CSV, FEATURES, PCA_MODEL, PCA_NPZ, REPORT, SUMMARY, staged
from fruitspark.model import (
    BUILT_IN,
    DEFAULT_MODEL,
    PRECISIONS,
    ModelSpec,
    default_precision,
    resolve_model,
)
from fruitspark.output import OutputError, RunLock, account_by, check_output, commit
from fruitspark.progress import watch
from fruitspark.reduce import (
    PcaFit,
    export_parameters,
    fit_features,
    projector,
    save_spark_model,
)
from fruitspark.session import Jit
from fruitspark.sources import (
    InputSpec,
    SourceError,
    images_per_partition,
    input_root,
    list_inputs,
    local_path_of,
    partition_bytes,
)
from fruitspark.storage import LocalFiles, Storage
from fruitspark.summary import (
    Accounting,
    ClassCount,
    ImageCounts,
    ModelInfo,
    PcaInfo,
    Settings,
    SparkInfo,
    Summary,
)
from fruitspark.task_parquet import write_in_tasks

OUTPUT_COLUMNS = (
    "path", "label", "split", "size", "modified", "width", "height", "features", "pca", "error"
)  # fmt: skip
# Float arrays are written without Parquet's dictionary encoding, which never pays for features
# (every value differs): measured, the write takes half the time and the files are 25 % smaller.
FLOAT_ARRAYS = ("features", "pca")
ARROW_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"
FILE_CONFS = ("spark.sql.files.maxPartitionBytes", "spark.sql.files.openCostInBytes")
ADAPTIVE = "spark.sql.adaptive.enabled"
SMALL_SHUFFLES = (ADAPTIVE, "spark.sql.shuffle.partitions")  # account stage
RUN_CONFS = (ARROW_BATCH, *FILE_CONFS, *SMALL_SHUFFLES)  # every conf a run sets, put back after


class RunFailed(RuntimeError):
    """The run finished but must not count as a success (accounting, --fail-on-error)."""


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs besides the SparkSession; each field with help is a CLI option."""

    input: str = field(metadata=_help("image folder, or manifest file (.parquet or .csv)"))
    output: str = field(metadata=_help("output folder (refused if it exists, see --overwrite)"))
    extra_inputs: tuple[str, ...] = field(
        default=(),
        metadata=_help(
            "another folder or manifest for this run (repeatable); INPUT@test (or @train, @val) "
            "puts all its images in that split",
            flag="--extra-input",
            repeat=True,
            default_text="none",
        ),
    )
    model: str = field(
        default=DEFAULT_MODEL,
        metadata=_help(f"{', '.join(BUILT_IN)} or a .onnx file", group="model"),
    )
    precision: str | None = field(
        default=None,
        metadata=_help(
            "built-in model's weights and arithmetic",
            group="model",
            choices=PRECISIONS,
            default_text="int8 on a CPU with VNNI or ARM dotprod, else fp32; a .onnx file: fp32",
        ),
    )
    input_size: int | None = field(
        default=None,
        metadata=_help("model input side in px", group="model", default_text="the model's"),
    )
    mean: tuple[float, float, float] | None = field(
        default=None, metadata=_help("per-channel mean, 0..255 scale (R,G,B)", group="model")
    )
    std: tuple[float, float, float] | None = field(
        default=None, metadata=_help("per-channel std, 0..255 scale (R,G,B)", group="model")
    )
    model_output: str | None = field(
        default=None, metadata=_help("output tensor that holds the features", group="model")
    )
    pca_k: int | None = field(
        default=None,
        metadata=_help("keep exactly k components (overrides --pca-variance)", group="PCA"),
    )
    pca_variance: float = field(
        default=0.95,
        metadata=_help("keep the fewest components reaching this explained variance", group="PCA"),
    )
    csv: bool = field(
        default=False, metadata=_help("also write label + PCA matrix as CSV", group="output")
    )
    overwrite: bool = field(
        default=False, metadata=_help("replace an existing output", group="output")
    )
    resume: bool = field(
        default=False, metadata=_help("only process new or changed images; merge", group="output")
    )
    fail_on_error: bool = field(
        default=False, metadata=_help("exit non-zero if any image failed", group="output")
    )
    report: bool = field(default=True, metadata=_help("write report.html", group="output"))
    featurize: FeaturizeOptions = field(default_factory=FeaturizeOptions)
    rows_per_arrow_batch: int = field(
        default=64, metadata=_help("rows per Arrow batch sent to the model's tasks", group="tuning")
    )
    images_per_partition: int | None = field(
        default=None,
        metadata=_help(
            "images per featurize task", group="tuning", default_text="about 8 tasks a core"
        ),
    )

    def __post_init__(self) -> None:
        if self.overwrite and self.resume:
            raise OutputError("--overwrite and --resume exclude each other: choose one")
        if not 0 < self.pca_variance <= 1:
            raise ValueError(f"--pca-variance must be in (0, 1], not {self.pca_variance}")
        for name in ("pca_k", "input_size", "rows_per_arrow_batch", "images_per_partition"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, not {value}")


# --- the run's context and the stages' results --------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """What is known before Spark starts: the model is usable, local paths are checked."""

    config: RunConfig
    spec: ModelSpec
    run_id: str
    started_at: datetime
    seconds: float
    previous_complete: bool | None  # None: a remote output, checked once the session is up
    lock: RunLock | None


@dataclass(frozen=True)
class RunContext:
    config: RunConfig
    spec: ModelSpec
    options: FeaturizeOptions
    spark: Any
    storage: Storage
    run_id: str
    parallelism: int
    previous_complete: bool
    seconds: float  # the session stage: Spark started (or the caller's taken), output checked


@dataclass(frozen=True)
class Listed:
    seconds: float
    source: Any  # DataFrame to featurise (with ``content`` for a folder)
    listing: Any  # DataFrame path, size, modified, label, split of every listed image
    count: int
    total_bytes: int
    empty: Any | None  # zero-byte images Spark's scan drops, as listing rows


@dataclass(frozen=True)
class Featurized:
    seconds: float
    rows: Any  # the cached featurised rows, every listed image once
    row_count: int
    processed: int
    partitions: int
    images_per_partition: int
    model_loads: int | None


@dataclass(frozen=True)
class Reduced:
    seconds: float
    fit: PcaFit
    part: PcaInfo


@dataclass(frozen=True)
class Written:
    seconds: float
    parts: list[str]
    features: Any  # DataFrame of the written Parquet


@dataclass(frozen=True)
class Accounted:
    seconds: float
    accounting: Accounting
    images: ImageCounts
    errors_by_reason: dict[str, int]
    labels: dict[str, int]
    class_counts: list[ClassCount]


class Clock:
    def __init__(self) -> None:
        self.started, self.seconds = time.perf_counter(), 0.0


def job_group(run_id: str, stage: str) -> str:
    """The Spark job group of one stage of one run (progress and tests read it)."""
    return f"fruitspark-{run_id}-{stage}"


@contextmanager
def stage(
    context: RunContext, name: str, *, bar: bool = False, total: int | None = None
) -> Iterator[Clock]:
    """Time a stage and tag its Spark jobs; with ``bar``, a progress bar (of ``total`` images,
    else of tasks) follows them. Quick stages go without one."""
    group = job_group(context.run_id, name)
    sparkenv.set_job(context.spark, group, f"fruitspark {name}")
    clock = Clock()
    with watch(context.spark, name, total, group=group) if bar else nullcontext():
        try:
            yield clock
        finally:
            clock.seconds = round(time.perf_counter() - clock.started, 3)


# --- the run --------------------------------------------------------------------------------------


def run(
    config: RunConfig, spark=None, *, master: str | None = None, jit: Jit = "tiered"
) -> Summary:
    """Run the job and return its summary (also written to ``OUTPUT/summary.json``).

    ``spark`` is an existing session (a notebook's, spark-submit's), left as found; without it
    one is made on ``master`` (with ``jit``'s compilers, ``session.JVM_OPTIONS``) once the model
    and the local paths are known to be usable.
    """
    from fruitspark.session import spark_session

    prepared = prepare(config)
    with ExitStack() as cleanup:
        if prepared.lock is not None:
            cleanup.callback(prepared.lock.release)
        opened = time.perf_counter()
        spark = spark or spark_session(master, jit=jit)
        cleanup.enter_context(sparkenv.session_as_found(spark, RUN_CONFS))
        context = start(prepared, spark, cleanup, opened)
        listed = list_images(context)
        featurized = featurize_images(context, listed)
        cleanup.callback(featurized.rows.unpersist)
        reduced = reduce_features(context, featurized)
        written = write_outputs(context, featurized, reduced)
        accounted = account_images(context, listed, written)
        summary = assemble(prepared, context, listed, featurized, reduced, written, accounted)
        summary, parts = report_stage(context, summary, written, accounted)
        summary = commit_stage(prepared, context, summary, parts)
    return check_outcome(config, summary)


def prepare(config: RunConfig) -> Prepared:
    """Refuse what can be refused without Spark; lock a local output."""
    clock = time.perf_counter()
    started_at = datetime.now(timezone.utc)
    spec = resolve_model(
        config.model,
        precision=config.precision or default_precision(config.model),
        input_size=config.input_size,
        mean=config.mean,
        std=config.std,
        output_name=config.model_output,
    )
    for uri in (config.input, *config.extra_inputs):
        check_local_input(InputSpec.parse(uri).uri)
    run_id = uuid.uuid4().hex[:12]
    local = local_path_of(config.output)
    complete = lock = None
    if local is not None:
        files = LocalFiles(local)
        complete = check_output(files, overwrite=config.overwrite, resume=config.resume)
        lock = RunLock.acquire(files, run_id, started_at.isoformat())
    seconds = round(time.perf_counter() - clock, 3)
    return Prepared(config, spec, run_id, started_at, seconds, complete, lock)


def check_local_input(uri: str) -> None:
    """A local input that does not exist, or a folder without any image, fails here."""
    local = local_path_of(uri)
    if local is None:
        return
    if not os.path.exists(local):
        raise SourceError(f"input not found: {uri}")
    if os.path.isdir(local) and not _has_image(local):
        raise SourceError(f"no images found in {uri} (looked for {', '.join(IMAGE_EXTENSIONS)})")


def _has_image(folder: str) -> bool:
    """Whether the tree holds at least one image file: stops at the first one."""
    for _, _, names in os.walk(folder, followlinks=True):
        if any(is_image_name(name) for name in names):
            return True
    return False


def start(prepared: Prepared, spark, cleanup: ExitStack, opened: float) -> RunContext:
    """The session is up (since ``opened``, a perf_counter reading, the session stage):
    check and lock a remote output, settle the featurize options."""
    config = prepared.config
    storage = Storage(spark, config.output)
    complete = prepared.previous_complete
    if prepared.lock is None:
        complete = check_output(storage, overwrite=config.overwrite, resume=config.resume)
        lock = RunLock.acquire(storage, prepared.run_id, prepared.started_at.isoformat())
        cleanup.callback(lock.release)
    options = replace(
        config.featurize,
        threads=config.featurize.threads or int(spark.conf.get("spark.task.cpus", "1")),
        root=config.featurize.root or input_root([config.input, *config.extra_inputs]),
    )
    return RunContext(
        config, prepared.spec, options, spark, storage, prepared.run_id,
        sparkenv.parallelism(spark), bool(complete), round(time.perf_counter() - opened, 3),
    )  # fmt: skip


def list_images(context: RunContext) -> Listed:
    """Every input listed once: a thin call into :mod:`fruitspark.sources`."""
    config = context.config
    inputs = [config.input, *config.extra_inputs]
    with stage(context, "list") as clock:
        found = list_inputs(context.spark, inputs, partitions=context.parallelism * 8)
    if found.listed == 0:
        raise SourceError(
            f"no images found in {', '.join(inputs)} (looked for {', '.join(IMAGE_EXTENSIONS)})"
        )
    return Listed(
        clock.seconds, found.source, found.listing, found.listed, found.total_bytes, found.empty
    )


def featurize_images(context: RunContext, listed: Listed) -> Featurized:
    """Each image read, decoded and featurised once; the rows cached for every later stage.

    The image partitioning (file confs for a folder scan, a repartition by count for paths read
    by the workers) is set only while the cached plan is made, never for later reads.
    """
    from pyspark import StorageLevel

    config, spark = context.config, context.spark
    previous = _reusable_rows(context, listed.listing) if config.resume else None
    todo = listed.source if previous is None else _changed(listed.listing, previous)
    todo_count = listed.count if previous is None else todo.count()
    per_task = config.images_per_partition or images_per_partition(todo_count, context.parallelism)
    # Adaptive execution would run the count that fills the cache as four jobs (the listing's
    # shuffle, the cache, a pass over it, the final sum): 0.5-0.7 s of a small run. Its plans
    # bring nothing here: the partitions are cut by count, the shuffle moves paths only.
    confs: dict[str, Any] = {ARROW_BATCH: config.rows_per_arrow_batch, ADAPTIVE: "false"}
    if "content" in todo.columns:  # Spark's file scan: pack images by count via the file confs
        _, open_cost = partition_bytes(todo_count, listed.total_bytes, context.parallelism)
        confs.update(zip(FILE_CONFS, (per_task * 2 * open_cost, open_cost), strict=True))
    else:  # paths read by the workers: as many tasks as the count asks for, a core each at least
        tasks = max(1, min(todo_count, max(context.parallelism, math.ceil(todo_count / per_task))))
        if sparkenv.partitions(todo) != tasks:  # a small listing is already a task a core
            todo = todo.repartition(tasks)
    with (
        stage(context, "featurize", bar=True, total=todo_count) as clock,
        sparkenv.temporary_conf(spark, confs),
    ):
        fresh, model_loads = featurize(todo, context.spec, context.options)
        if previous is not None:
            fresh = fresh.unionByName(previous)
        if listed.empty is not None:
            fresh = fresh.unionByName(_empty_rows(listed.empty))
        rows = fresh.persist(StorageLevel.MEMORY_AND_DISK)
        row_count = rows.count()  # fills the cache: the one pass over the images
    partitions = sparkenv.partitions(rows)
    return Featurized(
        clock.seconds, rows, row_count, todo_count, partitions, per_task, model_loads.value
    )


def reduce_features(context: RunContext, featurized: Featurized) -> Reduced:
    """PCA from the cache: sums on the executors (or, for fewer rows than dimensions, the rows
    themselves), the eigendecomposition on the driver."""
    config = context.config
    dimension = context.options.feature_dim(context.spec)
    variance = None if config.pca_k else config.pca_variance
    with stage(context, "reduce", bar=True) as clock:
        fit = fit_features(
            featurized.rows,
            dimension=dimension,
            parallelism=context.parallelism,
            rows_at_most=featurized.row_count,
            k=config.pca_k,
            variance=variance,
        )
    if fit is None:
        raise RunFailed(
            f"no image of {config.input} could be featurised "
            f"(e.g. {_some_errors(featurized.rows)}); nothing to reduce with PCA"
        )
    part = PcaInfo(
        k=fit.k,
        explained_variance=fit.explained_variance,
        k_requested=config.pca_k,
        variance_target=variance,
    )
    return Reduced(clock.seconds, fit, part)


def write_outputs(context: RunContext, featurized: Featurized, reduced: Reduced) -> Written:
    """Features with their projection, written once; the PCA model in Spark ML's format and npz."""
    spark, storage, run_id = context.spark, context.storage, context.run_id
    fit = reduced.fit
    with stage(context, "write", bar=True) as clock:
        shipped = sparkenv.ship(spark, (fit.mean, fit.components))
        uri = storage.uri(staged(run_id, FEATURES))
        dimension = len(fit.mean)
        # A file a core: the cache's partitions were cut for featurizing (about eight a core),
        # and each Python task costs some 60 ms of set-up (16 -> 2 tasks at 3,040 images)
        rows = featurized.rows.coalesce(max(1, context.parallelism))
        schema = write_features(rows, shipped, uri, dimension)
        save_spark_model(spark, storage, staged(run_id, PCA_MODEL), fit)
        buffer = io.BytesIO()
        np.savez(buffer, **export_parameters(fit))
        storage.write_bytes(staged(run_id, PCA_NPZ), buffer.getvalue())
        # the schema is known: given, it spares Spark's job that reads it from the footers
        written = spark.read.schema(schema).parquet(uri)
        parts = [FEATURES, PCA_MODEL, PCA_NPZ]
        if context.config.csv:
            _write_csv(written, storage.uri(staged(run_id, CSV)), fit.k)
            parts.append(CSV)
    return Written(clock.seconds, parts, written)


def write_features(rows, shipped, uri: str, dimension: int):
    """``rows`` with their ``pca`` column as OUTPUT_COLUMNS in Parquet at ``uri``; returns the
    Spark schema written. By the Python tasks themselves where ``uri`` is a local folder
    (``task_parquet``: a third of the time), else by Spark's writer."""
    folder = local_path_of(uri)
    if folder is not None:
        return write_features_in_tasks(rows, shipped, folder, dimension)
    return write_features_with_spark(rows, shipped, uri, dimension)


def output_schema(rows):
    """The Spark schema of the features Parquet: OUTPUT_COLUMNS of ``rows``, the features and
    their ``pca`` as float arrays."""
    from pyspark.sql.types import ArrayType, FloatType, StructField, StructType

    floats = ArrayType(FloatType())
    return StructType(
        [
            StructField(name, floats) if name in FLOAT_ARRAYS else rows.schema[name]
            for name in OUTPUT_COLUMNS
        ]
    )


def output_batches(shipped, dimension: int):
    """A task's batch of cached rows as an output batch: the projection added, the features'
    bytes as floats, OUTPUT_COLUMNS in order."""
    project_batch = projector(shipped)

    def output_batch(batch):
        batch = project_batch(batch)
        features = as_float_lists(batch.column("features"), dimension)
        batch = batch.set_column(batch.schema.get_field_index("features"), "features", features)
        return batch.select(list(OUTPUT_COLUMNS))

    return output_batch


def write_features_in_tasks(rows, shipped, folder: str, dimension: int):
    schema = output_schema(rows)
    transform = output_batches(shipped, dimension)
    write_in_tasks(rows, folder, schema, transform, plain=FLOAT_ARRAYS)
    return schema


def write_features_with_spark(rows, shipped, uri: str, dimension: int):
    schema = output_schema(rows)
    transform = output_batches(shipped, dimension)
    final = rows.mapInArrow(lambda batches: map(transform, batches), schema)
    writer = final.write
    for column in FLOAT_ARRAYS:
        writer = writer.option(f"parquet.enable.dictionary#{column}.list.element", "false")
    writer.parquet(uri)
    return schema


def account_images(context: RunContext, listed: Listed, written: Written) -> Accounted:
    """Accounting and the per-class counts, from the written output, in one aggregation.

    Their shuffles move paths and labels only: planned up front into a partition per core, they
    take about half the time that adaptive execution's extra jobs and re-planning cost them.
    """
    small_shuffles = dict(zip(SMALL_SHUFFLES, ("false", str(context.parallelism)), strict=True))
    with (
        stage(context, "account") as clock,
        sparkenv.temporary_conf(context.spark, small_shuffles),
    ):
        accounting, groups = account_by(
            listed.listing, written.features, ("label", "split", "error")
        )
    errors: dict[str, int] = {}
    labels: dict[str, int] = {}
    classes: dict[tuple, int] = {}
    for row in groups:
        if row["error"] is not None:
            errors[row["error"]] = errors.get(row["error"], 0) + row["count"]
        labels[row["label"]] = labels.get(row["label"], 0) + row["count"]
        key = (row["label"], row["split"], row["error"] is not None)
        classes[key] = classes.get(key, 0) + row["count"]
    failed = sum(errors.values())
    images = ImageCounts(listed=listed.count, featurised=accounting.rows - failed, failed=failed)
    class_counts = [ClassCount(*key, count) for key, count in sorted(classes.items(), key=str)]
    errors = dict(sorted(errors.items(), key=lambda item: (item[1], item[0])))
    ordered_labels = dict(sorted(labels.items(), key=lambda item: str(item[0])))
    return Accounted(clock.seconds, accounting, images, errors, ordered_labels, class_counts)


def assemble(
    prepared: Prepared,
    context: RunContext,
    listed: Listed,
    featurized: Featurized,
    reduced: Reduced,
    written: Written,
    accounted: Accounted,
) -> Summary:
    """The summary from the stages' parts; the report and commit stages add their times."""
    config, options, spark = context.config, context.options, context.spark
    images = replace(
        accounted.images,
        processed_this_run=featurized.processed,
        reused_from_previous_run=listed.count - featurized.processed,
    )
    stages = {
        "prepare": prepared.seconds,
        "session": context.seconds,
        "list": listed.seconds,
        "featurize": featurized.seconds,
        "reduce": reduced.seconds,
        "write": written.seconds,
        "account": accounted.seconds,
    }
    return Summary(
        fruitspark_version=__version__,
        run_id=context.run_id,
        input=config.input,
        extra_inputs=list(config.extra_inputs),
        output=context.storage.uri(),
        started_at=prepared.started_at.isoformat(),
        finished_at=datetime.now(timezone.utc).isoformat(),  # the commit sets the final one
        images=images,
        errors_by_reason=accounted.errors_by_reason,
        accounting=accounted.accounting,
        model=model_info(config, context.spec, options),
        pca=reduced.part,
        stages=stages,
        throughput_images_per_s=round(featurized.processed / max(featurized.seconds, 1e-9), 2),
        settings=Settings(
            batch_size=options.batch_size,
            threads_per_task=options.threads,
            rows_per_arrow_batch=config.rows_per_arrow_batch,
            images_per_partition=featurized.images_per_partition,
            parallelism=context.parallelism,
            featurize_partitions=featurized.partitions,
            model_loads=featurized.model_loads,
        ),
        spark=SparkInfo(sparkenv.master(spark), spark.version, sparkenv.app_id(spark)),
        labels=accounted.labels,
        class_counts=accounted.class_counts,
    )


def model_info(config: RunConfig, spec: ModelSpec, options: FeaturizeOptions) -> ModelInfo:
    """The summary's model part: what ``predict`` and ``--resume`` need to rebuild or compare."""
    return ModelInfo(
        id=spec.model_id,
        source=config.model if config.model in BUILT_IN else spec.path,
        mean=list(spec.normalisation.mean),
        std=list(spec.normalisation.std),
        sha256=spec.sha256,
        precision=spec.precision,
        input_size=spec.input_size,
        output=spec.output_name,
        feature_dim=options.feature_dim(spec),
        descriptor=options.descriptor,
        colour_weight=options.colour_weight,
        logits=options.logits,
        views=options.views,
    )


def report_stage(context: RunContext, summary: Summary, written: Written, accounted: Accounted):
    """The report is built before the commit, so it is there when the output is complete."""
    parts = list(written.parts)
    seconds = 0.0
    if context.config.report:
        from fruitspark.report import render_report

        with stage(context, "report") as clock:
            table = report_table(written.features, accounted.images.featurised)
            html = render_report(summary.to_dict(), table, None)
            context.storage.write_bytes(staged(context.run_id, REPORT), html.encode())
        seconds = clock.seconds
        parts.append(REPORT)
    return replace(summary, stages={**summary.stages, "report": seconds}), parts


def commit_stage(prepared: Prepared, context: RunContext, summary: Summary, parts) -> Summary:
    """Move the parts into place; the summary, with the commit's own time, goes last."""
    committed: list[Summary] = []

    def finish() -> Summary:
        now = datetime.now(timezone.utc)
        stages = {
            **summary.stages,
            "commit": round(time.perf_counter() - clock.started, 3),
            "total": round((now - prepared.started_at).total_seconds(), 3),
        }
        committed.append(replace(summary, finished_at=now.isoformat(), stages=stages))
        return committed[0]

    with stage(context, "commit") as clock:
        commit(context.storage, context.run_id, parts, finish)
    return committed[0]


def check_outcome(config: RunConfig, summary: Summary) -> Summary:
    where = f"{summary.output.rstrip('/')}/{SUMMARY}"
    if not summary.accounting.ok:
        raise RunFailed(f"accounting failed: {asdict(summary.accounting)} (see {where})")
    if config.fail_on_error and summary.images.failed:
        raise RunFailed(f"{summary.images.failed} image(s) failed (--fail-on-error); see {where}")
    return summary


# --- helpers of the stages ------------------------------------------------------------------------


def _reusable_rows(context: RunContext, listing):
    """Rows of the previous output whose file is unchanged (same path, size and mtime)."""
    from fruitspark.summary import load

    if not context.previous_complete:
        return None
    before = load(context.storage.read_bytes(SUMMARY)).model
    now = model_info(context.config, context.spec, context.options)
    if before.precision != now.precision:
        raise OutputError(
            f"cannot resume: the previous output was made in {before.precision}, this run is "
            f"{now.precision}; features of both must not mix (give --precision "
            f"{before.precision}, or --overwrite)"
        )
    compared = ("sha256", "input_size", "descriptor", "colour_weight", "logits", "views")
    if any(getattr(before, name) != getattr(now, name) for name in compared):
        raise OutputError(
            "cannot resume: the previous output was made with another model or descriptor; "
            "use --overwrite"
        )
    old = context.spark.read.parquet(context.storage.uri(FEATURES)).drop("pca")
    current = listing.select("path", "size", "modified")
    reused = old.join(current, ["path", "size", "modified"], "left_semi")
    return _features_as_bytes(reused, context.options.feature_dim(context.spec))


def _features_as_bytes(frame, dimension: int):
    """A previous output's rows with their float-array features as the cache's float32 bytes."""
    from pyspark.sql.types import BinaryType, StructField, StructType

    schema = StructType(
        [StructField(f.name, BinaryType()) if f.name == "features" else f for f in frame.schema]
    )

    def convert(batches):
        for batch in batches:
            index = batch.schema.get_field_index("features")
            features = lists_to_bytes(batch.column(index), dimension)
            yield batch.set_column(index, "features", features)

    return frame.mapInArrow(convert, schema)


def _changed(listing, previous):
    """Listing rows that are new or changed: read by path in the workers, not by Spark's scan."""
    return listing.join(previous.select("path"), "path", "left_anti")


def _empty_rows(empty):
    """Error rows for zero-byte images, in the featurised rows' schema."""
    from pyspark.sql import functions as F

    return empty.select(
        "*",
        F.lit(None).cast("int").alias("width"),
        F.lit(None).cast("int").alias("height"),
        F.lit(None).cast("binary").alias("features"),
        F.lit(EMPTY_FILE).alias("error"),
    )


def _some_errors(rows) -> str:
    reasons = [row["error"] for row in rows.select("error").distinct().limit(3).collect()]
    return "; ".join(str(reason) for reason in reasons)


def _write_csv(written, uri: str, k: int) -> None:
    from pyspark.sql import functions as F

    columns = [F.col("pca")[i].alias(f"pc{i + 1}") for i in range(k)]
    written.where("error IS NULL").select("path", "label", "split", *columns).write.option(
        "header", "true"
    ).csv(uri)


REPORT_SAMPLE = 20_000  # points in the PCA scatter; errors are all kept (the report caps rows)


def report_table(written, featurised: int | None = None):
    """What the report plots, bounded on the driver: every failed row and a sample of the rest.

    ``featurised`` (the good rows, known from the summary) spares a count.
    """
    from pyspark.sql import functions as F

    columns = ["path", "label", "split", "width", "height", "pca", "error"]
    failed = written.where(F.col("error").isNotNull()).select(*columns).limit(100_000)
    good = written.where(F.col("error").isNull())
    total = good.count() if featurised is None else featurised
    if total > REPORT_SAMPLE:
        good = good.sample(fraction=min(1.0, 1.2 * REPORT_SAMPLE / total), seed=7)
    import pyarrow as pa

    rows = good.select(*columns).limit(REPORT_SAMPLE).unionByName(failed).toPandas()
    return pa.Table.from_pandas(rows, preserve_index=False)


def refresh_report(output: str, spark=None) -> str:
    """Rewrite ``OUTPUT/report.html`` from the output as it is now (e.g. after ``evaluate``)."""
    from fruitspark.layout import EVALUATION
    from fruitspark.report import render_report
    from fruitspark.session import spark_session
    from fruitspark.summary import load

    spark = spark or spark_session()
    storage = Storage(spark, output)
    if not storage.exists(SUMMARY):
        raise OutputError(f"{output} is not a complete fruitspark output (no {SUMMARY})")
    summary = load(storage.read_bytes(SUMMARY))
    evaluation = storage.read_json(EVALUATION) if storage.exists(EVALUATION) else None
    written = spark.read.parquet(storage.uri(FEATURES))
    table = report_table(written, summary.images.featurised)
    storage.write_bytes(REPORT, render_report(summary.to_dict(), table, evaluation).encode())
    return storage.uri(REPORT)

"""Everything that differs between a classic SparkSession and a Spark Connect one, in one place.

A classic session (local mode, spark-submit, a notebook's own) has a SparkContext on this side:
broadcasts, accumulators, the status tracker, local properties, the JVM's Hadoop FileSystem. A
Spark Connect session (``SparkSession.builder.remote(...)``, Databricks serverless and shared
clusters) has none of them: only DataFrames, SQL, tags and session artifacts cross its gRPC
channel. Every use of those goes through this module, so that each gets its Connect fallback here
and nowhere else. The caller's session is left as found:
:func:`session_as_found` restores every conf and job property a run or evaluate sets.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

JOB_PROPERTIES = ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel")


UNKNOWN_PARALLELISM = 8  # Connect to a remote cluster whose cores the client cannot see


def is_connect(spark) -> bool:
    """Whether ``spark`` is a Spark Connect session (no SparkContext on this side)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def context(spark) -> Any | None:
    """The SparkContext of a classic session; None under Spark Connect."""
    return None if is_connect(spark) else spark.sparkContext


def parallelism(spark) -> int:
    """Cores Spark runs tasks on: the SparkContext's, or on Connect what the conf tells."""
    sc = context(spark)
    if sc is not None:
        return int(sc.defaultParallelism)
    configured = spark.conf.get("spark.default.parallelism", None)
    if configured:
        return int(configured)
    local = re.fullmatch(r"local\[(\d+|\*)(?:,\d+)?\]", spark.conf.get("spark.master", "") or "")
    if local:
        return (os.cpu_count() or 2) if local.group(1) == "*" else int(local.group(1))
    return UNKNOWN_PARALLELISM


def collect_arrow(frame) -> Any:
    """``frame``'s rows on the driver as a ``pyarrow.Table``: ``toArrow`` (PySpark 4, classic and
    Connect), the same private collect in PySpark 3.5, else rows converted here."""
    import pyarrow as pa

    if hasattr(frame, "toArrow"):
        return frame.toArrow()
    if hasattr(frame, "_collect_as_arrow"):
        from pyspark.sql.pandas.types import to_arrow_schema

        schema = to_arrow_schema(frame.schema)
        return pa.Table.from_batches(frame._collect_as_arrow(), schema=schema)
    return pa.Table.from_pylist([row.asDict() for row in frame.collect()])


def local_frame(spark, columns: dict[str, list], schema) -> Any:
    """Rows made on the driver (``columns`` of values, Spark ``schema``) as a DataFrame whose
    data the JVM holds as Arrow batches. ``createDataFrame`` of Python rows instead keeps them
    pickled: each read of the frame (the listing is read by featurize and again by account)
    starts Python workers to unpickle them, 0.7 s of a small run's first job. PySpark 4 and
    Connect take an Arrow table; PySpark 3.5's classic session takes pandas through Arrow."""
    import pyarrow as pa
    from pyspark.sql import DataFrame
    from pyspark.sql.pandas.types import to_arrow_schema

    try:
        arrow = to_arrow_schema(schema, timezone="UTC")  # PySpark 4 wants the zone of timestamps
    except TypeError:
        arrow = to_arrow_schema(schema)  # PySpark 3.5: always UTC
    table = pa.table({field.name: pa.array(columns[field.name], field.type) for field in arrow})
    if is_connect(spark) or hasattr(DataFrame, "toArrow"):
        return spark.createDataFrame(table, schema)
    with temporary_conf(spark, {"spark.sql.execution.arrow.pyspark.enabled": "true"}):
        return spark.createDataFrame(table.to_pandas(), schema)


def master(spark) -> str:
    sc = context(spark)
    return sc.master if sc is not None else spark.conf.get("spark.master", "connect")


def app_id(spark) -> str:
    sc = context(spark)
    return sc.applicationId if sc is not None else spark.conf.get("spark.app.id", "")


def partitions(frame) -> int:
    """Partitions of a DataFrame's plan (0 where unknown: Spark Connect)."""
    try:
        return int(frame.rdd.getNumPartitions())
    except Exception:
        return 0


def ship_file(spark, path: str | Path, name: str) -> Callable[[], bytes]:
    """A picklable function that returns the file's bytes on any executor, shipped once.

    Classic: a broadcast (one copy per executor, fetched on first use). Connect: a session
    artifact under ``name`` (unique per content), which every node downloads once into the
    session's SparkFiles folder. Either way the bytes never travel inside each task.
    """
    if not is_connect(spark):
        return _BroadcastValue(spark.sparkContext.broadcast(Path(path).read_bytes()))
    _add_artifact_once(spark, Path(path), name)
    return _SparkFile(name)


class _BroadcastValue:
    def __init__(self, broadcast) -> None:
        self.broadcast = broadcast

    def __call__(self) -> bytes:
        return self.broadcast.value


class _SparkFile:
    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self) -> bytes:
        from pyspark import SparkFiles

        return Path(SparkFiles.get(self.name)).read_bytes()


_ADDED: set[tuple[str, str]] = set()


def _add_artifact_once(spark, path: Path, name: str) -> None:
    key = (spark.session_id, name)
    if key in _ADDED:
        return
    with tempfile.TemporaryDirectory() as folder:
        named = Path(folder) / name
        shutil.copyfile(path, named)
        spark.addArtifacts(str(named), file=True)
    _ADDED.add(key)


def input_files(frame) -> Any:
    """The files a file-source DataFrame reads (as URIs); ``len()`` is cheap on both sides.

    Classic keeps the JVM array (its length is one call; items are fetched only if iterated);
    Connect gets the list through ``DataFrame.inputFiles()``.
    """
    return frame.inputFiles() if is_connect(frame.sparkSession) else frame._jdf.inputFiles()


class _Shipped:
    """Connect fallback of a broadcast: the value travels inside each task's closure (small
    values only, such as PCA's components; files such as the model go by :func:`ship_file`)."""

    def __init__(self, value: Any) -> None:
        self.value = value


def ship(spark, value: Any) -> Any:
    """``value`` readable on the executors as ``.value``, sent once per executor when possible."""
    sc = context(spark)
    return sc.broadcast(value) if sc is not None else _Shipped(value)


class _NoCounter:
    value = None

    def add(self, amount: int) -> None:
        """Connect has no accumulators: the count is unknown (None in the summary)."""


def counter(spark) -> Any:
    """An executor-side counter (an accumulator); its ``.value`` is None where there is none."""
    sc = context(spark)
    return sc.accumulator(0) if sc is not None else _NoCounter()


def job_property(spark, key: str) -> str | None:
    sc = context(spark)
    return sc.getLocalProperty(key) if sc is not None else None


def set_job(spark, group: str, description: str) -> None:
    """Tag the jobs that follow (progress bars and the Spark UI read it)."""
    sc = context(spark)
    if sc is not None:
        sc.setJobGroup(group, description, interruptOnCancel=True)
    else:
        spark.addTag(group)


def jobs_of_group(spark, group: str) -> list[int]:
    """Ids of the jobs run under ``group`` (empty under Connect)."""
    sc = context(spark)
    return list(sc.statusTracker().getJobIdsForGroup(group)) if sc is not None else []


@contextmanager
def session_as_found(spark, confs: Iterable[str]) -> Iterator[None]:
    """Restore ``confs`` and the job group/description as they were, on exit and on error."""
    saved_confs = {key: spark.conf.get(key, None) for key in confs}
    sc = context(spark)
    saved_jobs = {key: job_property(spark, key) for key in JOB_PROPERTIES} if sc else {}
    tags = set(spark.getTags()) if sc is None else set()
    try:
        yield
    finally:
        for key, value in saved_confs.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)
        for key, value in saved_jobs.items():
            sc.setLocalProperty(key, value)
        if sc is None:
            for tag in set(spark.getTags()) - tags:
                spark.removeTag(tag)


@contextmanager
def temporary_conf(spark, values: dict[str, Any]) -> Iterator[None]:
    """``values`` set only inside the block (e.g. file partitioning for one scan)."""
    with session_as_found(spark, values):
        for key, value in values.items():
            spark.conf.set(key, str(value))
        yield


def hadoop_filesystem(spark, root: str) -> tuple[Any, Any, Any]:
    """``(jvm, Path(root), FileSystem)`` of the JVM's Hadoop FileSystem, for :mod:`storage`."""
    sc = context(spark)
    if sc is None:
        raise NotImplementedError("Spark Connect: the output's files are reached with pyarrow")
    jvm = sc._jvm
    path = jvm.org.apache.hadoop.fs.Path(root)
    return jvm, path, path.getFileSystem(sc._jsc.hadoopConfiguration())

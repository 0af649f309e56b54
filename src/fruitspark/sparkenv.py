"""Everything that differs between a classic SparkSession and a Spark Connect one, in one place.

A classic session (local mode, spark-submit, a notebook's own) has a SparkContext on this side:
broadcasts, accumulators, the status tracker, the JVM's Hadoop FileSystem. A Spark Connect
session (``SparkSession.builder.remote(...)``, Databricks serverless and shared clusters) has
none of them: only DataFrames, SQL and session artifacts cross its gRPC channel. Each helper
here takes the classic path where it exists and a Connect fallback where it does not, so the
rest of the package never touches ``sparkContext``, ``_jvm`` or ``_jdf`` itself.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

UNKNOWN_PARALLELISM = 8  # Connect to a remote cluster whose cores the client cannot see


def is_connect(spark) -> bool:
    """Whether ``spark`` is a Spark Connect session (no SparkContext on this side)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def ship_file(spark, path: str | Path, name: str) -> Callable[[], bytes]:
    """A picklable function that returns the file's bytes on any executor, shipped once.

    Classic: a broadcast (one copy per executor, fetched on first use). Connect: a session
    artifact under ``name`` (unique per content), which every node downloads once into the
    session's SparkFiles folder. Either way the bytes never travel inside each task.
    """
    if not is_connect(spark):
        broadcast = spark.sparkContext.broadcast(Path(path).read_bytes())
        return _BroadcastValue(broadcast)
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


def counter(spark):
    """An accumulator (classic), or None on Connect, which has none: the count is unknown."""
    return None if is_connect(spark) else spark.sparkContext.accumulator(0)


def parallelism(spark) -> int:
    """Cores Spark runs tasks on: the SparkContext's, or on Connect what the conf tells."""
    if not is_connect(spark):
        return spark.sparkContext.defaultParallelism
    configured = spark.conf.get("spark.default.parallelism", None)
    if configured:
        return int(configured)
    local = re.fullmatch(r"local\[(\d+)(?:,\d+)?\]", spark.conf.get("spark.master", "") or "")
    return int(local.group(1)) if local else UNKNOWN_PARALLELISM


def num_partitions(frame) -> int | None:
    """Partitions of ``frame``; None on Connect, where the plan's RDD is out of reach."""
    return None if is_connect(frame.sparkSession) else frame.rdd.getNumPartitions()


def application(spark) -> dict[str, str | None]:
    """Master and application id, for the summary."""
    if not is_connect(spark):
        context = spark.sparkContext
        return {"master": context.master, "app_id": context.applicationId}
    return {
        "master": spark.conf.get("spark.master", None),
        "app_id": spark.conf.get("spark.app.id", None),
    }


def input_files(frame):
    """The files a file-source DataFrame reads (as URIs); ``len()`` is cheap on both sides.

    Classic keeps the JVM array (its length is one call; items are fetched only if iterated);
    Connect gets the list through ``DataFrame.inputFiles()``.
    """
    return frame.inputFiles() if is_connect(frame.sparkSession) else frame._jdf.inputFiles()


def status_tracker(spark):
    """The SparkContext's status tracker, or None on Connect (progress then goes quiet)."""
    return None if is_connect(spark) else spark.sparkContext.statusTracker()


def hadoop_filesystem(spark, root: str):
    """``(jvm, Path(root), FileSystem)`` of the JVM's Hadoop API; classic sessions only."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(root)
    return jvm, path, path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())

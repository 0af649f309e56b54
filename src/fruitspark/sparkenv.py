"""The few things fruitspark needs from Spark beyond the DataFrame API, in one place.

Spark Connect has a DataFrame API but no ``sparkContext``: no broadcast, accumulator, status
tracker, local properties or JVM gateway. Every use of those goes through this module, so that
each gets its Connect fallback here and nowhere else. The caller's session is left as found:
:func:`session_as_found` restores every conf and job property a run or evaluate sets.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

JOB_PROPERTIES = ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel")


def context(spark) -> Any | None:
    """The SparkContext of a classic session; None under Spark Connect."""
    try:
        return spark.sparkContext
    except Exception:  # Connect raises instead of having a context
        return None


def parallelism(spark) -> int:
    sc = context(spark)
    if sc is not None:
        return int(sc.defaultParallelism)
    return int(spark.conf.get("spark.default.parallelism", str(os.cpu_count() or 2)))


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


class _Shipped:
    """Connect fallback of a broadcast: the value travels inside each task's closure."""

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

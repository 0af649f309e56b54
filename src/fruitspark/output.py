"""The output folder's life: refuse to clobber, lock, stage, account for every image, commit.

A run first takes the output's lock, a small ``_run.lock`` marker (run id, start time, host, pid)
created only if absent, so that a second run on the same output is refused with the first one's
id. It writes everything under ``OUTPUT/_staging/<run id>/`` and commits by removing the old
``summary.json``, moving each staged part into place, and writing ``summary.json`` last; then it
removes its lock. So an output with a ``summary.json`` is complete; one without it is a partial
result the next run names. A marker whose process is gone (same host, dead pid) was left by a
killed run: it is stale, and the output is then partial unless its summary is there.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from fruitspark.layout import RUN_LOCK, STAGING, SUMMARY, staged
from fruitspark.summary import Accounting, Summary


class OutputError(ValueError):
    """An output that must not be written as asked; one line for the user."""


def process_alive(pid: int) -> bool:
    """Whether a process of this host has that pid (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class LockMarker:
    run_id: str
    started_at: str
    host: str
    pid: int

    def is_stale(self) -> bool:
        """Whether the run that wrote it is gone; a run on another host is assumed alive."""
        return self.host == socket.gethostname() and not process_alive(self.pid)

    def describe(self) -> str:
        return f"run {self.run_id} started at {self.started_at} (pid {self.pid} on {self.host})"


def read_marker(storage) -> LockMarker | None:
    if not storage.exists(RUN_LOCK):
        return None
    try:
        return LockMarker(**json.loads(storage.read_bytes(RUN_LOCK)))
    except (ValueError, TypeError):
        return LockMarker("unknown", "unknown", "unknown host", -1)


def check_output(storage, *, overwrite: bool, resume: bool) -> bool:
    """Whether a complete previous output exists; raises when this run must not touch it.

    ``storage`` is a :class:`~fruitspark.storage.Storage` or, before Spark, a ``LocalFiles``.
    """
    if overwrite and resume:
        raise OutputError("--overwrite and --resume exclude each other: choose one")
    if not storage.exists():
        return False
    marker = read_marker(storage)
    if marker is not None and not marker.is_stale():
        raise OutputError(
            f"output {storage.root} is being written by {marker.describe()}: wait for it, or "
            f"delete {RUN_LOCK} there if that run is gone"
        )
    complete = storage.exists(SUMMARY)
    leftovers = [name for name in storage.list() if name != RUN_LOCK]
    if complete and not (overwrite or resume):
        raise OutputError(
            f"output {storage.root} already holds results: "
            "use --overwrite to replace them or --resume to update them"
        )
    if not complete and (leftovers or marker) and not overwrite:
        killed = f"; {marker.describe()} was killed" if marker else ""
        raise OutputError(
            f"output {storage.root} holds a partial result of an interrupted run "
            f"(no {SUMMARY}{killed}; found {', '.join(leftovers[:5])}): "
            "use --overwrite to replace it"
        )
    if marker is not None:
        storage.delete(RUN_LOCK)  # stale, and this run may replace what it left
    return complete


class RunLock:
    """The output's run marker, held from the checks to the commit."""

    def __init__(self, storage, marker: LockMarker) -> None:
        self.storage, self.marker = storage, marker

    @classmethod
    def acquire(cls, storage, run_id: str, started_at: str) -> RunLock:
        marker = LockMarker(run_id, started_at, socket.gethostname(), os.getpid())
        if not storage.create_new(RUN_LOCK, json.dumps(asdict(marker)).encode()):
            other = read_marker(storage)
            holder = other.describe() if other else "another run"
            raise OutputError(f"output {storage.root} is being written by {holder}")
        return cls(storage, marker)

    def release(self) -> None:
        """Remove the marker if it is still this run's."""
        current = read_marker(self.storage)
        if current is not None and current.run_id == self.marker.run_id:
            self.storage.delete(RUN_LOCK)


def commit(storage, run_id: str, parts: list[str], finish: Callable[[], Summary]) -> None:
    """Move the staged parts into place, then write the summary: the output is complete only now.

    ``finish`` gives the summary once the parts are in place (so that it can time the commit).
    """
    storage.delete(SUMMARY)
    keep = set(parts) | {STAGING, RUN_LOCK}
    for name in storage.list():
        if name not in keep:
            storage.delete(name)
    for part in parts:
        storage.rename(staged(run_id, part), part)
    storage.delete(STAGING)
    storage.write_bytes(SUMMARY, finish().to_json().encode())


def account(listed, written) -> Accounting:
    """Check that each listed path appears exactly once in ``written``; counts, never rows, return.

    ``listed`` and ``written`` are DataFrames with a ``path`` column; one aggregation.
    """
    return account_by(listed, written, ())[0]


def account_by(listed, written, keys: Sequence[str]) -> tuple[Accounting, list[dict[str, Any]]]:
    """The accounting and the written rows counted per ``keys`` (columns of ``written``), in one
    Spark job: the two sides' paths are stacked (a union, not a join) and counted per path,
    then per key. A full outer join and a second aggregation for the per-key counts cost a
    small run's first account stage 1.7 s in a fresh JVM, most of it planning and compiling.

    Each group is ``{key: value, ..., "count": written rows}``; groups without written rows (the
    listed paths that are missing) are left out.
    """
    from pyspark.sql import functions as F

    types = {name: written.schema[name].dataType for name in keys}
    listed_marks = listed.select(
        "path", F.lit(1).alias("listings"), F.lit(0).alias("copies"),
        *[F.lit(None).cast(kind).alias(name) for name, kind in types.items()],
    )  # fmt: skip
    written_marks = written.select(
        "path", F.lit(0).alias("listings"), F.lit(1).alias("copies"), *keys
    )
    counted = [F.sum("listings").alias("listings"), F.sum("copies").alias("copies")]
    per_path = (
        listed_marks.unionByName(written_marks)
        .groupBy("path")
        .agg(*counted, *[F.max(name).alias(name) for name in keys])
    )
    listed_once, copies = F.col("listings") > 0, F.col("copies")
    rows = (
        per_path.groupBy(*keys)
        .agg(
            F.sum("listings").alias("listed"),
            F.sum(copies).alias("rows"),
            F.count(F.when(listed_once & (copies == 0), 1)).alias("missing"),
            F.sum(F.when(copies > 1, copies - 1).otherwise(0)).alias("duplicated"),
            F.count(F.when(~listed_once, 1)).alias("unexpected"),
        )
        .collect()
    )
    counts = [field.name for field in fields(Accounting) if field.name != "ok"]
    totals = {name: sum(int(row[name]) for row in rows) for name in counts}
    ok = totals["missing"] == totals["duplicated"] == totals["unexpected"] == 0
    groups = [{**{name: row[name] for name in keys}, "count": int(row["rows"])} for row in rows]
    return Accounting(**totals, ok=ok), [group for group in groups if group["count"]]

"""Images done / total, rate and ETA of a running Spark job, without flooding the terminal.

A background thread reads Spark's status tracker for the job group of the stage being watched:
tasks finish in order of a few hundred images, which gives a smooth enough count at no cost to
the executors. On a terminal the line is redrawn in place; in a log, one line every 10 %.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from fruitspark.sparkenv import context as spark_context


def format_progress(done: int, total: int, elapsed: float) -> str:
    rate = done / elapsed if elapsed > 0 else 0.0
    remaining = (total - done) / rate if rate > 0 else float("nan")
    eta = f"{remaining:4.0f} s" if remaining == remaining else "   ? s"
    percent = 100.0 * done / total if total else 100.0
    return f"{done:>8}/{total} images {percent:5.1f} %  {rate:6.1f} images/s  ETA {eta}"


@contextmanager
def watch(
    spark, group: str, total_images: int, *, stream: TextIO | None = None, every: float = 2.0
) -> Iterator[None]:
    """Report progress of the jobs run inside the block, tagged with ``group``.

    Spark Connect has no status tracker: there the block runs without a progress line.
    """
    if spark_context(spark) is None:
        yield
        return
    stream = stream or sys.stderr
    context = spark.sparkContext
    context.setJobGroup(group, f"fruitspark {group}", interruptOnCancel=True)
    stop = threading.Event()
    started = time.monotonic()
    interactive = stream.isatty()
    last_decile = -1

    def done_images() -> int:
        tracker = context.statusTracker()
        completed = total = 0
        for job_id in tracker.getJobIdsForGroup(group):
            job = tracker.getJobInfo(job_id)
            for stage_id in job.stageIds if job else []:
                stage = tracker.getStageInfo(stage_id)
                if stage:
                    completed += stage.numCompletedTasks
                    total += stage.numTasks
        return round(total_images * completed / total) if total else 0

    def report() -> None:
        nonlocal last_decile
        while not stop.wait(every):
            done = done_images()
            line = format_progress(done, total_images, time.monotonic() - started)
            if interactive:
                stream.write("\r" + line)
                stream.flush()
            elif done and (decile := 10 * done // total_images) > last_decile:
                last_decile = decile
                stream.write(line + "\n")
                stream.flush()

    thread = threading.Thread(target=report, name=f"progress-{group}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if interactive:
            stream.write("\r" + " " * 72 + "\r")
        context.setLocalProperty("spark.jobGroup.id", None)

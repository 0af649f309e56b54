"""Progress of a running Spark stage as a tqdm bar: done / total, rate and ETA.

``with watch(spark, "featurize", total=n_images):`` shows a bar while the block runs; the work
inside is unchanged. The count comes from what Spark already tracks about its tasks, read on the
driver, so the executors pay nothing:

- a classic session: the status tracker, for the jobs of a job group set for the block (the
  thread's previous job group is put back afterwards: a notebook's session is left as found);
- Spark Connect (no SparkContext): the session's progress handler (PySpark 4), or, without one,
  a bar that shows only the elapsed time.

With ``total`` the bar counts items (images), scaled from the share of tasks completed; without
it, it counts tasks, whose total grows as Spark plans the stage's jobs. ``tqdm.auto`` draws a
widget in Jupyter (with ipywidgets) and a text bar elsewhere; in a log (not a terminal, e.g. an
EMR step's) one line is written per 10 % of a known total, or, counting tasks whose total grows
(evaluate's thousands of solver jobs), one every ``log_every`` seconds while tasks complete.
``TQDM_DISABLE=1`` turns every bar off.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from tqdm import TqdmExperimentalWarning, tqdm

JOB_GROUP_KEYS = ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel")
TaskCount = Callable[[], tuple[int, int]]  # (completed, total) tasks so far


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where tqdm.auto draws a widget)."""
    shell = sys.modules.get("IPython")
    ipython = shell.get_ipython() if shell is not None else None  # type: ignore[attr-defined]
    return ipython is not None and "IPKernelApp" in getattr(ipython, "config", {})


def _bar_class(stream: TextIO) -> type[tqdm]:
    """tqdm.auto's widget in Jupyter when ipywidgets is there; the text bar otherwise (which
    Jupyter also redraws in place), rather than tqdm.auto's warning."""
    if stream is sys.stderr and in_notebook() and importlib.util.find_spec("ipywidgets"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TqdmExperimentalWarning)
            from tqdm.auto import tqdm as auto

        return auto
    return tqdm


@contextmanager
def watch(
    spark,
    stage: str,
    total: int | None = None,
    *,
    unit: str = "images",
    group: str | None = None,
    stream: TextIO | None = None,
    every: float = 0.5,
    log_every: float = 30.0,
) -> Iterator[None]:
    """Show the progress of the Spark jobs run inside the block (see the module's docstring)."""
    stream = stream or sys.stderr
    with _task_counter(spark, group or f"fruitspark-{stage}-{time.monotonic_ns()}") as count:
        bar = _Bar(stage, total, unit, stream, log_every)
        stop = threading.Event()

        def poll() -> None:
            while not stop.wait(every):
                bar.show(*count())

        thread = threading.Thread(target=poll, name=f"progress-{stage}", daemon=True)
        thread.start()
        finished = False
        try:
            yield
            finished = True
        finally:
            stop.set()
            thread.join()
            bar.close(*count(), finished=finished)


def tracked(stage: str) -> Callable:
    """Decorator: run ``function(..., spark=...)`` inside :func:`watch` (counting tasks).

    The function's ``spark`` argument is resolved first (the active session, or a new one), so
    the bar follows the session the function uses.
    """

    def decorate(function: Callable) -> Callable:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from fruitspark.session import spark_session

            bound = signature.bind(*args, **kwargs)
            bound.arguments["spark"] = bound.arguments.get("spark") or spark_session()
            with watch(bound.arguments["spark"], stage, unit="tasks"):
                return function(*bound.args, **bound.kwargs)

        return wrapper

    return decorate


class _Bar:
    """A tqdm bar on a terminal or in a notebook; one line per decile in a log."""

    def __init__(
        self, stage: str, total: int | None, unit: str, stream: TextIO, log_every: float = 30.0
    ) -> None:
        self.stage, self.total, self.stream, self.log_every = stage, total, stream, log_every
        self.unit = unit if total is not None else "tasks"
        self.started = self.logged_at = time.monotonic()
        self.logged_decile = self.logged_done = 0
        interactive = stream.isatty() or (stream is sys.stderr and in_notebook())
        self.bar = (
            _bar_class(stream)(total=total, desc=stage, unit=self.unit, file=stream, leave=True)
            if interactive
            else None
        )

    def _position(self, completed: int, tasks: int) -> tuple[int, int | None]:
        if self.total is None:
            return completed, tasks or None
        return (round(self.total * completed / tasks) if tasks else 0), self.total

    def show(self, completed: int, tasks: int) -> None:
        done, total = self._position(completed, tasks)
        if self.bar is not None:
            self.bar.total = total
            self.bar.update(done - self.bar.n)
        elif self.total is None:  # a growing total: deciles mean nothing, time does
            if done > self.logged_done and time.monotonic() - self.logged_at >= self.log_every:
                self.logged_done, self.logged_at = done, time.monotonic()
                self._log(done, total)
        elif total and (decile := 10 * done // total) > self.logged_decile and done < total:
            self.logged_decile = decile
            self._log(done, total)

    def close(self, completed: int, tasks: int, *, finished: bool) -> None:
        done, total = self._position(completed, tasks)
        if finished and total:
            done = total  # the jobs are over, even if the last poll came before the last task
        if self.bar is not None:
            self.bar.total = total
            self.bar.update(done - self.bar.n)
            self.bar.close()
        elif finished:
            self._log(done, total)

    def _log(self, done: int, total: int | None) -> None:
        elapsed = time.monotonic() - self.started
        line = tqdm.format_meter(done, total, elapsed, prefix=self.stage, unit=self.unit)
        self.stream.write(line + "\n")
        self.stream.flush()


@contextmanager
def _task_counter(spark, group: str) -> Iterator[TaskCount]:
    """A function giving (completed, total) tasks of the block's jobs, however Spark tells."""
    try:
        context = spark.sparkContext
    except Exception:  # Spark Connect has no SparkContext
        context = None
    if context is not None:
        with _job_group(context, group) as count:
            yield count
    else:
        with _connect_handler(spark) as count:
            yield count


@contextmanager
def _job_group(context, group: str) -> Iterator[TaskCount]:
    previous = {key: context.getLocalProperty(key) for key in JOB_GROUP_KEYS}
    if previous["spark.jobGroup.id"] != group:  # the caller may have tagged the jobs already
        context.setJobGroup(group, group, interruptOnCancel=True)

    finished: dict[int, tuple[int, int]] = {}  # a job's tasks, once it has ended

    def count() -> tuple[int, int]:
        """Tasks of the group's jobs; an ended job is asked about once, so that a block of
        thousands of jobs (evaluate's solver iterations) costs each poll only its running ones."""
        tracker = context.statusTracker()
        counts = list(finished.values())
        for job_id in tracker.getJobIdsForGroup(group):
            if job_id in finished:
                continue
            job = tracker.getJobInfo(job_id)
            done = total = 0
            for stage_id in job.stageIds if job else []:
                info = tracker.getStageInfo(stage_id)
                if info:
                    done, total = done + info.numCompletedTasks, total + info.numTasks
            if job is not None and job.status in ("SUCCEEDED", "FAILED"):
                finished[job_id] = (done, total)
            counts.append((done, total))
        return sum(c for c, _ in counts), sum(t for _, t in counts)

    try:
        yield count
    finally:
        for key, value in previous.items():
            context.setLocalProperty(key, value)


@contextmanager
def _connect_handler(spark) -> Iterator[TaskCount]:
    """Spark Connect: stages of the operations reported while the block runs."""
    seen: dict[tuple[str | None, int], tuple[int, int]] = {}
    lock = threading.Lock()

    def handler(stages=None, inflight_tasks=0, operation_id=None, done=False, **_) -> None:
        with lock:
            for info in stages or []:
                seen[(operation_id, info.stage_id)] = (info.num_completed_tasks, info.num_tasks)

    def count() -> tuple[int, int]:
        with lock:
            return sum(c for c, _ in seen.values()), sum(t for _, t in seen.values())

    try:
        spark.registerProgressHandler(handler)
    except Exception:  # PySpark 3.5 Connect: no progress from the server, elapsed time only
        yield lambda: (0, 0)
        return
    try:
        yield count
    finally:
        spark.removeProgressHandler(handler)

"""Faults that fixtures inject into Spark tasks, so that the package carries no test switch.

The module is pickled by value (``cloudpickle.register_pickle_by_value``), so Python workers,
which cannot import the tests, run it as the driver defined it.
"""

from __future__ import annotations

import os


def kill_first_attempt(function, partition: int):
    """``function`` (a mapInArrow body) whose first attempt on ``partition`` dies after one
    batch, as a Python worker killed by the OOM killer would (exit 137); retries run normally."""

    def run(batches):
        from pyspark import TaskContext

        context = TaskContext.get()
        doomed = context.partitionId() == partition and context.attemptNumber() == 0
        for number, batch in enumerate(function(batches)):
            if number == 1 and doomed:
                os._exit(137)
            yield batch

    return run


def kill_first_attempt_at_batch(transform, partition: int, batch: int):
    """``transform`` (one batch to one batch) whose first attempt on ``partition`` dies at its
    ``batch``-th call (counted from 0), after the earlier batches went on; retries run normally."""
    calls = {"count": 0}

    def run(record_batch):
        from pyspark import TaskContext

        context = TaskContext.get()
        doomed = context.partitionId() == partition and context.attemptNumber() == 0
        if doomed and calls["count"] == batch:
            os._exit(137)
        calls["count"] += 1
        return transform(record_batch)

    return run

"""Progress bars of Spark stages: counts from Spark's task tracking, the session left as found."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import time

import pytest

from fruitspark.progress import tracked, watch


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _slow_job(spark, partitions: int = 6, seconds: float = 0.4) -> int:
    def work(rows):
        time.sleep(seconds)
        yield sum(1 for _ in rows)

    return sum(spark.sparkContext.parallelize(range(60), partitions).mapPartitions(work).collect())


def test_a_log_gets_a_line_per_decile_with_rate_and_eta(spark):
    log = io.StringIO()
    with watch(spark, "featurize", 120, stream=log, every=0.1):
        assert _slow_job(spark) == 60
    lines = log.getvalue().splitlines()
    assert 2 <= len(lines) <= 11, lines
    assert lines[-1].startswith("featurize: 100%") and "120/120" in lines[-1]
    assert all("images/s" in line for line in lines)
    done = [int(line.split("/")[0].split()[-1]) for line in lines]
    assert done[0] > 0 and "<00:" in lines[0], "the ETA of a running stage"
    assert done == sorted(done) and "\r" not in log.getvalue()


def test_a_log_of_tasks_whose_total_grows_gets_a_line_every_few_seconds(spark):
    """evaluate's jobs come one after another, so the total grows with them: a log still hears
    of every few seconds of progress, not of deciles it never reaches."""
    log = io.StringIO()
    with watch(spark, "evaluate", stream=log, every=0.05, log_every=0.3):
        for _ in range(4):
            _slow_job(spark, partitions=2, seconds=0.25)
    lines = log.getvalue().splitlines()
    done = [int(line.split("|")[-1].split("/")[0]) for line in lines]
    assert len(lines) >= 3 and done == sorted(done) and done[-1] == 8, lines


def test_a_terminal_gets_a_live_bar_and_the_job_group_is_put_back(spark):
    context = spark.sparkContext
    context.setJobGroup("users-group", "the user's own description")
    terminal = Terminal()
    with watch(spark, "pca", stream=terminal, every=0.1):
        assert context.getLocalProperty("spark.jobGroup.id").startswith("fruitspark-pca-")
        _slow_job(spark)
    drawn = terminal.getvalue()
    assert "\r" in drawn and "pca: 100%" in drawn and "6/6" in drawn and "tasks/s" in drawn
    assert context.getLocalProperty("spark.jobGroup.id") == "users-group"
    assert context.getLocalProperty("spark.job.description") == "the user's own description"
    context.setLocalProperty("spark.jobGroup.id", None)
    context.setLocalProperty("spark.job.description", None)
    context.setLocalProperty("spark.job.interruptOnCancel", None)


def test_a_failed_block_is_not_shown_as_complete(spark):
    log = io.StringIO()
    with pytest.raises(ZeroDivisionError), watch(spark, "write", 100, stream=log, every=0.1):
        _slow_job(spark, partitions=2, seconds=0.1)
        raise ZeroDivisionError
    assert "100/100" not in log.getvalue()
    assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") is None


def test_tracked_counts_tasks_of_the_function_session(spark, capsys):
    @tracked("evaluate")
    def evaluate_like(output: str, spark=None) -> int:
        return _slow_job(spark, partitions=3, seconds=0.1)

    assert evaluate_like("out", spark) == 60
    assert evaluate_like("out") == 60, "the active session when none is given"
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith("evaluate: 100%") for line in lines)
    assert all("3/3 [" in line and "tasks/s]" in line for line in lines)


CONNECT_SCRIPT = """
import io
from pyspark.sql import SparkSession, functions as F
from fruitspark.progress import watch
spark = SparkSession.builder.remote("local[2]").getOrCreate()
log = io.StringIO()
with watch(spark, "featurize", 50, stream=log, every=0.1):
    spark.range(0, 3_000_000, numPartitions=6).select(F.sum(F.sqrt("id"))).collect()
print(log.getvalue())
spark.stop()
"""


def test_spark_connect_reports_through_the_progress_handler():
    pytest.importorskip("grpc", reason="Spark Connect needs grpcio")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CONNECT_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "featurize: 100%" in result.stdout and "50/50" in result.stdout

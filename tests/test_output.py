"""The output's run lock and refusals, without Spark: on a local folder, before a JVM starts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from fruitspark.layout import RUN_LOCK, SUMMARY
from fruitspark.output import OutputError, RunLock, check_output, read_marker
from fruitspark.storage import LocalFiles


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped): what a killed run leaves."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _marker(folder, pid: int, host: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    marker = {"run_id": "abc123", "started_at": "2026-12-01T10:00:00+00:00", "pid": pid}
    (folder / RUN_LOCK).write_text(json.dumps({**marker, "host": host or socket.gethostname()}))


def test_a_second_run_is_refused_with_the_first_runs_id_and_start(tmp_path):
    files = LocalFiles(str(tmp_path / "out"))
    lock = RunLock.acquire(files, "first0run", "2026-12-01T11:00:00+00:00")
    with pytest.raises(OutputError, match="by run first0run started at 2026-12-01T11"):
        check_output(files, overwrite=True, resume=False)
    with pytest.raises(OutputError, match="being written by run first0run"):
        RunLock.acquire(files, "second0run", "2026-12-01T11:00:01+00:00")
    lock.release()
    assert not files.exists(RUN_LOCK)
    RunLock.acquire(files, "second0run", "2026-12-01T11:00:01+00:00").release()


def test_a_run_on_another_host_is_assumed_alive(tmp_path):
    _marker(tmp_path / "out", _dead_pid(), host="some-other-host")
    with pytest.raises(OutputError, match="being written by run abc123"):
        check_output(LocalFiles(str(tmp_path / "out")), overwrite=True, resume=False)


def test_a_killed_runs_marker_is_stale_the_output_partial_and_overwrite_clears_it(tmp_path):
    output = tmp_path / "out"
    _marker(output, _dead_pid())
    (output / "_staging").mkdir()
    files = LocalFiles(str(output))
    assert read_marker(files).is_stale()
    with pytest.raises(OutputError, match=r"partial result.*run abc123 started at .* was killed"):
        check_output(files, overwrite=False, resume=False)
    assert check_output(files, overwrite=True, resume=False) is False
    assert not (output / RUN_LOCK).exists()


def test_a_stale_marker_next_to_a_complete_output_lets_resume_go_on(tmp_path):
    output = tmp_path / "out"
    _marker(output, _dead_pid())
    (output / SUMMARY).write_text("{}")
    assert check_output(LocalFiles(str(output)), overwrite=False, resume=True) is True


def test_overwrite_with_resume_is_refused(tmp_path):
    with pytest.raises(OutputError, match="exclude each other"):
        check_output(LocalFiles(str(tmp_path)), overwrite=True, resume=True)


def _cli_without_jvm(*args: str) -> tuple[str, str]:
    """Run the command in a fresh interpreter; say whether a Spark JVM was started."""
    code = (
        "import sys; from fruitspark.cli import main; code = main(sys.argv[1:]); "
        "from pyspark import SparkContext; print(code, SparkContext._gateway is None)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300
    )
    return result.stdout.strip(), result.stderr


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [
        ("complete", [], "already holds results"),
        ("partial", [], "partial result of an interrupted run"),
        ("locked", ["--overwrite"], "being written by run abc123"),
        ("none", ["--overwrite", "--resume"], "exclude each other"),
        ("empty input", [], "no images found"),
    ],
)
def test_refusals_come_before_spark_starts(subset, tmp_path, setup, extra, message):
    output, source = tmp_path / "out", subset
    if setup == "complete":
        output.mkdir()
        (output / SUMMARY).write_text("{}")
    elif setup == "partial":
        (output / "features").mkdir(parents=True)
    elif setup == "locked":
        _marker(output, os.getpid())
    elif setup == "empty input":
        source = tmp_path / "empty"
        (source / "Apple").mkdir(parents=True)
    printed, error = _cli_without_jvm("run", str(source), str(output), *extra)
    assert printed == "2 True", error
    assert message in error and len(error.strip().splitlines()) == 1

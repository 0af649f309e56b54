"""The driver's class-data-sharing archive: written once by the command, mapped by later JVMs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_subset

from fruitspark import class_archive
from fruitspark.model import cache_dir


@pytest.fixture
def fresh(monkeypatch, tmp_path) -> Path:
    """A process that has asked for nothing yet, with an empty cache folder."""
    monkeypatch.setattr(class_archive, "_THIS_PROCESS", class_archive._ThisProcess())
    monkeypatch.setenv("FRUITSPARK_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FRUITSPARK_CLASS_ARCHIVE", raising=False)
    return tmp_path / "cache" / "jvm"


def test_only_the_command_writes_an_archive_and_one_jvm_at_most(fresh):
    assert class_archive.driver_options("2g") == ""  # the API and tests only use one
    class_archive.request_at_exit()
    options = class_archive.driver_options("2g")
    archive = class_archive.archive_path("2g")
    assert archive is not None and archive.parent == fresh
    assert f"-XX:ArchiveClassesAtExit={archive}.{os.getpid()}.tmp" in options
    assert class_archive.driver_options("2g") == ""  # a second session of this process
    assert class_archive.archive_path("4g") != archive  # another heap, another archive


def test_an_existing_archive_is_used_and_can_be_turned_off(fresh, monkeypatch):
    archive = class_archive.archive_path("2g")
    fresh.mkdir(parents=True)
    archive.write_bytes(b"classes")
    assert class_archive.driver_options("2g").startswith(f"-XX:SharedArchiveFile={archive} ")
    monkeypatch.setenv("FRUITSPARK_CLASS_ARCHIVE", "off")
    assert class_archive.archive_path("2g") is None and class_archive.driver_options("2g") == ""


def test_a_killed_first_run_leaves_no_half_written_archive_behind(fresh):
    archive = class_archive.archive_path("2g")
    fresh.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    leftover = archive.with_name(f"{archive.name}.{dead}.tmp")
    leftover.write_bytes(b"half")
    other_live_process = archive.with_name(f"{archive.name}.{os.getppid()}.tmp")
    other_live_process.write_bytes(b"being written")
    class_archive.request_at_exit()
    class_archive.driver_options("2g")
    assert not leftover.exists() and other_live_process.exists()


@pytest.mark.slow
def test_the_first_command_writes_the_archive_and_the_next_jvm_maps_it(tmp_path):
    """Real JVMs: ``fruitspark run`` (its JVM writes the archive at exit, the command moves it into
    place), then a session made by the Python API, whose JVM maps that file."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for model in cache_dir().glob("efficientnet_lite0-*.onnx"):  # built models: not rebuilt here
        shutil.copy2(model, cache / model.name)
    images = copy_subset(tmp_path / "images", classes=("Lemon", "Kiwi"), train=2, test=1)
    env = {**os.environ, "FRUITSPARK_CACHE": str(cache)}
    env.pop("FRUITSPARK_CLASS_ARCHIVE", None)
    command = [sys.executable, "-m", "fruitspark.cli", "run", str(images), str(tmp_path / "out")]
    first = subprocess.run([*command, "--master", "local[1]", "--no-report"], env=env,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    assert "keeping Spark's classes" in first.stderr
    (archive,) = (cache / "jvm").iterdir()  # in place, no half-written file left
    assert archive.suffix == ".jsa" and archive.stat().st_size > 10_000_000

    probe = (
        "from pyspark import SparkContext; from fruitspark.session import spark_session\n"
        "spark = spark_session('local[1]'); spark.range(3).count()\n"
        "pid = SparkContext._gateway.proc.pid\n"
        "print(open(f'/proc/{pid}/cmdline').read().replace(chr(0), ' '))\n"
        "print(open(f'/proc/{pid}/maps').read())"
    )
    second = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert second.returncode == 0, second.stderr[-3000:]
    assert str(archive) in second.stdout
    # the Python API's JVM keeps the tiered JIT (Spark ML needs C2); only `run`'s stops at C1
    assert "SharedArchiveFile" in second.stdout and "TieredStopAtLevel" not in second.stdout

"""Shared fixtures: real data from ../shared (never copied into the repo), one Spark session."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FRUITS = DATA / "fruits360-sample"
SUBSET_CLASSES = ("Lemon", "Banana", "Apple Braeburn", "Kiwi")


def copy_subset(target: Path, classes=SUBSET_CLASSES, train: int = 8, test: int = 4) -> Path:
    """A small real Fruits-360 tree (copied: symlinks out of the tree are not followed)."""
    for split, count in (("Training", train), ("Test", test)):
        for label in classes:
            folder = target / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for image in sorted((FRUITS / split / label).glob("*.jpg"))[:count]:
                shutil.copy2(image, folder / image.name)
    return target


@pytest.fixture(scope="session")
def spark():
    from fruitspark.session import spark_session

    return spark_session("local[2,3]")


@pytest.fixture(scope="session")
def subset(tmp_path_factory) -> Path:
    return copy_subset(tmp_path_factory.mktemp("fruits") / "fruits")


def _jvm_exit_code() -> int | None:
    """The exit status of the JVM that PySpark launched for this process, None while it runs."""
    if "pyspark" not in sys.modules:
        return None
    from pyspark import SparkContext

    process = getattr(getattr(SparkContext, "_gateway", None), "proc", None)
    return process.poll() if process is not None else None


JVM_DEATH = pytest.StashKey[str]()


def pytest_runtest_teardown(item):
    """Note the first test after which the session's JVM is found dead."""
    status = _jvm_exit_code()
    if status is not None and JVM_DEATH not in item.config.stash:
        item.config.stash[JVM_DEATH] = f"status {status}, found after {item.nodeid}"


def pytest_terminal_summary(terminalreporter, config):
    """A dead JVM makes every later Spark test fail with "connection refused": say how it ended
    (a negative status is a signal, -9 e.g. the kernel's OOM killer; 52 is Spark's exit on an
    OutOfMemoryError; 134 a crash, with an hs_err file), so that a CI log shows the cause."""
    if JVM_DEATH in config.stash:
        terminalreporter.write_line(f"the tests' Spark JVM exited: {config.stash[JVM_DEATH]}")

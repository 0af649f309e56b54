"""Shared fixtures: real data from ../shared (never copied into the repo), one Spark session."""

from __future__ import annotations

import shutil
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

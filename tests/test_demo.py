"""The demo's images: real Fruits-360 photos shipped with their licence; drawn ones only without."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from fruitspark import demo
from fruitspark.layout import REPORT, SUMMARY


def test_the_packaged_set_is_real_small_and_attributed():
    images = demo.packaged_images()
    assert len(images) == 216
    assert sum(image.stat().st_size for image in images) < 600_000
    classes = {image.parent.name for image in images}
    assert len(classes) == 12 and {"Orange", "Clementine", "Lemon", "Limes"} <= classes
    with Image.open(images[0]) as picture:
        assert picture.size == (100, 100)
    licence = (demo.DEMO_DATA / "LICENSE.txt").read_text(encoding="utf-8")
    assert licence.startswith("Attribution-ShareAlike 4.0 International")
    notice = (demo.DEMO_DATA / "README.md").read_text(encoding="utf-8")
    assert "Mureșan" in notice and "Oltean" in notice and "CC BY-SA 4.0" in notice
    with open(demo.DEMO_DATA / "SOURCES.tsv", encoding="utf-8", newline="") as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle, delimiter="\t")}
    assert set(rows) == {str(image.relative_to(demo.DEMO_DATA)) for image in images}
    for image in images[:: len(images) // 12]:
        row = rows[str(image.relative_to(demo.DEMO_DATA))]
        assert hashlib.sha256(image.read_bytes()).hexdigest() == row["sha256"]
        assert row["source_repo"] and len(row["original_sha256"]) == 64


def test_prepare_copies_the_real_set_with_its_licence(tmp_path: Path):
    count, real = demo.prepare_demo_images(tmp_path / "images")
    assert (count, real) == (216, True)
    assert len(list((tmp_path / "images" / "Test").glob("*/*.jpg"))) == 72
    assert (tmp_path / "images" / "LICENSE.txt").exists()


def test_without_the_set_the_demo_draws_synthetic_images(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(demo, "DEMO_DATA", tmp_path / "missing")
    count, real = demo.prepare_demo_images(tmp_path / "images")
    assert not real and count == len(list((tmp_path / "images").rglob("*.jpg"))) > 0
    assert any(
        folder.name.startswith("Synthetic") for folder in (tmp_path / "images" / "Test").iterdir()
    )


# What the JVM itself prints when Spark 4 adds the incubating vector API module to its command
JAVA_NOTE = "WARNING: Using incubator modules: jdk.incubator.vector"


@pytest.mark.slow
def test_fruitspark_demo_runs_the_whole_pipeline_quietly(tmp_path: Path):
    """The README's one command: run, evaluate and report on the shipped set, every image
    accounted for, and nothing on stderr a user would take for an error (netlib's search for a
    system BLAS, the JIT's full code cache, Spark's log-level banner)."""
    env = {**os.environ, "FRUITSPARK_CLASS_ARCHIVE": "off"}  # its first dump: test_class_archive
    done = subprocess.run(
        ["fruitspark", "demo", "--dir", str(tmp_path), "--master", "local[2]"],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    top1 = re.search(r"Test top-1 ([0-9.]+), top-5 [0-9.]+ on 72 images, 12 classes", done.stdout)
    assert top1 and float(top1.group(1)) >= 0.9, done.stdout
    summary = json.loads((tmp_path / "output" / SUMMARY).read_text())
    assert summary["images"]["listed"] == summary["images"]["featurised"] == 216
    assert summary["accounting"]["ok"]
    assert (tmp_path / "output" / REPORT).stat().st_size > 10_000
    said = [line for line in re.split(r"[\r\n]+", done.stderr) if line and "%|" not in line]
    assert set(said) <= {JAVA_NOTE}, said  # besides progress bars, nothing

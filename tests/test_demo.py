"""The demo's images: real Fruits-360 photos shipped with their licence; drawn ones only without."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from PIL import Image

from fruitspark import demo


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

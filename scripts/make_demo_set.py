"""Rebuild the demo image set shipped in ``src/fruitspark/demo_data`` from the shared sample.

Real Fruits-360 images (CC BY-SA 4.0): 12 classes, frames spread evenly over each fruit's
rotation, re-encoded as smaller JPEGs (the only change made to them), with a provenance line per
file taken from ``SOURCES.tsv``. Run from the repository root:
``python scripts/make_demo_set.py ../shared/data``.
"""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
import sys
from pathlib import Path

from PIL import Image

CLASSES = (
    "Apple Braeburn", "Apple Granny Smith", "Avocado", "Banana", "Cherry 1", "Clementine",
    "Kiwi", "Lemon", "Limes", "Orange", "Pear", "Strawberry",
)  # fmt: skip
PER_SPLIT = {"Training": 12, "Test": 6}
QUALITY = 75
TARGET = Path(__file__).resolve().parents[1] / "src" / "fruitspark" / "demo_data"


def frame_number(path: Path) -> tuple[str, int]:
    """Fruits-360 names are ``[r_]<frame>_100.jpg``: order by video, then frame."""
    match = re.match(r"^(.*?)(\d+)_100$", path.stem)
    return (match.group(1), int(match.group(2))) if match else (path.stem, 0)


def spread(files: list[Path], count: int) -> list[Path]:
    """``count`` files evenly spaced over the sorted frames, so the set shows every side."""
    ordered = sorted(files, key=frame_number)
    step = len(ordered) / count
    return [ordered[int(i * step)] for i in range(count)]


def main(data: Path) -> None:
    sources = {}
    with open(data / "SOURCES.tsv", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            sources[row["relative_path"]] = row
    for split in PER_SPLIT:
        shutil.rmtree(TARGET / split, ignore_errors=True)
    rows = []
    for split, count in PER_SPLIT.items():
        for label in CLASSES:
            folder = TARGET / split / label
            folder.mkdir(parents=True)
            originals = list((data / "fruits360-sample" / split / label).glob("*.jpg"))
            for image in spread(originals, count):
                target = folder / image.name
                with Image.open(image) as picture:
                    picture.convert("RGB").save(target, "JPEG", quality=QUALITY, optimize=True)
                origin = sources[f"fruits360/{split}/{label}/{image.name}"]
                rows.append(
                    [f"{split}/{label}/{image.name}", origin["source_repo"], origin["source_path"],
                     origin["sha256"], hashlib.sha256(target.read_bytes()).hexdigest()]
                )  # fmt: skip
    with open(TARGET / "SOURCES.tsv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["path", "source_repo", "source_path", "original_sha256", "sha256"])
        writer.writerows(rows)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))

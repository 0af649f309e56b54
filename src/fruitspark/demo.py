"""The images of ``fruitspark demo``: real Fruits-360 photos shipped in the package.

``demo_data/`` holds 216 real images (12 classes, 12 Training + 6 Test each, CC BY-SA 4.0,
Mureșan & Oltean; see its README.md and SOURCES.tsv), so that the demo's PCA, accuracy and
report show real fruit on a fresh machine. Should the folder be missing (a trimmed install), the
demo falls back to drawing SYNTHETIC "fruits", shaded discs and ellipses on white, which prove
the plumbing and nothing about fruit.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

DEMO_DATA = Path(__file__).parent / "demo_data"
SPLITS = ("Training", "Test")


def packaged_images() -> list[Path]:
    """The shipped demo images, or none if the set is missing or incomplete."""
    images = {split: sorted((DEMO_DATA / split).glob("*/*.jpg")) for split in SPLITS}
    return images["Training"] + images["Test"] if all(images.values()) else []


def prepare_demo_images(root: str | Path) -> tuple[int, bool]:
    """Put the demo images under ``root/{Training,Test}/<class>/``: (count, real or synthetic).

    The real set is copied with its licence, so the folder can be shared or rerun as it is.
    """
    root = Path(root)
    shutil.rmtree(root, ignore_errors=True)
    images = packaged_images()
    if not images:
        return make_demo_images(root), False
    for image in images:
        target = root / image.relative_to(DEMO_DATA)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, target)
    for notice in ("LICENSE.txt", "README.md", "SOURCES.tsv"):
        shutil.copyfile(DEMO_DATA / notice, root / notice)
    return len(images), True


DEMO_CLASSES = {
    "Synthetic Cherry": ((180, 20, 40), (1.0, 1.0)),
    "Synthetic Lemon": ((240, 220, 60), (1.25, 0.9)),
    "Synthetic Lime": ((110, 190, 60), (1.0, 1.0)),
    "Synthetic Orange": ((245, 140, 30), (1.0, 1.0)),
    "Synthetic Plum": ((90, 40, 110), (0.9, 1.1)),
    "Synthetic Banana": ((235, 205, 80), (1.8, 0.55)),
}


def draw_fruit(colour: tuple[int, int, int], shape: tuple[float, float], rng: random.Random):
    """One 100 px picture: a shaded, slightly rotated ellipse with a highlight, on white."""
    size = 100
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    scale = rng.uniform(26, 36)
    half_w, half_h = scale * shape[0], scale * shape[1]
    centre_x, centre_y = size / 2 + rng.uniform(-6, 6), size / 2 + rng.uniform(-6, 6)
    jitter = [max(0, min(255, c + rng.randint(-18, 18))) for c in colour]
    for step in range(12, 0, -1):
        shade = [int(c * (0.55 + 0.45 * (1 - step / 12))) for c in jitter]
        grow = step / 12
        draw.ellipse(
            (
                centre_x - half_w * grow,
                centre_y - half_h * grow,
                centre_x + half_w * grow,
                centre_y + half_h * grow,
            ),
            fill=tuple(shade),
        )
    draw.ellipse(
        (
            centre_x - half_w * 0.5,
            centre_y - half_h * 0.6,
            centre_x - half_w * 0.2,
            centre_y - half_h * 0.3,
        ),
        fill=tuple(min(255, c + 60) for c in jitter),
    )
    angle = rng.uniform(-40, 40)
    image = image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=(255, 255, 255))
    return image.filter(ImageFilter.GaussianBlur(0.8))


def make_demo_images(root: str | Path, *, train: int = 24, test: int = 8, seed: int = 0) -> int:
    """The fallback: the synthetic set under ``root/{Training,Test}/<class>/``; the count."""
    rng = random.Random(seed)
    root = Path(root)
    count = 0
    for split, per_class in (("Training", train), ("Test", test)):
        for label, (colour, shape) in DEMO_CLASSES.items():
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(per_class):
                draw_fruit(colour, shape, rng).save(folder / f"{index:03d}.jpg", quality=90)
                count += 1
    return count

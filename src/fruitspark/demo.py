"""A small SYNTHETIC labelled image set, so that ``fruitspark demo`` runs on a fresh machine.

No dataset ships with the package. The demo draws "fruits" itself: shaded discs and ellipses of
a few colours on white, 100 x 100 px like Fruits-360, in Training/ and Test/ folders. They are
not real fruit; they only show the whole pipeline working.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

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
    """Write the synthetic set under ``root/{Training,Test}/<class>/``; returns the image count."""
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

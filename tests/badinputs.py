"""A small image tree with every kind of bad (or merely unusual) input the pipeline must survive.

``make_bad_inputs(root)`` writes it under ``root/Training/<Class>/`` and returns what each entry
should become: ``"ok"`` (featurised), a substring of the expected error, or ``None`` for entries
that are not images and must not appear in the output at all. Importable by tests (``tests`` is on
``sys.path`` under pytest) and by benchmarks (``sys.path.insert(0, "tests")``).

The image-making helpers are public so that unit tests build the same bytes.
"""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FRUITS_CLASS = DATA / "fruits360-sample" / "Training" / "Apple Braeburn"
REAL_IMAGES = 4  # PCA needs >= 2 featurised rows; real pictures make its input realistic

OK = "ok"
EMPTY = "empty file"
TRUNCATED = "truncated"
NOT_AN_IMAGE = "not an image"
TOO_LARGE = "too large"
OUTSIDE_ROOT = "outside the input root"

# The symlink's expected outcome depends on --follow-symlinks; make_bad_inputs gives the default.
SYMLINK = "Training/Linked/points outside.jpg"
EXIF_ROTATED = "Training/Formats/exif-rotated.jpg"
HUGE_SIDE = 30_000


def encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_claiming_size(width: int, height: int) -> bytes:
    """A well-formed PNG header for an 8-bit greyscale ``width`` x ``height`` image, with almost no
    data: a decompression-bomb probe that costs a few dozen bytes on disk (and, if a decoder lets it
    through, one byte per claimed pixel of memory before it fails as truncated)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + png_chunk(b"IEND", b"")
    )


def two_halves(width: int = 60, height: int = 40) -> Image.Image:
    """Left half red, right half blue: an asymmetric layout whose rotation can be read back."""
    image = Image.new("RGB", (width, height), (255, 0, 0))
    image.paste((0, 0, 255), (width // 2, 0, width, height))
    return image


def exif_rotated_jpeg(image: Image.Image, orientation: int) -> bytes:
    """``image`` stored as is, with an EXIF orientation tag that asks viewers to rotate it."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", quality=95, exif=exif)


def heic(image: Image.Image, orientation: int | None = None) -> bytes:
    """``image`` as an iPhone would save it (HEIC), written by pillow-heif; with ``orientation``
    the rotation a viewer should apply goes into the file."""
    import pillow_heif  # writes HEIC; Pillow's opener stays fruitspark's (pi-heif)

    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def noise_jpeg(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "JPEG", quality=90)


def cmyk_jpeg(colour: tuple[int, int, int, int] = (0, 255, 255, 0), side: int = 32) -> bytes:
    """A CMYK JPEG; the default colour is pure red (no cyan, full magenta and yellow)."""
    return encode(Image.new("CMYK", (side, side), colour), "JPEG", quality=95)


def grey16_png(values: np.ndarray) -> bytes:
    """A 16-bit greyscale PNG (Pillow mode I;16) holding ``values`` (uint16, HxW)."""
    return encode(Image.fromarray(values.astype(np.uint16)), "PNG")


def palette_png_with_transparency(side: int = 8) -> bytes:
    """Palette PNG: index 0 opaque green, index 1 transparent red; the top-left pixel is index 1."""
    image = Image.new("P", (side, side), 0)
    image.putpalette([0, 255, 0, 255, 0, 0] + [0, 0, 0] * 254)
    image.putpixel((0, 0), 1)
    return encode(image, "PNG", transparency=1)


def animated(format: str, colours=((255, 0, 0), (0, 0, 255), (0, 255, 0)), side: int = 24):
    """An animated GIF or WebP whose first frame is ``colours[0]``."""
    frames = [Image.new("RGB", (side, side), colour) for colour in colours]
    options = {"lossless": True} if format == "WEBP" else {}
    return encode(
        frames[0], format, save_all=True, append_images=frames[1:], duration=80, loop=0, **options
    )


def _generated_files() -> list[tuple[str, bytes, str | None]]:
    """``(path relative to the root, bytes, expected outcome)`` of every file written as bytes."""
    rng = np.random.default_rng(42)
    photo = Image.fromarray(rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8))
    ramp = (np.arange(48 * 32, dtype=np.uint32).reshape(32, 48) * 40).astype(np.uint16)
    one_pixel = Image.new("RGB", (1, 1), (200, 30, 30))
    bomb = png_claiming_size(HUGE_SIDE, HUGE_SIDE)
    return [
        ("Training/Broken/zero bytes.jpg", b"", EMPTY),
        ("Training/Broken/truncated.jpg", noise_jpeg()[:1500], TRUNCATED),
        ("Training/Broken/random bytes.jpg", b"\x13\x37" + rng.bytes(2046), NOT_AN_IMAGE),
        ("Training/Broken/text.png", b"this is a text file, not a picture\n" * 4, NOT_AN_IMAGE),
        ("Training/Broken/bomb-30000x30000.png", bomb, TOO_LARGE),
        ("Training/Formats/png named.jpg", encode(photo, "PNG"), OK),
        ("Training/Formats/cmyk.jpg", cmyk_jpeg(), OK),
        ("Training/Formats/grey16.png", grey16_png(ramp), OK),
        ("Training/Formats/palette transparent.png", palette_png_with_transparency(), OK),
        ("Training/Formats/animated.gif", animated("GIF"), OK),
        ("Training/Formats/animated.webp", animated("WEBP"), OK),
        ("Training/Formats/iphone rotated.HEIC", heic(two_halves(60, 40), 6), OK),
        ("Training/Formats/photo.avif", encode(photo, "AVIF"), OK),
        ("Training/Broken/truncated.heic", heic(photo)[:200], TRUNCATED),
        ("Training/Formats/one-pixel.png", encode(one_pixel, "PNG"), OK),
        (EXIF_ROTATED, exif_rotated_jpeg(two_halves(60, 40), 6), OK),
        ("Training/Formats/UPPER CASE.JPG", encode(photo, "JPEG"), OK),
        ("Training/Names/with space.jpg", encode(photo, "JPEG"), OK),
        ("Training/Names/pomme rôtie 苹果 🍎.jpg", encode(photo, "JPEG"), OK),
        ("Training/Names/100% juice.jpg", encode(photo, "JPEG"), OK),
        ("Training/Names/50%20off.png", encode(photo, "PNG"), OK),
        ("Training/No Images/notes.txt", b"no pictures here\n", None),
        (SYMLINK, encode(photo, "JPEG"), OUTSIDE_ROOT),  # written outside, linked from here
    ]


def make_bad_inputs(root: Path) -> dict[str, str | None]:
    """Write the tree under ``root`` and return ``{path relative to root: expected outcome}``.

    The symlink's target lives next to ``root`` (in ``<root>-outside/``), outside the input.
    """
    root = Path(root)
    expected: dict[str, str | None] = {}
    for relative, data, outcome in _generated_files():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if relative == SYMLINK:
            target = root.parent / f"{root.name}-outside" / "target.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            path.symlink_to(target)
        else:
            path.write_bytes(data)
        expected[relative] = outcome
    (root / "Training" / "Empty").mkdir(parents=True, exist_ok=True)
    expected["Training/Empty"] = None

    real = sorted(FRUITS_CLASS.glob("*.jpg"))[:REAL_IMAGES]
    if len(real) < REAL_IMAGES:
        raise FileNotFoundError(f"need {REAL_IMAGES} Fruits-360 images in {FRUITS_CLASS}")
    for source in real:
        relative = f"Training/{FRUITS_CLASS.name}/{source.name}"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / relative)
        expected[relative] = OK
    return expected

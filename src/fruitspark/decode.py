"""Image bytes to an upright RGB picture, or a one-line reason why not.

Pure functions, no Spark: every format Pillow reads (HEIC/HEIF too, through pi-heif's opener,
which applies the file's own rotation and mirroring), EXIF orientation applied, alpha composited
on white (Fruits-360 is shot on white), and megapixel JPEGs decoded at reduced size through
Pillow's draft mode so that a 12 MP phone photo costs about what a thumbnail does.

The common case, a plain YCbCr or greyscale JPEG without EXIF that needs no reduced-size decoding
(every Fruits-360 image), goes straight to libjpeg-turbo through simplejpeg: the same library
Pillow wraps and the same pixels, bit for bit, at half the cost per image. Anything else (EXIF,
CMYK, draft mode, a file simplejpeg refuses) takes Pillow's path, which also words the errors.
"""

from __future__ import annotations

import functools
import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own bomb threshold: about 9500 x 9500 px


EMPTY_FILE = "empty file (0 bytes)"


class DecodeError(ValueError):
    """A file that cannot become a picture; the message is the reason recorded for it."""


def decode_image(
    data: bytes, *, min_side: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode ``data`` to an upright RGB image.

    ``min_side`` lets a JPEG be decoded at a reduced scale (1/2, 1/4, 1/8) as long as its shorter
    side stays at least that many pixels: the resize that follows then starts from far fewer pixels.
    Anything that is not a readable image within ``max_pixels`` raises :class:`DecodeError`.
    """
    if not data:
        raise DecodeError(EMPTY_FILE)
    plain = _decode_plain_jpeg(data, min_side, max_pixels)
    if plain is not None:
        return plain
    if _is_heif_family(data):
        _register_heif()
    try:
        with warnings.catch_warnings(), _pillow_limit_at_least(max_pixels):
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise DecodeError(
                    f"image too large: {width}x{height} px exceeds the cap of {max_pixels} pixels"
                )
            if min_side and image.format in ("JPEG", "MPO"):  # MPO: a phone JPEG + extra frames
                image.draft("RGB", _draft_size(width, height, min_side))
            image.load()
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DecodeError(f"image too large: {error}") from None
    except UnidentifiedImageError:
        raise DecodeError(_unidentified(data)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise DecodeError(f"corrupt or truncated image: {error}") from None
    return to_rgb(_upright(image))


# ISO base media files (``....ftypBRAND``) of the HEIF family: HEIC, HEIF, AVIF
HEIF_BRANDS = frozenset(b"heic heix hevc hevx heim heis mif1 msf1 avif avis".split())


@functools.cache
def _register_heif() -> None:
    """Pillow opens HEIC/HEIF from here on, through pi-heif (decoding only); imported at the
    first such file, so that a run of JPEGs does not pay its import in every Python worker."""
    import pi_heif

    pi_heif.register_heif_opener()


def _is_heif_family(data: bytes) -> bool:
    return data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS


def _unidentified(data: bytes) -> str:
    """Why Pillow named no format: a broken HEIF/AVIF (no plugin claims it) or not an image."""
    if _is_heif_family(data):
        return "corrupt or truncated image: a HEIF/AVIF file that does not decode"
    return "not an image: no known image format recognised"


def _decode_plain_jpeg(data: bytes, min_side: int | None, max_pixels: int) -> Image.Image | None:
    """A plain JPEG decoded by libjpeg-turbo directly, or None for Pillow's path to handle."""
    if data[:3] != b"\xff\xd8\xff" or _has_exif(data):
        return None
    try:
        height, width, colourspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colourspace not in ("YCbCr", "Gray") or width * height > max_pixels:
        return None
    if min_side and _draft_scale(width, height, min_side) > 1:
        return None  # Pillow's draft picks the reduced scale exactly as before
    try:
        return Image.fromarray(simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True))
    except ValueError:  # truncated or corrupt: Pillow decides, and says why
        return None


def _has_exif(data: bytes) -> bool:
    """Whether an APP1 Exif segment precedes the image data (it may rotate the picture)."""
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if not (0xE0 <= marker <= 0xEF or marker == 0xFE):  # APPn and COM come first
            return False
        if marker == 0xE1 and data[position + 4 : position + 10] == b"Exif\x00\x00":
            return True
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return False


def _draft_scale(width: int, height: int, min_side: int) -> int:
    """The reduction Pillow's draft mode picks for :func:`_draft_size` (1, 2, 4 or 8)."""
    wanted_width, wanted_height = _draft_size(width, height, min_side)
    scale = min(width // wanted_width, height // wanted_height)
    return next(factor for factor in (8, 4, 2, 1) if factor <= max(scale, 1))


_PILLOW_LIMIT_LOCK = threading.Lock()


@contextmanager
def _pillow_limit_at_least(max_pixels: int) -> Iterator[None]:
    """Lift Pillow's global bomb limit to ``max_pixels`` while decoding, if it is lower.

    Pillow refuses anything above ``Image.MAX_IMAGE_PIXELS`` on its own, so a ``max_pixels`` above
    its default would otherwise have no effect. The explicit check in :func:`decode_image` keeps
    guarding memory. The default cap never touches the global.
    """
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None or max_pixels <= limit:
        yield
        return
    with _PILLOW_LIMIT_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels if previous is not None else None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _draft_size(width: int, height: int, min_side: int) -> tuple[int, int]:
    """The size to ask of draft mode so that the shorter side stays >= ``min_side``."""
    shorter = min(width, height)
    if shorter <= min_side:
        return width, height
    scale = min_side / shorter
    return max(1, round(width * scale)), max(1, round(height * scale))


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a broken EXIF block is ignored, not fatal."""
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError):
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited on white."""
    if image.mode in ("RGB", "L") and "transparency" in image.info:
        image = image.convert("RGBA")  # a PNG tRNS colour key: pixels of that colour are clear
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _wide_to_l(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


def _wide_to_l(image: Image.Image) -> Image.Image:
    """16-bit or float greyscale to 8 bit by its value range (Pillow's convert would clip)."""
    import numpy as np

    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        top = max(float(values.max()), 1.0)
    else:
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
    scaled = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")

"""decode_image: bytes to an upright RGB picture, or a DecodeError with a one-line reason."""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from badinputs import (
    HUGE_SIDE,
    animated,
    cmyk_jpeg,
    encode,
    exif_rotated_jpeg,
    grey16_png,
    heic,
    noise_jpeg,
    palette_png_with_transparency,
    png_claiming_size,
    two_halves,
)
from PIL import Image, ImageDraw

from fruitspark.decode import DEFAULT_MAX_PIXELS, DecodeError, _decode_plain_jpeg, decode_image
from fruitspark.preprocess import resize_square

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)
EXIF_ORIENTATION = 0x0112


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def assert_colour(region: np.ndarray, colour, tolerance: int = 8) -> None:
    """Every pixel of ``region`` (H x W x 3) is within ``tolerance`` of ``colour``."""
    difference = np.abs(region.reshape(-1, 3) - np.asarray(colour)).max()
    assert difference <= tolerance, f"{region.reshape(-1, 3)[:3]}... is not {colour}"


def assert_one_line_error(data: bytes, *fragments: str, **options) -> str:
    with pytest.raises(DecodeError) as raised:
        decode_image(data, **options)
    message = str(raised.value)
    assert message and "\n" not in message and len(message) < 300, message
    for fragment in fragments:
        assert fragment in message.lower(), message
    return message


# --- EXIF orientation -----------------------------------------------------------------------------

# Stored picture: 60x40, left half red, right half blue. What a viewer shows for each tag:
ORIENTATIONS = {
    1: ((60, 40), {"left": RED, "right": BLUE}),
    3: ((60, 40), {"left": BLUE, "right": RED}),  # rotated 180°
    6: ((40, 60), {"top": RED, "bottom": BLUE}),  # rotated 90° clockwise: left goes on top
    8: ((40, 60), {"top": BLUE, "bottom": RED}),  # rotated 90° anticlockwise
}


def _quarters(array: np.ndarray) -> dict[str, np.ndarray]:
    height, width = array.shape[:2]
    return {
        "left": array[:, : width // 4],
        "right": array[:, -(width // 4) :],
        "top": array[: height // 4],
        "bottom": array[-(height // 4) :],
    }


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_is_applied(orientation):
    size, layout = ORIENTATIONS[orientation]
    image = decode_image(exif_rotated_jpeg(two_halves(60, 40), orientation))
    assert image.mode == "RGB"
    assert image.size == size
    quarters = _quarters(pixels(image))
    for side, colour in layout.items():
        assert_colour(quarters[side], colour, tolerance=12)


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_heic_phone_photo_decodes_upright(orientation):
    """iPhones save HEIC; the file's rotation is applied once (not again from its EXIF)."""
    size, layout = ORIENTATIONS[orientation]
    image = decode_image(heic(two_halves(60, 40), orientation), min_side=20)
    assert (image.mode, image.size) == ("RGB", size)
    for side, colour in layout.items():
        assert_colour(_quarters(pixels(image))[side], colour, tolerance=12)


@pytest.mark.parametrize("orientation", [1, 6])
def test_avif_decodes_upright(orientation):
    size, layout = ORIENTATIONS[orientation]
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    image = decode_image(encode(two_halves(60, 40), "AVIF", quality=90, exif=exif))
    assert (image.mode, image.size) == ("RGB", size)
    for side, colour in layout.items():
        assert_colour(_quarters(pixels(image))[side], colour, tolerance=12)


def test_truncated_heic_and_avif_are_called_truncated():
    for data in (heic(two_halves()), encode(two_halves(), "AVIF")):
        assert_one_line_error(data[: len(data) // 2], "truncated", "heif/avif")


def test_exif_orientation_survives_draft_mode():
    """Reduced-size JPEG decoding and the rotation combine: a big portrait stays portrait."""
    data = exif_rotated_jpeg(two_halves(1600, 1200), 6)
    image = decode_image(data, min_side=100)
    width, height = image.size
    assert height > width and width < 1200 / 2  # rotated, and decoded at reduced size
    assert min(image.size) >= 100
    quarters = _quarters(pixels(image))
    assert_colour(quarters["top"], RED, tolerance=12)
    assert_colour(quarters["bottom"], BLUE, tolerance=12)


def test_broken_exif_block_is_ignored():
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 99  # no such orientation
    data = encode(two_halves(60, 40), "JPEG", quality=95, exif=exif)
    image = decode_image(data)
    assert image.size == (60, 40)
    assert_colour(_quarters(pixels(image))["left"], RED, tolerance=12)


# --- every mode to RGB ----------------------------------------------------------------------------


def test_greyscale_l():
    image = decode_image(encode(Image.new("L", (5, 3), 77), "PNG"))
    assert (image.mode, image.size) == ("RGB", (5, 3))
    assert (pixels(image) == 77).all()


def test_greyscale_with_alpha_la_is_composited_on_white():
    source = Image.new("LA", (2, 1), (0, 255))
    source.putpixel((1, 0), (0, 128))  # black, half transparent
    image = decode_image(encode(source, "PNG"))
    assert image.mode == "RGB"
    values = pixels(image)
    assert (values[0, 0] == 0).all()  # opaque black stays black
    assert np.abs(values[0, 1] - 127).max() <= 1  # half black over white: mid grey


def test_palette_p():
    source = Image.new("P", (2, 1), 0)
    source.putpalette([10, 200, 30, 250, 5, 100] + [0, 0, 0] * 254)
    source.putpixel((1, 0), 1)
    image = decode_image(encode(source, "PNG"))
    assert image.mode == "RGB"
    assert pixels(image)[0].tolist() == [[10, 200, 30], [250, 5, 100]]


def test_palette_with_transparency_becomes_white():
    image = decode_image(palette_png_with_transparency(side=4))
    values = pixels(image)
    assert image.mode == "RGB"
    assert values[0, 0].tolist() == list(WHITE)  # the transparent index, red in the palette
    assert values[1, 1].tolist() == list(GREEN)
    assert values[3, 3].tolist() == list(GREEN)


def test_rgba_is_composited_on_white():
    source = Image.new("RGBA", (3, 1))
    source.putpixel((0, 0), (255, 0, 0, 128))  # half-transparent red
    source.putpixel((1, 0), (0, 0, 255, 0))  # fully transparent blue
    source.putpixel((2, 0), (10, 20, 30, 255))  # opaque
    values = pixels(decode_image(encode(source, "PNG")))
    # out = alpha * colour + (1 - alpha) * 255, alpha = 128/255
    expected_half = 128 / 255 * np.array([255, 0, 0]) + (1 - 128 / 255) * 255
    assert np.abs(values[0, 0] - expected_half).max() <= 1
    assert values[0, 1].tolist() == list(WHITE)
    assert values[0, 2].tolist() == [10, 20, 30]


@pytest.mark.parametrize(
    ("mode", "key", "other"),
    [("L", 10, 200), ("RGB", (10, 20, 30), (200, 100, 50))],
)
def test_png_colour_key_transparency_becomes_white(mode, key, other):
    """A tRNS colour key (what PNG optimisers write for on/off alpha) is transparency too."""
    source = Image.new(mode, (2, 1), key)
    source.putpixel((1, 0), other)
    values = pixels(decode_image(encode(source, "PNG", transparency=key)))
    assert values[0, 0].tolist() == list(WHITE)
    assert values[0, 1].tolist() == list(np.broadcast_to(other, 3))


def test_cmyk_jpeg():
    data = cmyk_jpeg((0, 255, 255, 0), side=16)  # no cyan, full magenta + yellow: red
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    image = decode_image(data)
    assert (image.mode, image.size) == ("RGB", (16, 16))
    assert_colour(pixels(image), RED, tolerance=10)


def test_sixteen_bit_png_is_scaled_not_clipped():
    values = np.array([[0, 200, 257, 32896, 65535]], dtype=np.uint16)
    data = grey16_png(values)
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    decoded = pixels(decode_image(data))
    assert decoded.shape == (1, 5, 3)
    assert (decoded == decoded[..., :1]).all()  # grey
    # value / 65535 * 255: a dark 16-bit pixel (200) is near black, not clipped to grey 200
    assert decoded[0, :, 0].tolist() == [0, 1, 1, 128, 255]


def test_one_bit():
    source = Image.new("1", (2, 2), 1)
    source.putpixel((0, 0), 0)
    values = pixels(decode_image(encode(source, "PNG")))
    assert values[..., 0].tolist() == [[0, 255], [255, 255]]
    assert (values == values[..., :1]).all()


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_image_gives_its_first_frame(fmt):
    data = animated(fmt, colours=(RED, BLUE, GREEN), side=24)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    image = decode_image(data)
    assert (image.mode, image.size) == ("RGB", (24, 24))
    assert_colour(pixels(image), RED, tolerance=4)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_one_pixel_image(fmt):
    data = encode(Image.new("RGB", (1, 1), (200, 30, 30)), fmt)
    for min_side in (None, 224):
        image = decode_image(data, min_side=min_side)
        assert (image.mode, image.size) == ("RGB", (1, 1))
        assert_colour(pixels(image), (200, 30, 30), tolerance=6)
    assert resize_square(decode_image(data), 224).shape == (224, 224, 3)


def test_png_bytes_whatever_the_file_name():
    """Decoding goes by content, so a PNG saved as .jpg decodes (the name never reaches here)."""
    image = decode_image(encode(Image.new("RGB", (7, 5), (1, 2, 3)), "PNG"))
    assert image.size == (7, 5) and pixels(image)[4, 6].tolist() == [1, 2, 3]


# --- what cannot be decoded -----------------------------------------------------------------------


def test_zero_bytes():
    assert_one_line_error(b"", "empty")


def test_truncated_jpeg():
    data = noise_jpeg(64, 48)
    assert_one_line_error(data[: len(data) // 2], "truncated")


def test_random_bytes():
    data = b"\x13\x37" + np.random.default_rng(1).bytes(4094)
    assert_one_line_error(data, "not an image")


def test_text_file():
    assert_one_line_error(b"name,weight\napple,182\npear,170\n", "not an image")


def test_header_claiming_30000_px_square():
    data = png_claiming_size(HUGE_SIDE, HUGE_SIDE)
    assert len(data) < 200
    assert struct.unpack(">II", data[16:24]) == (HUGE_SIDE, HUGE_SIDE)  # IHDR width, height
    message = assert_one_line_error(data, "large")
    assert "900000000" in message or "30000x30000" in message


def test_max_pixels_cap():
    cap_side = 100
    data = encode(Image.new("RGB", (cap_side, cap_side), (9, 9, 9)), "PNG")
    assert decode_image(data, max_pixels=cap_side * cap_side).size == (cap_side, cap_side)
    message = assert_one_line_error(data, "large", max_pixels=cap_side * cap_side - 1)
    assert "100x100" in message and str(cap_side * cap_side - 1) in message
    # a header-only picture is refused by its size before any pixel is decoded
    assert_one_line_error(png_claiming_size(2000, 2000), "large", max_pixels=1_000_000)


def test_max_pixels_above_pillows_own_limit_is_honoured():
    """Raising the cap above Pillow's default bomb limit lets such a picture through to decoding
    (here it then fails as truncated: it has no pixel data), and Pillow's limit is restored."""
    side = 9500  # 90.25 MP: just above Pillow's 89.5 MP default
    data = png_claiming_size(side, side)
    assert side * side > DEFAULT_MAX_PIXELS == Image.MAX_IMAGE_PIXELS
    assert_one_line_error(data, "large")
    assert_one_line_error(data, "truncated", max_pixels=100_000_000)
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS
    assert_one_line_error(png_claiming_size(HUGE_SIDE, HUGE_SIDE), "large", max_pixels=100_000_000)


# --- draft mode: big JPEGs decoded at reduced size ------------------------------------------------


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    """A 4000x3000 photo-like JPEG: smooth gradients with a few hard-edged shapes."""
    height, width = 3000, 4000
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    gradient = np.empty((height, width, 3), dtype=np.uint8)
    gradient[..., 0], gradient[..., 1], gradient[..., 2] = x, y, (x + y) / 2
    picture = Image.fromarray(gradient)
    draw = ImageDraw.Draw(picture)
    draw.ellipse((1000, 500, 3000, 2500), fill=(220, 30, 30))
    draw.rectangle((200, 200, 800, 2800), fill=(30, 160, 40))
    draw.line((0, 2900, 4000, 100), fill=(250, 250, 0), width=40)
    return encode(picture, "JPEG", quality=90)


def test_draft_mode_decodes_big_jpeg_small(big_jpeg):
    full = decode_image(big_jpeg)
    small = decode_image(big_jpeg, min_side=224)
    assert full.size == (4000, 3000)
    assert min(small.size) >= 224
    assert small.size[0] * small.size[1] <= full.size[0] * full.size[1] / 16
    assert small.size[0] / small.size[1] == pytest.approx(4 / 3, rel=0.01)
    via_draft = pixels(resize_square(small, 224))
    via_full = pixels(resize_square(full, 224))
    assert np.abs(via_draft - via_full).mean() < 2.0


@pytest.mark.parametrize("min_side", [700, 1500, 3000, 5000])
def test_draft_mode_keeps_the_shorter_side_at_least_min_side(big_jpeg, min_side):
    image = decode_image(big_jpeg, min_side=min_side)
    assert min(image.size) >= min(min_side, 3000)
    assert image.size[0] * 3 == image.size[1] * 4


def test_draft_mode_applies_to_multi_picture_jpeg():
    """Phone cameras often write MPO (a JPEG followed by more pictures): it is a JPEG for draft."""
    base = Image.fromarray(np.full((1200, 1600, 3), (40, 90, 200), dtype=np.uint8))
    buffer = io.BytesIO()
    base.save(buffer, "MPO", save_all=True, append_images=[base.resize((160, 120))])
    data = buffer.getvalue()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    image = decode_image(data, min_side=224)
    assert 224 <= min(image.size) < 1200 / 2
    assert_colour(pixels(image), (40, 90, 200), tolerance=6)


# --- real photographs -----------------------------------------------------------------------------


def _photos() -> list[Path]:
    return sorted(path for path in PHOTOS.rglob("*") if path.is_file())


def _raw_orientation(path: Path) -> tuple[tuple[int, int], int]:
    with Image.open(path) as raw:
        return raw.size, raw.getexif().get(EXIF_ORIENTATION, 1)


@pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"no shared photos at {PHOTOS}")
@pytest.mark.parametrize("path", _photos(), ids=lambda path: path.name)
def test_real_photo_decodes_upright_rgb(path):
    data = path.read_bytes()
    (raw_width, raw_height), orientation = _raw_orientation(path)
    upright = (raw_height, raw_width) if orientation in (5, 6, 7, 8) else (raw_width, raw_height)
    image = decode_image(data, min_side=224)
    assert image.mode == "RGB"
    assert min(image.size) >= min(224, raw_width, raw_height)
    width, height = image.size
    assert (width > height) == (upright[0] > upright[1])  # same orientation as the upright picture
    assert width / height == pytest.approx(upright[0] / upright[1], rel=0.01)
    assert resize_square(image, 224).shape == (224, 224, 3)


@pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"no shared photos at {PHOTOS}")
def test_real_photos_include_rotated_phone_jpeg_and_it_is_turned_upright():
    rotated = [path for path in _photos() if _raw_orientation(path)[1] != 1]
    assert rotated, "the shared photos should include a phone JPEG with an EXIF orientation"
    for path in rotated:
        (raw_width, raw_height), orientation = _raw_orientation(path)
        assert orientation == 6
        decoded = decode_image(path.read_bytes())
        assert decoded.size == (raw_height, raw_width)
        with Image.open(path) as raw:
            expected = raw.convert("RGB").transpose(Image.Transpose.ROTATE_270)
        assert np.array_equal(pixels(decoded), pixels(expected))


@pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"no shared photos at {PHOTOS}")
def test_real_rgba_png_photo_is_rgb():
    pngs = [path for path in _photos() if path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"]
    assert pngs
    for path in pngs:
        decoded = decode_image(path.read_bytes())
        with Image.open(path) as raw:
            raw = raw.convert("RGBA")
            white = Image.new("RGBA", raw.size, (*WHITE, 255))
            expected = Image.alpha_composite(white, raw).convert("RGB")
        assert decoded.mode == "RGB"
        assert np.array_equal(pixels(decoded), pixels(expected))


# --- the libjpeg-turbo fast path: same pixels as Pillow, only where it is safe --------------------


def _pillow_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as raw:
        return pixels(raw.convert("RGB"))


FRUITS_TEST = PHOTOS.parent / "fruits360-sample" / "Test"


@pytest.mark.skipif(not FRUITS_TEST.is_dir(), reason=f"no Fruits-360 sample at {FRUITS_TEST}")
def test_plain_jpegs_take_the_fast_path_with_pillows_exact_pixels():
    samples = [encode(Image.new("L", (30, 20), 90), "JPEG")]  # greyscale
    samples.append(encode(two_halves(64, 48), "JPEG", quality=80, progressive=True))
    samples += [path.read_bytes() for path in sorted(FRUITS_TEST.rglob("*.jpg"))[::300]]
    for data in samples:
        fast = _decode_plain_jpeg(data, 224, DEFAULT_MAX_PIXELS)
        assert fast is not None and fast.mode == "RGB"
        assert np.array_equal(pixels(fast), _pillow_rgb(data))
        assert np.array_equal(pixels(decode_image(data, min_side=224)), pixels(fast))


def test_jpegs_that_need_pillow_do_not_take_the_fast_path(big_jpeg):
    plain = encode(two_halves(60, 40), "JPEG")
    needs_pillow = {
        "exif": exif_rotated_jpeg(two_halves(60, 40), 1),
        "cmyk": cmyk_jpeg((0, 255, 255, 0), side=16),
        "draft mode": big_jpeg,
        "truncated": noise_jpeg(64, 48)[:1000],
        "png": encode(Image.new("RGB", (4, 4)), "PNG"),
    }
    assert _decode_plain_jpeg(plain, 224, DEFAULT_MAX_PIXELS) is not None
    for reason, data in needs_pillow.items():
        assert _decode_plain_jpeg(data, 224, DEFAULT_MAX_PIXELS) is None, reason
    assert _decode_plain_jpeg(big_jpeg, None, DEFAULT_MAX_PIXELS) is not None  # full size: fast
    assert _decode_plain_jpeg(plain, None, 60 * 40 - 1) is None  # over the cap: Pillow refuses


def test_the_readme_names_every_image_extension():
    from fruitspark.formats import IMAGE_EXTENSIONS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    listed = re.search(r"read recursively \(`([a-z ]+)`", readme)
    assert listed and listed.group(1).split() == list(IMAGE_EXTENSIONS)

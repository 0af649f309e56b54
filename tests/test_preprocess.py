"""preprocess: pad to a white square, resize, normalise to a tensor, colour histogram. No Spark."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fruitspark.preprocess import (
    COLOUR_BINS,
    COLOUR_DIM,
    Normalisation,
    colour_histogram,
    model_views,
    resize_square,
    square_on_white,
    to_tensor,
)

RED, GREEN, WHITE = (220, 30, 30), (40, 160, 50), (255, 255, 255)
HUE_BINS = COLOUR_BINS[0]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def is_colour(region: np.ndarray, colour, tolerance: int = 0) -> bool:
    return bool(np.abs(region.reshape(-1, 3) - np.asarray(colour)).max() <= tolerance)


def disc(canvas: int, diameter: int = 80, background=WHITE, colour=RED) -> Image.Image:
    """A filled disc centred on a square canvas."""
    image = Image.new("RGB", (canvas, canvas), background)
    offset = (canvas - diameter) // 2
    ImageDraw.Draw(image).ellipse(
        (offset, offset, offset + diameter - 1, offset + diameter - 1), fill=colour
    )
    return image


def by_hue(histogram: np.ndarray) -> np.ndarray:
    """The histogram's mass per hue bin (saturation and value summed out)."""
    return histogram.reshape(HUE_BINS, -1).sum(axis=1)


# --- square_on_white ------------------------------------------------------------------------------


def test_square_on_white_pads_a_landscape_picture_top_and_bottom():
    square = square_on_white(Image.new("RGB", (41, 20), RED))
    assert (square.mode, square.size) == ("RGB", (41, 41))
    values = pixels(square)
    top = (41 - 20) // 2  # 10 rows above, 11 below
    assert is_colour(values[:top], WHITE)
    assert is_colour(values[top : top + 20], RED)
    assert is_colour(values[top + 20 :], WHITE)
    assert values[top + 20 :].shape[0] == 11


def test_square_on_white_pads_a_portrait_picture_left_and_right():
    square = square_on_white(Image.new("RGB", (20, 60), RED))
    assert square.size == (60, 60)
    values = pixels(square)
    assert is_colour(values[:, :20], WHITE)
    assert is_colour(values[:, 20:40], RED)
    assert is_colour(values[:, 40:], WHITE)


def test_square_on_white_keeps_the_picture_itself():
    source = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 50, 3), np.uint8))
    square = square_on_white(source)
    assert np.array_equal(pixels(square)[15:35], pixels(source))
    already = Image.new("RGB", (30, 30), RED)
    assert np.array_equal(pixels(square_on_white(already)), pixels(already))


# --- resize_square --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (300, 100), (100, 300), (224, 224), (1000, 999)])
def test_resize_square_output_size(size):
    resized = resize_square(Image.new("RGB", size, RED), 224)
    assert (resized.dtype, resized.shape) == (np.uint8, (224, 224, 3))


def test_resize_square_keeps_the_whole_picture_padded_not_cropped():
    resized = pixels(resize_square(Image.new("RGB", (300, 100), RED), 150))
    assert resized.shape == (150, 150, 3)
    # the red band is 50 rows high, centred; the whole width is kept (no crop)
    assert is_colour(resized[55:95], RED, tolerance=2)
    assert is_colour(resized[:45], WHITE) and is_colour(resized[105:], WHITE)
    assert is_colour(resized[75, :], RED, tolerance=2)


@pytest.mark.parametrize("side", [17, 100, 223])
def test_enlarging_is_pillows_bilinear_within_one_level(side):
    """OpenCV enlarges (a third of Pillow's time); the pixels are Pillow's to within rounding."""
    rng = np.random.default_rng(side)
    noise = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    smooth = np.asarray(disc(side, diameter=side // 2, colour=GREEN))
    for pixels_in in (noise, smooth):
        picture = Image.fromarray(pixels_in)
        pillow = np.asarray(picture.resize((224, 224), Image.Resampling.BILINEAR), np.int16)
        ours = resize_square(picture, 224).astype(np.int16)
        assert np.abs(ours - pillow).max() <= 1
        assert np.abs(ours - pillow).mean() < 0.5


def test_a_picture_at_the_input_size_is_left_as_it_is():
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
    assert np.array_equal(resize_square(picture, 64), np.asarray(picture))


def test_resize_square_downscale_is_antialiased():
    """A 1-px checkerboard shrunk 4x averages to grey instead of aliasing to black or white."""
    board = (np.indices((400, 400)).sum(axis=0) % 2 * 255).astype(np.uint8)
    resized = pixels(resize_square(Image.fromarray(board).convert("RGB"), 100))
    assert np.abs(resized - 127.5).max() < 20


# --- to_tensor ------------------------------------------------------------------------------------


def test_to_tensor_shape_dtype_and_values():
    values = np.zeros((2, 3, 3), dtype=np.uint8)
    values[1, 2] = (10, 50, 200)
    normalisation = Normalisation(mean=(0.0, 10.0, 100.0), std=(2.0, 4.0, 5.0))
    tensor = to_tensor(Image.fromarray(values), normalisation)
    assert tensor.shape == (3, 2, 3)  # CHW
    assert tensor.dtype == np.float32
    assert tensor.flags["C_CONTIGUOUS"]
    assert tensor[:, 1, 2] == pytest.approx([5.0, 10.0, 20.0])  # (pixel - mean) / std
    assert tensor[:, 0, 0] == pytest.approx([0.0, -2.5, -20.0])


# --- colour_histogram -----------------------------------------------------------------------------


def assert_is_distribution(histogram: np.ndarray) -> None:
    assert histogram.shape == (COLOUR_DIM,)
    assert histogram.dtype == np.float32
    assert (histogram >= 0).all()
    assert float(histogram.sum()) == pytest.approx(1.0, abs=1e-5)


def white_share(histogram: np.ndarray) -> float:
    """Mass in the white bin: hue 0, lowest saturation, highest value."""
    return float(histogram.reshape(COLOUR_BINS)[0, 0, -1])


def test_colour_histogram_is_a_distribution():
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
    assert_is_distribution(colour_histogram(image))


def test_colour_histogram_ignores_white_background():
    """The same red disc on a small or a four-times-larger white canvas: nearly one histogram."""
    tight, loose = colour_histogram(disc(100)), colour_histogram(disc(200))
    assert_is_distribution(tight)
    assert_is_distribution(loose)
    assert white_share(tight) < 0.1 and white_share(loose) < 0.1
    assert np.abs(tight - loose).sum() < 0.25  # L1 distance, out of 2
    assert by_hue(loose)[0] + by_hue(loose)[-1] > 0.9  # red hue


def test_colour_histogram_of_all_white_uses_every_pixel():
    histogram = colour_histogram(Image.new("RGB", (50, 40), WHITE))
    assert_is_distribution(histogram)
    assert white_share(histogram) == pytest.approx(1.0)


def test_colour_histogram_of_a_very_pale_picture_uses_every_pixel():
    pale = Image.new("RGB", (64, 64), (250, 244, 236))
    ImageDraw.Draw(pale).rectangle((0, 0, 1, 63), fill=RED)  # 3 % coloured: below the share
    histogram = colour_histogram(pale)
    assert_is_distribution(histogram)
    # the whole picture counted: the pale colour dominates, red keeps its 3 % (not 100 %)
    assert by_hue(histogram)[0] + by_hue(histogram)[-1] == pytest.approx(2 / 64, abs=0.02)
    assert histogram.max() > 0.9


def test_colour_histogram_on_a_green_background():
    """A photo-like picture (not on white): the background is described like the fruit."""
    rng = np.random.default_rng(5)
    image = disc(100, diameter=80, background=GREEN, colour=RED)
    noisy = np.clip(pixels(image) + rng.integers(-12, 13, (100, 100, 3)), 0, 255)
    histogram = colour_histogram(Image.fromarray(noisy.astype(np.uint8)))
    assert_is_distribution(histogram)
    hues = by_hue(histogram)
    red = hues[0] + hues[-1]
    green = hues[5:8].sum()
    disc_share = np.pi * 40**2 / 100**2  # 0.50
    assert red == pytest.approx(disc_share, abs=0.1)
    assert green == pytest.approx(1 - disc_share, abs=0.1)
    assert white_share(histogram) == 0


def test_colour_histogram_tells_colours_apart():
    red, green = colour_histogram(disc(100)), colour_histogram(disc(100, colour=GREEN))
    assert np.abs(red - green).sum() > 1.5


def test_a_landscape_picture_has_a_padded_and_a_centre_square_view():
    picture = Image.new("RGB", (300, 100), (0, 0, 255))
    picture.paste((255, 0, 0), (100, 0, 200, 100))  # the middle third red
    padded, crop = model_views(picture, 50)
    assert padded.shape == crop.shape == (50, 50, 3)
    assert np.asarray(padded)[0, 25].tolist() == [255, 255, 255]  # white bars above and below
    assert (np.abs(np.asarray(crop, np.int16) - (255, 0, 0)).max(axis=2) <= 8).all()  # the middle


def test_a_square_picture_or_pad_alone_has_one_view():
    square = Image.new("RGB", (80, 80), (10, 200, 10))
    (only,) = model_views(square, 40)
    assert only.shape == (40, 40, 3)
    landscape = Image.new("RGB", (120, 80))
    (padded,) = model_views(landscape, 40, "pad")
    assert np.asarray(padded).tolist() == np.asarray(resize_square(landscape, 40)).tolist()


def test_opencv_threads_follow_the_tasks_share_of_the_cores():
    import cv2

    from fruitspark.preprocess import limit_threads

    before = cv2.getNumThreads()
    try:
        limit_threads(1)
        assert cv2.getNumThreads() == 1
        limit_threads(3)
        assert cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(before)


def test_int8_calibration_inputs_keep_pillows_resize():
    """The int8 recipe's inputs as measured: Pillow both ways, not the runtime's OpenCV."""
    from fruitspark.model import MEAN_RGB, STD_RGB
    from fruitspark.quantize import _Reader, calibration_pictures

    normalisation = Normalisation(MEAN_RGB, STD_RGB)
    reader = _Reader("input", 224, normalisation)
    for picture in calibration_pictures():
        fed = reader.get_next()["input"][0]
        if picture.size[0] < 224:  # enlarged: where Pillow and OpenCV differ
            break
    pillow = picture.resize((224, 224), Image.Resampling.BILINEAR)
    assert np.array_equal(fed, to_tensor(pillow, normalisation))
    assert not np.array_equal(fed, to_tensor(resize_square(picture, 224), normalisation))

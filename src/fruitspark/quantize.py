"""The int8 model: static QDQ quantisation of a built-in graph, calibrated on generated pictures.

Static int8 runs the convolutions with integer kernels, which on a CPU without a GPU is what
makes the network itself cheaper; dynamic quantisation would only cover the classifier's Gemm.
The activation ranges come from calibration pictures that are *generated* here, deterministically,
never from the user's images: fruit-like shapes (shaded ellipses of every hue, a stalk, a
highlight) on white, as in Fruits-360, and on cluttered backgrounds, as in a shop photo. Seeded
generation makes the int8 graph a pure function of the fp32 graph and ``RECIPE``.

Which nodes stay in float decides how close the features stay to fp32 (BENCHMARKS.md gives the
cosine similarities): the stem conv sees raw pixels, and the head conv and pooling produce the
features themselves, so those are excluded; everything in between is int8.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fruitspark.preprocess import Normalisation, pillow_resize_square, to_tensor

RECIPE = "q1"  # bump when anything below changes: it is part of the cached file's name
CALIBRATION_IMAGES = 96
CALIBRATION_SEED = 20261201
EXCLUDED_NODES = ("_conv_stem", "_conv_head", "logits")  # node names: their output's


def calibration_pictures(count: int = CALIBRATION_IMAGES, seed: int = CALIBRATION_SEED):
    """``count`` generated RGB pictures, half on white and half on clutter, of varied sizes."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        side = int(rng.integers(100, 400))
        yield _fruit_scene(rng, side, cluttered=index % 2 == 1)


def _fruit_scene(rng: np.random.Generator, side: int, cluttered: bool) -> Image.Image:
    """One to three shaded, stalked ellipses on white or on blurred random blobs."""
    white = Image.new("RGB", (side, side), (255, 255, 255))
    picture = _clutter(rng, side) if cluttered else white
    draw = ImageDraw.Draw(picture)
    for _ in range(int(rng.integers(1, 4))):
        radius = side * rng.uniform(0.15, 0.42)
        centre = rng.uniform(radius, side - radius, size=2)
        hue = int(rng.integers(0, 256))
        _shaded_ellipse(draw, centre, radius, rng.uniform(0.7, 1.3), hue, rng)
        stalk = (centre[0], centre[1] - radius, centre[0] + radius * 0.1, centre[1] - radius * 1.2)
        draw.line(stalk, fill=(90, 60, 30), width=max(1, side // 60))
    noisy = np.asarray(picture, dtype=np.int16) + rng.normal(0, 4, (side, side, 3)).astype(np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _clutter(rng: np.random.Generator, side: int) -> Image.Image:
    base = tuple(int(v) for v in rng.integers(40, 220, size=3))
    picture = Image.new("RGB", (side, side), base)
    draw = ImageDraw.Draw(picture)
    for _ in range(12):
        x, y = rng.uniform(0, side, size=2)
        size = side * rng.uniform(0.05, 0.3)
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        draw.rectangle((x, y, x + size, y + size * rng.uniform(0.3, 2)), fill=colour)
    return picture.filter(ImageFilter.GaussianBlur(side / 80))


def _shaded_ellipse(draw, centre, radius: float, aspect: float, hue: int, rng) -> None:
    """Concentric ellipses from dark rim to a pale highlight: a round fruit's shading."""
    saturation = int(rng.integers(120, 256))
    for step in range(12, 0, -1):
        share = step / 12
        value = int(255 * (0.45 + 0.55 * (1 - share) ** 0.5))
        pale = int(saturation * (0.4 + 0.6 * share))
        colour = Image.new("HSV", (1, 1), (hue, pale, value)).convert("RGB").getpixel((0, 0))
        rx, ry = radius * share, radius * share * aspect
        offset = radius * 0.25 * (1 - share)  # the highlight sits up and to the left
        x, y = centre[0] - offset, centre[1] - offset
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=colour)


class _Reader:
    """onnxruntime's CalibrationDataReader over the generated pictures, one image per batch.

    The pictures are resized by Pillow both ways, as when the recipe was measured: OpenCV's
    enlarging (``preprocess``), within one grey level, moves no range that matters, but would
    make another int8 graph than the one the accuracy tables and the int8 default rest on."""

    def __init__(self, input_name: str, size: int, normalisation: Normalisation) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {input_name: to_tensor(pillow_resize_square(picture, size), normalisation)[None]}
            for picture in calibration_pictures()
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_model(
    fp32: Path, target: Path, size: int, normalisation: Normalisation, input_name: str = "images"
) -> None:
    """Write the static int8 version (QDQ, per-channel weights) of graph ``fp32`` to ``target``."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_suffix(f".{os.getpid()}.pre.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    try:
        quantize_static(
            str(prepared),
            str(target),
            _Reader(input_name, size, normalisation),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=False,  # 7-bit weights: cosine to fp32 0.96 instead of 0.99
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=list(EXCLUDED_NODES),
        )
    finally:
        prepared.unlink(missing_ok=True)

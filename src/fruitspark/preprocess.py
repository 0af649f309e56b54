"""From an upright RGB picture to the model's input tensor and a colour descriptor.

Aspect policy: the picture is padded to a square on white, then resized to the model's input. A
phone photo keeps the whole fruit (a centre crop would cut it), and the padding matches the white
background of Fruits-360, the domain the pipeline is tuned on; a square picture is only resized.
A picture that is not square has a second view by default (``VIEWS``): its centred square, the
framing ImageNet models were trained on, which fills the input with the photo instead of white
bars; the network's outputs of both views are averaged (``featurize.describe_images``). Measured
on shop photos (README, "Real photos"): +1.8 to +3.6 points on grocery-store val, +0.3 to +0.4
on a 5-fold split of grocery train, for twice the model's work on those pictures only.

Resizing: enlarging (every Fruits-360 image, 100 px to 224) goes through OpenCV, whose bilinear
interpolation is Pillow's (pixel centres, edges clamped) to within one grey level, at 0.2 ms an
image against Pillow's 0.55; shrinking stays with Pillow, whose filter widens with the scale
(antialiased; OpenCV's bilinear would alias). The model inputs are numpy arrays from there on:
turning them back into Pillow images cost another 0.1-0.2 ms an image
(``benchmarks/sections/steps.py`` measures the steps). The one-level differences move the
features a little (``benchmarks/enlarging.py``, the 9,360 Fruits-360 sample images: cosine to
the features of Pillow's enlarging median 0.9995, minimum 0.995 in fp32; 0.998 and 0.992 in
int8), not what they recognise: Fruits-360 Test top-1 of the same classifier 0.9923 -> 0.9915
in fp32, 0.9902 -> 0.9906 in int8 (two images of 2,340 either way).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

COLOUR_BINS = (18, 4, 4)  # hue x saturation x value
COLOUR_DIM = int(np.prod(COLOUR_BINS))
COLOUR_SIDE = 64  # the histogram is computed on a 64 px copy: plenty for 288 bins, and cheap
_WHITE_SATURATION = 0.12  # a pixel this pale and this bright is background, not fruit
_WHITE_VALUE = 0.90
_MIN_FOREGROUND = 0.05  # below this share of coloured pixels, the whole picture is described
# Pillow's HSV bytes -> the pixel's bin, one lookup per channel (cheaper than the arithmetic).
_HUE_BIN, _SATURATION_BIN, _VALUE_BIN = (
    ((np.arange(256) * bins >> 8) * int(np.prod(COLOUR_BINS[axis + 1 :]))).astype(np.uint16)
    for axis, bins in enumerate(COLOUR_BINS)
)


@dataclass(frozen=True)
class Normalisation:
    """Per-channel ``(pixel - mean) / std`` on the 0..255 scale, as the model was trained."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def square_on_white(image: Image.Image) -> Image.Image:
    """Pad the shorter side with white so that the picture becomes a centred square."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def limit_threads(threads: int) -> None:
    """OpenCV's thread pool sized to a task's share of the cores, as ONNX Runtime's is: it
    splits a resize above 65,536 output pixels (``--input-size`` 257 and up), which would
    oversubscribe cores that other tasks use. For a Spark worker's process, not a notebook's."""
    cv2.setNumThreads(threads)


def resize_square(image: Image.Image, size: int) -> np.ndarray:
    """The model input, HWC uint8 RGB: square on white, then bilinear to ``size`` x ``size``."""
    return resize(square_on_white(image), size)


def resize(square: Image.Image, size: int) -> np.ndarray:
    """A square picture bilinearly resized to ``size`` px, as HWC uint8 RGB: enlarged by
    OpenCV, shrunk by Pillow (antialiased), left as it is at that size already."""
    side = square.size[0]
    if side > size:
        square = square.resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.asarray(square)
    if side < size:
        return cv2.resize(pixels, (size, size), interpolation=cv2.INTER_LINEAR)
    return pixels


def pillow_resize_square(image: Image.Image, size: int) -> Image.Image:
    """The model input as it was before OpenCV enlarged it: Pillow's bilinear both ways. The
    int8 recipe's calibration keeps it (``quantize``: its graph stays the one the accuracy
    tables were measured on), and the benchmarks compare against it."""
    square = square_on_white(image)
    if square.size == (size, size):
        return square
    return square.resize((size, size), Image.Resampling.BILINEAR)


VIEWS = ("pad+crop", "pad")  # the default first


def model_views(image: Image.Image, size: int, views: str = VIEWS[0]) -> list[np.ndarray]:
    """The model inputs of one picture (HWC uint8): padded to a square, and for ``pad+crop``
    its centred square too, unless the picture is square (both views would be the same)."""
    padded = resize_square(image, size)
    width, height = image.size
    if views == "pad" or width == height:
        return [padded]
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return [padded, resize(image.crop((left, top, left + side, top + side)), size)]


def to_tensor(image: np.ndarray | Image.Image, normalisation: Normalisation) -> np.ndarray:
    """HWC uint8 RGB (an array or a picture) to the CHW float32 tensor the network reads.

    Transposing the uint8 array first and normalising in place costs a quarter of converting
    then transposing a float copy: this runs once per image on the executors.
    """
    chw = np.asarray(image).transpose(2, 0, 1).astype(np.float32, order="C")
    chw -= np.asarray(normalisation.mean, dtype=np.float32)[:, None, None]
    chw *= (1.0 / np.asarray(normalisation.std, dtype=np.float32))[:, None, None]
    return chw


def colour_histogram(image: Image.Image) -> np.ndarray:
    """An L1-normalised 18x4x4 HSV histogram of the fruit's pixels.

    Fruits-360 varieties differ mostly in colour, which a CNN trained for object classes blurs.
    Near-white pixels are taken for background and left out; when almost nothing else is left
    (a white fruit, a pale photo) every pixel counts, so the descriptor never depends on a white
    background to be defined.
    """
    small = image.copy()
    small.thumbnail((COLOUR_SIDE, COLOUR_SIDE), Image.Resampling.BILINEAR)
    hsv = np.asarray(small.convert("HSV")).reshape(-1, 3)
    hue, saturation, value = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    index = _HUE_BIN[hue] + _SATURATION_BIN[saturation] + _VALUE_BIN[value]
    foreground = ~((saturation < _WHITE_SATURATION * 256) & (value > _WHITE_VALUE * 256))
    if foreground.mean() >= _MIN_FOREGROUND:
        index = index[foreground]
    counts = np.bincount(index, minlength=COLOUR_DIM).astype(np.float32)
    return counts / max(float(counts.sum()), 1.0)

"""The image files fruitspark reads, in one list: listing, ``cloud sync``, tests and benchmarks.

Every format here is one that Pillow decodes (see :mod:`fruitspark.decode`): AVIF natively
(Pillow 11.3 and later), HEIC/HEIF, what iPhones save, through pi-heif's read-only opener for
Pillow (libheif). A file whose name
ends otherwise is not an image to fruitspark: ``run`` does not list it and ``cloud sync`` does
not upload it, so the two can never disagree about which files of a folder are the data set.
Matching ignores case (``IMG_0001.JPG`` is an image).
"""

from __future__ import annotations

IMAGE_EXTENSIONS = (
    "jpg", "jpeg", "png", "webp", "heic", "heif", "avif", "bmp", "gif", "tif", "tiff",
)  # fmt: skip
IMAGE_SUFFIXES = frozenset(f".{extension}" for extension in IMAGE_EXTENSIONS)


def is_image_name(name: str) -> bool:
    """Whether a file name (or path) ends in one of :data:`IMAGE_EXTENSIONS`, in any case."""
    stem, dot, extension = name.rpartition(".")
    return bool(dot) and bool(stem.rsplit("/", 1)[-1]) and extension.lower() in IMAGE_EXTENSIONS

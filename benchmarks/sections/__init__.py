"""The benchmark sections, one module each, in the order BENCHMARKS.md shows them.

A section module has ``TITLE`` (its heading), ``SLOW`` (True: skipped by ``--quick``),
``measure(ctx) -> dict`` and ``render(result: dict) -> str``; see benchmarks/README.md. A name
listed here whose module does not exist yet (another engineer is writing it) is skipped when
measuring and rendering; the targets that read it show "not measured".
"""

from __future__ import annotations

import importlib
from types import ModuleType

ORDER = (
    "fixed_costs",  # core: bare Spark session, 30-image runs, refusals
    "ceiling",
    "python_work",
    "decode",
    "steps",  # ml: per-step ms/image, before and after
    "jpeg",
    "e2e",
    "peers",  # ml: Daft and Ray Data on the same images and model
    "naive",
    "scaling",
    "pca",  # core: numpy PCA on 100k x 1,568
    "tuning",
    "load",
    "quality",  # photos: accuracy on Fruits-360 and real photos (benchmarks/quality.py)
    "test_suite",  # core: the suite's wall time before and after (issue 9), no module yet
)


def load(name: str) -> ModuleType | None:
    """The section's module, or None if nobody has written it yet."""
    if name not in ORDER:
        raise ValueError(f"unknown section {name!r}; known: {', '.join(ORDER)}")
    try:
        return importlib.import_module(f"benchmarks.sections.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"benchmarks.sections.{name}":
            raise
        return None

"""fruitspark: images to transfer-learning features to PCA, on Spark, from a laptop to EMR.

The Python API is the CLI's: ``run(RunConfig(input, output), spark)`` featurises and reduces,
``evaluate(output, spark)`` scores a classifier, ``predict(output, [paths])`` names new photos,
``refresh_report(output, spark)`` rewrites the report. ``spark`` may be any existing session.

The names are imported on first use (PEP 562): every Spark Python worker imports this package to
run its tasks, and should not pay for evaluate, the report or the CLI each time it starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_HOMES = {
    "EvaluateOptions": "fruitspark.evaluate",
    "evaluate": "fruitspark.evaluate",
    "FeaturizeOptions": "fruitspark.featurize",
    "RunConfig": "fruitspark.pipeline",
    "refresh_report": "fruitspark.pipeline",
    "run": "fruitspark.pipeline",
    "Prediction": "fruitspark.predict",
    "predict": "fruitspark.predict",
}
__all__ = [
    "EvaluateOptions",
    "FeaturizeOptions",
    "Prediction",
    "RunConfig",
    "__version__",
    "evaluate",
    "predict",
    "refresh_report",
    "run",
]

if TYPE_CHECKING:
    from fruitspark.evaluate import EvaluateOptions, evaluate
    from fruitspark.featurize import FeaturizeOptions
    from fruitspark.pipeline import RunConfig, refresh_report, run
    from fruitspark.predict import Prediction, predict


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'fruitspark' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)

"""fruitspark: images to transfer-learning features to PCA, on Spark, from a laptop to EMR.

The Python API is the CLI's: ``run(RunConfig(input, output), spark)`` featurises and reduces,
``evaluate(output, spark)`` scores a classifier, ``predict(output, [paths])`` names new photos,
``refresh_report(output, spark)`` rewrites the report. ``spark`` may be any existing session.
"""

__version__ = "0.1.0"

from fruitspark.evaluate import QUICK_GRID, EvaluateOptions, evaluate
from fruitspark.featurize import FeaturizeOptions
from fruitspark.pipeline import RunConfig, refresh_report, run
from fruitspark.predict import Prediction, predict

__all__ = [
    "QUICK_GRID",
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

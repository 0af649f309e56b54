"""Every file and folder name an output holds, in one place.

An output folder is written by ``run`` (features, PCA model, summary, report, CSV), then by
``evaluate`` (classifier, evaluation, predictions), and read by ``predict``, ``report`` and
``cloud``. Each of them names the parts through this module, so a rename is one edit.
"""

from __future__ import annotations

FEATURES = "features"  # Parquet, one row per listed image (see pipeline.OUTPUT_COLUMNS)
PCA_MODEL = "pca_model"  # a Spark ML PipelineModel directory (PipelineModel.load reads it)
PCA_NPZ = "pca.npz"  # mean and k x d components, for projection without Spark (predict)
SUMMARY = "summary.json"  # written last: an output is complete when it exists (schema: summary.py)
REPORT = "report.html"
CSV = "pca_csv"  # optional: path, label, split, pc1..pck
STAGING = "_staging"  # _staging/<run id>/<part> until the commit moves each part into place
RUN_LOCK = "_run.lock"  # JSON marker of the run writing the output (run id, start, host, pid)
CLASSIFIER = "classifier"  # Spark ML PipelineModel (scaler, boost, LR), by ``evaluate``
CLASSIFIER_NPZ = "classifier.npz"  # its coefficients, for ``predict``
EVALUATION = "evaluation.json"
PREDICTIONS = "predictions"  # Parquet of the Test split's predictions

RESULT_FILES = (SUMMARY, REPORT)  # what ``fruitspark cloud`` downloads after a cluster run


def staged(run_id: str, part: str = "") -> str:
    """Where a run writes ``part`` before its commit (relative to the output root)."""
    return f"{STAGING}/{run_id}/{part}" if part else f"{STAGING}/{run_id}"

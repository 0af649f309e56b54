"""PCA in Spark ML, centred, with k fixed or chosen by explained variance.

The fitted model is a standard, saveable ``PipelineModel``: centre (``StandardScaler`` with mean,
without scaling), project on every component (``PCA``), keep the first k (``VectorSlicer``).
Fitting it sends only d-vectors and the d x d covariance to the driver. Fitting all components once
gives the whole explained-variance curve, and k is then a cheap slice, never a second pass.
The same parameters are exported to ``pca.npz`` so that ``predict`` can project without Spark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VECTOR_COL = "vector"


@dataclass(frozen=True)
class PcaFit:
    model: object  # pyspark.ml.PipelineModel
    k: int
    explained_variance: list[float]  # ratio per component, all components
    selection: str


def choose_k(explained_variance: np.ndarray, *, k: int | None, variance: float | None) -> int:
    """The fixed k, capped at the number of components; or the smallest k reaching ``variance``."""
    ratios = np.asarray(explained_variance, dtype=np.float64)
    if k is not None:
        return int(min(k, len(ratios)))
    if variance is None or not 0 < variance <= 1:
        raise ValueError("choose k: give k, or a variance share in (0, 1]")
    reached = np.nonzero(np.cumsum(ratios) >= variance - 1e-12)[0]
    return int(reached[0] + 1) if len(reached) else len(ratios)


def project(features: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Centred projection, ``(x - mean) @ components.T``: what the Spark pipeline computes."""
    return (np.asarray(features, np.float64) - mean) @ components.T


def to_vectors(frame, column: str = "features"):
    """The featurised rows as ML vectors (failed images have no features and are left out)."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    return frame.where(F.col(column).isNotNull()).withColumn(
        VECTOR_COL, array_to_vector(F.col(column))
    )


def fit_pca(
    frame, *, dimension: int, k: int | None = None, variance: float | None = None
) -> PcaFit:
    """Fit the centred PCA pipeline on ``frame.features``."""
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.feature import PCA, StandardScaler, VectorSlicer

    vectors = to_vectors(frame).select(VECTOR_COL)
    centring = StandardScaler(
        inputCol=VECTOR_COL, outputCol="centred", withMean=True, withStd=False
    )
    full = PCA(inputCol="centred", outputCol="components", k=dimension)
    fitted = Pipeline(stages=[centring, full]).fit(vectors)
    ratios = np.asarray(fitted.stages[1].explainedVariance.toArray(), dtype=np.float64)
    chosen = choose_k(ratios, k=k, variance=variance)
    slicer = VectorSlicer(
        inputCol="components", outputCol="pca_vector", indices=list(range(chosen))
    )
    selection = f"k = {chosen}" if k is not None else f"variance >= {variance:g}"
    return PcaFit(
        model=PipelineModel(stages=[*fitted.stages, slicer]),
        k=chosen,
        explained_variance=ratios.tolist(),
        selection=selection,
    )


def add_pca(frame, model) -> object:
    """``frame`` with a ``pca`` array column (null for failed images), in the input's order."""
    from pyspark.ml.functions import array_to_vector, vector_to_array
    from pyspark.sql import functions as F

    vectors = frame.withColumn(
        VECTOR_COL,
        F.when(F.col("features").isNotNull(), array_to_vector(F.col("features"))),
    )
    projected = model.transform(vectors.where(F.col(VECTOR_COL).isNotNull()))
    kept = frame.columns
    with_pca = projected.select(*kept, vector_to_array("pca_vector", "float32").alias("pca"))
    failed = vectors.where(F.col(VECTOR_COL).isNull()).select(
        *kept, F.lit(None).cast("array<float>").alias("pca")
    )
    return with_pca.unionByName(failed)


def export_parameters(fit: PcaFit) -> dict[str, np.ndarray]:
    """Mean and the first k components as arrays, for projection without Spark."""
    centring, pca = fit.model.stages[0], fit.model.stages[1]
    components = np.asarray(pca.pc.toArray(), dtype=np.float64).T[: fit.k]
    return {"mean": np.asarray(centring.mean.toArray(), dtype=np.float64), "components": components}

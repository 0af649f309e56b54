"""PCA: the k rule (pure), and Spark ML's centred projections against scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA as SklearnPCA

from fruitspark.reduce import choose_k, export_parameters, fit_pca, project, to_vectors


def test_choose_k_fixed_is_capped_and_variance_picks_the_smallest_k():
    ratios = np.array([0.5, 0.3, 0.1, 0.06, 0.04])
    assert choose_k(ratios, k=3, variance=None) == 3
    assert choose_k(ratios, k=99, variance=None) == 5
    assert choose_k(ratios, k=None, variance=0.8) == 2
    assert choose_k(ratios, k=None, variance=0.81) == 3
    assert choose_k(ratios, k=None, variance=1.0) == 5
    with pytest.raises(ValueError):
        choose_k(ratios, k=None, variance=None)


def _frame(spark, matrix: np.ndarray):
    rows = [(f"p{i}", [float(v) for v in row]) for i, row in enumerate(matrix)]
    return spark.createDataFrame(rows, "path string, features array<float>")


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    rng = np.random.default_rng(3)
    latent = rng.normal(size=(400, 4)) * np.array([9.0, 5.0, 2.0, 1.0])
    mixing = rng.normal(size=(4, 24))
    return (latent @ mixing + rng.normal(scale=0.1, size=(400, 24)) + 7.0).astype(np.float32)


def test_spark_projections_equal_sklearn_up_to_sign(spark, matrix):
    fit = fit_pca(_frame(spark, matrix), dimension=24, k=5)
    projected = fit.model.transform(to_vectors(_frame(spark, matrix))).orderBy("path")
    ours = np.array(
        [row["pca_vector"].toArray() for row in projected.select("path", "pca_vector").collect()]
    )
    order = np.argsort([f"p{i}" for i in range(len(matrix))])
    reference = SklearnPCA(n_components=5).fit(matrix.astype(np.float64))
    expected = reference.transform(matrix.astype(np.float64))[order]
    signs = np.sign(np.sum(ours * expected, axis=0))
    np.testing.assert_allclose(ours * signs, expected, atol=1e-3)
    np.testing.assert_allclose(
        fit.explained_variance[:5], reference.explained_variance_ratio_, atol=1e-6
    )
    assert abs(sum(fit.explained_variance) - 1.0) < 1e-9


def test_variance_threshold_and_exported_parameters_match_spark(spark, matrix):
    fit = fit_pca(_frame(spark, matrix), dimension=24, variance=0.9)
    cumulative = np.cumsum(fit.explained_variance)
    assert cumulative[fit.k - 1] >= 0.9 > cumulative[fit.k - 2]
    parameters = export_parameters(fit)
    assert parameters["components"].shape == (fit.k, 24)
    row = fit.model.transform(to_vectors(_frame(spark, matrix[:1]))).first()
    np.testing.assert_allclose(
        project(matrix[:1], parameters["mean"], parameters["components"])[0],
        row["pca_vector"].toArray(),
        atol=1e-9,
    )

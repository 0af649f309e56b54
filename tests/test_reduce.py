"""PCA: the k rule and the moments (pure), Spark projections and the saved Spark ML model
against scikit-learn's PCA."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA as SklearnPCA

from fruitspark import sparkenv
from fruitspark.reduce import (
    DRIVER_ADDS,
    Moments,
    Spectrum,
    blocks_moments,
    choose_k,
    fit_features,
    fit_moments,
    fit_route,
    fit_rows,
    moments,
    pack_upper,
    packed_outer,
    project,
    projector,
    save_spark_model,
    spark_udt,
    unpack_upper,
)
from fruitspark.storage import Storage


def test_choose_k_fixed_is_capped_and_variance_picks_the_smallest_k():
    ratios = np.array([0.5, 0.3, 0.1, 0.06, 0.04])
    assert choose_k(ratios, k=3, variance=None) == 3
    assert choose_k(ratios, k=99, variance=None) == 5
    assert choose_k(ratios, k=None, variance=0.8) == 2
    assert choose_k(ratios, k=None, variance=0.81) == 3
    assert choose_k(ratios, k=None, variance=1.0) == 5
    with pytest.raises(ValueError):
        choose_k(ratios, k=None, variance=None)


@pytest.mark.parametrize("size", [1, 2, 7, 300])
def test_spectrum_matches_numpy_eigh_reading_the_upper_triangle_only(size):
    rng = np.random.default_rng(size)
    factor = rng.normal(size=(size, size)) * np.geomspace(10.0, 1e-3, size)
    symmetric = factor @ factor.T
    upper = np.triu(symmetric) + np.tril(np.full((size, size), np.nan), -1)  # lower: not read
    spectrum = Spectrum.of_upper(upper)
    values, vectors = np.linalg.eigh(symmetric)
    np.testing.assert_allclose(spectrum.values, values[::-1], rtol=1e-9, atol=1e-9 * values.max())
    count = max(1, size // 3)
    ours, expected = spectrum.top(count), vectors[:, ::-1][:, :count]
    assert ours.shape == (size, count)
    np.testing.assert_allclose(np.abs(np.sum(ours * expected, axis=0)), 1.0, atol=1e-8)
    np.testing.assert_allclose(symmetric @ ours, ours * spectrum.values[:count], atol=1e-8)
    assert spectrum.top(0).shape == (size, 0)


def _frame(spark, matrix: np.ndarray):
    """Rows as a run caches them: the features as float32 bytes."""
    rows = [(f"p{i}", np.asarray(row, np.float32).tobytes()) for i, row in enumerate(matrix)]
    return spark.createDataFrame(rows, "path string, features binary")


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    rng = np.random.default_rng(3)
    latent = rng.normal(size=(400, 4)) * np.array([9.0, 5.0, 2.0, 1.0])
    mixing = rng.normal(size=(4, 24))
    return (latent @ mixing + rng.normal(scale=0.1, size=(400, 24)) + 7.0).astype(np.float32)


def _moments(rows: np.ndarray) -> Moments:
    return blocks_moments(iter([rows]), rows.shape[1])


def _aligned(ours: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return ours * np.sign(np.sum(ours * expected, axis=0))


def test_moments_added_in_any_split_equal_the_whole(matrix):
    rows = matrix.astype(np.float64)
    parts = [_moments(matrix[:7]), _moments(matrix[7:250]), _moments(matrix[250:])]
    total = parts[2] + (parts[0] + parts[1])
    np.testing.assert_allclose(total.mean(), rows.mean(axis=0), rtol=1e-6)
    centred = rows - rows.mean(axis=0)
    expected = np.triu(centred.T @ centred)  # the upper triangle: what eigh reads
    np.testing.assert_allclose(total.scatter(), expected, rtol=1e-5, atol=1e-3)


def test_moments_of_row_blocks_equal_those_of_the_whole(matrix):
    blocks = iter([matrix[:150], matrix[150:151], matrix[151:]])
    ours, exact = blocks_moments(blocks, 24), _moments(matrix.astype(np.float64))
    assert ours.count == 400
    np.testing.assert_allclose(ours.mean(), exact.mean(), rtol=1e-6)
    np.testing.assert_allclose(ours.scatter(), exact.scatter(), rtol=1e-9, atol=1e-6)
    assert blocks_moments(iter([]), 24).count == 0


def test_packed_triangles_are_the_upper_triangle_row_by_row(matrix):
    square = matrix[:24].astype(np.float64) @ matrix[:24].T.astype(np.float64)
    packed = pack_upper(square)
    np.testing.assert_array_equal(packed, square[np.triu_indices(24)])
    np.testing.assert_array_equal(unpack_upper(packed, 24), np.triu(square))
    vector = matrix[0].astype(np.float64)
    np.testing.assert_allclose(packed_outer(vector), pack_upper(np.outer(vector, vector)))


def test_partials_added_on_the_driver_or_on_the_executors_are_the_same_moments(spark, matrix):
    """A partial per core: up to DRIVER_ADDS of them reach the driver, more are added first."""
    frame = _frame(spark, matrix).repartition(2 * DRIVER_ADDS)
    exact = _moments(matrix.astype(np.float64))
    for cores in (2, 2 * DRIVER_ADDS):
        ours = moments(frame, dimension=24, parallelism=cores)
        assert ours.count == 400
        np.testing.assert_allclose(ours.mean(), exact.mean(), rtol=1e-6)
        np.testing.assert_allclose(ours.scatter(), exact.scatter(), rtol=1e-9, atol=1e-6)


def test_spark_projections_equal_sklearn_up_to_sign(spark, matrix):
    frame = _frame(spark, matrix)
    fit = fit_features(frame, dimension=24, parallelism=3, k=5)
    shipped = sparkenv.ship(spark, (fit.mean, fit.components))
    project_batch = projector(shipped)
    schema = "path string, features binary, pca array<float>"
    projected = frame.mapInArrow(lambda batches: map(project_batch, batches), schema)
    projected = projected.orderBy("path").select("pca").collect()
    ours = np.array([row["pca"] for row in projected], dtype=np.float64)
    order = np.argsort([f"p{i}" for i in range(len(matrix))])
    reference = SklearnPCA(n_components=5).fit(matrix.astype(np.float64))
    expected = reference.transform(matrix.astype(np.float64))[order]
    np.testing.assert_allclose(_aligned(ours, expected), expected, atol=1e-3)
    np.testing.assert_allclose(
        fit.explained_variance[:5], reference.explained_variance_ratio_, atol=1e-6
    )
    assert abs(sum(fit.explained_variance) - 1.0) < 1e-9
    assert fit.components.shape == (5, 24)  # k components only, never all d


def test_saved_model_loads_in_spark_ml_and_projects_as_numpy(spark, matrix, tmp_path):
    from pyspark.ml import PipelineModel
    from pyspark.ml.functions import array_to_vector

    fit = fit_features(_frame(spark, matrix), dimension=24, variance=0.9)
    cumulative = np.cumsum(fit.explained_variance)
    assert cumulative[fit.k - 1] >= 0.9 > cumulative[fit.k - 2]
    save_spark_model(spark, Storage(spark, str(tmp_path)), "pca_model", fit)
    model = PipelineModel.load(str(tmp_path / "pca_model"))
    rows = [(f"p{i}", [float(v) for v in row]) for i, row in enumerate(matrix[:3])]
    arrays = spark.createDataFrame(rows, "path string, features array<float>")  # as written
    vectors = arrays.withColumn("vector", array_to_vector("features"))
    rows = model.transform(vectors).orderBy("path").collect()
    np.testing.assert_allclose(
        np.array([row["pca_vector"].toArray() for row in rows]),
        project(matrix[:3], fit.mean, fit.components),
        atol=1e-6,
    )


def test_the_udt_schemas_written_without_pyspark_ml_are_pyspark_mls():
    from pyspark.ml.linalg import MatrixUDT, VectorUDT

    assert spark_udt({"size": 3, "values": []}) == VectorUDT().jsonValue()
    assert spark_udt({"numRows": 2, "numCols": 2, "values": []}) == MatrixUDT().jsonValue()


def test_fewer_rows_than_dimensions_fit_from_the_gram_matrix_as_from_the_moments(matrix):
    wide = np.hstack([matrix[:30], matrix[30:60] * 0.5])  # 30 rows of 48 features: n < d
    from_rows = fit_rows(wide, k=6)
    from_moments = fit_moments(_moments(wide), k=6)
    np.testing.assert_allclose(from_rows.mean, from_moments.mean, atol=1e-5)
    np.testing.assert_allclose(from_rows.components, from_moments.components, atol=1e-6)
    np.testing.assert_allclose(
        from_rows.explained_variance, from_moments.explained_variance, atol=1e-9
    )
    assert len(from_rows.explained_variance) == 30
    reference = SklearnPCA(n_components=6).fit(wide.astype(np.float64))
    expected = reference.transform(wide.astype(np.float64))
    ours = project(wide, from_rows.mean, from_rows.components)
    np.testing.assert_allclose(_aligned(ours, expected), expected, atol=1e-3)
    assert fit_rows(wide, k=99).k == 29  # 30 centred rows span 29 directions, never more


def test_fit_route_ships_the_rows_while_they_are_fewer_bytes_than_the_partial_sums():
    assert fit_route(None, 24, 2) == "partials"  # no bound on the rows
    assert fit_route(23, 24, 2) == "gram"
    assert fit_route(24, 24, 2) == fit_route(48, 24, 2) == "rows"
    assert fit_route(49, 24, 2) == "partials"
    assert fit_route(4 * 24, 24, 64) == "rows"  # beyond DRIVER_ADDS cores, one partial ships
    assert fit_route(4 * 24 + 1, 24, 64) == "partials"


def test_the_three_fit_routes_agree(spark, matrix):
    frame = _frame(spark, matrix[:40])
    assert [fit_route(n, 24, 2) for n in (20, 40, None)] == ["gram", "rows", "partials"]
    by_gram = fit_features(_frame(spark, matrix[:20]), dimension=24, rows_at_most=20, k=4)
    by_moments = fit_features(_frame(spark, matrix[:20]), dimension=24, rows_at_most=None, k=4)
    np.testing.assert_allclose(by_gram.components, by_moments.components, atol=1e-5)
    np.testing.assert_allclose(by_gram.explained_variance, by_moments.explained_variance, atol=1e-7)
    by_rows = fit_features(frame, dimension=24, rows_at_most=40, k=4)
    by_partials = fit_features(frame, dimension=24, rows_at_most=None, k=4)
    np.testing.assert_allclose(by_rows.mean, by_partials.mean, atol=1e-6)
    np.testing.assert_allclose(by_rows.components, by_partials.components, atol=1e-5)
    np.testing.assert_allclose(
        by_rows.explained_variance, by_partials.explained_variance, atol=1e-7
    )
    empty = spark.createDataFrame([("p", None)], "path string, features array<float>")
    assert fit_features(empty, dimension=24, rows_at_most=1) is None
    assert fit_features(empty, dimension=24) is None

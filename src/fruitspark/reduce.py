"""PCA as numpy on the executors and the driver: fast with or without a system BLAS.

Fitting needs the mean and the d x d covariance of the features, which are sums: each executor
task adds up ``n``, ``sum x`` and ``sum x x^T`` of its rows with numpy (whose wheels bundle an
optimised BLAS, unlike Spark ML's JVM, which falls back to pure Java without a system one), the
partial sums are added on the executors, and only one d x d matrix reaches the driver. There it
is reduced to tridiagonal form once (LAPACK's ``dsytrd``, through scipy), which gives every
eigenvalue for a few milliseconds more: the whole explained-variance curve is known, so k is a
cheap choice, never a second pass; then only the k kept eigenvectors are computed and mapped back
(``Spectrum``: 0.8 s against numpy's 1.4 s for all of them, d = 2,568, k = 142, as in
``eigh``'s own drivers, which cannot stop between the two). The projection onto those k
components runs with numpy on the executors, the k x d matrix shipped once per executor.

The partial sums are d x d each, one per core: when the rows themselves are fewer bytes (n up
to cores x d: 3,040 images of 2,568 features on 2 cores), the rows are collected instead, in
float32, and summed on the driver (0.6 s against 1.25 s, shipping 31 MB instead of 52 MB).
With fewer rows than dimensions (a small run: 30 images), the eigenvectors of their n x n Gram
matrix give the same components at a fraction of the cost (``fit_rows``), by the same
tridiagonal route. ``fit_route`` names the choice.

Each task's sums are taken in float64 around a shift (its first rows' mean), which keeps the
small components exact; partials are combined exactly (Chan et al.'s pairwise formula).
The fitted PCA is also saved in Spark ML's own on-disk format, as a ``PipelineModel`` of a
centring ``StandardScalerModel`` and a ``PCAModel`` with k components, which
``PipelineModel.load`` reads, and as ``pca.npz`` for ``predict``, which needs no Spark.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from fruitspark import sparkenv
from fruitspark.feature_column import feature_matrix
from fruitspark.task_parquet import SPARK_SCHEMA_KEY

VECTOR_COL = "vector"
PCA_COL = "pca"
DRIVER_ADDS = 4  # partial moments (d x d each) the driver adds itself; more are added before
ROWS_PER_PRODUCT = 2048  # rows stacked before one X^T X product (BLAS wants tall blocks)
MOMENT_FIELDS = [pa.field(name, pa.binary()) for name in ("count", "shift", "sum", "product")]


def pack_upper(matrix: np.ndarray) -> np.ndarray:
    """A square matrix's upper triangle, row by row (``np.triu_indices`` order), as one vector:
    row slices, several times faster than fancy indexing at d = 2,568."""
    return np.concatenate([matrix[row, row:] for row in range(len(matrix))])


def unpack_upper(packed: np.ndarray, dimension: int) -> np.ndarray:
    """The d x d matrix whose upper triangle ``packed`` holds; its lower triangle stays zero."""
    matrix = np.zeros((dimension, dimension))
    start = 0
    for row in range(dimension):
        matrix[row, row:] = packed[start : start + dimension - row]
        start += dimension - row
    return matrix


def packed_outer(vector: np.ndarray) -> np.ndarray:
    """``pack_upper(np.outer(vector, vector))`` without the d x d matrix."""
    return np.concatenate([vector[row] * vector[row:] for row in range(len(vector))])


@dataclass(frozen=True)
class Moments:
    """Sums of ``count`` rows around ``shift``: of ``x - shift`` and of its outer products, the
    symmetric ``product`` kept as its packed upper triangle (half the bytes to ship and to add;
    only the final sum is unpacked, for ``eigh``, which reads one triangle)."""

    count: int
    shift: np.ndarray
    total: np.ndarray
    product: np.ndarray  # pack_upper of sum (x - shift)(x - shift)^T

    def mean(self) -> np.ndarray:
        return self.shift + self.total / self.count

    def packed_scatter(self) -> np.ndarray:
        offset = self.total / self.count
        return self.product - self.count * packed_outer(offset)

    def scatter(self) -> np.ndarray:
        """``sum (x - mean)(x - mean)^T`` (the covariance times n): its upper triangle."""
        return unpack_upper(self.packed_scatter(), len(self.shift))

    def __add__(self, other: Moments) -> Moments:
        """Chan et al.'s pairwise combination, on the packed triangles."""
        if not other.count:
            return self
        if not self.count:
            return other
        count = self.count + other.count
        mean_a, mean_b = self.mean(), other.mean()
        delta = mean_b - mean_a
        scatter = self.packed_scatter() + other.packed_scatter()
        scatter += packed_outer(delta) * (self.count * other.count / count)
        mean = mean_a + delta * (other.count / count)
        return Moments(count, mean, np.zeros_like(mean), scatter)

    def to_row(self) -> list[bytes]:
        arrays = (np.array([self.count]), self.shift, self.total, self.product)
        return [np.ascontiguousarray(array, np.float64).tobytes() for array in arrays]

    @classmethod
    def from_row(cls, row) -> Moments:
        count, shift, total, product = (
            np.frombuffer(row[name]) for name in ("count", "shift", "sum", "product")
        )
        return cls(int(count[0]), shift, total, product)


def blocks_moments(blocks: Iterator[np.ndarray], dimension: int) -> Moments:
    """The moments of row blocks, in float64 around the first block's first rows' mean: one
    product per block added to one running sum, no merge between blocks. (Products in float32
    would halve the time, but turn a component of a near-degenerate tail, 5 orders of
    magnitude below the first, away from scikit-learn's: tests/test_reduce.py.)"""
    count, shift, product = 0, None, None
    total = np.zeros(dimension)
    for block in blocks:
        if shift is None:
            shift = np.asarray(block[: min(len(block), 64)], np.float64).mean(axis=0)
        centred = np.asarray(block, np.float64) - shift
        gram = centred.T @ centred  # numpy sees X^T X: a symmetric rank-k update (syrk)
        if product is None:  # the first product is the sum (no d x d zeros to fault in, add)
            product = gram
        else:
            product += gram
        total += centred.sum(axis=0)
        count += len(block)
    if product is None:
        return empty_moments(dimension)
    return Moments(count, shift, total, pack_upper(product))


def empty_moments(dimension: int) -> Moments:
    return Moments(
        0, np.zeros(dimension), np.zeros(dimension), np.zeros(dimension * (dimension + 1) // 2)
    )


def _row_blocks(batches: Iterator[pa.RecordBatch], column: str, dimension: int):
    """A task's rows with features as blocks of at least ROWS_PER_PRODUCT rows (the last less)."""
    pending: list[np.ndarray] = []
    pending_rows = 0
    for batch in batches:
        rows = feature_matrix(batch.column(column), dimension)
        if len(rows):
            pending.append(rows)
            pending_rows += len(rows)
        if pending_rows >= ROWS_PER_PRODUCT:
            yield np.concatenate(pending)
            pending, pending_rows = [], 0
    if pending:
        yield np.concatenate(pending)


def _batch_moments(batches: Iterator[pa.RecordBatch], column: str, dimension: int):
    """One partial sum for all the rows of a task (failed rows, with null features, skipped)."""
    total = blocks_moments(_row_blocks(batches, column, dimension), dimension)
    if total.count:
        yield pa.RecordBatch.from_arrays(
            [pa.array([value]) for value in total.to_row()], schema=pa.schema(MOMENT_FIELDS)
        )


def _sum_moments(batches: Iterator[pa.RecordBatch]):
    parts = [Moments.from_row(row) for batch in batches for row in batch.to_pylist()]
    if parts:
        total = sum(parts[1:], parts[0])
        yield pa.RecordBatch.from_arrays(
            [pa.array([value]) for value in total.to_row()], schema=pa.schema(MOMENT_FIELDS)
        )


def moments(frame, *, dimension: int, parallelism: int, column: str = "features") -> Moments:
    """The features' moments: a partial sum per core, collected through Arrow (Spark's row
    collect pickles a 26 MB binary three times slower) and added on the driver. Beyond
    DRIVER_ADDS cores the partials are first added on the executors, so that one row reaches
    the driver; on a few cores that extra stage and task cost more than they save (at 3,040
    images of 2,568 features on 2 cores: 1.6-1.9 s against 1.3 s collecting both, before
    ``fit_route`` sent that many rows to the driver instead)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    schema = from_arrow_schema(pa.schema(MOMENT_FIELDS))
    cores = max(1, parallelism)
    partials = (
        frame.select(column)
        .coalesce(cores)
        .mapInArrow(lambda batches: _batch_moments(batches, column, dimension), schema)
    )
    if cores > DRIVER_ADDS:
        partials = partials.repartition(1).mapInArrow(_sum_moments, schema)
    parts = [Moments.from_row(row) for row in sparkenv.collect_arrow(partials).to_pylist()]
    return sum(parts[1:], parts[0]) if parts else empty_moments(dimension)


@dataclass(frozen=True)
class PcaFit:
    """A fitted centred PCA: the mean, the k kept components (k x d) and every ratio."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance: list[float]  # ratio per component, all components
    k: int


def choose_k(explained_variance: np.ndarray, *, k: int | None, variance: float | None) -> int:
    """The fixed k, capped at the number of components; or the smallest k reaching ``variance``."""
    ratios = np.asarray(explained_variance, dtype=np.float64)
    if k is not None:
        return int(min(k, len(ratios)))
    if variance is None or not 0 < variance <= 1:
        raise ValueError("choose k: give k, or a variance share in (0, 1]")
    reached = np.nonzero(np.cumsum(ratios) >= variance - 1e-12)[0]
    return int(reached[0] + 1) if len(reached) else len(ratios)


def fit_moments(stats: Moments, *, k: int | None = None, variance: float | None = None) -> PcaFit:
    """Eigendecomposition of the covariance on the driver; signs fixed (largest loading > 0)."""
    spectrum = Spectrum.of_upper(stats.scatter() / max(1, stats.count - 1))
    ranked = min(stats.count, len(spectrum.values))  # n rows span at most n components
    return _fit(
        stats.mean(), spectrum.values[:ranked], lambda n: spectrum.top(n).T, ranked, k, variance
    )


def fit_rows(rows: np.ndarray, *, k: int | None = None, variance: float | None = None) -> PcaFit:
    """The same fit from the rows themselves, for fewer rows than dimensions (n < d).

    With ``X`` the centred n x d rows, ``X X^T v = l v`` gives ``X^T X (X^T v) = l (X^T v)``: the
    covariance's eigenvectors are ``X^T v / sqrt(l)``, from an n x n problem instead of d x d;
    only the k kept are computed and mapped back (all n of them cost 0.25 s of a 2.3 s fit at
    n = 2,340, d = 2,568 with numpy's eigh, by py-spy; the n x n problem is the rest).
    """
    rows = np.asarray(rows, np.float64)
    mean = rows.mean(axis=0)
    centred = rows - mean
    spectrum = Spectrum.of_upper(centred @ centred.T)
    values = np.clip(spectrum.values, 0.0, None)
    positive = int(np.sum(values > values[0] * 1e-12)) if len(values) and values[0] > 0 else 0

    def components(n: int) -> np.ndarray:
        return (centred.T @ spectrum.top(n) / np.sqrt(values[:n])).T

    ranked = min(len(rows), rows.shape[1])
    return _fit(mean, values[:ranked] / max(1, len(rows) - 1), components, positive, k, variance)


@dataclass(frozen=True)
class Spectrum:
    """A symmetric matrix reduced to tridiagonal form ``Q T Q^T`` (``dsytrd``), its eigenvalues in
    descending order; eigenvectors computed only when asked for, and only as many as asked."""

    reflectors: np.ndarray  # dsytrd's output: Q's Householder vectors below the subdiagonal
    tau: np.ndarray
    diagonal: np.ndarray
    off_diagonal: np.ndarray
    values: np.ndarray  # descending

    @classmethod
    def of_upper(cls, upper: np.ndarray) -> Spectrum:
        """The spectrum of the symmetric matrix whose upper triangle is ``upper`` (the lower
        one is not read); ``upper`` is overwritten."""
        from scipy.linalg import eigh_tridiagonal, lapack

        lower = upper.T  # the C-ordered upper triangle is a Fortran-ordered lower one, no copy
        (lwork, _) = lapack.dsytrd_lwork(len(lower), lower=1)
        reflectors, diagonal, off_diagonal, tau, info = lapack.dsytrd(
            lower, lower=1, lwork=int(lwork), overwrite_a=1
        )
        if info != 0:
            raise np.linalg.LinAlgError(f"dsytrd failed (info {info})")
        values = eigh_tridiagonal(diagonal, off_diagonal, eigvals_only=True, check_finite=False)
        return cls(reflectors, tau, diagonal, off_diagonal, values[::-1])

    def top(self, count: int) -> np.ndarray:
        """The eigenvectors of the ``count`` largest eigenvalues, as columns, in that order."""
        from scipy.linalg import eigh_tridiagonal, lapack

        size = len(self.diagonal)
        if count <= 0:
            return np.zeros((size, 0))
        _, vectors = eigh_tridiagonal(
            self.diagonal, self.off_diagonal, select="i",
            select_range=(size - count, size - 1), check_finite=False,
        )  # fmt: skip
        vectors = np.asfortranarray(vectors[:, ::-1])
        if size > 1:  # Q = diag(1, Q'), Q' the product of the reflectors below the diagonal
            mapped, _, info = lapack.dormqr(
                "L", "N", self.reflectors[1:, :-1], self.tau, vectors[1:], max(1, 64 * count)
            )
            if info != 0:
                raise np.linalg.LinAlgError(f"dormqr failed (info {info})")
            vectors[1:] = mapped
        return vectors


def _fit(
    mean: np.ndarray,
    values: np.ndarray,
    components_of: Callable[[int], np.ndarray],
    available: int,
    k: int | None,
    variance: float | None,
) -> PcaFit:
    """Ratios of every component and the first k components (rows, from ``components_of(k)``),
    each signed so that its largest loading is positive. Fewer components may be ``available``
    than ``values``: directions without variance have none, and k never reaches them."""
    values = np.clip(values, 0.0, None)
    total = values.sum()
    ratios = values / total if total > 0 else np.zeros_like(values)
    chosen = min(choose_k(ratios, k=k, variance=variance), available)
    components = components_of(chosen)
    signs = np.sign(components[np.arange(chosen), np.abs(components).argmax(axis=1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    return PcaFit(mean, components, ratios.tolist(), chosen)


def collect_rows(
    frame, *, dimension: int, parallelism: int = 2, column: str = "features"
) -> np.ndarray:
    """The rows with features, on the driver as an n x d float32 array (one blob per batch),
    read by a task per core (a Python task's set-up costs more than these few rows)."""
    from pyspark.sql.types import BinaryType, StructField, StructType

    def as_blobs(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            rows = feature_matrix(batch.column(column), dimension)
            if len(rows):
                blob = pa.array([np.ascontiguousarray(rows, np.float32).tobytes()])
                yield pa.RecordBatch.from_arrays([blob], names=["rows"])

    schema = StructType([StructField("rows", BinaryType())])
    per_core = frame.select(column).coalesce(max(1, parallelism))
    blobs = sparkenv.collect_arrow(per_core.mapInArrow(as_blobs, schema)).to_pylist()
    parts = [np.frombuffer(row["rows"], np.float32) for row in blobs]
    return np.concatenate(parts).reshape(-1, dimension) if parts else np.zeros((0, dimension))


FitRoute = Literal["gram", "rows", "partials"]


def fit_route(rows_at_most: int | None, dimension: int, parallelism: int) -> FitRoute:
    """How ``fit_features`` fits at most ``rows_at_most`` rows: from their Gram matrix (fewer
    rows than dimensions), from the rows collected and summed on the driver (the rows, float32,
    are fewer bytes than the partial sums that reach it, a d x d float64 half-matrix per core up
    to DRIVER_ADDS: at most 4 d rows, 105 MB at d = 2,568), or from partial sums."""
    if rows_at_most is None:
        return "partials"
    if rows_at_most < dimension:
        return "gram"
    partials_reaching_the_driver = min(max(1, parallelism), DRIVER_ADDS)
    return "rows" if rows_at_most <= partials_reaching_the_driver * dimension else "partials"


def fit_features(
    frame,
    *,
    dimension: int,
    parallelism: int = 2,
    rows_at_most: int | None = None,
    k: int | None = None,
    variance: float | None = None,
) -> PcaFit | None:
    """Fit the centred PCA on ``frame.features`` (rows with null features left out); None if no
    row has any. ``rows_at_most`` (e.g. the cache's count) picks the ``fit_route``."""
    route = fit_route(rows_at_most, dimension, parallelism)
    if route == "partials":
        stats = moments(frame, dimension=dimension, parallelism=parallelism)
        return fit_moments(stats, k=k, variance=variance) if stats.count else None
    rows = collect_rows(frame, dimension=dimension, parallelism=parallelism)
    if not len(rows):
        return None
    if len(rows) < dimension:  # the route's bound counts failed rows too: decide on what came
        return fit_rows(rows, k=k, variance=variance)
    blocks = (
        rows[start : start + ROWS_PER_PRODUCT] for start in range(0, len(rows), ROWS_PER_PRODUCT)
    )
    return fit_moments(blocks_moments(blocks, dimension), k=k, variance=variance)


def project(features: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Centred projection, ``(x - mean) @ components.T``: what the Spark job computes."""
    return (np.asarray(features, np.float64) - mean) @ components.T


def projector(shipped) -> Callable[[pa.RecordBatch], pa.RecordBatch]:
    """A batch's columns and its ``pca`` column (null for failed images), in a task.

    ``shipped`` holds ``(mean, components)`` as sent to the executors (``sparkenv.ship``); the
    input columns go back with the Arrow types the JVM sent them in.
    """

    def project_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
        mean, components = shipped.value
        return _project_batch(batch, mean, components)

    return project_batch


def _project_batch(batch: pa.RecordBatch, mean, components) -> pa.RecordBatch:
    features = batch.column("features")
    valid = features.is_valid().to_numpy(zero_copy_only=False)
    k = len(components)
    projected = project(feature_matrix(features, len(mean)), mean, components).astype(np.float32)
    offsets = np.zeros(len(batch) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum(valid * k)
    pca = pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(projected.ravel()), mask=pa.array(~valid)
    )
    schema = batch.schema.append(pa.field(PCA_COL, pa.list_(pa.float32())))
    return pa.RecordBatch.from_arrays([*batch.columns, pca], schema=schema)


def export_parameters(fit: PcaFit) -> dict[str, np.ndarray]:
    """Mean and the k components as arrays, for projection without Spark (``pca.npz``)."""
    return {"mean": fit.mean, "components": fit.components}


def save_spark_model(spark, storage, folder: str, fit: PcaFit) -> None:
    """``fit`` in Spark ML's format: a PipelineModel (centring StandardScaler, PCA with k).

    Written directly, as ``MLWriter`` lays it out (metadata JSON, one-row Parquet per stage),
    because Spark ML has no public constructor of a ``PCAModel`` from arrays; the Parquet comes
    from pyarrow, with Spark's schema (vector and matrix types) in its footer, so that saving
    costs no Spark job.
    """
    uid = f"{int(time.time() * 1000):x}"
    scaler, pca = f"StandardScaler_{uid}", f"PCA_{uid}"
    stamp = int(time.time() * 1000)
    d, k = fit.components.shape[1], fit.k

    def metadata(path: str, cls: str, stage_uid: str, params: dict) -> None:
        document = {
            "class": cls, "timestamp": stamp, "sparkVersion": spark.version, "uid": stage_uid,
            "paramMap": params, "defaultParamMap": {},
        }  # fmt: skip
        storage.write_bytes(f"{path}/metadata/part-00000", (json.dumps(document) + "\n").encode())

    metadata(folder, "org.apache.spark.ml.PipelineModel", f"PipelineModel_{uid}",
             {"stageUids": [scaler, pca]})  # fmt: skip
    scaler_dir, pca_dir = f"{folder}/stages/0_{scaler}", f"{folder}/stages/1_{pca}"
    metadata(
        scaler_dir,
        "org.apache.spark.ml.feature.StandardScalerModel",
        scaler,
        {"inputCol": VECTOR_COL, "outputCol": "centred", "withMean": True, "withStd": False},
    )
    metadata(pca_dir, "org.apache.spark.ml.feature.PCAModel", pca,
             {"inputCol": "centred", "outputCol": "pca_vector", "k": k})  # fmt: skip
    scaler_row = {"std": _dense_vector(np.ones(d)), "mean": _dense_vector(fit.mean)}
    storage.write_bytes(f"{scaler_dir}/data/part-00000.parquet", _spark_parquet(scaler_row))
    # column-major d x k: one principal component a column
    pca_row = {
        "pc": _dense_matrix(d, k, fit.components.ravel()),
        "explainedVariance": _dense_vector(fit.explained_variance[:k]),
    }
    storage.write_bytes(f"{pca_dir}/data/part-00000.parquet", _spark_parquet(pca_row))


def _dense_vector(values) -> dict:
    """A DenseVector as Spark ML's VectorUDT stores it (type 1: dense)."""
    return {"type": 1, "size": None, "indices": None, "values": np.asarray(values, float).tolist()}


def _dense_matrix(rows: int, columns: int, column_major) -> dict:
    """A DenseMatrix as Spark ML's MatrixUDT stores it (type 1: dense, values column-major)."""
    return {
        "type": 1, "numRows": rows, "numCols": columns, "colPtrs": None, "rowIndices": None,
        "values": np.asarray(column_major, float).tolist(), "isTransposed": False,
    }  # fmt: skip


def _spark_parquet(row: dict) -> bytes:
    """One row of vector/matrix columns as Parquet bytes that Spark reads back as those types:
    pyarrow writes the UDTs' storage structs, the footer carries Spark's own schema."""
    import pyarrow.parquet as pq

    spark_schema = {
        "type": "struct",
        "fields": [
            {"name": name, "type": spark_udt(value), "nullable": True, "metadata": {}}
            for name, value in row.items()
        ],
    }
    arrow_fields = [pa.field(name, _udt_storage(value)) for name, value in row.items()]
    schema = pa.schema(
        arrow_fields,
        metadata={SPARK_SCHEMA_KEY: json.dumps(spark_schema)},
    )
    table = pa.Table.from_pylist([row], schema=schema)
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    return buffer.getvalue().to_pybytes()


def spark_udt(value: dict) -> dict:
    """The schema JSON of Spark ML's ``MatrixUDT`` or ``VectorUDT`` (as ``value`` is one), as
    ``pyspark.ml.linalg``'s give it: written here, because importing ``pyspark.ml`` for it cost
    every run 0.6 s (tests/test_reduce.py compares the two)."""
    name, sql_type = _udt_sql_type(value)
    return {
        "type": "udt",
        "class": f"org.apache.spark.ml.linalg.{name}",
        "pyClass": f"pyspark.ml.linalg.{name}",
        "sqlType": sql_type.jsonValue(),
    }


def _udt_storage(value: dict) -> pa.DataType:
    """The Arrow struct of the UDT's ``sqlType``, which pyarrow writes and Spark reads."""
    from pyspark.sql.pandas.types import to_arrow_type

    _, sql_type = _udt_sql_type(value)
    return pa.struct(
        [pa.field(f.name, to_arrow_type(f.dataType), f.nullable) for f in sql_type.fields]
    )


def _udt_sql_type(value: dict):
    """``(class name, sqlType)`` of the UDT a vector or matrix ``value`` is stored as."""
    from pyspark.sql import types as T

    byte, count = T.ByteType(), T.IntegerType()
    ints, doubles = T.ArrayType(T.IntegerType(), False), T.ArrayType(T.DoubleType(), False)
    if "numRows" in value:
        name, fields = "MatrixUDT", [
            ("type", byte, False), ("numRows", count, False), ("numCols", count, False),
            ("colPtrs", ints, True), ("rowIndices", ints, True), ("values", doubles, True),
            ("isTransposed", T.BooleanType(), False),
        ]  # fmt: skip
    else:
        name, fields = "VectorUDT", [
            ("type", byte, False), ("size", count, True),
            ("indices", ints, True), ("values", doubles, True),
        ]  # fmt: skip
    return name, T.StructType([T.StructField(*field) for field in fields])

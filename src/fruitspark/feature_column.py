"""Features as float32 bytes between the stages of a run; float arrays only in the written output.

A run caches its featurised rows once and reads them twice (PCA sums, then the projection and the
write). Held as ``array<float>``, every one of a row's 2,568 floats is converted one by one by
the JVM: from Arrow into Spark's rows, into the cache's columns, and back into Arrow for each
later pass. Held as one ``binary`` value of ``4 d`` bytes (float32, little-endian, as numpy
lays them out), each row is a single copy each way, and Python reads a whole batch as one
``n x d`` array without a copy. Only the written Parquet has ``array<float>``, for the readers
(Spark ML, pandas, evaluate); :func:`as_float_lists` makes it in the task that writes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

FLOAT_BYTES = 4


def to_bytes(vectors: list[np.ndarray | None]) -> pa.Array:
    """One binary value per vector (null for None), the float32 bytes of each."""
    return pa.array(
        [
            None if vector is None else np.asarray(vector, np.float32).tobytes()
            for vector in vectors
        ],
        pa.binary(),
    )


def feature_matrix(column: pa.Array, dimension: int) -> np.ndarray:
    """The non-null rows of a features column (float32 bytes, or float lists) as ``n x d``."""
    present = column.drop_null()
    if pa.types.is_binary(present.type):
        offsets = np.frombuffer(present.buffers()[1], np.int32)[
            present.offset : present.offset + len(present) + 1
        ]
        if np.any(np.diff(offsets) != dimension * FLOAT_BYTES):
            raise ValueError(f"features of another size than {dimension} floats")
        if not len(present):
            return np.zeros((0, dimension), np.float32)
        data = np.frombuffer(present.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
        return data.view(np.float32).reshape(len(present), dimension)
    values = present.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(present), dimension)


def as_float_lists(column: pa.Array, dimension: int) -> pa.Array:
    """A features column of float32 bytes as ``list<float>`` (nulls kept), for the output."""
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    values = feature_matrix(column, dimension).ravel()
    offsets = np.zeros(len(column) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum(valid * dimension)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values), mask=pa.array(~valid))


def lists_to_bytes(column: pa.Array, dimension: int) -> pa.Array:
    """A features column of ``list<float>`` (a previous output's, on ``--resume``) as bytes."""
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    matrix = iter(feature_matrix(column, dimension))
    return to_bytes([next(matrix) if present else None for present in valid])

"""The cache's float32 bytes: to a matrix without loss, back to float lists with nulls kept."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from fruitspark.feature_column import as_float_lists, feature_matrix, lists_to_bytes, to_bytes


def test_bytes_round_trip_to_matrix_and_float_lists_keeping_nulls():
    rng = np.random.default_rng(1)
    vectors = [rng.normal(size=5).astype(np.float32) for _ in range(4)]
    column = to_bytes([vectors[0], None, vectors[1], vectors[2], None, vectors[3]])
    np.testing.assert_array_equal(feature_matrix(column, 5), np.stack(vectors))
    np.testing.assert_array_equal(feature_matrix(column.slice(2, 3), 5), np.stack(vectors[1:3]))
    lists = as_float_lists(column, 5)
    assert lists.type == pa.list_(pa.float32())
    assert lists.null_count == 2 and lists[1].as_py() is None
    np.testing.assert_array_equal(lists[5].as_py(), vectors[3])
    assert lists_to_bytes(lists, 5).equals(column)
    np.testing.assert_array_equal(feature_matrix(lists, 5), np.stack(vectors))


def test_features_of_another_width_are_refused():
    column = to_bytes([np.zeros(5), np.zeros(4)])
    with pytest.raises(ValueError, match="another size than 5"):
        feature_matrix(column, 5)
    assert feature_matrix(to_bytes([None]), 5).shape == (0, 5)

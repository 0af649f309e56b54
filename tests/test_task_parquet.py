"""Parquet written by the Python tasks: the same rows and types as Spark's writer, and only the
files of successful attempts kept (a killed attempt's half file and a stray file removed)."""

from __future__ import annotations

import datetime as dt
import os

import cloudpickle
import numpy as np
import pyarrow.parquet as pq
import pytest

from fruitspark import sparkenv
from fruitspark.pipeline import write_features_in_tasks, write_features_with_spark
from fruitspark.task_parquet import SPARK_SCHEMA_KEY, write_in_tasks

DIMENSION = 12


@pytest.fixture(scope="module")
def rows(spark):
    """Rows as a run caches them (features as float32 bytes), three of them failed, over four
    partitions."""
    rng = np.random.default_rng(5)
    stamp = dt.datetime(2026, 12, 1, 12, 30, tzinfo=dt.timezone.utc)
    data = []
    for i in range(200):
        failed = i % 97 == 3
        features = None if failed else rng.normal(size=DIMENSION).astype(np.float32).tobytes()
        error = "corrupt or truncated image: test" if failed else None
        data.append((f"/in/Apple/{i}.jpg", "Apple", "Training", 100 + i, stamp, 100, 100,
                     features, error))  # fmt: skip
    schema = (
        "path string, label string, split string, size long, modified timestamp, width int, "
        "height int, features binary, error string"
    )
    return spark.createDataFrame(data, schema).repartition(4, "path").cache()


@pytest.fixture(scope="module")
def shipped(spark):
    rng = np.random.default_rng(6)
    return sparkenv.ship(spark, (rng.normal(size=DIMENSION), rng.normal(size=(3, DIMENSION))))


def _sorted(frame):
    return [row.asDict() for row in frame.orderBy("path").collect()]


def test_tasks_write_what_sparks_writer_writes(spark, rows, shipped, tmp_path):
    ours = write_features_in_tasks(rows, shipped, str(tmp_path / "tasks"), DIMENSION)
    theirs = write_features_with_spark(rows, shipped, f"file:{tmp_path / 'spark'}", DIMENSION)
    assert ours == theirs
    by_tasks = spark.read.parquet(f"file:{tmp_path / 'tasks'}")  # schema from the footers
    by_spark = spark.read.parquet(f"file:{tmp_path / 'spark'}")
    assert by_tasks.schema == by_spark.schema
    expected = _sorted(by_spark)
    got = _sorted(by_tasks)
    assert len(got) == 200 and sum(row["pca"] is None for row in got) == 3
    for mine, reference in zip(got, expected, strict=True):
        assert {k: v for k, v in mine.items() if k != "pca"} == {
            k: v for k, v in reference.items() if k != "pca"
        }
        if reference["pca"] is not None:
            np.testing.assert_allclose(mine["pca"], reference["pca"], rtol=1e-6)
    cached = {row["path"]: row["features"] for row in rows.collect()}
    for row in got:  # the cache's bytes, written as the same floats
        source = cached[row["path"]]
        assert (row["features"] is None) == (source is None)
        if source is not None:
            assert row["features"] == np.frombuffer(source, np.float32).tolist()
    files = sorted(os.listdir(tmp_path / "tasks"))
    assert files and all(name.startswith("part-") for name in files)
    footer = pq.read_metadata(tmp_path / "tasks" / files[0]).metadata
    assert SPARK_SCHEMA_KEY.encode() in footer


def test_a_killed_attempt_and_a_stray_file_leave_nothing_behind(spark, rows, tmp_path):
    import faults

    folder = tmp_path / "out"
    folder.mkdir()
    stray = folder / "part-00009-0-deadbeef.snappy.parquet"  # as a lost task's complete file
    stray.write_bytes(b"not a result of this job")
    schema = rows.schema
    cloudpickle.register_pickle_by_value(faults)
    small_batches = {"spark.sql.execution.arrow.maxRecordsPerBatch": "10"}
    try:  # the attempt dies with its file open: two batches of ten rows in, before its footer
        transform = faults.kill_first_attempt_at_batch(lambda batch: batch, partition=1, batch=2)
        with sparkenv.temporary_conf(spark, small_batches):
            result = write_in_tasks(rows, str(folder), schema, transform)
    finally:
        cloudpickle.unregister_pickle_by_value(faults)
    assert sorted(os.listdir(folder)) == result.files
    assert result.rows == 200
    assert any(name.startswith("part-00001-1-") for name in result.files)  # the retry's file
    back = spark.read.schema(schema).parquet(f"file:{folder}")
    assert back.count() == 200 and back.select("path").distinct().count() == 200

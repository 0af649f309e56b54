"""sparkenv.local_frame: rows made on the driver, held by the JVM."""

from __future__ import annotations

from datetime import datetime, timezone

from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from fruitspark import sparkenv

SCHEMA = StructType(
    [
        StructField("path", StringType()),
        StructField("size", LongType()),
        StructField("modified", TimestampType()),
    ]
)


def test_local_frame_keeps_values_types_and_nulls(spark):
    moment = datetime(2026, 12, 2, 9, 30, 15, 123000, timezone.utc)
    columns = {"path": ["file:/a b.jpg", None], "size": [3, None], "modified": [moment, None]}
    frame = sparkenv.local_frame(spark, columns, SCHEMA)
    assert frame.schema == SCHEMA
    rows = frame.select("path", "size", "modified").collect()
    assert [row["path"] for row in rows] == ["file:/a b.jpg", None]
    assert [row["size"] for row in rows] == [3, None]
    # the session's time zone is UTC (spark_session): the instant comes back as written
    assert rows[0]["modified"].replace(tzinfo=timezone.utc) == moment
    assert rows[1]["modified"] is None
    empty = sparkenv.local_frame(spark, {"path": [], "size": [], "modified": []}, SCHEMA)
    assert empty.count() == 0 and empty.schema == SCHEMA


def test_local_frame_needs_no_python_worker_to_be_read(spark):
    """Python rows (createDataFrame of a list) come back through a PythonRDD that unpickles them
    in Python workers at every read; the Arrow-backed frame's lineage has none."""
    columns = {"path": ["p"], "size": [1], "modified": [None]}
    ours = sparkenv.local_frame(spark, columns, SCHEMA)._jdf.rdd().toDebugString()
    pickled = spark.createDataFrame([("p", 1, None)], SCHEMA)._jdf.rdd().toDebugString()
    assert "PythonRDD" in pickled  # the check can tell the two apart
    assert "PythonRDD" not in ours

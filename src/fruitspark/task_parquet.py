"""Parquet written by the Python tasks that made the rows, on a local output.

The write stage's rows come out of Python (the PCA projection is added there). Handing them back
to the JVM to be written converts every float of every feature array into Spark's rows, then into
Parquet, element by element: on 9,480 x 2,568 features that took 6.1-7.1 s, against 1.9-2.2 s for
pyarrow writing the same Arrow batches where they already are (`benchmarks/sections/e2e.py`
measures the stage). So on a local output (``file:``: a laptop, a notebook, a one-machine
cluster) each task writes its own file; anywhere else (S3 through EMRFS, HDFS) Spark's writer
keeps its committer, its credentials and its encryption settings.

The commit protocol gives Spark's guarantees. A task attempt writes ``_attempt-…`` (hidden from
readers: Spark skips names that start with ``_`` or ``.``), renames it to its ``part-…`` name
once complete, and returns that name with its row count. The driver then keeps exactly the files
that the job's successful attempts returned and deletes every other one: a failed attempt's half
file, or a complete one whose result was lost with its worker. Every file carries Spark's schema
in its footer, as Spark's own writer does, so Spark reads them back with the same types.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from fruitspark import sparkenv

ROW_GROUP_BYTES = 32 << 20  # batches gathered into row groups of about this size
SPARK_SCHEMA_KEY = "org.apache.spark.sql.parquet.row.metadata"  # what Spark's writer puts there

REPORT = pa.schema([pa.field("file", pa.string()), pa.field("rows", pa.int64())])  # per task

BatchTransform = Callable[[pa.RecordBatch], pa.RecordBatch]


@dataclass(frozen=True)
class TaskFiles:
    """What the tasks wrote: the kept file names and the rows they hold."""

    files: list[str]
    rows: int


def write_in_tasks(
    frame, folder: str, spark_schema, transform: BatchTransform, *, plain: tuple[str, ...] = ()
) -> TaskFiles:
    """Each task of ``frame`` writes ``transform`` of its Arrow batches (whose schema is
    ``spark_schema``) as one Parquet file in the local ``folder``; snappy, as Spark's default;
    columns in ``plain`` without dictionary encoding."""
    from pyspark.sql.pandas.types import from_arrow_schema

    os.makedirs(folder, exist_ok=True)
    metadata = {SPARK_SCHEMA_KEY: spark_schema.json()}
    dictionary = [field.name for field in spark_schema.fields if field.name not in plain]

    def write_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        written = _write_file(folder, (transform(batch) for batch in batches), metadata, dictionary)
        if written is not None:
            yield pa.RecordBatch.from_pylist([written], schema=REPORT)

    job = frame.mapInArrow(write_partition, from_arrow_schema(REPORT))
    results = sparkenv.collect_arrow(job).to_pylist()
    kept = sorted(row["file"] for row in results)
    for name in set(os.listdir(folder)) - set(kept):
        os.remove(os.path.join(folder, name))
    return TaskFiles(kept, sum(row["rows"] for row in results))


def _write_file(folder: str, batches, metadata: dict, dictionary: list[str]) -> dict | None:
    """One attempt's file, renamed into view when complete: its REPORT row, or None when the
    task had no rows. The folder is made here too: an executor of a cluster may have none."""
    import pyarrow.parquet as pq
    from pyspark import TaskContext

    task = TaskContext.get()
    stem = f"part-{task.partitionId():05d}-{task.attemptNumber()}-{uuid.uuid4().hex[:8]}"
    hidden = os.path.join(folder, f"_attempt-{stem}")
    writer, pending, pending_bytes, rows = None, [], 0, 0
    try:
        for batch in batches:
            if writer is None:
                os.makedirs(folder, exist_ok=True)
                schema = batch.schema.with_metadata(metadata)
                writer = pq.ParquetWriter(hidden, schema, use_dictionary=dictionary)
            pending.append(batch)
            pending_bytes += batch.nbytes
            rows += len(batch)
            if pending_bytes >= ROW_GROUP_BYTES:
                writer.write_table(pa.Table.from_batches(pending, schema=schema))
                pending, pending_bytes = [], 0
        if writer is None:
            return None
        if pending:
            writer.write_table(pa.Table.from_batches(pending, schema=schema))
    finally:
        if writer is not None:
            writer.close()
    name = f"{stem}.snappy.parquet"
    os.replace(hidden, os.path.join(folder, name))
    return {"file": name, "rows": rows}

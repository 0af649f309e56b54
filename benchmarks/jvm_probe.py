"""Where the JVM's CPU goes in the featurize stage, by experiment, in one fresh JVM per call.

``probe`` builds the featurize stage's plan (binaryFile scan, ``mapInArrow``, persist + count)
with one part swapped at a time: the Python function (the real one, or one returning constant
features of the same width without decoding or a model, optionally sleeping as long as the model
would), what consumes the rows (the cache at a storage level, or Spark's ``noop`` sink), the
features' Arrow type. It runs the action ``repeats`` times in the same JVM, so the first run's
extra CPU (JIT compilation, class loading) shows apart from the steady state; and it samples the
JVM's threads from ``/proc`` so the CPU splits by thread (task threads, JIT compilers, GC).

Run it through ``common.run_python`` (a fresh process, so a fresh JVM); the result is JSON.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
THREAD_GROUPS = (  # JVM thread names (comm, 15 characters) to the part of the work they do
    ("JIT compiler", re.compile(r"^C[12] Compiler")),
    ("GC", re.compile(r"^(GC Thread|G1 |VM Thread|Gang worker)")),
    ("task threads", re.compile(r"^Executor task")),
    ("driver calls (py4j: listing, planning, codegen)", re.compile(r"^Thread-\d")),
)
WIDTH = 2568  # Lite0's 1,280 + 1,000 logits + the colour block: FeaturizeOptions.feature_dim


def _stat(path: str) -> list[str] | None:
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    return [text[text.index("(") + 1 : text.rindex(")")], *text[text.rindex(")") + 2 :].split()]


def _ticks(fields: list[str], children: bool = False) -> int:
    own = int(fields[12]) + int(fields[13])  # utime, stime (fields 14 and 15 of stat)
    return own + (int(fields[14]) + int(fields[15]) if children else 0)


class ThreadSampler:
    """CPU seconds of the JVM by thread group and of its Python descendants, sampled often so
    that threads which end between samples are mostly still counted."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.pid, self.every = pid, every
        self.threads: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def sample(self) -> None:
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            fields = _stat(f"{task}/stat")
            if fields:
                self.threads[int(task.name)] = (fields[0], _ticks(fields))

    def snapshot(self) -> dict[str, float]:
        """CPU seconds so far: JVM total, by thread group (``other`` for the rest, ``ended``
        for threads gone before a sample saw them), and the Python processes under it."""
        self.sample()
        total = _ticks(_stat(f"/proc/{self.pid}/stat") or [])
        groups: dict[str, float] = {}
        for name, ticks in self.threads.values():
            group = next((g for g, pattern in THREAD_GROUPS if pattern.search(name)), "other")
            groups[group] = groups.get(group, 0.0) + ticks / TICK
        groups["ended"] = max(0.0, total / TICK - sum(groups.values()))
        return {"jvm": total / TICK, **groups, "python": _python_cpu(self.pid)}

    def __enter__(self) -> ThreadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _python_cpu(root: int) -> float:
    """CPU seconds of every process under ``root`` (not itself), reaped children included."""
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(f"{entry}/stat")):
            stats[int(entry.name)], parents[int(entry.name)] = fields, int(fields[2])
    seen, todo, ticks = set(), [root], 0
    while todo:
        pid = todo.pop()
        for child, parent in parents.items():
            if parent == pid and child not in seen:
                seen.add(child)
                todo.append(child)
                ticks += _ticks(stats[child], children=True)
    return ticks / TICK


def _constant(sleep_ms: float, lists: bool, width: bool = True):
    """A ``mapInArrow`` function: the real output's columns, constant features, no model; with
    ``lists``, the features as float lists (the format before ``feature_column``'s bytes)."""
    import numpy as np
    import pyarrow as pa

    from fruitspark.featurize import RESULT_FIELDS
    from fruitspark.sources import read_bytes

    fields = list(RESULT_FIELDS)
    if lists:
        fields[2] = pa.field("features", pa.list_(pa.float32()))

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            rows = batch.num_rows
            if "content" in batch.schema.names:
                batch.column("content").to_pylist()
            else:  # the worker reads the files itself
                [read_bytes(path) for path in batch.column("path").to_pylist()]
            if sleep_ms:
                time.sleep(sleep_ms * rows / 1000)
            flat = pa.array(np.zeros(rows * WIDTH, np.float32))
            offsets = pa.array(np.arange(0, (rows + 1) * WIDTH, WIDTH, dtype=np.int32))
            features = (
                pa.array([b"\0" * 4 * WIDTH] * rows, pa.binary())
                if not lists
                else pa.ListArray.from_arrays(offsets, flat)
            )
            if not width:
                features = pa.nulls(rows, fields[2].type)
            ints = pa.array(np.full(rows, 100, np.int32))
            columns = [ints, ints, features, pa.nulls(rows, pa.string())]
            kept = [batch.column(name) for name in ("path", "size", "modified", "label", "split")]
            schema = pa.schema([*(batch.schema.field(i) for i in range(5)), *fields])
            yield pa.RecordBatch.from_arrays([*kept, *columns], schema=schema)

    return run, fields


def _plan(spark, root: str, variant: str, rows: int):
    """The featurize stage's frame for ``variant``, with the pipeline's confs set."""
    from fruitspark.featurize import FeaturizeOptions, _output_schema, featurize
    from fruitspark.model import resolve_model
    from fruitspark.pipeline import ARROW_BATCH, FILE_CONFS
    from fruitspark.sources import images_per_partition, partition_bytes, read_folder

    frame = read_folder(spark, root)
    files = [p for p in Path(root).rglob("*.jpg")]
    total = sum(p.stat().st_size for p in files)
    _, open_cost = partition_bytes(len(files), total, 2)
    per_task = images_per_partition(len(files), 2)
    spark.conf.set(ARROW_BATCH, str(rows))
    spark.conf.set(FILE_CONFS[0], str(per_task * 2 * open_cost))
    spark.conf.set(FILE_CONFS[1], str(open_cost))
    if variant.startswith("paths"):  # the scan without its content column: the workers read
        frame, variant = frame.drop("content"), variant.removeprefix("paths-")
    if variant == "real":
        return featurize(frame, resolve_model(), FeaturizeOptions(root=root))[0]
    sleep = float(variant.split(":")[1]) if ":" in variant else 0.0
    function, _ = _constant(
        sleep, lists=variant.startswith("lists"), width=not variant.startswith("null")
    )
    kept = [f for f in frame.schema.fields if f.name != "content"]
    schema = _output_schema(kept)
    if variant.startswith("lists"):
        from pyspark.sql.types import ArrayType, FloatType, StructField, StructType

        floats = StructField("features", ArrayType(FloatType()))
        schema = StructType([f if f.name != "features" else floats for f in schema])
    return frame.mapInArrow(function, schema)


def _consume(frame, sink: str) -> int:
    """Run the action: fill a cache at a storage level then count, or write to ``noop``."""
    from pyspark import StorageLevel

    if sink == "noop":
        frame.write.format("noop").mode("overwrite").save()
        return -1
    level = {
        "cache_ser": StorageLevel.MEMORY_AND_DISK,  # PySpark's: deserialized=False
        "cache_deser": StorageLevel(True, True, False, True),  # Scala's MEMORY_AND_DISK
    }[sink]
    rows = frame.persist(level)
    count = rows.count()
    rows.unpersist(blocking=True)
    return count


def probe(
    root: str, variant: str, sink: str, rows: str = "64", repeats: str = "2", java: str = ""
) -> dict:
    """CPU seconds per image of the JVM (by thread group) and of Python, per repeat; ``java``:
    extra JVM options for the driver (the executor, in local mode)."""
    from fruitspark.session import LOG_CONFIG, spark_session

    quiet = f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}"
    spark = spark_session("local[2]", conf={"spark.driver.extraJavaOptions": f"{quiet} {java}"})
    pid = spark.sparkContext._gateway.proc.pid
    images = sum(1 for _ in Path(root).rglob("*.jpg"))
    runs = []
    with ThreadSampler(pid) as sampler:
        idle_before = sampler.snapshot()
        time.sleep(5)
        idle = sampler.snapshot()
        idle_rate = (idle["jvm"] - idle_before["jvm"]) / 5
        for _ in range(int(repeats)):
            plan = _plan(spark, root, variant, int(rows))  # lists the folder: not measured
            before, started = sampler.snapshot(), time.perf_counter()
            _consume(plan, sink)
            after, wall = sampler.snapshot(), time.perf_counter() - started
            ms = {k: round(1000 * (after[k] - before.get(k, 0.0)) / images, 3) for k in after}
            runs.append({"wall_s": round(wall, 2), "ms_per_image": ms})
    names: dict[str, float] = {}
    for name, ticks in sampler.threads.values():
        names[name] = round(names.get(name, 0.0) + ticks / TICK, 2)
    spark.stop()
    return {
        "threads_cpu_s": dict(sorted(names.items(), key=lambda item: -item[1])[:25]),
        "variant": variant,
        "java": java,
        "sink": sink,
        "rows": int(rows),
        "images": images,
        "idle_jvm_cores": round(idle_rate, 4),
        "runs": runs,
    }

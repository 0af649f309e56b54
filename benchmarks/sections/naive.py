"""Naive baseline: the textbook pandas UDF, side by side with ``fruitspark run``.

The pattern of Databricks' *featurization for transfer learning* notebook: ``binaryFile`` with
default Spark settings, an Iterator ``@pandas_udf`` loading the broadcast model once per
partition with ONNX Runtime's default session options (a thread per core in every session),
default Arrow batches, the same decode and preprocessing (no colour histogram), batches of 32 as
keras' ``predict``, written to Parquet. Both jobs run in fresh JVMs on the same images.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import Context, cpu_ms_per_image, log, mb, ratio, run_python, table
from benchmarks.sections.e2e import measured_run

TITLE = "Naive baseline: the textbook pandas UDF"
SLOW = True


def child_naive(input_dir: str, output: str, master: str) -> dict:
    """Runs in a fresh process: the naive featurisation; returns its counts and timing."""
    import numpy as np
    import onnxruntime as ort
    import pandas as pd
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import col, pandas_udf

    from fruitspark.decode import decode_image
    from fruitspark.model import embed, resolve_model
    from fruitspark.preprocess import resize_square, to_tensor

    spec = resolve_model()
    spark = SparkSession.builder.master(master).appName("naive-pandas-udf").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    model = spark.sparkContext.broadcast(Path(spec.path).read_bytes())
    loads = spark.sparkContext.accumulator(0)

    def preprocess(content: bytes) -> np.ndarray:
        image = decode_image(content, min_side=spec.input_size)
        return to_tensor(resize_square(image, spec.input_size), spec.normalisation)

    @pandas_udf("array<float>")
    def featurize(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        session = ort.InferenceSession(model.value, providers=["CPUExecutionProvider"])
        loads.add(1)
        for contents in batches:
            tensors = np.stack(contents.map(preprocess))
            out = [embed(session, spec, tensors[i : i + 32]) for i in range(0, len(tensors), 32)]
            yield pd.Series(list(np.concatenate(out)))

    images = spark.read.format("binaryFile").option("pathGlobFilter", "*.jpg")
    images = images.option("recursiveFileLookup", "true").load(input_dir)
    partitions, count = images.rdd.getNumPartitions(), images.count()
    started = time.perf_counter()
    images.select(col("path"), featurize("content").alias("features")).write.mode(
        "overwrite"
    ).parquet(output)
    seconds = time.perf_counter() - started
    written = spark.read.parquet(output).count()
    spark.stop()
    shutil.rmtree(output, ignore_errors=True)
    return {"images": count, "written": written, "partitions": partitions,
            "model_loads": loads.value, "featurize_s": round(seconds, 2),
            "featurize_images_per_s": round(count / seconds, 2)}  # fmt: skip


def measure(ctx: Context) -> dict:
    tree = ctx.input_tree("naive")
    arguments = [str(tree), str(ctx.work / "out" / "naive"), ctx.master]
    naive = run_python(ctx, "benchmarks.sections.naive:child_naive", arguments, "naive")
    naive["cpu_ms_per_image_featurizing"] = cpu_ms_per_image(naive, window=True)
    naive["peak_worker_rss_mb"] = max(naive["processes"]["worker_rss_mb"] or [0.0])
    ours = measured_run(ctx, tree, "naive-fruitspark")
    log(f"naive {naive['featurize_images_per_s']} vs fruitspark {ours['featurize_images_per_s']}")
    return {
        "python": sys.version.split()[0],
        "naive": naive,
        "fruitspark": ours,
        "speed_ratio": ratio(ours["featurize_images_per_s"], naive["featurize_images_per_s"]),
        "cpu_ratio": ratio(
            ours["cpu_ms_per_image_featurizing"]["all"],
            naive["cpu_ms_per_image_featurizing"]["all"],
        ),
    }


def render(result: dict) -> str:
    naive, ours = result["naive"], result["fruitspark"]
    cpu = "cpu_ms_per_image_featurizing"
    getters = [
        ("images", lambda run: f"{run['images']:,}"),
        (
            "partitions",
            lambda run: run.get("partitions") or run["settings"]["featurize_partitions"],
        ),
        ("model loads", lambda run: run.get("model_loads") or run["settings"]["model_loads"]),
        ("featurize images/s", lambda run: f"{run['featurize_images_per_s']:.1f}"),
        ("CPU ms/image while featurizing, workers", lambda run: run[cpu].get("python worker", 0)),
        ("CPU ms/image while featurizing, JVM", lambda run: run[cpu].get("driver JVM", 0)),
        ("CPU ms/image while featurizing, all", lambda run: run[cpu]["all"]),
        ("wall s", lambda run: run["wall_s"]),
        ("peak RSS of one Python worker", lambda run: mb(run["peak_worker_rss_mb"])),
        ("others' cores during the job", lambda run: run["processes"]["others_cores"]),
    ]
    rows = [[label, get(naive), get(ours)] for label, get in getters]
    return "\n".join([
        table(["", "naive UDF", "fruitspark run"], rows),
        "",
        f"fruitspark featurises at **{result['speed_ratio']:.2f} x** the naive job's images/s "
        f"for **{result['cpu_ratio']:.2f} x** its CPU per image, while also computing the colour "
        "histogram, PCA, accounting and report. The naive job's default 4 MB open cost per file "
        "packs many small images per partition, so the model is loaded once per partition, and "
        "sessions with a thread per core each oversubscribe the cores.",
    ])  # fmt: skip

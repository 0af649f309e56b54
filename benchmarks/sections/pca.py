"""PCA fit (issue 9): 100,000 x 1,568 features on 2 cores, whether or not the machine has a BLAS.

The features are generated on the executors (low rank plus noise, float32, seeded), cached and
counted before the clock starts, as the pipeline's featurize stage leaves them; the fit is what
the reduce stage runs: numpy moments per task, added on the executors, ``eigh`` on the driver.
Side by side on a 20,000-row slice: the same fit against Spark ML's ``PCA`` (which runs its
linear algebra in the JVM, in pure Java without a system BLAS). The machine's BLAS is recorded.
"""

from __future__ import annotations

import subprocess
import sys
import time

from benchmarks.common import Context, ratio, run_python, table

TITLE = "PCA fit: numpy moments on the executors, eigh on the driver"
SLOW = False
ROWS, QUICK_ROWS, SIDE_ROWS = 100_000, 20_000, 20_000
DIMENSION = 1568


def system_blas() -> list[str]:
    listed = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    return sorted({line.split()[0] for line in listed.splitlines() if "blas" in line.lower()})


def _features(spark, rows: int, dimension: int):
    import numpy as np
    import pyarrow as pa

    def generate(batches):
        for batch in batches:
            ids = batch.column("id").to_numpy()
            rng = np.random.default_rng(int(ids[0]) if len(ids) else 0)
            basis = np.random.default_rng(7).normal(size=(40, dimension))
            latent = rng.normal(size=(len(ids), 40)) * np.linspace(10, 0.5, 40)
            values = latent @ basis + rng.normal(scale=0.3, size=(len(ids), dimension)) + 2.0
            flat = pa.array(values.astype(np.float32).ravel())
            offsets = pa.array(np.arange(len(ids) + 1, dtype=np.int32) * dimension)
            yield pa.RecordBatch.from_arrays(
                [pa.ListArray.from_arrays(offsets, flat)], ["features"]
            )

    frame = spark.range(rows, numPartitions=16).mapInArrow(generate, "features array<float>")
    return frame.persist()


def fit_in_spark(master: str, rows: str, side_rows: str) -> dict:
    """Called in a fresh process: generate, cache, then time the fits."""
    from fruitspark import sparkenv
    from fruitspark.reduce import fit_moments, moments
    from fruitspark.session import spark_session

    spark = spark_session(master)
    frame = _features(spark, int(rows), DIMENSION)
    frame.count()
    started = time.perf_counter()
    stats = moments(frame, dimension=DIMENSION, parallelism=sparkenv.parallelism(spark))
    summed = time.perf_counter()
    fit = fit_moments(stats, variance=0.95)
    finished = time.perf_counter()
    result = {
        "rows": int(rows),
        "fit_s": round(finished - started, 2),
        "moments_s": round(summed - started, 2),
        "eigh_s": round(finished - summed, 2),
        "k": fit.k,
    }
    print(f"numpy fit: {result}", file=sys.stderr, flush=True)  # in the log even if below fails
    if int(side_rows):
        frame.unpersist()
        try:
            result["side_by_side"] = _side_by_side(
                spark, _features(spark, int(side_rows), DIMENSION)
            )
        except Exception as error:  # Spark ML's PCA ran out of the 2 GB driver heap here once
            result["side_by_side"] = {"rows": int(side_rows), "spark_ml_error": str(error)[:300]}
    spark.stop()
    return result


def _side_by_side(spark, frame) -> dict:
    from pyspark.ml.feature import PCA
    from pyspark.ml.functions import array_to_vector

    from fruitspark import sparkenv
    from fruitspark.reduce import fit_moments, moments

    rows = frame.count()
    started = time.perf_counter()
    fit_moments(moments(frame, dimension=DIMENSION, parallelism=sparkenv.parallelism(spark)), k=50)
    numpy_s = time.perf_counter() - started
    vectors = frame.select(array_to_vector("features").alias("v")).persist()
    vectors.count()
    started = time.perf_counter()
    PCA(inputCol="v", k=50).fit(vectors)
    spark_ml_s = time.perf_counter() - started
    return {
        "rows": rows,
        "numpy_s": round(numpy_s, 2),
        "spark_ml_s": round(spark_ml_s, 2),
        "speedup": ratio(spark_ml_s, numpy_s),
    }


def measure(ctx: Context) -> dict:
    import numpy as np

    rows = QUICK_ROWS if ctx.quick else ROWS
    result = run_python(
        ctx, f"{__name__}:fit_in_spark", [ctx.master, str(rows), str(SIDE_ROWS)], "pca"
    )
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    result.pop("processes", None)
    numpy_blas = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    return {
        **result,
        "dimension": DIMENSION,
        "system_blas": system_blas(),
        "numpy_blas": numpy_blas,
    }


def render(result: dict) -> str:
    blas = ", ".join(result.get("system_blas") or []) or "none (ldconfig -p lists no BLAS)"
    size = f"{result.get('rows', 0):,} x {result.get('dimension', DIMENSION):,}"
    seconds = [f"{result.get(key, 0):.1f}" for key in ("fit_s", "moments_s", "eigh_s")]
    headers = ["features", "fit s", "moments s (executors)", "eigh s (driver)", "k at 95 %"]
    text = table(headers, [[size, *seconds, result.get("k", "")]])
    side = result.get("side_by_side")
    if side and "spark_ml_error" in side:
        text += f"\n\nSpark ML's PCA on {side['rows']:,} rows failed: {side['spark_ml_error']}"
    elif side:
        text += (
            f"\n\nSide by side on {side['rows']:,} rows, k = 50: numpy {side['numpy_s']:.1f} s, "
            f"Spark ML PCA {side['spark_ml_s']:.1f} s ({side['speedup']:.1f} x faster in numpy)."
        )
    return text + f"\n\nSystem BLAS: {blas}; numpy's own: {result.get('numpy_blas', '?')}."

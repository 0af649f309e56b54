"""run, evaluate and predict's training side on a Spark Connect session (the local server).

PySpark 4 starts a local Connect server with ``SparkSession.builder.remote("local[2]")``; the
client side then has no SparkContext, broadcast, accumulator, status tracker or ``_jdf``. The
job runs in a subprocess so that its Connect server does not meet this process's classic session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import copy_subset

pytestmark = pytest.mark.slow
pytest.importorskip("grpc", reason="Spark Connect needs pyspark's connect extras (grpcio, ...)")

JOB = """
import json, pickle, sys
from pyspark.sql import SparkSession
from fruitspark import RunConfig, evaluate, run
from fruitspark.model import DEFAULT_MODEL, resolve_model
from fruitspark.sparkenv import is_connect, ship_file
from fruitspark.storage import Storage

images, output = sys.argv[1:3]
spark = (
    SparkSession.builder.remote("local[2]")
    .config("spark.ui.enabled", "false")
    .config("spark.connect.grpc.binding.address", "127.0.0.1")  # loopback only
    .config("spark.connect.grpc.binding.port", "0")  # a free port: the client asks the JVM which
    .config("spark.pyspark.python", sys.executable)
    .getOrCreate()
)
spec = resolve_model(DEFAULT_MODEL)
shipped = ship_file(spark, spec.path, f"fruitspark-model-{spec.sha256[:16]}.onnx")
summary = run(RunConfig(input=images, output=output, pca_k=8), spark)
scores = evaluate(output, spark)
print(json.dumps({
    "connect": is_connect(spark),
    "storage": type(Storage(spark, output)).__name__,
    "shipped_pickle_bytes": len(pickle.dumps(shipped)),
    "model_bytes": len(open(spec.path, "rb").read()),
    "summary": summary.to_dict(),
    "scores": {"top1": scores["top1"], "tested": scores["tested_on"]["images"]},
}))
spark.stop()
"""


def test_run_and_evaluate_on_spark_connect_then_predict(tmp_path: Path) -> None:
    pytest.importorskip("pyspark.sql.connect.session")
    images = copy_subset(tmp_path / "images", train=6, test=3)
    (images / "Test" / "Kiwi" / "empty.jpg").write_bytes(b"")  # the zero-byte check, sans _jdf
    output = tmp_path / "out"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    result = subprocess.run(
        [sys.executable, "-c", JOB, str(images), str(output)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["connect"] is True and found["storage"] == "ArrowStorage"
    # the model reaches the executors as a session artifact: tasks carry its name, not its bytes
    assert found["shipped_pickle_bytes"] < 1000 < found["model_bytes"]

    summary = found["summary"]
    listed = 4 * (6 + 3) + 1
    assert summary["images"]["listed"] == listed and summary["images"]["failed"] == 1
    assert summary["accounting"]["ok"] and summary["settings"]["model_loads"] is None
    assert summary["spark"]["master"] == "local[2]"
    rows = pq.read_table(output / "features", columns=["path", "error"]).to_pylist()
    assert len({row["path"] for row in rows}) == len(rows) == listed
    (empty,) = [row for row in rows if row["path"].endswith("empty.jpg")]
    assert "empty" in empty["error"]
    assert json.loads((output / "summary.json").read_text())["images"] == summary["images"]
    assert (output / "report.html").is_file() and (output / "classifier.npz").is_file()
    assert found["scores"]["tested"] == 12 and found["scores"]["top1"] > 0.5

    from fruitspark.predict import predict

    photo = sorted((images / "Test" / "Banana").glob("*.jpg"))[0]
    (answer,) = predict(str(output), [str(photo)], top_k=2)
    assert answer.error is None and answer.labels[0] == "Banana"

"""run, evaluate and predict's training side on a Spark Connect session (the local server).

PySpark 4 starts a local Connect server with ``SparkSession.builder.remote("local[2]")``; the test
starts the same server (a classic session with the Connect plugin) on a free loopback port rather
than on 15002, and the job gets only the client: no SparkContext, broadcast, accumulator, status
tracker or ``_jdf``. It runs in a subprocess, away from this process's classic session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cluster_utils import free_port
from conftest import copy_subset

pytestmark = pytest.mark.slow
pytest.importorskip("grpc", reason="Spark Connect needs pyspark's connect extras (grpcio, ...)")

JOB = """
import dataclasses, json, os, pickle, sys
from pyspark.sql import SparkSession
from pyspark.sql.connect.session import SparkSession as ConnectSession
from fruitspark import QUICK_GRID, RunConfig, evaluate, run
from fruitspark.model import DEFAULT_MODEL, default_precision, resolve_model
from fruitspark.sparkenv import is_connect, ship_file
from fruitspark.storage import Storage

images, output, port = sys.argv[1:4]
# The local Connect server: a classic session with the Connect plugin on a free loopback port
# (what remote("local[2]") starts, but on a port of our choosing); the job only sees the client.
server = (
    SparkSession.builder.master("local[2]")
    .config("spark.plugins", "org.apache.spark.sql.connect.SparkConnectPlugin")
    .config("spark.connect.grpc.binding.address", "127.0.0.1")
    .config("spark.connect.grpc.binding.port", port)
    .config("spark.ui.enabled", "false")
    .config("spark.pyspark.python", sys.executable)
    .getOrCreate()
)
os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"  # as remote("local") does: Connect columns
spark = ConnectSession.builder.remote(f"sc://127.0.0.1:{port}").getOrCreate()
spec = resolve_model(DEFAULT_MODEL, precision=default_precision(DEFAULT_MODEL))
shipped = ship_file(spark, spec.path, f"fruitspark-model-{spec.sha256[:16]}.onnx")
summary = run(RunConfig(input=images, output=output, pca_k=8), spark)
# a small grid: the default one's 40 candidates x 3 folds test the grid, not Connect
scores = evaluate(output, spark, QUICK_GRID)
print(json.dumps({
    "connect": is_connect(spark),
    "storage": type(Storage(spark, output)).__name__,
    "shipped_pickle_bytes": len(pickle.dumps(shipped)),
    "model_bytes": len(open(spec.path, "rb").read()),
    "summary": dataclasses.asdict(summary),
    "scores": {"top1": scores["top1"], "tested": scores["tested_on"]["images"]},
}))
spark.stop()
server.stop()
"""


def test_run_and_evaluate_on_spark_connect_then_predict(tmp_path: Path) -> None:
    pytest.importorskip("pyspark.sql.connect.session")
    images = copy_subset(tmp_path / "images", train=6, test=3)
    (images / "Test" / "Kiwi" / "empty.jpg").write_bytes(b"")  # the zero-byte check, sans _jdf
    output = tmp_path / "out"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    result = subprocess.run(
        [sys.executable, "-c", JOB, str(images), str(output), str(free_port())],
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

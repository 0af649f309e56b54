"""The job end to end in an EMR 7 node's environment: bootstrap.sh's requirements, PySpark 3.5.6.

The venv is built by the bootstrap's own requirement extraction (see ``emr_node_env``) on this
Python 3.11, with no PYTHONPATH: what runs is the installed wheel, as on a cluster node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cluster_utils import EMR_SPARK, check_output, copy_sample, emr_node_env

pytestmark = pytest.mark.slow


def _in_node_env(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYSPARK", "SPARK"))}
    # An EMR driver runs under YARN, which never writes the local class archive; here it would
    # cost the first command a dump of this Spark's classes (test_class_archive covers it).
    env["FRUITSPARK_CLASS_ARCHIVE"] = "off"
    return subprocess.run(
        [str(python), "-m", "fruitspark.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def test_run_evaluate_predict_in_an_emr_node_environment(tmp_path: Path) -> None:
    if sys.version_info[:2] != (3, 11):
        pytest.skip("EMR 7 nodes run Python 3.11; this interpreter is another")
    python = emr_node_env() / "bin" / "python"
    probe = "import fruitspark, pyspark; print(pyspark.__version__, fruitspark.__file__)"
    version, location = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
    ).stdout.split()  # fmt: skip
    assert version == EMR_SPARK and "site-packages" in location

    labels = copy_sample(tmp_path / "images", classes=3, train=5, test=3)
    run = _in_node_env(python, "run", "images", "out", "--master", "local[2]", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = check_output(tmp_path / "out", labels)
    assert summary["spark"]["version"] == EMR_SPARK

    small_grid = ["--features", "pca", "both", "--colour-boost", "1"]
    small_grid += ["--reg-params", "1e-4", "0.01", "--class-weights", "none"]
    evaluation = _in_node_env(python, "evaluate", "out", *small_grid, cwd=tmp_path)
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    scores = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert scores["tested_on"]["images"] == 9 and scores["top1"] > 1 / 3

    photo = sorted((tmp_path / "images" / "Test").rglob("*.jpg"))[0]
    predicted = _in_node_env(python, "predict", "out", str(photo), "--json", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    (answer,) = json.loads(predicted.stdout)
    assert answer["error"] is None and answer["labels"][0] in labels

"""The README's user install, `pip install .`, in a fresh virtual environment: what a user gets.

Slow (about two minutes with pip's cache warm): pyspark alone is a 300 MB wheel.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_ONLY = ("torch", "playwright", "moto", "efficientnet-lite-pytorch", "scikit-learn", "pytest")


def _clean_env() -> dict[str, str]:
    """The caller's environment without what points at the developer's source or Python."""
    dropped = ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "VIRTUAL_ENV")
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    env["FRUITSPARK_CLASS_ARCHIVE"] = "off"  # its first dump would cost ~30 s (test_class_archive)
    return env


@pytest.mark.slow
def test_pip_install_dot_gives_a_working_fruitspark_without_test_dependencies(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python, env = venv / "bin" / "python", _clean_env()
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", str(ROOT)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format", "json"],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    installed = {item["name"].lower() for item in json.loads(listed.stdout)}
    assert {"fruitspark", "pyspark", "onnxruntime", "tqdm"} <= installed
    assert not installed & set(TEST_ONLY), "the user install carries no test-only dependency"

    check = "from fruitspark.demo import DEMO_DATA, packaged_images; print(len(packaged_images()))"
    shipped = subprocess.run(
        [python, "-c", check], capture_output=True, text=True, env=env, cwd=tmp_path, check=True
    )
    assert shipped.stdout.strip() == "216", "the demo images are installed with the package"

    images = tmp_path / "images"
    for split, count in (("Training", 3), ("Test", 2)):
        for label in ("Banana", "Orange"):
            source = venv.glob(f"lib/python*/site-packages/fruitspark/demo_data/{split}/{label}")
            (folder := images / split / label).mkdir(parents=True)
            for image in sorted(next(source).glob("*.jpg"))[:count]:
                (folder / image.name).write_bytes(image.read_bytes())
    fruitspark = venv / "bin" / "fruitspark"
    run = subprocess.run(
        [fruitspark, "run", str(images), str(tmp_path / "out"), "--master", "local[2]"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "10 images: 10 featurised, 0 failed" in run.stdout
    assert f"Report: file:{tmp_path}/out/report.html" in run.stdout
    assert "[Stage" not in run.stderr, "no console progress of Spark's own"
    assert not re.search(r"\b(WARN|INFO)\b (DAGScheduler|TaskSetManager)", run.stderr)
    assert "featurize: 100%" in run.stderr and "10/10" in run.stderr

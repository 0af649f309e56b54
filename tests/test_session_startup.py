"""What a local session made by fruitspark spares its start: PySpark compiled again from Spark's
zips by the worker daemon, IPython imported by PySpark's call-site capture."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from fruitspark.worker_daemon import redundant_zips


def _install(site: Path, *packages: str) -> Path:
    """A site-packages with ``packages`` and, as pip installs PySpark, its zips inside it."""
    for package in packages:
        (site / package).mkdir(parents=True)
        (site / package / "__init__.py").write_text("")
    lib = site / "pyspark" / "python" / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    for name in ("pyspark.zip", "py4j-0.10.9.9-src.zip"):
        (lib / name).write_bytes(b"")
    return lib


def test_only_the_zips_of_the_installed_package_are_redundant(tmp_path):
    import pyspark  # noqa: F401  (imported already, as in any process with a session)

    site = tmp_path / "site"
    lib = _install(site, "pyspark", "py4j")
    zips = [str(lib / "pyspark.zip"), str(lib / "py4j-0.10.9.9-src.zip")]
    assert redundant_zips([*zips, str(site)]) == zips
    # a cluster's SPARK_HOME elsewhere: its code is what Spark runs, the path stays
    cluster = tmp_path / "spark-home" / "python" / "lib"
    cluster.mkdir(parents=True)
    elsewhere = [str(cluster / "pyspark.zip"), str(cluster / "py4j-0.10.9.9-src.zip")]
    assert redundant_zips([*elsewhere, str(site)]) == []
    # no PySpark outside the zip: nothing to import instead
    assert redundant_zips([*zips, str(tmp_path / "empty")]) == []


def test_py4j_zip_stays_when_py4j_is_not_installed(tmp_path):
    site = tmp_path / "site"
    lib = _install(site, "pyspark")
    zips = [str(lib / "pyspark.zip"), str(lib / "py4j-0.10.9.9-src.zip")]
    assert redundant_zips([*zips, str(site)]) == zips[:1]


def test_python_workers_of_a_local_session_import_the_installed_pyspark(spark):
    """Without the daemon module, workers import ``pyspark/__init__.py`` from ``pyspark.zip``."""

    def worker_imports(_) -> list[tuple[str, bool]]:  # a closure: pickled by value
        import pyspark

        return [(pyspark.__file__, any(entry.endswith("pyspark.zip") for entry in sys.path))]

    seen = spark.sparkContext.parallelize(range(2), 2).mapPartitions(worker_imports).collect()
    assert seen and all(".zip" not in path and not zipped for path, zipped in seen), seen


@pytest.mark.skipif(importlib.util.find_spec("IPython") is None, reason="IPython not installed")
def test_the_first_dataframe_function_does_not_import_ipython():
    """PySpark 4's DataFrame debugging captures each function's call site, and its first capture
    imports IPython and ipykernel when they are installed (0.4-0.7 s)."""
    probe = (
        "import sys\n"
        "from fruitspark.session import spark_session\n"
        "spark = spark_session('local[1]')\n"
        "from pyspark.sql import functions as F\n"
        "F.col('x')\n"
        "print('IPython' in sys.modules)\n"
        "spark.stop()\n"
    )
    command = [sys.executable, "-c", probe]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"

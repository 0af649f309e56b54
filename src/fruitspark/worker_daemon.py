"""PySpark's Python worker daemon, importing PySpark from its installed package, not its zip.

Spark starts the daemon (``python -m pyspark.daemon``) with ``$SPARK_HOME/python/lib/pyspark.zip``
and py4j's source zip first on the ``PYTHONPATH``; for a pip-installed PySpark, ``SPARK_HOME`` is
the package's own folder, so the zip holds the very sources that are installed next to it. But
Python never caches bytecode for a zip: the daemon and every worker it forks compile PySpark's
modules from source again. On 2 cores that was 2.1 of the 3.0 CPU seconds the daemon and its two
workers spent in a run's first Python tasks (py-spy, 30 images, 2026-12-02).

Local sessions made by ``fruitspark.session`` name this module as ``spark.python.daemon.module``.
It drops a zip from ``sys.path`` only when the same package is importable without it from the
installed folder the zip sits in (``<site-packages>/pyspark/python/lib/pyspark.zip`` and
``<site-packages>/pyspark``), so the code that runs is the code Spark shipped; any other layout
(a cluster's ``SPARK_HOME``, another version elsewhere) keeps the path as Spark set it. Then it
runs ``pyspark.daemon`` exactly as Spark would have.
"""

from __future__ import annotations

import importlib.machinery
import os
import runpy
import sys


def redundant_zips(path: list[str]) -> list[str]:
    """The entries of ``path`` that are Spark's zips inside the PySpark package importable from
    the rest of ``path`` (``pyspark.zip``; py4j's zip when py4j is installed too)."""
    unzipped = [entry for entry in path if not entry.endswith(".zip")]
    pyspark = _package_folder("pyspark", unzipped)
    if pyspark is None:
        return []
    lib = os.path.join(pyspark, "python", "lib")
    names = ("pyspark.zip", "py4j-") if _package_folder("py4j", unzipped) else ("pyspark.zip",)
    return [
        entry
        for entry in path
        if entry.endswith(".zip")
        and os.path.basename(entry).startswith(names)
        and os.path.realpath(os.path.dirname(entry)) == lib
    ]


def _package_folder(package: str, path: list[str]) -> str | None:
    """The folder ``package`` would be imported from with ``path`` as ``sys.path``, or None
    (asked of the path finder itself: ``sys.modules`` and the rest of ``sys.path`` play no part).
    """
    spec = importlib.machinery.PathFinder.find_spec(package, path)
    locations = list(spec.submodule_search_locations or []) if spec else []
    return os.path.realpath(locations[0]) if locations else None


def main() -> None:
    drop = set(redundant_zips(sys.path))
    sys.path[:] = [entry for entry in sys.path if entry not in drop]
    runpy.run_module("pyspark.daemon", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

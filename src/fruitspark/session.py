"""A SparkSession that works out of the box: local mode by default, quiet, and on this Python.

Under ``spark-submit`` (a cluster) the session already exists and is used as it is configured.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Literal

from fruitspark import class_archive

DEFAULT_MASTER = "local[*,4]"  # all cores; a failed task is retried up to 4 times, as on a cluster
QUIET_LOGGERS = ("py4j", "pyspark")
LOG_CONFIG = Path(__file__).parent / "conf" / "log4j2.properties"
# Which JIT a local JVM gets. HotSpot's optimising compiler (C2) spent about 14 s of CPU
# compiling Spark's code in a 1,500-image run, more than all the JVM's per-image work; stopping
# at C1 costs about 1 s and its code is barely slower where the JVM only moves bytes
# (benchmarks/sections/steps.py). But Spark ML's linear algebra (evaluate's logistic regression)
# runs through the JDK's Vector API, which only C2 turns into SIMD code: under C1 one L-BFGS
# iteration over 4,000 x 2,800 features took 15-18 s, against 0.3-0.8 s tiered (measured
# 2026-12-01). So ``fruitspark run`` asks for "c1" and every other session (evaluate, demo,
# report, the Python API, a notebook's) gets the JVM's tiered default. Stopped at C1, HotSpot
# sizes its code cache as for C1 alone, 48 MB, which Spark's generated code can fill ("CodeCache
# is full. Compiler has been disabled"); 240 MB is the tiered default.
# FRUITSPARK_JVM_OPTIONS replaces these (empty: the JVM's defaults), and turns off the driver's
# class archive (fruitspark.class_archive: Spark's classes mapped from disk, seconds per start).
Jit = Literal["tiered", "c1"]
JVM_OPTIONS: dict[str, str] = {
    "tiered": "",
    "c1": "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m",
}
# Spark 4's lower() maps case through ICU by default, whose first use loads break-iterator rules
# and dictionaries: about 1 ms per image of JVM CPU in a 1,500-image featurize stage (the split
# column, sources.split_expr). Its input is ASCII split names, which the JVM's mapping lowers
# the same. Only in sessions made here; an unknown key on Spark 3.5.
LOCAL_CONF = {
    "spark.sql.icu.caseMappings.enabled": "false",
    # PySpark imported from its installed package, not compiled again from its zip by the worker
    # daemon and each worker: about 2 CPU s of every session's first Python tasks (worker_daemon)
    "spark.python.daemon.module": "fruitspark.worker_daemon",
    # PySpark 4 records the Python call site of every DataFrame function for error messages; its
    # first call imports IPython and ipykernel if they are installed (as with Jupyter): 0.4-0.7 s
    # of a run's list stage. fruitspark's expressions need no call site; unknown on 3.5.
    "spark.python.sql.dataFrameDebugging.enabled": "false",
}
# Spark ML's JVM linear algebra (evaluate's logistic regression) first looks for the system's
# BLAS, LAPACK and ARPACK through netlib's JNI, which prints "netlib-blas: JNI_OnLoad:
# dlopen(libblas.so.3) failed" on a machine without them (a new user's), then runs its Java code
# all the same. A local JVM is told not to look for those this machine does not have: the
# sonames its JNI libraries dlopen, looked up in the loader's cache and LD_LIBRARY_PATH (one
# `ldconfig -p`, 2 ms; ctypes.util.find_library took 47 ms for the three, falling back to gcc).
NETLIB = {"blas": "libblas.so.3", "lapack": "liblapack.so.3", "arpack": "libarpack.so.2"}


def spark_session(
    master: str | None = None, *, app_name: str = "fruitspark", conf=None, jit: Jit = "tiered"
):
    """The active session, or a new one on ``master`` (default: local mode on every core);
    ``jit`` chooses a new local JVM's compilers (see JVM_OPTIONS)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None and master is None:
        return active
    log_level = os.environ.get("FRUITSPARK_LOG_LEVEL")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if master is None and os.environ.get("PYSPARK_GATEWAY_PORT"):
        # Launched by spark-submit: master, Python and resources are the cluster's to choose.
        session = SparkSession.builder.appName(app_name).getOrCreate()
    else:
        session = _local_builder(master, app_name, log_level, conf or {}, jit).getOrCreate()
    for key, value in SESSION_CONF.items():
        session.conf.set(key, value)
    session.sparkContext.setLogLevel(log_level or "ERROR")
    return session


SESSION_CONF = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
}


def _local_builder(
    master: str | None, app_name: str, log_level: str | None, conf: dict, jit: Jit = "tiered"
):
    """A session started here: executors run this very interpreter, Spark's logging is quiet."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    memory = os.environ.get("FRUITSPARK_DRIVER_MEMORY", "2g")
    builder = (
        SparkSession.builder.appName(app_name)
        .master(master or os.environ.get("FRUITSPARK_MASTER", DEFAULT_MASTER))
        .config("spark.pyspark.python", os.environ["PYSPARK_PYTHON"])
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", memory)
    )
    chosen = os.environ.get("FRUITSPARK_JVM_OPTIONS")
    java = f"{JVM_OPTIONS[jit] if chosen is None else chosen} {netlib_options()}".strip()
    if not log_level:
        java = f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()} {java}".strip()
    archive = class_archive.driver_options(memory) if chosen is None else ""
    if java or archive:
        builder = builder.config("spark.driver.extraJavaOptions", f"{java} {archive}".strip())
    if java:
        builder = builder.config("spark.executor.extraJavaOptions", java)
    for key, value in {**LOCAL_CONF, **conf}.items():
        builder = builder.config(key, value)
    return builder


def netlib_options() -> str:
    """System properties that keep netlib from looking for native libraries that are missing."""
    found = _loadable_libraries()
    return " ".join(
        f"-Ddev.ludovic.netlib.{name}.allowNative=false"
        for name, soname in NETLIB.items()
        if soname not in found
    )


def _loadable_libraries() -> str:
    """The loader cache's listing and LD_LIBRARY_PATH's file names, as one searchable text."""
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    try:
        listing = subprocess.run(
            [ldconfig, "-p"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        listing = ""
    folders = [Path(part) for part in os.environ.get("LD_LIBRARY_PATH", "").split(":") if part]
    names = [entry.name for folder in folders if folder.is_dir() for entry in folder.iterdir()]
    return "\n".join([listing, *names])

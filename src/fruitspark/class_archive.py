"""Spark's classes from a class-data-sharing archive, so that a local session starts sooner.

Before its first job, a JVM running Spark loads, parses and verifies some 15,000 classes. HotSpot's
dynamic CDS archive (JDK 13 and later) keeps them ready in one file that later JVMs map from
disk: measured here, a local session that starts, runs two small queries and stops takes about
6.5 s with it instead of 10-11 s (``benchmarks/sections/fixed_costs.py``).

fruitspark keeps one archive per Java and Spark installation in its cache folder
(``$FRUITSPARK_CACHE/jvm``, about 190 MB). The ``fruitspark`` command writes it the first time:
its JVM starts with ``-XX:ArchiveClassesAtExit`` pointing at a file named after this process,
and once the command's session is stopped, :func:`finish` lets that JVM exit (writing the archive
takes about half a minute, once), then moves the file into place, so that a half-written archive is
never used. Other sessions fruitspark starts (the Python API, tests) use an archive that exists
and never write one. Only the driver's JVM uses it, never executors. The JVM checks that the
archive matches its class path and silently ignores one that does not; ``FRUITSPARK_CLASS_ARCHIVE
=off``, or any ``FRUITSPARK_JVM_OPTIONS``, turns it off.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from fruitspark.output import process_alive

QUIET = "-Xlog:cds=off,cds+dynamic=off"  # the JVM warns on stdout about classes it cannot keep


@dataclass
class _ThisProcess:
    requested: bool = False  # the command asked for an archive (request_at_exit)
    writing: Path | None = None  # the file this process's JVM writes when it exits
    archive: Path | None = None  # where that file goes once complete


_THIS_PROCESS = _ThisProcess()


def archive_path(driver_memory: str) -> Path | None:
    """The archive of this Java and this Spark (jars and heap size: both must match), or None
    when it is turned off or no Java is found."""
    from fruitspark.model import cache_dir

    if os.environ.get("FRUITSPARK_CLASS_ARCHIVE", "on").lower() in ("off", "0", "false", "no"):
        return None
    java = _java()
    if java is None:
        return None
    jars = _spark_jars()
    digest = hashlib.sha256()
    for part in (str(java), str(java.stat().st_mtime_ns), str(jars), driver_memory):
        digest.update(part.encode() + b"\0")
    for jar in sorted(os.listdir(jars)) if jars.is_dir() else []:
        digest.update(jar.encode() + b"\0")
    return cache_dir() / "jvm" / f"spark-classes-{digest.hexdigest()[:16]}.jsa"


def request_at_exit() -> None:
    """The command that calls this writes the archive if it is missing (see :func:`finish`)."""
    _THIS_PROCESS.requested = True


def driver_options(driver_memory: str) -> str:
    """JVM options of a local session's driver: use the archive, or write it when requested."""
    archive = archive_path(driver_memory)
    if archive is None:
        return ""
    if archive.is_file():
        return f"-XX:SharedArchiveFile={archive} {QUIET}"
    if not _THIS_PROCESS.requested or _THIS_PROCESS.writing is not None:
        return ""
    archive.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(archive)
    writing = archive.with_name(f"{archive.name}.{os.getpid()}.tmp")
    _THIS_PROCESS.writing, _THIS_PROCESS.archive = writing, archive
    return f"-XX:ArchiveClassesAtExit={writing} {QUIET}"


def finish(stream: TextIO | None = None) -> None:
    """After the command's session is stopped: let its JVM exit, which writes the archive, and
    put the archive in place. Nothing to do unless this process's JVM was asked to write one."""
    writing, archive = _THIS_PROCESS.writing, _THIS_PROCESS.archive
    if writing is None or archive is None:
        return
    from pyspark import SparkContext

    _THIS_PROCESS.writing = _THIS_PROCESS.archive = None
    process = getattr(getattr(SparkContext, "_gateway", None), "proc", None)
    code = None
    if process is not None:
        note = "fruitspark: keeping Spark's classes for faster starts (once)"
        print(note, file=stream or sys.stderr)
        process.stdin.close()  # PySpark's gateway JVM exits when its stdin closes
        try:
            code = process.wait(timeout=300)
        except Exception:  # a JVM that hangs on exit: no archive this time
            code = None
    if code == 0 and writing.is_file() and writing.stat().st_size > 0:
        os.replace(writing, archive)
    else:
        writing.unlink(missing_ok=True)


def _remove_stale(archive: Path) -> None:
    """Half-written archives of processes that are gone (a killed first run)."""
    for leftover in archive.parent.glob(f"{archive.name}.*.tmp"):
        pid = leftover.name.rsplit(".", 2)[1]
        if not pid.isdigit() or not process_alive(int(pid)):
            leftover.unlink(missing_ok=True)


def _java() -> Path | None:
    """The java PySpark's launcher runs: ``$JAVA_HOME/bin/java``, else the one on the PATH."""
    home = os.environ.get("JAVA_HOME")
    found = os.path.join(home, "bin", "java") if home else shutil.which("java")
    return Path(os.path.realpath(found)) if found and os.path.isfile(found) else None


def _spark_jars() -> Path:
    """The jars on the driver's class path: ``$SPARK_HOME/jars``, else PySpark's own."""
    home = os.environ.get("SPARK_HOME")
    if home:
        return Path(home) / "jars"
    import pyspark

    return Path(pyspark.__file__).parent / "jars"

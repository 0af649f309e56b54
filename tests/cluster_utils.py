"""Helpers for tests/test_clusters.py: sample images, a loopback standalone cluster, a packed venv.

Nothing here mocks Spark: the cluster is the real ``Master`` and ``Worker`` daemons of the
installed pyspark, and the packed environment is a real ``venv`` shipped with ``--archives``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pyarrow.parquet as pq

from fruitspark.cloud.node_requirements import node_requirements

REPO = Path(__file__).resolve().parents[1]
SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "fruits360-sample"
CACHE = Path(os.environ.get("FRUITSPARK_TEST_CACHE", "/tmp/fruitspark-test-cache"))
FEATURE_DIM = 2568  # EfficientNet-Lite0 features (1280) + logits (1000) + colour histogram (288)
MARKER = "FRUITSPARK_TEST_CLUSTER"  # set in every daemon we start, to find all of their children
KEEP_ENVS = 2  # packed environments kept in CACHE (each is a few hundred MB)


# --- input ------------------------------------------------------------------------------------


def copy_sample(dest: Path, classes: int = 4, train: int = 6, test: int = 3) -> dict[str, int]:
    """Copy (never link) ``train`` + ``test`` images of the first ``classes`` classes to ``dest``.

    Returns the number of images per label. Skips the calling test if the sample is missing.
    """
    import pytest

    if not (SAMPLE / "Training").is_dir() or not (SAMPLE / "Test").is_dir():
        pytest.skip(f"sample images not found at {SAMPLE}")
    names = sorted(
        entry.name
        for entry in (SAMPLE / "Training").iterdir()
        if entry.is_dir() and (SAMPLE / "Test" / entry.name).is_dir()
    )[:classes]
    counts: dict[str, int] = {}
    for split, count in (("Training", train), ("Test", test)):
        for name in names:
            files = sorted(p for p in (SAMPLE / split / name).iterdir() if p.is_file())[:count]
            target = dest / split / name
            target.mkdir(parents=True, exist_ok=True)
            for file in files:
                shutil.copyfile(file, target / file.name)
            counts[name] = counts.get(name, 0) + len(files)
    return counts


# --- Spark installation -----------------------------------------------------------------------


def spark_home() -> Path:
    """The installed pyspark's own Spark (pip ships bin/ and jars/), whatever $SPARK_HOME says.

    One Spark for driver, master, workers and executors: a $SPARK_HOME of another version would
    mix jars.
    """
    import pyspark

    home = Path(pyspark.__file__).parent
    if not (home / "bin" / "spark-class").is_file() or not (home / "jars").is_dir():
        raise RuntimeError(f"{home} has no bin/spark-class or jars/: not a full pyspark install")
    return home


def spark_env(**extra: str) -> dict[str, str]:
    """The environment for Spark processes: this SPARK_HOME, loopback only, this Python."""
    env = dict(os.environ)
    for name in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_CONF_DIR", "MASTER"):
        env.pop(name, None)
    env.update(
        SPARK_HOME=str(spark_home()),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOCAL_HOSTNAME="127.0.0.1",
        **extra,
    )
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- a standalone cluster on 127.0.0.1 --------------------------------------------------------


@dataclass
class Cluster:
    url: str  # spark://127.0.0.1:PORT
    web: str  # http://127.0.0.1:PORT (the master's UI, loopback only)
    root: Path
    worker_dirs: list[Path]
    marker: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    def state(self, attempts: int = 1) -> dict:
        """The master's JSON view (workers, running and completed apps)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for attempt in range(attempts):
            try:
                with opener.open(f"{self.web}/json/", timeout=5) as response:
                    return json.load(response)
            except (OSError, ValueError):
                if attempt == attempts - 1:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker ``index``'s process group: its JVM, its executors and their Python.

        What a lost node looks like to the driver; the master (processes[0]) is left alone.
        """
        os.killpg(self.processes[1 + index].pid, signal.SIGKILL)
        self.processes[1 + index].wait()

    def logs(self, lines: int = 40) -> str:
        parts = []
        for log in sorted(self.root.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(parts)


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log, "wb") as stream:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=stream,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, killed as one in stop()
        )


@contextmanager
def standalone_cluster(
    root: Path, workers: int = 2, cores: int = 1, memory: str = "1g", timeout: float = 120
) -> Iterator[Cluster]:
    """A Spark master and ``workers`` workers from the installed pyspark; always stopped."""
    root.mkdir(parents=True, exist_ok=True)
    spark_class = str(spark_home() / "bin" / "spark-class")
    marker = uuid.uuid4().hex
    env = spark_env(**{MARKER: marker}, SPARK_DAEMON_MEMORY="512m")
    env.pop("PYTHONPATH", None)  # executors must import only what the job ships them
    port, web_port = free_port(), free_port()
    cluster = Cluster(
        url=f"spark://127.0.0.1:{port}",
        web=f"http://127.0.0.1:{web_port}",
        root=root,
        worker_dirs=[root / f"worker-{index}" for index in range(workers)],
        marker=marker,
    )
    master = [
        spark_class, "org.apache.spark.deploy.master.Master",
        "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(web_port),
    ]  # fmt: skip
    try:
        cluster.processes.append(_start(master, root / "master.log", env))
        _wait(cluster, lambda state: True, timeout, "the master to answer")
        for index, work_dir in enumerate(cluster.worker_dirs):
            work_dir.mkdir()
            worker = [
                spark_class, "org.apache.spark.deploy.worker.Worker", cluster.url,
                "--host", "127.0.0.1", "--cores", str(cores), "--memory", memory,
                "--webui-port", str(free_port()), "--work-dir", str(work_dir),
            ]  # fmt: skip
            cluster.processes.append(_start(worker, root / f"worker-{index}.log", env))
        _wait(
            cluster,
            lambda state: sum(w["state"] == "ALIVE" for w in state["workers"]) == workers,
            timeout,
            f"{workers} workers to register",
        )
        yield cluster
    finally:
        stop(cluster)


def _wait(cluster: Cluster, ready, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in cluster.processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{process.args[1]} exited with {process.returncode}\n{cluster.logs()}"
                )
        try:
            if ready(cluster.state()):
                return
        except (OSError, ValueError):
            pass  # not listening yet, or answering before its state is complete
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}\n{cluster.logs()}")


def busy_worker_mid_featurize(
    cluster: Cluster, ui_port: int, process: subprocess.Popen, timeout: float
) -> int:
    """The index of the worker whose executor runs the newest featurize task, as soon as one
    runs: an executor's first task also starts its Python worker and loads the model (a second
    or more), so killing that worker then surely loses a running task. Waiting for a task to
    finish first, then killing a busy one, could catch an executor between two 0.1 s tasks and
    lose none. Asked of the driver's REST API on loopback: the stage keeps its rows in Spark's
    cache, so nothing on disk tells. An executor's directory under a worker's work dir says
    which worker runs it."""
    api = f"http://127.0.0.1:{ui_port}/api/v1/applications"
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        with suppress(OSError, ValueError, KeyError):
            for app in _get_json(api):
                executor = _newest_featurize_task_executor(f"{api}/{app['id']}")
                for index, work_dir in enumerate(cluster.worker_dirs):
                    if executor and (work_dir / app["id"] / executor).is_dir():
                        return index
        time.sleep(0.05)
    raise AssertionError(f"featurize never got going on a worker (exit {process.returncode})")


def _newest_featurize_task_executor(app_api: str) -> str | None:
    """The executor of the latest-launched running task of a featurize job, or None."""
    for job in _get_json(f"{app_api}/jobs?status=running"):
        if job.get("jobGroup", "").endswith("-featurize") and job["numActiveTasks"]:
            running = [
                task
                for stage in job["stageIds"]
                for attempt in _get_json(f"{app_api}/stages/{stage}")
                for task in _get_json(
                    f"{app_api}/stages/{stage}/{attempt['attemptId']}/taskList?length=1000"
                )
                if task["status"] == "RUNNING"
            ]
            if running:
                return max(running, key=lambda task: task["launchTime"])["executorId"]
    return None


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.load(response)


def _marked_pids(marker: str) -> list[int]:
    """Processes started by our daemons: executors, and Python daemons in their own group."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def stop(cluster: Cluster, grace: float = 15) -> None:
    """Stop workers then master (their process groups), then anything left carrying our marker."""
    for process in reversed(cluster.processes):
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in cluster.processes:
        with suppress(subprocess.TimeoutExpired):
            process.wait(max(0.1, deadline - time.monotonic()))
    for process in cluster.processes:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the group: what its JVM started
        process.wait()
    for _ in range(20):
        left = _marked_pids(cluster.marker)
        if not left:
            return
        for pid in left:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    raise RuntimeError(f"processes of the test cluster still alive: {left}")


# --- the packed virtual environment -------------------------------------------------------


def build_wheel(dest: Path) -> Path:
    """The project's wheel, built from a clean copy of the work tree, without its dependencies.

    A copy, because an in-tree build leaves build/ behind, and a stale build/lib can put modules
    deleted since into the wheel.
    """
    source = dest.parent / "source"
    shutil.copytree(
        REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    for name in ("pyproject.toml", "setup.cfg", "setup.py", "README.md", "LICENSE", "MANIFEST.in"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, source / name)
    dest.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", str(dest), str(source),
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=dest)
    (wheel,) = dest.glob("fruitspark-*.whl")
    return wheel


def driver_pins() -> list[str]:
    """``name==version`` of every distribution here: the executors get the driver's versions."""
    pins = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name and name not in ("fruitspark", "pyspark") and "+" not in dist.version:
            pins[name] = f"{name}=={dist.version}"
    return sorted(pins.values())


def _wheel_digest(wheel: Path) -> str:
    """Hash of the wheel's members (names and bytes), not of its zip timestamps."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            digest.update(name.encode() + b"\0" + archive.read(name) + b"\0")
    return digest.hexdigest()


def packed_env(cache: Path = CACHE) -> Path:
    """``environment.tar.gz``: a self-contained venv with fruitspark and its deps, less pyspark.

    Executors get pyspark (and py4j) from their SPARK_HOME's python/lib zips, which Spark puts on
    the Python workers' PYTHONPATH. Two cached layers under ``cache``: the venv with the
    dependencies (keyed by the interpreter, the requirements and the driver's versions), and the
    packed archive (keyed by that and the wheel's content). A change in src/ only reinstalls the
    wheel and repacks.
    """
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time, even across test sessions
        scratch = cache / f"build-{uuid.uuid4().hex[:8]}"
        try:
            wheel = build_wheel(scratch / "dist")
            requirements = node_requirements(str(wheel))
            pins = driver_pins()
            base_key = _key(sys.version, sys.executable, *requirements, *pins)
            target = cache / f"env-{_key(base_key, _wheel_digest(wheel))}" / "environment.tar.gz"
            if target.is_file():
                os.utime(target.parent)
                return target
            base = cache / f"base-{base_key}"
            venv = base / "venv"
            if not (base / "complete").is_file():
                shutil.rmtree(base, ignore_errors=True)
                _build_base(venv, requirements, pins, scratch)
                (base / "complete").write_text("")
            os.utime(base)
            _install_and_pack(venv, wheel, scratch / "environment.tar.gz")
            target.parent.mkdir(parents=True, exist_ok=True)
            (scratch / "environment.tar.gz").replace(target)
            _prune(cache, "env-*", keep=target.parent, count=KEEP_ENVS)
            _prune(cache, "base-*", keep=base, count=1)
            return target
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _build_base(venv: Path, requirements: list[str], pins: list[str], scratch: Path) -> None:
    """A venv (``--copies``, no system site-packages) with the project's runtime dependencies."""
    subprocess.run([sys.executable, "-m", "venv", "--copies", str(venv)], check=True)
    constraints = scratch / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    subprocess.run([*_pip(venv), "-c", str(constraints), *requirements], check=True)


def _pip(venv: Path) -> list[str]:
    return [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-cache-dir"]


def _install_and_pack(venv: Path, wheel: Path, output: Path) -> None:
    import venv_pack

    subprocess.run([*_pip(venv), "--no-deps", "--force-reinstall", str(wheel)], check=True)
    # a real import, with the pyspark a cluster provides (its zips), before we ship it
    lib = spark_home() / "python" / "lib"
    probe = "import fruitspark.featurize, onnxruntime, pyarrow, pandas, pyspark; print('ok')"
    subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        check=True,
        env={"PYTHONPATH": os.pathsep.join(str(z) for z in sorted(lib.glob("*.zip")))},
        cwd=output.parent,
        stdout=subprocess.DEVNULL,
    )
    venv_pack.pack(prefix=str(venv), output=str(output), compress_level=1)
    with tarfile.open(output) as archive:
        names = archive.getnames()
    assert "bin/python" in names, "the packed environment has no bin/python"
    assert not any("/site-packages/pyspark/" in name for name in names), "pyspark was packed"


def _prune(cache: Path, pattern: str, keep: Path, count: int) -> None:
    """Keep ``keep`` and the ``count - 1`` most recently used others."""
    found = sorted(cache.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [p for p in found if p != keep][count - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


# --- an EMR 7 node's environment -----------------------------------------------------------

EMR_SPARK = "3.5.6"  # the Spark of EMR 7.12 and 7.13 (fruitspark/cloud/emr_releases.json)


def emr_node_env(cache: Path = CACHE) -> Path:
    """A venv built as ``bootstrap.sh`` builds an EMR node's, next to PySpark ``EMR_SPARK``.

    The same requirement extraction (:func:`node_requirements` on the wheel), binary wheels
    only, then the wheel without its dependencies; EMR's own Spark is stood in for by PyPI's
    pyspark of the same version. Cached under ``cache`` by interpreter and requirements.
    """
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        scratch = cache / f"build-{uuid.uuid4().hex[:8]}"
        try:
            wheel = build_wheel(scratch / "dist")
            requirements = node_requirements(str(wheel))
            key = _key(sys.version, *requirements, EMR_SPARK, _wheel_digest(wheel))
            venv = cache / f"emr-node-{key}"
            if not (venv / "complete").is_file():
                shutil.rmtree(venv, ignore_errors=True)
                subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
                pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
                binary = [*pip, "--only-binary=:all:"]
                subprocess.run([*binary, *requirements], check=True)
                subprocess.run([*pip, f"pyspark=={EMR_SPARK}"], check=True)  # an sdist on PyPI
                subprocess.run([*pip, "--no-deps", str(wheel)], check=True)
                (venv / "complete").write_text("")
            os.utime(venv)
            _prune(cache, "emr-node-*", keep=venv, count=1)
            return venv
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


# --- checking an output -------------------------------------------------------------------


def check_output(output: Path, labels: dict[str, int]) -> dict:
    """Assert the output is complete and right for ``labels`` images; return its summary."""
    summary = json.loads((output / "summary.json").read_text())
    images = sum(labels.values())
    table = pq.read_table(output / "features").to_pydict()
    assert len(table["path"]) == images
    assert len(set(table["path"])) == images
    assert [e for e in table["error"] if e is not None] == []
    assert all(len(f) == FEATURE_DIM for f in table["features"])
    k = summary["pca"]["k"]
    assert k >= 1
    assert all(p is not None and len(p) == k for p in table["pca"])
    assert {label: table["label"].count(label) for label in labels} == labels
    assert sorted(set(table["split"])) == ["test", "train"]
    assert (output / "pca_model").is_dir()
    assert summary["images"]["listed"] == summary["images"]["featurised"] == images
    assert summary["images"]["failed"] == 0
    assert summary["accounting"]["ok"] is True
    assert summary["accounting"]["rows"] == images
    assert summary["model"]["feature_dim"] == FEATURE_DIM
    assert summary["labels"] == labels
    assert not (output / "_staging").exists()
    return summary

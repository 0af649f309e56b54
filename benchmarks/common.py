"""Helpers every benchmark section shares: the run context, process monitoring, fresh-JVM runs.

The machine is shared, so nothing here reports a bare absolute as a verdict: the process monitor
separates the benchmark's own CPU from everyone else's (``others_cores``), sections compare things
measured side by side, and the runner records the machine's load during every section.

Reuse these rather than rewriting them in a section:

- ``Context``: data paths, work dir, master, cores, ``quick``, ``limit``;
- ``ProcessMonitor``: peak RSS/PSS and CPU seconds per role (driver JVM, driver python, python
  daemon, python worker) of one process tree, read from ``/proc``;
- ``fruitspark_run``: ``fruitspark run`` in a fresh JVM, returning the summary's numbers and the
  process stats; ``run_python``: any Python callable in a fresh process (and JVM) with the same;
- ``machine_info``, ``table``, ``median``, ``ratio``, ``wait_for_quiet``, ``log``;
- ``sample_files``, ``class_subset``, ``spread``, ``link_tree``: pick images, build input trees.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULT_MARK = "BENCH_RESULT "


class BenchError(RuntimeError):
    """A measurement could not be taken (a run failed); the section is not saved."""


@dataclass(frozen=True)
class Context:
    """What every section's ``measure(ctx)`` gets: where the data is and how to run."""

    data: Path = DATA_ROOT / "fruits360-sample"
    photos: Path = DATA_ROOT / "photos"
    grocery: Path = DATA_ROOT / "grocery-store"
    work: Path = Path("/tmp/fruitspark-bench")
    master: str = "local[2]"
    cores: int = 2
    quick: bool = False
    limit: int | None = None  # use only about this many images of the sample (whole classes)

    def files(self) -> list[Path]:
        """The sample's images (relative paths), cut to whole classes by ``limit``."""
        files = sample_files(self.data)
        return class_subset(files, self.limit) if self.limit else files

    def input_tree(self, name: str, files: list[Path] | None = None) -> Path:
        """A folder holding exactly ``files`` (default: ``self.files()``), hard-linked; the
        sample itself when nothing is cut."""
        chosen = self.files() if files is None else files
        if len(chosen) == len(sample_files(self.data)):
            return self.data
        target = self.work / "trees" / name
        link_tree(self.data, chosen, target)
        return target


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` rounded to 3 places, or None when either is missing or 0."""
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def log(message: str) -> None:
    stamp = datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp} load {os.getloadavg()[0]:.2f}] {message}", flush=True)


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def mb(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f} MB"


def wait_for_quiet(limit_s: float, threshold: float = 1.5) -> float:
    """Wait up to ``limit_s`` for the 1-minute load average to drop below ``threshold``;
    returns the load average when it stopped waiting."""
    started = time.monotonic()
    while (load := os.getloadavg()[0]) >= threshold and time.monotonic() - started < limit_s:
        log(f"waiting for load < {threshold} ({load:.2f})")
        time.sleep(20)
    return load


# ----------------------------------------------------------------------------------------------
# Picking images and building input trees
# ----------------------------------------------------------------------------------------------


def sample_files(root: Path) -> list[Path]:
    """Every image under ``root``, relative to it, in a fixed order."""
    return sorted(
        path.relative_to(root)
        for path in root.rglob("*")
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    )


def class_subset(files: list[Path], target: int) -> list[Path]:
    """Whole classes (both splits), in name order, until at least ``target`` images."""
    by_class: dict[str, list[Path]] = {}
    for path in files:
        by_class.setdefault(path.parts[-2], []).append(path)
    chosen: list[Path] = []
    for name in sorted(by_class):
        if len(chosen) >= target:
            break
        chosen += by_class[name]
    return sorted(chosen)


def spread(files: list[Path], count: int) -> list[Path]:
    """``count`` files evenly spaced over the list (all classes represented)."""
    if count >= len(files):
        return list(files)
    return [files[(index * len(files)) // count] for index in range(count)]


def link_tree(source: Path, files: list[Path], target: Path, total: int | None = None) -> int:
    """Hard-link ``files`` under ``target`` (as ``c<copy>/<relative path>`` when copies are needed
    to reach ``total`` distinct paths); hard links take no disk space and are not symlinks."""
    shutil.rmtree(target, ignore_errors=True)
    total = total or len(files)
    copies = math.ceil(total / len(files))
    made = 0
    for copy in range(copies):
        for relative in files:
            if made >= total:
                return made
            destination = target / (f"c{copy}" if copies > 1 else "") / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.link(source / relative, destination)
            made += 1
    return made


# ----------------------------------------------------------------------------------------------
# Memory and CPU of a process tree, from /proc
# ----------------------------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as stream:
            return stream.read().decode(errors="replace")
    except OSError:
        return None


def _kb_field(text: str | None, name: str) -> int | None:
    for line in (text or "").splitlines():
        if line.startswith(name):
            return int(line.split()[1])
    return None


def machine_busy_s() -> float:
    """CPU seconds all processes of the machine have used since boot (from /proc/stat)."""
    fields = (_read("/proc/stat") or "cpu 0").splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / TICK


def process_cpu_s(pid: int) -> float:
    stat = _read(f"/proc/{pid}/stat") or ""
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK if fields else 0.0


def _all_stats() -> dict[int, list[str]]:
    """``/proc/<pid>/stat`` fields (after the command name) of every process."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _read(f"/proc/{entry}/stat")):
            stats[int(entry)] = stat[stat.rfind(")") + 2 :].split()
    return stats


def _tree(root: int, stats: dict[int, list[str]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    tree, queue = [], [root]
    while queue:
        pid = queue.pop()
        if pid in stats:
            tree.append(pid)
            queue += children.get(pid, [])
    return tree


def role_of(pid: int, parent: int, root: int) -> str:
    """driver python (the root), driver JVM, python daemon, python worker or other."""
    if pid == root:
        return "driver python"
    command = (_read(f"/proc/{pid}/cmdline") or "").split("\0")
    text = " ".join(command)
    if command and os.path.basename(command[0]) == "java":
        # spark-class first runs a small launcher JVM that prints the real command
        return "other" if "org.apache.spark.launcher.Main" in text else "driver JVM"
    if "pyspark.daemon" in text:
        parent_command = _read(f"/proc/{parent}/cmdline") or ""
        return "python worker" if "pyspark.daemon" in parent_command else "python daemon"
    return "python worker" if "pyspark.worker" in text else "other"


@dataclass
class _Seen:
    role: str
    max_rss_mb: float = 0.0
    max_pss_mb: float = 0.0
    cpu_s: float = 0.0


class ProcessMonitor:
    """Peak RSS/PSS and CPU seconds of every process under ``root`` (itself included), sampled
    from ``/proc`` every ``every`` seconds in a thread; use as a context manager.

    Only descendants of ``root`` count, so other jobs on the machine never do; what they used is
    ``others_cores``: the machine's busy CPU minus this tree's (and this process's own sampling).
    """

    def __init__(self, root: int, every: float = 0.5) -> None:
        self.root, self.every = root, every
        self.processes: dict[int, _Seen] = {}
        self.peak_total_rss_mb = 0.0
        # (time, CPU s by role, machine-wide busy CPU s)
        self.timeline: list[tuple[float, dict[str, float], float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="process-monitor", daemon=True)

    def __enter__(self) -> ProcessMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while True:
            try:
                self.sample()
            except Exception as error:  # a vanished process mid-read must not stop the sampling
                print(f"monitor: {error}", file=sys.stderr)
            if self._stop.wait(self.every):
                return

    def sample(self) -> None:
        stats = _all_stats()
        total = 0.0
        for pid in _tree(self.root, stats):
            rss = _kb_field(_read(f"/proc/{pid}/status"), "VmRSS:")
            if rss is None:
                continue
            pss = _kb_field(_read(f"/proc/{pid}/smaps_rollup"), "Pss:") or 0
            seen = self.processes.setdefault(pid, _Seen("other"))
            if seen.role == "other":  # spark-submit's shell execs java under the same pid
                seen.role = role_of(pid, int(stats[pid][1]), self.root)
            seen.max_rss_mb = max(seen.max_rss_mb, rss / 1024)
            seen.max_pss_mb = max(seen.max_pss_mb, pss / 1024)
            seen.cpu_s = max(seen.cpu_s, (int(stats[pid][11]) + int(stats[pid][12])) / TICK)
            total += rss / 1024
        self.peak_total_rss_mb = max(self.peak_total_rss_mb, total)
        cpu_by_role: dict[str, float] = {}
        for seen in self.processes.values():
            cpu_by_role[seen.role] = cpu_by_role.get(seen.role, 0.0) + seen.cpu_s
        if self.root != os.getpid():  # the sampling's own CPU is not "others"
            cpu_by_role["benchmark"] = time.process_time()
        self.timeline.append((time.monotonic(), cpu_by_role, machine_busy_s()))

    def roles(self) -> dict[str, dict]:
        """Per role: process count, peak RSS and PSS of one process, CPU seconds of all."""
        roles: dict[str, dict] = {}
        for seen in self.processes.values():
            role = roles.setdefault(
                seen.role, {"count": 0, "max_rss_mb": 0.0, "max_pss_mb": 0.0, "cpu_s": 0.0}
            )
            role["count"] += 1
            role["max_rss_mb"] = round(max(role["max_rss_mb"], seen.max_rss_mb), 1)
            role["max_pss_mb"] = round(max(role["max_pss_mb"], seen.max_pss_mb), 1)
            role["cpu_s"] = round(role["cpu_s"] + seen.cpu_s, 2)
        return roles

    def summary(self) -> dict:
        """JSON-serialisable: roles, each worker's peak RSS, total peak RSS, CPU of the whole
        tree, the CPU while the Python workers were busy, others' cores."""
        workers = sorted(
            (round(s.max_rss_mb, 1) for s in self.processes.values() if s.role == "python worker"),
            reverse=True,
        )
        roles = self.roles()
        return {
            "roles": roles,
            "worker_rss_mb": workers,
            "peak_total_rss_mb": round(self.peak_total_rss_mb, 1),
            "cpu_s": round(sum(role["cpu_s"] for name, role in roles.items()), 2),
            "worker_window": self.worker_window(),
            "others_cores": others_cores(self.timeline),
        }

    def worker_window(self) -> dict | None:
        """CPU s by role while the Python workers were busy (first seen to last CPU tick):
        the featurize stage, the only one that runs Python on the executors."""
        busy = [i for i, (_, cpu, _) in enumerate(self.timeline) if cpu.get("python worker")]
        if not busy:
            return None
        last = max(self.timeline[i][1]["python worker"] for i in busy)
        enough = last - max(0.2, 0.002 * last)  # idle workers may still tick a little later
        end = next(i for i in busy if self.timeline[i][1]["python worker"] >= enough)
        window = self.timeline[max(0, busy[0] - 1) : end + 1]
        (start_time, before, _), (end_time, after, _) = window[0], window[-1]
        return {
            "seconds": round(end_time - start_time, 2),
            "cpu_s": {
                role: round(after.get(role, 0.0) - before.get(role, 0.0), 2)
                for role in sorted(set(after) | set(before))
            },
            "others_cores": others_cores(window),
        }


def others_cores(timeline: list[tuple[float, dict[str, float], float]]) -> float | None:
    """Cores used on average by processes outside the monitored tree (the machine is shared)."""
    if len(timeline) < 2:
        return None
    (t0, cpu0, busy0), (t1, cpu1, busy1) = timeline[0], timeline[-1]
    ours = sum(cpu1.values()) - sum(cpu0.values())
    return round(max(0.0, (busy1 - busy0) - ours) / max(t1 - t0, 1e-9), 2)


def role_value(processes: dict, role: str, key: str = "max_rss_mb") -> float:
    """One number of one role from a ``ProcessMonitor.summary()`` (0 when the role is absent)."""
    return processes["roles"].get(role, {}).get(key, 0.0)


class SectionLoad:
    """The machine's load while a section runs: others' cores (everything outside this process
    tree), this tree's cores and the 1-minute load average at both ends."""

    def __enter__(self) -> SectionLoad:
        self._load = os.getloadavg()[0]
        self._monitor = ProcessMonitor(os.getpid(), every=2.0).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._monitor.__exit__(*exc)

    def result(self) -> dict:
        timeline = self._monitor.timeline
        seconds = timeline[-1][0] - timeline[0][0] if len(timeline) > 1 else 0.0
        own = sum(timeline[-1][1].values()) - sum(timeline[0][1].values()) if seconds else 0.0
        return {
            "seconds": round(seconds, 1),
            "others_cores": others_cores(timeline),
            "own_cores": round(own / seconds, 2) if seconds else None,
            "loadavg_start": round(self._load, 2),
            "loadavg_end": round(os.getloadavg()[0], 2),
        }


# ----------------------------------------------------------------------------------------------
# Fresh processes: `fruitspark run`, or any Python callable
# ----------------------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """This environment (PYTHONPATH included) without the variables that would change a run."""
    env = dict(os.environ)
    for name in ("FRUITSPARK_MASTER", "FRUITSPARK_LOG_LEVEL", "FRUITSPARK_TEST_KILL_PARTITION"):
        env.pop(name, None)
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    return env


def monitored(command: list[str], log_file: Path, stdout=None) -> tuple[int, float, dict, str]:
    """Run ``command``, watching its process tree; returns (exit code, wall s, process stats,
    stdout when ``stdout`` is ``subprocess.PIPE``). Its stderr (and stdout otherwise) go to
    ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log_file, "w") as stream:
        process = subprocess.Popen(
            command,
            stdout=stdout or stream,
            stderr=stream if stdout else subprocess.STDOUT,
            env=child_env(),
            text=True,
            cwd=Path(__file__).resolve().parents[1],  # so that ``benchmarks`` imports
        )
        with ProcessMonitor(process.pid) as monitor:
            out, _ = process.communicate()
    return process.returncode, time.perf_counter() - started, monitor.summary(), out or ""


def summary_numbers(summary: dict) -> dict:
    """The numbers benchmarks read from a run's ``summary.json``: the one place that knows its
    schema (adapt here when the schema changes)."""
    stages = dict(summary["stages"])
    return {
        "images": summary["images"]["listed"],
        "featurised": summary["images"]["featurised"],
        "failed": summary["images"]["failed"],
        "accounting_ok": summary["accounting"]["ok"],
        "stages": stages,
        "featurize_images_per_s": summary["throughput_images_per_s"],
        "settings": summary["settings"],
        "pca_k": summary["pca"]["k"],
    }


def fruitspark_run(ctx: Context, input_uri: Path | str, name: str, extra: Sequence[str] = ()):
    """``fruitspark run INPUT OUT --master M --overwrite EXTRA`` in a fresh JVM.

    Returns the summary's numbers (``summary_numbers``) plus ``name``, ``arguments``,
    ``wall_s``, ``wall_images_per_s`` and ``processes`` (``ProcessMonitor.summary()`` of the
    command's tree: peak RSS and CPU per role, others' cores). Raises BenchError if it fails.
    """
    output = ctx.work / "out" / name
    log_file = ctx.work / "logs" / f"{name}.log"
    command = [sys.executable, "-m", "fruitspark.cli", "run", str(input_uri), str(output)]
    command += ["--master", ctx.master, "--overwrite", *extra]
    log(f"run {name}: {' '.join(command[3:])}")
    code, wall, processes, _ = monitored(command, log_file)
    if code != 0:
        raise BenchError(f"fruitspark run {name} exited {code}; see {log_file}")
    numbers = summary_numbers(json.loads((output / "summary.json").read_text()))
    shutil.rmtree(output, ignore_errors=True)
    log(f"run {name}: {numbers['images']} images, {wall:.1f} s wall")
    return {
        "name": name,
        "arguments": list(extra),
        **numbers,
        "wall_s": round(wall, 2),
        "wall_images_per_s": round(numbers["images"] / wall, 2),
        "processes": processes,
    }


def run_python(ctx: Context, target: str, arguments: Sequence[str], name: str) -> dict:
    """Call ``module:function(*arguments)`` in a fresh Python process (so a fresh JVM if it
    starts Spark); the function returns a JSON-serialisable dict. Returns that dict plus
    ``wall_s`` and ``processes`` (as ``fruitspark_run``)."""
    module, function = target.split(":")
    code = (
        f"import json, {module} as m; "
        f"print({RESULT_MARK!r} + json.dumps(m.{function}(*{list(arguments)!r})), flush=True)"
    )
    log(f"{name}: {target} {' '.join(arguments)}")
    log_file = ctx.work / "logs" / f"{name}.log"
    command = [sys.executable, "-c", code]
    returncode, wall, processes, out = monitored(command, log_file, stdout=subprocess.PIPE)
    lines = [line for line in out.splitlines() if line.startswith(RESULT_MARK)]
    if returncode != 0 or not lines:
        raise BenchError(f"{name} exited {returncode}; see {log_file}\n{out[-2000:]}")
    result = json.loads(lines[-1][len(RESULT_MARK) :])
    return {**result, "wall_s": round(wall, 2), "processes": processes}


def cpu_ms_per_image(run: dict, window: bool = False) -> dict[str, float]:
    """CPU ms per image by role (and ``all``) of a ``fruitspark_run``/``run_python`` result:
    over the whole run, or only while the Python workers were busy (``window``)."""
    processes = run["processes"]
    images = max(run["images"], 1)
    if window:
        cpu = (processes.get("worker_window") or {"cpu_s": {}})["cpu_s"]
    else:
        cpu = {role: entry["cpu_s"] for role, entry in processes["roles"].items()}
    cpu = {role: seconds for role, seconds in cpu.items() if role != "benchmark"}
    per_image = {role: round(1000 * seconds / images, 2) for role, seconds in cpu.items()}
    per_image["all"] = round(1000 * sum(cpu.values()) / images, 2)
    return per_image


# ----------------------------------------------------------------------------------------------
# The machine
# ----------------------------------------------------------------------------------------------


def machine_info() -> dict:
    """CPU, RAM, OS and the versions that matter, JSON-serialisable."""
    import numpy
    import onnxruntime
    import PIL
    import pyspark

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = {
        key.strip(): value.strip()
        for key, _, value in (line.partition(":") for line in lscpu.splitlines())
    }
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    return {
        "cpu": fields.get("Model name", platform.processor()),
        "cpus": os.cpu_count(),
        "ram_gb": round((_kb_field(_read("/proc/meminfo"), "MemTotal:") or 0) / 1024**2, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "spark": pyspark.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "java": java.splitlines()[0] if java else "?",
    }

"""Speed and memory of fruitspark on this machine, measured in one run, written to BENCHMARKS.md.

    python benchmarks/bench.py --data ../shared/data/fruits360-sample \
        --photos ../shared/data/photos --out BENCHMARKS.md [--quick]

What it measures (``--quick`` skips the naive baseline and the 50k-image load):

- ceiling: the bare model (``new_session`` + ``embed``) on pre-decoded 224 px tensors outside
  Spark, for 1-2 processes x 1-2 ORT threads x batch 1-32; three windows per layout, median;
- decode: ``decode_image`` + ``resize_square`` + ``to_tensor`` + ``colour_histogram`` per core;
- Python work without Spark: ``describe_images`` (what a task runs) in two processes;
- end to end: ``fruitspark run`` in ``local[2]`` in a fresh JVM on the whole sample, with the peak
  RSS and CPU time of the driver JVM, the driver Python and each Python worker (``/proc``, 0.5 s);
- scaling (~1k, ~4k, all images), tuning knobs (~2k images), 5k vs 50k images (hard links);
- naive: the textbook Iterator pandas UDF over ``binaryFile`` with default Spark settings;
- reduced-size JPEG decoding (draft mode) against full decoding: time and CNN-feature cosine;
- PCA: ``fit_pca`` on 100k x 1280 synthetic features in ``local[2]``.

Results also go to ``/tmp/fruitspark-bench/results.json``; ``--render-only FILE`` rewrites the
Markdown from such a file without measuring anything.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fruitspark.decode import decode_image
from fruitspark.featurize import FeaturizeOptions, describe_images
from fruitspark.formats import IMAGE_SUFFIXES
from fruitspark.model import ModelSpec, embed, new_session, resolve_model
from fruitspark.preprocess import colour_histogram, resize_square, to_tensor
from fruitspark.sources import images_per_partition

WORK = Path("/tmp/fruitspark-bench")
LOAD_ROOT = Path("/tmp/fruitspark-50k")
MASTER = "local[2]"
CORES = 2  # the layout benchmarked: local[2], two Python workers
CEILING_PROCESSES = (1, 2)
CEILING_THREADS = (1, 2)
CEILING_BATCHES = (1, 4, 8, 16, 32)
WINDOWS = 3  # every short measurement is repeated (or windowed) three times; medians reported
PIPELINE_BATCH = FeaturizeOptions.batch_size
PIPELINE_ROWS = 64  # RunConfig.rows_per_arrow_batch
RESULT_MARK = "BENCH_RESULT "
PCA_RANK = 64  # synthetic features: a rank-64 signal plus noise, so k at 95 % is meaningful
TUNING = (  # name, extra CLI arguments
    ("defaults (batch 8, 64 rows/Arrow batch, auto partitions)", ()),
    ("--batch-size 1", ("--batch-size", "1")),
    ("--batch-size 32", ("--batch-size", "32")),
    ("--rows-per-arrow-batch 16", ("--rows-per-arrow-batch", "16")),
    ("--rows-per-arrow-batch 1024", ("--rows-per-arrow-batch", "1024")),
    ("--images-per-partition 100", ("--images-per-partition", "100")),
    ("--threads-per-task 2 (4 threads on 2 cores)", ("--threads-per-task", "2")),
)


class BenchError(RuntimeError):
    pass


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def log(message: str) -> None:
    stamp = datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp} load {os.getloadavg()[0]:.2f}] {message}", flush=True)


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


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("FRUITSPARK_MASTER", "FRUITSPARK_LOG_LEVEL", "FRUITSPARK_TEST_KILL_PARTITION"):
        env.pop(name, None)
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    return env


# ----------------------------------------------------------------------------------------------
# Memory and CPU of a process tree, from /proc
# ----------------------------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as stream:
            return stream.read().decode(errors="replace")
    except OSError:
        return None


def machine_busy_s() -> float:
    """CPU seconds all processes of the machine have used since boot (from /proc/stat)."""
    fields = (_read("/proc/stat") or "cpu 0").splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    stat = _read(f"/proc/{pid}/stat") or ""
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else 0.0


def _kb_field(text: str | None, name: str) -> int | None:
    for line in (text or "").splitlines():
        if line.startswith(name):
            return int(line.split()[1])
    return None


class ProcessMonitor:
    """Peak RSS/PSS and CPU seconds of every process under ``root`` (itself included).

    Only descendants of ``root`` are looked at, so other Spark jobs on the machine never count.
    Roles: the root is the driver Python; ``java`` the driver JVM (also the executor in local
    mode); ``pyspark.daemon`` the worker factory; its forked children the Python workers.
    """

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, root: int, every: float = 0.5) -> None:
        self.root, self.every = root, every
        self.processes: dict[int, dict] = {}
        self.peak_total_rss_mb = 0.0
        # (time, CPU s by role, machine-wide busy CPU s): what others used is the difference
        self.timeline: list[tuple[float, dict[str, float], float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-monitor", daemon=True)

    def __enter__(self) -> ProcessMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            try:
                self.sample()
            except Exception as error:  # a vanished process mid-read must not stop the sampling
                print(f"monitor: {error}", file=sys.stderr)
            if self._stop.wait(self.every):
                return

    def sample(self) -> None:
        children: dict[int, list[int]] = {}
        stats: dict[int, list[str]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            stat = _read(f"/proc/{entry}/stat")
            if not stat:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            stats[int(entry)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry))
        tree, queue = [], [self.root]
        while queue:
            pid = queue.pop()
            if pid in stats:
                tree.append(pid)
                queue += children.get(pid, [])
        total = 0.0
        for pid in tree:
            rss = _kb_field(_read(f"/proc/{pid}/status"), "VmRSS:")
            if rss is None:
                continue
            pss = _kb_field(_read(f"/proc/{pid}/smaps_rollup"), "Pss:")
            fields = stats[pid]
            cpu = (int(fields[11]) + int(fields[12])) / self.TICK
            entry = self.processes.setdefault(
                pid, {"role": "other", "max_rss_mb": 0.0, "max_pss_mb": 0.0, "cpu_s": 0.0}
            )
            if entry["role"] == "other":  # spark-submit's shell execs java under the same pid
                entry["role"] = self._role(pid, int(fields[1]))
            entry["max_rss_mb"] = max(entry["max_rss_mb"], rss / 1024)
            entry["max_pss_mb"] = max(entry["max_pss_mb"], (pss or 0) / 1024)
            entry["cpu_s"] = max(entry["cpu_s"], cpu)
            total += rss / 1024
        self.peak_total_rss_mb = max(self.peak_total_rss_mb, total)
        cpu_by_role: dict[str, float] = {}
        for entry in self.processes.values():
            cpu_by_role[entry["role"]] = cpu_by_role.get(entry["role"], 0.0) + entry["cpu_s"]
        if self.root != os.getpid():  # this benchmark's own CPU (the sampling) is not "others"
            cpu_by_role["benchmark"] = time.process_time()
        self.timeline.append((time.monotonic(), cpu_by_role, machine_busy_s()))

    def _role(self, pid: int, parent: int) -> str:
        if pid == self.root:
            return "driver python"
        command = (_read(f"/proc/{pid}/cmdline") or "").split("\0")
        parent_command = _read(f"/proc/{parent}/cmdline") or ""
        text = " ".join(command)
        if command and os.path.basename(command[0]) == "java":
            # spark-class first runs a small launcher JVM that prints the real command
            return "other" if "org.apache.spark.launcher.Main" in text else "driver JVM"
        if "pyspark.daemon" in text:
            return "python worker" if "pyspark.daemon" in parent_command else "python daemon"
        if "pyspark.worker" in text:
            return "python worker"
        return "other"

    def summary(self) -> dict:
        roles: dict[str, dict] = {}
        for entry in self.processes.values():
            role = roles.setdefault(
                entry["role"], {"count": 0, "max_rss_mb": 0.0, "max_pss_mb": 0.0, "cpu_s": 0.0}
            )
            role["count"] += 1
            role["max_rss_mb"] = round(max(role["max_rss_mb"], entry["max_rss_mb"]), 1)
            role["max_pss_mb"] = round(max(role["max_pss_mb"], entry["max_pss_mb"]), 1)
            role["cpu_s"] = round(role["cpu_s"] + entry["cpu_s"], 1)
        workers = sorted(
            (
                round(e["max_rss_mb"], 1)
                for e in self.processes.values()
                if e["role"] == "python worker"
            ),
            reverse=True,
        )
        return {
            "roles": roles,
            "worker_rss_mb": workers,
            "peak_total_rss_mb": round(self.peak_total_rss_mb, 1),
            "worker_window": self.worker_window(),
            "others_cores": self.others_cores(self.timeline),
        }

    @staticmethod
    def others_cores(timeline: list) -> float | None:
        """Cores used on average by processes outside the monitored tree (the machine is shared)."""
        if len(timeline) < 2:
            return None
        (t0, cpu0, busy0), (t1, cpu1, busy1) = timeline[0], timeline[-1]
        ours = sum(cpu1.values()) - sum(cpu0.values())
        return round(max(0.0, (busy1 - busy0) - ours) / max(t1 - t0, 1e-9), 2)

    def worker_window(self) -> dict | None:
        """CPU s by role while the Python workers were busy (first seen to last CPU tick):
        the featurize stage, the only one that runs Python on the executors."""
        indices = [
            index
            for index, (_, cpu, _) in enumerate(self.timeline)
            if cpu.get("python worker", 0.0) > 0
        ]
        if not indices:
            return None
        last = max(self.timeline[index][1]["python worker"] for index in indices)
        enough = last - max(0.2, 0.002 * last)  # idle workers may still tick a little later
        end = next(i for i in indices if self.timeline[i][1]["python worker"] >= enough)
        window = self.timeline[max(0, indices[0] - 1) : end + 1]
        (start_time, before, _), (end_time, after, _) = window[0], window[-1]
        return {
            "seconds": round(end_time - start_time, 2),
            "cpu_s": {
                role: round(after.get(role, 0.0) - before.get(role, 0.0), 1)
                for role in sorted(set(after) | set(before))
            },
            "others_cores": self.others_cores(window),
        }


# ----------------------------------------------------------------------------------------------
# Persistent benchmark worker processes (ceiling, Python work without Spark)
# ----------------------------------------------------------------------------------------------


def _pool_worker(conn, spec: ModelSpec, tensors_file: str) -> None:
    """Serve timing requests; sessions are cached per thread count, as in a Spark worker."""
    model_bytes = Path(spec.path).read_bytes()
    tensors = np.load(tensors_file)
    sessions: dict[int, object] = {}
    arrays: list[np.ndarray] = []
    batch = 1
    session = None
    contents: list[bytes] = []

    def session_for(threads: int):
        if threads not in sessions:
            sessions[threads] = new_session(model_bytes, threads)
        return sessions[threads]

    while True:
        message = conn.recv()
        kind = message[0]
        if kind == "stop":
            return
        if kind == "prepare":  # ("prepare", threads, batch): session + batches + warm-up
            _, threads, batch = message
            session = session_for(threads)
            arrays = [
                np.ascontiguousarray(tensors[start : start + batch])
                for start in range(0, len(tensors) - batch + 1, batch)
            ]
            for array in arrays[:2]:
                embed(session, spec, array)
            conn.send("ready")
        elif kind == "infer":  # ("infer", start, duration): batches until start + duration
            _, start, duration = message
            time.sleep(max(0.0, start - time.monotonic()))
            records = []
            index = 0
            while (begin := time.monotonic()) < start + duration:
                embed(session, spec, arrays[index % len(arrays)])
                records.append((begin, time.monotonic(), batch))
                index += 1
            conn.send(records)
        elif kind == "load":  # ("load", paths): image bytes into memory
            contents = [Path(path).read_bytes() for path in message[1]]
            conn.send("ready")
        elif kind == "describe":  # ("describe", batch, threads, rows, start): as a task does
            _, batch_size, threads, rows, start = message
            options = FeaturizeOptions(batch_size=batch_size, threads=threads)
            session = session_for(threads)
            describe_images(contents[:rows], session, spec, options)  # warm-up
            time.sleep(max(0.0, start - time.monotonic()))
            begin = time.monotonic()
            for offset in range(0, len(contents), rows):
                describe_images(contents[offset : offset + rows], session, spec, options)
            conn.send((begin, time.monotonic(), len(contents)))


class Pool:
    """Two spawned processes that run timed requests started at the same instant."""

    def __init__(self, spec: ModelSpec, tensors_file: Path, size: int = CORES) -> None:
        context = multiprocessing.get_context("spawn")
        self.connections, self.processes = [], []
        for _ in range(size):
            parent, child = context.Pipe()
            process = context.Process(
                target=_pool_worker, args=(child, spec, str(tensors_file)), daemon=True
            )
            process.start()
            self.connections.append(parent)
            self.processes.append(process)

    def ask(self, count: int, message: tuple) -> list:
        for connection in self.connections[:count]:
            connection.send(message)
        return [connection.recv() for connection in self.connections[:count]]

    def cpu_s(self) -> float:
        return sum(process_cpu_s(process.pid) for process in self.processes)

    def close(self) -> None:
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.send(("stop",))
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()


def window_rates(records: list[list[tuple]], start: float, duration: float) -> list[float]:
    """Images/s in each of WINDOWS equal windows; a batch counts pro rata of its overlap."""
    edges = [start + duration * index / WINDOWS for index in range(WINDOWS + 1)]
    rates = []
    for low, high in itertools.pairwise(edges):
        done = 0.0
        for worker in records:
            for begin, end, count in worker:
                overlap = max(0.0, min(end, high) - max(begin, low))
                done += count * overlap / max(end - begin, 1e-9)
        rates.append(done / (high - low))
    return rates


def make_tensors(data: Path, files: list[Path], spec: ModelSpec, count: int = 64) -> Path:
    tensors = [
        to_tensor(
            resize_square(decode_image((data / path).read_bytes(), min_side=spec.input_size), 224),
            spec.normalisation,
        )
        for path in spread(files, count)
    ]
    target = WORK / "tensors.npy"
    np.save(target, np.stack(tensors))
    return target


def bench_ceiling(pool: Pool, seconds: float) -> dict:
    rows = []
    for processes in CEILING_PROCESSES:
        for threads in CEILING_THREADS:
            for batch in CEILING_BATCHES:
                pool.ask(processes, ("prepare", threads, batch))
                start = time.monotonic() + 0.2
                busy, ours = machine_busy_s(), pool.cpu_s()
                records = pool.ask(processes, ("infer", start, seconds))
                others = (machine_busy_s() - busy - (pool.cpu_s() - ours)) / (seconds + 0.2)
                rates = window_rates(records, start, seconds)
                rows.append(
                    {
                        "processes": processes,
                        "threads": threads,
                        "batch": batch,
                        "images_per_s": round(median(rates), 2),
                        "windows": [round(rate, 2) for rate in rates],
                        "others_cores": round(max(0.0, others), 2),
                    }
                )
                log(f"ceiling {processes} proc x {threads} thr, batch {batch}: {median(rates):.1f}")
    best = max(rows, key=lambda row: row["images_per_s"])
    pipeline = next(
        row
        for row in rows
        if (row["processes"], row["threads"], row["batch"]) == (CORES, 1, PIPELINE_BATCH)
    )
    return {"seconds_per_config": seconds, "rows": rows, "best": best, "pipeline_layout": pipeline}


def bench_ceiling_check(pool: Pool, ceiling: dict, args: argparse.Namespace) -> dict:
    """The best and the pipeline's layouts again, right after the end-to-end run: if the shared
    machine got busier or quieter meanwhile, the two measurements disagree."""
    check = {}
    for name in ("best", "pipeline_layout"):
        row = ceiling[name]
        pool.ask(row["processes"], ("prepare", row["threads"], row["batch"]))
        start = time.monotonic() + 0.2
        records = pool.ask(row["processes"], ("infer", start, args.ceiling_seconds))
        check[name] = round(median(window_rates(records, start, args.ceiling_seconds)), 2)
        log(f"ceiling re-check {name}: {check[name]:.1f} (was {row['images_per_s']:.1f})")
    return check


def bench_python_work(pool: Pool, data: Path, files: list[Path], count: int) -> dict:
    """describe_images (decode, preprocess, model, colour) in two processes: no Spark at all."""
    chosen = spread(files, count)
    halves = [chosen[index::CORES] for index in range(CORES)]
    for connection, half in zip(pool.connections, halves, strict=True):
        connection.send(("load", [str(data / path) for path in half]))
    for connection in pool.connections:
        connection.recv()
    rates = []
    for _ in range(WINDOWS):
        start = time.monotonic() + 0.5
        results = pool.ask(CORES, ("describe", PIPELINE_BATCH, 1, PIPELINE_ROWS, start))
        rates.append(sum(r[2] for r in results) / (max(r[1] for r in results) - start))
    log(f"python work without Spark: {median(rates):.1f} images/s")
    return {
        "images": len(chosen),
        "processes": CORES,
        "batch": PIPELINE_BATCH,
        "threads": 1,
        "images_per_s": round(median(rates), 2),
        "runs": [round(rate, 2) for rate in rates],
    }


# ----------------------------------------------------------------------------------------------
# Decode and reduced-size JPEG decoding (in this process)
# ----------------------------------------------------------------------------------------------


def bench_decode(data: Path, files: list[Path], spec: ModelSpec, count: int) -> dict:
    contents = [(data / path).read_bytes() for path in spread(files, count)]
    size, norm = spec.input_size, spec.normalisation
    runs = []
    for _ in range(WINDOWS):
        parts = {"decode": 0.0, "resize_square": 0.0, "to_tensor": 0.0, "colour_histogram": 0.0}
        for content in contents:
            t0 = time.perf_counter()
            image = decode_image(content, min_side=size)
            t1 = time.perf_counter()
            square = resize_square(image, size)
            t2 = time.perf_counter()
            to_tensor(square, norm)
            t3 = time.perf_counter()
            colour_histogram(image)
            t4 = time.perf_counter()
            parts["decode"] += t1 - t0
            parts["resize_square"] += t2 - t1
            parts["to_tensor"] += t3 - t2
            parts["colour_histogram"] += t4 - t3
        runs.append(parts)
    totals = [sum(parts.values()) for parts in runs]
    chosen = runs[totals.index(sorted(totals)[len(totals) // 2])]
    rate = len(contents) / median(totals)
    log(f"decode + preprocess: {rate:.0f} images/s per core")
    return {
        "images": len(contents),
        "images_per_s_per_core": round(rate, 1),
        "runs_images_per_s": [round(len(contents) / total, 1) for total in totals],
        "ms_per_image": {
            name: round(1000 * value / len(contents), 3) for name, value in chosen.items()
        },
    }


def make_12mp(photos: Path, count: int = 3) -> list[Path]:
    """Upscale the largest small photos to 4000x3000 and save them as JPEG quality 90."""
    candidates = []
    for path in sorted(photos.rglob("*")):
        if path.is_file() and path.suffix.lower() in (".jpg", ".jpeg"):
            with Image.open(path) as image:
                if image.format == "JPEG" and image.width * image.height < 8_000_000:
                    candidates.append((image.width * image.height, path))
    target = WORK / "12mp"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    made = []
    for _, path in sorted(candidates, reverse=True)[:count]:
        image = decode_image(path.read_bytes())
        destination = target / f"{path.stem}-4000x3000.jpg"
        image.resize((4000, 3000), Image.Resampling.BICUBIC).save(destination, quality=90)
        made.append(destination)
    return made


def _time_decode(data: bytes, min_side: int | None, size: int) -> tuple[float, Image.Image]:
    times, result = [], None
    for _ in range(WINDOWS):
        started = time.perf_counter()
        image = decode_image(data, min_side=min_side)
        result = resize_square(image, size)
        times.append(time.perf_counter() - started)
    return median(times), result


def bench_jpeg(photos: Path, spec: ModelSpec) -> dict:
    session = new_session(Path(spec.path).read_bytes(), threads=1)
    groups = {
        "photos folder": sorted(
            p for p in photos.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        ),
        "generated 12 MP JPEG (q90)": make_12mp(photos),
    }
    result = {}
    for group, paths in groups.items():
        rows = []
        for path in paths:
            data = path.read_bytes()
            with Image.open(path) as probe:
                kind, width, height = probe.format, probe.width, probe.height
            decode_image(data, min_side=spec.input_size)  # warm caches
            full_s, full = _time_decode(data, None, spec.input_size)
            reduced_s, reduced = _time_decode(data, spec.input_size, spec.input_size)
            drafted = decode_image(data, min_side=spec.input_size).size
            tensors = np.stack([to_tensor(image, spec.normalisation) for image in (full, reduced)])
            features = embed(session, spec, tensors).astype(np.float64)
            cosine = float(
                features[0]
                @ features[1]
                / (np.linalg.norm(features[0]) * np.linalg.norm(features[1]))
            )
            rows.append(
                {
                    "file": str(path.relative_to(path.parents[1])),
                    "format": kind,
                    "size": f"{width}x{height}",
                    "decoded_as": f"{drafted[0]}x{drafted[1]}",
                    "full_ms": round(1000 * full_s, 2),
                    "reduced_ms": round(1000 * reduced_s, 2),
                    "speedup": round(full_s / reduced_s, 2),
                    "cosine": round(cosine, 5),
                }
            )
        full_total = sum(row["full_ms"] for row in rows)
        reduced_total = sum(row["reduced_ms"] for row in rows)
        cosines = [row["cosine"] for row in rows]
        big = [row for row in rows if row["format"] in ("JPEG", "MPO") and _pixels(row) >= 8e6]
        result[group] = {
            "rows": rows,
            "full_ms_total": round(full_total, 1),
            "reduced_ms_total": round(reduced_total, 1),
            "speedup_total": round(full_total / reduced_total, 2),
            "speedup_12mp_median": round(median([r["speedup"] for r in big]), 2) if big else None,
            "cosine_min": min(cosines),
            "cosine_median": round(median(cosines), 5),
        }
        log(f"JPEG {group}: {full_total / reduced_total:.1f}x faster, cosine >= {min(cosines)}")
    return result


def _pixels(row: dict) -> float:
    width, height = (int(part) for part in row["size"].split("x"))
    return width * height


# ----------------------------------------------------------------------------------------------
# End to end: `fruitspark run` in a fresh JVM
# ----------------------------------------------------------------------------------------------


def fruitspark_run(input_uri: Path | str, name: str, extra: Sequence[str] = ()) -> dict:
    output = WORK / "out" / name
    log_file = WORK / "logs" / f"{name}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "fruitspark.cli",
        "run",
        str(input_uri),
        str(output),
        "--master",
        MASTER,
        "--overwrite",
        *extra,
    ]
    log(f"run {name}: {' '.join(command[3:])}")
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with open(log_file, "w") as stream:
        process = subprocess.Popen(
            command, stdout=stream, stderr=subprocess.STDOUT, env=child_env()
        )
        with ProcessMonitor(process.pid) as monitor:
            code = process.wait()
    wall = time.perf_counter() - started
    if code != 0:
        raise BenchError(f"fruitspark run {name} exited {code}; see {log_file}")
    summary = json.loads((output / "summary.json").read_text())
    shutil.rmtree(output, ignore_errors=True)
    images = summary["images"]["listed"]
    featurize_s = summary["stages"]["featurize"]
    result = {
        "name": name,
        "arguments": list(extra),
        "images": images,
        "featurised": summary["images"]["featurised"],
        "failed": summary["images"]["failed"],
        "accounting_ok": summary["accounting"]["ok"],
        "wall_s": round(wall, 2),
        "stages": summary["stages"],
        "featurize_images_per_s": summary["throughput_images_per_s"],
        "wall_images_per_s": round(images / wall, 2),
        "wall_s_per_image": wall / images,
        "featurize_s_per_image": featurize_s / images,
        "settings": summary["settings"],
        "pca_k": summary["pca"]["k"],
        "memory": monitor.summary(),
        "load_before": round(load_before, 2),
    }
    log(
        f"run {name}: {images} images, {wall:.1f} s wall, featurize "
        f"{summary['throughput_images_per_s']:.1f} images/s, "
        f"{summary['settings']['featurize_partitions']} partitions"
    )
    return result


def run_child(mode: str, arguments: Sequence[str], name: str) -> dict:
    """Run this script in ``mode`` in a fresh process (and JVM); its last result line is JSON."""
    log_file = WORK / "logs" / f"{name}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), mode, *arguments]
    log(f"{name}: {' '.join(command[1:])}")
    started = time.perf_counter()
    with open(log_file, "w") as stream:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stream, env=child_env(), text=True
        )
        with ProcessMonitor(process.pid) as monitor:
            out, _ = process.communicate()
    wall = time.perf_counter() - started
    lines = [line for line in out.splitlines() if line.startswith(RESULT_MARK)]
    if process.returncode != 0 or not lines:
        raise BenchError(f"{name} exited {process.returncode}; see {log_file}\n{out[-2000:]}")
    result = json.loads(lines[-1][len(RESULT_MARK) :])
    result["wall_s"] = round(wall, 2)
    result["memory"] = monitor.summary()
    return result


# ----------------------------------------------------------------------------------------------
# Child modes: the naive pandas UDF, and PCA on synthetic features
# ----------------------------------------------------------------------------------------------


def child_naive(input_dir: str, output: str) -> dict:
    """The textbook featurisation (Databricks' "featurization for transfer learning" notebook).

    Default Spark settings: no maxPartitionBytes/openCostInBytes tuning, Arrow batches of 10000
    rows; the model is broadcast and loaded once per partition in an Iterator pandas UDF with
    ONNX Runtime's default session options (every core, per session); the same preprocessing.
    """
    import onnxruntime as ort
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import col, pandas_udf

    spec = resolve_model()
    spark = (
        SparkSession.builder.master(MASTER)
        .appName("naive-pandas-udf")
        .config("spark.pyspark.python", sys.executable)
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    context = spark.sparkContext
    broadcast_model = context.broadcast(Path(spec.path).read_bytes())
    loads = context.accumulator(0)

    def preprocess(content: bytes) -> np.ndarray:
        image = decode_image(content, min_side=spec.input_size)
        return to_tensor(resize_square(image, spec.input_size), spec.normalisation)

    def featurize_series(session, content_series: pd.Series) -> pd.Series:
        tensors = np.stack(content_series.map(preprocess))
        predictions = np.concatenate(
            [
                embed(session, spec, tensors[start : start + 32])
                for start in range(0, len(tensors), 32)
            ]
        )  # keras' predict() runs batches of 32
        return pd.Series(list(predictions))

    @pandas_udf("array<float>")
    def featurize_udf(content_series_iter: Iterator[pd.Series]) -> Iterator[pd.Series]:
        session = ort.InferenceSession(broadcast_model.value, providers=["CPUExecutionProvider"])
        loads.add(1)
        for content_series in content_series_iter:
            yield featurize_series(session, content_series)

    images = (
        spark.read.format("binaryFile")
        .option("pathGlobFilter", "*.jpg")
        .option("recursiveFileLookup", "true")
        .load(input_dir)
    )
    partitions = images.rdd.getNumPartitions()
    count = images.count()
    started = time.perf_counter()
    images.select(col("path"), featurize_udf("content").alias("features")).write.mode(
        "overwrite"
    ).parquet(output)
    seconds = time.perf_counter() - started
    written = spark.read.parquet(output).count()
    spark.stop()
    shutil.rmtree(output, ignore_errors=True)
    return {
        "images": count,
        "written": written,
        "partitions": partitions,
        "model_loads": loads.value,
        "featurize_s": round(seconds, 2),
        "images_per_s": round(count / seconds, 2),
        "arrow_batch": 10000,
        "threads_per_session": "ORT default (one per core)",
    }


def _synthetic_features(batches):
    """Rank-64 signal with decaying scales plus noise, 1280-d, generated inside the workers."""
    import pyarrow as pa

    dim = 1280
    basis = np.random.default_rng(0).standard_normal((PCA_RANK, dim)).astype(np.float32)
    basis *= (1.0 / np.arange(1, PCA_RANK + 1, dtype=np.float32))[:, None]
    for batch in batches:
        ids = batch.column(0).to_numpy()
        rng = np.random.default_rng(int(ids[0]) + 1)
        signal = rng.standard_normal((len(ids), PCA_RANK), dtype=np.float32) @ basis
        values = signal + 0.05 * rng.standard_normal((len(ids), dim), dtype=np.float32)
        offsets = pa.array(np.arange(0, len(ids) * dim + 1, dim, dtype=np.int32))
        features = pa.ListArray.from_arrays(offsets, pa.array(values.ravel(), pa.float32()))
        yield pa.RecordBatch.from_arrays([features], names=["features"])


def child_pca(work: str, rows: int) -> dict:
    from fruitspark.reduce import fit_pca
    from fruitspark.session import spark_session

    spark = spark_session(MASTER)
    path = str(Path(work) / "pca-input")
    started = time.perf_counter()
    spark.range(rows, numPartitions=8).mapInArrow(
        _synthetic_features, "features array<float>"
    ).write.mode("overwrite").parquet(path)
    generate_s = time.perf_counter() - started
    frame = spark.read.parquet(path)
    with ProcessMonitor(os.getpid()) as monitor:
        started = time.perf_counter()
        fit = fit_pca(frame, dimension=1280, variance=0.95)
        fit_s = time.perf_counter() - started
    spark.stop()
    shutil.rmtree(path, ignore_errors=True)
    return {
        "rows": rows,
        "dimension": 1280,
        "generate_and_write_s": round(generate_s, 2),
        "fit_s": round(fit_s, 2),
        "k_at_95": fit.k,
        "fit_memory": monitor.summary(),
    }


# ----------------------------------------------------------------------------------------------
# Machine
# ----------------------------------------------------------------------------------------------


def machine() -> dict:
    import onnxruntime
    import pyspark

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in lscpu.splitlines())
    )
    memory_kb = _kb_field(_read("/proc/meminfo"), "MemTotal:") or 0
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    return {
        "cpu": fields.get("Model name", platform.processor()),
        "cpus": os.cpu_count(),
        "cores_per_socket": fields.get("Core(s) per socket"),
        "threads_per_core": fields.get("Thread(s) per core"),
        "ram_gb": round(memory_kb / 1024**2, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "spark": pyspark.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "pillow": Image.__version__,
        "java": java.splitlines()[0] if java else "?",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# ----------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _mb(value: float) -> str:
    return f"{value:,.0f} MB"


def _role(run: dict, role: str, key: str = "max_rss_mb") -> float:
    return run["memory"]["roles"].get(role, {}).get(key, 0.0)


def cpu_per_image(run: dict) -> tuple[float, float]:
    """CPU ms per image of the Python workers and of the JVM while the workers were busy."""
    window = run["memory"].get("worker_window") or {"cpu_s": {}}
    images = max(run["images"], 1)
    cpu = window["cpu_s"]
    return 1000 * cpu.get("python worker", 0.0) / images, 1000 * cpu.get("driver JVM", 0.0) / images


def worker_cpu_ms(run: dict) -> float:
    """Python workers' CPU ms per image over the whole run (they only run the featurize stage)."""
    return 1000 * _role(run, "python worker", "cpu_s") / max(run["images"], 1)


def others(run: dict) -> str:
    value = run["memory"].get("others_cores")
    return "?" if value is None else f"{value:.2f}"


def render(results: dict) -> str:
    m = results["machine"]
    out = [
        "# Benchmarks",
        "",
        f"Measured by `python benchmarks/bench.py {results['command']}` in one run on "
        f"{m['date']}; every number below comes from that run (raw results: "
        f"`{WORK}/results.json`). Short measurements are repeated three times (or split in three "
        "windows) and the median is shown; each end-to-end run is a single `fruitspark run` in a "
        f"fresh JVM on `{MASTER}`, watched through `/proc` every 0.5 s.",
        "",
        table(
            ["machine", ""],
            [
                [
                    "CPU",
                    f"{m['cpu']} ({m['cpus']} vCPU: {m['cores_per_socket']} cores, "
                    f"{m['threads_per_core']} thread/core, KVM)",
                ],
                ["RAM", f"{m['ram_gb']} GB"],
                ["OS", m["os"]],
                [
                    "Python / Spark / ONNX Runtime",
                    f"{m['python']} / {m['spark']} / {m['onnxruntime']}",
                ],
                ["NumPy / Pillow / Java", f"{m['numpy']} / {m['pillow']} / {m['java']}"],
            ],
        ),
        "",
    ]
    out += _render_contention(results)
    out += _render_summary(results)
    sections = (
        ("ceiling", _render_ceiling),
        ("decode", _render_decode),
        ("e2e", _render_e2e),
        ("naive", _render_naive),
        ("scaling", _render_scaling),
        ("jpeg", _render_jpeg),
        ("pca", _render_pca),
        ("tuning", _render_tuning),
        ("load", _render_load),
    )
    for key, renderer in sections:
        if key in results:
            out += renderer(results)
        elif key in ("naive", "load"):
            title = "Naive baseline" if key == "naive" else "50k-image load"
            out += [f"## {title}", "", "Skipped (`--quick`).", ""]
    return "\n".join(out).rstrip() + "\n"


def _runs(r: dict) -> list[tuple[str, dict]]:
    named = [("end to end", r["e2e"])] if "e2e" in r else []
    for key in ("scaling", "tuning", "load"):
        for run in r.get(key, {}).get("runs", []):
            if run["name"] != r.get("e2e", {}).get("name"):
                named.append((f"{key} {run.get('label', run['images'])}", run))
    if "naive" in r:
        named.append(("naive", r["naive"]))
    return named


def _render_contention(r: dict) -> list[str]:
    """The machine is shared: how much CPU other processes took while each part ran."""
    out = []
    if r.get("quiet_note"):
        out += [r["quiet_note"], ""]
    for note in r.get("history", []):  # added by hand to the results: what happened around it
        out += [note, ""]
    ceiling = [row["others_cores"] for row in r.get("ceiling", {}).get("rows", [])]
    runs = [(name, run["memory"].get("others_cores")) for name, run in _runs(r)]
    runs = [(name, value) for name, value in runs if value is not None]
    parts = []
    if ceiling:
        parts.append(f"ceiling {median(ceiling):.2f} (max {max(ceiling):.2f})")
    parts += [f"{name} {value:.2f}" for name, value in runs]
    if parts:
        busy = [name for name, value in runs if value >= 0.25]
        out += [
            "Other processes' CPU use while each part ran, in cores of the 2 (from `/proc/stat` "
            "minus the benchmark's own processes): " + "; ".join(parts) + ".",
            "",
        ]
        if busy:
            out += [
                "Where others took a quarter of a core or more (" + ", ".join(busy) + "), "
                "images/s are understated; the CPU-ms-per-image columns, which count only the "
                "benchmark's own processes, are the fair comparison there.",
                "",
            ]
    return out


def _render_summary(r: dict) -> list[str]:
    rows = []
    ceiling, e2e = r.get("ceiling"), r.get("e2e")
    if ceiling:
        best = ceiling["best"]
        rows.append(
            [
                "ceiling: bare model outside Spark, best layout",
                f"{best['images_per_s']:.1f} images/s ({best['processes']} processes x "
                f"{best['threads']} thread, batch {best['batch']})",
                "",
            ]
        )
    if e2e and ceiling:
        ratio = e2e["featurize_images_per_s"] / ceiling["best"]["images_per_s"]
        rows.append(
            [
                f"end to end, featurize stage ({e2e['images']:,} images)",
                f"{e2e['featurize_images_per_s']:.1f} images/s = **{ratio:.2f} x ceiling**",
                "target >= 0.9: " + ("met" if ratio >= 0.9 else "**not met** (see below)"),
            ]
        )
        rows.append(
            [
                "end to end, whole run",
                f"{e2e['wall_s']:.1f} s wall = {e2e['wall_images_per_s']:.1f} images/s "
                f"({e2e['wall_images_per_s'] / ceiling['best']['images_per_s']:.2f} x ceiling)",
                "",
            ]
        )
    if "naive" in r and e2e:
        naive = r["naive"]
        naive_cpu, fs_cpu = sum(cpu_per_image(naive)), sum(cpu_per_image(e2e))
        rows.append(
            [
                "naive pandas UDF, default settings",
                f"{naive['images_per_s']:.1f} images/s, {naive_cpu:.1f} CPU ms/image",
                f"fruitspark: {e2e['featurize_images_per_s'] / naive['images_per_s']:.2f} x "
                f"the images/s at {fs_cpu / naive_cpu:.2f} x the CPU per image",
            ]
        )
    if "decode" in r:
        rows.append(
            [
                "decode + preprocess (+ colour histogram)",
                f"{r['decode']['images_per_s_per_core']:.0f} images/s per core",
                "",
            ]
        )
    if e2e:
        worst = max(e2e["memory"]["worker_rss_mb"] or [0])
        rows.append(
            [
                "peak RSS during the end-to-end run",
                f"driver JVM {_mb(_role(e2e, 'driver JVM'))}, driver Python "
                f"{_mb(_role(e2e, 'driver python'))}, each Python worker <= {_mb(worst)}",
                "target worker < 1 GB: " + ("met" if worst < 1024 else "**not met**"),
            ]
        )
    if "scaling" in r:
        runs = r["scaling"]["runs"]
        fit = r["scaling"]["fit"]
        per_image = ", ".join(
            f"{1000 * run['wall_s_per_image']:.1f} ms at {run['images']:,}" for run in runs
        )
        rows.append(
            [
                "scaling (wall time per image)",
                per_image,
                f"linear: {fit['slope_ms']:.2f} ms/image + {fit['intercept_s']:.0f} s, "
                f"R^2 {fit['r2']:.3f}",
            ]
        )
    if "jpeg" in r:
        generated = r["jpeg"]["generated 12 MP JPEG (q90)"]
        rows.append(
            [
                "reduced-size decoding of 12 MP JPEGs",
                f"{generated['speedup_total']:.1f} x faster, CNN feature cosine >= "
                f"{generated['cosine_min']:.4f}",
                "target >= 5 x: " + ("met" if generated["speedup_total"] >= 5 else "**not met**"),
            ]
        )
    if "pca" in r:
        pca = r["pca"]
        rows.append(
            [
                f"PCA fit, {pca['rows']:,} x {pca['dimension']}",
                f"{pca['fit_s']:.1f} s; driver JVM peak RSS "
                f"{_mb(_role({'memory': pca['fit_memory']}, 'driver JVM'))}",
                "",
            ]
        )
    if "load" in r:
        small, large = r["load"]["runs"]
        rows.append(
            [
                f"{large['images']:,}-image load",
                f"{1000 * large['wall_s_per_image']:.2f} ms/image wall vs "
                f"{1000 * small['wall_s_per_image']:.2f} at {small['images']:,}; driver JVM "
                f"{_mb(_role(large, 'driver JVM'))} vs {_mb(_role(small, 'driver JVM'))}",
                ("completed, accounting ok" if large["accounting_ok"] else "**accounting failed**"),
            ]
        )
    return ["## Summary", "", table(["measure", "result", "check"], rows), ""]


def _render_ceiling(r: dict) -> list[str]:
    c = r["ceiling"]
    index = {(row["processes"], row["threads"], row["batch"]): row for row in c["rows"]}
    rows = []
    for processes in CEILING_PROCESSES:
        for threads in CEILING_THREADS:
            cells = [
                f"{index[(processes, threads, batch)]['images_per_s']:.1f}"
                for batch in CEILING_BATCHES
            ]
            note = " (oversubscribed)" if processes * threads > CORES else ""
            rows.append([f"{processes} x {threads}{note}", *cells])
    best, pipe = c["best"], c["pipeline_layout"]
    one = max(
        (row for row in c["rows"] if row["processes"] * row["threads"] == 1),
        key=lambda row: row["images_per_s"],
    )
    out = [
        "## Ceiling: the bare model outside Spark",
        "",
        "EfficientNet-Lite0 (`resolve_model()` + `new_session(bytes, threads)` + `embed`, the "
        "pipeline's own session options) on 64 pre-decoded 224x224 tensors of the sample, in "
        "spawned processes that start at the same instant; about "
        f"{c['seconds_per_config']:.0f} s per layout, split in three windows; median images/s of "
        "all processes together:",
        "",
        table(["processes x threads", *(f"batch {b}" for b in CEILING_BATCHES)], rows),
        "",
        f"Best: **{best['images_per_s']:.1f} images/s** with {best['processes']} processes x "
        f"{best['threads']} thread, batch {best['batch']}. One core alone gives "
        f"{one['images_per_s']:.1f} (batch {one['batch']}): {1000 / one['images_per_s']:.2f} ms "
        f"per image, and the two cores scale "
        f"{best['images_per_s'] / one['images_per_s']:.2f} x. The pipeline's layout on `{MASTER}`"
        f" (2 tasks x 1 thread, batch {PIPELINE_BATCH}): {pipe['images_per_s']:.1f} images/s. "
        "On this CPU, batching does not help: per-image cost rises slowly with the batch size "
        "(larger activations, less cache-resident).",
    ]
    check = r.get("ceiling_check")
    if check:
        out.append(
            f"Measured again right after the end-to-end run: {check['best']:.1f} (best layout) and "
            f"{check['pipeline_layout']:.1f} images/s (pipeline layout)."
        )
    return [*out, ""]


def _render_decode(r: dict) -> list[str]:
    d = r["decode"]
    rows = [[name, f"{value:.3f}"] for name, value in d["ms_per_image"].items()]
    rows.append(["**total**", f"{1000 / d['images_per_s_per_core']:.3f}"])
    out = [
        "## Decode and preprocess",
        "",
        f"One process, {d['images']:,} Fruits-360 JPEGs (100x100) already in memory, "
        "`decode_image(min_side=224)` + `resize_square` + `to_tensor` + `colour_histogram`: "
        f"**{d['images_per_s_per_core']:.0f} images/s per core** "
        f"(runs: {', '.join(f'{x:.0f}' for x in d['runs_images_per_s'])}).",
        "",
        table(["step", "ms/image"], rows),
        "",
    ]
    if "python_work" in r:
        p = r["python_work"]
        out += [
            "The whole Python work of a task without Spark, `describe_images` (decode, "
            f"preprocess, model, colour) on {p['images']} images in {p['processes']} processes, "
            f"batch {p['batch']}, 1 thread, in chunks of {PIPELINE_ROWS} rows like the Arrow "
            f"batches: **{p['images_per_s']:.1f} images/s** "
            f"(runs: {', '.join(f'{x:.1f}' for x in p['runs'])}).",
            "",
        ]
    return out


def _memory_rows(run: dict) -> list[list[str]]:
    rows = []
    for role in ("driver JVM", "driver python", "python daemon", "python worker", "other"):
        entry = run["memory"]["roles"].get(role)
        if entry:
            rows.append(
                [
                    role,
                    str(entry["count"]),
                    _mb(entry["max_rss_mb"]),
                    _mb(entry["max_pss_mb"]),
                    f"{entry['cpu_s']:.0f}",
                ]
            )
    return rows


def _stage_rows(run: dict) -> list[list[str]]:
    stages = run["stages"]
    total = stages["total"]
    rows = [
        [name, f"{seconds:.1f}", f"{100 * seconds / total:.0f} %"]
        for name, seconds in stages.items()
        if name != "total"
    ]
    rest = total - sum(seconds for name, seconds in stages.items() if name != "total")
    rows.append(
        ["report + commit (the rest of `total`)", f"{rest:.1f}", f"{100 * rest / total:.0f} %"]
    )
    rows.append(["**total** (summary.json)", f"{total:.1f}", "100 %"])
    rows.append(
        ["wall time of the command (JVM start and exit included)", f"{run['wall_s']:.1f}", ""]
    )
    return rows


def _render_e2e(r: dict) -> list[str]:
    e = r["e2e"]
    c = r.get("ceiling")
    s = e["settings"]
    out = [
        "## End to end",
        "",
        f"`fruitspark run {r['paths']['data']} OUT --master {MASTER} --overwrite` in a fresh JVM: "
        f"{e['images']:,} images ({e['featurised']:,} featurised, {e['failed']} failed, "
        f"accounting {'ok' if e['accounting_ok'] else 'FAILED'}), "
        f"{s['featurize_partitions']} partitions, batch {s['batch_size']}, "
        f"{s['threads_per_task']} ORT thread per task, {s['rows_per_arrow_batch']} rows per Arrow "
        f"batch, {s['model_loads']} model loads (one per Python worker).",
        "",
        table(["stage", "seconds", "share"], _stage_rows(e)),
        "",
        f"Featurize stage: **{e['featurize_images_per_s']:.1f} images/s**; whole run "
        f"{e['wall_images_per_s']:.1f} images/s.",
    ]
    if c:
        best, pipe = c["best"]["images_per_s"], c["pipeline_layout"]["images_per_s"]
        out[-1] += (
            f" Ratio to the ceiling: **{e['featurize_images_per_s'] / best:.2f}** (featurize "
            f"stage) and {e['wall_images_per_s'] / best:.2f} (whole run); to the ceiling at the "
            f"same layout (2 x 1 thread, batch {PIPELINE_BATCH}): "
            f"{e['featurize_images_per_s'] / pipe:.2f}."
        )
    out += [
        "",
        "### Memory and CPU during the run",
        "",
        "Processes under the `fruitspark` command only. A worker's RSS counts the pages it "
        "shares with the daemon it was forked from; PSS splits them. CPU s over the whole run.",
        "",
        table(["process", "count", "peak RSS", "peak PSS", "CPU s"], _memory_rows(e)),
        "",
        "Peak RSS of each Python worker: "
        + ", ".join(_mb(x) for x in e["memory"]["worker_rss_mb"])
        + f"; all processes together peaked at {_mb(e['memory']['peak_total_rss_mb'])}. The JVM "
        "is capped by `spark.driver.memory` (2g by default in fruitspark) plus its off-heap "
        "overhead.",
        "",
    ]
    out += _render_bounds(r)
    return out


def _render_bounds(r: dict) -> list[str]:
    e, c, d, p = r["e2e"], r.get("ceiling"), r.get("decode"), r.get("python_work")
    window = e["memory"].get("worker_window")
    if not (c and d and p and window):
        return []
    best = c["best"]["images_per_s"]
    pipe = c["pipeline_layout"]["images_per_s"]
    decode_ms = 1000 / d["images_per_s_per_core"]
    infer_ms = 1000 * CORES / pipe  # per image, per core, at the pipeline's layout
    best_ms = 1000 * CORES / best
    bound = 1000 * CORES / (best_ms + decode_ms)  # model + decode in series on each core
    feat = e["featurize_images_per_s"]
    worker_ms, jvm_ms = cpu_per_image(e)
    cpu = window["cpu_s"]
    seconds = window["seconds"]
    used = sum(cpu.values())
    monitor = cpu.get("benchmark", 0.0)
    fixed = e["wall_s"] - e["stages"]["featurize"]
    lines = [
        "### What bounds it",
        "",
        f"- **Decoding shares the cores with the model.** Inference costs {best_ms:.2f} ms per "
        f"image per core at the best layout ({infer_ms:.2f} ms at batch {PIPELINE_BATCH}); "
        f"decoding, preprocessing and the colour histogram add {decode_ms:.2f} ms on the same "
        f"cores. Even with no Spark at all, model + decode in series cap the featurize rate at "
        f"{bound:.0f} images/s = **{bound / best:.2f} x the ceiling**: the 0.9 target cannot be "
        "met on a machine where the same two cores decode and infer. `describe_images` in two "
        f"plain processes measures {p['images_per_s']:.1f} images/s "
        f"({p['images_per_s'] / best:.2f} x).",
        f"- **The featurize stage is CPU-bound, and the Python side is lean.** While the Python "
        f"workers were busy ({seconds:.0f} s) the benchmark's processes used {used:.0f} of "
        f"{CORES * seconds:.0f} core-seconds ({100 * used / (CORES * seconds):.0f} %): the workers "
        f"{worker_ms:.2f} CPU ms per image (model + decode alone: {infer_ms + decode_ms:.2f}, so "
        f"Arrow and the rest of the Python side cost {worker_ms - infer_ms - decode_ms:.2f} ms), "
        f"the JVM {jvm_ms:.2f} ms per image (reading the files, Arrow, Parquet, and JIT "
        f"compilation early on), the `/proc` sampling of this benchmark {monitor:.1f} CPU s. "
        f"{worker_ms + jvm_ms:.2f} CPU ms per image on {CORES} cores predicts "
        f"{1000 * CORES / (worker_ms + jvm_ms):.0f} images/s; the stage ran at {feat:.1f} "
        "(partition start-up and model loads, the last tasks' tail).",
        f"- **Outside featurize.** Listing ({e['stages']['list']:.1f} s), PCA "
        f"({e['stages']['pca']:.1f} s), writing ({e['stages']['write']:.1f} s: projecting, the "
        f"final Parquet, the model), accounting ({e['stages']['account']:.1f} s), the report and "
        f"JVM start/exit take {fixed:.1f} s of the {e['wall_s']:.1f} s wall time "
        f"({100 * fixed / e['wall_s']:.0f} %). Part of it is fixed (see Scaling), part grows "
        "with the rows (PCA and write), so the whole run stays well below the featurize rate.",
    ]
    over = [row for row in c["rows"] if row["processes"] * row["threads"] > CORES]
    fit = [row for row in c["rows"] if row["processes"] * row["threads"] == CORES]
    lines.append(
        "- **Tasks x threads must not exceed cores.** 2 processes x 2 threads on 2 cores peak "
        f"at {max(row['images_per_s'] for row in over):.1f} images/s against "
        f"{max(row['images_per_s'] for row in fit):.1f} for the layouts that use each core once "
        "(ONNX Runtime's threads spin while they wait, and two sessions evict each other's "
        "caches). Keep `spark.task.cpus x --threads-per-task` equal to the executor's cores: "
        "the default is one thread per task and one task per core."
    )
    return [*lines, ""]


def _render_naive(r: dict) -> list[str]:
    n = r["naive"]
    e = r.get("e2e")
    nw, nj = cpu_per_image(n)
    rows = [
        ["images", f"{n['images']:,}"],
        ["partitions", n["partitions"]],
        ["model loads", n["model_loads"]],
        ["featurize images/s", f"{n['images_per_s']:.1f}"],
        ["CPU ms/image, Python workers", f"{nw:.2f}"],
        ["CPU ms/image, JVM", f"{nj:.2f}"],
        ["wall s", f"{n['wall_s']:.1f}"],
        ["peak RSS of a Python worker", _mb(max(n["memory"]["worker_rss_mb"] or [0]))],
        ["others' cores during the run", others(n)],
    ]
    if e:
        ew, ej = cpu_per_image(e)
        values = [
            f"{e['images']:,}",
            e["settings"]["featurize_partitions"],
            e["settings"]["model_loads"],
            f"{e['featurize_images_per_s']:.1f}",
            f"{ew:.2f}",
            f"{ej:.2f}",
            f"{e['wall_s']:.1f}",
            _mb(max(e["memory"]["worker_rss_mb"] or [0])),
            others(e),
        ]
        rows = [[*row, value] for row, value in zip(rows, values, strict=True)]
    return [
        "## Naive baseline: the textbook pandas UDF",
        "",
        "The pattern of Databricks' *featurization for transfer learning* notebook: "
        '`spark.read.format("binaryFile")` with default Spark settings, an Iterator '
        "`@pandas_udf` (Series of bytes to Series of arrays) that loads the broadcast model once "
        "per partition, ONNX Runtime's default session options (one thread per core in every "
        "session), default Arrow batches (10000 rows), the same `decode_image` + `resize_square` "
        "+ `to_tensor` (no colour histogram), batches of 32 as keras' `predict`, written to "
        "Parquet; a fresh JVM on the whole sample.",
        "",
        table(["", "naive UDF", "fruitspark run" if e else ""], rows),
        "",
        "The naive job does less (no colour histogram, PCA, accounting or report) and still "
        "costs more CPU per image: Spark's default 4 MB open cost per file packs the small "
        f"images about 31 to a partition ({n['partitions']} partitions), so the model is loaded "
        f"{n['model_loads']} times, and two sessions with a thread per core each oversubscribe "
        "the two cores.",
        "",
    ]


def _render_scaling(r: dict) -> list[str]:
    s = r["scaling"]
    rows = []
    for run in s["runs"]:
        worker_ms, jvm_ms = cpu_per_image(run)
        rows.append(
            [
                f"{run['images']:,}",
                f"{run['wall_s']:.1f}",
                f"{1000 * run['wall_s_per_image']:.2f}",
                f"{run['stages']['featurize']:.1f}",
                f"{run['featurize_images_per_s']:.1f}",
                f"{worker_ms:.2f} + {jvm_ms:.2f}",
                f"{run['stages']['pca']:.1f}",
                f"{run['stages']['write']:.1f}",
                f"{run['wall_s'] - run['stages']['featurize']:.1f}",
                others(run),
            ]
        )
    fit = s["fit"]
    marginal = ""
    if "load" in r:
        small, large = r["load"]["runs"]
        slope = (large["wall_s"] - small["wall_s"]) / (large["images"] - small["images"])
        marginal = (
            f" Between the {small['images']:,}- and {large['images']:,}-image runs below, each "
            f"extra image costs {1000 * slope:.2f} ms of wall time."
        )
    return [
        "## Scaling with the number of images",
        "",
        "Whole classes of the sample (both splits), hard-linked into a folder per size; default "
        "settings, a fresh JVM each.",
        "",
        table(
            [
                "images",
                "wall s",
                "wall ms/image",
                "featurize s",
                "featurize images/s",
                "CPU ms/image workers + JVM",
                "pca s",
                "write s",
                "everything but featurize, s",
                "others' cores",
            ],
            rows,
        ),
        "",
        f"A straight line through these points: {fit['slope_ms']:.2f} ms per image plus "
        f"{fit['intercept_s']:.1f} s (R^2 = {fit['r2']:.3f}).{marginal} The fixed part (JVM "
        "start, JIT warm-up, listing, worker start and model loads, the PCA, write and report "
        "jobs) is why small runs cost more per image; the featurize rate itself rises with size "
        "as that start-up is amortised.",
        "",
    ]


def _render_jpeg(r: dict) -> list[str]:
    out = [
        "## Reduced-size JPEG decoding",
        "",
        "`decode_image(data, min_side=224)` (Pillow's draft mode: libjpeg scales by 1/2, 1/4 or "
        "1/8 while the short side stays >= 224) + `resize_square`, against "
        "`decode_image(data, min_side=None)` + `resize_square`; median of three; cosine "
        "similarity of the 1280-d CNN features of the two resulting model inputs.",
        "",
    ]
    for group, g in r["jpeg"].items():
        rows = [
            [
                row["file"],
                row["format"],
                row["size"],
                row["decoded_as"],
                f"{row['full_ms']:.1f}",
                f"{row['reduced_ms']:.1f}",
                f"{row['speedup']:.1f}",
                f"{row['cosine']:.4f}",
            ]
            for row in g["rows"]
        ]
        rows.append(
            [
                "**total**",
                "",
                "",
                "",
                f"{g['full_ms_total']:.1f}",
                f"{g['reduced_ms_total']:.1f}",
                f"**{g['speedup_total']:.1f}**",
                f"min {g['cosine_min']:.4f}",
            ]
        )
        out += [
            f"### {group}",
            "",
            table(
                [
                    "file",
                    "format",
                    "size",
                    "decoded as",
                    "full ms",
                    "reduced ms",
                    "speedup",
                    "cosine",
                ],
                rows,
            ),
            "",
        ]
    out += [
        "Small pictures (short side < 448 px) cannot be reduced and cost the same either way; "
        "PNGs are never reduced. On 12 MP JPEGs draft mode is the difference between a 12 MP and "
        "a 0.2 MP decode, and the features barely move.",
        "",
    ]
    return out


def _render_pca(r: dict) -> list[str]:
    p = r["pca"]
    memory = {"memory": p["fit_memory"]}
    return [
        "## PCA",
        "",
        f"`fruitspark.reduce.fit_pca` (centring + all {p['dimension']} components, k by 95 % "
        f"explained variance) on {p['rows']:,} x {p['dimension']} synthetic float features "
        f"(rank-{PCA_RANK} signal plus noise, generated in Spark by `mapInArrow` and written to "
        f"Parquet first, which took {p['generate_and_write_s']:.1f} s), `{MASTER}`, "
        "spark.driver.memory 2g:",
        "",
        table(
            [
                "fit s",
                "k at 95 %",
                "driver JVM peak RSS",
                "driver Python peak RSS",
                "others' cores",
            ],
            [
                [
                    f"{p['fit_s']:.1f}",
                    p["k_at_95"],
                    _mb(_role(memory, "driver JVM")),
                    _mb(_role(memory, "driver python")),
                    others(p),
                ]
            ],
        ),
        "",
        "Spark's PCA accumulates a d x d covariance (1280 x 1280 doubles, 13 MB) over the rows "
        "in the executors, then decomposes it on the driver; only d-vectors and that matrix reach "
        "the driver, so its memory does not grow with the number of rows. The JVM's RSS is its "
        "heap (capped at 2 GB) filling up, not data held.",
        "",
    ]


def _render_tuning(r: dict) -> list[str]:
    t = r["tuning"]
    default = t["runs"][0]
    rows = []
    for run in t["runs"]:
        worker_ms, jvm_ms = cpu_per_image(run)
        base_w, base_j = cpu_per_image(default)
        rows.append(
            [
                run["label"],
                run["settings"]["featurize_partitions"],
                f"{run['featurize_images_per_s']:.1f}",
                f"{worker_ms:.2f}",
                f"{jvm_ms:.2f}",
                f"{(worker_ms + jvm_ms) / (base_w + base_j):.2f}",
                _mb(max(run["memory"]["worker_rss_mb"] or [0])),
                others(run),
            ]
        )
    out = [
        "## Tuning knobs",
        "",
        f"`fruitspark run` on {default['images']:,} images (whole classes), `{MASTER}`, "
        "`--no-report`, one run each. Images/s depend on what else ran on the machine; CPU ms "
        "per image (Python workers and JVM while the workers were busy) count only the run's "
        "own processes and are the fairer comparison." + (f" {t['note']}" if t.get("note") else ""),
        "",
        table(
            [
                "setting",
                "partitions",
                "featurize images/s",
                "worker CPU ms/image",
                "JVM CPU ms/image",
                "CPU vs default",
                "peak worker RSS",
                "others' cores",
            ],
            rows,
        ),
        "",
    ]
    out += _knob_findings(t)
    out += _recommendations(r)
    return out


def _knob_findings(t: dict) -> list[str]:
    runs = {run["label"].split(" (")[0]: run for run in t["runs"]}
    default = t["runs"][0]
    base_rate = default["featurize_images_per_s"]
    base_cpu = sum(cpu_per_image(default))

    def percent(ratio: float) -> str:
        return f"{round(100 * (ratio - 1)):+d} %".replace("+0 %", "0 %")

    def rate(label: str) -> str:
        return percent(runs[label]["featurize_images_per_s"] / base_rate)

    def cpu(label: str) -> str:
        return percent(sum(cpu_per_image(runs[label])) / base_cpu)

    def rss(label: str) -> str:
        return _mb(max(runs[label]["memory"]["worker_rss_mb"] or [0]))

    wanted = (
        "--batch-size 1",
        "--batch-size 32",
        "--rows-per-arrow-batch 16",
        "--rows-per-arrow-batch 1024",
        "--images-per-partition 100",
        "--threads-per-task 2",
    )
    if not all(label in runs for label in wanted):
        return []
    return [
        "What the knobs do (images/s and CPU per image against the defaults; single runs, so a "
        "few % either way is noise):",
        "",
        f"- `--batch-size`: 1 gives {rate('--batch-size 1')} images/s ({cpu('--batch-size 1')} "
        f"CPU), 32 gives {rate('--batch-size 32')} ({cpu('--batch-size 32')} CPU) and worker "
        f"RSS {rss('--batch-size 32')} instead of {rss('--batch-size 1')} at batch 1 and "
        f"{_mb(max(default['memory']['worker_rss_mb']))} at 8. As in the ceiling table, batching "
        "buys nothing on CPU; anything from 1 to 8 is fine, larger batches only cost memory.",
        f"- `--rows-per-arrow-batch`: 16 gives {rate('--rows-per-arrow-batch 16')}, 1024 gives "
        f"{rate('--rows-per-arrow-batch 1024')} with worker RSS "
        f"{rss('--rows-per-arrow-batch 1024')}: at ~10 ms of work per image the per-batch "
        "overhead does not matter, while the batch bounds how many decoded images (and, for "
        "12 MP photos, how many megabytes of JPEG) a worker holds; 64 is a safe middle.",
        f"- `--images-per-partition 100` against the automatic "
        f"{images_per_partition(default['images'], CORES)}: "
        f"{rate('--images-per-partition 100')}; the automatic size (about 8 tasks per core) "
        "balances the cores without many small tasks.",
        f"- `--threads-per-task 2` with 2 tasks on 2 cores: {rate('--threads-per-task 2')} "
        f"images/s and {cpu('--threads-per-task 2')} CPU per image: oversubscription.",
        "",
    ]


def _recommendations(r: dict) -> list[str]:
    worker = max(r.get("e2e", {}).get("memory", {}).get("worker_rss_mb") or [350])
    return [
        "### Recommended settings",
        "",
        "- **One ONNX Runtime thread per task, one task per core** (`spark.task.cpus=1`, the "
        "default `--threads-per-task`): tasks x threads must equal the executor's cores and never "
        "exceed them (the oversubscribed rows above and in the ceiling table).",
        f"- **4-core executor**: `spark.executor.cores=4` and the defaults (batch "
        f"{PIPELINE_BATCH}, {PIPELINE_ROWS} rows per Arrow batch, images per partition automatic: "
        "about 8 tasks per core, 32 to 1000 images each). Four Python workers of about "
        f"{worker:.0f} MB each: `spark.executor.memoryOverhead` of about "
        f"{math.ceil(4 * worker / 1024 + 0.5)} GB on top of a 2-4 GB heap (the JVM only moves "
        "bytes; the model runs in the Python workers).",
        f"- **64-core executor**: the same per-task settings, `spark.executor.cores=64`; 64 "
        f"Python workers x ~{worker:.0f} MB = {64 * worker / 1024:.0f} GB of overhead, so prefer "
        "several 8-16-core executors per machine over one huge one (smaller heaps, less GC, "
        "failures cost less). Keep the automatic partition size (about 8 tasks per core, 32 to "
        f"1000 images each: {images_per_partition(100_000, 64)} images per task for 100k images "
        "on 64 cores) so that tasks stay short and evenly spread; for millions of objects in a "
        "bucket pass a Parquet "
        "manifest so that the driver does not list them. Raise `--rows-per-arrow-batch` only if "
        "profiling shows per-batch overhead; it also bounds each worker's memory.",
        "",
    ]


def _render_load(r: dict) -> list[str]:
    runs = r["load"]["runs"]
    rows = []
    for run in runs:
        rows.append(
            [
                f"{run['images']:,}",
                f"{run['wall_s']:.1f}",
                f"{1000 * run['wall_s_per_image']:.2f}",
                f"{1000 * run['featurize_s_per_image']:.2f}",
                f"{worker_cpu_ms(run):.2f}",
                f"{1000 * _role(run, 'driver JVM', 'cpu_s') / run['images']:.2f}",
                run["settings"]["featurize_partitions"],
                _mb(_role(run, "driver JVM")),
                _mb(_role(run, "driver python")),
                _mb(max(run["memory"]["worker_rss_mb"] or [0])),
                "ok" if run["accounting_ok"] else "FAILED",
                others(run),
            ]
        )
    small, large = runs
    return [
        f"## {large['images']:,}-image load",
        "",
        "Distinct paths made by hard-linking the sample's files (no extra disk; not symlinks) "
        f"under `{LOAD_ROOT}/c<copy>/<split>/<Class>/`, and a {small['images']:,}-image tree "
        "likewise; default settings, a fresh JVM each.",
        "",
        table(
            [
                "images",
                "wall s",
                "wall ms/image",
                "featurize ms/image",
                "worker CPU ms/image",
                "JVM CPU ms/image (whole run)",
                "partitions",
                "driver JVM RSS",
                "driver Python RSS",
                "peak worker RSS",
                "accounting",
                "others' cores",
            ],
            rows,
        ),
        "",
        f"Per image, {large['images']:,} vs {small['images']:,}: wall time "
        f"{large['wall_s_per_image'] / small['wall_s_per_image']:.2f} x, featurize time "
        f"{large['featurize_s_per_image'] / small['featurize_s_per_image']:.2f} x, Python "
        f"worker CPU {worker_cpu_ms(large) / worker_cpu_ms(small):.2f} x: the cost per image "
        "does not grow with the input, and the fixed costs are amortised further. Driver memory "
        "stays bounded (the JVM heap is capped at 2 GB): the driver only sees "
        "counts, the listing and the PCA's d x d matrix, never the features.",
        "",
    ]


# ----------------------------------------------------------------------------------------------
# Orchestration
# ----------------------------------------------------------------------------------------------


def line_fit(points: list[tuple[int, float]]) -> dict:
    x = np.array([p[0] for p in points], float)
    y = np.array([p[1] for p in points], float)
    slope, intercept = np.polyfit(x, y, 1)
    predicted = slope * x + intercept
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - float(((y - predicted) ** 2).sum()) / total if total else 1.0
    return {"slope_ms": 1000 * float(slope), "intercept_s": float(intercept), "r2": r2}


def mark(results: dict, section: str) -> None:
    """Note the 1-minute load average as a section starts (the machine is shared)."""
    results.setdefault("section_load", {})[section] = round(os.getloadavg()[0], 2)


def save(results: dict) -> None:
    (WORK / "results.json").write_text(json.dumps(results, indent=2))


def wait_for_quiet(limit_s: float, threshold: float = 1.5) -> str:
    """Wait until the 1-minute load average drops below ``threshold`` (the machine is shared)."""
    started = time.monotonic()
    while (load := os.getloadavg()[0]) >= threshold and time.monotonic() - started < limit_s:
        log(f"waiting for load < {threshold} ({load:.2f})")
        time.sleep(20)
    waited = time.monotonic() - started
    if load < threshold:
        return f"The run started after waiting {waited:.0f} s for a load average below {threshold}."
    return (
        f"**The machine never quietened**: after waiting {waited:.0f} s the 1-minute load average "
        f"was still {load:.2f} (other jobs share its 2 cores), so the run went ahead; the numbers "
        "below are lower than on an idle machine. Per-run load averages are in the raw results."
    )


def measure_tuning(results: dict, data: Path, files: list[Path], images: int) -> None:
    mark(results, "tuning")
    tuning_tree = WORK / "trees" / "tuning"
    link_tree(data, class_subset(files, images), tuning_tree)
    runs = []
    for index, (label, extra) in enumerate(TUNING):
        run = fruitspark_run(tuning_tree, f"tuning-{index}", (*extra, "--no-report"))
        run["label"] = label
        runs.append(run)
        results["tuning"] = {"runs": runs}
        save(results)
    shutil.rmtree(tuning_tree, ignore_errors=True)


def redo_tuning(args: argparse.Namespace) -> dict:
    """Measure the tuning knobs again into an earlier run's results (see --redo-tuning)."""
    results = json.loads(Path(args.redo_tuning).read_text())
    before = results.get("tuning")
    if args.wait_quiet:
        wait_for_quiet(args.wait_quiet)
    data = Path(args.data).resolve()
    measure_tuning(results, data, sample_files(data), args.tuning_images)
    if before:
        others_before = [run["memory"].get("others_cores") or 0.0 for run in before["runs"]]
        results["tuning"]["note"] = (
            f"Measured again at {datetime.now(timezone.utc).strftime('%H:%M UTC')}, after the "
            "rest of the run: during the first pass other jobs used "
            f"{median(others_before):.2f} cores (median), too much for single runs to compare."
        )
        results["tuning"]["first_pass"] = before
    return results


def measure(args: argparse.Namespace) -> dict:
    data, photos = Path(args.data).resolve(), Path(args.photos).resolve()
    WORK.mkdir(parents=True, exist_ok=True)
    files = sample_files(data)
    if args.limit:
        files = class_subset(files, args.limit)
        data_input = WORK / "trees" / "limited"
        link_tree(data, files, data_input)
    else:
        data_input = data
    results: dict = {
        "command": " ".join(sys.argv[1:]),
        "machine": machine(),
        "load_at_start": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "paths": {"data": args.data, "photos": args.photos},
        "sample_images": len(files),
    }
    log(f"{len(files)} images in {data}; work dir {WORK}")
    if args.wait_quiet:
        results["quiet_note"] = wait_for_quiet(args.wait_quiet)
        results["load_at_start"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    spec = resolve_model()

    # -- the ceiling, then the end-to-end run right after it (same machine conditions) ------
    tensors = make_tensors(data, files, spec)
    pool = Pool(spec, tensors)
    try:
        mark(results, "ceiling")
        results["ceiling"] = bench_ceiling(pool, args.ceiling_seconds)
        save(results)
        mark(results, "end to end")
        results["e2e"] = fruitspark_run(data_input, "e2e-full")
        save(results)
        mark(results, "ceiling re-check")
        results["ceiling_check"] = bench_ceiling_check(pool, results["ceiling"], args)
        mark(results, "python work")
        results["python_work"] = bench_python_work(pool, data, files, args.python_images)
        save(results)
    finally:
        pool.close()
    mark(results, "decode")
    results["decode"] = bench_decode(data, files, spec, args.decode_images)
    mark(results, "jpeg")
    results["jpeg"] = bench_jpeg(photos, spec)
    save(results)

    scaling_runs = []
    for target in args.scale_sizes:
        if target >= len(files):
            continue
        subset = class_subset(files, target)
        tree = WORK / "trees" / f"scale-{target}"
        link_tree(data, subset, tree)
        scaling_runs.append(fruitspark_run(tree, f"scale-{target}"))
        shutil.rmtree(tree, ignore_errors=True)
    scaling_runs.append(results["e2e"])
    results["scaling"] = {
        "runs": scaling_runs,
        "fit": line_fit([(run["images"], run["wall_s"]) for run in scaling_runs]),
    }
    save(results)

    measure_tuning(results, data, files, args.tuning_images)

    if not args.quick:
        mark(results, "naive")
        results["naive"] = run_child(
            "_naive", [str(data_input), str(WORK / "out" / "naive")], "naive"
        )
        log(f"naive: {results['naive']['images_per_s']:.1f} images/s")
        save(results)

    mark(results, "pca")
    results["pca"] = run_child("_pca", [str(WORK), str(args.pca_rows)], "pca")
    log(f"pca: fit {results['pca']['fit_s']:.1f} s, k {results['pca']['k_at_95']}")
    save(results)

    if not args.quick:
        mark(results, "load")
        load_runs = []
        small_n, large_n = args.load_sizes
        small_tree = WORK / "trees" / f"load-{small_n}"
        link_tree(data, spread(files, small_n), small_tree)
        load_runs.append(fruitspark_run(small_tree, f"load-{small_n}"))
        shutil.rmtree(small_tree, ignore_errors=True)
        link_tree(data, files, LOAD_ROOT, total=large_n)
        load_runs.append(fruitspark_run(LOAD_ROOT, f"load-{large_n}"))
        shutil.rmtree(LOAD_ROOT, ignore_errors=True)
        results["load"] = {"runs": load_runs}
        save(results)
    results["load_at_end"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return results


OWN_SECTIONS = (
    "Summary",
    "Ceiling",
    "Decode",
    "End to end",
    "Naive",
    "Scaling",
    "Reduced-size",
    "PCA",
    "Tuning",
)


def foreign_sections(markdown: str) -> str:
    """The ``## `` sections of an existing BENCHMARKS.md that this script does not write (added
    by hand or by other scripts, e.g. benchmarks/quality.py's tables): kept on every rewrite."""
    kept, keep = [], False
    for line in markdown.splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
            keep = not (title.startswith(OWN_SECTIONS) or title.endswith("-image load"))
        if keep:
            kept.append(line)
    return "\n".join(kept).strip()


def write_markdown(path: Path, text: str) -> None:
    others = foreign_sections(path.read_text()) if path.exists() else ""
    path.write_text(text + (f"\n{others}\n" if others else ""))


def print_tables(results: dict) -> None:
    print()
    print("\n".join(_render_summary(results)))
    if "ceiling" in results:
        print("\n".join(_render_ceiling(results)))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/fruits360-sample")
    parser.add_argument("--photos", default="../shared/data/photos")
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--quick", action="store_true", help="skip the naive run and 50k load")
    parser.add_argument("--render-only", metavar="JSON", help="rewrite --out from results")
    parser.add_argument(
        "--redo-tuning", metavar="JSON", help="measure the tuning knobs again into these results"
    )
    parser.add_argument(
        "--wait-quiet", type=float, default=0, metavar="S", help="wait up to S s for load < 1.5"
    )
    debug = parser.add_argument_group("sizes (defaults are the real benchmark; smaller to debug)")
    debug.add_argument("--limit", type=int, help="use only ~N images of the sample")
    debug.add_argument("--ceiling-seconds", type=float, default=5.0)
    debug.add_argument("--decode-images", type=int, default=3000)
    debug.add_argument("--python-images", type=int, default=800)
    debug.add_argument("--scale-sizes", type=_ints, default=(1000, 4000))
    debug.add_argument("--tuning-images", type=int, default=2000)
    debug.add_argument("--load-sizes", type=_ints, default=(5000, 50000))
    debug.add_argument("--pca-rows", type=int, default=100_000)
    return parser.parse_args(argv)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_naive":
        print(RESULT_MARK + json.dumps(child_naive(argv[1], argv[2])), flush=True)
        return 0
    if argv and argv[0] == "_pca":
        print(RESULT_MARK + json.dumps(child_pca(argv[1], int(argv[2]))), flush=True)
        return 0
    args = parse_args(argv)
    if args.render_only:
        results = json.loads(Path(args.render_only).read_text())
    elif args.redo_tuning:
        results = redo_tuning(args)
        save(results)
    else:
        results = measure(args)
        save(results)
    write_markdown(Path(args.out), render(results))
    print_tables(results)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The bare model outside Spark, in worker processes that start each timing at the same instant.

Every ratio "X images/s as a share of the bare model" divides by ``ModelPool.rate`` measured in
the same section, right next to X, so both see the same machine. The pool's processes keep one
ONNX Runtime session per thread count (as a Spark Python worker does) and 64 pre-decoded 224 px
tensors of the sample; ``describe`` runs ``describe_images`` (decode, preprocess, model, colour:
what a task runs) on image bytes loaded beforehand.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import Context, machine_busy_s, median, process_cpu_s, spread
from fruitspark.decode import decode_image
from fruitspark.featurize import FeaturizeOptions, describe_images
from fruitspark.model import ModelSpec, embed, new_session, resolve_model
from fruitspark.preprocess import resize_square, to_tensor

WINDOWS = 3  # a timing is split in three windows; the median is reported
PIPELINE_BATCH = FeaturizeOptions.batch_size
PIPELINE_ROWS = 64  # RunConfig.rows_per_arrow_batch


@dataclass(frozen=True)
class Layout:
    processes: int
    threads: int
    batch: int


@dataclass
class _Worker:
    """State of one pool process between requests."""

    spec: ModelSpec
    model: bytes
    tensors: np.ndarray
    sessions: dict
    arrays: list
    batch: int = 1
    contents: tuple = ()
    current: object = None  # the session "prepare" chose

    def session(self, threads: int):
        if threads not in self.sessions:
            self.sessions[threads] = new_session(self.model, threads)
        return self.sessions[threads]

    def prepare(self, threads: int, batch: int) -> str:
        self.batch, session = batch, self.session(threads)
        self.arrays = [
            np.ascontiguousarray(self.tensors[start : start + batch])
            for start in range(0, len(self.tensors) - batch + 1, batch)
        ]
        for array in self.arrays[:2]:  # warm-up
            embed(session, self.spec, array)
        self.current = session
        return "ready"

    def infer(self, start: float, duration: float) -> list[tuple[float, float, int]]:
        time.sleep(max(0.0, start - time.monotonic()))
        records, index = [], 0
        while (begin := time.monotonic()) < start + duration:
            embed(self.current, self.spec, self.arrays[index % len(self.arrays)])
            records.append((begin, time.monotonic(), self.batch))
            index += 1
        return records

    def load(self, paths: list[str]) -> str:
        self.contents = tuple(Path(path).read_bytes() for path in paths)
        return "ready"

    def describe(self, batch: int, threads: int, rows: int, start: float):
        options = FeaturizeOptions(batch_size=batch, threads=threads)
        session, contents = self.session(threads), list(self.contents)
        describe_images(contents[:rows], session, self.spec, options)  # warm-up
        time.sleep(max(0.0, start - time.monotonic()))
        begin = time.monotonic()
        for offset in range(0, len(contents), rows):
            describe_images(contents[offset : offset + rows], session, self.spec, options)
        return begin, time.monotonic(), len(contents)


def _serve(conn, spec: ModelSpec, tensors_file: str) -> None:
    worker = _Worker(spec, Path(spec.path).read_bytes(), np.load(tensors_file), {}, [])
    while (message := conn.recv())[0] != "stop":
        conn.send(getattr(worker, message[0])(*message[1:]))


def make_tensors(ctx: Context, spec: ModelSpec, count: int = 64) -> Path:
    """``count`` model inputs from images spread over the sample, saved for the pool."""
    tensors = [
        to_tensor(
            resize_square(
                decode_image((ctx.data / path).read_bytes(), min_side=spec.input_size),
                spec.input_size,
            ),
            spec.normalisation,
        )
        for path in spread(ctx.files(), count)
    ]
    target = ctx.work / "tensors.npy"
    target.parent.mkdir(parents=True, exist_ok=True)
    np.save(target, np.stack(tensors))
    return target


def window_rates(records: list[list[tuple]], start: float, duration: float) -> list[float]:
    """Images/s in each of WINDOWS equal windows; a batch counts pro rata of its overlap."""
    edges = [start + duration * index / WINDOWS for index in range(WINDOWS + 1)]
    rates = []
    for low, high in itertools.pairwise(edges):
        done = sum(
            count * max(0.0, min(end, high) - max(begin, low)) / max(end - begin, 1e-9)
            for worker in records
            for begin, end, count in worker
        )
        rates.append(done / (high - low))
    return rates


class ModelPool:
    """``size`` spawned processes serving timed requests; a context manager."""

    def __init__(self, ctx: Context, spec: ModelSpec | None = None) -> None:
        self.ctx, self.spec = ctx, spec or resolve_model()
        tensors = make_tensors(ctx, self.spec)
        context = multiprocessing.get_context("spawn")
        self.connections, self.processes = [], []
        for _ in range(ctx.cores):
            parent, child = context.Pipe()
            process = context.Process(
                target=_serve, args=(child, self.spec, str(tensors)), daemon=True
            )
            process.start()
            self.connections.append(parent)
            self.processes.append(process)

    def __enter__(self) -> ModelPool:
        return self

    def __exit__(self, *exc: object) -> None:
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.send(("stop",))
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()

    def ask(self, count: int, *message) -> list:
        for connection in self.connections[:count]:
            connection.send(message)
        return [connection.recv() for connection in self.connections[:count]]

    def cpu_s(self) -> float:
        return sum(process_cpu_s(process.pid) for process in self.processes)

    def rate(self, layout: Layout, seconds: float) -> dict:
        """The bare model's images/s in ``layout`` (all processes together), median of three
        windows of ``seconds`` in all, and the cores others used meanwhile."""
        self.ask(layout.processes, "prepare", layout.threads, layout.batch)
        start = time.monotonic() + 0.2
        busy, ours = machine_busy_s(), self.cpu_s()
        records = self.ask(layout.processes, "infer", start, seconds)
        others = (machine_busy_s() - busy - (self.cpu_s() - ours)) / (seconds + 0.2)
        rates = window_rates(records, start, seconds)
        return {
            **asdict(layout),
            "images_per_s": round(median(rates), 2),
            "windows": [round(rate, 2) for rate in rates],
            "others_cores": round(max(0.0, others), 2),
        }

    def describe_rate(self, files: list[Path], batch: int, rows: int, runs: int) -> list[float]:
        """``describe_images`` on ``files`` split over all processes, 1 thread each, in chunks
        of ``rows`` like the Arrow batches; images/s of each of ``runs`` runs."""
        halves = [files[index :: len(self.connections)] for index in range(len(self.connections))]
        for connection, half in zip(self.connections, halves, strict=True):
            connection.send(("load", [str(self.ctx.data / path) for path in half]))
        for connection in self.connections:
            connection.recv()
        rates = []
        for _ in range(runs):
            start = time.monotonic() + 0.5
            results = self.ask(len(self.connections), "describe", batch, 1, rows, start)
            rates.append(sum(r[2] for r in results) / (max(r[1] for r in results) - start))
        return rates


def pipeline_layout(ctx: Context) -> Layout:
    """The pipeline's own layout on ``ctx.master``: a task per core, one thread, batch 8."""
    return Layout(ctx.cores, 1, PIPELINE_BATCH)

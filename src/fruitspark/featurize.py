"""Image bytes to feature vectors on the executors, one row out for every row in.

The per-image work (:func:`describe_images`) is plain Python over a session passed in, so it runs
the same in a Spark worker, in ``fruitspark predict`` and in a unit test. :func:`featurize` wraps it
in ``mapInArrow``: the model's bytes travel once per executor as a broadcast, and each Python worker
loads them into an ONNX Runtime session once and keeps it for every task it serves.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from fruitspark.decode import DEFAULT_MAX_PIXELS, DecodeError, decode_image
from fruitspark.imagenet_block import embed_with_logits, logits_dim, model_logits_dim
from fruitspark.model import ModelSpec, cached_session, embed
from fruitspark.preprocess import COLOUR_DIM, colour_histogram, resize_square, to_tensor
from fruitspark.sources import ReadError, is_inside, read_bytes, real_root

DESCRIPTORS = ("both", "cnn", "colour")
FAULT_ENV = "FRUITSPARK_TEST_KILL_PARTITION"  # test-only: kill this partition's first attempt


@dataclass(frozen=True)
class FeaturizeOptions:
    """How features are computed; every field has a measured default (see BENCHMARKS.md)."""

    batch_size: int = 8
    threads: int = 0  # ONNX Runtime threads per task; 0: spark.task.cpus
    descriptor: str = "both"
    colour_weight: float = 8.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    root: str | None = None  # images must resolve inside it unless follow_symlinks
    follow_symlinks: bool = False
    logits: bool = field(
        default=True,
        metadata={"help": "add the model's ImageNet logits to the CNN block (if it has them)"},
    )

    def feature_dim(self, spec: ModelSpec) -> int:
        cnn = spec.feature_dim + (model_logits_dim(spec) if self.logits else 0)
        return {"both": cnn + COLOUR_DIM, "cnn": cnn}.get(self.descriptor, COLOUR_DIM)


@dataclass(frozen=True)
class ImageResult:
    width: int | None
    height: int | None
    features: np.ndarray | None
    error: str | None


def describe_images(
    contents: Sequence[bytes | None], session, spec: ModelSpec, options: FeaturizeOptions
) -> list[ImageResult]:
    """Decode, preprocess and embed a batch; a bad image becomes an error result, never a raise."""
    prepared: list[tuple[int, int, np.ndarray, np.ndarray] | str] = []
    for content in contents:
        try:
            image = decode_image(
                content or b"", min_side=spec.input_size, max_pixels=options.max_pixels
            )
        except DecodeError as error:
            prepared.append(str(error))
            continue
        tensor = to_tensor(resize_square(image, spec.input_size), spec.normalisation)
        prepared.append((*image.size, tensor, colour_histogram(image)))
    good = [item for item in prepared if not isinstance(item, str)]
    cnn = _embed_in_batches(session, spec, [item[2] for item in good], options)
    results: list[ImageResult] = []
    position = 0
    for item in prepared:
        if isinstance(item, str):
            results.append(ImageResult(None, None, None, item))
            continue
        width, height, _, colour = item
        features = combine(cnn[position] if cnn is not None else None, colour, options)
        results.append(ImageResult(width, height, features, None))
        position += 1
    return results


def combine(cnn: np.ndarray | None, colour: np.ndarray, options: FeaturizeOptions) -> np.ndarray:
    """The descriptor that feeds PCA: CNN features and/or the weighted root colour histogram.

    The square root turns histogram distances into Hellinger distances, which suit counts; the
    weight balances the colour block's variance against the CNN's (chosen on validation data).
    """
    colour_part = options.colour_weight * np.sqrt(colour, dtype=np.float32)
    if options.descriptor == "colour" or cnn is None:
        return colour_part
    if options.descriptor == "cnn":
        return cnn
    return np.concatenate([cnn, colour_part])


def _embed_in_batches(
    session, spec: ModelSpec, tensors: list[np.ndarray], options: FeaturizeOptions
) -> np.ndarray | None:
    if options.descriptor == "colour" or not tensors:
        return None
    run = embed_with_logits if options.logits and logits_dim(session) else embed
    parts = [
        run(session, spec, np.stack(tensors[start : start + options.batch_size]))
        for start in range(0, len(tensors), options.batch_size)
    ]
    return np.concatenate(parts)


RESULT_FIELDS = [
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("features", pa.list_(pa.float32())),
    pa.field("error", pa.string()),
]


def featurize(frame, spec: ModelSpec, options: FeaturizeOptions):
    """Add ``width, height, features, error`` to each row of ``frame`` and drop ``content``.

    ``frame`` has a ``path`` column and, when Spark's binaryFile source read the bytes, a
    ``content`` column; without it each worker reads its own images by path. Returns the new
    frame and an accumulator that counts model loads (one per Python worker, if all is well).
    """
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    spark = frame.sparkSession
    model_bytes = spark.sparkContext.broadcast(Path(spec.path).read_bytes())
    model_loads = spark.sparkContext.accumulator(0)
    has_content = "content" in frame.columns
    kept = [field for field in frame.schema.fields if field.name != "content"]
    timezone = spark.conf.get("spark.sql.session.timeZone")
    output_schema = pa.schema(
        [*(to_arrow_schema(_struct(kept), timezone=timezone) if kept else []), *RESULT_FIELDS]
    )
    kill_partition = os.environ.get(FAULT_ENV)

    def featurize_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        session = (
            None
            if options.descriptor == "colour"
            else cached_session(
                spec, options.threads, lambda: model_bytes.value, lambda: model_loads.add(1)
            )
        )
        for number, batch in enumerate(batches):
            if number == 1 and kill_partition is not None:
                _maybe_die(int(kill_partition))
            paths = batch.column("path").to_pylist()
            contents, read_failures = _contents(batch, paths, has_content, options)
            results = describe_images(contents, session, spec, options)
            yield _to_batch(batch, output_schema, results, read_failures)

    return frame.mapInArrow(featurize_partition, from_arrow_schema(output_schema)), model_loads


def _struct(fields):
    from pyspark.sql.types import StructType

    return StructType(fields)


def _contents(
    batch: pa.RecordBatch, paths: list[str], has_content: bool, options: FeaturizeOptions
) -> tuple[list[bytes | None], dict[int, str]]:
    """The bytes of each row, and the reason for the rows that must not or cannot be read."""
    stored = batch.column("content").to_pylist() if has_content else [None] * len(paths)
    contents: list[bytes | None] = []
    failures: dict[int, str] = {}
    check_root = bool(options.root) and not options.follow_symlinks
    resolved_root = real_root(options.root) if check_root else None
    for index, (path, data) in enumerate(zip(paths, stored, strict=True)):
        if check_root and not is_inside(path, resolved_root):
            failures[index] = "outside the input root (a symlink): not followed"
            contents.append(None)
            continue
        if data is None:  # no content column, or a manifest's row in a run with folders
            try:
                data = read_bytes(path)
            except ReadError as error:
                failures[index] = str(error)
        contents.append(data)
    return contents, failures


def _to_batch(
    batch: pa.RecordBatch,
    schema: pa.Schema,
    results: list[ImageResult],
    failures: dict[int, str],
) -> pa.RecordBatch:
    errors = [failures.get(index, result.error) for index, result in enumerate(results)]
    kept = [
        result if error is None else ImageResult(None, None, None, error)
        for result, error in zip(results, errors, strict=True)
    ]
    columns = [
        batch.column(field.name).cast(field.type)
        for field in schema
        if field.name in batch.schema.names
    ]
    columns += [
        pa.array([result.width for result in kept], pa.int32()),
        pa.array([result.height for result in kept], pa.int32()),
        pa.array([result.features for result in kept], pa.list_(pa.float32())),
        pa.array(errors, pa.string()),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _maybe_die(partition: int) -> None:
    """Test-only fault switch: the first attempt of one task dies as an OOM-killed worker would."""
    from pyspark import TaskContext

    context = TaskContext.get()
    if context and context.partitionId() == partition and context.attemptNumber() == 0:
        os._exit(137)

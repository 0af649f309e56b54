"""Image bytes to feature vectors on the executors, one row out for every row in.

The per-image work (:func:`describe_images`) is plain Python over a session passed in, so it runs
the same in a Spark worker, in ``fruitspark predict`` and in a unit test. :func:`featurize` wraps it
in ``mapInArrow``: the model's bytes travel once per executor (a broadcast, or a session artifact
on Spark Connect: see :mod:`fruitspark.sparkenv`), and each Python worker loads them into an ONNX
Runtime session once and keeps it for every task it serves.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from fruitspark.decode import DEFAULT_MAX_PIXELS, DecodeError, decode_image
from fruitspark.feature_column import to_bytes
from fruitspark.imagenet_block import embed_with_logits
from fruitspark.model import ModelSpec, cached_session, embed
from fruitspark.preprocess import (
    COLOUR_DIM,
    VIEWS,
    colour_histogram,
    limit_threads,
    model_views,
    to_tensor,
)
from fruitspark.sources import ReadError, is_inside, read_bytes, real_root
from fruitspark.sparkenv import counter, ship_file

DESCRIPTORS = ("both", "cnn", "colour")


def _tuning(text: str, **extra) -> dict:
    return {
        "help": text,
        "group": "tuning",
        **extra,
    }


@dataclass(frozen=True)
class FeaturizeOptions:
    """How features are computed; every field has a measured default (see BENCHMARKS.md)."""

    batch_size: int = field(default=8, metadata=_tuning("images per model call"))
    threads: int = field(
        default=0,
        metadata=_tuning(
            "ONNX Runtime threads per task",
            flag="--threads-per-task",
            default_text="spark.task.cpus",
        ),
    )
    descriptor: str = field(
        default="both",
        metadata={
            "help": "what feeds PCA: CNN features and colour histogram, or one of them",
            "group": "model",
            "choices": DESCRIPTORS,
        },
    )
    colour_weight: float = field(
        default=8.0,
        metadata={"help": "weight of the colour block against the CNN block", "group": "model"},
    )
    max_pixels: int = field(
        default=DEFAULT_MAX_PIXELS,
        metadata=_tuning("larger images are refused (decompression bombs)"),
    )
    root: str | None = None  # images must resolve inside it unless follow_symlinks
    follow_symlinks: bool = field(
        default=False, metadata={"help": "read images whose symlink points outside INPUT"}
    )
    logits: bool = field(
        default=True,
        metadata={
            "help": "add the model's ImageNet logits to the CNN block (if it has them)",
            "group": "model",
        },
    )
    views: str = field(
        default=VIEWS[0],
        metadata={
            "help": "model inputs of a picture that is not square: padded on white, and "
            "(pad+crop) its centred square, their CNN outputs averaged",
            "group": "model",
            "choices": VIEWS,
        },
    )

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.views not in VIEWS:
            raise ValueError(f"views must be one of {', '.join(VIEWS)}, not {self.views!r}")

    def feature_dim(self, spec: ModelSpec) -> int:
        cnn = spec.feature_dim + (spec.logits_dim if self.logits else 0)
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
    """Decode, preprocess and embed a batch; a bad image becomes an error result, never a raise.

    A picture's CNN block is the mean of its views' outputs (``options.views``)."""
    prepared: list[tuple[int, int, list[np.ndarray], np.ndarray] | str] = []
    for content in contents:
        try:
            image = decode_image(
                content or b"", min_side=spec.input_size, max_pixels=options.max_pixels
            )
        except DecodeError as error:
            prepared.append(str(error))
            continue
        views = model_views(image, spec.input_size, options.views)
        tensors = [to_tensor(view, spec.normalisation) for view in views]
        prepared.append((*image.size, tensors, colour_histogram(image)))
    good = [item for item in prepared if not isinstance(item, str)]
    cnn = _embed_in_batches(session, spec, [t for item in good for t in item[2]], options)
    results: list[ImageResult] = []
    position = 0
    for item in prepared:
        if isinstance(item, str):
            results.append(ImageResult(None, None, None, item))
            continue
        width, height, tensors, colour = item
        block = None if cnn is None else cnn[position : position + len(tensors)].mean(axis=0)
        results.append(ImageResult(width, height, combine(block, colour, options), None))
        position += len(tensors)
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
    run = embed_with_logits if options.logits and spec.logits_dim else embed
    parts = [
        run(session, spec, np.stack(tensors[start : start + options.batch_size]))
        for start in range(0, len(tensors), options.batch_size)
    ]
    return np.concatenate(parts)


RESULT_FIELDS = [
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("features", pa.binary()),  # float32 bytes until the write (see feature_column)
    pa.field("error", pa.string()),
]


def featurize(frame, spec: ModelSpec, options: FeaturizeOptions):
    """Add ``width, height, features, error`` to each row of ``frame`` and drop ``content``;
    ``features`` as float32 bytes (``feature_column``), null for a failed image.

    ``frame`` has a ``path`` column and, when Spark's binaryFile source read the bytes, a
    ``content`` column; without it each worker reads its own images by path. Returns the new
    frame and a counter of model loads (one per Python worker, if all is well; its ``value`` is
    None on Spark Connect, which has no accumulators).
    """
    spark = frame.sparkSession
    model_bytes = ship_file(spark, spec.path, f"fruitspark-model-{spec.sha256[:16]}.onnx")
    model_loads = counter(spark)
    has_content = "content" in frame.columns
    kept = [field for field in frame.schema.fields if field.name != "content"]
    kept_names = [field.name for field in kept]

    def featurize_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        limit_threads(options.threads)
        session = (
            None
            if options.descriptor == "colour"
            else cached_session(spec, options.threads, model_bytes, lambda: model_loads.add(1))
        )
        for batch in batches:
            paths = batch.column("path").to_pylist()
            contents, read_failures = _contents(batch, paths, has_content, options)
            results = describe_images(contents, session, spec, options)
            yield _to_batch(batch, kept_names, results, read_failures)

    return frame.mapInArrow(featurize_partition, _output_schema(kept)), model_loads


def _output_schema(kept):
    """The Spark schema of the output: the input's columns but ``content``, then the results.

    Declared in Spark types, not converted from Arrow, so that it means the same on PySpark 3.5
    and 4.x; the kept columns travel back with the very Arrow types the JVM sent them in.
    """
    from pyspark.sql.types import (
        BinaryType,
        IntegerType,
        StringType,
        StructField,
        StructType,
    )

    return StructType(
        [
            *kept,
            StructField("width", IntegerType()),
            StructField("height", IntegerType()),
            StructField("features", BinaryType()),
            StructField("error", StringType()),
        ]
    )


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
    kept_names: list[str],
    results: list[ImageResult],
    failures: dict[int, str],
) -> pa.RecordBatch:
    errors = [failures.get(index, result.error) for index, result in enumerate(results)]
    kept = [
        result if error is None else ImageResult(None, None, None, error)
        for result, error in zip(results, errors, strict=True)
    ]
    schema = pa.schema([*(batch.schema.field(name) for name in kept_names), *RESULT_FIELDS])
    columns = [
        *(batch.column(name) for name in kept_names),
        pa.array([result.width for result in kept], pa.int32()),
        pa.array([result.height for result in kept], pa.int32()),
        to_bytes([result.features for result in kept]),
        pa.array(errors, pa.string()),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)

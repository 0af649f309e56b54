"""Where images come from: a folder tree or a manifest, as Spark rows with label and split.

A local folder is listed here, on the driver, with ``os.scandir``: that costs milliseconds, where
Spark's file index and the aggregation that counts it cost seconds of a small run; the listing
becomes rows of paths that the workers read themselves, as a manifest's are. A remote folder
(hdfs://, s3://) is read with Spark's ``binaryFile`` source, which lists it once and reads each
file's bytes on the executor that processes it. A manifest (Parquet or CSV of paths) spares the
driver the listing of millions of objects: its paths are spread over partitions and each worker
reads its own images. Image bytes never cross the network in a shuffle. Both listings skip the
names Spark's file index hides (``_*``, ``.*``), so a folder lists the same wherever it lives.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlparse

from fruitspark import sparkenv
from fruitspark.formats import IMAGE_EXTENSIONS, is_image_name

# Hadoop globs are case-sensitive: "*.{[jJ][pP][gG],...}" matches every case of every extension.
IMAGE_GLOB = (
    "*.{"
    + ",".join(
        "".join(f"[{c.lower()}{c.upper()}]" for c in extension) for extension in IMAGE_EXTENSIONS
    )
    + "}"
)
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "test": "test",
    "testing": "test",
    "val": "val",
    "validation": "val",
}
LISTING_COLUMNS = ("path", "size", "modified", "label", "split")


class SourceError(ValueError):
    """An input that cannot be read at all (missing folder, bad manifest): one line for the user."""


class ReadError(OSError):
    """One image that cannot be read; recorded as that image's error."""


def label_expr(path_col: str = "path"):
    """The image's label: the name of the folder that holds it."""
    from pyspark.sql import functions as F

    return F.element_at(F.split(F.col(path_col), "/"), -2)


def split_expr(path_col: str = "path"):
    """train/test/val from the nearest folder above the label folder that is named so, else null."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    names = "|".join(SPLIT_NAMES)
    found = F.lower(
        F.regexp_extract(F.col(path_col), rf"(?i).*/({names})/(?:[^/]*/)*?[^/]+/[^/]+$", 1)
    )
    mapping = F.create_map(*[F.lit(item) for pair in SPLIT_NAMES.items() for item in pair])
    return F.when(found == "", F.lit(None).cast(StringType())).otherwise(mapping[found])


def read_folder(spark, root: str):
    """The folder's images as ``path, size, modified, label, split, content`` (read lazily)."""
    from pyspark.sql import functions as F
    from pyspark.sql.utils import AnalysisException

    try:
        frame = (
            spark.read.format("binaryFile")
            .option("recursiveFileLookup", "true")
            .option("pathGlobFilter", IMAGE_GLOB)
            .option("ignoreMissingFiles", "true")  # a file deleted meanwhile: caught by accounting
            .load(root)
        )
    except AnalysisException as error:
        raise SourceError(f"cannot read input {root}: {_first_line(error)}") from None
    return frame.select(
        "path",
        F.col("length").alias("size"),
        F.col("modificationTime").alias("modified"),
        label_expr().alias("label"),
        split_expr().alias("split"),
        "content",
    )


def is_hidden(name: str) -> bool:
    """Names Spark's file index leaves out of a folder scan (``_SUCCESS``, ``.DS_Store``, …)."""
    return name.startswith(("_", "."))


def walk_images(folder: str) -> Iterator[tuple[str, int, datetime]]:
    """``(path, size, modified)`` of every image under a local folder, symlinks followed as
    Hadoop's local file system follows them; the path as Spark's scan writes it (``file:/a b``)."""
    pending, seen = [folder], set()
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if is_hidden(entry.name):
                    continue
                if entry.is_dir():
                    real = os.path.realpath(entry.path)
                    if real not in seen:  # a symlinked loop is walked once
                        seen.add(real)
                        pending.append(entry.path)
                elif entry.is_file() and is_image_name(entry.name):
                    stat = entry.stat()
                    milliseconds = stat.st_mtime_ns // 1_000_000  # Hadoop's precision
                    modified = datetime.fromtimestamp(milliseconds / 1000, timezone.utc)
                    yield f"file:{entry.path}", stat.st_size, modified


def list_local_folder(spark, folder: str) -> tuple[object, int, int]:
    """A local folder's images as listing rows ``path, size, modified, label, split`` (no bytes:
    the workers read each file by path), with their count and total size."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

    # Spark types, not a DDL string: its parser's first use costs a small run a second or more
    schema = StructType(
        [StructField(name, kind()) for name, kind in
         (("path", StringType), ("size", LongType), ("modified", TimestampType))]
    )  # fmt: skip
    found = list(walk_images(folder))
    columns = {name: [row[index] for row in found] for index, name in enumerate(schema.names)}
    frame = sparkenv.local_frame(spark, columns, schema).select(
        "path", "size", "modified", label_expr().alias("label"), split_expr().alias("split")
    )
    return frame, len(found), sum(columns["size"])


def empty_images(spark, folder_frame, listed: int):
    """Listing rows of the zero-byte images, which Spark's file scan drops without a word.

    The folder's file index still holds them: only when it counts more files than the scan
    listed are its paths fetched and compared, so that each empty file gets an error row.
    """
    from urllib.parse import unquote

    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    indexed = sparkenv.input_files(folder_frame)  # classic: a JVM array, its length costs one call
    if len(indexed) == listed:
        return None
    # The index gives URIs ("file:///a%20b"); the scan gives Hadoop paths ("file:/a b").
    as_paths = [re.sub(r"^(\w+):///", r"\1:/", unquote(uri)) for uri in indexed]
    schema = StructType([StructField("path", StringType())])
    paths = sparkenv.local_frame(spark, {"path": as_paths}, schema)
    missing = paths.join(folder_frame.select("path"), "path", "left_anti")
    return missing.select(
        "path",
        F.lit(0).cast("long").alias("size"),
        F.lit(None).cast("timestamp").alias("modified"),
        label_expr().alias("label"),
        split_expr().alias("split"),
    )


def read_manifest(spark, manifest: str, *, partitions: int):
    """A Parquet or CSV manifest (``path`` required; ``label``, ``split``, ``size``, ``modified``
    optional) as listing rows, spread over ``partitions`` so workers read the bytes in parallel."""
    from pyspark.sql.utils import AnalysisException

    reader = spark.read.option("header", "true") if manifest.lower().endswith(".csv") else None
    try:
        frame = reader.csv(manifest) if reader else spark.read.parquet(manifest)
    except AnalysisException as error:
        raise SourceError(f"cannot read manifest {manifest}: {_first_line(error)}") from None
    return _as_listing(frame, manifest).dropDuplicates(["path"]).repartition(partitions)


def list_local_manifest(spark, manifest: str) -> tuple[object, int, int]:
    """A local CSV manifest read here, on the driver, as listing rows (the first line of each
    path), with their count and total size, as a local folder is listed: Spark's CSV source, the
    de-duplicating shuffle and the count cost a 30-image run's list stage 3.0 s (0.6 s from the
    folder). Values are text, as Spark's CSV source reads them (empty: null), cast in Spark.
    A Parquet manifest (``fruitspark cloud sync`` writes one, usually to S3) keeps Spark's
    reader and its types."""
    from pyspark.sql.types import StringType, StructField, StructType

    try:
        with open(manifest, newline="", encoding="utf-8") as stream:
            reader = csv.DictReader(stream)
            records = [{name: value or None for name, value in row.items()} for row in reader]
            names = list(dict.fromkeys(reader.fieldnames or ()))  # a repeated header once
    except (OSError, ValueError, csv.Error) as error:
        raise SourceError(f"cannot read manifest {manifest}: {_first_line(error)}") from None
    first: dict[str, dict] = {}
    for record in records:
        if record.get("path") is not None:
            first.setdefault(record["path"], record)
    columns = {name: [record.get(name) for record in first.values()] for name in names}
    schema = StructType([StructField(name, StringType()) for name in names])
    frame = _as_listing(sparkenv.local_frame(spark, columns, schema), manifest)
    sizes = ((record.get("size") or "").strip() for record in first.values())
    return frame, len(first), sum(int(size) for size in sizes if size.isdigit())


def _as_listing(frame, manifest: str):
    """A manifest's rows as the listing's columns: the given ones cast, the others derived from
    the path (label, split) or unknown (size, modified)."""
    from pyspark.sql import functions as F

    if "path" not in frame.columns:
        raise SourceError(f"manifest {manifest} has no 'path' column (columns: {frame.columns})")
    defaults = {
        "size": F.lit(None).cast("long"),
        "modified": F.lit(None).cast("timestamp"),
        "label": label_expr(),
        "split": split_expr(),
    }
    columns = [F.col("path").cast("string").alias("path")]
    for name, default in defaults.items():
        given = F.col(name).cast(default_type(name)) if name in frame.columns else None
        columns.append((default if given is None else F.coalesce(given, default)).alias(name))
    return frame.select(*columns)


def default_type(name: str) -> str:
    return {"size": "long", "modified": "timestamp"}.get(name, "string")


def images_per_partition(images: int, parallelism: int) -> int:
    """About eight tasks per core (balance, progress, cheap retries), 32 to 1000 images each."""
    return max(32, min(1000, math.ceil(images / max(1, parallelism * 8))))


def partition_bytes(images: int, total_bytes: int, parallelism: int) -> tuple[int, int]:
    """``spark.sql.files`` maxPartitionBytes and openCostInBytes that pack the wanted image count.

    Spark's default 4 MB open cost makes every 5 kB image weigh like a 4 MB file; an open cost of
    one average image makes the packing count images instead.
    """
    average = max(1, total_bytes // max(1, images))
    return images_per_partition(images, parallelism) * 2 * average, average


def absolute_local(uri: str) -> str:
    """A relative local path made absolute here, on the driver: executors run in other folders."""
    return uri if "://" in uri or uri.startswith("file:") else os.path.abspath(uri)


def real_root(root: str) -> str | None:
    """The input folder with symlinks resolved, as a prefix; None for a remote root."""
    local_root = local_path_of(root)
    return None if local_root is None else os.path.realpath(local_root).rstrip(os.sep) + os.sep


def is_inside(path: str, resolved_root: str | None) -> bool:
    """Whether a local image resolves inside ``resolved_root`` (see :func:`real_root`)."""
    local_path = local_path_of(path)
    if local_path is None or resolved_root is None:
        return True
    return os.path.realpath(local_path).startswith(resolved_root)


def local_path_of(uri: str) -> str | None:
    """``file:/x``, ``file:///x`` or ``/x`` to ``/x``; None for other schemes."""
    if uri.startswith("file:"):
        return "/" + uri[len("file:") :].lstrip("/")
    return None if "://" in uri else uri


def read_bytes(uri: str) -> bytes:
    """One image's bytes from a local path or any filesystem pyarrow knows (s3, gs, hdfs)."""
    local = local_path_of(uri)
    try:
        if local is not None:
            with open(local, "rb") as stream:
                return stream.read()
        from pyarrow import fs

        parsed = urlparse(uri)
        scheme = "s3" if parsed.scheme in ("s3a", "s3n") else parsed.scheme
        filesystem, _ = fs.FileSystem.from_uri(f"{scheme}://{parsed.netloc}/")
        with filesystem.open_input_stream(parsed.netloc + parsed.path) as stream:
            return stream.read()
    except (OSError, ValueError) as error:
        raise ReadError(f"cannot read file: {_first_line(error)}") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


SPLIT_SUFFIX = re.compile(rf"^(?P<uri>.+)@(?P<split>{'|'.join(SPLIT_NAMES)})$", re.IGNORECASE)


@dataclass(frozen=True)
class InputSpec:
    """One input of a run: a folder or a manifest, and the split that all its images get, if set.

    ``photos@test`` puts every image of ``photos`` in the test split; without a suffix each image's
    split comes from its folders (``Training/``, ``val/``…) or its manifest's ``split`` column.
    """

    uri: str
    split: str | None = None

    @classmethod
    def parse(cls, text: str) -> InputSpec:
        found = SPLIT_SUFFIX.match(text)
        if found is None:
            return cls(absolute_local(text))
        return cls(absolute_local(found["uri"]), SPLIT_NAMES[found["split"].lower()])

    @property
    def kind(self) -> str:
        """``csv`` or ``parquet`` (a manifest), or ``folder``."""
        suffix = self.uri.lower().rpartition(".")[2]
        return suffix if suffix in ("csv", "parquet") else "folder"

    @property
    def is_manifest(self) -> bool:
        return self.kind != "folder"


@dataclass(frozen=True)
class Listing:
    """What the list stage found: ``source`` rows to featurise (a folder's carry their bytes),
    ``listing`` the same rows without bytes plus the empty files, and the totals."""

    source: object
    listing: object
    empty: object | None
    listed: int
    total_bytes: int


def list_inputs(spark, inputs: list[str], *, partitions: int) -> Listing:
    """Every input's images as one listing (folders and manifests mixed, each with its split)."""
    from functools import reduce

    parts = [_list_one(spark, InputSpec.parse(text), partitions) for text in inputs]
    if len(parts) == 1:
        return parts[0]
    with_content = any("content" in part.source.columns for part in parts)
    sources = [_with_content(part.source) if with_content else part.source for part in parts]
    empties = [part.empty for part in parts if part.empty is not None]
    return Listing(
        source=reduce(lambda a, b: a.unionByName(b), sources),
        listing=reduce(lambda a, b: a.unionByName(b), [part.listing for part in parts]),
        empty=reduce(lambda a, b: a.unionByName(b), empties) if empties else None,
        listed=sum(part.listed for part in parts),
        total_bytes=sum(part.total_bytes for part in parts),
    )


def input_root(inputs: list[str]) -> str | None:
    """The folder images must resolve inside (symlink check): the inputs' common local folder;
    None when a manifest (paths anywhere) or a remote folder is among them."""
    specs = [InputSpec.parse(text) for text in inputs]
    if any(spec.is_manifest or local_path_of(spec.uri) is None for spec in specs):
        return None
    return os.path.commonpath([local_path_of(spec.uri) for spec in specs])


def _list_one(spark, spec: InputSpec, partitions: int) -> Listing:
    from pyspark.sql import functions as F

    local = local_path_of(spec.uri)
    on_driver = {"folder": list_local_folder, "csv": list_local_manifest}  # local inputs
    lister = on_driver.get(spec.kind) if local is not None else None
    if lister is not None:
        source, listed, total_bytes = lister(spark, local)
        if spec.split is not None:
            source = source.withColumn("split", F.lit(spec.split))
        return Listing(source, source, None, listed, total_bytes)
    if spec.is_manifest:
        source = read_manifest(spark, spec.uri, partitions=partitions)
    else:
        source = read_folder(spark, spec.uri)
    if spec.split is not None:
        source = source.withColumn("split", F.lit(spec.split))
    listing = source.drop("content") if "content" in source.columns else source
    totals = listing.agg({"path": "count", "size": "sum"}).first()
    listed, total_bytes = int(totals[0]), int(totals[1] or 0)
    empty = None if spec.is_manifest else empty_images(spark, listing, listed)
    if empty is not None:
        if spec.split is not None:
            empty = empty.withColumn("split", F.lit(spec.split))
        listing = listing.unionByName(empty)
        listed += empty.count()
    return Listing(source, listing, empty, listed, total_bytes)


def _with_content(frame):
    """A manifest's rows with a null ``content``: its workers read each image by path."""
    from pyspark.sql import functions as F

    if "content" in frame.columns:
        return frame
    return frame.withColumn("content", F.lit(None).cast("binary"))

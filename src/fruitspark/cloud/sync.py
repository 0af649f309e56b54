"""Upload a folder of labelled images to S3, skipping what is already there, with a manifest.

Skipping compares size and MD5: S3's ETag is the MD5 only for single-part uploads without
SSE-KMS, so each object also carries its MD5 in its metadata and that is read (one HEAD request)
whenever the ETag cannot decide. Listing the prefix once keeps the unchanged case to one request
per thousand files.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import mimetypes
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fruitspark.formats import is_image_name

from .bucket import BucketSpec, S3Uri, ensure_bucket
from .clients import Aws
from .config import DEFAULT_REGION

MD5_METADATA = "md5"
_MANIFEST_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("label", pa.string()),
        ("size", pa.int64()),
        ("modified", pa.timestamp("ms", tz="UTC")),
    ]
)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SyncResult:
    """What one sync did; keys are relative to the bucket."""

    uploaded: tuple[str, ...]
    skipped: tuple[str, ...]
    bytes_uploaded: int
    manifest_uri: str | None

    @property
    def total(self) -> int:
        return len(self.uploaded) + len(self.skipped)


@dataclass(frozen=True)
class _Outcome:
    key: str
    uploaded: bool
    row: dict[str, Any]


def sync(
    local_dir: Path | str,
    s3_uri: str,
    *,
    workers: int = 8,
    manifest_uri: str | None = None,
    progress: Progress | None = None,
    region: str = DEFAULT_REGION,
    aws: Aws | None = None,
    kms_key_id: str | None = None,
) -> SyncResult:
    """Upload the images under ``local_dir`` to ``s3_uri``, in parallel, skipping unchanged ones.

    The bucket is created in ``region`` with fruitspark's settings if missing, checked if present
    (see :func:`ensure_bucket`); ``kms_key_id`` picks SSE-KMS for a new bucket.
    ``manifest_uri`` (``.parquet`` or ``.csv``, local path or ``s3://``) receives one row per
    image: path (its s3:// URI), label (its parent folder, empty at the top), size, modified.
    ``progress(done, total)`` is called from the calling thread after every file.
    """
    root = Path(local_dir)
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {root}")
    if manifest_uri is not None:
        _manifest_format(manifest_uri)
    aws = aws or Aws(region)
    target = S3Uri.parse(s3_uri)
    ensure_bucket(aws.s3, BucketSpec(target.bucket, aws.region, kms_key_id))
    files = sorted(_images(root))
    remote = _listing(aws.s3, target)
    outcomes: list[_Outcome] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [
            pool.submit(_sync_one, aws.s3, root, path, target, remote.get(_key(root, path, target)))
            for path in files
        ]
        try:
            for future in as_completed(futures):
                outcomes.append(future.result())
                if progress:
                    progress(len(outcomes), len(files))
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    if manifest_uri is not None:
        _write_manifest(aws.s3, manifest_uri, sorted((o.row for o in outcomes), key=_by_path))
    return SyncResult(
        uploaded=tuple(sorted(o.key for o in outcomes if o.uploaded)),
        skipped=tuple(sorted(o.key for o in outcomes if not o.uploaded)),
        bytes_uploaded=sum(o.row["size"] for o in outcomes if o.uploaded),
        manifest_uri=manifest_uri,
    )


def _images(root: Path) -> Iterator[Path]:
    """Image files under ``root``, skipping hidden files and folders (e.g. macOS ``._x.jpg``)."""
    for path in root.rglob("*"):
        hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
        if not hidden and is_image_name(path.name) and path.is_file():
            yield path


def _key(root: Path, path: Path, target: S3Uri) -> str:
    return target.prefix + path.relative_to(root).as_posix()


def _listing(s3: Any, target: S3Uri) -> dict[str, tuple[int, str]]:
    """Size and ETag of every object under the target prefix."""
    found: dict[str, tuple[int, str]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=target.bucket, Prefix=target.prefix
    ):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = (obj["Size"], obj["ETag"].strip('"'))
    return found


def _sync_one(
    s3: Any, root: Path, path: Path, target: S3Uri, remote: tuple[int, str] | None
) -> _Outcome:
    key = _key(root, path, target)
    stat = path.stat()
    data = path.read_bytes()
    digest = hashlib.md5(data, usedforsecurity=False)
    md5 = digest.hexdigest()
    unchanged = (
        remote is not None
        and remote[0] == len(data)
        and (remote[1] == md5 or _stored_md5(s3, target.bucket, key) == md5)
    )
    if not unchanged:
        s3.put_object(
            Bucket=target.bucket,
            Key=key,
            Body=data,
            ContentMD5=base64.b64encode(digest.digest()).decode("ascii"),
            ContentType=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
            Metadata={MD5_METADATA: md5},
        )
    parent = path.parent.relative_to(root)
    row = {
        "path": f"s3://{target.bucket}/{key}",
        "label": parent.name if parent.parts else None,
        "size": len(data),
        "modified": datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc),
    }
    return _Outcome(key=key, uploaded=not unchanged, row=row)


def _stored_md5(s3: Any, bucket: str, key: str) -> str | None:
    return s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get(MD5_METADATA)


def _by_path(row: dict[str, Any]) -> str:
    return row["path"]


def _manifest_format(uri: str) -> str:
    suffix = uri.lower().rsplit(".", 1)[-1]
    if suffix not in {"parquet", "csv"}:
        raise ValueError(f"manifest must end in .parquet or .csv: {uri!r}")
    return suffix


def _write_manifest(s3: Any, uri: str, rows: list[dict[str, Any]]) -> None:
    table = pa.Table.from_pylist(rows, schema=_MANIFEST_SCHEMA)
    if _manifest_format(uri) == "parquet":
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        body = sink.getvalue().to_pybytes()
    else:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(table.column_names)
        for row in rows:
            stamp = row["modified"].isoformat(timespec="milliseconds")
            writer.writerow([row["path"], row["label"] or "", row["size"], stamp])
        body = text.getvalue().encode("utf-8")
    if uri.startswith(("s3://", "s3a://", "s3n://")):
        location = S3Uri.parse(uri)
        s3.put_object(Bucket=location.bucket, Key=location.key, Body=body)
    else:
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        Path(uri).write_bytes(body)

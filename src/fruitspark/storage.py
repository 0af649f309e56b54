"""Driver-side file operations on the output, on any filesystem Spark reaches (local, HDFS, S3).

They go through the JVM's Hadoop FileSystem, so an s3:// output on EMR works exactly as a local
folder does, with the same credentials Spark uses. :class:`LocalFiles` does the same on a local
folder without Spark, so that an output is checked (and locked) before a JVM starts.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from fruitspark.sparkenv import hadoop_filesystem


class Storage:
    """Small files and folder moves under one output location."""

    def __init__(self, spark, root: str) -> None:
        self._jvm, self._root, self._fs = hadoop_filesystem(spark, root)
        self._fs.setWriteChecksum(False)  # no .crc companions next to summary.json on local disk
        self.root = self._root.toString()

    def _path(self, name: str = ""):
        return self._root if not name else self._jvm.org.apache.hadoop.fs.Path(self._root, name)

    def uri(self, name: str = "") -> str:
        return self._fs.makeQualified(self._path(name)).toString()

    def exists(self, name: str = "") -> bool:
        return bool(self._fs.exists(self._path(name)))

    def list(self, name: str = "") -> list[str]:
        if not self.exists(name):
            return []
        return sorted(
            status.getPath().getName() for status in self._fs.listStatus(self._path(name))
        )

    def delete(self, name: str = "") -> None:
        if self.exists(name):
            self._fs.delete(self._path(name), True)

    def rename(self, source: str, target: str) -> None:
        self.delete(target)
        if not self._fs.rename(self._path(source), self._path(target)):
            raise OSError(f"could not move {self.uri(source)} to {self.uri(target)}")

    def mkdirs(self, name: str = "") -> None:
        self._fs.mkdirs(self._path(name))

    def write_bytes(self, name: str, data: bytes) -> None:
        stream = self._fs.create(self._path(name), True)
        try:
            stream.write(data)
        finally:
            stream.close()

    def create_new(self, name: str, data: bytes) -> bool:
        """Write ``name`` only if it is absent, else return False (a lock's test-and-set)."""
        try:
            stream = self._fs.create(self._path(name), False)
        except Exception as error:  # Py4JJavaError of FileAlreadyExistsException
            if "FileAlreadyExists" in str(error) or self.exists(name):
                return False
            raise
        try:
            stream.write(data)
        finally:
            stream.close()
        return True

    def read_bytes(self, name: str) -> bytes:
        stream = self._fs.open(self._path(name))
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def write_json(self, name: str, value: Any) -> None:
        self.write_bytes(name, json.dumps(value, indent=2, sort_keys=False).encode())

    def read_json(self, name: str) -> Any:
        return json.loads(self.read_bytes(name))


class LocalFiles:
    """The subset of :class:`Storage` the pre-Spark checks use, on a local folder."""

    def __init__(self, root: str) -> None:
        self._root = Path(root).absolute()
        self.root = str(self._root)

    def uri(self, name: str = "") -> str:
        return (self._root / name).as_uri() if name else self._root.as_uri()

    def exists(self, name: str = "") -> bool:
        return (self._root / name).exists()

    def list(self, name: str = "") -> list[str]:
        folder = self._root / name
        return sorted(child.name for child in folder.iterdir()) if folder.is_dir() else []

    def delete(self, name: str = "") -> None:
        target = self._root / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()

    def create_new(self, name: str, data: bytes) -> bool:
        self._root.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(self._root / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
        return True

    def read_bytes(self, name: str) -> bytes:
        return (self._root / name).read_bytes()

    def read_json(self, name: str) -> Any:
        return json.loads(self.read_bytes(name))

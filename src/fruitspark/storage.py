"""Driver-side file operations on the output, on any filesystem Spark reaches (local, HDFS, S3).

They go through the JVM's Hadoop FileSystem, so an s3:// output on EMR works exactly as a local
folder does, with the same credentials Spark uses.
"""

from __future__ import annotations

import json
from typing import Any


class Storage:
    """Small files and folder moves under one output location."""

    def __init__(self, spark, root: str) -> None:
        jvm = spark.sparkContext._jvm
        self._jvm = jvm
        self._root = jvm.org.apache.hadoop.fs.Path(root)
        self._fs = self._root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
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

"""Read a PyTorch checkpoint (a state dict) into numpy arrays without importing torch.

Executors only run ONNX Runtime, so turning the model's ``.pth`` weights into arrays must not need
the torch wheel. A checkpoint is a pickle whose tensors point at raw storage bytes kept next to the
pickle; this module re-implements just enough of ``torch.load`` to rebuild them. Its unpickler knows
only the few globals a state dict needs, mapped to numpy, so a hostile file cannot run code.

Both on-disk layouts are read:

* legacy (``_use_new_zipfile_serialization=False``, torch < 1.6): pickled magic number, protocol
  version and sys info, then the pickled object, the pickled list of storage keys, and for each
  storage an 8-byte little-endian element count followed by its raw bytes;
* zip (torch >= 1.6): ``<prefix>/data.pkl`` plus one ``<prefix>/data/<key>`` entry per storage.
"""

from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint names a global a state dict never needs; it was refused, nothing was run."""


class _StorageType:
    """Stands in for ``torch.FloatStorage`` & co., which only tag a storage with its dtype."""

    def __init__(self, name: str) -> None:
        self.name = name


def _rebuild_tensor(
    storage: np.ndarray, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> np.ndarray:
    """``torch._utils._rebuild_tensor(_v2)``: a strided view into a flat storage.

    The view is bounds-checked first because ``as_strided`` would otherwise read arbitrary memory
    for a crafted file. Legacy files fill the storage only after unpickling; the view sees that.
    """
    size, stride = tuple(size), tuple(stride)
    if len(size) != len(stride) or offset < 0 or min(stride, default=0) < 0:
        raise ValueError(f"invalid tensor layout: offset {offset}, size {size}, stride {stride}")
    if 0 in size:
        return np.empty(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= storage.size:
        raise ValueError(f"tensor reaches element {last} of a storage of {storage.size}")
    item = storage.itemsize
    return np.lib.stride_tricks.as_strided(
        storage[offset:], size, tuple(s * item for s in stride), writeable=False
    )


def _rebuild_parameter(data: np.ndarray, *_: Any) -> np.ndarray:
    """``torch._utils._rebuild_parameter``: an ``nn.Parameter`` is just its data here."""
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    """Resolves only allow-listed globals; storages come from ``load_storage(key, dtype, n)``."""

    def __init__(
        self,
        file: IO[bytes],
        load_storage: Callable[[str, np.dtype, int], np.ndarray] | None = None,
    ) -> None:
        super().__init__(file)
        self._load_storage = load_storage
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[module, name]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name.endswith("Storage"):
            raise pickle.UnpicklingError(f"tensors of type torch.{name} are not supported")
        raise UnsafeCheckpointError(
            f"checkpoint refers to the global {module}.{name}, which is not needed to read a "
            "state dict; refusing to load it"
        )

    def persistent_load(self, pid: Any) -> np.ndarray:
        """Map a ``('storage', type, key, location, numel[, view])`` id to a flat array."""
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and _text(pid[0]) == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id in checkpoint: {pid!r}")
        storage_type, key, numel = pid[1], _text(pid[2]), pid[4]
        if self._load_storage is None:
            raise pickle.UnpicklingError("storage outside the checkpoint's main object")
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"not a storage type: {storage_type!r}")
        if len(pid) == 6 and pid[5] is not None:
            raise pickle.UnpicklingError(
                "storage views (torch < 0.4 checkpoints) are not supported"
            )
        if key not in self.storages:
            dtype = np.dtype(_STORAGE_DTYPES[storage_type.name])
            self.storages[key] = self._load_storage(key, dtype, numel)
        return self.storages[key]


def _text(value: str | bytes) -> str:
    """Checkpoints written by Python 2 hold ids and keys as bytes."""
    return value.decode("ascii") if isinstance(value, bytes) else value


def _load_legacy(file: IO[bytes]) -> Any:
    """Unpickle with empty storages, then fill them from the raw bytes that follow the pickle."""
    if _Unpickler(file).load() != LEGACY_MAGIC_NUMBER:
        raise ValueError("not a PyTorch checkpoint: bad magic number")
    if (version := _Unpickler(file).load()) != LEGACY_PROTOCOL_VERSION:
        raise ValueError(f"unsupported legacy checkpoint protocol version {version}")
    byteorder = "<" if _Unpickler(file).load().get("little_endian", True) else ">"

    def empty_storage(_key: str, dtype: np.dtype, numel: int) -> np.ndarray:
        return np.empty(numel, dtype.newbyteorder(byteorder))

    unpickler = _Unpickler(file, empty_storage)
    result = unpickler.load()
    for key in map(_text, _Unpickler(file).load()):
        storage = unpickler.storages[key]
        (numel,) = struct.unpack("<q", file.read(8))
        if numel != storage.size:
            raise ValueError(f"storage {key}: expected {storage.size} elements, file has {numel}")
        storage[:] = np.frombuffer(file.read(storage.nbytes), storage.dtype)
    return result


def _load_zip(archive: zipfile.ZipFile) -> Any:
    """Unpickle ``<prefix>/data.pkl``, reading each storage from its own archive entry."""
    pickles = [name for name in archive.namelist() if name.rpartition("/")[2] == "data.pkl"]
    if len(pickles) != 1:
        raise ValueError(f"not a PyTorch zip checkpoint: data.pkl entries {pickles}")
    prefix = pickles[0].removesuffix("data.pkl")
    byteorder = "<"
    if f"{prefix}byteorder" in archive.namelist():
        byteorder = "<" if archive.read(f"{prefix}byteorder").strip() == b"little" else ">"

    def read_storage(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
        storage = np.frombuffer(archive.read(f"{prefix}data/{key}"), dtype.newbyteorder(byteorder))
        if storage.size != numel:
            raise ValueError(f"storage {key}: expected {numel} elements, found {storage.size}")
        return storage

    with archive.open(pickles[0]) as file:
        return _Unpickler(file, read_storage).load()


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict (legacy or zip format) as name -> contiguous native numpy array.

    Arrays are copies in native byte order, so none aliases another or the file's buffers.
    Anything but a flat mapping of names to tensors raises ``ValueError``; a pickle naming any
    global beyond tensor rebuilding raises :class:`UnsafeCheckpointError` before it can run.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            obj = _load_zip(archive)
    else:
        with path.open("rb") as file:
            obj = _load_legacy(file)
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return {str(k): v.astype(v.dtype.newbyteorder("="), order="C") for k, v in obj.items()}

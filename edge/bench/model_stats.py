"""Size, parameters, MFLOPs and precision of a model file, computed from its graph.

Counting rules, the same for every format so the numbers compare:

* **MFLOPs** = 2 x multiply-accumulates / 1e6 of the convolution and matrix layers (Conv, ConvTranspose,
  Gemm, MatMul / CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV, FULLY_CONNECTED, BATCH_MATMUL) for one
  batch-1 inference: a KxK convolution with Cin/groups input channels per output is
  ``2 * (Cin/groups) * K * K * Cout * Hout * Wout``. Bias additions, activations, pooling, softmax and
  (de)quantisation are not counted; a quantised model counts the same operations as its float twin.
* **params** = elements of those layers' weights and biases, as the file holds them (BatchNorm folded
  into the convolution by the export); for a ``.pt`` checkpoint, BatchNorm counts as the bias it folds into.

ONNX needs only onnxruntime: the graph is run once with optimisations off and profiling on, and each
node's input and output shapes come from the profile. TFLite uses the interpreter's op and tensor
details. A ``.pt`` checkpoint is counted by its backend in the training package (torch, desktop only).
Anything that cannot be computed is
``None`` (shown as "n/a").
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgedet.edge.runtime.backends import open_backend
from edgedet.edge.runtime.backends.tflite import interpreter_class
from edgedet.edge.runtime.backends.tflite_metadata import read_tflite_spec

__all__ = ["ModelStats", "Op", "count_ops", "model_stats", "onnx_ops", "tflite_ops"]

log = logging.getLogger("edgedet.bench")


@dataclass(frozen=True)
class Op:
    """One compute layer, normalised across formats: ``kind`` is ``conv`` (weight
    ``[Cout, Cin/groups, K, K]`` or TFLite's ``[Cout, K, K, Cin]`` / ``[1, K, K, C]``: MACs per output pixel
    = weight elements), ``deconv`` (MACs per *input* pixel = weight elements) or ``matmul``; ``pixels`` is
    the spatial size the weight is applied over; ``macs_override`` is used for matrix products."""

    kind: str
    weight: tuple[int, ...]
    bias: tuple[int, ...] | None
    pixels: int = 1
    macs_override: int | None = None
    constant_weight: bool = True

    @property
    def macs(self) -> int:
        if self.macs_override is not None:
            return self.macs_override
        return math.prod(self.weight) * self.pixels

    @property
    def params(self) -> int:
        if not self.constant_weight:
            return 0
        return math.prod(self.weight) + (math.prod(self.bias) if self.bias else 0)


@dataclass(frozen=True)
class ModelStats:
    """What a model file costs: ``size_kb`` on disk, ``params``, ``mflops`` (``None`` = n/a), the
    ``runtime`` that runs it and its ``precision`` (fp32, fp16, int8, ...)."""

    size_kb: float
    params: int | None
    mflops: float | None
    runtime: str
    precision: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_ops(ops: Iterable[Op]) -> tuple[int, float]:
    """``(params, MFLOPs)`` of ``ops``: MFLOPs = 2 x MACs / 1e6."""
    ops = list(ops)
    return sum(op.params for op in ops), 2.0 * sum(op.macs for op in ops) / 1e6


# --------------------------------------------------------------------------- ONNX


def _shapes(entries: Sequence[dict[str, list[int]]]) -> list[tuple[str, tuple[int, ...]]]:
    """The profile's ``[{"float": [1, 3, 8, 8]}, ...]`` -> ``[("float", (1, 3, 8, 8)), ...]``."""
    return [(dtype, tuple(int(v) for v in dims)) for entry in entries for dtype, dims in entry.items()]


def _onnx_op(
    op_name: str, inputs: list[tuple[str, tuple[int, ...]]], outputs: list[tuple[str, tuple[int, ...]]]
) -> Op | None:
    if not inputs or not outputs:
        return None
    out = outputs[0][1]
    if op_name == "Conv" and len(inputs) >= 2 and len(out) >= 3:
        bias = inputs[2][1] if len(inputs) > 2 else None
        return Op("conv", inputs[1][1], bias, math.prod(out[2:]))
    if op_name == "ConvTranspose" and len(inputs) >= 2:
        bias = inputs[2][1] if len(inputs) > 2 else None
        return Op("deconv", inputs[1][1], bias, math.prod(inputs[0][1][2:]))
    if op_name == "Gemm" and len(inputs) >= 2:
        a, b = inputs[0][1], inputs[1][1]
        bias = inputs[2][1] if len(inputs) > 2 else None
        return Op("matmul", b, bias, macs_override=math.prod(out) * (a[-1] if len(a) else 1))
    if op_name == "MatMul" and len(inputs) >= 2:
        a, b = inputs[0][1], inputs[1][1]
        k = a[-1] if a else 1
        return Op("matmul", b, None, macs_override=math.prod(out) * k, constant_weight=False)
    return None


def onnx_ops(path: str | os.PathLike[str]) -> tuple[list[Op], str]:
    """The compute layers of an ONNX model and its precision, from one profiled run (zeros in) of
    onnxruntime with graph optimisations off."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="edgedet-stats-") as tmp:
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {}
        for inp in session.get_inputs():
            dims = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
            feeds[inp.name] = np.zeros(dims, dtype=np.float16 if inp.type == "tensor(float16)" else np.float32)
        session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    ops, kinds = [], set()
    for event in events:
        args = event.get("args") or {}
        if event.get("cat") != "Node" or "op_name" not in args or not str(event.get("name")).endswith("_kernel_time"):
            continue
        kinds.add(args["op_name"])
        ins, outs = _shapes(args.get("input_type_shape", [])), _shapes(args.get("output_type_shape", []))
        op = _onnx_op(args["op_name"], ins, outs)
        if op is not None:
            ops.append(op)
    meta = session.get_modelmeta().custom_metadata_map.get("edgedet")
    float16_input = any(inp.type == "tensor(float16)" for inp in session.get_inputs())
    return ops, _onnx_precision(kinds, float16_input, _spec_quantization(meta))


def _onnx_precision(kinds: set[str], float16_input: bool, quantization: str | None) -> str:
    if quantization:
        return "int8" if "int8" in quantization else quantization
    if kinds & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"}:
        return "int8"
    return "fp16" if float16_input else "fp32"


# --------------------------------------------------------------------------- TFLite

# the spec's extra["quantization"] (edgedet.convert.tflite_export.QUANTIZATION) -> the report's precision
_TFLITE_PRECISION = {"none": "fp32", "fp16-weights": "fp16", "dynamic-range-int8": "dynamic"}
_TFLITE_CONV = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "conv", "CONV_3D": "conv"}


def tflite_ops(path: str | os.PathLike[str]) -> tuple[list[Op], list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """The compute layers of a TFLite model plus the interpreter's op and tensor details."""
    interp = interpreter_class()(model_path=str(path))
    details = interp._get_ops_details()  # public in spirit: every LiteRT / TF release since 2.5 has it
    tensors = {int(t["index"]): t for t in interp.get_tensor_details()}
    produced = {int(i) for op in details for i in op["outputs"]}

    def shape(index: int) -> tuple[int, ...]:
        return tuple(int(v) for v in tensors[index]["shape"])

    ops = []
    for op in details:
        name, ins, outs = op["op_name"], [int(i) for i in op["inputs"]], [int(i) for i in op["outputs"]]
        if len(ins) < 2 or not outs or ins[1] < 0:
            continue
        bias = shape(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
        out = shape(outs[0])
        if name in _TFLITE_CONV:
            ops.append(Op("conv", shape(ins[1]), bias, math.prod(out[1:-1])))
        elif name == "TRANSPOSE_CONV":  # inputs: output_shape, weights, input[, bias]
            bias = shape(ins[3]) if len(ins) > 3 and ins[3] >= 0 else None
            ops.append(Op("deconv", shape(ins[1]), bias, math.prod(shape(ins[2])[1:-1])))
        elif name == "FULLY_CONNECTED":
            w = shape(ins[1])
            ops.append(Op("matmul", w, bias, macs_override=math.prod(out[:-1]) * math.prod(w)))
        elif name == "BATCH_MATMUL":
            k = shape(ins[0])[-1]
            ops.append(
                Op(
                    "matmul",
                    shape(ins[1]),
                    None,
                    macs_override=math.prod(out) * k,
                    constant_weight=ins[1] not in produced,
                )
            )
    return ops, details, tensors


def _tflite_precision(
    details: list[dict[str, Any]], tensors: dict[int, dict[str, Any]], quantization: str | None
) -> str:
    if quantization:
        return _TFLITE_PRECISION.get(quantization, quantization)
    integer = {np.dtype(np.int8), np.dtype(np.uint8)}
    first_input = next((int(op["inputs"][0]) for op in details if len(op["inputs"])), None)
    if first_input is not None and np.dtype(tensors[first_input]["dtype"]) in integer:
        return "int8"
    ops = {op["op_name"] for op in details}
    dtypes = {np.dtype(t["dtype"]) for t in tensors.values()}
    if "QUANTIZE" in ops and dtypes & integer:
        return "int8-float-io"
    if dtypes & integer:
        return "dynamic"
    if np.dtype(np.float16) in dtypes:
        return "fp16"
    return "fp32"


# --------------------------------------------------------------------------- any file


def _spec_quantization(spec_json: str | None) -> str | None:
    """``extra["quantization"]`` of a spec in JSON, or ``None``."""
    try:
        extra = json.loads(spec_json or "{}").get("extra") or {}
    except (ValueError, AttributeError):
        return None
    value = extra.get("quantization") if isinstance(extra, dict) else None
    return str(value) if value else None


def _tflite_quantization(path: Path) -> str | None:
    """``extra["quantization"]`` of a ``.tflite`` file's spec, from where the runtime reads it (the file's
    ``"edgedet"`` metadata, else its sidecar); ``None`` when there is none or it cannot be read."""
    try:
        spec = read_tflite_spec(path)
    except (OSError, ValueError) as exc:
        log.warning("%s: no quantisation from its spec (%s)", path, exc)
        return None
    value = spec.extra.get("quantization") if spec is not None else None
    return str(value) if value else None


RUNTIMES = {".onnx": "onnxruntime", ".tflite": "litert", ".pt": "torch"}


def _pt_stats(path: Path) -> tuple[int, float]:
    """A checkpoint's ``(params, MFLOPs)``, counted by its own backend (the training package, desktop only)."""
    backend: Any = open_backend(path)
    return backend.layer_stats()


def model_stats(path: str | os.PathLike[str]) -> ModelStats:
    """Stats of a ``.onnx``, ``.tflite`` or ``.pt`` file; what cannot be computed here is ``None``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in RUNTIMES:
        raise ValueError(f"{path}: unknown model type {suffix!r}; expected one of {sorted(RUNTIMES)}")
    size_kb = path.stat().st_size / 1024
    try:
        if suffix == ".onnx":
            ops, precision = onnx_ops(path)
        elif suffix == ".tflite":
            ops, details, tensors = tflite_ops(path)
            precision = _tflite_precision(details, tensors, _tflite_quantization(path))
        else:
            params, mflops = _pt_stats(path)
            return ModelStats(size_kb, params, mflops, "torch", "fp32")
    except Exception as exc:  # a stat is worth reporting as n/a, not worth stopping the benchmark for
        log.warning("%s: params/MFLOPs not available (%s: %s)", path, type(exc).__name__, exc)
        quantization = _tflite_quantization(path) if suffix == ".tflite" else None
        precision = _TFLITE_PRECISION.get(quantization or "", quantization) if quantization else "?"
        return ModelStats(size_kb, None, None, RUNTIMES[suffix], "fp32" if suffix == ".pt" else precision)
    if not ops:  # e.g. a runtime too old to report shapes: "no layers" would be a wrong 0
        log.warning("%s: params/MFLOPs not available (no convolution or matrix layer found)", path)
        return ModelStats(size_kb, None, None, RUNTIMES[suffix], precision)
    params, mflops = count_ops(ops)
    return ModelStats(size_kb, params, mflops, RUNTIMES[suffix], precision)

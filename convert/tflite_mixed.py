"""Full-integer int8 TFLite with chosen layers kept in float, and the layer ids both int8 paths share.

    from edgedet.convert.tflite_mixed import export_tflite_int8_keep_float, tflite_layer_names, tflite_layer_ops

    tflite_layer_names("best.onnx")  # ['/model/base_net/base_net.0/base_net.0.0/Conv', ...] (execution order)
    tflite_layer_ops("best.onnx")    # {'/model/base_net/base_net.0/base_net.0.0/Conv': 'PAD+CONV_2D', ...}
    export_tflite_int8_keep_float("best.onnx", "best_mixed.tflite", "voc:data/faces:train",
                                  keep_float=["/model/base_net/base_net.0/base_net.0.0/Conv"])

**Layer ids.** A layer is named by the fp32 ONNX node it comes from (the ``Conv`` node's name for a
convolution with its bias, folded BatchNorm and fused ReLU), so "keep layer X float" means the same layer
for ONNX Runtime (``quantize_onnx(..., exclude_nodes=[X])``, i.e. ``nodes_to_exclude``) and for TFLite.

**Conversion, the deny-list route.** onnx2tf turns the ONNX model into a TensorFlow saved model (run offline
in a scratch folder by :mod:`edgedet.convert.tflite_export`'s own helpers); ``tf.lite.TFLiteConverter`` then
converts it exactly as onnx2tf's ``integer_quant`` / ``full_integer_quant`` variants do (optimisations
``DEFAULT``, ops ``TFLITE_BUILTINS_INT8`` + ``SELECT_TF_OPS``, per-channel weights, the same calibration
tensors) but stops after calibration (``_experimental_calibrate_only``, as
``tf.lite.experimental.QuantizationDebugger`` sets it), and the calibrated model is quantised by the
converter's MLIR quantiser, ``mlir_quantize(calibrated, denylisted_nodes=...)``, the call behind the
debugger's ``get_nondebug_quantized_model`` with ``QuantizationDebugOptions(denylisted_nodes=...)``:
the deny-listed ops stay float, with ``DEQUANTIZE`` / ``QUANTIZE`` around them. With nothing deny-listed
this gives the export's int8 file (same outputs, bit for bit, on the tests' model). The result is slimmed
(:func:`edgedet.convert.tflite_slim.slim_tflite`) and carries its spec like every exported ``.tflite``
(``extra["float_layers"]`` lists the layers kept float). Each deny-listed layer is checked to be float in
the file written; a layer the converter would not keep float is an error, never a silent int8 layer.

The onnx2tf run and the calibration are the slow parts (seconds to a minute); both are cached in this
process (by the ONNX file's bytes and the calibration tensors' bytes), so a search that converts the same
model with many deny-lists pays for them once and well under a second per variant (the tests' SSD; the
quantiser itself takes ~0.05 s). TensorFlow runs in this process (imported on first use, ~5 s);
onnx2tf runs in a subprocess as for the export.

**Which TFLite ops are layer X** (:class:`LayerMap`). onnx2tf renames everything (``model_16/tf.nn.relu_2/
Relu;...``), fuses ReLUs and bias adds into convolutions, adds ``PAD`` ops and drops NCHW<->NHWC
transposes, so names cannot be matched. The TFLite float graph (the calibrated model, whose ops and tensor
names are those the quantiser deny-lists) and the fp32 ONNX model are instead run on the same three
synthetic probe images (fixed seeds, through the spec's own pre-processing), and every TFLite op output is
paired with the ONNX tensors holding the same values (to 1e-3 relative), in any axis order (NCHW vs NHWC)
once size-1 axes are dropped. An op's layer is the first ONNX node, in ONNX order, with a weight (an
initializer of rank >= 2), else the first node, among the nodes producing its matched tensors and the
unmatched ONNX nodes between them and the previous matched tensors (a ``Conv`` -> ``Relu`` pair whose
output a fused ``CONV_2D`` holds is the ``Conv``; an ONNX ``Transpose`` after a head ``Conv`` has the same
values as the ``CONV_2D``'s NHWC output and joins it). An op with no ONNX counterpart (``PAD``) joins the
layer that all its consumers belong to; what joins none is listed in :attr:`LayerMap.unmapped`, never
dropped. Ops that only repeat an earlier op's values (same ONNX tensors) join that op's layer.

**Aligning two TFLite files** (:func:`align_graphs`; the int8 file and the float reference, or two int8
files). Exported files have no tensor names left (:mod:`edgedet.convert.tflite_slim`) and two conversions
may list their ops in different orders, so ops are paired by graph structure with ``QUANTIZE`` /
``DEQUANTIZE`` ops looked through (an int8 file differs from its float twin only by those, and a file with
float layers only by more of them): from the graph input on, an op pairs with the op of the same code and
output shapes whose inputs come from the ops already paired with its own inputs' producers; sibling ops fed
by one tensor (the heads) are told apart by the ops that follow them, then by their weights. At least 90 %
of each side's ops must pair, else it is a ``ValueError`` naming both files.
"""

from __future__ import annotations

import atexit
import contextlib
import difflib
import hashlib
import itertools
import logging
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgedet.convert.calibration import CalibSource, calibration_tensors
from edgedet.edge.core.model_spec import ModelSpec

__all__ = [
    "LayerMap",
    "TfliteGraph",
    "TfliteLayer",
    "align_graphs",
    "export_tflite_int8_keep_float",
    "layer_map",
    "tflite_layer_names",
    "tflite_layer_ops",
]

log = logging.getLogger("edgedet.tflite_mixed")

IO_TYPES = ("float", "int8")
QDQ_OPS = ("QUANTIZE", "DEQUANTIZE")
MATCH_RTOL = 1e-3  # fp32 ONNX vs fp32 TFLite: ~1e-6 relative; distinct tensors differ by O(1)
MIN_ALIGNED = 0.9
_CACHE_SIZE = 3


# --- TFLite graphs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TfliteOp:
    index: int
    opcode: str
    inputs: tuple[int, ...]  # tensor indices (-1: an optional input left out)
    outputs: tuple[int, ...]


@dataclass
class TfliteGraph:
    """A TFLite model's ops and tensors, read through the LiteRT interpreter (execution order)."""

    ops: list[TfliteOp]
    tensors: dict[int, dict[str, Any]]  # index -> LiteRT tensor details
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    source: str = "model"
    producer: dict[int, int] = field(default_factory=dict)  # tensor -> op index
    interpreter: Any = field(default=None, repr=False, compare=False)  # builtin kernels, for constants

    def __post_init__(self) -> None:
        self.producer = {t: op.index for op in self.ops for t in op.outputs}

    @classmethod
    def read(cls, model: bytes | str | os.PathLike[str], source: str | None = None) -> TfliteGraph:
        interpreter = _interpreter(model, delegates=False)  # with XNNPACK, LiteRT lists DELEGATE nodes too
        return cls.from_interpreter(interpreter, source or (str(model) if not isinstance(model, bytes) else "model"))

    @classmethod
    def from_interpreter(cls, interpreter: Any, source: str = "model") -> TfliteGraph:
        tensors = {int(d["index"]): d for d in interpreter.get_tensor_details()}
        ops = [
            TfliteOp(int(o["index"]), str(o["op_name"]), tuple(map(int, o["inputs"])), tuple(map(int, o["outputs"])))
            for o in interpreter._get_ops_details()  # LiteRT's only view of the op list
        ]
        ins = tuple(int(d["index"]) for d in interpreter.get_input_details())
        outs = tuple(int(d["index"]) for d in interpreter.get_output_details())
        return cls(ops, tensors, ins, outs, source, interpreter=interpreter)

    def is_qdq(self, op: TfliteOp) -> bool:
        return op.opcode in QDQ_OPS

    def compute_ops(self) -> list[TfliteOp]:
        return [op for op in self.ops if not self.is_qdq(op)]

    def is_activation(self, tensor: int) -> bool:
        return tensor in self.producer or tensor in self.inputs

    def source_op(self, tensor: int) -> int | None:
        """The compute op behind ``tensor`` through any ``QUANTIZE`` / ``DEQUANTIZE`` chain; ``None`` for a
        graph input (or a constant)."""
        seen = 0
        while tensor in self.producer and seen < 64:
            op = self.ops[self.producer[tensor]]
            if not self.is_qdq(op):
                return op.index
            tensor = op.inputs[0]
            seen += 1
        return None

    def activation_sources(self, op: TfliteOp) -> list[int | None]:
        return [self.source_op(t) for t in op.inputs if t >= 0 and self.is_activation(t)]

    def constant(self, tensor: int) -> np.ndarray | None:
        """A constant tensor's value as stored (``None`` for activations or when unreadable)."""
        if self.interpreter is None or self.is_activation(tensor) or tensor < 0:
            return None
        try:
            return np.array(self.interpreter.get_tensor(tensor))
        except ValueError:
            return None

    def dtype(self, tensor: int) -> np.dtype:
        return np.dtype(self.tensors[tensor]["dtype"])

    def shape(self, tensor: int) -> tuple[int, ...]:
        return tuple(int(v) for v in self.tensors[tensor]["shape"])

    def name(self, tensor: int) -> str:
        return str(self.tensors[tensor].get("name") or "")

    def is_quantized(self, op: TfliteOp) -> bool:
        """Whether ``op`` computes in integers (its first output is an integer tensor)."""
        return bool(op.outputs) and self.dtype(op.outputs[0]).kind in "iu"

    def describe(self, op: TfliteOp) -> str:
        shape = list(self.shape(op.outputs[0])) if op.outputs else []
        return f"op {op.index} {op.opcode} {shape}"


def _interpreter(
    model: bytes | str | os.PathLike[str], preserve: bool = False, threads: int | None = None, delegates: bool = True
) -> Any:
    """A LiteRT interpreter, tensors allocated. ``preserve``: every intermediate tensor stays readable (LiteRT
    then hands XNNPACK one op at a time, so the values are still XNNPACK's); ``delegates=False``: builtin
    kernels only."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs: dict[str, Any] = {"experimental_preserve_all_tensors": preserve}
    if not delegates:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if threads:
        kwargs["num_threads"] = int(threads)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "preserve_all_tensors is intended for debugging": it is
            if isinstance(model, bytes):
                interpreter = Interpreter(model_content=model, **kwargs)
            else:
                interpreter = Interpreter(model_path=os.fspath(model), **kwargs)
        interpreter.allocate_tensors()
    except Exception as exc:  # LiteRT raises ValueError / RuntimeError with its own text
        where = "model" if isinstance(model, bytes) else os.fspath(model)
        raise ValueError(f"{where}: not a loadable TFLite model ({exc})") from exc
    return interpreter


COMMUTATIVE = {"ADD", "MUL", "MAXIMUM", "MINIMUM"}


def _weights(graph: TfliteGraph, op: TfliteOp) -> np.ndarray | None:
    """The op's first constant input of rank >= 2 (its weights), as float64 (dequantised)."""
    for t in op.inputs:
        if t >= 0 and not graph.is_activation(t) and len(graph.shape(t)) >= 2:
            value = graph.constant(t)
            if value is not None:
                return dequantized(graph, t, value).astype(np.float64).ravel()
    return None


def _cosine(a: np.ndarray | None, b: np.ndarray | None) -> float:
    if a is None or b is None or a.size != b.size:
        return -2.0
    norm = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / norm if norm > 0 else (1.0 if not a.any() and not b.any() else 0.0)


def _downstream(graph: TfliteGraph, depth: int = 4) -> dict[int, Any]:
    """Per compute op, a signature of the ops that follow it (``depth`` levels: op codes and shapes)."""
    consumers: dict[int, list[int]] = {}
    for op in graph.compute_ops():
        for s in graph.activation_sources(op):
            if s is not None:
                consumers.setdefault(s, []).append(op.index)

    def sig(index: int, level: int) -> Any:
        op = graph.ops[index]
        head = (op.opcode, tuple(graph.shape(t) for t in op.outputs))
        if level == 0:
            return head
        return head, tuple(sorted((sig(c, level - 1) for c in consumers.get(index, [])), key=repr))

    return {op.index: sig(op.index, depth) for op in graph.compute_ops()}


def align_graphs(ref: TfliteGraph, other: TfliteGraph) -> dict[int, int]:
    """``ref`` op index -> ``other`` op index for the compute ops that correspond (see the module doc);
    a ``ValueError`` naming both models when under 90 % of either side's compute ops pair up.

    Topological: in ``ref``'s execution order, an op pairs with the unpaired op of ``other`` that has the
    same op code and output shapes and whose activation inputs (through ``QUANTIZE`` / ``DEQUANTIZE``) come
    from the ops paired with its own inputs' producers (or the graph input), in the same order (any order
    for ``ADD``, ``MUL``, ``MAXIMUM``, ``MINIMUM``); between several such ops (sibling heads fed by one
    tensor) the one followed by the same ops (four levels down), then the one whose weights are closest,
    wins. The two files may list their ops in different orders.
    """
    ref_ops, other_ops = ref.compute_ops(), other.compute_ops()
    other_src = {op.index: other.activation_sources(op) for op in other_ops}
    ref_down, other_down = _downstream(ref), _downstream(other)
    by_key: dict[tuple[Any, ...], list[TfliteOp]] = {}
    for op in other_ops:
        by_key.setdefault((op.opcode, tuple(other.shape(t) for t in op.outputs)), []).append(op)
    pairs: dict[int, int] = {}
    used: set[int] = set()
    for op in ref_ops:
        sources = ref.activation_sources(op)
        if any(s is not None and s not in pairs for s in sources):
            continue
        want = [None if s is None else pairs[s] for s in sources]
        key = (op.opcode, tuple(ref.shape(t) for t in op.outputs))

        def same(got: list[int | None], opcode: str = op.opcode, want: list[int | None] = want) -> bool:
            if opcode in COMMUTATIVE:
                return sorted(got, key=str) == sorted(want, key=str)
            return got == want

        candidates = [o for o in by_key.get(key, []) if o.index not in used and same(other_src[o.index])]
        if not candidates:
            continue
        if len(candidates) > 1:  # siblings: what follows them, then their weights, tell them apart
            alike = [o for o in candidates if other_down[o.index] == ref_down[op.index]]
            candidates = alike or candidates
            mine = _weights(ref, op)
            if mine is not None and len(candidates) > 1:
                candidates.sort(key=lambda o: -_cosine(mine, _weights(other, o)))
        pairs[op.index] = candidates[0].index
        used.add(candidates[0].index)
    worst = min(len(pairs) / max(len(ref_ops), 1), len(pairs) / max(len(other_ops), 1))
    if not ref_ops or not other_ops or worst < MIN_ALIGNED:
        first = next((ref.describe(op) for op in ref_ops if op.index not in pairs), "-")
        raise ValueError(
            f"cannot align {other.source} ({len(other_ops)} ops without QUANTIZE/DEQUANTIZE) with {ref.source} "
            f"({len(ref_ops)} ops): only {len(pairs)} ops have the same op, shapes and inputs in both (first "
            f"without a counterpart: {ref.source} {first}); are they conversions of the same model?"
        )
    return pairs


# --- the ONNX layers of a TFLite graph ---------------------------------------------------------------------


@dataclass(frozen=True)
class TfliteLayer:
    """One layer: the fp32 ONNX node it is named after and the reference TFLite ops that compute it."""

    id: str  # the ONNX node name
    op: str  # the TFLite op codes, e.g. "PAD+DEPTHWISE_CONV_2D"
    ops: tuple[int, ...]  # reference op indices, execution order
    main: int  # the op whose output is the layer's value (matched to the ONNX tensor)
    onnx_nodes: tuple[str, ...]  # every ONNX node the layer covers
    tensor: str = ""  # the fp32 ONNX tensor the main op's output equals


@dataclass
class LayerMap:
    """The fp32 ONNX layers of a TFLite float graph (the calibrated model: its names are what the quantiser
    deny-lists), from :func:`layer_map`."""

    graph: TfliteGraph
    layers: list[TfliteLayer]  # in execution order of their main op
    unmapped: list[str]  # ops with no ONNX counterpart that join no layer
    uncovered_onnx: list[str]  # ONNX compute nodes no TFLite op was matched to
    output_roles: dict[int, str]  # reference output tensor -> ONNX output name

    def by_id(self, layer_id: str) -> TfliteLayer:
        for layer in self.layers:
            if layer.id == layer_id:
                return layer
        close = difflib.get_close_matches(layer_id, [lay.id for lay in self.layers], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; layers: {[lay.id for lay in self.layers]}"
        raise ValueError(f"no TFLite layer {layer_id!r}{hint}")

    @property
    def op_layer(self) -> dict[int, TfliteLayer]:
        return {i: layer for layer in self.layers for i in layer.ops}

    def op_names(self, ops: Sequence[int]) -> list[str]:
        names = [self.graph.name(t) for i in ops for t in self.graph.ops[i].outputs]
        if any(not n for n in names):
            raise ValueError(f"{self.graph.source}: an op to keep float has no tensor name to deny-list")
        return names


def _layout_views(src_shape: tuple[int, ...], dst_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Axis orders of ``src`` (size-1 axes dropped) that give ``dst``'s shape (size-1 axes dropped)."""
    src = tuple(s for s in src_shape if s != 1)
    dst = tuple(s for s in dst_shape if s != 1)
    if sorted(src) != sorted(dst) or len(src) > 6:
        return []
    if src == dst:
        return [tuple(range(len(src)))]
    return [p for p in itertools.permutations(range(len(src))) if tuple(src[i] for i in p) == dst]


def _same_values(onnx_value: np.ndarray, tfl_value: np.ndarray) -> bool:
    """``onnx_value`` ``[P, ...]`` equals ``tfl_value`` ``[P, ...]`` in some axis order (probe axis kept)."""
    if onnx_value.size != tfl_value.size:
        return False
    scale = float(np.max(np.abs(tfl_value)))
    tol = MATCH_RTOL * scale + 1e-6
    src = onnx_value.reshape(onnx_value.shape[0], *[s for s in onnx_value.shape[1:] if s != 1])
    dst = tfl_value.reshape(tfl_value.shape[0], *[s for s in tfl_value.shape[1:] if s != 1])
    for perm in _layout_views(onnx_value.shape[1:], tfl_value.shape[1:]):
        view = src.transpose(0, *(p + 1 for p in perm))
        if view.shape == dst.shape and float(np.max(np.abs(view - dst))) <= tol:
            return True
    return False


def _fingerprint(x: np.ndarray) -> tuple[float, float, float]:
    """Order-free summary to pre-filter candidates: ``(sum, sum of squares, max |x|)``."""
    x64 = x.astype(np.float64).ravel()
    return float(x64.sum()), float(x64 @ x64), float(np.max(np.abs(x64)))


def _close(a: tuple[float, ...], b: tuple[float, ...], scale: float, n: int) -> bool:
    tol = 10 * MATCH_RTOL * scale
    return abs(a[0] - b[0]) <= tol * n and abs(a[1] - b[1]) <= 4 * tol * scale * n and abs(a[2] - b[2]) <= tol


def _probe_images(spec: ModelSpec, count: int = 3) -> np.ndarray:
    """``[count, 3, H, W]`` fixed synthetic inputs through the spec's pre-processing: smooth random blobs,
    pixel noise and a gradient with boxes (varied enough that no two tensors of a network agree)."""
    import cv2

    from edgedet.edge.runtime.preprocess import Preprocessor

    rng = np.random.default_rng(18)
    h, w = spec.input_height, spec.input_width
    coarse = rng.integers(0, 256, (max(h // 16, 2), max(w // 16, 2), 3), dtype=np.uint8)
    frames = [cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), rng.integers(0, 256, (h, w, 3), np.uint8)]
    gradient = np.zeros((h, w, 3), np.uint8)
    gradient[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    gradient[..., 1] = np.linspace(255, 0, h, dtype=np.uint8)[:, None]
    gradient[..., 2] = 96
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.rectangle(gradient, (x0, y0), (x0 + int(rng.integers(4, w // 3)), y0 + int(rng.integers(4, h // 3))),
                      color, -1)  # fmt: skip
    frames.append(gradient)
    pre = Preprocessor(replace(spec, layout="nchw"))
    return np.concatenate([pre(f)[0] for f in frames[:count]], axis=0).astype(np.float32)


def _run_tflite(interpreter: Any, graph: TfliteGraph, x_nhwc: np.ndarray, tensors: Sequence[int]) -> dict[int, Any]:
    """Run one input through ``interpreter`` (quantising it for an integer input) and read ``tensors``
    (as stored: integer tensors are not dequantised here)."""
    from edgedet.edge.runtime.quant import QuantParams, quantize

    details = graph.tensors[graph.inputs[0]]
    dtype = np.dtype(details["dtype"])
    x = np.ascontiguousarray(x_nhwc[None] if x_nhwc.ndim == 3 else x_nhwc, np.float32)
    if dtype.kind in "iu":
        params = QuantParams.from_details(details)
        if params is None:
            raise ValueError(f"{graph.source}: integer input without quantisation parameters")
        x = quantize(x, params, dtype)
    interpreter.set_tensor(graph.inputs[0], x.astype(dtype, copy=False))
    interpreter.invoke()
    return {t: np.array(interpreter.get_tensor(t)) for t in tensors}


def dequantized(graph: TfliteGraph, tensor: int, value: np.ndarray) -> np.ndarray:
    """``value`` of ``tensor`` as float32 (integer tensors dequantised with their own parameters)."""
    from edgedet.edge.runtime.quant import QuantParams, dequantize

    if value.dtype.kind not in "iu":
        return np.asarray(value, np.float32)
    params = QuantParams.from_details(graph.tensors[tensor])
    if params is None:
        return value.astype(np.float32)
    return dequantize(value, params)


def layer_map(onnx_path: str | os.PathLike[str], float_tflite: bytes, spec: ModelSpec, source: str) -> LayerMap:
    """Pair the ops of ``float_tflite`` (a float TFLite conversion of ``onnx_path``) with the fp32 ONNX
    model's nodes by their values on the probe images (see the module doc)."""
    import onnx

    from edgedet.convert.int8_explain import _session, _with_outputs

    probes = _probe_images(spec)
    model = onnx.load(os.fspath(onnx_path))
    inits = {i.name: i for i in model.graph.initializer}
    const_out = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    # a node is known by its name; an unnamed one as ORT's path calls it, "OpType_<index in the graph>"
    labels = [n.name or f"{n.op_type}_{i}" for i, n in enumerate(model.graph.node)]
    nodes = [(labels[i], n) for i, n in enumerate(model.graph.node) if n.op_type != "Constant"]
    by_name = dict(nodes)
    order = {name: i for i, (name, _) in enumerate(nodes)}
    producer = {o: name for name, n in nodes for o in n.output if o}
    names = [o for _, n in nodes for o in n.output if o]
    session = _session(_with_outputs(model, names), 1)
    input_name = session.get_inputs()[0].name
    runs = [session.run(names, {input_name: x[None]}) for x in probes]
    onnx_values = {name: np.stack([np.asarray(r[k]) for r in runs]) for k, name in enumerate(names)}
    del session

    graph = TfliteGraph.read(float_tflite, source)
    interpreter = _interpreter(float_tflite, preserve=True)
    wanted = [t for op in graph.compute_ops() for t in op.outputs]
    tfl_runs = [_run_tflite(interpreter, graph, x.transpose(1, 2, 0), wanted) for x in probes]
    tfl_values = {t: np.stack([dequantized(graph, t, r[t]) for r in tfl_runs]) for t in wanted}

    prints = {n: (_fingerprint(v), v.size) for n, v in onnx_values.items() if np.ptp(v) > 0}
    matched: dict[int, list[str]] = {}  # TFLite op -> ONNX tensors with its values
    for op in graph.compute_ops():
        value = tfl_values[op.outputs[0]]
        if np.ptp(value) == 0:  # constant on every probe: nothing to tell candidates apart
            continue
        fp, scale = _fingerprint(value), float(np.max(np.abs(value)))
        hits = [
            n
            for n, (f, size) in prints.items()
            if size == value.size and _close(f, fp, scale, size) and _same_values(onnx_values[n], value)
        ]
        if hits:
            matched[op.index] = sorted(hits, key=lambda n: order[producer[n]])
    taken = {n for hits in matched.values() for n in hits}

    def covered(tensors: Sequence[str]) -> list[str]:
        """The ONNX nodes producing ``tensors`` and the unmatched nodes upstream of them."""
        out: dict[str, None] = {}
        todo = [producer[t] for t in tensors]
        while todo:
            name = todo.pop()
            if name in out:
                continue
            out[name] = None
            for i in by_name[name].input:
                if i in producer and i not in taken and i not in inits and i not in const_out:
                    todo.append(producer[i])
        return sorted(out, key=order.__getitem__)

    def weighted(name: str) -> bool:
        return any(i in inits and len(inits[i].dims) >= 2 for i in by_name[name].input)

    layers: dict[str, dict[str, Any]] = {}
    op_layer: dict[int, str] = {}
    seen_tensors: dict[frozenset[str], str] = {}
    for op in graph.compute_ops():
        hits = matched.get(op.index)
        if not hits:
            continue
        key = frozenset(hits)
        earlier = next((lid for ts, lid in seen_tensors.items() if key <= ts), None)
        if earlier is not None:  # repeats an earlier op's values (a reshape to the same data): same layer
            layers[earlier]["ops"].append(op.index)
            op_layer[op.index] = earlier
            continue
        cover = covered(hits)
        heavy = [n for n in cover if weighted(n)]
        lid = (heavy or cover)[0]
        tensor = next((h for h in hits if producer[h] == lid), hits[-1])
        if lid in layers:  # a second op for one ONNX node: the later one carries the value
            layers[lid]["ops"].append(op.index)
            layers[lid]["main"] = op.index
            layers[lid]["nodes"].update(dict.fromkeys(cover))
            layers[lid]["tensor"] = tensor
        else:
            layers[lid] = {"ops": [op.index], "main": op.index, "nodes": dict.fromkeys(cover), "tensor": tensor}
        seen_tensors[key] = lid
        op_layer[op.index] = lid

    consumers: dict[int, list[int]] = {}
    for op in graph.compute_ops():
        for s in graph.activation_sources(op):
            if s is not None:
                consumers.setdefault(s, []).append(op.index)

    def has_weights(op: TfliteOp) -> bool:
        return any(
            t >= 0 and not graph.is_activation(t) and graph.dtype(t).kind == "f" and len(graph.shape(t)) >= 2
            for t in op.inputs
        )

    unmapped = []
    for op in reversed(graph.compute_ops()):  # helpers (PAD ...) join the one layer they feed
        if op.index in op_layer:
            continue
        owners = {op_layer.get(c) for c in consumers.get(op.index, [])}
        if len(owners) == 1 and None not in owners and not has_weights(op):
            lid = owners.pop()
            assert lid is not None
            layers[lid]["ops"].append(op.index)
            op_layer[op.index] = lid
        else:
            unmapped.append(op.index)
    result = [
        TfliteLayer(
            lid,
            "+".join(graph.ops[i].opcode for i in sorted(info["ops"])),
            tuple(sorted(info["ops"])),
            int(info["main"]),
            tuple(info["nodes"]),
            info["tensor"],
        )
        for lid, info in layers.items()
    ]
    result.sort(key=lambda lay: lay.main)
    covered_nodes = {n for lay in result for n in lay.onnx_nodes}
    skip = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Cast", "Identity", "ConstantOfShape"}
    uncovered = [name for name, n in nodes if name not in covered_nodes and n.op_type not in skip]
    onnx_outputs = {o.name for o in model.graph.output}
    roles: dict[int, str] = {}
    for out in graph.outputs:
        src = graph.source_op(out)
        hit = next((n for n in matched.get(src, []) if n in onnx_outputs), None) if src is not None else None
        roles[out] = hit or graph.name(out) or f"output{len(roles)}"
    return LayerMap(graph, result, [graph.describe(graph.ops[i]) for i in sorted(unmapped)], uncovered, roles)


# --- TensorFlow: calibration and the MLIR quantiser ----------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence file descriptors 1 and 2 (TensorFlow's C++ logs and the quantiser's ``printf``)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _tensorflow() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with _quiet():  # its import and first device query log to stderr (CUDA probing, CPU features)
            import tensorflow as tf

            tf.config.list_physical_devices()
    except ImportError as exc:
        raise ImportError("TFLite int8 conversion needs TensorFlow: pip install 'edgedet[convert]'") from exc
    return tf


def _calibrate(saved_model: Path, calib_nhwc: np.ndarray, show_progress: bool = True) -> bytes:
    """The saved model converted as onnx2tf's int8 variants are, stopped after calibration."""
    from edgedet.edge.runtime.progress import progress

    tf = _tensorflow()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.SELECT_TF_OPS]
    converter._experimental_disable_per_channel = False  # onnx2tf -qt per-channel
    converter.unfold_batchmatmul = False
    data = np.ascontiguousarray(calib_nhwc, np.float32)

    def representative() -> Iterator[list[Any]]:
        for x in progress(data, len(data), "TFLite calibration", show_progress):
            yield [tf.constant(x[None])]

    converter.representative_dataset = representative
    converter._experimental_calibrate_only = True  # as QuantizationDebugger does
    return bytes(converter.convert())


def _quantize(calibrated: bytes, denylisted_nodes: Sequence[str], io: str) -> bytes:
    """``mlir_quantize`` of a calibrated model, as the converter finishes an int8 conversion (float or int8
    input and output), with ``denylisted_nodes`` (op output tensor names) left float."""
    tf = _tensorflow()
    from tensorflow.lite.python import convert as tf_convert

    io_type = tf.float32 if io == "float" else tf.int8
    with _quiet():
        return bytes(
            tf_convert.mlir_quantize(
                calibrated,
                disable_per_channel=False,
                input_data_type=io_type,
                output_data_type=io_type,
                denylisted_nodes=list(denylisted_nodes) or None,
            )
        )


class _Conversion:
    """onnx2tf's saved model of one ONNX file (in a scratch folder), its layer map and calibrations."""

    def __init__(self, onnx_path: Path, spec: ModelSpec, show_progress: bool) -> None:
        from edgedet.convert.tflite_export import SAMPLE_FILE, TIMEOUT_S, _onnx2tf_command, _run_onnx2tf, _sample_images

        self.onnx_path = onnx_path
        self.spec = spec
        self._tmp = tempfile.mkdtemp(prefix="edgedet-tflite-mixed-")
        work = Path(self._tmp)
        self.onnx_copy = work / "model.onnx"  # what the layer map reads, whatever becomes of onnx_path
        shutil.copyfile(onnx_path, self.onnx_copy)
        np.save(work / SAMPLE_FILE, _sample_images(spec, None))
        log.info("onnx2tf: converting %s to a saved model", onnx_path.name)
        _run_onnx2tf(_onnx2tf_command("model.onnx", False, False), work, TIMEOUT_S, show_progress)
        self.saved_model = work / "out"
        if not (self.saved_model / "saved_model.pb").is_file():
            raise RuntimeError(f"onnx2tf wrote no saved model for {onnx_path}; see its log")
        self._calibrated: dict[str, bytes] = {}
        self._map: LayerMap | None = None
        self._quantisable: list[str] | None = None

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def calibrated(self, calib_nhwc: np.ndarray, show_progress: bool = True) -> bytes:
        """The calibrated float model (cached by the calibration tensors' bytes)."""
        key = hashlib.sha256(np.ascontiguousarray(calib_nhwc, np.float32).tobytes()).hexdigest()
        if key not in self._calibrated:
            if len(self._calibrated) >= _CACHE_SIZE:
                self._calibrated.pop(next(iter(self._calibrated)))
            log.info("TFLite: calibrating %s on %d inputs", self.onnx_path.name, len(calib_nhwc))
            self._calibrated[key] = _calibrate(self.saved_model, calib_nhwc, show_progress)
        return self._calibrated[key]

    def probe_calibrated(self) -> bytes:
        """Calibrated on the three probe images: the float graph the layer map is made on."""
        return self.calibrated(_probe_images(self.spec).transpose(0, 2, 3, 1), show_progress=False)

    @property
    def layer_map(self) -> LayerMap:
        if self._map is None:
            source = f"{self.onnx_path} (TFLite float)"
            self._map = layer_map(self.onnx_copy, self.probe_calibrated(), self.spec, source)
        return self._map

    def check_same_graph(self, calibrated: bytes) -> None:
        """A calibration on other data must give the same ops and names the layer map was made on."""
        graph = TfliteGraph.read(calibrated, "calibrated")
        ref = self.layer_map.graph
        same = [(o.opcode, [graph.name(t) for t in o.outputs]) for o in graph.ops] == [
            (o.opcode, [ref.name(t) for t in o.outputs]) for o in ref.ops
        ]
        if not same:
            raise RuntimeError(f"{self.onnx_path}: the converter made another graph on the calibration data")

    @property
    def quantisable(self) -> list[str]:
        if self._quantisable is None:
            lmap = self.layer_map
            quant = TfliteGraph.read(_quantize(self.probe_calibrated(), [], "float"), "int8")
            pairs = align_graphs(lmap.graph, quant)
            self._quantisable = [
                lay.id for lay in lmap.layers if lay.main in pairs and quant.is_quantized(quant.ops[pairs[lay.main]])
            ]
        return self._quantisable


_CONVERSIONS: dict[str, _Conversion] = {}


@atexit.register
def _cleanup() -> None:
    while _CONVERSIONS:
        _CONVERSIONS.popitem()[1].close()


def _onnx_spec(onnx_path: Path) -> ModelSpec:
    import onnx

    from edgedet.convert.onnx_export import read_metadata_spec

    if not onnx_path.is_file():
        raise FileNotFoundError(f"{onnx_path}: no such ONNX model")
    spec = read_metadata_spec(onnx.load(onnx_path, load_external_data=False), str(onnx_path))
    if spec is None:
        raise ValueError(f"{onnx_path}: no edgedet spec in its metadata; export it with edgedet.convert.onnx_export")
    return spec


def conversion(onnx_path: str | os.PathLike[str], show_progress: bool = True) -> _Conversion:
    """The cached :class:`_Conversion` of ``onnx_path`` (by its bytes), made on first use."""
    onnx_path = Path(onnx_path)
    spec = _onnx_spec(onnx_path)
    key = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    if key not in _CONVERSIONS:
        if len(_CONVERSIONS) >= _CACHE_SIZE:
            _CONVERSIONS.pop(next(iter(_CONVERSIONS))).close()
        _CONVERSIONS[key] = _Conversion(onnx_path, spec, show_progress)
    return _CONVERSIONS[key]


def calib_nhwc(
    spec: ModelSpec, calib: CalibSource | np.ndarray, calib_images: int, show_progress: bool = True
) -> np.ndarray:
    """Calibration inputs ``[N, H, W, 3]``: ``calib`` as given (NHWC or NCHW arrays, the first
    ``calib_images``) or read from a dataset / folder as the export does."""
    h, w = spec.input_height, spec.input_width
    if isinstance(calib, np.ndarray):
        x = np.asarray(calib, np.float32)
        if x.ndim == 4 and x.shape[1:] == (h, w, 3):
            return x[:calib_images]
        if x.ndim == 4 and x.shape[1:] == (3, h, w):
            return x[:calib_images].transpose(0, 2, 3, 1)
        raise ValueError(f"calibration inputs: expected [N, {h}, {w}, 3] or [N, 3, {h}, {w}], got {list(x.shape)}")
    return calibration_tensors(spec, calib, calib_images, "nhwc", show_progress)


def quantize_variant(conv: _Conversion, calibrated: bytes, keep_float: Sequence[str], io: str) -> bytes:
    """The int8 model of ``calibrated`` with the layers ``keep_float`` (ids) float; checked."""
    lmap = conv.layer_map
    chosen = [lmap.by_id(x) for x in dict.fromkeys(keep_float)]
    names = lmap.op_names([i for lay in chosen for i in lay.ops])
    model = _quantize(calibrated, names, io)
    if chosen:
        graph = TfliteGraph.read(model, "quantised")
        pairs = align_graphs(lmap.graph, graph)
        still = [lay.id for lay in chosen if lay.main not in pairs or graph.is_quantized(graph.ops[pairs[lay.main]])]
        if still:
            raise RuntimeError(f"the TFLite quantiser did not keep {still} float (deny-listed {names})")
    return model


def deny_all_but(conv: _Conversion, layer_id: str) -> list[str]:
    """Op output names of every op except ``layer_id``'s (for "only this layer int8")."""
    lmap = conv.layer_map
    mine = set(lmap.by_id(layer_id).ops)
    return lmap.op_names([op.index for op in lmap.graph.compute_ops() if op.index not in mine])


def tflite_layer_names(onnx_path: str | os.PathLike[str], *, show_progress: bool = True) -> list[str]:
    """The ids (fp32 ONNX node names) of the layers the TFLite int8 conversion of ``onnx_path`` quantises, in
    execution order: what :func:`export_tflite_int8_keep_float` accepts in ``keep_float``."""
    return list(conversion(onnx_path, show_progress).quantisable)


def tflite_layer_ops(onnx_path: str | os.PathLike[str], *, show_progress: bool = True) -> dict[str, str]:
    """:func:`tflite_layer_names` with each layer's TFLite op codes (``"PAD+DEPTHWISE_CONV_2D"``,
    ``"RESHAPE"``, ...), e.g. to leave layers that only move data out of a search."""
    conv = conversion(onnx_path, show_progress)
    ops = {lay.id: lay.op for lay in conv.layer_map.layers}
    return {name: ops[name] for name in conv.quantisable}


def export_tflite_int8_keep_float(
    onnx_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calib: CalibSource | np.ndarray,
    keep_float: Sequence[str],
    *,
    calib_images: int = 200,
    io: str = "float",
    show_progress: bool = True,
    sidecar: bool = False,
) -> Path:
    """Write a full-integer int8 ``out_path`` of ``onnx_path`` with the layers ``keep_float`` (ids from
    :func:`tflite_layer_names`: fp32 ONNX node names) float, through TensorFlow's deny-list route.

    ``calib``: the export's calibration data (dataset spec, image folder, ``Dataset``, or ready inputs
    ``[N, H, W, 3]`` / ``[N, 3, H, W]``), of which ``calib_images`` are used. ``io="float"``: float input and
    output as the export's ``_int8_float_io`` file; ``"int8"``: int8 in and out as its ``_int8`` file.
    The spec is embedded as the export does (``extra["float_layers"]`` the layers kept float); ``sidecar``
    also writes ``MODEL.json``. Unknown ids are a ``ValueError``; a layer the converter leaves int8 a
    ``RuntimeError``.
    """
    from edgedet.convert.tflite_export import QUANTIZATION, _probe_input, _role_mapping, embed_spec, write_sidecar
    from edgedet.convert.tflite_slim import slim_tflite

    if io not in IO_TYPES:
        raise ValueError(f"io: expected one of {IO_TYPES}, got {io!r}")
    if isinstance(keep_float, str):
        raise ValueError("keep_float: expected a list of layer ids, got a string")
    if calib_images <= 0:
        raise ValueError(f"calib_images: expected a positive number, got {calib_images}")
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    conv = conversion(onnx_path, show_progress)
    for layer_id in keep_float:
        conv.layer_map.by_id(layer_id)  # unknown ids fail before the calibration
    data = calib_nhwc(conv.spec, calib, calib_images, show_progress)
    calibrated = conv.calibrated(data, show_progress)
    conv.check_same_graph(calibrated)
    model = quantize_variant(conv, calibrated, keep_float, io)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(model)
    slim_tflite(out_path)
    outputs = _role_mapping(onnx_path, out_path, _probe_input(conv.spec, data))
    spec = conv.spec
    if keep_float:
        spec = replace(spec, extra={**dict(spec.extra), "float_layers": list(dict.fromkeys(keep_float))})
    quantization = QUANTIZATION["tflite_int8_float_io" if io == "float" else "tflite_int8"]
    embed_spec(out_path, spec, outputs, quantization)
    if sidecar:
        write_sidecar(out_path, spec, outputs, quantization)
    return out_path

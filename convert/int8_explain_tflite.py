"""Where int8 goes wrong, layer by layer: the TFLite int8 path of ``edgedet int8-explain``.

    edgedet int8-explain --fp32 best.onnx --int8 best_int8_float_io.tflite --images voc:data/faces:val \\
        --calib voc:data/faces:train --calib-images 200 --val voc:data/faces:val --plot int8.png

The same table as the ONNX Runtime path (:mod:`edgedet.convert.int8_explain`: SQNR / cosine per layer
against fp32, local SQNR as the sort key, :class:`~edgedet.convert.int8_explain.ExplainReport`), for a
``.tflite`` int8 model (int8 or float input and output, as the export writes them, or a file with layers
kept float by :func:`edgedet.convert.tflite_mixed.export_tflite_int8_keep_float`).

**What is compared.** The int8 model runs in LiteRT with ``experimental_preserve_all_tensors=True`` (LiteRT
then hands XNNPACK one op at a time, so the intermediate values are XNNPACK's int8 kernels' own), and
each op's output is dequantised with that tensor's own scale and zero point. The fp32 side is the TFLite
float graph of the same model: with ``--fp32 M.onnx``, onnx2tf's conversion of that ONNX file made in a
scratch folder (:mod:`edgedet.convert.tflite_mixed`; parity with the ONNX model is ~1e-6, and it is the
graph the int8 file was quantised from, op for op); with ``--fp32 M_fp32.tflite``, that file. The final
outputs' SQNR is measured on a plain interpreter (the whole graph in XNNPACK, as on the device).

**Which op is which.** Exported files have no tensor names left (:mod:`edgedet.convert.tflite_slim`) and
onnx2tf renames everything anyway, so the int8 file is aligned with the float graph by structure
(:func:`edgedet.convert.tflite_mixed.align_graphs`: the same graph of ops once ``QUANTIZE`` /
``DEQUANTIZE`` are looked through; a model that does not align is a ``ValueError`` naming both files), and the
float graph's ops are named after the fp32 ONNX nodes by their values
(:func:`edgedet.convert.tflite_mixed.layer_map`): a row's layer is the ONNX node name ORT's path uses
for the same layer (the ``Conv``, whose fused ReLU / ``PAD`` / head ``Transpose`` come with it), so
``keep_float=[X]`` here and ``nodes_to_exclude=[X]`` there keep the same layer float. Ops that map to no
ONNX node, and int8 ops with no counterpart in the float graph, are listed as unmapped. As a guard
against comparing two different models of the same architecture, the aligned layers' int8 weights must
match the float graph's (median cosine >= 0.9).

**Sensitivity** (``top_k`` > 0, with an fp32 ONNX): the model is calibrated once on ``calib`` (default
``images``; give the export's ``--calib`` / ``--calib-images`` so the scales are the int8 file's, which is
checked per layer: ``scales_match``), and for each of the ``top_k`` layers of lowest local SQNR the
calibrated model is quantised again by the TFLite quantiser with deny-lists (~1 s each): with only that
layer int8 (every other op deny-listed) and with only that layer float; the worst final output's SQNR is
measured for both. With ``val``, AP50 with that layer kept float is measured on the file
:func:`~edgedet.convert.tflite_mixed.export_tflite_int8_keep_float` writes.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgedet.convert.calibration import CalibSource
from edgedet.convert.int8_explain import ExplainReport, LayerError, _Stats, ap50_scorer, local_sqnr
from edgedet.convert.tflite_mixed import (
    TfliteGraph,
    TfliteLayer,
    _interpreter,
    _quantize,
    _run_tflite,
    align_graphs,
    calib_nhwc,
    conversion,
    deny_all_but,
    dequantized,
    export_tflite_int8_keep_float,
    quantize_variant,
)
from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.runtime.progress import progress

__all__ = ["explain_int8_tflite"]

# the score activations: their int8 output (steps of 1/256) ties confident scores, which costs AP50 where
# SQNR hardly moves (a raccoon SSD: TFLite PTQ -2.7 AP50 points, all of it the Softmax; ranked last by SQNR)
_SCORE_OPS = frozenset({"SOFTMAX", "LOGISTIC"})

log = logging.getLogger("edgedet.int8_explain")

WEIGHT_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "TRANSPOSE_CONV": 1, "CONV_3D": 1}
MIN_WEIGHT_COSINE = 0.9


def _read_graph(path: Path, what: str) -> TfliteGraph:
    graph = TfliteGraph.read(path, str(path))
    if not graph.compute_ops():
        raise ValueError(f"{path}: no ops in the {what} model")
    return graph


def _spec_roles(spec: ModelSpec | None, graph: TfliteGraph) -> dict[int, str]:
    """Output tensor -> role from a TFLite spec's ``extra["outputs"]`` (role -> output name)."""
    by_name = {graph.name(t): t for t in graph.outputs}
    roles = {}
    if spec is not None:
        for role, name in dict(spec.extra.get("outputs", {})).items():
            if name in by_name:
                roles[by_name[name]] = role
    return {t: roles.get(t, graph.name(t) or f"output{i}") for i, t in enumerate(graph.outputs)}


def _output_pairs(
    ref: TfliteGraph, roles: Mapping[int, str], other: TfliteGraph, pairs: Mapping[int, int]
) -> dict[str, tuple[int, int]]:
    """role -> (reference output tensor, ``other``'s output tensor), through the op alignment."""
    back = {o: r for r, o in pairs.items()}
    ref_by_op = {ref.source_op(t): t for t in ref.outputs}
    out = {}
    for t in other.outputs:
        src = other.source_op(t)
        ref_op = back.get(src) if src is not None else None
        ref_t = ref_by_op.get(ref_op) if ref_op is not None else None
        if ref_t is not None and ref_t in roles:
            out[roles[ref_t]] = (ref_t, t)
    missing = [roles[t] for t in ref.outputs if roles[t] not in out]
    if missing:
        raise ValueError(f"{other.source}: no output corresponds to {ref.source}'s {missing}")
    return out


def _check_weights(ref: TfliteGraph, other: TfliteGraph, pairs: Mapping[int, int], fp32: Path, int8: Path) -> None:
    """The aligned convolutions' weights must be the same model's (int8 dequantised vs float)."""
    cosines = []
    for r, o in pairs.items():
        op = ref.ops[r]
        slot = WEIGHT_OPS.get(op.opcode)
        if slot is None or len(op.inputs) <= slot:
            continue
        wr, wo = op.inputs[slot], other.ops[o].inputs[slot]
        a, b = ref.constant(wr), other.constant(wo)
        if a is None or b is None or a.size != b.size:
            continue
        x, y = dequantized(ref, wr, a).astype(np.float64).ravel(), dequantized(other, wo, b).astype(np.float64).ravel()
        norm = math.sqrt(float(x @ x) * float(y @ y))
        cosines.append(float(x @ y) / norm if norm > 0 else 1.0)
    if cosines and float(np.median(cosines)) < MIN_WEIGHT_COSINE:
        raise ValueError(
            f"{int8} does not hold the weights of {fp32} (median cosine {float(np.median(cosines)):.2f} over "
            f"{len(cosines)} aligned layers): is it an int8 export of that model?"
        )


class _Runner:
    """Final outputs of a TFLite model (bytes or file) on the plain interpreter, by role."""

    def __init__(self, ref: TfliteGraph, roles: Mapping[int, str], threads: int | None) -> None:
        self.ref, self.roles, self.threads = ref, roles, threads

    def outputs(self, model: bytes | Path, inputs: np.ndarray) -> list[dict[str, np.ndarray]]:
        graph = TfliteGraph.read(model, str(model) if isinstance(model, Path) else "variant")
        pairs = _output_pairs(self.ref, self.roles, graph, align_graphs(self.ref, graph))
        interpreter = _interpreter(model, threads=self.threads)
        wanted = [t for _, t in pairs.values()]
        result = []
        for x in inputs:
            got = _run_tflite(interpreter, graph, x, wanted)
            result.append({role: dequantized(graph, t, got[t]) for role, (_, t) in pairs.items()})
        return result


def _output_sqnr(ref_outputs: Sequence[Mapping[str, np.ndarray]], got: Sequence[Mapping[str, np.ndarray]]) -> float:
    """The worst output's SQNR over all images."""
    stats: dict[str, _Stats] = {}
    for ref, out in zip(ref_outputs, got, strict=True):
        for role, value in ref.items():
            stats.setdefault(role, _Stats()).add(value, out[role])
    return min(s.sqnr for s in stats.values())


def _scale(graph: TfliteGraph, op: int) -> np.ndarray | None:
    details = graph.tensors[graph.ops[op].outputs[0]]
    scales = np.asarray((details.get("quantization_parameters") or {}).get("scales", []), np.float64)
    return scales if scales.size else None


def explain_int8_tflite(
    fp32_path: str | os.PathLike[str],
    int8_path: str | os.PathLike[str],
    images: CalibSource | np.ndarray,
    *,
    limit: int = 20,
    top_k: int = 5,
    calib: CalibSource | np.ndarray | None = None,
    calib_images: int = 200,
    all_layers: bool = False,
    val: str | os.PathLike[str] | None = None,
    val_class_map: Mapping[str, str] | None = None,
    threads: int | None = None,
    show_progress: bool = True,
) -> ExplainReport:
    """Compare the TFLite int8 model ``int8_path`` with ``fp32_path`` (its fp32 ``.onnx``, or an fp32
    ``.tflite`` of it) layer by layer on ``limit`` images (see the module doc); arguments as
    :func:`edgedet.convert.int8_explain.explain_int8`'s. ``images`` / ``calib`` may be ready inputs
    ``[N, H, W, 3]`` or ``[N, 3, H, W]``."""
    from edgedet.edge.runtime.backends.tflite_metadata import read_tflite_spec

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    for path in (fp32_path, int8_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
    if int8_path.suffix.lower() != ".tflite":
        raise ValueError(f"{int8_path}: expected a .tflite int8 model")
    int8 = _read_graph(int8_path, "int8")
    if not any(int8.is_quantized(op) for op in int8.compute_ops()):
        raise ValueError(
            f"{int8_path}: no op computes in int8 (every activation is float): is it the fp32 or fp16 export? "
            "Give the int8 file (..._int8.tflite or ..._int8_float_io.tflite) as --int8"
        )
    notes: list[str] = []
    conv = None
    suffix = fp32_path.suffix.lower()
    if suffix == ".onnx":
        conv = conversion(fp32_path, show_progress)
        lmap = conv.layer_map
        ref, ref_model, spec = lmap.graph, conv.probe_calibrated(), conv.spec
        layers, roles = lmap.layers, lmap.output_roles
        unmapped = list(lmap.unmapped)
        if lmap.uncovered_onnx:
            notes.append(f"ONNX nodes with no TFLite op of the same values: {', '.join(lmap.uncovered_onnx)}.")
    elif suffix == ".tflite":
        ref = _read_graph(fp32_path, "fp32")
        if any(ref.is_quantized(op) for op in ref.compute_ops()):
            raise ValueError(f"{fp32_path}: the fp32 reference computes in int8; give the fp32 .onnx or _fp32.tflite")
        ref_model = fp32_path.read_bytes()
        spec = read_tflite_spec(fp32_path) or read_tflite_spec(int8_path)
        layers = [TfliteLayer(f"op{o.index}:{o.opcode}", o.opcode, (o.index,), o.index, ()) for o in ref.compute_ops()]
        roles = _spec_roles(spec, ref)
        unmapped = []
        notes.append("Layers are TFLite op indices of the fp32 file: give the fp32 .onnx to name them by ONNX node.")
    else:
        raise ValueError(f"{fp32_path}: expected the fp32 model as .onnx (or .tflite)")
    if spec is None:
        raise ValueError(f"{fp32_path}: no edgedet spec in it (needed to pre-process the images)")
    ref = replace(ref, source=str(fp32_path) if suffix == ".tflite" else f"{fp32_path} (as TFLite float)")
    pairs = align_graphs(ref, int8)
    _check_weights(ref, int8, pairs, fp32_path, int8_path)
    inputs = calib_nhwc(spec, images, limit, show_progress)
    io = "int8" if int8.dtype(int8.inputs[0]).kind in "iu" else "float"

    aligned_int8 = set(pairs.values())
    unmapped += [f"{int8_path.name}: {int8.describe(op)}" for op in int8.compute_ops() if op.index not in aligned_int8]
    unmapped += [f"layer {lay.id}: no op in {int8_path.name}" for lay in layers if lay.main not in pairs]

    ref_it = _interpreter(ref_model, preserve=True, threads=threads)
    int8_it = _interpreter(int8_path, preserve=True, threads=threads)
    ref_tensors = list(dict.fromkeys([*(ref.ops[r].outputs[0] for r in pairs), *ref.outputs]))
    int8_tensors = [int8.ops[o].outputs[0] for o in pairs.values()]
    stats = {r: _Stats() for r in pairs}
    ref_outputs: list[dict[str, np.ndarray]] = []
    out_pairs = _output_pairs(ref, roles, int8, pairs)
    for x in progress(inputs, len(inputs), "int8-explain: fp32 vs int8 (TFLite)", show_progress):
        want = _run_tflite(ref_it, ref, x, ref_tensors)
        got = _run_tflite(int8_it, int8, x, int8_tensors)
        for r, o in pairs.items():
            rt, ot = ref.ops[r].outputs[0], int8.ops[o].outputs[0]
            stats[r].add(dequantized(ref, rt, want[rt]), dequantized(int8, ot, got[ot]))
        ref_outputs.append({role: dequantized(ref, rt, want[rt]) for role, (rt, _) in out_pairs.items()})
    del ref_it, int8_it
    runner = _Runner(ref, roles, threads)
    device = runner.outputs(int8_path, inputs)
    out_stats: dict[str, _Stats] = {}
    for want_out, got_out in zip(ref_outputs, device, strict=True):
        for role, value in want_out.items():
            out_stats.setdefault(role, _Stats()).add(value, got_out[role])

    rows = []
    for position, lay in enumerate(layers):
        if lay.main not in pairs:
            continue
        quantized = int8.is_quantized(int8.ops[pairs[lay.main]])
        if not (quantized or all_layers):
            continue
        st = stats[lay.main]
        sources = {s for i in lay.ops for s in ref.activation_sources(ref.ops[i]) if s not in lay.ops}
        nsr_in = max((stats[s].nsr for s in sources if s is not None and s in stats), default=0.0)
        tensor = lay.tensor or ref.name(ref.ops[lay.main].outputs[0]) or f"op {lay.main}"
        row = LayerError(lay.id, lay.op, tensor, quantized, st.sqnr, st.cosine, local_sqnr(st.nsr, nsr_in))
        row.index = position
        rows.append(row)
    rows.sort(key=lambda r: (r.local_sqnr_db, r.sqnr_db))
    report = ExplainReport(
        str(fp32_path),
        str(int8_path),
        len(inputs),
        {role: s.sqnr for role, s in out_stats.items()},
        rows,
        unmapped,
        notes,
        runtime="LiteRT",
    )
    chosen = [r for r in report.layers if r.quantized][: max(top_k, 0)]
    if chosen and conv is None:
        report.notes.append("Not measured: per-layer sensitivity (it converts the fp32 .onnx again: give that).")
    elif chosen:
        assert conv is not None
        data = calib_nhwc(spec, images if calib is None else calib, calib_images, show_progress)
        calibrated = conv.calibrated(data, show_progress)
        conv.check_same_graph(calibrated)
        _sensitivity(report, chosen, conv, calibrated, int8, pairs, io, runner, inputs, ref_outputs, show_progress)
        if val is not None:  # and the score activation: its int8 grid (1/256) can tie detections, SQNR barely sees it
            score_ops = [
                r for r in report.layers if r.quantized and _SCORE_OPS & set(r.op.split("+")) and r not in chosen
            ]
            _ap50(report, chosen + score_ops, fp32_path, int8_path, data, io, val, val_class_map, threads,
                  show_progress)  # fmt: skip
    report.notes.append(
        "SQNR / cosine: each layer's output in the int8 file (LiteRT, dequantised) against the same op of the "
        "TFLite float graph (all upstream error included). Local SQNR: the error this layer adds, "
        "-10·log10(NSR_out − NSR_in). Output SQNR: the whole int8 graph in XNNPACK."
        + ("" if val is not None or conv is None else " Not measured: AP50 with a layer float (give --val DATA).")
    )
    return report


def _sensitivity(
    report: ExplainReport,
    chosen: Sequence[LayerError],
    conv: Any,
    calibrated: bytes,
    int8: TfliteGraph,
    pairs: Mapping[int, int],
    io: str,
    runner: _Runner,
    inputs: np.ndarray,
    ref_outputs: Sequence[Mapping[str, np.ndarray]],
    show: bool,
) -> None:
    """Output SQNR with only each chosen layer int8 / only it float; do its scales match the int8 file's?"""
    lmap = conv.layer_map
    ref = lmap.graph
    for row in progress(chosen, len(chosen), "int8-explain: one layer int8 / float (TFLite)", show):
        layer = lmap.by_id(row.node)
        only = _quantize(calibrated, deny_all_but(conv, row.node), io)
        row.only_layer_output_sqnr_db = _output_sqnr(ref_outputs, runner.outputs(only, inputs))
        only_graph = TfliteGraph.read(only, "only-this-layer-int8")
        only_pairs = align_graphs(ref, only_graph)
        mine = _scale(only_graph, only_pairs[layer.main]) if layer.main in only_pairs else None
        theirs = _scale(int8, pairs[layer.main])
        if mine is not None and theirs is not None and mine.shape == theirs.shape:
            row.scales_match = bool(np.allclose(mine, theirs, rtol=1e-5))
        floated = quantize_variant(conv, calibrated, [row.node], io)
        row.output_sqnr_layer_float_db = _output_sqnr(ref_outputs, runner.outputs(floated, inputs))
    if any(r.scales_match is False for r in chosen):
        report.notes.append(
            "Some re-quantised layers got other scales than the int8 file's: give the export's calibration data "
            "(--calib, --calib-images)."
        )


def _ap50(
    report: ExplainReport,
    chosen: Sequence[LayerError],
    fp32_path: Path,
    int8_path: Path,
    calib_data: np.ndarray,
    io: str,
    val: str | os.PathLike[str],
    class_map: Mapping[str, str] | None,
    threads: int | None,
    show: bool,
) -> None:
    """AP50 of the fp32 and int8 models, and of int8 with each chosen layer kept float (one file each)."""
    ap50 = ap50_scorer(val, class_map, threads)
    report.ap50_fp32, report.ap50_int8 = ap50(fp32_path), ap50(int8_path)
    with tempfile.TemporaryDirectory(prefix="edgedet-explain-tflite-") as tmp:
        for i, row in enumerate(progress(chosen, len(chosen), "int8-explain: AP50, one layer float (TFLite)", show)):
            path = export_tflite_int8_keep_float(
                fp32_path, Path(tmp) / f"float_{i}.tflite", calib_data, [row.node], io=io, show_progress=False
            )
            row.ap50_layer_float = ap50(path)

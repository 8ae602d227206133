"""Where int8 goes wrong, layer by layer: ONNX Runtime QDQ models here, TFLite int8 models in
:mod:`edgedet.convert.int8_explain_tflite` (chosen by the ``--int8`` file's suffix).

    edgedet int8-explain --fp32 best.onnx --int8 best_int8.onnx --images voc:data/faces:val --limit 20 \\
        --out int8_report.md --json int8_report.json --plot int8_report.png
    edgedet int8-explain --fp32 best.onnx --int8 best_int8_float_io.tflite --images voc:data/faces:val \\
        --calib voc:data/faces:train --val voc:data/faces:val

Both models run on the same inputs (the model spec's own pre-processing, as
:class:`edgedet.edge.runtime.detector.Detector` feeds them); their intermediate tensors are compared over all
images:

* **SQNR** ``10*log10(sum x^2 / sum (x - y)^2)`` (dB; ``inf`` when equal) and **cosine** similarity of the
  flattened tensors of all images, ``x`` the fp32 tensor and ``y`` the int8 model's.
* **local SQNR**: the error the layer adds itself, ``-10*log10(NSR_out - NSR_in)`` with ``NSR = 1 / SQNR``
  (linear) and ``NSR_in`` the worst of its activation inputs. A layer's own SQNR carries all the error of
  the layers before it and falls along the network; the local figure is what singles out a bad layer.
* **only this layer int8**: for the ``top_k`` layers of lowest local SQNR, the fp32 model is quantised again
  by :func:`edgedet.convert.quantize_onnx.quantize_onnx` (the same calibration data, hence the same scales;
  checked against the int8 model's and flagged where they differ) with every other node left float, and
  the SQNR of the final outputs (the worst output) is measured.

Rows are sorted by local SQNR, worst first. With ``--val DATA``, the same layers are also kept float one at a
time (the rest quantised as the export does): AP50, and the final outputs' SQNR. A layer is named by its fp32
ONNX node name in both paths, so "keep layer X float" is the same layer for ONNX Runtime
(``nodes_to_exclude``) and TFLite (:func:`edgedet.convert.tflite_mixed.export_tflite_int8_keep_float`).
``--plot FILE.png`` draws both SQNRs per layer in network order (:func:`plot_report`, needs matplotlib).

**Mapping int8 tensors to fp32 ones (ONNX Runtime).** ORT's QDQ quantiser keeps the float names: a quantised
compute node (one with an input from ``DequantizeLinear``) keeps its name and its output names, and its
activation inputs come from ``T -> QuantizeLinear -> DequantizeLinear`` chains whose ``T`` is the float tensor of the
same name in the fp32 model. Where a node's output ``T`` is re-quantised (``T -> QuantizeLinear``), the value
compared is the dequantised ``QuantizeLinear`` output (fetched as uint8 / int8 and dequantised here with the
node's own scale and zero point): that is what the next layer sees, and it is the only correct value when the
quantiser folded a Relu into the quantised range (the Conv's raw output is then named after the Relu's
output but is not yet clipped). Fetching the quantised tensor rather than the ``DequantizeLinear`` output
leaves ORT's ``DQ -> Conv -> Q`` -> ``QLinearConv`` fusion intact, so the values are the runtime's own. A node
output without ``QuantizeLinear`` is compared raw. Names absent from the fp32 model are listed as unmapped.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgedet.convert.calibration import CalibSource, calibration_tensors
from edgedet.convert.onnx_export import read_metadata_spec
from edgedet.convert.quantize_onnx import quantize_onnx
from edgedet.edge.runtime.progress import progress

__all__ = ["ExplainReport", "LayerError", "cli", "explain_int8", "plot_report", "sqnr_db"]

log = logging.getLogger("edgedet.int8_explain")

_QDQ = ("QuantizeLinear", "DequantizeLinear")


def sqnr_db(signal_power: float, noise_power: float) -> float:
    """``10*log10(signal / noise)``; ``inf`` without noise, ``-inf`` without signal."""
    if noise_power <= 0.0:
        return math.inf
    if signal_power <= 0.0:
        return -math.inf
    return 10.0 * math.log10(signal_power / noise_power)


class _Stats:
    """Running sums of one tensor pair over images (float64)."""

    def __init__(self) -> None:
        self.xx = self.yy = self.xy = self.ee = 0.0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        x64, y64 = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
        if x64.shape != y64.shape:
            raise ValueError(f"shape mismatch: fp32 {np.shape(x)} vs int8 {np.shape(y)}")
        self.xx += float(x64 @ x64)
        self.yy += float(y64 @ y64)
        self.xy += float(x64 @ y64)
        diff = x64 - y64
        self.ee += float(diff @ diff)

    @property
    def sqnr(self) -> float:
        return sqnr_db(self.xx, self.ee)

    @property
    def nsr(self) -> float:
        """Noise-to-signal power ratio (linear)."""
        return self.ee / self.xx if self.xx > 0 else (0.0 if self.ee == 0 else math.inf)

    @property
    def cosine(self) -> float:
        if self.xx == 0 or self.yy == 0:
            return 1.0 if self.xx == self.yy else 0.0
        return self.xy / math.sqrt(self.xx * self.yy)


@dataclass
class LayerError:
    """One layer (compute node) of the int8 model against the fp32 model."""

    node: str
    op: str
    tensor: str  # the float tensor name compared (same in both models)
    quantized: bool
    sqnr_db: float
    cosine: float
    local_sqnr_db: float
    only_layer_output_sqnr_db: float | None = None  # final-output SQNR with only this layer int8
    scales_match: bool | None = None  # the re-quantised layer's scales equal the int8 model's
    ap50_layer_float: float | None = None  # AP50 on the val data with only this layer kept float
    output_sqnr_layer_float_db: float | None = None  # final-output SQNR with only this layer kept float
    index: int | None = None  # position in network order (the plot's x axis)


@dataclass
class ExplainReport:
    """The per-layer table and the final outputs' SQNR."""

    fp32: str
    int8: str
    images: int
    output_sqnr_db: dict[str, float]
    layers: list[LayerError] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ap50_fp32: float | None = None
    ap50_int8: float | None = None
    runtime: str = "ONNX Runtime"

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:  # JSON has no inf / nan
            if isinstance(v, float) and not math.isfinite(v):
                return str(v)
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v

        return clean(asdict(self))

    def markdown(self) -> str:
        """A markdown report: the final outputs, then one row per layer, worst first."""
        outs = ", ".join(f"`{k}` {_db(v)}" for k, v in self.output_sqnr_db.items())
        ap = self.ap50_int8 is not None
        flt = any(r.output_sqnr_layer_float_db is not None for r in self.layers)
        head = "| # | layer | op | SQNR dB | cosine | local SQNR dB | output SQNR dB, only this layer int8 |"
        lines = [
            f"# int8 per-layer error ({self.runtime})",
            "",
            f"fp32 `{self.fp32}` vs int8 `{self.int8}` on {self.images} images. Final outputs SQNR: {outs}.",
            "",
            head
            + (" output SQNR dB, this layer float |" if flt else "")
            + (" AP50, this layer float (vs all int8) |" if ap else ""),
            "|---|---|---|---|---|---|---|" + ("---|" if flt else "") + ("---|" if ap else ""),
        ]
        if ap:
            lines.insert(3, f"\nAP50 on the val data: fp32 {self.ap50_fp32:.4f}, int8 {self.ap50_int8:.4f}.")
        for i, r in enumerate(self.layers, 1):
            only = "-" if r.only_layer_output_sqnr_db is None else _db(r.only_layer_output_sqnr_db)
            if r.scales_match is False:
                only += " (scales differ)"
            name = r.node + ("" if r.quantized else " (float)")
            line = f"| {i} | `{name}` | {r.op} | {_db(r.sqnr_db)} | {r.cosine:.5f} | {_db(r.local_sqnr_db)} | {only} |"
            if flt:
                line += " - |" if r.output_sqnr_layer_float_db is None else f" {_db(r.output_sqnr_layer_float_db)} |"
            if ap:
                ap50 = r.ap50_layer_float
                delta = "-" if ap50 is None else f"{ap50:.4f} ({ap50 - self.ap50_int8:+.4f})"  # type: ignore[operator]
                line += f" {delta} |"
            lines.append(line)
        if self.unmapped:
            lines += ["", "Not mapped to the fp32 model (not compared): " + ", ".join(f"`{u}`" for u in self.unmapped)]
        lines += [f"\n{n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def _matplotlib() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("--plot needs matplotlib: pip install matplotlib (it comes with 'edgedet[train]')") from exc
    return Figure


def _short(name: str) -> str:
    """``/model/base_net/base_net.5/base_net.5.3/Conv`` -> ``base_net.5.3/Conv``."""
    parts = [p for p in name.split("/") if p]
    return "/".join(parts[-2:]) if parts else name


def plot_report(report: ExplainReport, path: str | os.PathLike[str]) -> Path:
    """Per layer in network order: SQNR (cumulative, against fp32) and local SQNR (the layer's own error) as
    bars, the worst final output's SQNR as a line; layers left float are pale; bars beyond 20 dB above the
    best SQNR (local SQNR of a layer adding next to no error, up to ``inf``) end at the top, hatched.
    Written as PNG; needs matplotlib (an ``ImportError`` saying so)."""
    figure_class = _matplotlib()
    rows = sorted(report.layers, key=lambda r: math.inf if r.index is None else r.index)
    finite = [r.sqnr_db for r in rows if math.isfinite(r.sqnr_db)]
    top = max([*finite, 0.0]) + 20.0  # a layer adding (almost) no error has a local SQNR of 100+ dB or inf

    def height(v: float) -> float:
        return top if v >= top else max(v, 0.0)

    n = max(len(rows), 1)
    fig = figure_class(figsize=(max(8.0, 0.3 * n + 2.5), 5.5))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(rows))
    for offset, attr, color, label in (
        (-0.21, "sqnr_db", "tab:blue", "SQNR vs fp32 (cumulative)"),
        (0.21, "local_sqnr_db", "tab:orange", "local SQNR (this layer's own error)"),
    ):
        values = [getattr(r, attr) for r in rows]
        bars = ax.bar(x + offset, [height(v) for v in values], width=0.42, color=color, label=label)
        for bar, value, row in zip(bars, values, rows, strict=True):
            if not row.quantized:
                bar.set_alpha(0.35)
            if value >= top:
                bar.set_hatch("//")
    outs = [v for v in report.output_sqnr_db.values() if math.isfinite(v)]
    if outs:
        ax.axhline(min(outs), color="tab:red", linestyle="--", linewidth=1, label="final output SQNR (worst output)")
    ax.set_xticks(x)
    ax.set_xticklabels([_short(r.node) for r in rows], rotation=90, fontsize=7)
    ax.set_ylabel("dB (hatched: off the scale)")
    ax.set_ylim(0, top * 1.04)
    ax.set_xlim(-0.7, len(rows) - 0.3)
    fig.suptitle(f"int8 per-layer SQNR ({report.runtime}): {Path(report.int8).name} vs {Path(report.fp32).name}")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=110)
    return out


def local_sqnr(nsr_out: float, nsr_in: float) -> float:
    """The SQNR of the error a layer adds: ``-10*log10(NSR_out - NSR_in)`` (``inf`` when it adds none)."""
    added = nsr_out - nsr_in
    return math.inf if added <= 0 else (-math.inf if added == math.inf else -10.0 * math.log10(added))


def _db(v: float) -> str:
    return "inf" if v == math.inf else ("-inf" if v == -math.inf else f"{v:.1f}")


@dataclass(frozen=True)
class _Probe:
    """How to read one float tensor's int8-model value: fetch ``fetch``, dequantise when ``scale`` is set."""

    name: str  # the float tensor name
    fetch: str
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    axis: int = 1

    def value(self, fetched: np.ndarray) -> np.ndarray:
        if self.scale is None:
            return fetched
        scale, zp = self.scale.astype(np.float64), self.zero_point.astype(np.float64)  # type: ignore[union-attr]
        if scale.ndim == 1 and scale.size > 1:  # per-axis
            shape = [1] * fetched.ndim
            shape[self.axis] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        return ((fetched.astype(np.float64) - zp) * scale).astype(np.float32)


@dataclass(frozen=True)
class _Layer:
    node: str
    op: str
    quantized: bool
    output: str  # float tensor name
    inputs: tuple[str, ...]  # float names of its activation inputs


def _analyse(model: onnx.ModelProto) -> tuple[list[_Layer], dict[str, _Probe]]:
    """The compute nodes of ``model`` (outputs and activation inputs by float name) and a probe per name."""
    inits = {i.name: i for i in model.graph.initializer}
    consts = {
        n.output[0]: next(a.t for a in n.attribute if a.name == "value")
        for n in model.graph.node
        if n.op_type == "Constant" and any(a.name == "value" for a in n.attribute)
    }
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def array(name: str) -> np.ndarray | None:
        t = inits.get(name) or consts.get(name)
        return None if t is None else numpy_helper.to_array(t)

    def float_name(tensor: str) -> str | None:
        """The float tensor behind an input: ``T`` for ``T -> Q -> DQ -> tensor``, ``None`` for weights."""
        node = producer.get(tensor)
        if node is None or node.op_type != "DequantizeLinear":
            return None if tensor in inits or tensor in consts else tensor
        q = producer.get(node.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            return None  # a quantised initializer (weight / bias)
        return q.input[0]

    layers: list[_Layer] = []
    probes: dict[str, _Probe] = {}
    for node in model.graph.node:
        if node.op_type in _QDQ or node.op_type == "Constant":
            continue
        dq_in = [i for i in node.input if producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"]
        weight_dq = any(float_name(i) is None for i in dq_in)
        requantized = any(c.op_type == "QuantizeLinear" for o in node.output for c in consumers.get(o, []))
        quantized = bool(dq_in) and (weight_dq or requantized)  # not a float node that merely reads a DQ
        inputs = tuple(dict.fromkeys(f for f in map(float_name, node.input) if f))
        for out in node.output:
            if not out:
                continue
            q = next((c for c in consumers.get(out, []) if c.op_type == "QuantizeLinear"), None)
            scale = array(q.input[1]) if q is not None else None
            zp = array(q.input[2]) if q is not None and len(q.input) > 2 and q.input[2] else None
            if q is not None and scale is not None:
                axis = next((a.i for a in q.attribute if a.name == "axis"), 1)
                zp = np.zeros_like(scale, dtype=np.int32) if zp is None else zp
                probes[out] = _Probe(out, q.output[0], scale, zp, axis)
            else:
                probes[out] = _Probe(out, out)
            layers.append(_Layer(node.name, node.op_type, quantized, out, inputs))
    return layers, probes


def _with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> bytes:
    """``model`` serialised with ``names`` added as graph outputs (types left to ONNX Runtime)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
            present.add(name)
    return model.SerializeToString()


def _session(model: bytes | str, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _run_all(session: Any, inputs: np.ndarray, fetch: Sequence[str], desc: str, show: bool):
    """Yield ``{name: array}`` of ``fetch`` per input image."""
    input_name = session.get_inputs()[0].name
    for x in progress(inputs, len(inputs), desc, show):
        values = session.run(list(fetch), {input_name: np.ascontiguousarray(x[None], np.float32)})
        yield dict(zip(fetch, values, strict=True))


def _output_sqnr(
    fp32_outputs: Sequence[Mapping[str, np.ndarray]], session: Any, inputs: np.ndarray, names: Sequence[str]
) -> dict[str, float]:
    stats = {n: _Stats() for n in names}
    for ref, got in zip(fp32_outputs, _run_all(session, inputs, names, "", False), strict=True):
        for n in names:
            stats[n].add(ref[n], got[n])
    return {n: s.sqnr for n, s in stats.items()}


def _activation_scales(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Scale of every ``QuantizeLinear`` by its float input name."""
    inits = {i.name: i for i in model.graph.initializer}
    return {
        n.input[0]: numpy_helper.to_array(inits[n.input[1]])
        for n in model.graph.node
        if n.op_type == "QuantizeLinear" and n.input[1] in inits
    }


def explain_int8(
    fp32_path: str | os.PathLike[str],
    int8_path: str | os.PathLike[str],
    images: CalibSource | np.ndarray,
    *,
    limit: int = 20,
    top_k: int = 5,
    calib: CalibSource | np.ndarray | None = None,
    calib_images: int = 200,
    calib_method: str = "minmax",
    all_layers: bool = False,
    val: str | os.PathLike[str] | None = None,
    val_class_map: Mapping[str, str] | None = None,
    threads: int | None = None,
    show_progress: bool = True,
) -> ExplainReport:
    """Compare ``int8_path`` with ``fp32_path`` layer by layer on ``limit`` images (see the module doc).

    ``images`` is a dataset spec / image folder or ready inputs ``[N, 3, H, W]``. ``calib`` (default:
    ``images``) and ``calib_images`` / ``calib_method`` must be the export's calibration settings for the
    "only this layer" column to use the int8 model's scales; ``top_k=0`` skips that column.
    ``all_layers`` also lists float (not quantised) nodes. With ``val`` (a dataset spec), the same ``top_k``
    layers are also kept float one at a time (the rest quantised as the export does): AP50 and output SQNR.

    An ``int8_path`` ending in ``.tflite`` is explained by
    :func:`edgedet.convert.int8_explain_tflite.explain_int8_tflite` (``calib_method`` does not apply there).
    """
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    for path in (fp32_path, int8_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
    if int8_path.suffix.lower() == ".tflite":
        from edgedet.convert.int8_explain_tflite import explain_int8_tflite

        return explain_int8_tflite(
            fp32_path, int8_path, images, limit=limit, top_k=top_k, calib=calib, calib_images=calib_images,
            all_layers=all_layers, val=val, val_class_map=val_class_map, threads=threads,
            show_progress=show_progress,
        )  # fmt: skip
    if int8_path.suffix.lower() != ".onnx" or fp32_path.suffix.lower() != ".onnx":
        raise ValueError(
            f"int8-explain: --int8 {int8_path.name} with --fp32 {fp32_path.name}: expected an int8 .onnx with its "
            "fp32 .onnx, or an int8 .tflite with its fp32 .onnx (or fp32 .tflite)"
        )
    fp32, int8 = onnx.load(fp32_path), onnx.load(int8_path)
    spec = read_metadata_spec(fp32, str(fp32_path))
    if isinstance(images, np.ndarray):
        inputs = images[:limit]
    else:
        if spec is None:
            raise ValueError(f"{fp32_path}: no edgedet spec in its metadata (needed to pre-process the images)")
        inputs = calibration_tensors(replace(spec, layout="nchw"), images, limit, show_progress=show_progress)
    if [o.name for o in fp32.graph.output] != [o.name for o in int8.graph.output]:
        raise ValueError(f"{int8_path}: outputs differ from {fp32_path}'s; is it a quantised copy of it?")
    out_names = [o.name for o in fp32.graph.output]
    fp32_tensors = {o for n in fp32.graph.node for o in n.output} | {i.name for i in fp32.graph.input}

    layers, probes = _analyse(int8)
    keep = [lay for lay in layers if (lay.quantized or all_layers)]
    wanted = {lay.output for lay in keep} | {i for lay in keep for i in lay.inputs}
    unmapped = sorted(n for n in wanted if n not in fp32_tensors)
    names = sorted(n for n in wanted if n in fp32_tensors)
    graph_inputs = {i.name for i in fp32.graph.input}
    fetch_fp32 = [n for n in names if n not in graph_inputs]
    fetch_int8 = list(dict.fromkeys(probes[n].fetch for n in fetch_fp32 if n in probes))
    stats = {n: _Stats() for n in names}
    for n in names:
        if n in graph_inputs:
            stats[n].add(np.ones(1), np.ones(1))  # the same input on both sides: no error
    s_fp32 = _session(_with_outputs(fp32, fetch_fp32), threads)
    s_int8 = _session(_with_outputs(int8, fetch_int8 + out_names), threads)
    out_stats = {n: _Stats() for n in out_names}
    fp32_outputs: list[dict[str, np.ndarray]] = []
    runs = zip(
        _run_all(s_fp32, inputs, fetch_fp32 + out_names, "int8-explain: fp32 vs int8", show_progress),
        _run_all(s_int8, inputs, fetch_int8 + out_names, "", False),
        strict=True,
    )
    for ref, got in runs:
        fp32_outputs.append({n: ref[n] for n in out_names})
        for n in out_names:
            out_stats[n].add(ref[n], got[n])
        for n in fetch_fp32:
            probe = probes.get(n)
            if probe is not None:
                stats[n].add(ref[n], probe.value(got[probe.fetch]))
    del s_fp32, s_int8

    rows = []
    for position, lay in enumerate(keep):
        if lay.output not in stats:
            continue
        st = stats[lay.output]
        nsr_in = max((stats[i].nsr for i in lay.inputs if i in stats), default=0.0)
        row = LayerError(lay.node, lay.op, lay.output, lay.quantized, st.sqnr, st.cosine, local_sqnr(st.nsr, nsr_in))
        row.index = position
        rows.append(row)
    rows.sort(key=lambda r: (r.local_sqnr_db, r.sqnr_db))
    report = ExplainReport(
        str(fp32_path), str(int8_path), len(inputs), {n: s.sqnr for n, s in out_stats.items()}, rows, unmapped
    )
    if top_k > 0:
        source = images if calib is None else calib
        if isinstance(source, np.ndarray):
            calib_inputs = source[:calib_images]
        else:
            assert spec is not None
            calib_inputs = calibration_tensors(
                replace(spec, layout="nchw"), source, calib_images, show_progress=show_progress
            )
        chosen = [r for r in report.layers if r.quantized][:top_k]
        _only_layer(report, chosen, fp32_path, int8, inputs, fp32_outputs, calib_inputs, calib_method, threads,
                    show_progress)  # fmt: skip
        if val is not None:
            _ap50_sensitivity(report, chosen, fp32_path, int8_path, val, val_class_map, calib_inputs, calib_method,
                              threads, show_progress, inputs, fp32_outputs)  # fmt: skip
    report.notes.append(
        "SQNR / cosine: the layer's output in the int8 model against the fp32 model's tensor of the same name "
        "(all upstream error included). Local SQNR: the error this layer adds, -10·log10(NSR_out − NSR_in)."
        + ("" if val is not None else " Not measured: AP50 / output SQNR with a layer float (give --val DATA).")
    )
    return report


def _requantize(
    fp32_path: Path, out: Path, calib_inputs: np.ndarray, method: str, exclude: Sequence[str], alone: bool
) -> Path:
    """The fp32 model quantised by :func:`quantize_onnx` with the export's settings; ``alone``: with every
    node in ``exclude`` float and the stem / tail not forced float."""
    return quantize_onnx(
        fp32_path,
        out,
        calib_inputs,
        method=method,
        calib_images=len(calib_inputs),
        keep_tail_float=not alone,
        keep_stem_float=not alone,
        exclude_nodes=exclude,
        show_progress=False,
    )


def _ap50_sensitivity(
    report: ExplainReport,
    chosen: Sequence[LayerError],
    fp32_path: Path,
    int8_path: Path,
    val: str | os.PathLike[str],
    class_map: Mapping[str, str] | None,
    calib_inputs: np.ndarray,
    calib_method: str,
    threads: int | None,
    show: bool,
    inputs: np.ndarray,
    fp32_outputs: Sequence[Mapping[str, np.ndarray]],
) -> None:
    """AP50 (device code path, :func:`edgedet.edge.eval.evaluate.evaluate_detector`) of the fp32 and int8
    models and of int8 with each ``chosen`` layer kept float, and that model's final-output SQNR."""
    ap50 = ap50_scorer(val, class_map, threads)
    report.ap50_fp32, report.ap50_int8 = ap50(fp32_path), ap50(int8_path)
    out_names = list(report.output_sqnr_db)
    with tempfile.TemporaryDirectory(prefix="edgedet-explain-ap-") as tmp:
        for i, row in enumerate(progress(chosen, len(chosen), "int8-explain: AP50, one layer float", show)):
            path = _requantize(fp32_path, Path(tmp) / f"float_{i}.onnx", calib_inputs, calib_method, [row.node], False)
            row.ap50_layer_float = ap50(path)
            sqnr = _output_sqnr(fp32_outputs, _session(str(path), threads), inputs, out_names)
            row.output_sqnr_layer_float_db = min(sqnr.values())


def ap50_scorer(
    val: str | os.PathLike[str], class_map: Mapping[str, str] | None, threads: int | None
) -> Callable[[str | os.PathLike[str]], float]:
    """``path -> AP50`` of a model file on the labelled ``val`` data, through the device code path."""
    from edgedet.edge.datasets.spec import load_dataset
    from edgedet.edge.eval.evaluate import EVAL_SCORE_THRESHOLD, evaluate_detector
    from edgedet.edge.runtime.detector import Detector

    dataset = load_dataset(os.fspath(val), class_map=dict(class_map) if class_map else None)
    if not len(dataset):
        raise ValueError(f"--val {val}: no labelled image to evaluate")

    def ap50(path: str | os.PathLike[str]) -> float:
        detector = Detector.from_model(path, threads=threads, score_threshold=EVAL_SCORE_THRESHOLD)
        return float(evaluate_detector(detector, dataset, progress=False)["AP50"])

    return ap50


def _only_layer(
    report: ExplainReport,
    chosen: Sequence[LayerError],
    fp32_path: Path,
    int8: onnx.ModelProto,
    inputs: np.ndarray,
    fp32_outputs: Sequence[Mapping[str, np.ndarray]],
    calib_inputs: np.ndarray,
    calib_method: str,
    threads: int | None,
    show: bool,
) -> None:
    """Fill ``only_layer_output_sqnr_db`` / ``scales_match`` of the ``chosen`` rows."""
    fp32 = onnx.load(fp32_path)
    all_nodes = [n.name or f"{n.op_type}_{i}" for i, n in enumerate(fp32.graph.node)]
    int8_scales = _activation_scales(int8)
    out_names = list(report.output_sqnr_db)
    with tempfile.TemporaryDirectory(prefix="edgedet-explain-") as tmp:
        for i, row in enumerate(progress(chosen, len(chosen), "int8-explain: one layer int8", show)):
            if row.node not in all_nodes:
                report.notes.append(f"`{row.node}` is not a node of the fp32 model: not re-quantised alone")
                continue
            others = [n for n in all_nodes if n != row.node]
            path = _requantize(fp32_path, Path(tmp) / f"only_{i}.onnx", calib_inputs, calib_method, others, True)
            single = onnx.load(path)
            sqnr = _output_sqnr(fp32_outputs, _session(str(path), threads), inputs, out_names)
            row.only_layer_output_sqnr_db = min(sqnr.values())
            mine = _activation_scales(single)
            shared = [t for t in mine if t in int8_scales]
            row.scales_match = all(np.allclose(mine[t], int8_scales[t], rtol=1e-5) for t in shared) if shared else None
    if any(r.scales_match is False for r in chosen):
        report.notes.append(
            "Some re-quantised layers got other scales than the int8 model's: give the export's calibration "
            "data (--calib, --calib-images, --calib-method)."
        )


def cli(args: argparse.Namespace) -> int:
    """``edgedet int8-explain``: print the table; write it to ``--out`` (markdown), ``--json`` and ``--plot``."""
    from edgedet.edge.eval.evaluate import parse_class_map

    plot = getattr(args, "plot", None)
    if plot:
        try:
            _matplotlib()  # fail before the analysis, not after it
        except ImportError as exc:
            raise ValueError(str(exc)) from exc
    report = explain_int8(
        args.fp32,
        args.int8,
        args.images,
        limit=int(args.limit),
        top_k=int(args.top_k),
        calib=args.calib,
        calib_images=int(args.calib_images),
        calib_method=args.calib_method,
        all_layers=bool(args.all_layers),
        val=args.val,
        val_class_map=parse_class_map(args.class_map),
        threads=args.threads,
    )
    text = report.markdown()
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    if plot:
        plot_report(report, plot)
    return 0

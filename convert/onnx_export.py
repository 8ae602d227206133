"""Checkpoint -> ONNX: static batch 1, BatchNorm folded, simplified, the spec in ``metadata_props``.

Outputs: SSD ``scores`` (softmax, background column 0) and ``locations`` (raw regressions), or with
``boxes_in_graph`` ``scores`` and ``boxes`` (normalised corner boxes decoded in the graph with the
priors as a constant); CenterNet ``heatmap`` (sigmoid), ``size`` and ``offset``, or with ``peaks`` the
in-graph 3x3 max-pool peak map ``peaks`` in place of ``heatmap``. The exported file is checked: no
``BatchNormalization`` left, the only graph input is ``input``, the outputs are the names above.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from torch import nn

from edgedet.convert.checkpoint_input import check_input_size, open_checkpoint
from edgedet.edge.core.model_spec import ModelSpec
from edgedet.training.box_ops import center_to_corner, decode, peak_map
from edgedet.training.module_backend import output_names  # re-exported: the exported model's names

__all__ = [
    "INPUT_NAME",
    "METADATA_KEY",
    "ExportHead",
    "check_onnx",
    "export_onnx",
    "output_names",
    "read_metadata_spec",
    "set_metadata_spec",
]

INPUT_NAME = "input"
METADATA_KEY = "edgedet"
MIN_OPSET = 13


class ExportHead(nn.Module):
    """The trained network plus the inference-only tail (softmax / decode / sigmoid / peaks)."""

    def __init__(self, model: nn.Module, spec: ModelSpec, boxes_in_graph: bool = False, peaks: bool = False) -> None:
        super().__init__()
        self.model = model
        self.spec = spec
        self.boxes_in_graph = boxes_in_graph and spec.head == "ssd"
        self.peaks = peaks and spec.head == "centernet"
        if self.boxes_in_graph:
            assert spec.priors is not None
            priors = torch.from_numpy(spec.priors.generate(spec.input_size)).float()
            self.register_buffer("priors", priors, persistent=False)
            self.center_variance = spec.priors.center_variance
            self.size_variance = spec.priors.size_variance

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.spec.head == "ssd":
            logits, locations = self.model(x)
            scores = F.softmax(logits, dim=2)
            if not self.boxes_in_graph:
                return scores, locations
            centre = decode(locations, self.priors, self.center_variance, self.size_variance)
            return scores, center_to_corner(centre)
        heat, size, offset = self.model(x)
        heat = torch.sigmoid(heat)
        return (peak_map(heat) if self.peaks else heat), size, offset


def set_metadata_spec(model: onnx.ModelProto, spec: ModelSpec) -> None:
    """Write ``spec`` as JSON into ``metadata_props["edgedet"]`` (replacing an existing entry)."""
    for prop in list(model.metadata_props):
        if prop.key == METADATA_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, spec.to_json()


def read_metadata_spec(model: onnx.ModelProto, source: str = "ONNX model") -> ModelSpec | None:
    """The spec in ``metadata_props["edgedet"]``, or ``None``."""
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return ModelSpec.from_json(prop.value, source=f"{source} (metadata {METADATA_KEY!r})")
    return None


def check_onnx(model: onnx.ModelProto, expected_outputs: Sequence[str], source: str) -> None:
    """Raise ``ValueError`` unless the graph has no BatchNorm, only ``input`` as input and the expected outputs."""
    onnx.checker.check_model(model)
    bn = [n.name or n.op_type for n in model.graph.node if n.op_type == "BatchNormalization"]
    if bn:
        raise ValueError(f"{source}: {len(bn)} BatchNormalization node(s) were not folded: {bn[:4]}")
    inputs = [i.name for i in model.graph.input]
    if inputs != [INPUT_NAME]:
        shown = inputs[:6] + (["..."] if len(inputs) > 6 else [])
        raise ValueError(f"{source}: graph inputs should be [{INPUT_NAME!r}] (no weights as inputs), got {shown}")
    outputs = [o.name for o in model.graph.output]
    if outputs != list(expected_outputs):
        raise ValueError(f"{source}: outputs {outputs}, expected {list(expected_outputs)}")


def _trace_to_onnx(head: ExportHead, spec: ModelSpec, names: Sequence[str], opset: int) -> onnx.ModelProto:
    """The legacy (TorchScript) exporter: deterministic and offline; EVAL mode folds BatchNorm."""
    dummy = torch.zeros(1, 3, spec.input_height, spec.input_width)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(
            head,
            (dummy,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(names),
            do_constant_folding=True,
            training=torch.onnx.TrainingMode.EVAL,
            keep_initializers_as_inputs=False,
            export_params=True,
        )
    return onnx.load_from_string(buffer.getvalue())


def _simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(model)


def export_onnx(
    ckpt_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    opset: int = 13,
    boxes_in_graph: bool = False,
    *,
    peaks: bool = False,
    head: str | None = None,
    input_size: tuple[int, int] | None = None,
    simplify: bool = True,
) -> Path:
    """Export ``ckpt_path`` to ``out_path`` and return it.

    ``boxes_in_graph`` (SSD) decodes boxes in the graph; ``peaks`` (CenterNet) adds the 3x3 max-pool
    peak map. ``head`` and ``input_size``, when given, must match the checkpoint (else ``ValueError``).
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset}: expected {MIN_OPSET} or newer")
    model, spec = open_checkpoint(ckpt_path, head)
    check_input_size(spec, input_size, str(ckpt_path))
    names = output_names(spec, boxes_in_graph, peaks)
    head_module = ExportHead(model, spec, boxes_in_graph, peaks).eval()
    onnx_model = _trace_to_onnx(head_module, spec, names, opset)
    if simplify:
        onnx_model = _simplify(onnx_model)
    spec = replace(spec, layout="nchw")
    set_metadata_spec(onnx_model, spec)
    onnx_model.producer_name = "edgedet"
    size = f"{spec.input_width}x{spec.input_height}"
    onnx_model.doc_string = f"edgedet {spec.head} model, {size}, from {Path(ckpt_path).name}"
    out_path = Path(out_path)
    check_onnx(onnx_model, names, str(out_path))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(onnx_model, out_path)
    return out_path

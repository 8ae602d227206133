"""A live ``nn.Module`` behind the :class:`edgedet.edge.runtime.backends.Backend` protocol, so a model in training (or a
loaded checkpoint) runs through exactly the detector code path a device uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgedet.edge.core.model_spec import ModelSpec

__all__ = ["ModuleBackend", "output_names"]


def output_names(spec: ModelSpec, boxes_in_graph: bool = False, peaks: bool = False) -> tuple[str, ...]:
    """The output names, in order, of ``model.predict`` (the defaults) and of the exported model
    (:mod:`edgedet.convert.onnx_export`: SSD ``boxes`` with ``boxes_in_graph``, CenterNet ``peaks``)."""
    if spec.head == "ssd":
        return ("scores", "boxes") if boxes_in_graph else ("scores", "locations")
    return ("peaks" if peaks else "heatmap", "size", "offset")


class ModuleBackend:
    """Runs ``model.predict`` on NCHW float32 input; outputs as float32 numpy arrays by name."""

    def __init__(self, model: nn.Module, spec: ModelSpec, path: str | Path = "<in-memory model>") -> None:
        self.model = model
        self.path = Path(path)
        self.input_shape: tuple[int | None, ...] = (1, 3, spec.input_height, spec.input_width)
        self.input_layout = "nchw"
        self.output_names = output_names(spec)
        self._spec = spec

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        device = next(self.model.parameters()).device
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(tensor, dtype=np.float32)).to(device)
            outs = self.model.predict(x)
        return {n: o.float().cpu().numpy() for n, o in zip(self.output_names, outs, strict=True)}

    def read_spec(self) -> ModelSpec:
        return self._spec

"""Evaluate an in-memory torch model through the same detector code path a device uses."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge.datasets.sample import Dataset
from edge.detector import Detector
from edge.evaluate import evaluate_detector
from edge.model_spec import ModelSpec

__all__ = ["ModuleBackend", "evaluate_model"]


class ModuleBackend:
    """The :class:`edge.backends.Backend` protocol over a live ``nn.Module`` (its ``predict``)."""

    def __init__(self, model: nn.Module, spec: ModelSpec) -> None:
        self.model = model
        self.path = Path("<in-memory model>")
        self.input_shape: tuple[int | None, ...] = (1, 3, spec.input_height, spec.input_width)
        self.input_layout = "nchw"
        self.output_names = ("scores", "locations") if spec.head == "ssd" else ("heatmap", "size", "offset")
        self._spec = spec

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        device = next(self.model.parameters()).device
        with torch.no_grad():
            outs = self.model.predict(torch.from_numpy(np.ascontiguousarray(tensor, dtype=np.float32)).to(device))
        return {n: o.float().cpu().numpy() for n, o in zip(self.output_names, outs, strict=True)}

    def read_spec(self) -> ModelSpec:
        return self._spec


def evaluate_model(
    model: nn.Module, spec: ModelSpec, dataset: Dataset, score_threshold: float = 0.01, progress: bool = True
) -> dict[str, Any]:
    """COCO metrics of ``model`` (put in eval mode) on ``dataset``."""
    model.eval()
    detector = Detector(ModuleBackend(model, spec), replace(spec, score_threshold=score_threshold))
    return evaluate_detector(detector, dataset, progress=progress)

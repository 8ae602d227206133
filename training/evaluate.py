"""Evaluate an in-memory torch model through the same detector code path a device uses."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import nn

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.datasets.sample import Dataset
from edgedet.edge.eval.evaluate import evaluate_detector
from edgedet.edge.runtime.detector import Detector
from edgedet.training.module_backend import ModuleBackend

__all__ = ["evaluate_model"]


def evaluate_model(
    model: nn.Module, spec: ModelSpec, dataset: Dataset, score_threshold: float = 0.01, progress: bool = True
) -> dict[str, Any]:
    """COCO metrics of ``model`` (put in eval mode) on ``dataset``."""
    model.eval()
    detector = Detector(ModuleBackend(model, spec), replace(spec, score_threshold=score_threshold))
    return evaluate_detector(detector, dataset, progress=progress)

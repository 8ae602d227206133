"""Evaluate an in-memory torch model through the same detector code path a device uses."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import nn

from edge.datasets.sample import Dataset
from edge.detector import Detector
from edge.evaluate import evaluate_detector
from edge.model_spec import ModelSpec
from training.module_backend import ModuleBackend

__all__ = ["evaluate_model"]


def evaluate_model(
    model: nn.Module, spec: ModelSpec, dataset: Dataset, score_threshold: float = 0.01, progress: bool = True
) -> dict[str, Any]:
    """COCO metrics of ``model`` (put in eval mode) on ``dataset``."""
    model.eval()
    detector = Detector(ModuleBackend(model, spec), replace(spec, score_threshold=score_threshold))
    return evaluate_detector(detector, dataset, progress=progress)

"""Build the network a :class:`~edgedet.edge.core.model_spec.ModelSpec` describes."""

from __future__ import annotations

from torch import nn

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.training.centernet_model import CenterNet
from edgedet.training.ssd_model import SSD

__all__ = ["build_model"]


def build_model(spec: ModelSpec) -> nn.Module:
    """An untrained :class:`SSD` or :class:`CenterNet` for ``spec.head``."""
    if spec.head == "ssd":
        return SSD(spec)
    if spec.head == "centernet":
        return CenterNet(spec)
    raise ValueError(f"build_model: unknown head {spec.head!r}; expected 'ssd' or 'centernet'")

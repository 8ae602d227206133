"""An exponential moving average of the weights, the model that is evaluated, saved and exported.

``ema = decay * (1 - exp(-updates / tau)) * ema + (1 - ...) * weights`` after every optimiser step, for
every floating-point entry of the state dict (weights and BatchNorm statistics alike), as NanoDet and
Ultralytics keep it. The ramp makes the first steps follow the weights closely; at the end of a run the
average spans about ``1 / (1 - decay)`` steps, so the final file no longer depends on the last few
batches. Off by default (``ema.enabled``): on a short, still-improving run it scored below the raw final
weights on held-back images (README, "Training").
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """The averaged copy of ``model`` (``module``, in eval mode, no gradients)."""

    def __init__(self, model: nn.Module, decay: float, tau: float, updates: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema.decay: expected a value in [0, 1), got {decay}")
        if tau <= 0:
            raise ValueError(f"ema.tau: expected > 0 steps, got {tau}")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    def current_decay(self) -> float:
        """The decay of the next update: ``decay * (1 - exp(-updates / tau))``."""
        return self.decay * (1.0 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        current = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(current[name].detach(), alpha=1.0 - d)
            else:  # e.g. BatchNorm's num_batches_tracked
                value.copy_(current[name])

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps to continue the average exactly (the weights are the checkpoint's model)."""
        return {"updates": self.updates, "decay": self.decay, "tau": self.tau}

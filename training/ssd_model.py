"""SSD head on the slim backbone, laid out exactly as UltraFace's ``version-slim`` so its weights load.

Four levels at strides 8, 16, 32 (backbone) and 64 (``extras``: 1x1 squeeze, then a stride-2
separable conv). Each level has a classification and a regression header: a separable conv
(depthwise 3x3 with bias, ReLU, pointwise 1x1) on the first three levels, a plain 3x3 conv on the
last. Level ``k`` has ``p_k = spec.priors.anchors_per_location()[k]`` anchors per cell, so its headers
emit ``p_k * (C + 1)`` and ``p_k * 4`` channels (class 0 is background).

Padding rule: every stride-2 conv is 3x3 with padding 1, so each level's map is ``ceil(size / stride)``
per axis for any input size (e.g. 320x240 -> 40x30, 20x15, 10x8, 5x4), which is what
``edgedet.edge.core.priors.feature_map_sizes`` assumes. Header outputs are flattened NCHW -> NHWC -> ``[B, H*W*p, k]``
and concatenated over levels, so prior ``i`` is in the order level -> row -> column -> anchor, the
order of ``spec.priors.generate``. The model is bound to ``spec.input_size`` (its priors are); another
size needs a model built from ``spec.with_input_size(w, h)`` (the weights are size-independent).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.training.backbone import Backbone, conv_output_size

__all__ = ["SSD", "SSD_STRIDES", "separable_conv2d"]

SSD_STRIDES: tuple[int, ...] = (8, 16, 32, 64)


def separable_conv2d(inp: int, oup: int, kernel_size: int = 3, stride: int = 1, padding: int = 1) -> nn.Sequential:
    """UltraFace's ``SeperableConv2d``: depthwise conv (with bias) + ReLU + pointwise 1x1 conv."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, kernel_size, stride, padding, groups=inp),
        nn.ReLU(),
        nn.Conv2d(inp, oup, 1),
    )


class SSD(nn.Module):
    """UltraFace-slim-compatible SSD: ``forward`` gives raw ``(cls_logits [B, N, C+1], locations [B, N, 4])``."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        if spec.head != "ssd" or spec.priors is None:
            raise ValueError(f"SSD: expected an 'ssd' spec with priors, got head={spec.head!r}")
        if tuple(spec.priors.strides) != SSD_STRIDES:
            raise ValueError(
                f"SSD: this architecture has levels at strides {list(SSD_STRIDES)}, "
                f"but spec.priors.strides is {list(spec.priors.strides)}"
            )
        self.spec = spec
        self.num_classes = spec.num_classes + 1
        anchors = spec.priors.anchors_per_location()
        b = spec.base_channel
        self.base_net = Backbone(b)
        self.extras = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(b * 16, b * 4, 1),
                    nn.ReLU(),
                    separable_conv2d(b * 4, b * 16, kernel_size=3, stride=2, padding=1),
                    nn.ReLU(),
                )
            ]
        )
        in_channels = (b * 4, b * 8, b * 16)
        self.classification_headers = nn.ModuleList(
            [separable_conv2d(c, p * self.num_classes) for c, p in zip(in_channels, anchors[:3], strict=True)]
            + [nn.Conv2d(b * 16, anchors[3] * self.num_classes, 3, padding=1)]
        )
        self.regression_headers = nn.ModuleList(
            [separable_conv2d(c, p * 4) for c, p in zip(in_channels, anchors[:3], strict=True)]
            + [nn.Conv2d(b * 16, anchors[3] * 4, 3, padding=1)]
        )
        self._priors = spec.priors.generate(spec.input_size)
        w, h = spec.input_size
        produced = sum(
            conv_output_size(w, s) * conv_output_size(h, s) * p for s, p in zip(SSD_STRIDES, anchors, strict=True)
        )
        if produced != len(self._priors):
            raise ValueError(
                f"SSD: a {w}x{h} input gives {produced} head outputs but the spec's priors number "
                f"{len(self._priors)}; the prior config does not fit this architecture"
            )

    @property
    def priors(self) -> np.ndarray:
        """Centre-form priors ``[N, 4]`` (float32, normalised) for ``spec.input_size``."""
        return self._priors

    @property
    def num_priors(self) -> int:
        return len(self._priors)

    def _check_input(self, x: torch.Tensor) -> None:
        w, h = self.spec.input_size
        if x.dim() != 4 or x.shape[1] != 3 or (x.shape[2], x.shape[3]) != (h, w):
            raise ValueError(
                f"SSD: expected input [B, 3, {h}, {w}] (the spec's {w}x{h}, for which its {self.num_priors} "
                f"priors are generated), got {list(x.shape)}; build the model from spec.with_input_size(...) "
                "for another size"
            )

    def _flatten(self, y: torch.Tensor, k: int) -> torch.Tensor:
        """``[B, p*k, H, W]`` -> ``[B, H*W*p, k]`` (row -> column -> anchor)."""
        return y.permute(0, 2, 3, 1).reshape(y.shape[0], -1, k)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw class logits ``[B, N, C+1]`` and box regressions ``[B, N, 4]`` (encoded vs. the priors)."""
        self._check_input(x)
        feats = list(self.base_net(x))
        y = feats[-1]
        for layer in self.extras:
            y = layer(y)
            feats.append(y)
        logits = [
            self._flatten(head(f), self.num_classes) for head, f in zip(self.classification_headers, feats, strict=True)
        ]
        locs = [self._flatten(head(f), 4) for head, f in zip(self.regression_headers, feats, strict=True)]
        return torch.cat(logits, dim=1), torch.cat(locs, dim=1)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax class scores ``[B, N, C+1]`` and raw locations ``[B, N, 4]``."""
        logits, locs = self(x)
        return F.softmax(logits, dim=2), locs

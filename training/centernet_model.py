"""CenterNet head on the slim backbone: a light FPN-style neck up to stride 4, and three dense heads.

Why stride 4 (as in the CenterNet paper): an object is one heatmap peak, so two objects whose centres
fall in the same output cell collide and one is lost; at stride 4 a 320x240 input has an 80x60 grid,
fine enough for small, crowded objects (faces 10-20 px apart), while stride 8 would merge them and
stride 2 would quadruple the head's cost for little gain. The sub-cell offset head recovers the
remaining quantisation error.

Neck: 1x1 laterals bring the stride-32/16/8/4 backbone maps to ``neck`` channels (default
``4 * base_channel``); top-down, each coarser map is upsampled x2 (``nn.Upsample``, nearest: exports to
ONNX opset 13 ``Resize`` and TFLite ``RESIZE_NEAREST_NEIGHBOR``), cropped to the finer map where an odd
side made it one cell larger (``ceil`` sizes: 15 -> 8 -> 16), added to the lateral and smoothed by a
depthwise-separable conv. The output is ``ceil(H / 4) x ceil(W / 4)``: see :meth:`CenterNet.output_size`.

Heads: ``heat`` (depthwise 3x3 + ReLU + 1x1 + ReLU + 1x1 to C logits, bias -2.19 so the initial
sigmoid is 0.1, the focal-loss prior); ``size`` (w, h in output-cell units) and ``offset`` (dx, dy) share
one trunk (depthwise 3x3 + ReLU + 1x1 + ReLU, ``box``) and each have their own 1x1 output, the size's
scaled by ``SIZE_SCALE`` (:class:`ScaledConv2d`). The outputs
keep the layout ``edgedet.edge.core.heatmap_decode.decode_heatmap`` reads. Classification and box regression stay
apart (the usual decoupled head), while size and offset, both box geometry, share: at stride 4 each
head costs as much as a third of the backbone, so the shared trunk saves ~12 % of the model's MACs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.training.backbone import Backbone, conv_dw

__all__ = ["HEAT_BIAS_INIT", "OUTPUT_STRIDE", "SIZE_SCALE", "CenterNet", "ScaledConv2d"]

OUTPUT_STRIDE = 4
HEAT_BIAS_INIT = -math.log((1 - 0.1) / 0.1)  # -2.197...: sigmoid(bias) = 0.1
SIZE_SCALE = 8.0  # the size output's conv is scaled by this (TTFNet's wh_offset_base), see ScaledConv2d
_NECK_STRIDES = (4, 8, 16, 32)


def _trunk(inp: int, mid: int) -> list[nn.Module]:
    return [
        nn.Conv2d(inp, inp, 3, 1, 1, groups=inp),
        nn.ReLU(inplace=True),
        nn.Conv2d(inp, mid, 1),
        nn.ReLU(inplace=True),
    ]


class ScaledConv2d(nn.Conv2d):
    """A convolution whose weight and bias are multiplied by a fixed ``scale`` in the forward pass.

    Sizes are tens of output cells (a raccoon: 30-80); a plain conv starts near 0 and AdamW moves each
    parameter by about the learning rate per step, so from scratch the size head needs hundreds of epochs
    just to reach the right magnitude. Scaling the layer (as TTFNet scales its box head by 16) makes it
    ``scale`` times faster. The product is a constant in an exported graph, folded into the conv's
    initialisers: the output is still plain cells, and no extra op reaches the device.
    """

    def __init__(self, *args, scale: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.scale
        return self._conv_forward(x, self.weight * self.scale, bias)


class CenterNet(nn.Module):
    """``forward`` gives raw ``(heat_logits [B, C, H/4, W/4], size [B, 2, ..], offset [B, 2, ..])``."""

    def __init__(self, spec: ModelSpec, neck_channels: int | None = None) -> None:
        super().__init__()
        if spec.head != "centernet":
            raise ValueError(f"CenterNet: expected a 'centernet' spec, got head={spec.head!r}")
        if spec.stride != OUTPUT_STRIDE:
            raise ValueError(
                f"CenterNet: this architecture outputs stride {OUTPUT_STRIDE}, spec.stride is {spec.stride}"
            )
        self.spec = spec
        b = spec.base_channel
        ch = neck_channels or b * 4
        self.base_net = Backbone(b)
        self.laterals = nn.ModuleList(
            [nn.Conv2d(self.base_net.channels(s), ch, 1) for s in _NECK_STRIDES]  # stride 4, 8, 16, 32
        )
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.smooth = nn.ModuleList([conv_dw(ch, ch, 1) for _ in _NECK_STRIDES[:-1]])  # stride 4, 8, 16
        self.heat = nn.Sequential(*_trunk(ch, ch), nn.Conv2d(ch, spec.num_classes, 1))
        self.box = nn.Sequential(*_trunk(ch, ch))
        self.size = ScaledConv2d(ch, 2, 1, scale=SIZE_SCALE)
        self.offset = nn.Conv2d(ch, 2, 1)
        nn.init.constant_(self.heat[-1].bias, HEAT_BIAS_INIT)

    @staticmethod
    def output_size(input_size: tuple[int, int]) -> tuple[int, int]:
        """``(width, height)`` of the output maps for an input ``(width, height)``: ``ceil(size / 4)``."""
        return tuple(math.ceil(v / OUTPUT_STRIDE) for v in input_size)  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw heatmap logits, sizes and offsets at stride 4."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"CenterNet: expected input [B, 3, H, W], got {list(x.shape)}")
        feats = self.base_net(x, strides=_NECK_STRIDES)
        y = self.laterals[-1](feats[-1])
        for i in range(len(feats) - 2, -1, -1):
            lateral = self.laterals[i](feats[i])
            up = self.upsample(y)
            h, w = lateral.shape[-2:]
            if up.shape[-2] != h or up.shape[-1] != w:
                up = up[:, :, :h, :w]
            y = self.smooth[i](lateral + up)
        box = self.box(y)
        return self.heat(y), self.size(box), self.offset(box)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sigmoid heatmap scores, sizes and offsets."""
        heat, size, offset = self(x)
        return torch.sigmoid(heat), size, offset

"""The conv_dw backbone shared by both heads: UltraFace's "slim" (a MobileNet-v1-style stack).

``conv_bn(3, b, 2)`` followed by 12 ``conv_dw`` blocks (13 layers, indices 0..12, the state-dict keys
``base_net.0`` .. ``base_net.12`` of the published UltraFace weights). With ``b = base_channel``:

=====  ==========  ======  ==========================================
index  channels    stride  note
=====  ==========  ======  ==========================================
0      3 -> b      2       conv_bn
1      b -> 2b     2
2      2b -> 2b    4
3      2b -> 2b    4       end of the stride-4 stage
4-7    -> 4b       8       end of index 7: the first SSD level
8-10   -> 8b       16      end of index 10: the second SSD level
11-12  -> 16b      32      end of index 12: the third SSD level
=====  ==========  ======  ==========================================

Every stride-2 convolution is 3x3 with padding 1, so a side ``n`` becomes ``floor((n - 1) / 2) + 1 =
ceil(n / 2)`` and, since nested ceilings compose, the stride-``s`` map is exactly ``ceil(n / s)`` for any
input size: the rule ``edgedet.edge.core.priors.feature_map_sizes`` uses.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["STAGE_ENDS", "Backbone", "conv_bn", "conv_dw", "conv_output_size"]

# Output stride -> (exclusive) end index in the layer list; channels are base_channel * STAGE_WIDTHS[stride].
STAGE_ENDS: dict[int, int] = {4: 4, 8: 8, 16: 11, 32: 13}
STAGE_WIDTHS: dict[int, int] = {4: 2, 8: 4, 16: 8, 32: 16}


def conv_bn(inp: int, oup: int, stride: int) -> nn.Sequential:
    """3x3 convolution (no bias) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(inp, oup, 3, stride, 1, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    )


def conv_dw(inp: int, oup: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 + BN + ReLU, then pointwise 1x1 + BN + ReLU (no conv biases)."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.ReLU(inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    )


def conv_output_size(n: int, stride: int) -> int:
    """Side of the stride-``stride`` map for an input side ``n``, by the 3x3/pad-1 conv arithmetic."""
    while stride > 1:
        n = (n + 2 * 1 - 3) // 2 + 1
        stride //= 2
    return n


class Backbone(nn.Sequential):
    """The slim backbone; ``forward`` returns the feature maps at the requested output strides."""

    def __init__(self, base_channel: int = 16) -> None:
        if base_channel <= 0:
            raise ValueError(f"base_channel: expected a positive integer, got {base_channel}")
        b = base_channel
        super().__init__(
            conv_bn(3, b, 2),
            conv_dw(b, b * 2, 1),
            conv_dw(b * 2, b * 2, 2),
            conv_dw(b * 2, b * 2, 1),
            conv_dw(b * 2, b * 4, 2),
            conv_dw(b * 4, b * 4, 1),
            conv_dw(b * 4, b * 4, 1),
            conv_dw(b * 4, b * 4, 1),
            conv_dw(b * 4, b * 8, 2),
            conv_dw(b * 8, b * 8, 1),
            conv_dw(b * 8, b * 8, 1),
            conv_dw(b * 8, b * 16, 2),
            conv_dw(b * 16, b * 16, 1),
        )
        self.base_channel = b

    def channels(self, stride: int) -> int:
        """Channels of the stride-``stride`` feature map."""
        return self.base_channel * STAGE_WIDTHS[stride]

    def forward(self, x: torch.Tensor, strides: tuple[int, ...] = (8, 16, 32)) -> tuple[torch.Tensor, ...]:
        """Feature maps at ``strides`` (ascending, each one of 4, 8, 16, 32)."""
        unknown = [s for s in strides if s not in STAGE_ENDS]
        if unknown or list(strides) != sorted(set(strides)):
            raise ValueError(f"Backbone: strides must be ascending values from {sorted(STAGE_ENDS)}, got {strides}")
        outs = []
        start = 0
        for stride in strides:
            end = STAGE_ENDS[stride]
            for i in range(start, end):  # indexing, not slicing: a slice would rebuild this class
                x = self[i](x)
            outs.append(x)
            start = end
        return tuple(outs)

"""Torch twins of the numpy math core (``edge.core.boxes``, ``edge.core.box_coder``, ``edge.core.heatmap_decode``).

They exist only where training or export needs autograd, batches or an in-graph op; the numpy
versions are the reference and ``tests/test_torch_twins.py`` holds each pair equal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgedet.edge.core.box_coder import CENTER_VARIANCE, SIZE_VARIANCE

__all__ = ["center_to_corner", "corner_to_center", "decode", "encode", "pairwise_iou", "peak_map"]


def center_to_corner(boxes: torch.Tensor) -> torch.Tensor:
    half = boxes[..., 2:] / 2
    return torch.cat([boxes[..., :2] - half, boxes[..., :2] + half], dim=-1)


def corner_to_center(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], dim=-1)


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[N, M]`` IoU of corner boxes; an empty union gives 0 (as in numpy)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(inter.dtype).tiny), torch.zeros_like(inter))


def encode(
    boxes: torch.Tensor,
    priors: torch.Tensor,
    center_variance: float = CENTER_VARIANCE,
    size_variance: float = SIZE_VARIANCE,
) -> torch.Tensor:
    return torch.cat(
        [
            (boxes[..., :2] - priors[..., :2]) / (priors[..., 2:] * center_variance),
            torch.log(boxes[..., 2:] / priors[..., 2:]) / size_variance,
        ],
        dim=-1,
    )


def decode(
    locations: torch.Tensor,
    priors: torch.Tensor,
    center_variance: float = CENTER_VARIANCE,
    size_variance: float = SIZE_VARIANCE,
) -> torch.Tensor:
    """Regression outputs -> centre boxes; broadcasts priors ``[N, 4]`` over a batch ``[B, N, 4]``."""
    return torch.cat(
        [
            locations[..., :2] * center_variance * priors[..., 2:] + priors[..., :2],
            torch.exp(locations[..., 2:] * size_variance) * priors[..., 2:],
        ],
        dim=-1,
    )


def peak_map(heat: torch.Tensor) -> torch.Tensor:
    """``heat [..., H, W]`` kept where it equals its 3x3 max-pool (padding 1), else 0."""
    hmax = F.max_pool2d(heat, kernel_size=3, stride=1, padding=1)
    return heat * (hmax == heat).to(heat.dtype)

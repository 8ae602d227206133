"""Assigning ground truth to priors, as the SSD seed describes.

1. Every ground-truth box is forced onto the prior it overlaps most (so none goes unmatched).
2. Every other prior takes the ground truth it overlaps most when that IoU >= ``iou_threshold``.
3. The rest are background.

Where we differ from the seed's snippet: it tests ``IoU > threshold`` (the spec says ">="), stores the
matched boxes un-encoded and in centre form only for positives, and does not shift labels past the
background class. Here labels come back as ``0`` = background and ``k + 1`` = object class ``k``, and
every prior gets a matched box (background priors their best ground truth, or their own box when an
image has none), so encoding never sees a zero size. When two ground truths share the same best prior
the later one keeps it (as UltraFace and torchvision do).
"""

from __future__ import annotations

import numpy as np

from edgedet.edge.core.boxes import area, as_boxes, center_to_corner, pairwise_iou

__all__ = ["match_priors"]


def match_priors(
    priors: np.ndarray,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Match centre-form ``priors [N, 4]`` to corner-form ``gt_boxes [M, 4]`` with labels ``[M]`` (0-based).

    Returns ``(boxes [N, 4]`` corner form, ``labels [N]`` int64 with 0 = background). Zero-area
    ground-truth boxes are rejected: the data layer reports and drops them before they get here.
    """
    priors = as_boxes(priors, "priors")
    gt_boxes = as_boxes(gt_boxes, "gt_boxes")
    gt_labels = np.asarray(gt_labels)
    if gt_boxes.ndim != 2 or gt_labels.shape != (len(gt_boxes),):
        raise ValueError(
            f"match_priors: gt_boxes {list(gt_boxes.shape)} and gt_labels {list(gt_labels.shape)} "
            "must be [M, 4] and [M]"
        )
    if len(gt_labels) and (gt_labels.min() < 0 or not np.issubdtype(gt_labels.dtype, np.integer)):
        raise ValueError(f"match_priors: gt_labels must be integers >= 0, got {gt_labels!r}")
    prior_corners = center_to_corner(priors)
    n = len(priors)
    if len(gt_boxes) == 0:
        return prior_corners.copy(), np.zeros(n, dtype=np.int64)
    degenerate = np.flatnonzero(area(gt_boxes) <= 0)
    if degenerate.size:
        raise ValueError(f"match_priors: gt_boxes[{int(degenerate[0])}] has zero area: {gt_boxes[degenerate[0]]}")

    iou = pairwise_iou(prior_corners, gt_boxes)  # [N, M]
    best_gt = iou.argmax(axis=1)
    best_gt_iou = iou[np.arange(n), best_gt]
    best_prior = iou.argmax(axis=0)  # [M]
    # Force each ground truth onto its best prior; later ground truths win a shared prior.
    best_gt[best_prior] = np.arange(len(gt_boxes))
    best_gt_iou[best_prior] = 2.0
    labels = np.where(best_gt_iou >= iou_threshold, gt_labels[best_gt].astype(np.int64) + 1, 0)
    return gt_boxes[best_gt], labels

"""SSD training targets for one image: match ground truth to priors and encode it (numpy, so it runs in
DataLoader workers).

The matching rules live in :func:`edgedet.edge.core.matching.match_priors` and the encoding in
:mod:`edgedet.edge.core.box_coder`; this module only normalises pixel boxes by the image size and glues the two.
"""

from __future__ import annotations

import numpy as np

from edgedet.edge.core.box_coder import CENTER_VARIANCE, SIZE_VARIANCE, encode_corners
from edgedet.edge.core.boxes import as_boxes
from edgedet.edge.core.matching import match_priors

__all__ = ["ssd_targets"]


def ssd_targets(
    boxes_px: np.ndarray,
    labels: np.ndarray,
    image_size: tuple[int, int],
    priors: np.ndarray,
    iou_threshold: float = 0.5,
    center_variance: float = CENTER_VARIANCE,
    size_variance: float = SIZE_VARIANCE,
) -> tuple[np.ndarray, np.ndarray]:
    """Targets for corner-form pixel ``boxes_px [M, 4]`` with 0-based ``labels [M]`` in an image
    ``(width, height)``, against centre-form normalised ``priors [N, 4]``.

    Returns ``(loc_targets [N, 4]`` float32, encoded with the variances, ``conf_targets [N]`` int64,
    0 = background, ``k + 1`` = class ``k``). Background priors carry the encoding of their best ground
    truth (or zeros when the image has none); the loss ignores them. ``M = 0`` is allowed (all
    background). Zero-area boxes raise ``ValueError``: the data layer drops them first.
    """
    width, height = image_size
    if width <= 0 or height <= 0:
        raise ValueError(f"ssd_targets: image_size must be positive (width, height), got {image_size!r}")
    boxes = as_boxes(boxes_px, "boxes_px").reshape(-1, 4).astype(np.float64)
    boxes = boxes / np.array([width, height, width, height], dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) == 0:
        labels = labels.astype(np.int64)
    priors64 = as_boxes(priors, "priors").astype(np.float64)
    matched, conf_targets = match_priors(priors64, boxes, labels, iou_threshold)
    loc_targets = encode_corners(matched, priors64, center_variance, size_variance)
    return loc_targets.astype(np.float32), conf_targets.astype(np.int64)

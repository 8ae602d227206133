"""SSD box encoding relative to priors, with centre variance 0.1 and size variance 0.2.

    t_xy = (c_gt - c_prior) / (wh_prior * center_variance)
    t_wh = log(wh_gt / wh_prior) / size_variance

``decode`` is the exact inverse. Works on any leading shape (``[N, 4]``, ``[B, N, 4]``).
"""

from __future__ import annotations

import numpy as np

from edgedet.edge.core.boxes import center_to_corner, corner_to_center

__all__ = ["decode", "decode_to_corners", "encode"]

CENTER_VARIANCE = 0.1
SIZE_VARIANCE = 0.2


def encode(
    boxes: np.ndarray,
    priors: np.ndarray,
    center_variance: float = CENTER_VARIANCE,
    size_variance: float = SIZE_VARIANCE,
) -> np.ndarray:
    """Centre-form ``boxes`` -> regression targets relative to centre-form ``priors``.

    Box widths and heights must be > 0 (the log of a zero size is -inf); callers drop zero-area
    ground truth before matching.
    """
    if np.any(boxes[..., 2:] <= 0):
        raise ValueError("encode: box width and height must be > 0 (zero-area boxes cannot be encoded)")
    return np.concatenate(
        [
            (boxes[..., :2] - priors[..., :2]) / (priors[..., 2:] * center_variance),
            np.log(boxes[..., 2:] / priors[..., 2:]) / size_variance,
        ],
        axis=-1,
    )


def decode(
    locations: np.ndarray,
    priors: np.ndarray,
    center_variance: float = CENTER_VARIANCE,
    size_variance: float = SIZE_VARIANCE,
) -> np.ndarray:
    """Regression outputs -> centre-form boxes (inverse of :func:`encode`)."""
    return np.concatenate(
        [
            locations[..., :2] * center_variance * priors[..., 2:] + priors[..., :2],
            np.exp(locations[..., 2:] * size_variance) * priors[..., 2:],
        ],
        axis=-1,
    )


def decode_to_corners(
    locations: np.ndarray,
    priors: np.ndarray,
    center_variance: float = CENTER_VARIANCE,
    size_variance: float = SIZE_VARIANCE,
) -> np.ndarray:
    """Regression outputs -> corner-form boxes, the form NMS and the runtime use."""
    return center_to_corner(decode(locations, priors, center_variance, size_variance))


def encode_corners(
    boxes: np.ndarray,
    priors: np.ndarray,
    center_variance: float = CENTER_VARIANCE,
    size_variance: float = SIZE_VARIANCE,
) -> np.ndarray:
    """Corner-form boxes -> regression targets."""
    return encode(corner_to_center(boxes), priors, center_variance, size_variance)

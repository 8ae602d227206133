"""CenterNet decoding: 3x3 max-pool peaks on the class heatmap, top-K, and boxes from size and offset.

For a peak at feature-map cell ``(x, y)`` with offset ``(dx, dy)`` and size ``(w, h)`` (both in
feature-map units), the box in input pixels is ``((x + dx) ± w/2, (y + dy) ± h/2) · R`` where ``R`` is
the output stride. Channel order: size is ``(w, h)``, offset is ``(dx, dy)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["decode_heatmap", "maxpool3x3", "peak_map"]

DEFAULT_TOP_K = 100
DEFAULT_SCORE_THRESHOLD = 0.3


def maxpool3x3(x: np.ndarray) -> np.ndarray:
    """3x3, stride-1 max-pool over the last two axes with ``-inf`` padding (separable: rows, columns)."""
    p = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)], constant_values=-np.inf)
    rows = np.maximum(np.maximum(p[..., :-2, :], p[..., 1:-1, :]), p[..., 2:, :])
    return np.maximum(np.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])


def peak_map(heat: np.ndarray) -> np.ndarray:
    """``heat`` where it equals its 3x3 neighbourhood maximum, 0 elsewhere (CenterNet's pseudo-NMS)."""
    return np.where(maxpool3x3(heat) == heat, heat, 0).astype(heat.dtype, copy=False)


def decode_heatmap(
    heat: np.ndarray,
    size: np.ndarray,
    offset: np.ndarray,
    stride: float,
    top_k: int = DEFAULT_TOP_K,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    peaks_done: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one image: ``heat [C, H, W]`` (sigmoid scores), ``size [2, H, W]``, ``offset [2, H, W]``.

    Returns ``(boxes [K, 4]`` in input pixels, ``scores [K]``, ``class_ids [K])``, best first, at most
    ``top_k`` peaks scoring at least ``score_threshold``. ``peaks_done`` skips the max-pool when the
    model already outputs the peak map.
    """
    if heat.ndim != 3 or size.shape != (2, *heat.shape[1:]) or offset.shape != (2, *heat.shape[1:]):
        raise ValueError(
            f"decode_heatmap: expected heat [C, H, W], size and offset [2, H, W]; got "
            f"{list(heat.shape)}, {list(size.shape)}, {list(offset.shape)}"
        )
    _, h, w = heat.shape
    peaks = heat if peaks_done else peak_map(heat)
    flat = peaks.reshape(-1)
    k = min(top_k, flat.size)
    idx = np.argpartition(-flat, k - 1)[:k] if k < flat.size else np.arange(flat.size)
    idx = idx[np.argsort(-flat[idx], kind="stable")]
    idx = idx[flat[idx] >= score_threshold]
    cls, pix = np.divmod(idx, h * w)
    ys, xs = np.divmod(pix, w)
    cx = xs + offset[0, ys, xs]
    cy = ys + offset[1, ys, xs]
    half_w = size[0, ys, xs] / 2
    half_h = size[1, ys, xs] / 2
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1) * stride
    return boxes.astype(np.float32), flat[idx].astype(np.float32), cls.astype(np.int64)

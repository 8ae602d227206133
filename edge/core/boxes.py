"""Box formats and overlap: corner (x1, y1, x2, y2) and centre (cx, cy, w, h) boxes, pairwise IoU.

Every function takes arrays of shape ``[..., 4]`` (any leading shape) and is vectorised. This is the
reference implementation; ``edgedet.training.box_ops`` holds the torch twins and a test holds them equal.
"""

from __future__ import annotations

import numpy as np

__all__ = ["area", "as_boxes", "center_to_corner", "corner_to_center", "pairwise_iou"]


def as_boxes(boxes: np.ndarray | list, name: str = "boxes", *, allow_empty: bool = True) -> np.ndarray:
    """Return ``boxes`` as a float array of shape ``[..., 4]`` or raise a ``ValueError`` saying why not.

    Rejects wrong shapes and non-finite values (NaN, inf) with the name of the argument in the message,
    so bad input never fails deep inside numpy.
    """
    arr = np.asarray(boxes)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name}: expected a numeric array of boxes, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim == 0 or arr.shape[-1] != 4:
        raise ValueError(f"{name}: expected shape [..., 4], got {list(arr.shape)}")
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{name}: expected at least one box, got none")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name}: non-finite value at index {tuple(int(i) for i in bad)}")
    return arr


def center_to_corner(boxes: np.ndarray) -> np.ndarray:
    """(cx, cy, w, h) -> (x1, y1, x2, y2)."""
    half = boxes[..., 2:] / 2
    return np.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def corner_to_center(boxes: np.ndarray) -> np.ndarray:
    """(x1, y1, x2, y2) -> (cx, cy, w, h)."""
    return np.concatenate([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], axis=-1)


def area(boxes: np.ndarray) -> np.ndarray:
    """Area of corner boxes; inverted boxes (x2 < x1 or y2 < y1) have area 0."""
    wh = np.clip(boxes[..., 2:] - boxes[..., :2], 0, None)
    return wh[..., 0] * wh[..., 1]


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every corner box in ``a [N, 4]`` with every one in ``b [M, 4]``: an ``[N, M]`` array.

    Symmetric and in [0, 1]. A pair whose union is empty (two zero-area boxes) has IoU 0, so a
    degenerate box never matches anything.
    """
    a = as_boxes(a, "a")
    b = as_boxes(b, "b")
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"pairwise_iou expects [N, 4] and [M, 4], got {list(a.shape)} and {list(b.shape)}")
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area(a)[:, None] + area(b)[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out

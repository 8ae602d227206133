"""Non-maximum suppression: class-aware hard NMS (vectorised), soft-NMS, and the multi-class front end.

A box is suppressed when its IoU with a kept, higher-scoring box of the same class is *greater than*
``iou_threshold`` (UltraFace's and torchvision's convention). Ties in score keep the lower index first.
"""

from __future__ import annotations

import math

import numpy as np

from edgedet.edge.core.boxes import as_boxes, pairwise_iou

__all__ = ["batched_nms", "multiclass_nms", "nms", "one_class_nms", "soft_nms"]


_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    """:func:`edgedet.edge.core.boxes.as_boxes`, short-cut for the finite float ``[N, 4]`` arrays of the hot path (the
    same array back, the same errors otherwise)."""
    if (
        type(boxes) is np.ndarray
        and boxes.dtype in _FAST_DTYPES
        and boxes.ndim == 2
        and boxes.shape[1] == 4
        and math.isfinite(boxes.sum())  # a NaN or an infinity makes the sum one; an overflow takes the long way
    ):
        return boxes
    return as_boxes(boxes, name)


def _check(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boxes = _boxes(boxes, "boxes")
    scores = np.asarray(scores, dtype=np.float64)
    if boxes.ndim != 2 or scores.shape != (len(boxes),):
        raise ValueError(f"nms: boxes {list(boxes.shape)} and scores {list(scores.shape)} must be [N, 4] and [N]")
    if np.isnan(scores).any():
        raise ValueError("nms: scores contain NaN")
    return boxes, scores


def _self_iou(corners: np.ndarray) -> np.ndarray:
    """``pairwise_iou(boxes, boxes)`` from the checked boxes' C-contiguous ``corners [4, N]`` (rows x1, y1,
    x2, y2): the same float operations in the same order (so bit-identical), one coordinate at a time,
    in place."""
    x1, y1, x2, y2 = corners
    inter = np.minimum(x2[:, None], x2)
    inter -= np.maximum(x1[:, None], x1)
    np.maximum(inter, 0, out=inter)
    h = np.minimum(y2[:, None], y2)
    h -= np.maximum(y1[:, None], y1)
    np.maximum(h, 0, out=h)
    area = inter.diagonal() * h.diagonal()  # on the diagonal: each box's own clipped width and height
    inter *= h
    union = np.add(area[:, None], area, out=h)
    union -= inter
    # Rounding is monotonic, so inter <= min(area_i, area_j) and every union is > 0 when every area is.
    if area.min() > 0:
        inter /= union
        return inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def _greedy(corners: np.ndarray, iou_threshold: float, top_k: int) -> np.ndarray:
    """Hard NMS over checked boxes, given as C-contiguous ``corners [4, N]`` sorted best first: the
    positions kept (at most ``top_k``).

    The IoU matrix is computed once and each row packed into a Python integer bit set, so the loop —
    once per *kept* box — is a few integer operations.
    """
    n = corners.shape[1]
    if n <= 1:
        return np.arange(n, dtype=np.int64)
    # IoU is never NaN here (finite boxes, empty unions give 0), so "not <= threshold" is "> threshold"
    suppress = np.packbits(_self_iou(corners) > iou_threshold, axis=1, bitorder="little")
    row = suppress.shape[1]
    rows = suppress.tobytes()
    alive = (1 << n) - 1  # bit i: position i still a candidate
    keep: list[int] = []
    while alive:
        i = (alive & -alive).bit_length() - 1  # the best one left
        keep.append(i)
        if len(keep) == top_k:
            break
        alive &= ~int.from_bytes(rows[i * row : (i + 1) * row], "little")
        alive &= ~(1 << i)
    return np.asarray(keep, dtype=np.int64)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, top_k: int = -1) -> np.ndarray:
    """Greedy hard NMS over corner boxes; returns kept indices, best score first (at most ``top_k``).

    The IoU matrix of the candidates is computed once; the loop runs once per *kept* box.
    """
    boxes, scores = _check(boxes, scores)
    order = np.argsort(-scores, kind="stable")
    return order[_greedy(np.ascontiguousarray(boxes[order].T), iou_threshold, top_k)]


def _offset_by_class(boxes: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
    """Shift each class's boxes to a disjoint region so one NMS pass never compares two classes."""
    if len(boxes) == 0:
        return boxes
    span = float(boxes.max() - boxes.min()) + 1.0
    return boxes + (class_ids.astype(np.float64) * span)[:, None] - boxes.min()


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float, top_k: int = -1
) -> np.ndarray:
    """Class-aware hard NMS: boxes of different classes never suppress each other."""
    boxes, scores = _check(boxes, scores)
    class_ids = np.asarray(class_ids)
    if class_ids.shape != scores.shape:
        raise ValueError(f"batched_nms: class_ids {list(class_ids.shape)} must match scores {list(scores.shape)}")
    return nms(_offset_by_class(boxes, class_ids), scores, iou_threshold, top_k)


def multiclass_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    score_threshold: float,
    iou_threshold: float,
    top_k: int = 200,
    max_candidates: int = 200,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detections from per-box class scores.

    ``boxes [N, 4]`` corner form, ``scores [N, C]`` (object classes only, no background column).
    Per class, boxes scoring above ``score_threshold`` are candidates, the best ``max_candidates`` of
    them go through NMS (UltraFace's ``candidate_size``), and the best ``top_k`` survivors over all
    classes are returned as ``(boxes [K, 4], scores [K], class_ids [K])``, best first.
    """
    boxes = _boxes(boxes, "boxes")
    scores = np.asarray(scores)
    if scores.ndim != 2 or len(scores) != len(boxes):
        raise ValueError(f"multiclass_nms: scores must be [N, C] with N = {len(boxes)}, got {list(scores.shape)}")
    if scores.shape[1] == 1:  # the common one-class head: no class bookkeeping
        column = scores[:, 0]
        box_idx = np.flatnonzero(column > score_threshold)
        if len(box_idx) < len(column):
            cand_boxes, cand_scores = boxes[box_idx], column[box_idx]
        else:  # every box is a candidate (callers often pass only those)
            box_idx, cand_boxes, cand_scores = None, boxes, column
        keep = _one_class(cand_boxes, cand_scores, iou_threshold, top_k, max_candidates)
        kept = keep if box_idx is None else box_idx[keep]
        return boxes[kept], column[kept].astype(np.float32), np.zeros(len(kept), dtype=np.int64)
    box_idx, cls = np.nonzero(scores > score_threshold)
    cand_scores = scores[box_idx, cls]
    if max_candidates > 0 and len(cand_scores) > max_candidates:
        # rank within class: sort by class, then score descending (stable for ties)
        order = np.lexsort((np.arange(len(cand_scores)), -cand_scores, cls))
        cls_sorted = cls[order]
        first = np.searchsorted(cls_sorted, cls_sorted, side="left")
        rank = np.arange(len(order)) - first
        sel = np.sort(order[rank < max_candidates])
        box_idx, cls, cand_scores = box_idx[sel], cls[sel], cand_scores[sel]
    cand_boxes = boxes[box_idx]
    order = np.argsort(-cand_scores, kind="stable")  # candidates exceed the threshold: never NaN
    keep = order[_greedy(np.ascontiguousarray(_offset_by_class(cand_boxes, cls)[order].T), iou_threshold, top_k)]
    return cand_boxes[keep], cand_scores[keep].astype(np.float32), cls[keep].astype(np.int64)


def one_class_nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, top_k: int = 200, max_candidates: int = 200
) -> np.ndarray:
    """Indices kept of one class's candidates — ``boxes [N, 4]`` and ``scores [N]`` already above the
    score threshold — best first: exactly what :func:`multiclass_nms` keeps for a one-column score
    matrix, without thresholding again (for decoders that threshold before decoding)."""
    boxes = _boxes(boxes, "boxes")
    scores = np.asarray(scores)
    if scores.shape != (len(boxes),):
        raise ValueError(f"one_class_nms: scores {list(scores.shape)} must be [{len(boxes)}]")
    return _one_class(boxes, scores, iou_threshold, top_k, max_candidates)


_SMALL = 12  # up to this many candidates, plain Python floats beat a dozen numpy calls on tiny arrays


def _one_class(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, top_k: int, max_candidates: int):
    """Hard NMS of one class's checked candidates: the best ``max_candidates`` by score (ties: lower
    index), then :func:`_greedy` (:func:`_greedy_small` for a few); kept positions, best first. The IoU is
    computed in float64 as :func:`batched_nms` does (there on boxes shifted by their minimum, which for
    float32 boxes is exact and so changes nothing; float64 boxes get the same shift)."""
    order = np.argsort(-scores, kind="stable")  # candidates exceed the threshold: never NaN
    if 0 < max_candidates < len(order):
        order = order[:max_candidates]
    ranked = boxes[order]
    if len(order) <= _SMALL:
        rows = ranked.tolist()  # float32 -> Python float (float64) is exact
        if rows and boxes.dtype != np.float32:
            low = float(ranked.min())
            rows = [[v - low for v in row] for row in rows]
        return order[_greedy_small(rows, iou_threshold, top_k)]
    corners = ranked.T.astype(np.float64, order="C")
    if boxes.dtype != np.float32:
        corners -= corners.min()
    return order[_greedy(corners, iou_threshold, top_k)]


def _greedy_small(rows: list[list[float]], iou_threshold: float, top_k: int) -> list[int]:
    """:func:`_greedy` for a few boxes (corner rows, best first) in plain Python floats: the same float64
    operations in the same order as :func:`_self_iou`, so the same decisions."""
    areas = [max(x2 - x1, 0.0) * max(y2 - y1, 0.0) for x1, y1, x2, y2 in rows]
    alive = list(range(len(rows)))
    keep: list[int] = []
    while alive:
        i = alive[0]
        keep.append(i)
        if len(keep) == top_k:
            break
        x1, y1, x2, y2 = rows[i]
        area = areas[i]
        rest = []
        for j in alive[1:]:
            u1, v1, u2, v2 = rows[j]
            inter = max(min(x2, u2) - max(x1, u1), 0.0) * max(min(y2, v2) - max(y1, v1), 0.0)
            union = area + areas[j] - inter
            if not (inter / union if union > 0 else 0.0) > iou_threshold:
                rest.append(j)
        alive = rest
    return keep


def soft_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    sigma: float = 0.5,
    score_threshold: float = 0.001,
    method: str = "gaussian",
    iou_threshold: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft-NMS (Bodla et al. 2017): decay overlapping scores instead of dropping boxes.

    ``method="gaussian"``: ``s *= exp(-iou^2 / sigma)``; ``"linear"``: ``s *= 1 - iou`` where
    ``iou > iou_threshold``. Returns ``(indices, rescored)`` of boxes still above ``score_threshold``,
    in the order they were selected (best first).
    """
    boxes, scores = _check(boxes, scores)
    if method not in ("gaussian", "linear"):
        raise ValueError(f"soft_nms: method must be 'gaussian' or 'linear', got {method!r}")
    iou = pairwise_iou(boxes, boxes)
    live = scores.copy()
    alive = live > score_threshold
    keep, kept_scores = [], []
    while alive.any():
        i = int(np.flatnonzero(alive)[np.argmax(live[alive])])
        keep.append(i)
        kept_scores.append(live[i])
        alive[i] = False
        ov = iou[i]
        if method == "gaussian":
            decay = np.exp(-(ov * ov) / sigma)
        else:
            decay = np.where(ov > iou_threshold, 1.0 - ov, 1.0)
        live = np.where(alive, live * decay, live)
        alive &= live > score_threshold
    return np.asarray(keep, dtype=np.int64), np.asarray(kept_scores, dtype=np.float64)

"""Non-maximum suppression: class-aware hard NMS (vectorised), soft-NMS, and the multi-class front end.

A box is suppressed when its IoU with a kept, higher-scoring box of the same class is *greater than*
``iou_threshold`` (UltraFace's and torchvision's convention). Ties in score keep the lower index first.
"""

from __future__ import annotations

import numpy as np

from edge.boxes import as_boxes, pairwise_iou

__all__ = ["batched_nms", "multiclass_nms", "nms", "soft_nms"]


def _check(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boxes = as_boxes(boxes, "boxes")
    scores = np.asarray(scores, dtype=np.float64)
    if boxes.ndim != 2 or scores.shape != (len(boxes),):
        raise ValueError(f"nms: boxes {list(boxes.shape)} and scores {list(scores.shape)} must be [N, 4] and [N]")
    if np.isnan(scores).any():
        raise ValueError("nms: scores contain NaN")
    return boxes, scores


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, top_k: int = -1) -> np.ndarray:
    """Greedy hard NMS over corner boxes; returns kept indices, best score first (at most ``top_k``).

    The IoU matrix of the candidates is computed once; the loop runs once per *kept* box, each step a
    vectorised row operation.
    """
    boxes, scores = _check(boxes, scores)
    order = np.argsort(-scores, kind="stable")
    if len(order) == 0:
        return order.astype(np.int64)
    iou = pairwise_iou(boxes[order], boxes[order])
    alive = np.ones(len(order), dtype=bool)
    keep: list[int] = []
    i = 0
    while i < len(order):
        keep.append(i)
        if len(keep) == top_k:
            break
        alive[i:] &= iou[i, i:] <= iou_threshold
        alive[i] = False
        rest = np.flatnonzero(alive[i:])
        if rest.size == 0:
            break
        i += int(rest[0])
    return order[np.asarray(keep, dtype=np.int64)]


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
    boxes = as_boxes(boxes, "boxes")
    scores = np.asarray(scores)
    if scores.ndim != 2 or len(scores) != len(boxes):
        raise ValueError(f"multiclass_nms: scores must be [N, C] with N = {len(boxes)}, got {list(scores.shape)}")
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
    keep = batched_nms(boxes[box_idx], cand_scores, cls, iou_threshold, top_k)
    return boxes[box_idx[keep]], cand_scores[keep].astype(np.float32), cls[keep].astype(np.int64)


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

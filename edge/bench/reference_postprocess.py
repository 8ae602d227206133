"""UltraFace's own numpy post-processing, written plainly: the baseline our decoder is timed and checked against.

Every prior decoded, then per class: threshold, sort, greedy ``hard_nms`` with ``candidate_size`` 200 —
as UltraFace's ``box_utils_numpy`` does it. Used only by ``edgedet bench decode`` and its tests.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "area_of",
    "center_form_to_corner_form",
    "convert_locations_to_boxes",
    "hard_nms",
    "iou_of",
    "ultraface_reference",
]


def convert_locations_to_boxes(
    locations: np.ndarray, priors: np.ndarray, center_variance: float, size_variance: float
) -> np.ndarray:
    """UltraFace's decoding: every prior's regression -> a centre-form box."""
    return np.concatenate(
        [
            locations[..., :2] * center_variance * priors[..., 2:] + priors[..., :2],
            np.exp(locations[..., 2:] * size_variance) * priors[..., 2:],
        ],
        axis=len(locations.shape) - 1,
    )


def center_form_to_corner_form(locations: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [locations[..., :2] - locations[..., 2:] / 2, locations[..., :2] + locations[..., 2:] / 2],
        len(locations.shape) - 1,
    )


def area_of(left_top: np.ndarray, right_bottom: np.ndarray) -> np.ndarray:
    hw = np.clip(right_bottom - left_top, 0.0, None)
    return hw[..., 0] * hw[..., 1]


def iou_of(boxes0: np.ndarray, boxes1: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """UltraFace's ``iou_of``. UltraFace adds ``eps = 1e-5`` to the union, which on its normalised boxes
    lowers every IoU by about 0.1 %; the default 0 is the exact IoU that :mod:`edgedet.edge.core.nms` uses."""
    overlap_left_top = np.maximum(boxes0[..., :2], boxes1[..., :2])
    overlap_right_bottom = np.minimum(boxes0[..., 2:], boxes1[..., 2:])
    overlap_area = area_of(overlap_left_top, overlap_right_bottom)
    area0 = area_of(boxes0[..., :2], boxes0[..., 2:])
    area1 = area_of(boxes1[..., :2], boxes1[..., 2:])
    return overlap_area / (area0 + area1 - overlap_area + eps)


def hard_nms(box_scores: np.ndarray, iou_threshold: float, top_k: int = -1, candidate_size: int = 200) -> np.ndarray:
    """UltraFace's greedy ``hard_nms`` over ``[x1, y1, x2, y2, score]`` rows: the best ``candidate_size``
    by score, then repeatedly keep the best and drop the rest overlapping it by IoU > ``iou_threshold``.
    Equal scores: the lower row first (UltraFace's ``argsort`` leaves that to the sort)."""
    scores = box_scores[:, -1]
    boxes = box_scores[:, :-1]
    picked = []
    indexes = np.argsort(-scores, kind="stable")[::-1]  # ascending; among equal scores the lower row last
    indexes = indexes[-candidate_size:]
    while len(indexes) > 0:
        current = indexes[-1]
        picked.append(current)
        if 0 < top_k == len(picked) or len(indexes) == 1:
            break
        current_box = boxes[current, :]
        indexes = indexes[:-1]
        rest_boxes = boxes[indexes, :]
        iou = iou_of(rest_boxes, np.expand_dims(current_box, axis=0))
        indexes = indexes[iou <= iou_threshold]
    return box_scores[picked, :]


def ultraface_reference(
    scores: np.ndarray,
    boxes: np.ndarray,
    priors: np.ndarray | None,
    prob_threshold: float,
    iou_threshold: float,
    width: int,
    height: int,
    *,
    center_variance: float = 0.1,
    size_variance: float = 0.2,
    candidate_size: int = 200,
    top_k: int = -1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """UltraFace's post-processing (``convert_locations_to_boxes``, ``center_form_to_corner_form``, then
    ``predict``: a loop over classes, each thresholded, sorted and put through :func:`hard_nms`), the plain
    way. ``scores [N, C+1]`` softmax with background column 0; ``boxes [N, 4]`` raw regressions decoded
    against ``priors``, or decoded corner boxes when ``priors`` is None. Returns ``(boxes [K, 4] in
    input pixels, scores [K], class ids [K] 0-based)``, best first, at most ``top_k`` (all if < 1)."""
    if priors is not None:
        boxes = center_form_to_corner_form(convert_locations_to_boxes(boxes, priors, center_variance, size_variance))
    picked_box_probs = []
    picked_labels = []
    for class_index in range(1, scores.shape[1]):
        probs = scores[:, class_index]
        mask = probs > prob_threshold
        probs = probs[mask]
        if probs.shape[0] == 0:
            continue
        subset_boxes = boxes[mask, :]
        box_probs = np.concatenate([subset_boxes, probs.reshape(-1, 1)], axis=1)
        box_probs = hard_nms(box_probs, iou_threshold=iou_threshold, top_k=top_k, candidate_size=candidate_size)
        picked_box_probs.append(box_probs)
        picked_labels.extend([class_index - 1] * box_probs.shape[0])
    if not picked_box_probs:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    picked = np.concatenate(picked_box_probs)
    labels = np.asarray(picked_labels, dtype=np.int64)
    order = np.argsort(-picked[:, 4], kind="stable")  # all classes together, best first
    if top_k > 0:
        order = order[:top_k]
    picked, labels = picked[order], labels[order]
    picked[:, 0] *= width
    picked[:, 1] *= height
    picked[:, 2] *= width
    picked[:, 3] *= height
    return picked[:, :4].astype(np.float32), picked[:, 4].astype(np.float32), labels

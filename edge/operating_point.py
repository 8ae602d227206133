"""The score threshold a device should run at: the one with the best F1 on a labelled set.

AP summarises every threshold; a camera runs at one. :func:`best_f1_threshold` matches detections to
ground truth the way COCO does at one IoU (per image and class, in descending score order, each
detection taking the unmatched ground truth it overlaps most, at IoU >= ``iou_threshold``), then walks
the detections from the highest score down and returns the score at which
``F1 = 2 P R / (P + R)`` peaks. Keeping detections scoring at least that threshold gives that
precision and recall on this set. Training stores it in the checkpoint's spec (``score_threshold:
auto``), so an exported model detects at a sensible threshold out of the box: a briefly trained
CenterNet peaks at 0.2–0.3, far below a fixed 0.4.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.boxes import pairwise_iou
from edge.coco_metrics import ImageDetections, ImageTruth

__all__ = ["OperatingPoint", "best_f1_threshold", "match_detections"]


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float  # keep detections with score >= threshold
    precision: float
    recall: float
    f1: float


def match_detections(truth: ImageTruth, dets: ImageDetections, iou_threshold: float = 0.5) -> np.ndarray:
    """Per detection of one image, whether it is a true positive (COCO's greedy matching at one IoU)."""
    scores = np.asarray(dets.scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(dets.labels).reshape(-1)
    gt_labels = np.asarray(truth.labels).reshape(-1)
    gt_boxes = np.asarray(truth.boxes, dtype=np.float64).reshape(-1, 4)
    hit = np.zeros(len(scores), dtype=bool)
    for cls in np.unique(labels):
        d_idx = np.flatnonzero(labels == cls)
        g_idx = np.flatnonzero(gt_labels == cls)
        if not len(g_idx):
            continue
        d_idx = d_idx[np.argsort(-scores[d_idx], kind="stable")]
        iou = pairwise_iou(np.asarray(dets.boxes, dtype=np.float64).reshape(-1, 4)[d_idx], gt_boxes[g_idx])
        free = np.ones(len(g_idx), dtype=bool)
        for row, d in enumerate(d_idx):
            candidates = np.where(free & (iou[row] >= iou_threshold), iou[row], -1.0)
            best = int(np.argmax(candidates))
            if candidates[best] >= 0:
                free[best] = False
                hit[d] = True
    return hit


def best_f1_threshold(
    truth: Sequence[ImageTruth], dets: Sequence[ImageDetections], iou_threshold: float = 0.5
) -> OperatingPoint | None:
    """The score threshold of best F1 over all images (``None`` without ground truth or detections).

    ``dets`` lists one entry per image of ``truth`` (matched by ``image_id``)."""
    by_id = {d.image_id: d for d in dets}
    n_truth = sum(len(np.asarray(t.labels).reshape(-1)) for t in truth)
    scores, hits = [], []
    for t in truth:
        d = by_id.get(t.image_id)
        if d is None or not len(np.asarray(d.scores).reshape(-1)):
            continue
        scores.append(np.asarray(d.scores, dtype=np.float64).reshape(-1))
        hits.append(match_detections(t, d, iou_threshold))
    if not n_truth or not scores:
        return None
    score, hit = np.concatenate(scores), np.concatenate(hits)
    order = np.argsort(-score, kind="stable")
    score, tp = score[order], np.cumsum(hit[order])
    last_of_score = np.r_[score[1:] != score[:-1], True]  # a threshold keeps every detection of equal score
    kept = np.arange(1, len(score) + 1)[last_of_score]
    tp = tp[last_of_score]
    precision, recall = tp / kept, tp / n_truth
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    best = int(np.argmax(f1))
    return OperatingPoint(
        float(score[last_of_score][best]), float(precision[best]), float(recall[best]), float(f1[best])
    )

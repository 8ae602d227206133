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

from edgedet.edge.core.boxes import pairwise_iou
from edgedet.edge.eval.coco_metrics import ImageDetections, ImageTruth

__all__ = ["OperatingPoint", "best_f1_threshold", "greedy_match", "match_detections"]


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float  # keep detections with score >= threshold
    precision: float
    recall: float
    f1: float


def greedy_match(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """Per detection, whether it found a partner: in descending score order each takes the not yet
    taken same-class ``gt`` box it overlaps most, at IoU >= ``iou_threshold`` (COCO's matching at one IoU)."""
    boxes, gt_boxes = (np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in (boxes, gt_boxes))
    scores, labels, gt_labels = (np.asarray(v).reshape(-1) for v in (scores, labels, gt_labels))
    hit = np.zeros(len(boxes), dtype=bool)
    if not len(boxes) or not len(gt_boxes):
        return hit
    iou = np.where(labels[:, None] == gt_labels[None, :], pairwise_iou(boxes, gt_boxes), -1.0)
    free = np.ones(len(gt_boxes), dtype=bool)
    for d in np.argsort(-scores, kind="stable"):
        options = np.where(free, iou[d], -1.0)
        g = int(np.argmax(options))
        if options[g] >= iou_threshold:
            free[g] = False
            hit[d] = True
    return hit


def match_detections(truth: ImageTruth, dets: ImageDetections, iou_threshold: float = 0.5) -> np.ndarray:
    """Per detection of one image, whether it is a true positive (:func:`greedy_match` on its ground truth)."""
    return greedy_match(dets.boxes, dets.scores, dets.labels, truth.boxes, truth.labels, iou_threshold)


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

"""The best-F1 score threshold (edgedet.edge.eval.operating_point) against brute force over every threshold."""

from dataclasses import replace

import numpy as np
import pytest
from tests_support import brute_iou, random_case

from edgedet.edge.eval.coco_metrics import ImageDetections, ImageTruth
from edgedet.edge.eval.operating_point import best_f1_threshold, match_detections


def brute_true_positives(truth, dets, threshold, iou_threshold=0.5):
    """Keep detections >= threshold, then match from scratch: per image, by descending score, each takes
    the unmatched same-class ground truth of highest IoU >= iou_threshold."""
    tp = kept = 0
    for t, d in zip(truth, dets, strict=True):
        used = set()
        for k in sorted(range(len(d.scores)), key=lambda k: -d.scores[k]):
            if d.scores[k] < threshold:
                continue
            kept += 1
            best, best_iou = None, iou_threshold
            for g in range(len(t.boxes)):
                iou = brute_iou(d.boxes[k], t.boxes[g])
                if g not in used and t.labels[g] == d.labels[k] and iou >= best_iou:
                    best, best_iou = g, iou
            if best is not None:
                used.add(best)
                tp += 1
    return tp, kept


@pytest.mark.parametrize("seed", range(6))
def test_best_f1_matches_brute_force_over_every_threshold(seed):
    truth, dets = random_case(seed, n_images=10, classes=2)
    n_truth = sum(len(t.boxes) for t in truth)
    best_f1, best_t = -1.0, None
    for t in sorted({float(s) for d in dets for s in d.scores}, reverse=True):
        tp, kept = brute_true_positives(truth, dets, t)
        f1 = 2 * tp / (kept + n_truth)  # = 2PR / (P + R)
        if f1 > best_f1 + 1e-12:
            best_f1, best_t = f1, t
    point = best_f1_threshold(truth, dets)
    assert point.f1 == pytest.approx(best_f1)
    assert point.threshold == best_t
    tp, kept = brute_true_positives(truth, dets, point.threshold)
    assert point.precision == pytest.approx(tp / kept) and point.recall == pytest.approx(tp / n_truth)


def test_a_clean_cut_between_true_and_false_scores_is_found():
    gt = np.array([[10, 10, 50, 50], [60, 60, 100, 100]], float)
    truth = [ImageTruth("a", 120, 120, gt, np.array([0, 0]))]
    boxes = np.concatenate([gt + 1, [[0, 80, 20, 100], [80, 0, 100, 20]]])
    dets = [ImageDetections("a", boxes, np.array([0.31, 0.27, 0.12, 0.08]), np.zeros(4, int))]
    point = best_f1_threshold(truth, dets)
    assert point.threshold == 0.27 and point.precision == 1.0 and point.recall == 1.0 and point.f1 == 1.0
    # a lower-scored duplicate of the first box is a false positive: its ground truth is already taken
    dup = [
        replace(
            dets[0], boxes=np.concatenate([boxes, gt[:1]]), scores=np.r_[dets[0].scores, 0.2], labels=np.zeros(5, int)
        )
    ]
    assert match_detections(truth[0], dup[0]).tolist() == [True, True, False, False, False]


def test_tied_scores_are_kept_or_dropped_together():
    gt = np.array([[10, 10, 50, 50]], float)
    truth = [ImageTruth("a", 64, 64, gt, np.array([0]))]
    # a false positive and the true one at the same score: a threshold cannot split them
    dets = [
        ImageDetections("a", np.array([[0, 0, 5, 5], [10, 10, 50, 50]], float), np.array([0.3, 0.3]), np.array([0, 0]))
    ]
    point = best_f1_threshold(truth, dets)
    assert point.threshold == 0.3 and point.precision == 0.5 and point.recall == 1.0


def test_nothing_to_choose_from():
    truth, dets = random_case(0, n_images=3)
    assert best_f1_threshold([replace(t, boxes=np.zeros((0, 4)), labels=np.zeros(0, int)) for t in truth], dets) is None
    empty = [replace(d, boxes=np.zeros((0, 4)), scores=np.zeros(0), labels=np.zeros(0, int)) for d in dets]
    assert best_f1_threshold(truth, empty) is None

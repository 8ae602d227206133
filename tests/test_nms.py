import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests_support import brute_iou, clustered_boxes

from edgedet.edge.core.nms import batched_nms, multiclass_nms, nms, soft_nms


def brute_nms(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if all(brute_iou(boxes[i], boxes[k]) <= thr for k in keep):
            keep.append(i)
    return keep


def brute_multiclass(boxes, scores, score_thr, iou_thr, top_k, max_candidates):
    dets = []
    for c in range(scores.shape[1]):
        idx = [i for i in range(len(boxes)) if scores[i, c] > score_thr]
        idx = sorted(idx, key=lambda i: (-scores[i, c], i))[:max_candidates]
        for k in brute_nms(boxes[idx], scores[idx, c], iou_thr):
            dets.append((float(scores[idx[k], c]), c, idx[k]))
    dets.sort(key=lambda d: -d[0])
    return dets[:top_k]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(0, 60), st.sampled_from([0.3, 0.5, 0.7]))
def test_nms_equals_brute_force(seed, n, thr):
    rng = np.random.default_rng(seed)
    boxes, scores = clustered_boxes(rng, n)
    assert nms(boxes, scores, thr).tolist() == brute_nms(boxes, scores, thr)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 80), st.integers(1, 4), st.integers(1, 30), st.integers(1, 25))
def test_multiclass_nms_equals_per_class_brute_force(seed, n, classes, top_k, max_candidates):
    rng = np.random.default_rng(seed)
    boxes, _ = clustered_boxes(rng, n)
    scores = rng.uniform(0, 1, (n, classes))
    b, s, c = multiclass_nms(boxes, scores, 0.3, 0.45, top_k=top_k, max_candidates=max_candidates)
    expected = brute_multiclass(boxes, scores, 0.3, 0.45, top_k, max_candidates)
    assert len(s) == len(expected)
    assert np.allclose(s, [d[0] for d in expected])
    assert c.tolist() == [d[1] for d in expected]
    assert np.allclose(b, boxes[[d[2] for d in expected]])


def test_class_aware_and_ties():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10]], dtype=float)
    scores = np.array([0.9, 0.9, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [0]  # a tie keeps the lower index
    assert sorted(batched_nms(boxes, scores, np.array([0, 1, 1]), 0.5).tolist()) == [0, 1]
    assert nms(boxes, scores, 0.5, top_k=1).tolist() == [0]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_bad_input():
    with pytest.raises(ValueError, match="must be"):
        nms(np.zeros((3, 4)), np.zeros(2), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        nms(np.zeros((1, 4)), np.array([np.nan]), 0.5)
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        multiclass_nms(np.zeros((3, 4)), np.zeros(3), 0.5, 0.5)


def brute_soft_nms(boxes, scores, sigma, thr, method, iou_thr):
    s = list(map(float, scores))
    alive = [i for i in range(len(s)) if s[i] > thr]
    keep, kept = [], []
    while alive:
        i = max(alive, key=lambda j: (s[j], -j))
        keep.append(i)
        kept.append(s[i])
        alive.remove(i)
        for j in alive:
            ov = brute_iou(boxes[i], boxes[j])
            if method == "gaussian":
                s[j] *= np.exp(-ov * ov / sigma)
            elif ov > iou_thr:
                s[j] *= 1 - ov
        alive = [j for j in alive if s[j] > thr]
    return keep, kept


@pytest.mark.parametrize("method", ["gaussian", "linear"])
@pytest.mark.parametrize("seed", range(6))
def test_soft_nms_equals_brute_force(method, seed):
    rng = np.random.default_rng(seed)
    boxes, scores = clustered_boxes(rng, 30)
    keep, kept = soft_nms(boxes, scores, sigma=0.5, score_threshold=0.05, method=method)
    ek, es = brute_soft_nms(boxes, scores, 0.5, 0.05, method, 0.3)
    assert keep.tolist() == ek and np.allclose(kept, es)
    # soft-NMS only decays: every kept score is at most the original one
    assert np.all(kept <= scores[keep] + 1e-12)

import numpy as np
import pytest

from edgedet.edge.core.boxes import center_to_corner, pairwise_iou
from edgedet.edge.core.matching import match_priors
from edgedet.edge.core.priors import ultraface_priors


def brute_match(priors, gt, labels, threshold):
    """The seed's procedure, one prior and one box at a time."""
    corners = center_to_corner(priors)
    iou = pairwise_iou(corners, gt)
    best_gt = [int(np.argmax(iou[i])) for i in range(len(priors))]
    best_iou = [float(iou[i, best_gt[i]]) for i in range(len(priors))]
    for j in range(len(gt)):
        p = int(np.argmax(iou[:, j]))
        best_gt[p], best_iou[p] = j, 2.0
    out = np.array([labels[best_gt[i]] + 1 if best_iou[i] >= threshold else 0 for i in range(len(priors))])
    return gt[best_gt], out


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    priors = ultraface_priors((160, 120))
    xy = rng.uniform(0, 0.7, (6, 2))
    gt = np.concatenate([xy, xy + rng.uniform(0.05, 0.3, (6, 2))], axis=1)
    labels = rng.integers(0, 3, 6)
    boxes, lab = match_priors(priors, gt, labels, 0.35)
    eb, el = brute_match(priors, gt, labels, 0.35)
    assert np.array_equal(lab, el) and np.allclose(boxes, eb)


def test_every_ground_truth_gets_a_prior_even_below_threshold():
    priors = ultraface_priors((320, 240))
    tiny = np.array([[0.50, 0.50, 0.505, 0.507], [0.1, 0.1, 0.9, 0.95]])  # no prior reaches 0.5 IoU with it
    iou = pairwise_iou(center_to_corner(priors), tiny)
    assert iou[:, 0].max() < 0.5
    boxes, labels = match_priors(priors, tiny, np.array([0, 1]), 0.5)
    assert (labels == 1).sum() == 1 and (labels == 2).sum() >= 1
    assert np.allclose(boxes[labels == 1], tiny[0])


def test_threshold_is_inclusive():
    priors = np.array([[0.25, 0.5, 0.5, 1.0], [0.75, 0.5, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0]])
    gt = np.array([[0.0, 0.0, 0.5, 1.0]])  # IoU 1 with prior 0, exactly 0.5 with prior 2
    _, labels = match_priors(priors, gt, np.array([4]), 0.5)
    assert labels.tolist() == [5, 0, 5]


def test_empty_ground_truth_is_all_background_with_encodable_boxes():
    priors = ultraface_priors((160, 120))
    boxes, labels = match_priors(priors, np.zeros((0, 4)), np.zeros(0, np.int64))
    assert not labels.any() and np.allclose(boxes, center_to_corner(priors))


def test_bad_ground_truth_is_rejected_clearly():
    priors = ultraface_priors((160, 120))
    with pytest.raises(ValueError, match=r"gt_boxes\[1\] has zero area"):
        match_priors(priors, np.array([[0, 0, 0.5, 0.5], [0.2, 0.2, 0.2, 0.4]]), np.array([0, 0]))
    with pytest.raises(ValueError, match="must be"):
        match_priors(priors, np.array([[0, 0, 0.5, 0.5]]), np.array([0, 1]))
    with pytest.raises(ValueError, match="non-finite"):
        match_priors(priors, np.array([[0, 0, np.inf, 0.5]]), np.array([0]))

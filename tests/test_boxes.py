import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests_support import brute_iou

from edgedet.edge.core.boxes import area, as_boxes, center_to_corner, corner_to_center, pairwise_iou


def random_boxes(rng: np.random.Generator, n: int, scale: float = 100.0) -> np.ndarray:
    xy = rng.uniform(0, scale, (n, 2))
    wh = rng.uniform(0.5, scale / 2, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def test_seed_worked_example_iou():
    # The seed: ground truth [0.3, 0.3, 0.7, 0.7] against the centre-form anchor [0.5, 0.5, 0.4, 0.4].
    anchor = center_to_corner(np.array([[0.5, 0.5, 0.4, 0.4]]))
    assert np.allclose(anchor, [[0.3, 0.3, 0.7, 0.7]])
    assert pairwise_iou(np.array([[0.3, 0.3, 0.7, 0.7]]), anchor)[0, 0] == pytest.approx(1.0)
    half = pairwise_iou(np.array([[0, 0, 2, 1]]), np.array([[1, 0, 3, 1]]))[0, 0]
    assert half == pytest.approx(1 / 3)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 12), st.integers(1, 12))
def test_iou_matches_brute_force_symmetric_and_bounded(seed, n, m):
    rng = np.random.default_rng(seed)
    a, b = random_boxes(rng, n), random_boxes(rng, m)
    iou = pairwise_iou(a, b)
    expected = np.array([[brute_iou(x, y) for y in b] for x in a])
    assert np.allclose(iou, expected)
    assert np.allclose(iou, pairwise_iou(b, a).T)
    assert np.all((iou >= 0) & (iou <= 1))
    assert np.allclose(np.diag(pairwise_iou(a, a)), 1.0)


def test_conversions_round_trip_and_area():
    rng = np.random.default_rng(0)
    boxes = random_boxes(rng, 50).reshape(5, 10, 4)  # any leading shape
    assert np.allclose(center_to_corner(corner_to_center(boxes)), boxes)
    c = corner_to_center(boxes)
    assert np.allclose(area(boxes), c[..., 2] * c[..., 3])


def test_degenerate_and_empty_boxes():
    zero = np.array([[1.0, 1.0, 1.0, 1.0]])
    assert pairwise_iou(zero, zero)[0, 0] == 0.0  # documented: an empty union never matches
    assert pairwise_iou(np.zeros((0, 4)), zero).shape == (0, 1)
    assert area(np.array([[2.0, 2.0, 1.0, 1.0]]))[0] == 0.0  # inverted box


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.zeros((3, 5)), r"shape \[\.\.\., 4\]"),
        (np.array([[0, 0, np.nan, 1]]), "non-finite value at index"),
        (np.array([["a", "b", "c", "d"]]), "numeric array"),
    ],
)
def test_bad_boxes_give_clear_errors(value, message):
    with pytest.raises(ValueError, match=message):
        pairwise_iou(value, np.zeros((1, 4)))
    with pytest.raises(ValueError, match="expected at least one box"):
        as_boxes(np.zeros((0, 4)), "gt", allow_empty=False)

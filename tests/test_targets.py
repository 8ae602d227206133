"""Training targets decode back to the ground truth: SSD (matching + encoding) and CenterNet (heatmaps)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgedet.edge.core.box_coder import decode_to_corners
from edgedet.edge.core.gaussian import gaussian_radius
from edgedet.edge.core.heatmap_decode import decode_heatmap
from edgedet.edge.core.priors import PriorConfig
from edgedet.training.centernet_targets import centernet_targets
from edgedet.training.ssd_targets import ssd_targets

W, H = 128, 96
GT_BOXES = np.array([[10, 12, 40, 50], [60, 20, 120, 90], [70, 5, 90, 18]], dtype=np.float64)
GT_LABELS = np.array([0, 2, 1], dtype=np.int64)


@pytest.fixture(scope="module")
def priors() -> np.ndarray:
    return PriorConfig(style="ultraface").generate((W, H))


# --- SSD ---------------------------------------------------------------------------------------------


def test_ssd_targets_shapes_and_dtypes(priors: np.ndarray) -> None:
    loc, conf = ssd_targets(GT_BOXES, GT_LABELS, (W, H), priors)
    assert loc.shape == (len(priors), 4) and loc.dtype == np.float32
    assert conf.shape == (len(priors),) and conf.dtype == np.int64
    assert set(np.unique(conf)) <= {0, 1, 2, 3}


def test_ssd_targets_decode_to_ground_truth(priors: np.ndarray) -> None:
    loc, conf = ssd_targets(GT_BOXES, GT_LABELS, (W, H), priors)
    pos = np.flatnonzero(conf > 0)
    decoded = decode_to_corners(loc[pos].astype(np.float64), priors[pos].astype(np.float64))
    decoded *= np.array([W, H, W, H])
    owners = np.zeros(len(GT_BOXES), dtype=int)
    for box, label in zip(decoded, conf[pos], strict=True):
        hits = np.flatnonzero(np.all(np.abs(GT_BOXES - box) < 1e-3, axis=1))
        assert len(hits) == 1, f"decoded {box} matches no ground truth"
        assert GT_LABELS[hits[0]] + 1 == label
        owners[hits[0]] += 1
    assert np.all(owners >= 1), f"every ground truth owns a positive prior, got {owners}"


def test_ssd_targets_variances_are_used(priors: np.ndarray) -> None:
    loc, conf = ssd_targets(GT_BOXES, GT_LABELS, (W, H), priors, center_variance=0.2, size_variance=0.1)
    pos = conf > 0
    decoded = decode_to_corners(loc[pos].astype(np.float64), priors[pos].astype(np.float64), 0.2, 0.1)
    error = np.abs(decoded[:, None, :] * [W, H, W, H] - GT_BOXES[None]).max(axis=-1).min(axis=1)
    assert error.max() < 1e-3


def test_ssd_targets_iou_threshold(priors: np.ndarray) -> None:
    _, strict = ssd_targets(GT_BOXES, GT_LABELS, (W, H), priors, iou_threshold=0.99)
    _, loose = ssd_targets(GT_BOXES, GT_LABELS, (W, H), priors, iou_threshold=0.2)
    assert (strict > 0).sum() == len(GT_BOXES)  # only the forced best priors remain
    assert (loose > 0).sum() > (strict > 0).sum()


def test_ssd_targets_no_objects(priors: np.ndarray) -> None:
    loc, conf = ssd_targets(np.zeros((0, 4)), np.zeros(0, dtype=np.int64), (W, H), priors)
    assert np.all(conf == 0)
    assert np.all(np.isfinite(loc)) and np.abs(loc).max() < 1e-4


def test_ssd_targets_rejects_empty_box(priors: np.ndarray) -> None:
    with pytest.raises(ValueError, match="zero area"):
        ssd_targets(np.array([[10, 10, 10, 30]]), np.array([0]), (W, H), priors)


# --- CenterNet ---------------------------------------------------------------------------------------


def dense_maps(t: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Scatter the per-object size/offset targets into ``[2, H', W']`` maps, as a perfect model would."""
    _, h, w = t["heatmap"].shape
    size = np.zeros((2, h * w), dtype=np.float32)
    offset = np.zeros((2, h * w), dtype=np.float32)
    keep = t["mask"] > 0
    size[:, t["index"][keep]] = t["size"][keep].T
    offset[:, t["index"][keep]] = t["offset"][keep].T
    return size.reshape(2, h, w), offset.reshape(2, h, w)


def decode_targets(t: dict[str, np.ndarray], stride: int = 4) -> tuple[np.ndarray, np.ndarray]:
    size, offset = dense_maps(t)
    boxes, scores, classes = decode_heatmap(t["heatmap"], size, offset, stride, score_threshold=0.3)
    assert np.all(scores == 1.0)
    return boxes, classes


def sort_rows(boxes: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort(boxes.T[::-1])
    return boxes[order], classes[order]


def test_centernet_targets_shapes_and_dtypes() -> None:
    t = centernet_targets(GT_BOXES, GT_LABELS, (W, H), num_classes=3, max_objects=8)
    assert t["heatmap"].shape == (3, H // 4, W // 4) and t["heatmap"].dtype == np.float32
    assert t["size"].shape == (8, 2) and t["size"].dtype == np.float32
    assert t["offset"].shape == (8, 2) and t["offset"].dtype == np.float32
    assert t["index"].shape == (8,) and t["index"].dtype == np.int64
    assert t["mask"].shape == (8,) and t["mask"].dtype == np.float32
    assert t["mask"].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert np.all(t["heatmap"] >= 0) and np.all(t["heatmap"] <= 1)


def test_centernet_targets_decode_to_ground_truth() -> None:
    t = centernet_targets(GT_BOXES, GT_LABELS, (W, H), num_classes=3)
    boxes, classes = decode_targets(t)
    got_boxes, got_classes = sort_rows(boxes, classes)
    want_boxes, want_classes = sort_rows(GT_BOXES.astype(np.float32), GT_LABELS)
    np.testing.assert_allclose(got_boxes, want_boxes, atol=1e-4)
    np.testing.assert_array_equal(got_classes, want_classes)


def test_centernet_heatmap_peaks_at_centres() -> None:
    t = centernet_targets(GT_BOXES, GT_LABELS, (W, H), num_classes=3)
    heat = t["heatmap"]
    assert int((heat == 1).sum()) == len(GT_BOXES)
    for box, label, idx in zip(GT_BOXES, GT_LABELS, t["index"], strict=False):
        cx, cy = (box[:2] + box[2:]) / 2 / 4
        assert idx == int(cy) * heat.shape[2] + int(cx)
        assert heat[label].reshape(-1)[idx] == 1.0
    np.testing.assert_allclose(t["offset"][:3], (GT_BOXES[:, :2] + GT_BOXES[:, 2:]) / 8 % 1, atol=1e-6)
    np.testing.assert_allclose(t["size"][:3], (GT_BOXES[:, 2:] - GT_BOXES[:, :2]) / 4, atol=1e-6)


def test_centernet_gaussian_radius_and_overlap() -> None:
    # Two same-class objects whose gaussians overlap: the map is the element-wise max of the two
    # single-object maps, and both peaks stay exactly 1.
    boxes = np.array([[0, 0, 64, 64], [24, 16, 88, 80]], dtype=np.float64)
    t = centernet_targets(boxes, np.array([0, 0]), (W, H), num_classes=1, min_overlap=0.3)
    heat = t["heatmap"][0]
    singles = [centernet_targets(b[None], np.array([0]), (W, H), 1, min_overlap=0.3)["heatmap"][0] for b in boxes]
    overlap = (singles[0] > 0) & (singles[1] > 0)
    assert overlap.any()
    np.testing.assert_array_equal(heat, np.maximum(*singles))
    assert int((heat == 1).sum()) == 2
    # The radius is int(gaussian_radius(h / R, w / R, t)): 16x16 cells at t = 0.3 gives int(3.62) = 3, so
    # the map is non-zero 3 cells left of the centre (8, 8) and zero 4 cells left.
    assert heat[8, 5] > 0 and heat[8, 4] == 0
    boxes_out, _ = decode_targets(t)
    np.testing.assert_allclose(sort_rows(boxes_out, np.zeros(2))[0], boxes, atol=1e-4)


def test_centernet_default_overlap_radius() -> None:
    # 16x16 cells at the default t = 0.7: gaussian_radius = 1.31, so radius 1 (a 3x3 patch).
    t = centernet_targets(np.array([[0.0, 0.0, 64.0, 64.0]]), np.array([0]), (W, H), num_classes=1)
    heat = t["heatmap"][0]
    assert heat[8, 7] > 0 and heat[8, 6] == 0 and int((heat > 0).sum()) == 9


def test_centernet_small_box_gets_single_cell() -> None:
    t = centernet_targets(np.array([[40.0, 40.0, 42.0, 43.0]]), np.array([0]), (W, H), num_classes=1)
    assert int((t["heatmap"] > 0).sum()) == 1


def test_centernet_non_divisible_input_and_centre_outside() -> None:
    # 130x98 input -> ceil(130/4) x ceil(98/4) = 33 x 25; a box hanging off the right edge keeps the
    # nearest border cell and an offset past 1, so decoding still gives the box back.
    boxes = np.array([[110.0, 10.0, 170.0, 40.0], [4.0, 60.0, 30.0, 90.0]])
    t = centernet_targets(boxes, np.array([1, 0]), (130, 98), num_classes=2)
    assert t["heatmap"].shape == (2, 25, 33)
    assert t["index"][0] == int(25 / 4) * 33 + 32 and t["offset"][0, 0] > 1
    decoded, classes = decode_targets(t)
    got, got_cls = sort_rows(decoded, classes)
    want, want_cls = sort_rows(boxes.astype(np.float32), np.array([1, 0]))
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_array_equal(got_cls, want_cls)


def test_centernet_no_objects() -> None:
    t = centernet_targets(np.zeros((0, 4)), np.zeros(0, dtype=np.int64), (W, H), num_classes=2, max_objects=4)
    assert not t["heatmap"].any() and not t["mask"].any()


def test_centernet_too_many_objects_raises() -> None:
    boxes = np.tile(np.array([[10.0, 10.0, 30.0, 30.0]]), (5, 1))
    with pytest.raises(ValueError, match="max_objects=4"):
        centernet_targets(boxes, np.zeros(5, dtype=np.int64), (W, H), num_classes=1, max_objects=4)


@pytest.mark.parametrize("box", [[10, 10, 10, 30], [10, 30, 20, 20]])
def test_centernet_empty_box_raises(box: list[float]) -> None:
    with pytest.raises(ValueError, match="empty"):
        centernet_targets(np.array([box], dtype=float), np.array([0]), (W, H), num_classes=1)


@pytest.mark.parametrize("label", [-1, 3])
def test_centernet_bad_label_raises(label: int) -> None:
    with pytest.raises(ValueError, match="labels"):
        centernet_targets(GT_BOXES[:1], np.array([label]), (W, H), num_classes=3)


def brute_force_regression_cells(t: dict[str, np.ndarray], boxes: np.ndarray, r: int, stride: int = 4) -> dict:
    """Cell -> (object, weight) by looping over every cell and object, the rule of ``regression_radius``."""
    _, h, w = t["heatmap"].shape
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2 / stride
    cells = np.floor(centres).astype(int)
    cells[:, 0] = cells[:, 0].clip(0, w - 1)
    cells[:, 1] = cells[:, 1].clip(0, h - 1)
    wh = (boxes[:, 2:] - boxes[:, :2]) / stride
    radii = [max(0, int(gaussian_radius(bh, bw, 0.7))) for bw, bh in wh]
    centre_set = {(int(x), int(y)) for x, y in cells}
    out = {}
    for y in range(h):
        for x in range(w):
            if (x, y) in centre_set:
                continue
            best = None
            for k, (cx, cy) in enumerate(cells):
                if max(abs(x - cx), abs(y - cy)) > r:
                    continue
                sigma = (2 * radii[k] + 1) / 6
                weight = math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
                if weight >= 0.05 and (best is None or weight > best[1]):
                    best = (k, weight)
            if best is not None:
                out[(x, y)] = best
    return out


@pytest.mark.parametrize("r", [1, 2])
def test_centernet_regression_cells_match_brute_force(r: int) -> None:
    # Two big overlapping boxes (neighbourhoods collide), one mid-size, one tiny (radius 0: no neighbours).
    boxes = np.array([[0, 0, 80, 72], [20, 12, 100, 90], [70, 5, 100, 40], [40, 80, 43, 83]], dtype=np.float64)
    labels = np.array([0, 0, 1, 1])
    t = centernet_targets(boxes, labels, (W, H), num_classes=2, regression_radius=r, max_objects=6)
    assert t["mask"].shape == (6 * (2 * r + 1) ** 2,)
    m = len(boxes)
    np.testing.assert_array_equal(t["mask"][:m], 1.0)  # the centres first, in box order, weight 1
    base = centernet_targets(boxes, labels, (W, H), num_classes=2, max_objects=6)
    np.testing.assert_array_equal(t["index"][:m], base["index"][:m])
    np.testing.assert_array_equal(t["heatmap"], base["heatmap"])  # the heatmap does not change
    w = t["heatmap"].shape[2]
    extra = np.flatnonzero(t["mask"][m:] > 0) + m
    got = {}
    for slot in extra:
        y, x = divmod(int(t["index"][slot]), w)
        assert (x, y) not in got, "a cell is trained for two objects"
        # each sample decodes to its own object's box: cell + offset is the centre, size the box's
        centre = (np.array([x, y]) + t["offset"][slot]) * 4
        half = t["size"][slot] * 4 / 2
        decoded = np.concatenate([centre - half, centre + half])
        k = int(np.argmin(np.abs(boxes - decoded).sum(axis=1)))
        np.testing.assert_allclose(decoded, boxes[k], atol=1e-4)
        got[(x, y)] = (k, float(t["mask"][slot]))
    want = brute_force_regression_cells(t, boxes, r)
    assert got.keys() == want.keys() and got
    for cell, (k, weight) in want.items():
        assert got[cell][0] == k and got[cell][1] == pytest.approx(weight, rel=1e-6)
    assert not any(k == 3 for k, _ in got.values())  # the tiny box keeps a single cell
    assert int((t["mask"] > 0).sum()) == m + len(want)


def test_centernet_regression_cells_still_decode_to_ground_truth() -> None:
    t = centernet_targets(GT_BOXES, GT_LABELS, (W, H), num_classes=3, regression_radius=1)
    assert int((t["mask"] > 0).sum()) > len(GT_BOXES)
    got_boxes, got_classes = sort_rows(*decode_targets(t))
    want_boxes, want_classes = sort_rows(GT_BOXES.astype(np.float32), GT_LABELS)
    np.testing.assert_allclose(got_boxes, want_boxes, atol=1e-4)
    np.testing.assert_array_equal(got_classes, want_classes)


def test_centernet_regression_radius_rejects_negative() -> None:
    with pytest.raises(ValueError, match="regression_radius"):
        centernet_targets(GT_BOXES, GT_LABELS, (W, H), num_classes=3, regression_radius=-1)

"""The torch twins in training/ equal the numpy reference in edge/."""

import numpy as np
import torch
from tests_support import clustered_boxes

from edgedet.edge.core import box_coder, boxes, heatmap_decode
from edgedet.edge.core.priors import ultraface_priors
from edgedet.training import box_ops


def test_box_conversions_iou_encode_decode_agree():
    rng = np.random.default_rng(0)
    a, _ = clustered_boxes(rng, 40)
    b, _ = clustered_boxes(rng, 25)
    t = torch.from_numpy
    assert np.allclose(box_ops.pairwise_iou(t(a), t(b)).numpy(), boxes.pairwise_iou(a, b))
    assert np.allclose(box_ops.corner_to_center(t(a)).numpy(), boxes.corner_to_center(a))
    assert np.allclose(box_ops.center_to_corner(t(a)).numpy(), boxes.center_to_corner(a))
    priors = ultraface_priors((320, 240)).astype(np.float64)
    loc = rng.normal(0, 1, (3, len(priors), 4))
    assert np.allclose(box_ops.decode(t(loc), t(priors)).numpy(), box_coder.decode(loc, priors))
    centre = box_coder.decode(loc[0], priors)
    assert np.allclose(box_ops.encode(t(centre), t(priors)).numpy(), box_coder.encode(centre, priors))
    zero = t(np.zeros((1, 4)))
    assert box_ops.pairwise_iou(zero, zero).item() == 0.0


def test_peak_map_agrees():
    heat = np.random.default_rng(2).uniform(size=(2, 3, 12, 16)).astype(np.float32)
    heat[0, 0, 3:5, 3:5] = 0.99  # a plateau: every cell of it is a peak in both
    expected = np.stack([heatmap_decode.peak_map(h) for h in heat])
    assert np.array_equal(box_ops.peak_map(torch.from_numpy(heat)).numpy(), expected)

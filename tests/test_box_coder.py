import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgedet.edge.core.box_coder import decode, decode_to_corners, encode, encode_corners
from edgedet.edge.core.boxes import center_to_corner
from edgedet.edge.core.priors import ultraface_priors


def test_seed_formulas_by_hand():
    prior = np.array([0.5, 0.5, 0.2, 0.4])
    box = np.array([0.52, 0.46, 0.4, 0.2])
    t = encode(box, prior)
    assert t == pytest.approx([(0.02 / 0.2) / 0.1, (-0.04 / 0.4) / 0.1, np.log(2) / 0.2, np.log(0.5) / 0.2])
    # the seed's width example: anchor 50 px, boxes 100 and 25 px give log(2) and log(0.5) before variance
    assert encode(np.array([0, 0, 100, 1.0]), np.array([0, 0, 50, 1.0]))[2] * 0.2 == pytest.approx(np.log(2))
    assert encode(np.array([0, 0, 25, 1.0]), np.array([0, 0, 50, 1.0]))[2] * 0.2 == pytest.approx(np.log(0.5))


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_decode_inverts_encode(seed):
    rng = np.random.default_rng(seed)
    priors = ultraface_priors((320, 240), clamp=False)[rng.integers(0, 4420, 64)].astype(np.float64)
    boxes = np.concatenate([rng.uniform(0, 1, (64, 2)), rng.uniform(0.01, 1, (64, 2))], axis=1)
    assert np.allclose(decode(encode(boxes, priors), priors), boxes, atol=1e-9)
    assert np.allclose(
        decode_to_corners(encode_corners(center_to_corner(boxes), priors), priors), center_to_corner(boxes), atol=1e-9
    )


def test_zero_locations_decode_to_the_priors_and_batches_broadcast():
    priors = ultraface_priors((320, 240))
    assert np.allclose(decode(np.zeros((2, len(priors), 4), np.float32), priors), priors[None])


def test_zero_size_cannot_be_encoded():
    with pytest.raises(ValueError, match="zero-area"):
        encode(np.array([0.5, 0.5, 0.0, 0.1]), np.array([0.5, 0.5, 0.1, 0.1]))

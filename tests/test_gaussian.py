import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgedet.edge.core.gaussian import draw_gaussian, gaussian2d, gaussian_radius, gaussian_radius_roots


def test_seed_worked_example():
    r1, r2, r3 = gaussian_radius_roots(116, 62, 0.3)
    assert float(r1) == pytest.approx(25.373082619188473, abs=1e-9)
    assert float(r2) == pytest.approx(17.636455930015487, abs=1e-9)
    assert float(r3) == pytest.approx(34.08487980097274, abs=1e-9)
    assert max(0, int(gaussian_radius(116, 62, 0.3))) == 17


def overlaps(h, w, r):
    """IoU of the box with its corners displaced by r in the seed's three cases."""
    both_out = w * h / ((w + 2 * r) * (h + 2 * r))
    both_in = (w - 2 * r) * (h - 2 * r) / (w * h)
    one_each = (w - r) * (h - r) / (2 * w * h - (w - r) * (h - r))
    return both_out, both_in, one_each


@settings(max_examples=200, deadline=None)
@given(st.floats(2, 500), st.floats(2, 500), st.floats(0.1, 0.9))
def test_corners_displaced_by_the_radius_keep_iou_at_least_t(h, w, t):
    r = gaussian_radius(h, w, t)
    assert r >= 0
    assert min(overlaps(h, w, r)) >= t - 1e-9
    # and the radius is tight: the worst case sits exactly at t
    assert min(overlaps(h, w, r)) == pytest.approx(t, rel=1e-6)


def test_vectorised_radius_equals_scalar():
    hs, ws = np.array([10.0, 116, 40]), np.array([20.0, 62, 40])
    assert np.allclose(gaussian_radius(hs, ws, 0.7), [gaussian_radius(h, w, 0.7) for h, w in zip(hs, ws, strict=True)])
    with pytest.raises(ValueError, match="min_overlap"):
        gaussian_radius(10, 10, 1.5)
    with pytest.raises(ValueError, match="sizes must be finite"):
        gaussian_radius(np.nan, 10)


def test_gaussian2d_sigma_is_diameter_over_six():
    g = gaussian2d((7, 7), sigma=7 / 6)
    assert g[3, 3] == 1.0 and g.shape == (7, 7)
    assert g[3, 4] == pytest.approx(np.exp(-1 / (2 * (7 / 6) ** 2)))
    assert np.allclose(g, g.T) and np.allclose(g, g[::-1])


def test_draw_gaussian_peak_max_and_border_clipping():
    hm = np.zeros((20, 30), np.float32)
    draw_gaussian(hm, (0, 0), 3)  # corner: clipped, no wrap-around
    assert hm[0, 0] == 1.0 and hm[:, -5:].max() == 0 and hm[-5:, :].max() == 0
    draw_gaussian(hm, (29, 19), 5)
    assert hm[19, 29] == 1.0
    before = hm.copy()
    draw_gaussian(hm, (2, 1), 2, k=0.5)  # element-wise max: weaker peak does not lower anything
    assert np.all(hm >= before) and hm[0, 0] == 1.0
    full = draw_gaussian(np.zeros((21, 21)), (10, 10), 4)
    assert np.allclose(full[6:15, 6:15], gaussian2d((9, 9), 9 / 6)) and full.sum() == pytest.approx(
        gaussian2d((9, 9), 9 / 6).sum()
    )
    with pytest.raises(ValueError, match="outside"):
        draw_gaussian(hm, (30, 0), 2)

import numpy as np
import pytest

from edgedet.edge.core.heatmap_decode import decode_heatmap, maxpool3x3, peak_map


def brute_maxpool(x):
    c, h, w = x.shape
    out = np.empty_like(x)
    for k in range(c):
        for i in range(h):
            for j in range(w):
                out[k, i, j] = x[k, max(0, i - 1) : i + 2, max(0, j - 1) : j + 2].max()
    return out


def test_maxpool_equals_brute_force():
    x = np.random.default_rng(0).uniform(size=(3, 7, 9))
    assert np.array_equal(maxpool3x3(x), brute_maxpool(x))


def test_decode_known_objects():
    heat = np.zeros((2, 30, 40), np.float32)
    size = np.zeros((2, 30, 40), np.float32)
    offset = np.zeros((2, 30, 40), np.float32)
    objects = [(1, 5, 7, 0.25, 0.5, 6.0, 4.0, 0.9), (0, 20, 12, 0.75, 0.1, 10.0, 8.0, 0.6)]
    for cls, x, y, dx, dy, w, h, s in objects:
        heat[cls, y - 1 : y + 2, x - 1 : x + 2] = s * 0.5  # a bump whose centre is the peak
        heat[cls, y, x] = s
        size[:, y, x] = (w, h)
        offset[:, y, x] = (dx, dy)
    heat[0, 0, 39] = 0.2  # a peak under the score threshold
    boxes, scores, classes = decode_heatmap(heat, size, offset, stride=4)
    assert classes.tolist() == [1, 0] and np.allclose(scores, [0.9, 0.6])
    expected = [
        [(x + dx - w / 2) * 4, (y + dy - h / 2) * 4, (x + dx + w / 2) * 4, (y + dy + h / 2) * 4]
        for _, x, y, dx, dy, w, h, _ in objects
    ]
    assert np.allclose(boxes, expected)
    b, _, _ = decode_heatmap(heat, size, offset, stride=4, top_k=1)
    assert len(b) == 1
    b, _, _ = decode_heatmap(heat, size, offset, stride=4, score_threshold=0.1)
    assert len(b) == 3


def test_peak_map_keeps_only_local_maxima_and_bad_shapes_fail():
    heat = np.random.default_rng(1).uniform(size=(1, 10, 10)).astype(np.float32)
    p = peak_map(heat)
    ys, xs = np.nonzero(p[0])
    for y, x in zip(ys, xs, strict=True):
        assert heat[0, y, x] == heat[0, max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].max()
    assert (p > 0).sum() == (brute_maxpool(heat) == heat).sum()
    with pytest.raises(ValueError, match="expected heat"):
        decode_heatmap(heat, np.zeros((2, 5, 5)), np.zeros((2, 10, 10)), 4)

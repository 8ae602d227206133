import numpy as np
import pytest

from edgedet.edge.core.priors import PriorConfig, feature_map_sizes, ssd_priors, ssd_scales, ultraface_priors

SEED_FMS = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
SEED_RATIOS = [
    [1, 2, 0.5],
    [1, 2, 3, 0.5, 1 / 3],
    [1, 2, 3, 0.5, 1 / 3],
    [1, 2, 3, 0.5, 1 / 3],
    [1, 2, 0.5],
    [1, 2, 0.5],
]
SEED_SCALES = [0.1, 0.2, 0.375, 0.55, 0.725, 0.9]


def test_seed_scales_example():
    assert ssd_scales(0.1, 0.9, 6) == pytest.approx([0.1, 0.26, 0.42, 0.58, 0.74, 0.9])
    with pytest.raises(ValueError, match="s_min <= s_max"):
        ssd_scales(0.9, 0.1, 6)


def test_seed_ssd300_example_gives_8732_priors():
    priors = ssd_priors(SEED_FMS, SEED_RATIOS, SEED_SCALES)
    assert priors.shape == (8732, 4)
    # first cell of the first level: ratio 1, the extra sqrt(s1 * s2) square, ratio 2, ratio 0.5
    c = 0.5 / 38
    expected = [
        [c, c, 0.1, 0.1],
        [c, c, np.sqrt(0.1 * 0.2), np.sqrt(0.1 * 0.2)],
        [c, c, 0.1 * np.sqrt(2), 0.1 / np.sqrt(2)],
        [c, c, 0.1 / np.sqrt(2), 0.1 * np.sqrt(2)],
    ]
    assert np.allclose(priors[:4], expected, atol=1e-6)
    # the last level's extra square extrapolates s_7 = 2 * 0.9 - 0.725 (the seed would repeat 0.9)
    last = priors[-4:]
    assert np.allclose(last[1, 2:], np.sqrt(0.9 * 1.075), atol=1e-6)


def brute_ultraface(image_size, min_boxes, strides):
    """UltraFace's generate_priors, as loops."""
    w, h = image_size
    out = []
    for boxes, s in zip(min_boxes, strides, strict=True):
        fw, fh = int(np.ceil(w / s)), int(np.ceil(h / s))
        for i in range(fh):
            for j in range(fw):
                for b in boxes:
                    out.append([(j + 0.5) / fw, (i + 0.5) / fh, b / w, b / h])
    return np.clip(np.array(out), 0, 1)


@pytest.mark.parametrize(("size", "count"), [((320, 240), 4420), ((640, 480), 17640)])
def test_ultraface_prior_counts_and_values(size, count):
    cfg = PriorConfig()
    priors = ultraface_priors(size)
    assert priors.shape == (count, 4)
    assert priors.dtype == np.float32
    assert np.allclose(priors, brute_ultraface(size, cfg.min_boxes, cfg.strides), atol=1e-7)
    assert np.allclose(cfg.generate(size), priors)


def test_ultraface_feature_maps_and_order():
    assert feature_map_sizes((320, 240), (8, 16, 32, 64)) == [(40, 30), (20, 15), (10, 8), (5, 4)]
    p = ultraface_priors((320, 240))
    # order level -> row -> column -> anchor: priors 0..2 share a centre, prior 3 is the next column
    assert np.allclose(p[0, :2], p[2, :2]) and p[3, 0] > p[0, 0] and p[3, 1] == p[0, 1]
    assert p[40 * 3, 1] > p[0, 1]  # after one row of 40 cells x 3 anchors, the next row


def test_clamp_is_optional():
    raw = ultraface_priors((320, 240), clamp=False)
    assert raw.max() > 1.0  # the 256-px anchors on the last level exceed the image
    assert ultraface_priors((320, 240)).max() <= 1.0


def test_prior_config_round_trip_and_anchor_counts():
    cfg = PriorConfig(style="ssd", aspect_ratios=((1, 2, 0.5), (1, 2, 3, 0.5, 1 / 3), (1, 2), (2,)))
    assert cfg.anchors_per_location() == [4, 6, 3, 1]
    assert PriorConfig.from_dict(cfg.to_dict()) == cfg
    n = sum(fw * fh * a for (fw, fh), a in zip(feature_map_sizes((320, 240), cfg.strides), [4, 6, 3, 1], strict=True))
    assert cfg.generate((320, 240)).shape == (n, 4)
    assert PriorConfig().anchors_per_location() == [3, 2, 2, 3]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"style": "yolo"}, "priors.style"),
        ({"strides": (8, 0)}, "priors.strides"),
        ({"min_boxes": ((10,),)}, "priors.min_boxes: expected 4 levels"),
        ({"style": "ssd", "aspect_ratios": ((1,),)}, "priors.aspect_ratios"),
        ({"style": "ssd", "s_min": 0.9, "s_max": 0.1}, "s_min <= s_max"),
        ({"size_variance": 0}, "priors.size_variance"),
    ],
)
def test_bad_prior_config_names_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PriorConfig(**kwargs)


def test_from_dict_rejects_unknown_keys_and_bad_sizes():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['min_box'\]"):
        PriorConfig.from_dict({"min_box": [[1]]})
    with pytest.raises(ValueError, match="image_size"):
        ultraface_priors((320, 0))

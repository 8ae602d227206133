"""Augmentation: boxes stay valid and inside the image, and follow the pixels through every geometric step."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.runtime.preprocess import Preprocessor
from edgedet.training.augment import (
    Compose,
    eval_transform,
    horizontal_flip,
    letterbox,
    photometric_distort,
    random_crop,
    random_zoom_out,
    resize,
    train_transform,
)

BLACK = (0, 0, 0)
GEOMETRIC = {
    "flip": partial(horizontal_flip, p=1.0),
    "crop": random_crop,
    "crop_strict": partial(random_crop, min_ious=(0.5, 0.7, 0.9)),
    "zoom_out": partial(random_zoom_out, max_ratio=3.0, fill=BLACK, p=1.0),
    "stretch": partial(resize, size=(80, 60), fill=BLACK),
    "stretch_up": partial(resize, size=(200, 150), fill=BLACK),
    "letterbox": partial(resize, size=(80, 60), letterbox=True, fill=BLACK),
    "letterbox_up": partial(resize, size=(160, 160), letterbox=True, fill=BLACK),
}


@st.composite
def scenes(draw, max_boxes: int = 4):
    """An image size and integer boxes (at least 4 px a side) inside it."""
    w, h = draw(st.integers(24, 120)), draw(st.integers(24, 120))
    boxes = []
    for _ in range(draw(st.integers(0, max_boxes))):
        x1, y1 = draw(st.integers(0, w - 4)), draw(st.integers(0, h - 4))
        boxes.append((x1, y1, draw(st.integers(x1 + 4, w)), draw(st.integers(y1 + 4, h))))
    return w, h, np.array(boxes, np.float32).reshape(-1, 4)


def assert_valid(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> None:
    h, w = image.shape[:2]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4) and labels.dtype == np.int64
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= w) and np.all(boxes[:, 3] <= h)
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])


def painted(w: int, h: int, box: np.ndarray) -> np.ndarray:
    image = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box.astype(int)
    image[y1:y2, x1:x2] = 255
    return image


def pixel_box(image: np.ndarray) -> np.ndarray | None:
    ys, xs = np.nonzero(image.min(axis=2) > 127)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


@pytest.mark.parametrize("name", sorted(GEOMETRIC))
@settings(max_examples=25, deadline=None)
@given(scene=scenes(), seed=st.integers(0, 2**31))
def test_boxes_follow_the_pixels(name: str, scene, seed: int):
    """Paint each box white on black by itself, run the same step (same rng) on every painting: the
    white region's bounding box is where the step put that box. The step's geometry depends only on
    the boxes, image size and rng, not on the pixels."""
    step = GEOMETRIC[name]
    w, h, boxes = scene
    labels = np.arange(len(boxes))
    image, out_boxes, out_labels = step(np.zeros((h, w, 3), np.uint8), boxes, labels, np.random.default_rng(seed))[:3]
    assert_valid(image, out_boxes, out_labels)
    assert set(out_labels) <= set(labels)
    for i, box in enumerate(boxes):
        out_image = step(painted(w, h, box), boxes, labels, np.random.default_rng(seed))[0]
        assert out_image.shape == image.shape
        if i not in out_labels:
            continue
        moved = out_boxes[list(out_labels).index(i)]
        if np.min(moved[2:] - moved[:2]) < 3:  # squeezed too small to measure its pixels
            continue
        found = pixel_box(out_image)
        assert found is not None, (name, box, moved)
        np.testing.assert_allclose(found, moved, atol=1.5, err_msg=f"{name}: box {box} -> {moved}, pixels {found}")


@settings(max_examples=40, deadline=None)
@given(scene=scenes(max_boxes=6), seed=st.integers(0, 2**31), letterboxed=st.booleans())
def test_train_transform_outputs_valid_boxes_at_the_input_size(scene, seed: int, letterboxed: bool):
    w, h, boxes = scene
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    transform = train_transform((64, 48), zoom_out=4.0, letterbox=letterboxed, noise=3.0)
    out = transform(image, boxes, np.arange(len(boxes)), np.random.default_rng(seed))
    assert out[0].shape == (48, 64, 3)
    assert_valid(*out)
    again = transform(image, boxes, np.arange(len(boxes)), np.random.default_rng(seed))
    np.testing.assert_array_equal(out[0], again[0])
    np.testing.assert_array_equal(out[1], again[1])


@settings(max_examples=25, deadline=None)
@given(scene=scenes(), seed=st.integers(0, 2**31))
def test_photometric_changes_colours_not_boxes(scene, seed: int):
    w, h, boxes = scene
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out, out_boxes, out_labels = photometric_distort(image, boxes, np.zeros(len(boxes)), np.random.default_rng(seed))
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out_boxes, boxes)
    assert out_labels.dtype == np.int64


def test_photometric_with_every_part_on_changes_the_image():
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    out = photometric_distort(image, np.zeros((0, 4)), np.zeros(0), np.random.default_rng(1), p=1.0)[0]
    assert np.abs(out.astype(int) - image).mean() > 5
    same = photometric_distort(image, np.zeros((0, 4)), np.zeros(0), np.random.default_rng(1), p=0.0)[0]
    np.testing.assert_array_equal(same, image)


def test_letterbox_matches_the_runtime_preprocessor():
    spec = replace(ModelSpec.ultraface(), resize="letterbox")
    for h, w in [(200, 100), (50, 200), (240, 320), (101, 333)]:
        image = np.full((h, w, 3), 200, np.uint8)
        boxes = np.array([[0, 0, w, h], [w / 4, h / 4, w / 2, h / 2]], np.float32)
        out, out_boxes, _, transform = letterbox(image, boxes, np.arange(2), (320, 240), fill=(127, 127, 127))
        assert out.shape == (240, 320, 3)
        assert transform == Preprocessor(spec).transform_for(w, h)
        np.testing.assert_allclose(transform.to_frame(out_boxes), boxes, atol=1e-3)
        x0, y0 = int(transform.pad_x), int(transform.pad_y)
        assert np.all(out[y0 + 1, x0 + 1] == 200) and (x0 == 0 or np.all(out[:, 0] == 127))


def test_zoom_out_keeps_the_whole_image_on_the_canvas():
    image = np.full((10, 20, 3), 255, np.uint8)
    for seed in range(20):
        out, boxes, _ = random_zoom_out(image, [[0, 0, 20, 10]], [0], np.random.default_rng(seed), max_ratio=4, p=1.0)
        assert 20 <= out.shape[1] <= 80 and 10 <= out.shape[0] <= 40
        x1, y1, x2, y2 = boxes[0].astype(int)
        assert (x2 - x1, y2 - y1) == (20, 10) and np.all(out[y1:y2, x1:x2] == 255)
        assert (out == 255).all(axis=2).sum() == 200
    out = random_zoom_out(image, np.zeros((0, 4)), [], np.random.default_rng(0), max_ratio=1.0, p=1.0)[0]
    assert out is image


def test_crop_keeps_only_boxes_whose_centre_is_inside():
    image = np.zeros((100, 100, 3), np.uint8)
    boxes = np.array([[0, 0, 10, 10], [40, 40, 60, 60], [90, 90, 100, 100]], np.float32)
    for seed in range(30):
        out, out_boxes, out_labels = random_crop(image, boxes, np.arange(3), np.random.default_rng(seed))
        assert_valid(out, out_boxes, out_labels)
        if out.shape != image.shape:
            assert len(out_boxes) >= 1


@pytest.mark.parametrize("mode", [0.3, 0.7])
def test_crop_overlaps_the_box_at_least_as_much_as_its_mode(mode):
    image = np.zeros((90, 120, 3), np.uint8)
    box = np.array([[30, 20, 90, 70]], np.float32)
    box_area, cropped = 60 * 50, 0
    for seed in range(200):
        out, out_boxes, _ = random_crop(image, box, np.arange(1), np.random.default_rng(seed), min_ious=(mode,))
        if out.shape == image.shape:
            continue
        cropped += 1
        (x1, y1, x2, y2) = out_boxes[0]  # the box clipped to the crop: their intersection
        inter, crop_area = (x2 - x1) * (y2 - y1), out.shape[0] * out.shape[1]
        assert inter / (crop_area + box_area - inter) >= mode - 1e-6
    assert cropped >= 190  # 50 trials per mode, 10 modes: a crop is nearly always found


def test_compose_and_eval_transform():
    image = np.zeros((40, 80, 3), np.uint8)
    out = eval_transform((20, 20))(image, [[0, 0, 40, 40]], [1], np.random.default_rng(0))
    np.testing.assert_allclose(out[1], [[0, 0, 10, 20]])
    out = eval_transform((20, 20), letterbox=True)(image, [[0, 0, 40, 40]], [1], np.random.default_rng(0))
    np.testing.assert_allclose(out[1], [[0, 5, 10, 15]])
    assert "random_crop" in repr(train_transform((20, 20)))
    assert "random_zoom_out" not in repr(train_transform((20, 20), zoom_out=1.0))
    with pytest.raises(ValueError, match="2 boxes but 1 labels"):
        Compose([])(image, np.zeros((2, 4)), [0], np.random.default_rng(0))

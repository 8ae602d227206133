from dataclasses import replace

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.runtime.preprocess import Preprocessor, Transform, check_frame

SPEC = ModelSpec.ultraface()  # 320x240, stretch, rgb, nchw, (x - 127) / 128


def test_stretch_tensor_matches_manual_pipeline():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    tensor, tf = Preprocessor(SPEC)(frame)
    assert tensor.shape == (1, 3, 240, 320) and tensor.dtype == np.float32 and tensor.flags.c_contiguous
    rgb = cv2.cvtColor(cv2.resize(frame, (320, 240), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
    expected = ((rgb.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(tensor, expected, atol=1e-6)
    assert (tf.scale_x, tf.scale_y, tf.pad_x, tf.pad_y) == (0.5, 0.5, 0.0, 0.0)


def test_normalisation_per_channel_values_and_colour_order():
    frame = np.empty((240, 320, 3), np.uint8)
    frame[:] = (10, 20, 30)  # B, G, R
    spec = replace(SPEC, mean=(1.0, 2.0, 3.0), std=(2.0, 4.0, 8.0))
    rgb, _ = Preprocessor(spec)(frame)
    assert np.allclose(rgb[0, :, 0, 0], [(30 - 1) / 2, (20 - 2) / 4, (10 - 3) / 8])
    bgr, _ = Preprocessor(replace(spec, color="bgr"))(frame)
    assert np.allclose(bgr[0, :, 0, 0], [(10 - 1) / 2, (20 - 2) / 4, (30 - 3) / 8])


def test_nhwc_is_the_transpose_of_nchw():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (100, 150, 3), dtype=np.uint8)
    for resize in ("stretch", "letterbox"):
        nchw, t1 = Preprocessor(replace(SPEC, resize=resize))(frame)
        nhwc, t2 = Preprocessor(replace(SPEC, resize=resize, layout="nhwc"))(frame)
        assert nhwc.shape == (1, 240, 320, 3) and t1 == t2
        np.testing.assert_array_equal(nhwc, nchw.transpose(0, 2, 3, 1))


def test_letterbox_centres_and_pads_with_the_mean_colour():
    frame = np.full((200, 100, 3), 200, np.uint8)  # tall: 100 wide, 200 high
    tensor, tf = Preprocessor(replace(SPEC, resize="letterbox"))(frame)
    # scale min(320/100, 240/200) = 1.2 -> 120x240 image, centred: 100 px of padding left and right
    assert (tf.scale_x, tf.scale_y, tf.pad_x, tf.pad_y) == (1.2, 1.2, 100.0, 0.0)
    assert np.all(tensor[..., :100] == 0) and np.all(tensor[..., 220:] == 0)  # mean colour -> 0
    assert np.allclose(tensor[..., 100:220], (200 - 127) / 128)
    np.testing.assert_allclose(tf.to_input(np.array([0, 0, 100, 200])), [100, 0, 220, 240])


def test_letterbox_pad_colour_is_mean_even_with_bgr_and_uneven_mean():
    frame = np.zeros((50, 200, 3), np.uint8)  # wide: padding top and bottom
    spec = replace(SPEC, resize="letterbox", color="bgr", mean=(50.0, 100.0, 150.0), std=(1.0, 1.0, 1.0))
    tensor, tf = Preprocessor(spec)(frame)
    assert tf.pad_x == 0 and tf.pad_y == 80  # 200x50 * 1.6 = 320x80, (240 - 80) / 2
    assert np.all(tensor[:, :, :80] == 0) and np.all(tensor[:, :, 160:] == 0)
    assert np.allclose(tensor[0, :, 80:160].reshape(3, -1).mean(1), [-50, -100, -150])


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["stretch", "letterbox"]),
    st.integers(16, 2000),
    st.integers(16, 2000),
    st.lists(st.floats(0, 1), min_size=4, max_size=4),
)
def test_transform_round_trip(resize, fw, fh, u):
    pre = Preprocessor(replace(SPEC, resize=resize))
    tf = pre.transform_for(fw, fh)
    x1, x2 = sorted((u[0] * fw, u[1] * fw))
    y1, y2 = sorted((u[2] * fh, u[3] * fh))
    box = np.array([[x1, y1, x2, y2]], np.float32)
    inp = tf.to_input(box)
    assert np.all(inp >= -1e-3) and np.all(inp[:, [0, 2]] <= 320 + 1e-2) and np.all(inp[:, [1, 3]] <= 240 + 1e-2)
    np.testing.assert_allclose(tf.to_frame(inp), box, rtol=1e-5, atol=1e-2)


def test_to_frame_clips_to_the_frame():
    tf = Transform(0.5, 0.5, 0.0, 0.0, 640, 480)
    out = tf.to_frame(np.array([[-10, -5, 400, 300], [10, 10, 20, 20]], np.float32))
    np.testing.assert_allclose(out, [[0, 0, 640, 480], [20, 20, 40, 40]])
    assert tf.to_frame(np.zeros((0, 4))).shape == (0, 4)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (None, "is None"),
        ([[1, 2, 3]], "numpy array"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((10, 10), np.uint8), "grayscale"),
        (np.zeros((10, 10, 4), np.uint8), r"\[H, W, 3\]"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
    ],
)
def test_bad_frames_raise_clear_errors(frame, message):
    with pytest.raises(ValueError, match=message):
        check_frame(frame)
    with pytest.raises(ValueError, match=message):
        Preprocessor(SPEC)(frame)

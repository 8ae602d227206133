"""Decoders on synthetic outputs with known objects, and output discovery with renamed/reordered outputs."""

from dataclasses import replace

import numpy as np
import pytest

from edgedet.edge.core.box_coder import encode_corners
from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.core.priors import PriorConfig
from edgedet.edge.runtime.decoders import CenterNetDecoder, SSDDecoder, make_decoder

# ------------------------------------------------------------------------------------------------ SSD


def ssd_spec(labels=("face",), **kw) -> ModelSpec:
    return ModelSpec(head="ssd", labels=labels, priors=PriorConfig(), score_threshold=0.5, iou_threshold=0.3, **kw)


def ssd_outputs(spec: ModelSpec, objects):
    """Raw outputs for ``objects`` = [(prior index, class id, score, normalised corner box)]."""
    priors = spec.priors.generate(spec.input_size)
    n, c = len(priors), spec.num_classes + 1
    scores = np.zeros((n, c), np.float32)
    scores[:, 0] = 1.0
    loc = np.zeros((n, 4), np.float32)
    for idx, cls, score, box in objects:
        scores[idx] = 0
        scores[idx, 0] = 1 - score
        scores[idx, cls + 1] = score
        loc[idx] = encode_corners(np.asarray(box, np.float64), priors[idx].astype(np.float64))
    return scores[None], loc[None], priors


OBJECTS = [(100, 0, 0.9, (0.1, 0.1, 0.3, 0.4)), (3000, 0, 0.8, (0.5, 0.5, 0.9, 0.8))]


def expected_pixels(objects, spec):
    scale = np.array([spec.input_width, spec.input_height] * 2)
    return np.array([b for *_, b in objects]) * scale, np.array([s for _, _, s, _ in objects])


def test_ssd_by_name_raw_locations():
    spec = ssd_spec()
    scores, loc, priors = ssd_outputs(spec, OBJECTS)
    dec = SSDDecoder(spec, priors)
    boxes, sc, cls = dec({"scores": scores, "locations": loc})
    exp_boxes, exp_scores = expected_pixels(OBJECTS, spec)
    np.testing.assert_allclose(boxes, exp_boxes, atol=1e-3)
    np.testing.assert_allclose(sc, exp_scores, atol=1e-6)
    assert cls.tolist() == [0, 0] and dec.resolve({}) == ("scores", "locations", "locations")


@pytest.mark.parametrize("names", [("Identity", "Identity_1"), ("Identity_1", "Identity"), ("PartitionedCall:0", "x")])
@pytest.mark.parametrize("decoded", [False, True])
def test_ssd_discovery_by_shape_with_renamed_reordered_outputs(names, decoded):
    spec = ssd_spec()
    scores, loc, priors = ssd_outputs(spec, OBJECTS)
    from edgedet.edge.core.box_coder import decode_to_corners

    regress = decode_to_corners(loc, priors).astype(np.float32) if decoded else loc
    box_name, score_name = names
    outputs = (
        {box_name: regress, score_name: scores} if box_name < score_name else {score_name: scores, box_name: regress}
    )
    outputs["features"] = np.zeros((1, 16, 30, 40), np.float32)  # an extra output is ignored
    dec = SSDDecoder(spec, priors)
    boxes, sc, _ = dec(outputs)
    assert dec.resolve(outputs) == (score_name, box_name, "boxes" if decoded else "locations")
    np.testing.assert_allclose(boxes, expected_pixels(OBJECTS, spec)[0], atol=1e-3)
    np.testing.assert_allclose(sc, [0.9, 0.8], atol=1e-6)


def test_ssd_raw_regressions_named_boxes_are_recognised():
    # version-slim-320_without_postprocessing.onnx names its raw regressions "boxes"
    spec = ssd_spec()
    scores, loc, priors = ssd_outputs(spec, OBJECTS)
    loc[0, 0] = (0.0, 0.0, -1.0, -1.0)  # a raw regression whose "x2 < x1": everywhere in a real model
    dec = SSDDecoder(spec, priors)
    boxes, _, _ = dec({"scores": scores, "boxes": loc})
    assert dec.resolve({}) == ("scores", "boxes", "locations")
    np.testing.assert_allclose(boxes, expected_pixels(OBJECTS, spec)[0], atol=1e-3)


def test_ssd_explicit_mapping_wins():
    spec = replace(ssd_spec(), extra={"outputs": {"scores": "out_b", "locations": "out_a"}})
    scores, loc, priors = ssd_outputs(spec, OBJECTS)
    dec = SSDDecoder(spec, priors)
    boxes, _, _ = dec({"out_a": loc, "out_b": scores})
    np.testing.assert_allclose(boxes, expected_pixels(OBJECTS, spec)[0], atol=1e-3)
    bad = replace(spec, extra={"outputs": {"scores": "nope"}})
    with pytest.raises(ValueError, match="'nope' is not an output"):
        SSDDecoder(bad, priors)({"out_a": loc, "out_b": scores})


def test_ssd_three_classes_tells_scores_from_boxes_by_softmax_rows():
    spec = ssd_spec(labels=("a", "b", "c"))  # C + 1 == 4: both outputs are [N, 4]
    objects = [(100, 2, 0.9, (0.1, 0.1, 0.3, 0.4)), (3000, 1, 0.8, (0.5, 0.5, 0.9, 0.8))]
    scores, loc, priors = ssd_outputs(spec, objects)
    for outputs in ({"Identity": loc, "Identity_1": scores}, {"Identity": scores, "Identity_1": loc}):
        dec = SSDDecoder(spec, priors)
        boxes, _, cls = dec(outputs)
        assert cls.tolist() == [2, 1]
        np.testing.assert_allclose(boxes, expected_pixels(objects, spec)[0], atol=1e-3)


def test_ssd_multiclass_and_thresholds():
    spec = ssd_spec(labels=("a", "b"))
    same_place = (0.2, 0.2, 0.5, 0.5)
    objects = [(500, 0, 0.95, same_place), (501, 1, 0.9, same_place), (502, 0, 0.6, same_place)]
    scores, loc, priors = ssd_outputs(spec, objects)
    _, sc, cls = SSDDecoder(spec, priors)({"scores": scores, "locations": loc})
    # different classes never suppress each other; the same class at IoU 1 does
    assert cls.tolist() == [0, 1] and np.allclose(sc, [0.95, 0.9], atol=1e-6)
    _, sc, _ = SSDDecoder(replace(spec, score_threshold=0.92), priors)({"scores": scores, "locations": loc})
    assert np.allclose(sc, [0.95], atol=1e-6)


def test_ssd_errors_are_clear():
    spec = ssd_spec()
    scores, loc, priors = ssd_outputs(spec, OBJECTS)
    with pytest.raises(ValueError, match="scores"):
        SSDDecoder(spec, priors)({"a": loc, "b": loc})
    with pytest.raises(ValueError, match="priors"):
        SSDDecoder(spec, priors)({"scores": scores[:, :10], "locations": loc[:, :10]})
    with pytest.raises(ValueError, match="batch size 1"):
        SSDDecoder(spec, priors)({"scores": np.repeat(scores, 2, 0), "locations": np.repeat(loc, 2, 0)})
    with pytest.raises(ValueError, match="SSD spec"):
        SSDDecoder(ModelSpec(head="centernet", labels=("a",)), priors)


def test_ssd_no_detections():
    spec = ssd_spec()
    scores, loc, priors = ssd_outputs(spec, [])
    boxes, sc, cls = SSDDecoder(spec, priors)({"scores": scores, "locations": loc})
    assert boxes.shape == (0, 4) and sc.shape == (0,) and cls.shape == (0,)


# ------------------------------------------------------------------------------------------- CenterNet

CN_SPEC = ModelSpec(head="centernet", labels=("a", "b", "c"), stride=4, score_threshold=0.3)
# (class, cell x, cell y, offset dx, dy, size w, h in cells, score)
CN_OBJECTS = [
    (1, 20, 10, 0.25, 0.5, 8.0, 6.0, 0.9),
    (2, 60, 40, 0.75, 0.25, 12.0, 20.0, 0.7),
    (0, 5, 50, 0.0, 0.0, 3, 3, 0.5),
]


def centernet_outputs(objects=CN_OBJECTS, spec=CN_SPEC):
    h, w = spec.input_height // spec.stride, spec.input_width // spec.stride
    rng = np.random.default_rng(0)
    heat = np.zeros((spec.num_classes, h, w), np.float32)
    size = rng.uniform(2, 10, (2, h, w)).astype(np.float32)
    offset = rng.uniform(0, 1, (2, h, w)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for cls, x, y, dx, dy, bw, bh, score in objects:
        heat[cls] = np.maximum(heat[cls], score * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 4.0))
        size[:, y, x] = (bw, bh)
        offset[:, y, x] = (dx, dy)
    return heat[None], size[None], offset[None]


def centernet_expected(objects=CN_OBJECTS, stride=4):
    boxes = [
        [(x + dx - bw / 2) * stride, (y + dy - bh / 2) * stride, (x + dx + bw / 2) * stride, (y + dy + bh / 2) * stride]
        for _, x, y, dx, dy, bw, bh, _ in objects
    ]
    return np.array(boxes), np.array([o[-1] for o in objects]), np.array([o[0] for o in objects])


def check_centernet(result, objects=CN_OBJECTS):
    boxes, scores, cls = result
    exp_boxes, exp_scores, exp_cls = centernet_expected(objects)
    np.testing.assert_allclose(boxes, exp_boxes, atol=1e-4)
    np.testing.assert_allclose(scores, exp_scores, atol=1e-6)
    assert cls.tolist() == exp_cls.tolist()


def test_centernet_by_name():
    heat, size, offset = centernet_outputs()
    check_centernet(make_decoder(CN_SPEC)({"heatmap": heat, "size": size, "offset": offset}))


def test_centernet_nhwc_renamed_reordered_outputs():
    heat, size, offset = centernet_outputs()
    nhwc = {n: x.transpose(0, 2, 3, 1) for n, x in {"heat": heat, "size": size, "offset": offset}.items()}
    outputs = {"Identity": nhwc["offset"], "Identity_1": nhwc["heat"], "Identity_2": nhwc["size"]}
    dec = CenterNetDecoder(replace(CN_SPEC, layout="nhwc"))
    check_centernet(dec(outputs))
    assert dec.resolve(outputs) == {"heatmap": "Identity_1", "size": "Identity_2", "offset": "Identity"}
    # also without the layout hint: the grid position tells NHWC from NCHW
    check_centernet(CenterNetDecoder(CN_SPEC)(outputs))


def test_centernet_peaks_output_and_known_names():
    from edgedet.edge.core.heatmap_decode import peak_map

    heat, size, offset = centernet_outputs()
    check_centernet(CenterNetDecoder(CN_SPEC)({"hm": heat, "wh": size, "reg": offset, "peaks": peak_map(heat)}))
    # unnamed: of two C-channel maps, the one with more zeros is the peak map
    outputs = {"o0": peak_map(heat), "o1": heat, "o2": size, "o3": offset}
    dec = CenterNetDecoder(CN_SPEC)
    check_centernet(dec(outputs))
    assert dec.resolve(outputs)["peaks"] == "o0"


def test_centernet_size_and_offset_named_explicitly():
    heat, size, offset = centernet_outputs()
    spec = replace(CN_SPEC, extra={"outputs": {"size": "B", "offset": "A"}})
    check_centernet(CenterNetDecoder(spec)({"A": offset, "B": size, "C": heat}))


def test_centernet_errors():
    heat, size, offset = centernet_outputs()
    with pytest.raises(ValueError, match=r"no heatmap with 3 channels.*60x80 \(HxW\) grid of stride 4"):
        CenterNetDecoder(CN_SPEC)({"x": heat[..., :10], "size": size, "offset": offset})
    with pytest.raises(ValueError, match=r"'heatmap' \[1, 3, 60, 10\].*expected maps on the 60x80"):
        CenterNetDecoder(CN_SPEC)({"heatmap": heat[..., :10], "size": size, "offset": offset})
    with pytest.raises(ValueError, match="size"):
        CenterNetDecoder(CN_SPEC)({"heatmap": heat})
    two = replace(CN_SPEC, labels=("a", "b"))
    with pytest.raises(ValueError, match="2 classes"):
        CenterNetDecoder(two)({"x": heat[:, :2], "y": size, "z": offset})


class FakeBackend:
    """Stands in for a runtime: fixed outputs, checks the tensor it is given."""

    def __init__(self, outputs, layout):
        self.path = "fake.tflite"
        self.input_layout = layout
        self.input_shape = (1, 240, 320, 3) if layout == "nhwc" else (1, 3, 240, 320)
        self.output_names = tuple(outputs)
        self.outputs = outputs
        self.seen = []

    def run(self, tensor):
        self.seen.append(tensor.shape)
        return self.outputs

    def read_spec(self):
        return None


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_detector_maps_centernet_boxes_to_the_frame(resize):
    from edgedet.edge.runtime.detector import Detector

    heat, size, offset = centernet_outputs()
    outputs = {"Identity": heat.transpose(0, 2, 3, 1), "Identity_1": offset.transpose(0, 2, 3, 1)}
    outputs["Identity_2"] = size.transpose(0, 2, 3, 1)
    backend = FakeBackend(outputs, "nhwc")
    det = Detector(backend, replace(CN_SPEC, resize=resize))  # spec says nchw: the model's input decides
    frame = np.zeros((480, 640, 3), np.uint8)  # 4:3 like the input: letterbox = stretch here
    found = det.detect(frame)
    assert backend.seen == [(1, 240, 320, 3)] and det.spec.layout == "nhwc"
    exp_boxes, exp_scores, exp_cls = centernet_expected()
    np.testing.assert_allclose([d.box for d in found], np.clip(exp_boxes * 2, 0, [640, 480, 640, 480]), atol=1e-3)
    assert [d.class_id for d in found] == exp_cls.tolist()
    assert [d.label for d in found] == [CN_SPEC.labels[c] for c in exp_cls]
    np.testing.assert_allclose([d.score for d in found], exp_scores, atol=1e-6)
    # a wide frame letterboxed: padding top and bottom is taken off again
    if resize == "letterbox":
        wide = det.detect(np.zeros((240, 640, 3), np.uint8))  # scale 0.5, pad_y 60
        tf = det.preprocess.transform_for(640, 240)
        assert (tf.scale_y, tf.pad_y) == (0.5, 60.0)
        visible = (exp_boxes[:, 3] > 60) & (exp_boxes[:, 1] < 180)
        expected = (exp_boxes[visible] - [0, 60, 0, 60]) * 2
        np.testing.assert_allclose([d.box for d in wide], np.clip(expected, 0, [640, 240, 640, 240]), atol=1e-3)


def test_centernet_nms_removes_duplicate_peaks_of_one_object_but_not_other_classes():
    """Two peaks 2 cells apart (both survive the 3x3 max-pool) with nearly the same big box: one object.
    The same box on another class is another object."""
    objects = [(1, 20, 20, 0.5, 0.5, 30.0, 30.0, 0.8), (1, 22, 20, 0.5, 0.5, 30.0, 30.0, 0.7)]
    objects.append((2, 22, 20, 0.5, 0.5, 30.0, 30.0, 0.6))
    outputs = dict(zip(("heatmap", "size", "offset"), centernet_outputs(objects), strict=True))
    outputs["heatmap"][0, 1, 20, 22] = 0.7  # restore the second peak the first one's gaussian covered
    boxes, scores, classes = CenterNetDecoder(CN_SPEC)(outputs)
    assert classes.tolist() == [1, 2] and np.allclose(scores, [0.8, 0.6])
    plain = CenterNetDecoder(replace(CN_SPEC, iou_threshold=1.0))(outputs)
    assert plain[2].tolist() == [1, 1, 2]  # the paper's NMS-free decode keeps the duplicate
    assert np.allclose(plain[0][[0, 2]], boxes)

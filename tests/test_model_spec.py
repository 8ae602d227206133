import pytest

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.core.priors import PriorConfig


def test_round_trip_through_json():
    spec = ModelSpec(
        head="centernet",
        labels=("a", "b"),
        input_width=160,
        input_height=128,
        stride=4,
        resize="letterbox",
        color="bgr",
        layout="nhwc",
        extra={"note": "x"},
    )
    assert ModelSpec.from_json(spec.to_json()) == spec
    uf = ModelSpec.ultraface(640, 480)
    back = ModelSpec.from_json(uf.to_json())
    assert back == uf and back.priors.generate(back.input_size).shape == (17640, 4)
    assert (uf.score_threshold, uf.iou_threshold, uf.mean, uf.std) == (0.7, 0.3, (127.0,) * 3, (128.0,) * 3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"head": "yolo"}, "spec.head"),
        ({"labels": ()}, "spec.labels"),
        ({"input_width": 0}, "spec.input_width"),
        ({"std": (1.0, 0.0, 1.0)}, "spec.mean/std"),
        ({"score_threshold": 1.5}, "spec.score_threshold"),
        ({"priors": None}, "an SSD model needs a prior config"),
        ({"resize": "crop"}, "spec.resize"),
    ],
)
def test_bad_values_name_the_key(change, message):
    base = {"head": "ssd", "labels": ("x",), "priors": PriorConfig()}
    with pytest.raises(ValueError, match=message):
        ModelSpec(**{**base, **change})


def test_from_dict_errors_name_the_source():
    with pytest.raises(ValueError, match=r"model.json: unknown key\(s\) \['colour'\]"):
        ModelSpec.from_dict({"head": "ssd", "labels": ["x"], "colour": "rgb"}, "model.json")
    with pytest.raises(ValueError, match=r"model\.json: not valid JSON"):
        ModelSpec.from_json("{", "model.json")
    with pytest.raises(ValueError, match="version 9 is not supported"):
        ModelSpec.from_dict({"head": "ssd", "labels": ["x"], "version": 9})
    with pytest.raises(ValueError, match="'head' and 'labels' are required"):
        ModelSpec.from_dict({"labels": ["x"]})


def test_labels_given_as_one_string_is_an_error_not_four_classes():
    spec = ModelSpec.ultraface().to_dict()
    spec["labels"] = "face"
    with pytest.raises(ValueError, match=r"spec.labels: expected a list of class names, got the string 'face'"):
        ModelSpec.from_dict(spec, source="m.json")

"""Object filters: per-label limits over a default, areas as fractions of the frame, w/h ratios, config
errors that name the key, and the vectorised filter equal to a one-by-one check."""

from __future__ import annotations

from typing import Annotated

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgedet.edge.camera.filters import FilterSettings, ObjectFilter, ObjectFilterSettings
from edgedet.edge.camera.zones import ConfigCheckError
from edgedet.edge.runtime.detector import Detection
from edgedet.edge.runtime.settings import SectionInput, StrictModel, section, validate


class Camera(StrictModel):
    """The way the daemon config holds the filters."""

    filters: Annotated[ObjectFilterSettings, SectionInput] = section(ObjectFilterSettings, "object filters")


def filters(data) -> ObjectFilterSettings:
    return validate(Camera, {"filters": data}, "camera.yaml").filters


def det(label: str, box, score: float = 0.9) -> Detection:
    return Detection(tuple(float(v) for v in box), score, 0, label)


def test_no_filters_keep_everything():
    dets = [det("person", (0, 0, 1, 1), 0.01), det("car", (0, 0, 640, 480), 1.0)]
    f = ObjectFilter()
    assert not f.active and f.apply(dets, (640, 480)) == dets
    assert filters(None) == ObjectFilterSettings()


def test_per_label_filters_inherit_the_default_keys_they_do_not_give():
    cfg = filters({"default": {"min_score": 0.5, "max_ratio": 3}, "labels": {"person": {"max_ratio": 1.0}}})
    person = cfg.for_label("person")
    assert (person.min_score, person.max_ratio) == (0.5, 1.0)  # min_score from the default
    assert cfg.for_label("car") == cfg.default
    f = ObjectFilter(cfg)
    dets = [
        det("person", (0, 0, 50, 100), 0.9),  # kept: ratio 0.5
        det("person", (0, 0, 150, 100), 0.9),  # too wide for a person (1.5 > 1.0)
        det("person", (0, 0, 50, 100), 0.4),  # score under the default's 0.5
        det("car", (0, 0, 150, 100), 0.9),  # 1.5 is fine for a car (default max_ratio 3)
        det("car", (0, 0, 400, 100), 0.9),  # 4 is not
    ]
    assert f.apply(dets, (640, 480)) == [dets[0], dets[3]]
    assert f.dropped(dets, (640, 480)) == {"person": 2, "car": 1}


def test_areas_are_fractions_of_the_frame():
    f = ObjectFilter(filters({"default": {"min_area": 0.01, "max_area": 0.5}}))
    box = det("person", (0, 0, 64, 48))  # 3072 px: 1% of 640x480
    assert f.apply([box], (640, 480)) == [box]
    assert f.apply([box], (1920, 1080)) == []  # the same pixels are 0.15% of a bigger frame
    assert f.apply([det("bus", (0, 0, 640, 300))], (640, 480)) == []  # 62.5% > max_area


def test_degenerate_boxes_have_no_area_and_infinite_ratio():
    f = ObjectFilter(filters({"default": {"min_area": 0.0001}}))
    assert f.apply([det("x", (10, 10, 10, 50)), det("x", (10, 10, 50, 10))], (640, 480)) == []
    g = ObjectFilter(filters({"default": {"max_ratio": 10}}))
    assert g.apply([det("x", (10, 10, 50, 10))], (640, 480)) == []  # no height: infinitely wide


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"default": {"min_score": 1.5}}, "filters.default.min_score: expected a number >= 0 and <= 1, got 1.5"),
        ({"default": {"min_area": 2}}, "filters.default.min_area: expected a number >= 0 and <= 1"),
        ({"default": {"min_area": 0.5, "max_area": 0.1}}, "filters.default.max_area: must be >= min_area (0.5)"),
        ({"default": {"max_ratio": 0}}, "filters.default.max_ratio: expected a number > 0"),
        ({"labels": {"person": {"min_scor": 0.5}}}, "filters.labels.person.min_scor: unknown key"),
        (
            {"labels": {"person": {"min_ratio": 2, "max_ratio": 1}}},
            "filters.labels.person.max_ratio: must be >= min_ratio (2)",
        ),
        (
            {"default": {"max_area": 0.05}, "labels": {"person": {"min_area": 0.1}}},
            "filters.labels.person.min_area: must be <= max_area (0.05 in default), got 0.1",
        ),
        (
            {"default": {"min_ratio": 2}, "labels": {"person": {"max_ratio": 1}}},
            "filters.labels.person.max_ratio: must be >= min_ratio (2 in default), got 1",
        ),
        ({"labels": {"person": 5}}, "filters.labels.person: expected a mapping of keys, got 5"),
        ({"labels": ["person"]}, "filters.labels: expected a mapping of names to label filter settings"),
        ({"labels": {"": {}}}, "filters.labels: expected non-empty names, got ''"),
        ({"defaults": {}}, "filters.defaults: unknown key"),
    ],
)
def test_bad_filter_configs_name_the_key(data, message):
    with pytest.raises(ValueError, match=r"^camera\.yaml: ") as info:
        filters(data)
    assert message in str(info.value)


def test_a_label_given_as_null_gets_the_default_and_unknown_labels_are_named():
    cfg = filters({"default": {"min_score": 0.3}, "labels": {"person": None, "persn": {"min_score": 0.6}}})
    assert cfg.for_label("person").min_score == 0.3
    with pytest.raises(ConfigCheckError) as info:
        cfg.check_labels(["person", "car"])
    assert str(info.value) == "filters.labels.persn: unknown label (the model's labels: person, car)"
    filters({"labels": {"car": {}}}).check_labels(["person", "car"])


def test_inputs_are_checked():
    f = ObjectFilter(filters({"default": {"min_score": 0.5}}))
    with pytest.raises(ValueError, match="differ in length"):
        f.keep_mask([[0, 0, 1, 1]], [0.5, 0.6], ["a"], (640, 480))
    with pytest.raises(ValueError, match="frame_size"):
        f.keep_mask([[0, 0, 1, 1]], [0.5], ["a"], (0, 480))


def _keep_one(f: FilterSettings, box, score: float, frame=(640, 480)) -> bool:
    w, h = max(box[2] - box[0], 0.0), max(box[3] - box[1], 0.0)
    area = w * h / (frame[0] * frame[1])
    ratio = w / h if h > 0 else float("inf")
    return (
        score >= f.min_score
        and f.min_area <= area <= f.max_area
        and ratio >= f.min_ratio
        and (f.max_ratio is None or ratio <= f.max_ratio)
    )


limits = st.fixed_dictionaries(
    {},
    optional={
        "min_score": st.floats(0, 1),
        "min_area": st.floats(0, 0.05),
        "max_area": st.floats(0.05, 1),
        "min_ratio": st.floats(0, 1),
        "max_ratio": st.floats(1, 5),
    },
)
detections = st.lists(
    st.tuples(
        st.sampled_from(["person", "car", "dog"]),
        st.tuples(st.floats(0, 600), st.floats(0, 440), st.floats(0, 300), st.floats(0, 300)),
        st.floats(0, 1),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(limits, limits, limits, detections)
def test_vectorised_filter_equals_one_by_one(default, person, car, raw):
    cfg = ObjectFilterSettings.model_validate({"default": default, "labels": {"person": person, "car": car}})
    dets = [det(label, (x, y, x + w, y + h), score) for label, (x, y, w, h), score in raw]
    expected = [d for d in dets if _keep_one(cfg.for_label(d.label), d.box, d.score)]
    assert ObjectFilter(cfg).apply(dets, (640, 480)) == expected

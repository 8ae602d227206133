"""Zones and ignore masks: geometry against brute force, enter/exit with inertia, counts, config errors
that name the key, drawing."""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import Field, model_validator

from edgedet.edge.camera.overlay import draw_tracks, draw_zones
from edgedet.edge.camera.zones import (
    ConfigCheckError,
    MaskList,
    MaskSettings,
    ZoneList,
    Zones,
    ZoneSettings,
    ZoneTracker,
    check_frame,
    check_labels,
    check_zone_refs,
)
from edgedet.edge.core.polygons import box_overlaps_polygon, points_in_polygon, polygon_problem, segments_intersect
from edgedet.edge.runtime.detector import Detection
from edgedet.edge.runtime.settings import NonEmptyText, StrictModel, validate

SQUARE = [[100, 100], [300, 100], [300, 300], [100, 300]]


class Camera(StrictModel):
    """The way the daemon config holds zones and masks (and a key naming zones, for check_zone_refs)."""

    zones: ZoneList = Field(default_factory=list, description="zones")
    masks: MaskList = Field(default_factory=list, description="ignore masks")
    alert_zones: list[NonEmptyText] = Field(default_factory=list, description="zones named elsewhere")

    @model_validator(mode="after")
    def _refs(self) -> Camera:
        check_zone_refs(self.zones, {"alert_zones": self.alert_zones})
        return self


def zone(name="yard", polygon=SQUARE, **kw) -> ZoneSettings:
    return ZoneSettings(name=name, polygon=polygon, **kw)


def box_at(cx: float, bottom: float, w: float = 40, h: float = 80) -> tuple[float, float, float, float]:
    """A box standing at (cx, bottom)."""
    return (cx - w / 2, bottom - h, cx + w / 2, bottom)


# --- worked examples ---------------------------------------------------------------------------------------


def test_walking_in_and_out_gives_one_enter_and_one_exit_with_inertia_3():
    zones = Zones([zone(inertia=3)], width=640, height=480)
    tracker = ZoneTracker(zones)
    xs = list(range(10, 400, 20))  # walks left to right along y=200: inside for x in (100, 300)
    events = []
    for frame, x in enumerate(xs):
        update = tracker.update({7: box_at(x, 200)}, {7: "person"})
        events += [(frame, e.kind, e.zone, e.track_id, e.label) for e in update.events]
    first_in = next(i for i, x in enumerate(xs) if 100 < x < 300)
    first_out = next(i for i, x in enumerate(xs) if x > 300)
    assert events == [(first_in + 2, "enter", "yard", 7, "person"), (first_out + 2, "exit", "yard", 7, "person")]


def test_flicker_on_the_edge_does_not_enter_or_leave():
    tracker = ZoneTracker(Zones([zone(inertia=3)], width=640, height=480))
    inside, outside = box_at(105, 200), box_at(95, 200)
    pattern = [outside, inside, inside, outside, inside, outside, outside, inside]  # never 3 in a row
    assert not any(tracker.update({1: b}).events for b in pattern)
    # once in, a two-frame dip outside is not an exit either
    kinds = [e.kind for b in [inside] * 3 + [outside] * 2 + [inside] * 4 for e in tracker.update({1: b}).events]
    assert kinds == ["enter"]


def test_inertia_1_is_immediate_and_a_lost_track_leaves_at_once():
    tracker = ZoneTracker(Zones([zone(inertia=1)], width=640, height=480))
    assert [(e.kind, e.lost) for e in tracker.update({3: box_at(200, 200)}).events] == [("enter", False)]
    assert tracker.zones_of(3) == {"yard"}
    update = tracker.update({})
    assert [(e.kind, e.track_id, e.lost) for e in update.events] == [("exit", 3, True)]
    assert tracker.zones_of(3) == set()


def test_bottom_center_and_center_anchors_differ_on_a_box_straddling_the_edge():
    straddling = (150, 40, 200, 140)  # top edge at y=100: centre (175, 90) out, bottom centre (175, 140) in
    by_anchor = {
        anchor: Zones([zone(anchor=anchor)], width=640, height=480).assign([straddling])[0]
        for anchor in ("bottom_center", "center", "box")
    }
    assert by_anchor == {"bottom_center": {"yard"}, "center": set(), "box": {"yard"}}
    beside = (40, 150, 120, 200)  # left of the zone, its right end overlapping it: only `box` counts it
    zones = [Zones([zone(anchor=a)], width=640, height=480) for a in ("bottom_center", "center", "box")]
    assert [z.assign([beside])[0] for z in zones] == [set(), set(), {"yard"}]


def test_assign_is_per_object_over_several_zones_and_respects_labels():
    zones = Zones(
        [
            zone("left", [[0, 0], [320, 0], [320, 480], [0, 480]]),
            zone("right", [[320, 0], [640, 0], [640, 480], [320, 480]], labels=["car"]),
            zone("all", [[0, 0], [640, 0], [640, 480], [0, 480]]),
        ],
        width=640,
        height=480,
    )
    boxes = [box_at(100, 300), box_at(500, 300), box_at(500, 300)]
    assert zones.assign(boxes, ["person", "person", "car"]) == [{"left", "all"}, {"all"}, {"right", "all"}]
    # labels unknown: zones filtering by label count nobody
    assert zones.assign(boxes) == [{"left", "all"}, {"all"}, {"all"}]
    assert zones.assign(np.zeros((0, 4))) == []


def test_counts_per_zone_and_label_and_what_changed_for_retained_topics():
    tracker = ZoneTracker(Zones([zone(inertia=1, labels=["person", "car"])], width=640, height=480))
    first = tracker.update({})
    assert first.counts == {"yard": {"person": 0, "car": 0}}
    assert first.changed == {("yard", "person"): 0, ("yard", "car"): 0}  # published once, at start
    update = tracker.update(
        {1: box_at(150, 200), 2: box_at(250, 200), 3: box_at(200, 250)}, {1: "person", 2: "person", 3: "car"}
    )
    assert update.counts == {"yard": {"person": 2, "car": 1}}
    assert update.changed == {("yard", "person"): 2, ("yard", "car"): 1}
    update = tracker.update({1: box_at(150, 200), 3: box_at(200, 250)}, {1: "person", 3: "car"})
    assert update.changed == {("yard", "person"): 1} and [e.kind for e in update.events] == ["exit"]
    update = tracker.update({})
    assert update.counts == {"yard": {"person": 0, "car": 0}}  # back to 0, not dropped: the topic is reset
    assert update.changed == {("yard", "person"): 0, ("yard", "car"): 0}


def test_labels_seen_in_a_zone_without_a_filter_stay_counted_at_zero():
    tracker = ZoneTracker(Zones([zone(inertia=1)], width=640, height=480))
    det = Detection(box_at(200, 200), 0.9, 0, "dog")  # values with .box and .label work as tracks
    assert tracker.update({5: det}).counts == {"yard": {"dog": 1}}
    assert tracker.update({}).counts == {"yard": {"dog": 0}}
    assert tracker.update({6: box_at(200, 200)}).counts == {"yard": {"dog": 0, "object": 1}}  # no label
    named = ZoneTracker(Zones([zone(inertia=1)], width=640, height=480), class_names=["person", "cat"])
    track = SimpleNamespace(box=box_at(200, 200), class_id=1)  # a tracker's track: a class id, no label
    assert named.update({1: track}).counts == {"yard": {"cat": 1}}
    assert named.update({1: track}, {1: "lynx"}).counts == {"yard": {"cat": 0, "lynx": 1}}  # labels override


def test_masks_drop_detections_by_anchor_and_label():
    mask = MaskSettings(name="tv", polygon=SQUARE, labels=["person"])
    zones = Zones([], [mask], width=640, height=480)
    dets = [
        Detection(box_at(200, 200), 0.9, 0, "person"),  # on the TV: dropped
        Detection(box_at(200, 200), 0.9, 1, "cat"),  # not a masked label
        Detection(box_at(200, 400), 0.9, 0, "person"),  # stands below the mask
    ]
    assert zones.drop_masked(dets) == dets[1:]
    assert zones.ignored([box_at(200, 200)]).tolist() == [False]  # labels unknown: a label mask drops nothing
    everything = Zones([], [MaskSettings(polygon=SQUARE, anchor="box")], width=640, height=480)
    assert everything.ignored([(0, 0, 101, 101), (0, 0, 99, 99)]).tolist() == [True, False]


def test_normalized_polygons_scale_to_the_frame():
    half = zone(polygon=[[0, 0], [0.5, 0], [0.5, 1], [0, 1]], normalized=True)
    small = Zones([half], width=320, height=240)
    big = Zones([half], width=1920, height=1080)
    assert small.assign([box_at(100, 100)]) == [{"yard"}]
    assert big.assign([box_at(100, 100), box_at(1000, 100)]) == [{"yard"}, set()]
    np.testing.assert_allclose(big.polygons[0], [[0, 0], [960, 0], [960, 1080], [0, 1080]])


# --- config errors name the key --------------------------------------------------------------------------

BOWTIE = [[0, 0], [10, 10], [10, 0], [0, 10]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"zones": [{"name": "a", "polygon": [[0, 0], [1, 1]]}]}, "zones.0.polygon: expected at least 3 points"),
        ({"zones": [{"name": "a", "polygon": BOWTIE}]}, "zones.0.polygon: not a simple polygon: edges 0"),
        (
            {"zones": [{"name": "a", "polygon": SQUARE}, {"name": "a", "polygon": SQUARE}]},
            "zones.1.name: duplicate zone name 'a'",
        ),
        (
            {"zones": [{"name": "a", "polygon": [[0, 0], [5, 0], [9, 0]]}]},
            "zones.0.polygon: not a simple polygon: the points lie on one line",
        ),
        (
            {"zones": [{"name": "a", "polygon": [[0, 0], [0, 0], [5, 5], [0, 5]]}]},
            "zones.0.polygon: not a simple polygon: point 1 repeats",
        ),
        (
            {"zones": [{"name": "a", "polygon": [[0, 0], [1, "x"], [5, 5]]}]},
            "zones.0.polygon: point 1: expected [x, y]",
        ),
        (
            {"zones": [{"name": "a", "polygon": SQUARE, "normalized": True}]},
            "zones.0.polygon: point 0 (100, 100) is outside 0..1",
        ),
        (
            {"zones": [{"name": "a", "polygon": [[-1, 0], [5, 0], [5, 5]]}]},
            "zones.0.polygon: point 0 (-1, 0) is outside the frame",
        ),
        (
            {"zones": [{"name": "a", "polygon": SQUARE, "inertia": 0}]},
            "zones.0.inertia: expected an integer in 1..1000",
        ),
        ({"zones": [{"name": "a", "polygon": SQUARE, "anchor": "top"}]}, "zones.0.anchor: expected one of"),
        ({"zones": [{"name": "a", "polygon": SQUARE, "labels": []}]}, "zones.0.labels: expected at least one label"),
        (
            {"zones": [{"name": "a", "polygon": SQUARE, "labels": ["x", "x"]}]},
            "zones.0.labels: label 'x' is listed twice",
        ),
        ({"zones": [{"name": "a/b", "polygon": SQUARE}]}, "zones.0.name: 'a/b' does not match"),
        ({"zones": [{"polygon": SQUARE}]}, "zones.0.name: required"),
        ({"zones": [{"name": "a", "polygon": SQUARE, "colour": 1}]}, "zones.0.colour: unknown key"),
        ({"zones": [5]}, "zones.0: expected a mapping of keys, got 5"),
        ({"zones": "yard"}, "zones: expected a list of zone settings"),
        ({"masks": [{"polygon": BOWTIE}]}, "masks.0.polygon: not a simple polygon"),
        ({"masks": [{"polygon": SQUARE, "anchor": "feet"}]}, "masks.0.anchor: expected one of"),
        (
            {"zones": [{"name": "a", "polygon": SQUARE}], "alert_zones": ["b"]},
            "alert_zones: unknown zone 'b' (zones: a)",
        ),
    ],
)
def test_bad_zone_configs_name_the_key(data, message):
    with pytest.raises(ValueError, match=r"^camera\.yaml: ") as info:
        validate(Camera, data, "camera.yaml")
    assert message in str(info.value)


def test_a_closing_point_repeating_the_first_is_accepted_and_null_means_no_zones():
    cfg = validate(Camera, {"zones": [{"name": "a", "polygon": [*SQUARE, SQUARE[0]]}], "masks": None}, "c")
    assert len(cfg.zones[0].polygon) == 4 and cfg.masks == []


def test_checks_that_need_the_frame_size_or_the_model_name_the_zone():
    zones = [zone("a"), zone("b", [[0, 0], [700, 0], [0, 400]])]
    with pytest.raises(ConfigCheckError) as info:
        check_frame(zones, 640, 480)
    assert str(info.value).startswith("zones.1.polygon: zone 'b': point 1 (700, 0) is outside the 640x480 frame")
    with pytest.raises(ConfigCheckError, match=r"^zones.1.polygon: zone 'b'"):
        Zones(zones, width=640, height=480)
    check_frame(zones, 700, 480)  # fits a bigger frame
    masks = [MaskSettings(name="tv", polygon=[[0, 0], [10, 0], [10, 500]])]
    with pytest.raises(ConfigCheckError, match=r"^masks.0.polygon: mask 'tv': point 2"):
        Zones([], masks, width=640, height=480)
    with pytest.raises(ConfigCheckError, match=r"^zones.0.labels: zone 'a': unknown label 'persn' \(the model's"):
        check_labels([zone("a", labels=["persn"])], ["person", "car"])
    check_labels([zone("a", labels=["car"])], ["person", "car"])
    with pytest.raises(ConfigCheckError, match=r"^mqtt.zones: unknown zone 'c' \(zones: a, b\)"):
        check_zone_refs(zones, {"x.zone": "a", "mqtt.zones": ["b", "c"], "unset": None})


# --- geometry against brute force ---------------------------------------------------------------------------


@st.composite
def star_angles(draw, min_size=3):
    """Distinct angles (degrees) in order, less than 180 apart all round: a point at each, at any radius
    from the centre, makes a simple polygon with the centre inside."""
    n = draw(st.integers(min_size, 12))
    angles = sorted(draw(st.lists(st.integers(0, 359), min_size=n, max_size=n, unique=True)))
    assume(max(np.diff([*angles, angles[0] + 360])) < 180)
    return np.radians(angles)


@st.composite
def star_polygons(draw, integer=False):
    """Simple star-shaped polygons: :func:`star_angles` at random radii around a random centre."""
    angles = draw(star_angles())
    radii = np.array(draw(st.lists(st.floats(5, 60), min_size=len(angles), max_size=len(angles))))
    cx, cy = draw(st.floats(60, 140)), draw(st.floats(60, 140))
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    return np.round(pts) if integer else pts


@settings(max_examples=150, deadline=None)
@given(
    star_polygons(integer=True),
    st.lists(st.tuples(st.integers(0, 1600), st.integers(0, 1600)), min_size=1, max_size=40),
)
def test_points_in_polygon_matches_cv2(poly, eighths):
    points = np.array(eighths, dtype=np.float64) / 8  # exact in float32, for cv2
    got = points_in_polygon(points, poly)
    contour = poly.astype(np.float32).reshape(-1, 1, 2)
    for p, inside in zip(points, got, strict=True):
        dist = cv2.pointPolygonTest(contour, (float(p[0]), float(p[1])), True)
        if abs(dist) > 1e-6:  # on the boundary either answer is fine
            assert inside == (dist > 0), (p, dist)


@settings(max_examples=100, deadline=None)
@given(star_polygons(), st.lists(st.tuples(st.floats(0, 200), st.floats(0, 200)), min_size=1, max_size=30))
def test_points_in_polygon_matches_a_raster(poly, pts):
    raster = np.zeros((201, 201), dtype=np.uint8)
    cv2.fillPoly(raster, [np.round(poly * 16).astype(np.int32)], 1, shift=4)
    got = points_in_polygon(pts, poly)
    contour = poly.astype(np.float32).reshape(-1, 1, 2)
    for (x, y), inside in zip(pts, got, strict=True):
        if abs(cv2.pointPolygonTest(contour, (x, y), True)) > 1.5:  # a pixel and more from the edge
            assert inside == bool(raster[round(y), round(x)]), (x, y)


def _brute_intersect(p1, p2, q1, q2) -> bool:
    """Exact: do closed segments p1p2 and q1q2 share a point (Fractions, parametric)."""
    (ax, ay), (bx, by), (cx, cy), (dx, dy) = ((Fraction(x), Fraction(y)) for x, y in (p1, p2, q1, q2))
    rx, ry, sx, sy = bx - ax, by - ay, dx - cx, dy - cy
    denom = rx * sy - ry * sx
    qpx, qpy = cx - ax, cy - ay
    if denom != 0:
        t = (qpx * sy - qpy * sx) / denom
        u = (qpx * ry - qpy * rx) / denom
        return 0 <= t <= 1 and 0 <= u <= 1
    if qpx * ry - qpy * rx != 0:
        return False  # parallel, not collinear
    if rx == 0 and ry == 0:  # p is a point
        if sx == 0 and sy == 0:
            return (ax, ay) == (cx, cy)
        return _brute_intersect(q1, q2, p1, p2)
    rr = rx * rx + ry * ry
    t0 = (qpx * rx + qpy * ry) / rr
    t1 = ((dx - ax) * rx + (dy - ay) * ry) / rr
    return max(min(t0, t1), 0) <= min(max(t0, t1), 1)


coords = st.tuples(st.integers(-5, 5), st.integers(-5, 5))


@settings(max_examples=400, deadline=None)
@given(coords, coords, coords, coords)
def test_segments_intersect_matches_exact_arithmetic(p1, p2, q1, q2):
    assert bool(segments_intersect(p1, p2, q1, q2)) == _brute_intersect(p1, p2, q1, q2)


@settings(max_examples=100, deadline=None)
@given(star_polygons())
def test_star_shaped_polygons_are_simple(poly):
    assert polygon_problem(poly) is None
    assert polygon_problem(poly[::-1]) is None  # either orientation
    assert polygon_problem(np.concatenate([poly, poly])) is not None  # round twice: the edges overlap


@settings(max_examples=100, deadline=None)
@given(star_angles(min_size=4), st.data())
def test_swapping_two_points_of_a_convex_polygon_makes_edges_cross(angles, data):
    ring = 100 + 50 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    assert polygon_problem(ring) is None
    i = data.draw(st.integers(0, len(ring) - 1))
    order = np.arange(len(ring))
    j = (i + 1) % len(ring)
    order[i], order[j] = j, i  # the diagonals (i-1, i+1) and (i, i+2) become edges
    assert "cross" in polygon_problem(ring[order])


def _clip_area(poly: np.ndarray, box) -> float:
    """Area of ``poly`` clipped to ``box`` (Sutherland-Hodgman): the brute force for box overlap."""
    x1, y1, x2, y2 = box
    out = [tuple(p) for p in poly]
    for inside, cut in (
        (lambda p: p[0] >= x1, lambda a, b: (x1, a[1] + (b[1] - a[1]) * (x1 - a[0]) / (b[0] - a[0]))),
        (lambda p: p[0] <= x2, lambda a, b: (x2, a[1] + (b[1] - a[1]) * (x2 - a[0]) / (b[0] - a[0]))),
        (lambda p: p[1] >= y1, lambda a, b: (a[0] + (b[0] - a[0]) * (y1 - a[1]) / (b[1] - a[1]), y1)),
        (lambda p: p[1] <= y2, lambda a, b: (a[0] + (b[0] - a[0]) * (y2 - a[1]) / (b[1] - a[1]), y2)),
    ):
        src, out = out, []
        for i, cur in enumerate(src):
            prev = src[i - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(cut(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(cut(prev, cur))
        if not out:
            return 0.0
    xs, ys = np.array(out).T
    return 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))


boxes = st.tuples(st.floats(0, 190), st.floats(0, 190), st.floats(1, 80), st.floats(1, 80)).map(
    lambda b: (b[0], b[1], b[0] + b[2], b[1] + b[3])
)


@settings(max_examples=200, deadline=None)
@given(star_polygons(), st.lists(boxes, min_size=1, max_size=10))
def test_box_overlap_matches_polygon_clipping(poly, bxs):
    got = box_overlaps_polygon(bxs, poly)
    for box, overlaps in zip(bxs, got, strict=True):
        if _clip_area(poly, box) > 1e-6:
            assert overlaps, box
        if overlaps:  # touching counts: the box grown by a hair overlaps with some area
            x1, y1, x2, y2 = box
            assert _clip_area(poly, (x1 - 1e-3, y1 - 1e-3, x2 + 1e-3, y2 + 1e-3)) > 0, box


def test_assign_is_vectorised_like_one_by_one():
    rng = np.random.default_rng(1)
    zs = [
        zone("a", [[10, 10], [300, 40], [200, 300], [20, 200]], anchor="center"),
        zone("b", [[200, 100], [600, 120], [500, 470]], anchor="bottom_center"),
        zone("c", [[0, 300], [640, 300], [640, 480], [0, 480]], anchor="box"),
    ]
    zones = Zones(zs, width=640, height=480)
    xy = rng.uniform(0, 600, (200, 2))
    bxs = np.concatenate([xy, xy + rng.uniform(5, 80, (200, 2))], axis=1)
    together = zones.assign(bxs)
    assert together == [zones.assign(b[None])[0] for b in bxs]
    assert {name for s in together for name in s} == {"a", "b", "c"}


# --- drawing ------------------------------------------------------------------------------------------------


def test_draw_zones_outlines_zones_and_dims_masks_on_a_copy():
    frame = np.full((480, 640, 3), 200, dtype=np.uint8)
    zones = Zones(
        [zone()], [MaskSettings(polygon=[[400, 300], [600, 300], [600, 450], [400, 450]])], width=640, height=480
    )
    out = draw_zones(frame, zones, {"yard": {"person": 2, "car": 0}})
    assert out.shape == frame.shape and np.all(frame == 200)  # the input is untouched
    assert np.any(out[300, 150:250] != 200)  # the bottom edge of the zone is drawn
    assert out[400:440, 420:580].mean() < 150  # the mask is dimmed (and hatched)
    assert np.all(out[200, 150:250] == 200)  # inside the zone nothing is painted
    assert draw_zones(frame, zones, copy=False) is frame


def test_draw_tracks_draws_boxes_with_label_id_and_score():
    frame = np.zeros((240, 320, 3), dtype=np.uint8)
    tracks = {12: Detection((50, 60, 150, 200), 0.87, 0, "person")}
    out = draw_tracks(frame, tracks)
    assert not frame.any() and out[60:200, 50].any() and out[40:58, 50:150].any()  # box and its label
    assert np.array_equal(out, draw_tracks(frame, list(tracks.items())))
    track = SimpleNamespace(id=12, box=(50, 60, 150, 200), score=0.87, class_id=0)  # a tracker's track: no label
    assert np.array_equal(out, draw_tracks(frame, [track], ["person"]))


def test_boxes_must_be_n_by_4():
    zones = Zones([zone()], width=640, height=480)
    with pytest.raises(ValueError, match=r"boxes: expected shape \[N, 4\]"):
        zones.assign([[1, 2, 3]])

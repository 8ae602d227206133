"""The synthetic tracking videos: deterministic, frame-rate independent, and their ground truth is what is drawn."""

import cv2
import numpy as np
import pytest

from edgedet.edge.datasets.synthetic_tracks import noisy_detections, render_tracks, write_video


@pytest.fixture(scope="module")
def video():
    return render_tracks(60, seed=3, flicker=False, noise=0)


def _same_truth(a, b):
    return len(a) == len(b) and all(
        np.array_equal(x.boxes, y.boxes) and np.array_equal(x.track_ids, y.track_ids) for x, y in zip(a, b, strict=True)
    )


def test_same_seed_same_video_and_truth():
    a = render_tracks(20, seed=5)
    b = render_tracks(20, seed=5)
    c = render_tracks(20, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames, strict=True))
    assert _same_truth(a.truth, b.truth)
    assert not all(np.array_equal(x, y) for x, y in zip(a.frames, c.frames, strict=True))
    assert a.frames[0].shape == (240, 320, 3) and a.frames[0].dtype == np.uint8
    assert len(a.frames) == len(a.truth) == 20


def test_motion_is_in_seconds_so_any_frame_rate_shows_the_same_scene():
    slow = render_tracks(30, seed=2, fps=5.0, images=False)
    fast = render_tracks(180, seed=2, fps=30.0, images=False)
    assert slow.still == pytest.approx(fast.still)
    for f in slow.truth:
        g = fast.truth[f.index * 6]
        assert g.t == pytest.approx(f.t)
        assert np.array_equal(f.track_ids, g.track_ids) and np.array_equal(f.boxes, g.boxes)


def test_boxes_are_the_tight_boxes_of_the_drawn_objects(video):
    """With flicker and sensor noise off, a pixel differs from the background exactly where an object is
    drawn: every truth box is mostly object, and for isolated objects the changed pixels end at its edges."""
    isolated = exact = 0
    for image, f in zip(video.frames, video.truth, strict=True):
        changed = (image != video.background).any(axis=2)
        boxes = f.boxes.astype(int)
        for k, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            assert changed[y1:y2, x1:x2].mean() > 0.3  # the visible part of a shape fills its box well
            ex = (max(x1 - 3, 0), max(y1 - 3, 0), x2 + 3, y2 + 3)
            others = np.delete(boxes, k, axis=0)
            apart = (
                (others[:, 0] >= ex[2]) | (others[:, 2] <= ex[0]) | (others[:, 1] >= ex[3]) | (others[:, 3] <= ex[1])
            )
            if not apart.all():
                continue
            region = changed[ex[1] : ex[3], ex[0] : ex[2]]
            ys, xs = np.nonzero(region.any(axis=1))[0], np.nonzero(region.any(axis=0))[0]
            got = (xs[0] + ex[0], ys[0] + ex[1], xs[-1] + 1 + ex[0], ys[-1] + 1 + ex[1])
            # a hidden object (less than a third visible: not in the truth) may add changed pixels nearby
            assert got[0] <= x1 and got[1] <= y1 and got[2] >= x2 and got[3] >= y2
            isolated += 1
            exact += got == (x1, y1, x2, y2)
    assert isolated > 50 and exact >= 0.9 * isolated


def test_the_scenario_has_a_crossing_a_still_stretch_entries_exits_and_flicker():
    v = render_tracks(150, seed=0)
    truth = v.truth
    # the two first objects share a class and overlap (one partly hides the other) at some frame
    crossing = False
    for f in truth:
        ids = f.track_ids.tolist()
        if 1 in ids and 2 in ids:
            a, b = f.boxes[ids.index(1)], f.boxes[ids.index(2)]
            inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
            crossing |= inter > 0 and f.labels[ids.index(1)] == f.labels[ids.index(2)] and f.visible.min() < 0.9
    assert crossing
    # nothing moves in the still stretch
    still = [f for f in truth if v.still[0] <= f.t < v.still[1]]
    assert len(still) > 10
    assert all(np.array_equal(f.boxes, still[0].boxes) for f in still)
    # objects enter after the start and leave before the end
    first = {i for i in truth[0].track_ids.tolist()}
    last = {i for i in truth[-1].track_ids.tolist()}
    seen = set().union(*(f.track_ids.tolist() for f in truth))
    assert seen - first and seen - last
    # flicker: the still stretch's brightness changes although nothing moves
    means = [v.frames[f.index].mean() for f in still]
    assert max(means) - min(means) > 3.0


def test_noisy_detections_are_deterministic_and_imperfect():
    v = render_tracks(90, seed=1, images=False)
    a = noisy_detections(v, seed=4)
    b = noisy_detections(v, seed=4)
    assert all(
        np.array_equal(x.boxes, y.boxes) and np.array_equal(x.scores, y.scores) for x, y in zip(a, b, strict=True)
    )
    n_truth = sum(len(f.boxes) for f in v.truth)
    true_dets = sum(int((d.truth_ids >= 0).sum()) for d in a)
    false_dets = sum(int((d.truth_ids < 0).sum()) for d in a)
    assert 0.7 * n_truth < true_dets < n_truth  # some objects are missed
    assert false_dets > 0
    scores = np.concatenate([d.scores for d in a])
    assert scores.min() >= 0.1 and (scores < 0.5).any() and (scores > 0.8).any()
    clean = noisy_detections(
        v, seed=4, jitter=0, miss_rate=0, false_positives=0, occlusion_miss=0, occlusion_score=0, score_std=0
    )
    assert all(
        np.array_equal(d.boxes, f.boxes) and np.array_equal(d.truth_ids, f.track_ids)
        for d, f in zip(clean, v.truth, strict=True)
    )


def test_write_video_round_trips(tmp_path):
    v = render_tracks(12, seed=0)
    path = write_video(tmp_path / "tracks.avi", v)
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == 12
    with pytest.raises(ValueError, match="end in"):
        write_video(tmp_path / "x.gif", v)

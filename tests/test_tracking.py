"""The multi-object tracker: IDs through crossings and misses, the life cycle, the two score stages, classes,
real time steps, the assignment solver, and ID switches on synthetic tracking videos (numpy only)."""

import itertools
import json

import numpy as np
import pytest

from edgedet.edge.camera.tracking import Tracker, TrackerSettings, assign_max
from edgedet.edge.core.boxes import pairwise_iou
from edgedet.edge.datasets.synthetic_tracks import noisy_detections, render_tracks


def box(cx, cy, w=30.0, h=30.0):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def feed(tracker, dets, t, score=0.9):
    """``dets``: list of (box, class_id) or (box, class_id, score)."""
    boxes = np.array([d[0] for d in dets], float).reshape(-1, 4)
    classes = np.array([d[1] for d in dets], int)
    scores = np.array([d[2] if len(d) > 2 else score for d in dets], float)
    return tracker.update(boxes, scores, classes, t)


def ids_by_class_x(tracks):
    return {(t.class_id, round(t.box[0])): t.id for t in tracks}


def test_ids_survive_a_crossing_and_a_five_frame_miss():
    """Two objects of one class cross head-on; the one behind is not detected for the five frames around
    the crossing (a third of a second), when the boxes overlap most. Each keeps its ID from start to end."""
    tracker = Tracker()
    fps = 15.0
    seen: dict[int, set[int]] = {0: set(), 1: set()}
    for k in range(30):
        t = k / fps
        a = (box(40 + 120 * t, 100), 0)  # left to right
        b = (box(280 - 120 * t, 108), 0)  # right to left, slightly lower: they meet at t = 1 (k = 15)
        dets = [a, b]
        if 13 <= k < 18:
            dets = [a]  # b is hidden behind a
        for track in feed(tracker, dets, t):
            obj = 0 if track.detection == 0 else 1
            seen[obj].add(track.id)
    assert seen[0] == {1} and seen[1] == {2}
    assert tracker.ended() == []


def test_a_track_is_tentative_until_min_hits():
    tracker = Tracker(TrackerSettings(min_hits=3))
    assert feed(tracker, [(box(50, 50), 0)], 0.0) == []
    assert [t.state for t in tracker.tracks] == ["tentative"] and tracker.tracks[0].id == 0
    assert feed(tracker, [(box(52, 50), 0)], 0.1) == []
    (track,) = feed(tracker, [(box(54, 50), 0)], 0.2)
    assert track.state == "confirmed" and track.id == 1 and track.hits == 3
    assert track.first_t == 0.0 and track.last_t == 0.2 and track.first_box == tuple(box(50, 50))


def test_an_unconfirmed_track_that_misses_is_dropped_quietly():
    tracker = Tracker()
    feed(tracker, [(box(50, 50), 0)], 0.0)
    feed(tracker, [], 0.1)
    assert tracker.tracks == [] and tracker.ended() == [] and tracker.unconfirmed_ended == 1


def test_lost_tracks_end_after_max_age_seconds_with_the_reason():
    tracker = Tracker(TrackerSettings(max_age_s=1.0))
    for k in range(5):
        feed(tracker, [(box(50, 50), 0, 0.8 + 0.02 * k)], k * 0.1)
    t = 0.4
    while t < 1.35:  # unseen for 0.95 s: still lost, not ended
        t += 0.1
        assert feed(tracker, [], t) == []
    assert [tr.state for tr in tracker.tracks] == ["lost"] and tracker.ended() == []
    feed(tracker, [], t + 0.1)  # unseen for 1.05 s
    (ended,) = tracker.ended()
    assert ended.end_reason == "lost" and ended.state == "ended" and ended.id == 1
    assert ended.last_t == pytest.approx(0.4) and ended.hits == 5 and ended.best_score == pytest.approx(0.88)
    assert tracker.tracks == [] and tracker.ended() == []  # reported once
    json.dumps(ended.to_dict())


def test_max_age_in_updates_too():
    tracker = Tracker(TrackerSettings(max_age_s=100.0, max_age_updates=3))
    feed(tracker, [(box(50, 50), 0)], 0.0)
    feed(tracker, [(box(50, 50), 0)], 0.1)
    for k in range(3):
        feed(tracker, [], 0.2 + 0.1 * k)
    assert tracker.ended() == []
    feed(tracker, [], 0.6)
    assert [t.end_reason for t in tracker.ended()] == ["lost"]


def test_low_scores_continue_a_track_but_never_start_one():
    tracker = Tracker()
    for k in range(5):  # weak detections only: no track at all
        assert feed(tracker, [(box(50, 50), 0, 0.3)], k * 0.1) == []
    assert tracker.tracks == []
    tracker = Tracker()
    feed(tracker, [(box(50, 50), 0, 0.9)], 0.0)
    feed(tracker, [(box(52, 50), 0, 0.9)], 0.1)
    for k in range(2, 6):  # the object is half hidden: weak detections, same track
        (track,) = feed(tracker, [(box(50 + 2 * k, 50), 0, 0.3)], k * 0.1)
        assert track.id == 1 and track.score == pytest.approx(0.3)
    assert len(tracker.tracks) == 1
    # below low_score: ignored altogether
    assert feed(tracker, [(box(62, 50), 0, 0.05)], 0.6) == []
    assert tracker.tracks[0].state == "lost"


def test_a_weak_detection_continues_a_lost_track_only_where_it_overlaps_well():
    tracker = Tracker()
    feed(tracker, [(box(50, 50), 0)], 0.0)
    feed(tracker, [(box(50, 50), 0)], 0.1)
    feed(tracker, [], 0.2)  # missed once (hidden), then seen weakly
    assert feed(tracker, [(box(75, 50), 0, 0.3)], 0.3) == []  # too little overlap: not this track
    assert tracker.tracks[0].state == "lost"
    (track,) = feed(tracker, [(box(52, 50), 0, 0.3)], 0.4)
    assert track.id == 1 and track.state == "confirmed"


def test_association_is_class_aware_by_default():
    for aware in (True, False):
        tracker = Tracker(TrackerSettings(class_aware=aware))
        feed(tracker, [(box(50, 50), 0)], 0.0)
        feed(tracker, [(box(50, 50), 0)], 0.1)
        out = feed(tracker, [(box(51, 50), 1)], 0.2)  # same place, another class
        if aware:
            assert out == [] and sorted(t.class_id for t in tracker.tracks) == [0, 1]
        else:
            assert [t.id for t in out] == [1]


def test_a_long_gap_between_updates_is_predicted_by_the_real_time_step():
    """100 px/s for one second at 15 fps, then 0.6 s of skipped frames: the object moved 60 px, twice its
    width, so its last box and the new detection do not overlap at all; the prediction by dt still finds it."""
    tracker = Tracker()
    for k in range(16):
        t = k / 15
        (track,) = feed(tracker, [(box(50 + 100 * t, 80), 0)], t) or (None,)
    assert track is not None and track.velocity[0] == pytest.approx(100, rel=0.1)
    last = track.box
    t = 1.0 + 0.6
    new = box(50 + 100 * t, 80)
    assert pairwise_iou(np.array([last]), np.array([new]))[0, 0] == 0.0
    (found,) = feed(tracker, [(new, 0)], t)
    assert found.id == 1 and found.misses == 0
    assert np.allclose(found.box, new, atol=3.0)


def test_the_same_motion_gives_one_id_at_5_and_at_30_fps():
    for fps in (5.0, 30.0):
        tracker = Tracker()
        ids = set()
        for k in range(int(3 * fps)):
            t = k / fps
            cx = 40 + 150 * t  # at 5 fps: a box width per frame, so consecutive boxes never overlap
            cy = 120 + (100 * (t - 1.5) if t > 1.5 else 0)  # turns after 1.5 s
            ids |= {tr.id for tr in feed(tracker, [(box(cx, cy), 0)], t)}
        assert ids == {1}, fps


def test_still_frames_freeze_the_tracks_without_ageing_them():
    tracker = Tracker(TrackerSettings(max_age_s=0.5))
    for k in range(5):
        feed(tracker, [(box(50 + 10 * k, 50), 0)], k * 0.1)
    before = tracker.tracks[0].box
    for k in range(30):  # 3 s without motion: inference skipped
        tracker.still(0.5 + 0.1 * k)
    assert tracker.tracks[0].box == before and tracker.tracks[0].velocity == (0.0, 0.0)
    (track,) = feed(tracker, [(box(90, 50), 0)], 3.5)
    assert track.id == 1 and tracker.ended() == []


def test_close_ends_everything():
    tracker = Tracker()
    feed(tracker, [(box(50, 50), 0), (box(150, 50), 1)], 0.0)
    feed(tracker, [(box(50, 50), 0), (box(150, 50), 1)], 0.1)
    feed(tracker, [(box(250, 50), 0)], 0.2)  # a tentative one too
    ended = tracker.close()
    assert sorted(t.id for t in ended) == [1, 2] and {t.end_reason for t in ended} == {"closed"}
    assert tracker.tracks == []


def test_ids_are_a_sequence_in_order_of_confirmation():
    tracker = Tracker()
    feed(tracker, [(box(50, 50), 0)], 0.0)
    feed(tracker, [(box(50, 50), 0), (box(150, 50), 0)], 0.1)
    out = feed(tracker, [(box(50, 50), 0), (box(150, 50), 0), (box(250, 50), 0)], 0.2)
    assert sorted(t.id for t in out) == [1, 2]
    out = feed(tracker, [(box(50, 50), 0), (box(150, 50), 0), (box(250, 50), 0)], 0.3)
    assert {t.detection: t.id for t in out} == {0: 1, 1: 2, 2: 3}


def test_bad_input_says_what_is_wrong():
    tracker = Tracker()
    with pytest.raises(ValueError, match="one entry per detection"):
        tracker.update(np.zeros((2, 4)), [0.9], [0, 0], 0.0)
    with pytest.raises(ValueError, match="boxes"):
        tracker.update(np.zeros((2, 3)), [0.9, 0.9], [0, 0], 0.0)
    with pytest.raises(ValueError, match="finite"):
        tracker.update(np.zeros((0, 4)), [], [], float("nan"))
    with pytest.raises(ValueError, match="min_hits"):
        TrackerSettings(min_hits=0)
    assert tracker.update(np.zeros((0, 4)), [], [], 0.0) == []


def test_assign_max_is_optimal():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n, m = (int(v) for v in rng.integers(1, 6, 2))
        w = rng.random((n, m)) * (rng.random((n, m)) < 0.6)
        rows, cols = assign_max(w, 0.1)
        assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
        assert (w[rows, cols] >= 0.1).all()
        allowed = np.where(w >= 0.1, w, 0.0)
        if n <= m:
            best = max(sum(allowed[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
        else:
            best = max(sum(allowed[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m))
        assert w[rows, cols].sum() == pytest.approx(best)


def test_assign_max_prefers_the_better_total_over_the_greedy_pick():
    # greedy takes 0.9 first and leaves 0.1 + nothing; the optimum is 0.8 + 0.8
    w = np.array([[0.9, 0.8], [0.8, 0.0]])
    rows, cols = assign_max(w, 0.05)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (1, 0)]


def count_id_switches(truth, outputs, iou_threshold=0.5):
    """Brute-force CLEAR-MOT counts: per frame, truth and tracker boxes are matched one to one (largest total
    IoU, at least ``iou_threshold``); a truth object matched to another track ID than the last time it was
    matched is an ID switch. Returns (switches, misses, false positives, truth boxes)."""
    last: dict[int, int] = {}
    switches = misses = false_pos = total = 0
    for frame, (boxes, ids) in zip(truth, outputs, strict=True):
        total += len(frame.boxes)
        pairs = []
        if len(frame.boxes) and len(boxes):
            rows, cols = assign_max(pairwise_iou(frame.boxes, np.array(boxes, float)), iou_threshold)
            pairs = list(zip(rows.tolist(), cols.tolist(), strict=True))
        misses += len(frame.boxes) - len(pairs)
        false_pos += len(boxes) - len(pairs)
        for i, j in pairs:
            who = int(frame.track_ids[i])
            switches += who in last and last[who] != ids[j]
            last[who] = ids[j]
    return switches, misses, false_pos, total


def run_tracker(dets, settings=None):
    tracker = Tracker(settings)
    outputs = []
    for d in dets:
        tracks = tracker.update(d.boxes, d.scores, d.class_ids, d.t)
        outputs.append(([t.box for t in tracks], [t.id for t in tracks]))
    return outputs


def test_the_id_switch_counter_counts():
    video = render_tracks(30, seed=0, images=False)
    truth = video.truth
    perfect = [(f.boxes.tolist(), f.track_ids.tolist()) for f in truth]
    assert count_id_switches(truth, perfect) == (0, 0, 0, sum(len(f.boxes) for f in truth))
    swapped = [(b, [i if k < 15 else i + 100 for i in ids]) for k, (b, ids) in enumerate(perfect)]
    switches, *_ = count_id_switches(truth, swapped)
    assert switches == len(set(truth[14].track_ids.tolist()) & set(truth[15].track_ids.tolist()))


@pytest.mark.parametrize("fps", [5.0, 15.0])
def test_no_id_switch_on_clean_detections_of_a_synthetic_video(fps):
    video = render_tracks(int(12 * fps), seed=1, fps=fps, images=False)
    clean = noisy_detections(
        video, jitter=0, miss_rate=0, false_positives=0, occlusion_miss=0, occlusion_score=0, score_std=0
    )
    switches, misses, false_pos, total = count_id_switches(video.truth, run_tracker(clean))
    assert switches == 0
    assert false_pos == 0
    assert misses <= 0.03 * total  # the first frame of every object (tentative), nothing more


def test_few_id_switches_on_noisy_detections():
    video = render_tracks(240, seed=2, fps=15.0, images=False)
    noisy = noisy_detections(video, seed=2)  # jitter, misses, weak occluded objects, false positives
    switches, misses, false_pos, total = count_id_switches(video.truth, run_tracker(noisy))
    true_dets = sum(int((d.truth_ids >= 0).sum()) for d in noisy)
    assert switches <= 3
    assert false_pos <= 0.01 * total
    assert total - misses >= 0.95 * true_dets  # nearly every true detection ends up in a track


def test_the_tracking_bench_runs_without_the_third_party_trackers():
    """In the project's environment only ``ours`` imports; the bench still scores it with its built-in count."""
    from edgedet.cli import build_parser
    from edgedet.edge.bench import tracking_bench

    small = ["--seeds", "1", "--seconds", "3", "--fps", "5", "--objects", "5", "--cost-seconds", "2"]
    args = build_parser().parse_args(["bench", "tracking", "--trackers", "ours", *small])
    args.rounds = 1
    assert tracking_bench.cli(args) == 0
    adapters, missing = tracking_bench.make_adapters(["ours", "norfair-frigate"])
    assert adapters[0].name == "ours"
    assert len(adapters) == 2 or "norfair" in missing["norfair-frigate"]

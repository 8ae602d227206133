"""Object events: one ``new`` per object, throttled ``update``s, an ``end`` with its summary, zone
transitions, stationary objects; and the best-snapshot store with its budget."""

from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace

import numpy as np

from edgedet.edge.camera.objects import ObjectEvents, ObjectSettings
from edgedet.edge.camera.snapshots import SnapshotSettings, SnapshotStore
from edgedet.edge.camera.zones import ZoneEvent, ZoneUpdate


def track(track_id, box, score=0.8, class_id=0, **kw):
    return SimpleNamespace(id=track_id, box=box, score=score, class_id=class_id, first_t=0.0, first_box=box, **kw)


def walk(events: ObjectEvents, frames):
    out = []
    for t, tracks, ended, zone_events in frames:
        out += events.update(tracks, ended, ZoneUpdate(zone_events, {}), t)
    return out


def test_one_new_then_only_changes_then_end():
    objects = ObjectEvents("door", ["person"], ObjectSettings(update_interval_s=100, stationary_s=3), run_id="r")
    frames = []
    for i in range(20):  # 10 fps, walking right 5 px a frame
        x = 10 + 5 * i
        frames.append((i * 0.1, [track(1, (x, 10, x + 20, 50))], [], []))
    frames.append((2.0, [], [SimpleNamespace(id=1, end_reason="lost")], []))
    events = walk(objects, frames)
    assert [e["type"] for e in events] == ["new", "end"]  # 20 frames, 2 messages
    new, end = events
    assert new["id"] == end["id"] == "r-1" and new["label"] == "person" and not new["stationary"]
    assert end["reason"] == "lost" and end["duration_s"] == 1.9
    assert end["first_box"] == [10, 10, 30, 50] and end["last_box"] == [105, 10, 125, 50]
    assert objects.live == {}


def test_updates_on_zone_change_score_rise_stationary_and_interval():
    s = ObjectSettings(update_interval_s=5, score_step=0.05, stationary_s=2, stationary_fraction=0.1)
    objects = ObjectEvents("cam", ["car"], s, run_id="r")
    box = (100, 100, 200, 150)
    events = walk(objects, [(0.0, [track(7, box, 0.6)], [], [])])
    assert [e["type"] for e in events] == ["new"]
    assert walk(objects, [(0.5, [track(7, box, 0.62)], [], [])]) == []  # +0.02: below the step
    events = walk(objects, [(1.0, [track(7, box, 0.7)], [], [])])
    assert [(e["type"], e["reason"]) for e in events] == [("update", "score")] and events[0]["best_score"] == 0.7
    events = walk(objects, [(1.5, [track(7, box, 0.7)], [], [ZoneEvent("enter", "drive", 7, "car")])])
    assert [e["type"] for e in events] == ["update", "enter"] and events[0]["zones"] == ["drive"]
    events = walk(objects, [(2.1, [track(7, (105, 100, 205, 150), 0.7)], [], [])])  # moved 5 px < 10 px
    assert [(e["type"], e["reason"]) for e in events] == [("update", "stationary")] and events[0]["stationary"]
    assert not objects.moving()
    assert walk(objects, [(4.0, [track(7, box, 0.7)], [], [])]) == []
    events = walk(objects, [(7.2, [track(7, box, 0.7)], [], [])])  # 5 s since the last update (2.1)
    assert [(e["type"], e["reason"]) for e in events] == [("update", "interval")]
    events = walk(objects, [(7.5, [track(7, (150, 100, 250, 150), 0.7)], [], [])])  # drives off: 50 px
    assert events[0]["reason"] == "stationary" and not events[0]["stationary"] and objects.moving()
    end = objects.end_all(8.0, "closed")
    assert end[0]["zones_visited"] == ["drive"] and end[0]["reason"] == "closed"


def test_zone_exit_of_a_track_not_seen_this_frame_and_unknown_ids():
    objects = ObjectEvents("cam", ["a", "b"], run_id="r")
    walk(objects, [(0.0, [track(3, (0, 0, 10, 10), class_id=1)], [], [ZoneEvent("enter", "z", 3, "b")])])
    events = walk(objects, [(0.1, [], [], [ZoneEvent("exit", "z", 3, "b", lost=True)])])
    assert [(e["type"], e["zone"], e["label"]) for e in events] == [("exit", "z", "b")]
    assert objects.end(99, 1.0, "lost") == []


def test_snapshot_called_on_each_new_best(tmp_path):
    calls = []
    objects = ObjectEvents("cam", ["x"], run_id="r", snapshot=lambda eid, t: calls.append((eid, t.score)) or "/s")
    walk(objects, [(i * 0.1, [track(1, (0, 0, 9, 9), score)], [], []) for i, score in enumerate((0.5, 0.52, 0.6))])
    assert calls == [("r-1", 0.5), ("r-1", 0.6)]


def test_snapshot_store_writes_atomically_and_prunes_oldest_but_never_live(tmp_path):
    live = {"r-2"}
    store = SnapshotStore(SnapshotSettings(dir=str(tmp_path), max_bytes=1), live=lambda: live)
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    assert store.save("r-1", frame, (10, 10, 50, 60), "x")
    assert store.path("r-1") is not None and store.path("r-1", crop=True) is not None
    past = time.time() - 100
    for p in tmp_path.glob("r-1*"):
        os.utime(p, (past, past))
    assert store.save("r-2", frame, (0, 0, 160, 120), "x")
    deleted = store.prune(force=True)
    assert sorted(p.name for p in deleted) == ["r-1-crop.jpg", "r-1.jpg"]  # over budget: the oldest
    assert store.path("r-2") is not None  # over budget too, but alive
    assert store.path("../etc/passwd") is None and not list(tmp_path.glob("*.tmp"))


def test_snapshot_store_on_a_readonly_folder_counts_and_goes_on(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = SnapshotStore(SnapshotSettings(dir=str(blocker / "sub")))
    assert not store.save("r-1", np.zeros((8, 8, 3), np.uint8), (0, 0, 4, 4)) and store.errors == 1


def test_home_assistant_discovery_reads_the_retained_counts():
    from edgedet.edge.camera.config import MqttConfig
    from edgedet.edge.camera.sinks import discovery_messages

    config = MqttConfig(host="b", topic_prefix="home/cams", discovery=True)
    messages = discovery_messages(config, "front", {"drive-way": ["car", "person"]})
    assert len(messages) == 4  # an occupancy and a count sensor per zone and label
    occupancy = json.loads(messages["homeassistant/binary_sensor/edgedet_front_drive_way_car/config"])
    assert occupancy["state_topic"] == "home/cams/front/drive-way/car" and occupancy["device_class"] == "occupancy"
    assert occupancy["availability"][0]["topic"] == "home/cams/front/status"
    count = json.loads(messages["homeassistant/sensor/edgedet_front_drive_way_person/config"])
    assert count["state_topic"] == "home/cams/front/drive-way/person" and count["unit_of_measurement"] == "objects"
    assert len({json.loads(m)["unique_id"] for m in messages.values()}) == 4


def test_the_gate_settles_before_the_stationary_flag():
    """``moving(t, settle_s)``: an object that stopped ``settle_s`` ago no longer keeps the model running,
    long before it is flagged ``stationary``; one that moves again does at once."""
    objects = ObjectEvents("cam", ["car"], ObjectSettings(stationary_s=10, stationary_fraction=0.1), run_id="r")
    walk(objects, [(0.0, [track(1, (0, 0, 100, 50))], [], [])])
    walk(objects, [(1.0, [track(1, (40, 0, 140, 50))], [], [])])  # moved 40 px: anchor at t = 1
    walk(objects, [(2.5, [track(1, (42, 0, 142, 50))], [], [])])  # 2 px: stays put
    assert objects.moving(2.9, settle_s=2.0) and not objects.moving(3.1, settle_s=2.0)
    assert objects.moving(3.1)  # not yet `stationary` (10 s)
    walk(objects, [(3.2, [track(1, (80, 0, 180, 50))], [], [])])
    assert objects.moving(3.3, settle_s=2.0)

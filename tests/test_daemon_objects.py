"""The daemon speaks in objects, for real: a generated video with ground-truth tracks, a detector that
sees exactly the ground truth of each frame (so this tests the daemon, not a model), the real capture,
tracker, zones, snapshots, events file and HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest

from edgedet.edge.camera.config import load_config
from edgedet.edge.camera.daemon import Daemon
from edgedet.edge.datasets.synthetic_tracks import render_tracks, write_video
from edgedet.edge.runtime.detector import Detection, StageTimings


class TruthDetector:
    """Returns the ground truth of the frame it is given (frames are told apart by their index)."""

    def __init__(self, video) -> None:
        self.video, self.labels = video, video.classes
        self.last_timings = StageTimings(1.0, 1.0, 1.0)
        self.by_frame = {frame.tobytes()[:4096]: i for i, frame in enumerate(video.frames)}

    def detect(self, image):
        i = self.by_frame.get(image.tobytes()[:4096])
        if i is None:  # a re-encoded frame: the nearest by pixels
            i = int(np.argmin([np.abs(f.astype(int) - image).mean() for f in self.video.frames]))
        truth = self.video.truth[i]
        return [
            Detection(tuple(map(float, b)), 0.9, int(c), self.labels[int(c)])
            for b, c in zip(truth.boxes, truth.labels, strict=True)
        ]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    v = render_tracks(frames=60, size=(320, 240), seed=3, fps=15.0, num_objects=3, flicker=False, noise=0.0)
    path = write_video(tmp_path_factory.mktemp("video") / "tracks.avi", v)
    return v, path


def get(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read()


def test_objects_zones_snapshots_and_http(tmp_path, video):
    v, path = video
    config = load_config(
        None,
        {
            "model": "unused.onnx",
            "source": str(path),
            "source_fps": 15,
            "loop": False,
            "http.port": 0,
            "events.path": str(tmp_path / "events.jsonl"),
            "snapshots.dir": str(tmp_path / "snaps"),
            "zones": [{"name": "left", "polygon": [[0, 0], [160, 0], [160, 240], [0, 240]], "inertia": 2}],
            "pipeline": False,
        },
    )
    daemon = Daemon(config, detector=TruthDetector(v))
    daemon.start()
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while daemon.capture.loops == 0 and daemon.capture.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        host, port = daemon.http.address
        status, body = get(f"http://{host}:{port}/events?limit=500")
        events = json.loads(body)
        assert status == 200 and events
        new = [e for e in events if e["type"] == "new"]
        assert new and all(e["snapshot"] == f"/events/{e['id']}/snapshot.jpg" for e in new)
        status, jpeg = get(f"http://{host}:{port}{new[0]['snapshot']}")
        assert status == 200 and cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (240, 320, 3)
        status, crop = get(f"http://{host}:{port}{new[0]['snapshot']}?crop=1")
        assert status == 200 and len(crop) < len(jpeg)
        try:
            get(f"http://{host}:{port}/events/nope-1/snapshot.jpg")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
        else:
            raise AssertionError("expected 404")
    finally:
        daemon.stop()
        runner.join(timeout=5)
        daemon.close()
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    objects = [e for e in lines if e["type"] != "detections"]
    truth_tracks = {int(t) for frame in v.truth for t in frame.track_ids}
    starts = [e for e in objects if e["type"] == "new"]
    ends = [e for e in objects if e["type"] == "end"]
    assert {e["id"] for e in starts} == {e["id"] for e in ends}  # every object ended (lost, looped or stopped)
    assert len(truth_tracks) <= len(starts) <= len(truth_tracks) + 2  # about one alert per real object
    frames_with_objects = sum(1 for frame in v.truth if len(frame.track_ids))
    assert len(objects) < frames_with_objects  # objects, not frames
    enters = [e for e in objects if e["type"] == "enter"]
    exits = [e for e in objects if e["type"] == "exit"]
    assert all(e["zone"] == "left" for e in enters + exits)
    for e in ends:
        assert e["duration_s"] >= 0 and e["first_box"] and e["last_box"] and "zones_visited" in e
    for e in enters:  # whoever entered the left half has its bottom-centre there
        x = (e["box"][0] + e["box"][2]) / 2
        assert x < 170

"""The daemon's detector loop in-process, with a stand-in detector: failures are counted and survived,
events go to the sinks only when there is something to say, ``max_fps`` caps the rate, ``stop`` is quick."""

import threading
import time

import cv2
import numpy as np
import pytest
from tests_support import detection_events

from edgedet.edge.camera.capture import Frame
from edgedet.edge.camera.config import load_config
from edgedet.edge.camera.daemon import Daemon
from edgedet.edge.runtime.detector import Detection, StageTimings


class FakeDetector:
    """Finds one box on odd frames, none on even ones, and fails on frames whose first pixel is 255."""

    labels = ("thing",)

    def __init__(self) -> None:
        self.last_timings = StageTimings()
        self.calls = 0

    def detect(self, frame):
        self.calls += 1
        if frame[0, 0, 0] == 255:
            raise RuntimeError("simulated runtime failure")
        self.last_timings = StageTimings(1.0, 2.0, 0.5)
        if int(frame[0, 0, 1]) % 2:
            return [Detection((1.0, 2.0, 10.0, 12.0), 0.9, 0, "thing")]
        return []


def make_daemon(tmp_path, **extra) -> Daemon:
    overrides = {
        "model": "unused.onnx",
        "source": str(tmp_path / "video.avi"),
        "events.path": str(tmp_path / "events.jsonl"),
        "http.enabled": False,
        **extra,
    }
    return Daemon(load_config(None, overrides), detector=FakeDetector())


def frame(i: int, first: int = 0) -> Frame:
    image = np.zeros((24, 32, 3), np.uint8)
    image[0, 0] = (first, i % 256, 0)
    return Frame(image, i, i, 1700000000.0 + i)


def test_process_emits_events_only_with_detections_and_survives_failures(tmp_path):
    daemon = make_daemon(tmp_path)
    daemon.start()
    try:
        events = [daemon.process(frame(i)) for i in range(6)]
        assert daemon.process(frame(6, first=255)) is None  # the detector raised: counted, not fatal
        assert daemon.process(frame(7)) is not None
    finally:
        daemon.capture.stop()
        daemon.close()
    assert all(e is not None for e in events)
    value = lambda name: daemon.metrics.get_sample_value(name, {"camera": "camera"})  # noqa: E731
    assert value("edgedet_inference_errors_total") == 1 and value("edgedet_frames_processed_total") == 7
    assert value("edgedet_detections_total") == 4
    written = detection_events(tmp_path / "events.jsonl")
    assert [e["frame_index"] for e in written] == [1, 3, 5, 7]  # include_empty off: frames with detections
    assert daemon.results.event()["frame_index"] == 7  # /detections shows every processed frame
    index, jpeg = daemon.results.jpeg()
    assert index == 7 and cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (24, 32, 3)


def test_include_empty_emits_every_frame(tmp_path):
    daemon = make_daemon(tmp_path, **{"events.include_empty": True})
    daemon.start()
    try:
        for i in range(4):
            daemon.process(frame(i))
    finally:
        daemon.close()
    assert len(detection_events(tmp_path / "events.jsonl")) == 4


def test_run_caps_the_rate_and_stops_quickly(tmp_path):
    daemon = make_daemon(tmp_path, max_fps=20)
    runner = threading.Thread(target=daemon.run)
    runner.start()
    feeder_stop = threading.Event()

    def feed():  # a camera at ~200 fps
        i = 0
        while not feeder_stop.is_set():
            daemon.slot.put(frame(i))
            i += 1
            time.sleep(0.005)

    feeder = threading.Thread(target=feed)
    feeder.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    daemon.stop()
    runner.join(timeout=2.0)
    stopped_in = time.monotonic() - t0
    feeder_stop.set()
    feeder.join()
    daemon.close()
    assert not runner.is_alive() and stopped_in < 0.5
    assert 12 <= daemon.detector.calls <= 23  # ~20 per second, not ~200
    assert daemon.slot.dropped > 100  # the rest were replaced by newer frames, never queued


def test_health_reports_a_stalled_loop(tmp_path):
    daemon = make_daemon(tmp_path, stall_timeout_s=1.0)
    ok, status = daemon.health()
    assert ok and status["status"] == "ok" and status["source_state"] == "connecting"
    daemon.heartbeat -= 5.0
    ok, status = daemon.health()
    assert not ok and status["status"] == "stalled"


def test_gstreamer_source_without_gstreamer_is_a_start_error(tmp_path):
    from edgedet.edge.camera.sources import gstreamer_available

    if gstreamer_available():
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(ValueError, match="source: a GStreamer pipeline needs OpenCV built with GStreamer"):
        make_daemon(tmp_path, source="videotestsrc ! videoconvert ! appsink")

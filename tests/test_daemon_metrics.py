"""The daemon's /metrics through prometheus_client: parseable exposition, the metric names, types, labels and
help of the stdlib registry it replaced (dashboards depend on them), process metrics, one registry per daemon."""

import sys

import numpy as np
import prometheus_client
import pytest
from prometheus_client.exposition import choose_encoder
from prometheus_client.parser import text_string_to_metric_families

from edgedet.edge.camera.capture import Frame
from edgedet.edge.camera.config import load_config
from edgedet.edge.camera.daemon import Daemon
from edgedet.edge.camera.metrics import CONTENT_TYPE, CounterFunction, Registry
from edgedet.edge.runtime.detector import Detection, StageTimings

# What the hand-written registry exposed (taken from it before the switch): family -> (type, label names, help).
# Families as the parser names them: a counter ``x_total`` is family ``x``. Per-camera series gained the
# ``camera`` label with several cameras per daemon (names, types and help unchanged); the events file,
# snapshots and uptime are the process's.
CAMERA = {"camera"}
DAEMON_METRICS = {
    "edgedet_frames_captured": ("counter", CAMERA, "Frames read from the source."),
    "edgedet_frames_processed": ("counter", CAMERA, "Frames run through the detector."),
    "edgedet_frames_dropped": ("counter", CAMERA, "Frames replaced by a newer one before the detector took them."),
    "edgedet_source_reconnects": ("counter", CAMERA, "Attempts to re-open the source after it failed."),
    "edgedet_source_loops": ("counter", CAMERA, "Times a video file or image folder reached its end."),
    "edgedet_source_up": ("gauge", CAMERA, "1 while the source delivers frames."),
    "edgedet_fps": ("gauge", CAMERA, "Frames processed per second over the last 5 s."),
    "edgedet_inference_latency_seconds": (
        "histogram",
        CAMERA,
        "Detector time per frame (pre-processing + inference + decoding).",
    ),
    "edgedet_stage_latency_seconds": ("histogram", {"camera", "stage"}, "Detector time per frame by stage."),
    "edgedet_detections": ("counter", CAMERA, "Objects detected."),
    "edgedet_inference_errors": ("counter", CAMERA, "Frames the detector failed on."),
    "edgedet_last_frame_timestamp_seconds": ("gauge", CAMERA, "Capture time (Unix) of the newest processed frame."),
    "edgedet_uptime_seconds": ("gauge", set(), "Seconds since the daemon started."),
    "edgedet_events_written": ("counter", set(), "Events written to the events file."),
    "edgedet_events_errors": ("counter", set(), "Events the events file could not take."),
    "edgedet_mqtt_published": ("counter", CAMERA, "Events handed to the MQTT client."),
    "edgedet_mqtt_errors": ("counter", CAMERA, "Events not published (broker down, queue full)."),
    "edgedet_mqtt_connected": ("gauge", CAMERA, "1 while connected to the MQTT broker."),
    # added with object events and motion gating
    "edgedet_frames_skipped": (
        "counter",
        {"camera", "reason"},
        "Frames the motion gate kept from the detector, by reason.",
    ),
    "edgedet_object_events": ("counter", {"camera", "type"}, "Object events by type."),
    "edgedet_objects_active": ("gauge", CAMERA, "Objects being tracked now."),
    "edgedet_detections_filtered": ("counter", CAMERA, "Detections dropped by the filters and ignore masks."),
    "edgedet_snapshot_errors": ("counter", set(), "Snapshots that could not be written (full or read-only disk)."),
    # added with event clips: a series only for the cameras that record clips
    "edgedet_clips_written": ("counter", CAMERA, "Event clips written (finished and named)."),
    "edgedet_clips_failed": (
        "counter",
        CAMERA,
        "Event clips stopped by an error (full or read-only disk); their partial files removed.",
    ),
    "edgedet_clips_skipped": ("counter", CAMERA, "Objects without a clip: clips.max_concurrent were being written."),
    "edgedet_clip_frames_dropped": ("counter", CAMERA, "Frames the clip writer could not take (its queue was full)."),
    "edgedet_clip_errors": ("counter", CAMERA, "Clip writer errors of any kind (logged)."),
    "edgedet_clips_recording": ("gauge", CAMERA, "Event clips being written now."),
    "edgedet_clip_buffer_bytes": ("gauge", CAMERA, "JPEG bytes held by the pre-roll buffer."),
    "edgedet_clip_buffer_frames": ("gauge", CAMERA, "Frames held by the pre-roll buffer."),
    "edgedet_clip_frames_queued": (
        "gauge",
        CAMERA,
        "Frames waiting for the clip writer (queued, and behind a pre-roll being written).",
    ),
}
CLIP_METRICS = {name for name in DAEMON_METRICS if name.startswith("edgedet_clip")}
# Added by the library's ProcessCollector (Linux only: it reads /proc) and PlatformCollector.
PROCESS_METRICS = {
    "process_virtual_memory_bytes": "gauge",
    "process_resident_memory_bytes": "gauge",
    "process_start_time_seconds": "gauge",
    "process_cpu_seconds": "counter",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
}
PLATFORM_METRICS = {"python_info": "gauge"}
LATENCY_LE = ["0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "+Inf"]


class FakeDetector:
    labels = ("thing",)
    last_timings = StageTimings(1.0, 2.0, 0.5)


def make_daemon(tmp_path, **extra) -> Daemon:
    overrides = {"model": "unused.onnx", "source": str(tmp_path / "video.avi"), "http.enabled": False, **extra}
    return Daemon(load_config(None, overrides), detector=FakeDetector())


def publish(daemon: Daemon, n: int) -> None:
    for i in range(n):
        detections = [Detection((1.0, 2.0, 10.0, 12.0), 0.9, 0, "thing")] * (i % 2)
        daemon.publish(Frame(np.zeros((24, 32, 3), np.uint8), i, i, 1700000000.0 + i), detections)


def families(daemon: Daemon) -> dict:
    return {f.name: f for f in text_string_to_metric_families(daemon.metrics.render())}


@pytest.fixture
def as_the_cli():
    """``edgedet camera`` turns the library's ``*_created`` series off (process-wide); so does this test."""
    prometheus_client.disable_created_metrics()
    yield
    prometheus_client.enable_created_metrics()


def test_daemon_metrics_keep_names_types_labels_and_help(tmp_path, as_the_cli):
    daemon = make_daemon(tmp_path)
    publish(daemon, 5)
    found = families(daemon)
    expected_names = set(DAEMON_METRICS) | set(PLATFORM_METRICS)
    if sys.platform.startswith("linux"):
        expected_names |= set(PROCESS_METRICS)
    assert set(found) == expected_names
    for name, (kind, labels, help_text) in DAEMON_METRICS.items():
        family = found[name]
        assert (family.type, family.documentation) == (kind, help_text), name
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, sample
    for name, kind in {**PROCESS_METRICS, **PLATFORM_METRICS}.items():
        assert name not in found or found[name].type == kind, name

    value = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in found.values() for s in f.samples}
    cam = (("camera", "camera"),)
    assert value[("edgedet_frames_processed_total", cam)] == 5
    assert value[("edgedet_detections_total", cam)] == 2
    assert value[("edgedet_last_frame_timestamp_seconds", cam)] == 1700000004.0
    assert value[("edgedet_inference_latency_seconds_count", cam)] == 5
    assert value[("edgedet_inference_latency_seconds_sum", cam)] == pytest.approx(5 * 3.5e-3)
    stages = {s.labels["stage"] for s in found["edgedet_stage_latency_seconds"].samples}
    assert stages == {"preprocess", "inference", "decode"}
    buckets = [s for s in found["edgedet_inference_latency_seconds"].samples if s.name.endswith("_bucket")]
    assert [s.labels["le"] for s in buckets] == LATENCY_LE
    assert [s.value for s in buckets] == [0, 0, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5]  # 3.5 ms each
    stage_inference = {
        s.labels["le"]: s.value
        for s in found["edgedet_stage_latency_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["stage"] == "inference"
    }
    assert stage_inference["0.001"] == 0 and stage_inference["0.0025"] == 5  # 2 ms each


def test_clip_series_only_for_a_camera_with_clips(tmp_path, as_the_cli):
    without = families(make_daemon(tmp_path))
    assert all(without[name].samples == [] for name in CLIP_METRICS)  # declared, no series
    daemon = make_daemon(tmp_path, **{"clips.enabled": True, "clips.dir": str(tmp_path / "clips")})
    recorder = daemon.cameras[0].open_clips()
    try:
        publish(daemon, 3)
        assert recorder is not None and recorder.flush(5.0)
        found = families(daemon)
        for name in CLIP_METRICS:
            (sample,) = found[name].samples  # its type and help are checked above
            assert sample.labels == {"camera": "camera"}, name
        assert found["edgedet_clip_buffer_frames"].samples[0].value == 3
        assert found["edgedet_clip_buffer_bytes"].samples[0].value == recorder.bytes_buffered > 0
    finally:
        daemon.close()


def test_computed_metrics_are_read_at_scrape_time(tmp_path):
    daemon = make_daemon(tmp_path)
    before = families(daemon)
    daemon.slot.dropped += 3
    daemon.started -= 100.0
    after = families(daemon)
    assert after["edgedet_frames_dropped"].samples[0].value == before["edgedet_frames_dropped"].samples[0].value + 3
    assert after["edgedet_uptime_seconds"].samples[0].value >= 100
    assert after["edgedet_fps"].samples[0].value == 0  # nothing processed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ProcessCollector reads /proc")
def test_process_metrics_show_memory_and_cpu(tmp_path):
    found = families(make_daemon(tmp_path))
    assert found["process_resident_memory_bytes"].samples[0].value > 10e6  # a Python process with numpy, cv2
    assert found["process_cpu_seconds"].samples[0].value > 0
    assert found["process_open_fds"].samples[0].value > 0


def test_each_daemon_has_its_own_registry(tmp_path):
    first, second = make_daemon(tmp_path / "a"), make_daemon(tmp_path / "b")  # the global REGISTRY would refuse
    publish(first, 3)
    assert first.metrics is not second.metrics
    cam = {"camera": "camera"}
    assert first.metrics.get_sample_value("edgedet_frames_processed_total", cam) == 3
    assert second.metrics.get_sample_value("edgedet_frames_processed_total", cam) == 0
    assert second.metrics.get_sample_value("edgedet_inference_latency_seconds_count", cam) == 0
    assert prometheus_client.REGISTRY.get_sample_value("edgedet_frames_processed_total") is None


def test_counter_function_reads_its_function_and_names_are_checked():
    registry = Registry()
    count = [0]
    CounterFunction("x_things_total", "Things.", lambda: count[0], registry)
    count[0] = 7
    assert registry.get_sample_value("x_things_total") == 7
    text = registry.render()
    assert "# TYPE x_things_total counter\nx_things_total 7.0\n" in text
    assert "x_things_created" not in text  # a computed counter has no creation time
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        CounterFunction("x_things_total", "Again.", lambda: 0, registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        prometheus_client.Gauge("x_things_total", "Again.", registry=registry)


def test_content_type_is_what_the_library_serves_for_this_format():
    assert CONTENT_TYPE == choose_encoder("")[1]  # generate_latest's format, as the library's own handler says
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")

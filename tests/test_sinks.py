"""Event sinks: the JSON-lines file (rotation by size, stdout, flushed per event, whole lines only on a full
disk), the MQTT queue policy (drop the oldest) and the event payload."""

import errno
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from edgedet.edge.camera.capture import Frame
from edgedet.edge.camera.events import build_event, iso_time
from edgedet.edge.camera.sinks import DropOldestQueue, JsonLinesSink, MqttSink
from edgedet.edge.runtime.detector import Detection, StageTimings


def event(i: int, pad: int = 0) -> dict:
    return {"frame_index": i, "pad": "x" * pad}


def test_json_lines_rotate_by_size_and_keep_backups(tmp_path):
    path = tmp_path / "logs" / "events.jsonl"
    sink = JsonLinesSink(str(path), max_bytes=4096, backups=2)
    for i in range(40):
        sink.emit(event(i, 300))
    # flushed per event: readable before close
    assert json.loads(path.read_text().splitlines()[-1])["frame_index"] == 39
    sink.close()
    files = [path, path.with_name("events.jsonl.1"), path.with_name("events.jsonl.2")]
    assert all(f.exists() for f in files) and not path.with_name("events.jsonl.3").exists()
    assert all(f.stat().st_size <= 4096 for f in files)
    indices = [json.loads(line)["frame_index"] for f in reversed(files) for line in f.read_text().splitlines()]
    assert indices == list(range(40 - len(indices), 40))  # newest kept, in order, none split
    assert sink.written == 40 and sink.errors == 0


def test_no_backups_truncates_and_appends_across_restarts(tmp_path):
    path = tmp_path / "e.jsonl"
    sink = JsonLinesSink(str(path), max_bytes=4096, backups=0)
    for i in range(30):
        sink.emit(event(i, 300))
    sink.close()
    assert not path.with_name("e.jsonl.1").exists() and path.stat().st_size <= 4096
    again = JsonLinesSink(str(path), max_bytes=0)  # appends; 0: never rotate
    again.emit(event(99))
    again.close()
    assert json.loads(path.read_text().splitlines()[-1])["frame_index"] == 99


def test_stdout_sink(capsys):
    sink = JsonLinesSink("-")
    sink.emit(event(1))
    sink.close()
    assert json.loads(capsys.readouterr().out) == event(1)


def test_unwritable_events_path_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    try:
        JsonLinesSink(str(blocker / "events.jsonl"))
    except ValueError as exc:
        assert "events.path: cannot write" in str(exc)
    else:
        raise AssertionError("expected a ValueError")


def test_event_payload():
    frame = Frame(np.zeros((48, 64, 3), np.uint8), index=7, position=3, timestamp=1700000000.25)
    det = Detection((1.0, 2.0, 30.0, 40.0), 0.9, 0, "face")
    ev = build_event("cam", "video.avi", frame, [det], StageTimings(1.0, 2.0, 0.5))
    assert ev == {
        "type": "detections",
        "camera": "cam",
        "timestamp": 1700000000.25,
        "time": "2023-11-14T22:13:20.250Z",
        "frame_index": 7,
        "source": "video.avi",
        "source_position": 3,
        "width": 64,
        "height": 48,
        "detections": [det.to_dict()],
        "latency_ms": 3.5,
        "timings_ms": {"preprocess": 1.0, "inference": 2.0, "decode": 0.5},
    }
    json.dumps(ev, allow_nan=False)
    assert iso_time(0.999) == "1970-01-01T00:00:00.999Z"


# ------------------------------------------------------------------------- a full disk: no partial line


def read_events(path) -> list[dict]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "the file ends in a partial line"
    return [json.loads(line) for line in text.splitlines()]  # every line whole: a glued one fails here


def test_a_failed_write_is_cut_back_and_the_event_dropped(tmp_path, monkeypatch):
    """ENOSPC after part of a line was written (injected into os.write for the events file only)."""
    import edgedet.edge.camera.sinks as sinks

    path = tmp_path / "events.jsonl"
    sink = JsonLinesSink(str(path), max_bytes=0)
    real_write = os.write
    disk = {"free": None}  # bytes the disk still takes (None: plenty)

    def write(fd, data):
        if fd != sink._file.fileno() or disk["free"] is None:
            return real_write(fd, data)
        if disk["free"] == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, bytes(data[: disk["free"]]))
        disk["free"] -= n
        return n

    monkeypatch.setattr(sinks.os, "write", write)
    for i in range(3):
        sink.emit(event(i))
    disk["free"] = 10  # full after ten more bytes: a partial line, then ENOSPC
    sink.emit(event(3))
    sink.emit(event(4))  # nothing fits
    assert (sink.written, sink.errors) == (3, 2)
    assert [e["frame_index"] for e in read_events(path)] == [0, 1, 2]
    disk["free"] = None  # space again
    sink.emit(event(5))
    sink.close()
    assert [e["frame_index"] for e in read_events(path)] == [0, 1, 2, 5]
    assert (sink.written, sink.errors) == (4, 2)


def test_a_partial_line_left_by_a_crash_is_cut_on_open(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"frame_index": 0}\n{"frame_ind')
    sink = JsonLinesSink(str(path))
    sink.emit(event(1))
    sink.close()
    assert [e["frame_index"] for e in read_events(path)] == [0, 1]


FILL_SCRIPT = r"""
import json, resource, signal, sys
from edgedet.edge.camera.sinks import JsonLinesSink
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit write() fails with EFBIG instead
sink = JsonLinesSink(sys.argv[1], max_bytes=0)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))  # the kernel writes up to 1000 bytes, then refuses
for i in range(40):
    sink.emit({"frame_index": i, "pad": "x" * 20})
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # room again
sink.emit({"frame_index": 99})
sink.close()
print(json.dumps({"written": sink.written, "errors": sink.errors}))
"""


def test_a_file_size_limit_mid_line_leaves_whole_lines_only(tmp_path):
    """A real short write from the kernel: RLIMIT_FSIZE stops a write part-way, as a full disk does."""
    path = tmp_path / "events.jsonl"
    out = subprocess.run(
        [sys.executable, "-c", FILL_SCRIPT, str(path)], capture_output=True, text=True, timeout=60, check=True
    )
    counts = json.loads(out.stdout)
    events = read_events(path)
    assert counts["errors"] >= 10 and counts["written"] + counts["errors"] == 41
    assert [e["frame_index"] for e in events] == [*range(counts["written"] - 1), 99]
    assert path.stat().st_size <= 1000 + len('{"frame_index":99}\n')


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 64 kB tmpfs (needs root and mount; skipped otherwise)."""
    mount = shutil.which("mount")
    if mount is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    where = tmp_path / "tiny"
    where.mkdir()
    done = subprocess.run([mount, "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)  # lazy: a file a failed test left open


def test_a_really_full_disk_leaves_whole_lines_only(tiny_tmpfs):
    path = tiny_tmpfs / "events.jsonl"
    filler = tiny_tmpfs / "filler"
    filler.write_bytes(b"\0" * 16384)
    sink = JsonLinesSink(str(path), max_bytes=0)
    try:
        for i in range(600):  # ~120 bytes each: 48 kB fill up the rest
            sink.emit(event(i, 90))
        assert sink.errors > 0 and sink.written > 100
        events = read_events(path)
        assert [e["frame_index"] for e in events] == list(range(sink.written))
        filler.unlink()  # space again
        sink.emit(event(1000))
    finally:
        sink.close()
    assert [e["frame_index"] for e in read_events(path)] == [*range(len(events)), 1000]


# ------------------------------------------------------------------ MQTT: a full queue drops the oldest


def test_drop_oldest_queue_keeps_the_newest():
    queue = DropOldestQueue(3)
    assert [queue.push(i) for i in range(5)] == [None, None, None, 0, 1]
    assert queue.items() == [2, 3, 4] and len(queue) == 3
    assert queue.peek() == 2 and queue.pop() == 2 and queue.items() == [3, 4]
    with pytest.raises(ValueError):
        DropOldestQueue(0)


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mqtt_without_a_broker_queues_the_newest_qos1_events():
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt (edge extra) publishes the events")
    from edgedet.edge.camera.config import MqttConfig

    sink = MqttSink(
        MqttConfig(host="127.0.0.1", port=unused_port(), qos=1, detections=True), "cam", max_queued=5, reconnect_max_s=1
    )
    try:
        for i in range(8):
            sink.emit({"frame_index": i})
        assert not sink.connected and sink.queued == 5
        assert [json.loads(p)["frame_index"] for _, p in sink._pending.items()] == [3, 4, 5, 6, 7]
        assert sink.published == 8 and sink.errors == 3  # accepted 8; the 3 oldest dropped
    finally:
        sink.close()

    sink = MqttSink(
        MqttConfig(host="127.0.0.1", port=unused_port(), qos=0, detections=True), "cam", max_queued=5, reconnect_max_s=1
    )
    try:
        sink.emit({"frame_index": 0})
        assert sink.queued == 0 and sink.errors == 1  # QoS 0 promises nothing: not queued
    finally:
        sink.close()

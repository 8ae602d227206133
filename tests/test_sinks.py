"""Event sinks: the JSON-lines file (rotation by size, stdout, flushed per event) and the event payload."""

import json

import numpy as np

from edgedet.edge.camera.capture import Frame
from edgedet.edge.camera.events import build_event, iso_time
from edgedet.edge.camera.sinks import JsonLinesSink
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

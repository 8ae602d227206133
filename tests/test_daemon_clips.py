"""Event clips in the daemon: the real ``edgedet camera`` process (and the daemon in-process for several
cameras) on generated videos in which a bright disc passes, with the tiny ONNX model.

An object's ``end`` event names its clip, ``GET /events/<id>/clip.mp4`` serves it (with the token) and it
decodes with its pre-roll; a clip folder that cannot be made or a full disk stops the clips, counted and
logged, never detection; a resolution change mid-clip finishes the clip and goes on; SIGTERM while an
object is live leaves only playable files named as clips.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from test_clips import read_clip
from test_daemon import DaemonProcess, tiny_config, write_video
from test_daemon_cameras import multi_config, running, wait_for

from edgedet.edge.camera.config import load_config
from edgedet.edge.camera.daemon import Daemon
from edgedet.edge.camera.http import HttpApp, HttpServer
from edgedet.edge.camera.latest_result import LatestResult

FPS = 25
PRE_S = 0.6
WHITE = 200  # the disc is (240, 240, 240); nothing else in the frames is that bright in every channel


# ------------------------------------------------------------------------------------------- fixtures


def passing_frames(n: int = 75, first: int = 25, last: int = 55, size: tuple[int, int] = (320, 240)) -> list:
    """A dark scene a bright disc crosses from frame ``first`` to ``last`` (the frame index written in it)."""
    w, h = size
    frames = []
    for i in range(n):
        frame = np.full((h, w, 3), 30, np.uint8)
        if first <= i < last:
            x = round(30 + (i - first) * (w - 60) / max(last - first - 1, 1))
            cv2.circle(frame, (x, h // 2), round(28 * h / 240), (240, 240, 240), -1)
        cv2.putText(frame, str(i), (8, h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 200, 0), 2)
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def passing_video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "pass.avi", passing_frames(), fps=FPS)


def clip_config(model: Path, source: Path, workdir: Path, **clips) -> dict:
    settings = {"enabled": True, "dir": str(workdir / "clips"), "pre_s": PRE_S, "post_s": 0.3, "max_concurrent": 16}
    return tiny_config(model, source, workdir, clips={**settings, **clips}, events={"path": str(workdir / "ev.jsonl")})


def object_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in lines if e["type"] != "detections"]


def has_disc(image: np.ndarray) -> bool:
    return int((image.min(axis=2) > WHITE).sum()) > 200


def visible_files(folder: Path) -> list[Path]:
    """The files named as clips (not the hidden partial ones)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


@pytest.fixture(scope="module")
def clip_daemon(tiny_model, passing_video, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("clips")
    proc = DaemonProcess(workdir, clip_config(tiny_model, passing_video, workdir))
    proc.workdir = workdir
    proc.wait_for(lambda: proc.metrics().get("edgedet_clips_written_total", 0) >= 2, timeout=40, what="2 clips")
    yield proc
    proc.stop()


# ------------------------------------------------------------------------------------------------ tests


def test_an_end_event_names_its_clip_which_is_served_and_plays_with_its_preroll(clip_daemon, tmp_path):
    proc = clip_daemon
    ended = [e for e in object_events(proc.workdir / "ev.jsonl") if e["type"] == "end" and e["clip"]]
    assert ended, proc.log()
    first_frames = []
    for event in ended[:4]:
        assert event["clip"] == f"/events/{event['id']}/clip.mp4"
        status, headers, body = proc.get(event["clip"])
        if status == 404:  # its post-roll may still be running: served once finished
            proc.wait_for(lambda e=event: proc.get(e["clip"])[0] == 200, what=f"the clip of {event['id']}")
            status, headers, body = proc.get(event["clip"])
        assert status == 200 and headers["Content-Type"] == "video/mp4" and body[4:8] == b"ftyp"
        assert int(headers["Content-Length"]) == len(body) > 1000
        (tmp_path / f"{event['id']}.mp4").write_bytes(body)
        frames, fps = read_clip(tmp_path / f"{event['id']}.mp4")
        assert 5 <= fps <= FPS * 1.1  # the rate the frames came at (25 fps, unless the detector fell behind)
        assert len(frames) >= PRE_S * fps, (event, len(frames))  # the pre-roll, then the object's life
        assert frames[0].shape == (240, 320, 3) and any(has_disc(f) for f in frames)
        first_frames.append(frames[0])
    # the first object of a pass was born as the disc came in: its clip starts before, on the empty scene
    assert any(not has_disc(f) for f in first_frames)

    new = {e["id"]: e for e in object_events(proc.workdir / "ev.jsonl") if e["type"] == "new"}
    assert all(new[e["id"]]["clip"] == e["clip"] for e in ended if e["id"] in new)  # the page shows it early
    shown = {e["id"]: e for e in json.loads(proc.get("/events?limit=1000")[2])}
    assert any(e.get("clip") for e in shown.values())


def test_clips_need_the_token_and_unknown_ids_are_404(clip_daemon):
    proc = clip_daemon
    clip = next(e["clip"] for e in object_events(proc.workdir / "ev.jsonl") if e["type"] == "end" and e["clip"])
    assert proc.get(clip, token=None)[0] == 401
    assert proc.get(clip, token="wrong-token-0000")[0] == 401
    for path in ("/events/nope-1/clip.mp4", "/events/.hidden/clip.mp4", "/events/..%2Fx/clip.mp4"):
        status, _, body = proc.get(path)
        assert status == 404 and "no clip of event" in json.loads(body)["error"], path
    folder = proc.workdir / "clips"
    assert all(p.suffix == ".mp4" and ".part" not in p.name for p in visible_files(folder))


def test_clip_metrics_have_the_camera_label(clip_daemon):
    parser = pytest.importorskip("prometheus_client.parser", reason="prometheus-client (dev extra) parses")
    status, _, body = clip_daemon.get("/metrics")
    assert status == 200
    families = {f.name: f for f in parser.text_string_to_metric_families(body.decode())}
    kinds = {
        "edgedet_clips_written": "counter",
        "edgedet_clips_failed": "counter",
        "edgedet_clips_skipped": "counter",
        "edgedet_clip_frames_dropped": "counter",
        "edgedet_clip_errors": "counter",
        "edgedet_clips_recording": "gauge",
        "edgedet_clip_buffer_bytes": "gauge",
        "edgedet_clip_buffer_frames": "gauge",
        "edgedet_clip_frames_queued": "gauge",
    }
    value = {}
    for name, kind in kinds.items():
        assert families[name].type == kind, name
        (sample,) = families[name].samples
        assert sample.labels == {"camera": "test-cam"}, sample
        value[name] = sample.value
    assert value["edgedet_clips_written"] >= 2 and value["edgedet_clips_failed"] == 0
    assert value["edgedet_clip_errors"] == 0
    assert value["edgedet_clip_buffer_bytes"] > 10_000 and value["edgedet_clip_buffer_frames"] >= PRE_S * FPS / 2


@pytest.mark.parametrize("fault", ["unmakeable", "full"])
def test_a_clip_folder_that_cannot_be_written_stops_clips_not_detection(tmp_path, tiny_model, passing_video, fault):
    """A folder under a regular file (root ignores chmod, not this), or a disk 'full' (less than
    ``min_free_bytes`` free): every clip fails, counted and logged; detection and events go on."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    if fault == "unmakeable":
        config = clip_config(tiny_model, passing_video, tmp_path, dir=str(blocker / "clips"))
    else:
        config = clip_config(tiny_model, passing_video, tmp_path, min_free_bytes=10**18)
    proc = DaemonProcess(tmp_path / "run", config)
    try:
        metrics = proc.metrics
        proc.wait_for(lambda: metrics()["edgedet_clips_failed_total"] >= 2, timeout=40, what="failed clips")
        before = metrics()["edgedet_frames_processed_total"]
        proc.wait_for(lambda: metrics()["edgedet_frames_processed_total"] >= before + 10, what="frames go on")
        assert metrics()["edgedet_clips_written_total"] == 0 and metrics()["edgedet_clip_errors_total"] >= 2
        status, _, body = proc.get("/healthz", token=None)
        assert status == 200 and json.loads(body)["status"] == "ok"
        ended = lambda: [e for e in json.loads(proc.get("/events?limit=1000")[2]) if e["type"] == "end"]  # noqa: E731
        proc.wait_for(lambda: ended(), what="an object's end")
        assert all(e["clip"] is None for e in ended())  # no clip to name
        assert proc.get(f"/events/{ended()[0]['id']}/clip.mp4")[0] == 404
    finally:
        assert proc.stop() < 2.0 and proc.proc.returncode == 0
    log = proc.log()
    if fault == "unmakeable":
        assert f"clips: cannot make {blocker / 'clips'}" in log and "ENOTDIR" in log
    else:
        assert "ENOSPC" in log
    assert "detection goes on" in log and "Traceback" not in log
    assert not (tmp_path / "clips").exists() or visible_files(tmp_path / "clips") == []


def test_a_resolution_change_mid_clip_finishes_the_clip_and_goes_on(tmp_path, tiny_model):
    """An image folder whose frames grow from 320x240 to 480x360 while the disc crosses (and shrink back as
    it loops): the open clips end at the change, the next ones have the new size, nothing crashes."""
    folder = tmp_path / "frames"
    folder.mkdir()
    small = passing_frames(60, first=10, last=50)
    large = passing_frames(60, first=10, last=50, size=(480, 360))
    for i in range(60):
        cv2.imwrite(str(folder / f"{i:03d}.png"), small[i] if i < 30 else large[i])
    proc = DaemonProcess(tmp_path / "run", clip_config(tiny_model, folder, tmp_path))
    try:
        metrics = proc.metrics
        proc.wait_for(lambda: "the frame size changed" in proc.log(), timeout=40, what="a clip cut by the change")

        def clip_sizes() -> set:
            return {read_clip(path)[0][0].shape for path in visible_files(tmp_path / "clips") if read_clip(path)[0]}

        proc.wait_for(lambda: (360, 480, 3) in clip_sizes(), timeout=60, what="a clip at the new size")
        assert metrics()["edgedet_clips_failed_total"] == 0
        assert json.loads(proc.get("/healthz", token=None)[2])["status"] == "ok"
    finally:
        assert proc.stop() < 2.0 and proc.proc.returncode == 0
    sizes = set()
    for path in visible_files(tmp_path / "clips"):
        frames, _ = read_clip(path)
        assert frames and len({f.shape for f in frames}) == 1, path  # one size in a clip
        sizes.add(frames[0].shape)
    assert sizes == {(240, 320, 3), (360, 480, 3)}
    assert "Traceback" not in proc.log()


def test_sigterm_while_an_object_is_live_leaves_only_playable_clips(tmp_path, tiny_model):
    """The disc is there all the time: an object is live (its clip open) when SIGTERM comes. The daemon
    stops within 2 s; its clip is finished and plays (or, had it not been in time, left hidden as a partial
    file): nothing broken is named as a clip."""
    video = write_video(tmp_path / "stay.avi", passing_frames(100, first=0, last=100), fps=FPS)
    proc = DaemonProcess(tmp_path / "run", clip_config(tiny_model, video, tmp_path, post_s=5.0))
    proc.wait_for(lambda: proc.metrics()["edgedet_clips_recording"] >= 1, timeout=40, what="a clip being written")
    time.sleep(1.0)  # a second of it
    assert proc.metrics()["edgedet_clips_recording"] >= 1
    elapsed = proc.stop(signal.SIGTERM)
    assert proc.proc.returncode == 0 and elapsed < 2.0, (elapsed, proc.log())
    events = object_events(tmp_path / "ev.jsonl")
    stopped = [e for e in events if e["type"] == "end" and e["reason"] == "stopped" and e["clip"]]
    assert stopped, events
    folder = tmp_path / "clips"
    for path in visible_files(folder):
        assert re.fullmatch(r"[^.][A-Za-z0-9_.-]*-\d+\.mp4", path.name) and ".part" not in path.name, path
        frames, _ = read_clip(path)
        assert len(frames) >= 1, path
    finished = {p.stem for p in visible_files(folder)}
    partial = [p for p in folder.iterdir() if p.name.startswith(".")]
    for event in stopped:  # closed and playable, or not named as a clip
        assert event["id"] in finished or any(p.name.startswith(f".{event['id']}.part") for p in partial), event
    assert sum(e["id"] in finished for e in stopped) >= 1, (partial, proc.log())


# ------------------------------------------------------------------------------------- several cameras


def test_clip_settings_per_camera_and_a_folder_each(tmp_path):
    path = tmp_path / "camera.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": "m.onnx",
                "clips": {"enabled": True, "dir": "/var/lib/edgedet/clips", "pre_s": 2},
                "cameras": [
                    {"name": "door", "source": 0},
                    {"name": "yard", "source": 1, "clips": {"post_s": 9}},
                    {"name": "attic", "source": 2, "clips": {"enabled": False}},
                ],
            }
        )
    )
    door, yard, attic = load_config(path).camera_configs()
    assert (door.clips.dir, door.clips.pre_s, door.clips.post_s) == ("/var/lib/edgedet/clips", 2.0, 5.0)
    assert (yard.clips.pre_s, yard.clips.post_s, attic.clips.enabled) == (2.0, 9.0, False)

    class FakeDetector:
        labels = ("thing",)

    daemon = Daemon(load_config(path), detector=FakeDetector())
    dirs = {c.name: c.clip_settings.dir if c.clip_settings else None for c in daemon.cameras}
    assert dirs == {"door": "/var/lib/edgedet/clips/door", "yard": "/var/lib/edgedet/clips/yard", "attic": None}
    assert daemon.clip_file is not None and all(c.clips is None for c in daemon.cameras)  # made at start
    single = load_config(None, {"model": "m.onnx", "source": 0, "clips.enabled": True, "clips.dir": "/c"})
    (camera,) = Daemon(single, detector=FakeDetector()).cameras
    assert camera.clip_settings.dir == "/c"  # one camera: the folder itself
    assert Daemon(load_config(None, {"model": "m.onnx", "source": 0}), detector=FakeDetector()).clip_file is None
    dots = {"model": "m.onnx", "clips.enabled": True, "clips.dir": "/c", "cameras": [{"name": "..", "source": 0}]}
    with pytest.raises(ValueError, match=r"^cameras\.0\.name: '\.\.' cannot name the folder of its clips$"):
        Daemon(load_config(None, dots), detector=FakeDetector())
    with pytest.raises(ValueError, match=r"cameras\.0\.clips\.dir: required when `enabled` is true"):
        load_config(None, {"model": "m.onnx", "cameras": [{"name": "a", "source": 0, "clips": {"enabled": True}}]})


def test_two_cameras_record_into_their_own_folders(tmp_path, tiny_model, passing_video):
    clips = {"enabled": True, "dir": str(tmp_path / "clips"), "pre_s": PRE_S, "post_s": 0.3, "max_concurrent": 16}
    cameras = [{"name": "a", "source": str(passing_video)}, {"name": "b", "source": str(passing_video)}]
    cameras[1]["clips"] = {"enabled": False}
    config = multi_config(tiny_model, cameras, tmp_path, clips=clips)
    with running(config, tmp_path) as (daemon, client):
        a = daemon.cameras[0]
        wait_for(lambda: a.clips is not None and a.clips.clips_written >= 1, timeout=40, what="a clip of camera a")
        events = json.loads(client.get("/events?limit=1000")[2])
        ended = [e for e in events if e["type"] == "end" and e["camera"] == "a" and e["clip"]]
        assert ended and all("clip" not in e for e in events if e["camera"] == "b")
        event = ended[0]
        wait_for(lambda: client.get(event["clip"])[0] == 200, what="the clip served")
        assert daemon.cameras[1].clips is None
        samples = daemon.metrics.render()
        assert 'edgedet_clips_written_total{camera="a"}' in samples and 'camera="b"' not in "".join(
            line for line in samples.splitlines() if line.startswith("edgedet_clip")
        )
    assert [p.parent.name for p in visible_files(tmp_path / "clips")] == ["a"] * len(visible_files(tmp_path / "clips"))
    assert (tmp_path / "clips" / "a" / f"{event['id']}.mp4").is_file()


def test_the_mjpeg_fallback_is_served_with_its_own_type(tmp_path):
    """Where OpenCV writes MJPEG ``.avi`` clips, the events name ``/events/<id>/clip.avi``: served as AVI."""
    clip = tmp_path / "cam-1-7.avi"
    clip.write_bytes(b"RIFF\x00\x00\x00\x00AVI " + bytes(2000))
    app = HttpApp({"a": LatestResult()}, lambda: "", lambda: (True, {}), threading.Event())
    app.clip_file = lambda event_id: clip if event_id == "cam-1-7" else None
    http = HttpServer("127.0.0.1", 0, app)
    http.start()
    try:
        host, port = http.address
        for path in ("/events/cam-1-7/clip.avi", "/events/cam-1-7/clip.mp4"):
            with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as response:
                assert response.headers["Content-Type"] == "video/x-msvideo" and response.read() == clip.read_bytes()
    finally:
        http.close()

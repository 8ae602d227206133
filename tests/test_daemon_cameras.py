"""Several cameras, one process, one model: the real daemon in-process (real capture threads on generated
video files, the tiny ONNX model, the events file, the HTTP server on 127.0.0.1 and a real HTTP client).

Each camera gets its share of the one detector, its own endpoints and metric series, its own thresholds and
rate, and a camera whose source fails reconnects alone while the others go on.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from test_daemon import (  # the shared fixtures and helpers of the end-to-end daemon tests
    CAMERA,
    REPO,
    TOKEN,
    Subscriber,
    blob_frames,
    broker,  # noqa: F401 (a fixture)
    match,
    write_video,
)
from tests_support import detection_events

from edgedet.edge.camera.capture import Frame
from edgedet.edge.camera.config import load_config
from edgedet.edge.camera.daemon import Daemon
from edgedet.edge.camera.http import HttpApp, HttpServer
from edgedet.edge.camera.latest_result import LatestResult
from edgedet.edge.camera.sources import SourceError
from edgedet.edge.runtime.detector import Detector

# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """Three different scenes (the blob video, mirrored, flipped): each camera's detections are its own."""
    folder = tmp_path_factory.mktemp("videos")
    frames = blob_frames()
    return {
        "a": write_video(folder / "a.avi", frames),
        "b": write_video(folder / "b.avi", [cv2.flip(f, 1) for f in frames]),
        "c": write_video(folder / "c.avi", [cv2.flip(f, 0) for f in frames]),
    }


def multi_config(model: Path, cameras: list[dict], workdir: Path, **extra) -> dict:
    config = {
        "model": str(model),
        "threads": 1,
        "source_fps": 25,
        "http": {"port": 0, "token": TOKEN},
        "events": {"path": str(workdir / "events.jsonl"), "include_empty": True},
        "reconnect": {"initial_s": 0.1, "max_s": 0.3},
        "cameras": cameras,
    }
    config.update(extra)
    return config


class Client:
    def __init__(self, daemon: Daemon) -> None:
        assert daemon.http is not None
        host, port = daemon.http.address
        self.url = f"http://{host}:{port}"

    def get(self, path: str, token: str | None = TOKEN) -> tuple[int, dict, bytes]:
        request = urllib.request.Request(self.url + path)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def json(self, path: str, token: str | None = TOKEN) -> tuple[int, dict]:
        status, _, body = self.get(path, token)
        return status, json.loads(body)


@contextlib.contextmanager
def running(config: dict, workdir: Path, **kwargs) -> Iterator[tuple[Daemon, Client]]:
    """The daemon from ``config`` (written as YAML and loaded as the CLI does), its loop in a thread."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "camera.yaml"
    path.write_text(yaml.safe_dump(config))
    daemon = Daemon(load_config(path), **kwargs)
    daemon.start()
    runner = threading.Thread(target=daemon.run, name="detector-loop", daemon=True)
    runner.start()
    try:
        yield daemon, Client(daemon)
    finally:
        daemon.stop()
        runner.join(timeout=5)
        daemon.close()
        assert not runner.is_alive()


def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def processed(daemon: Daemon) -> dict[str, int]:
    return {c.name: c.processed for c in daemon.cameras}


# ---------------------------------------------------------------------------------------------- config


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "camera.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_top_level_keys_are_every_cameras_defaults(tmp_path):
    path = write(
        tmp_path,
        {
            "model": "m.onnx",
            "max_fps": 4,
            "tracking": {"max_age_s": 2.0, "min_hits": 3},
            "zones": [{"name": "all", "polygon": [[0, 0], [10, 0], [10, 10]]}],
            "cameras": [
                {"name": "door", "source": 0},
                {"name": "yard", "source": "yard.mp4", "max_fps": 0, "tracking": {"min_hits": 1}, "zones": []},
            ],
        },
    )
    door, yard = load_config(path).camera_configs()
    assert (door.name, door.source, door.max_fps, door.tracking.min_hits, [z.name for z in door.zones]) == (
        "door", "0", 4.0, 3, ["all"]
    )  # fmt: skip
    assert (yard.source, yard.max_fps, yard.tracking.min_hits, yard.tracking.max_age_s, yard.zones) == (
        "yard.mp4",
        0.0,
        1,
        2.0,
        [],
    )  # fmt: skip  (a section merges key by key; a list is replaced)
    single = load_config(write(tmp_path, {"model": "m.onnx", "source": 0, "name": "door", "max_fps": 2}))
    (camera,) = single.camera_configs()  # no `cameras`: the top level is the one camera, as before
    assert (camera.name, camera.source, camera.max_fps, single.mqtt) == ("door", "0", 2.0, None)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"cameras": [{"name": "a", "source": 0}, {"name": "b", "source": 1}, {"name": "a", "source": 2}]},
            r"camera\.yaml: cameras\.2\.name: duplicate camera name 'a' \(also item 0\)",
        ),
        ({"cameras": [{"name": "a", "source": 0}, {"name": "b"}]}, r"cameras\.1\.source: required"),
        ({"cameras": [{"name": "a b", "source": 0}]}, r"cameras\.0\.name: 'a b' does not match"),
        ({"cameras": [{"name": "a", "source": 0, "threads": 2}]}, r"cameras\.0\.threads: unknown key"),
        ({"cameras": [{"name": "a", "source": 0, "max_fps": -1}]}, r"cameras\.0\.max_fps: expected a number >= 0"),
        ({"cameras": "door"}, r"cameras: expected a list of camera settings"),
        ({"source": 0, "cameras": [{"name": "a", "source": 1}]}, r"source: with `cameras`, give each camera"),
        ({"name": "x", "cameras": [{"name": "a", "source": 1}]}, r"name: with `cameras`, give each camera"),
    ],
    ids=["duplicate", "no-source", "bad-name", "shared-key", "bound", "not-a-list", "top-source", "top-name"],
)
def test_bad_camera_lists_name_the_key(tmp_path, data, message):
    with pytest.raises(ValueError, match=message):
        load_config(write(tmp_path, {"model": "m.onnx", **data}))


def test_duplicate_camera_names_exit_1_from_the_command_line(tmp_path):
    cameras = [{"name": "door", "source": 0}, {"name": "door", "source": 1}]
    path = write(tmp_path, {"model": "m.onnx", "cameras": cameras})
    out = subprocess.run([*CAMERA, "--config", str(path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "cameras.1.name: duplicate camera name 'door'" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_bad_camera_source_names_its_key(tmp_path):
    config = load_config(
        None,
        {"model": "unused.onnx", "cameras": [{"name": "a", "source": 0}, {"name": "b", "source": "rtsp://h:x/s"}]},
    )
    with pytest.raises(ValueError, match=r"^cameras\.1\.source: rtsp://h:x/s: port 'x' is not a number$"):
        Daemon(config, detector=object())


# ------------------------------------------------------------------------------------- several cameras


def test_three_cameras_share_one_detector_fairly(tmp_path, tiny_model, videos):
    """Unpaced files: the detector is the bottleneck, and it takes the cameras in turn."""
    cameras = [{"name": name, "source": str(path)} for name, path in videos.items()]
    config = multi_config(tiny_model, cameras, tmp_path, source_fps=0)
    with running(config, tmp_path) as (daemon, _):
        assert len({id(c.detector) for c in daemon.cameras}) == 1  # one detector, one backend session
        wait_for(lambda: min(processed(daemon).values()) >= 40, what="40 frames of each camera")
    counts = processed(daemon)  # stopped: final
    assert min(counts.values()) >= max(counts.values()) / 2, counts
    assert daemon.processed == sum(counts.values())
    assert all(c.slot.dropped > 0 for c in daemon.cameras)  # newer frames replaced old ones, nothing queued


def test_each_camera_gets_its_own_frames_detections_and_endpoints(tmp_path, tiny_model, videos):
    cameras = [{"name": name, "source": str(path)} for name, path in videos.items()]
    with running(multi_config(tiny_model, cameras, tmp_path), tmp_path) as (daemon, client):
        wait_for(lambda: min(processed(daemon).values()) >= 15, what="15 frames of each camera")

        status, body = client.json("/cameras")
        assert status == 200 and [c["name"] for c in body["cameras"]] == ["a", "b", "c"]
        for entry in body["cameras"]:
            assert set(entry) >= {"name", "status", "reason", "fps", "latency_ms", "frames_processed"}
            assert set(entry) >= {"source_state", "last_frame_age_s"}
            assert entry["status"] == "ok" and entry["frames_processed"] > 0 and entry["fps"] > 0
            assert entry["source_state"] == "streaming" and entry["latency_ms"] > 0
        for name in videos:
            status, event = client.json(f"/cameras/{name}/detections")
            assert status == 200 and event["camera"] == name and event["source"] == str(videos[name])
            status, headers, jpeg = client.get(f"/cameras/{name}/snapshot.jpg")
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert status == 200 and headers["Content-Type"] == "image/jpeg" and image.shape == (240, 320, 3)
        request = urllib.request.Request(client.url + "/cameras/c/stream.mjpg")
        request.add_header("Authorization", f"Bearer {TOKEN}")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            data = b""
            while data.count(b"--frame\r\n") < 2:
                data += response.read1(65536)

        status, body = client.json("/cameras/nope/snapshot.jpg")
        assert status == 404 and "no camera 'nope'" in body["error"] and "a, b, c" in body["error"]
        assert client.get("/cameras/nope/detections")[0] == 404
        assert client.get("/cameras/a/nothing")[0] == 404
        assert client.get("/cameras/a/snapshot.jpg", token=None)[0] == 401
        for path in ("/snapshot.jpg", "/detections", "/stream.mjpg"):  # which camera? say how to ask
            status, body = client.json(path)
            assert status == 404 and f"/cameras/<name>{path}" in body["error"], body

        status, body = client.json("/events?camera=b&limit=500")
        assert status == 200 and body and {e["camera"] for e in body} == {"b"}
        status, body = client.json("/events?limit=1000")
        assert {e["camera"] for e in body} == {"a", "b", "c"}
        status, body = client.json("/events?camera=zzz")
        assert status == 404 and "no camera 'zzz'" in body["error"]

        status, health = client.json("/healthz", token=None)
        assert status == 200 and health["status"] == "ok" and health["sources_down"] == []
        assert [c["camera"] for c in health["cameras"]] == ["a", "b", "c"]

    # the in-flight frame's tag carried its camera: every event's detections are the detector's on that
    # camera's own frame at that position
    detector = Detector.from_model(tiny_model, threads=1)
    reference = {name: [detector.detect(f) for _, f in _frames(path)] for name, path in videos.items()}
    events = detection_events(tmp_path / "events.jsonl")
    assert {e["camera"] for e in events} == {"a", "b", "c"}
    for event in events:
        match(event["detections"], reference[event["camera"]][event["source_position"]])
        assert event["source"] == str(videos[event["camera"]])
    objects = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    ids = {(e["camera"], e["id"]) for e in objects if e["type"] == "new"}
    assert len({i for _, i in ids}) == len(ids)  # object event ids are unique across cameras


def _frames(path: Path) -> list[tuple[int, np.ndarray]]:
    from edgedet.edge.runtime.media import iter_video

    return list(iter_video(path))


def test_metrics_label_every_camera_series(tmp_path, tiny_model, videos):
    parser = pytest.importorskip("prometheus_client.parser", reason="prometheus-client checks the format")
    cameras = [{"name": "a", "source": str(videos["a"])}, {"name": "b", "source": str(videos["b"])}]
    with running(multi_config(tiny_model, cameras, tmp_path), tmp_path) as (daemon, client):
        wait_for(lambda: min(processed(daemon).values()) >= 5, what="5 frames of each camera")
        status, _, body = client.get("/metrics")
    assert status == 200
    families = {f.name: f for f in parser.text_string_to_metric_families(body.decode())}
    for name in ("edgedet_frames_processed", "edgedet_frames_captured", "edgedet_source_up", "edgedet_fps"):
        by_camera = {s.labels["camera"]: s.value for s in families[name].samples}
        assert set(by_camera) == {"a", "b"} and all(v > 0 for v in by_camera.values()), (name, by_camera)
    stages = {(s.labels["camera"], s.labels["stage"]) for s in families["edgedet_stage_latency_seconds"].samples}
    assert stages == {(c, s) for c in "ab" for s in ("preprocess", "inference", "decode")}
    assert [s.labels for s in families["edgedet_uptime_seconds"].samples] == [{}]  # the process's, unlabelled


def test_per_camera_thresholds_and_rates(tmp_path, tiny_model, videos):
    """``b`` keeps only its best detections (its own decoder on the shared session) and runs at 5 fps."""
    cameras = [
        {"name": "a", "source": str(videos["a"]), "score_threshold": 0.75},
        {"name": "b", "source": str(videos["a"]), "score_threshold": 0.95, "max_fps": 5},
    ]
    with running(multi_config(tiny_model, cameras, tmp_path, source_fps=50), tmp_path) as (daemon, _):
        a, b = daemon.cameras
        assert a.detector is daemon.detector and b.detector.backend is daemon.detector.backend
        wait_for(lambda: b.processed >= 10, what="10 frames of b")
        counts = processed(daemon)
    assert counts["a"] > 2 * counts["b"]  # b is held to 5 fps, a takes what comes
    events = detection_events(tmp_path / "events.jsonl")
    scores = {name: [d["score"] for e in events if e["camera"] == name for d in e["detections"]] for name in "ab"}
    assert scores["a"] and min(scores["a"]) < 0.95
    assert all(s >= 0.95 for s in scores["b"])


def test_a_failing_camera_reconnects_alone(tmp_path, tiny_model, videos):
    """``bad`` is a missing file: it keeps reconnecting, /healthz names it, the others go on."""
    cameras = [
        {"name": "good", "source": str(videos["a"])},
        {"name": "bad", "source": str(tmp_path / "missing.avi")},
    ]
    with running(multi_config(tiny_model, cameras, tmp_path), tmp_path) as (daemon, client):
        good, bad = daemon.cameras
        wait_for(lambda: bad.capture.reconnects >= 2 and good.processed >= 20, what="reconnects and frames")
        status, health = client.json("/healthz", token=None)
        assert status == 200 and health["status"] == "ok" and health["sources_down"] == ["bad"]
        entry = {c["camera"]: c for c in health["cameras"]}["bad"]
        assert entry["source_state"] in ("waiting", "connecting") and "missing.avi" in entry["source_error"]
        assert entry["frames_processed"] == 0
        status, body = client.json("/cameras")
        assert {c["name"]: c["frames_processed"] > 0 for c in body["cameras"]} == {"good": True, "bad": False}
        assert client.get("/cameras/bad/snapshot.jpg")[0] == 503  # no frame yet
        before = good.processed
        wait_for(lambda: good.processed >= before + 10, what="the good camera going on")


def test_a_camera_whose_source_fails_midway_ends_its_objects_and_comes_back(tmp_path, tiny_model, videos):
    from edgedet.edge.camera.sources import open_source

    opened = []

    class FailsOnce:
        """The video, failing after 15 frames the first time it is opened."""

        def __init__(self) -> None:
            self.inner = open_source(str(videos["a"]))
            self.live, self.fps = False, self.inner.fps
            self.left = 15 if not opened else None
            opened.append(self)

        def read(self):
            if self.left is not None:
                self.left -= 1
                if self.left < 0:
                    raise SourceError("simulated camera failure")
            return self.inner.read()

        def close(self) -> None:
            self.inner.close()

    cameras = [{"name": "steady", "source": str(videos["b"])}, {"name": "flaky", "source": str(videos["a"])}]
    config = multi_config(tiny_model, cameras, tmp_path, loop=False)
    with running(config, tmp_path, opener={"flaky": FailsOnce}) as (daemon, _):
        steady, flaky = daemon.cameras
        wait_for(lambda: flaky.capture.reconnects >= 1 and flaky.processed >= 20, what="the flaky camera back")
        assert steady.capture.reconnects == 0 and steady.processed > 0
    objects = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    ends = {(e["camera"], e["reason"]) for e in objects if e["type"] == "end"}
    assert ("flaky", "source restarted") in ends
    assert ("steady", "source restarted") not in ends


def test_one_camera_list_keeps_the_single_camera_paths(tmp_path, tiny_model, videos):
    cameras = [{"name": "only", "source": str(videos["a"])}]
    with running(multi_config(tiny_model, cameras, tmp_path), tmp_path) as (daemon, client):
        wait_for(lambda: daemon.processed >= 5, what="5 frames")
        status, event = client.json("/detections")
        assert status == 200 and event["camera"] == "only"
        assert client.get("/snapshot.jpg")[0] == 200 and client.get("/cameras/only/snapshot.jpg")[0] == 200
        status, health = client.json("/healthz", token=None)
        assert health["camera"] == "only" and health["source_state"] == "streaming"  # the fields at the top
        assert len(health["cameras"]) == 1


def test_the_detector_loop_takes_cameras_in_turn_and_skips_those_without_a_frame(tmp_path):
    """Frames put straight into the slots: a camera without a fresh frame is skipped, never waited for."""

    class Detects:
        labels = ("thing",)

        def __init__(self) -> None:
            from edgedet.edge.runtime.detector import StageTimings

            self.last_timings = StageTimings(1.0, 1.0, 1.0)
            self.seen: list[int] = []

        def detect(self, image):
            self.seen.append(int(image[0, 0, 0]))
            return []

    cameras = [{"name": n, "source": str(tmp_path / f"{n}.avi")} for n in "xyz"]
    config = load_config(None, {"model": "unused.onnx", "http.enabled": False, "pipeline": False, "cameras": cameras})
    detector = Detects()
    daemon = Daemon(config, detector=detector)
    x, y, z = daemon.cameras
    image = lambda v: np.full((8, 8, 3), v, np.uint8)  # noqa: E731
    for i, camera in enumerate((x, y, z)):
        camera.slot.put(Frame(image(i + 1), 0, 0, time.time()))
    y.slot.put(Frame(image(9), 1, 1, time.time()))  # y's newer frame replaces its older one
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    wait_for(lambda: len(detector.seen) >= 3, timeout=5, what="three frames")
    z.slot.put(Frame(image(3), 1, 1, time.time()))
    x.slot.put(Frame(image(1), 1, 1, time.time()))
    wait_for(lambda: len(detector.seen) >= 5, timeout=5, what="five frames")
    daemon.stop()
    runner.join(timeout=3)
    daemon.close()
    assert detector.seen[:3] == [1, 9, 3] and sorted(detector.seen[3:]) == [1, 3]


# ---------------------------------------------------------------------------------------- HTTP extras


@pytest.fixture
def app_server():
    made: list[HttpServer] = []

    def make(**fields) -> str:
        app = HttpApp({"a": LatestResult(), "b": LatestResult()}, lambda: "", lambda: (True, {}), threading.Event())
        for key, value in fields.items():
            setattr(app, key, value)
        http = HttpServer("127.0.0.1", 0, app)
        http.start()
        made.append(http)
        host, port = http.address
        return f"http://{host}:{port}"

    yield make
    for http in made:
        http.close()


def fetch(url: str, token: str | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_the_page_is_served_without_a_token_and_the_api_still_needs_one(tmp_path, app_server):
    page = tmp_path / "index.html"
    page.write_text("<!doctype html><title>edgedet</title>", encoding="utf-8")
    url = app_server(page=page, token=TOKEN)
    for path in ("/", "/index.html"):
        status, headers, body = fetch(url + path)
        assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8", path
        assert body == page.read_bytes() and headers["X-Content-Type-Options"] == "nosniff"
    assert fetch(url + "/cameras")[0] == 401
    status, _, body = fetch(url + "/cameras", TOKEN)
    assert status == 200 and json.loads(body) == {"cameras": [{"name": "a"}, {"name": "b"}]}


def test_without_the_page_file_the_root_lists_the_endpoints(tmp_path, app_server):
    url = app_server(page=tmp_path / "missing.html", token=TOKEN)
    assert fetch(url + "/")[0] == 401  # as before: behind the token
    status, headers, body = fetch(url + "/", TOKEN)
    assert status == 200 and headers["Content-Type"] == "text/plain" and b"/cameras/<name>/snapshot.jpg" in body
    assert fetch(url + "/index.html", TOKEN)[0] == 404


def test_the_package_page_is_found_where_the_wheel_puts_it():
    from edgedet.edge.camera import http

    assert http.PAGE == Path(http.__file__).parent / "web" / "index.html"


def test_clips_are_served_from_the_clip_file_callable(tmp_path, app_server):
    clip = tmp_path / "cam-1-7.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 1000)
    url = app_server(clip_file=lambda event_id: clip if event_id == "cam-1-7" else None)
    status, headers, body = fetch(url + "/events/cam-1-7/clip.mp4")
    assert status == 200 and headers["Content-Type"] == "video/mp4" and body == clip.read_bytes()
    assert int(headers["Content-Length"]) == len(body)
    status, _, body = fetch(url + "/events/other-1/clip.mp4")
    assert status == 404 and "no clip of event 'other-1'" in json.loads(body)["error"]
    assert fetch(url + "/events/..%2F..%2Fetc/clip.mp4")[0] == 404
    assert fetch(app_server() + "/events/cam-1-7/clip.mp4")[0] == 404  # no clips kept: 404


# ------------------------------------------------------------------------------------------------ MQTT


@pytest.mark.slow
def test_each_camera_publishes_under_its_own_topics(tmp_path, broker, tiny_model, videos):  # noqa: F811
    prefix = "edgedet-multi"
    sub = Subscriber(broker, f"{prefix}/#")
    mqtt = {"host": "127.0.0.1", "port": broker, "topic_prefix": prefix, "qos": 1, "keepalive": 5, "detections": True}
    cameras = [{"name": "a", "source": str(videos["a"])}, {"name": "b", "source": str(videos["b"])}]
    try:
        with running(multi_config(tiny_model, cameras, tmp_path, mqtt=mqtt), tmp_path) as (daemon, _):
            for name in "ab":
                sub.wait(lambda n=name: b"online" in sub.on(f"{prefix}/{n}/status"), what=f"{name} online")
                sub.wait(lambda n=name: len(sub.on(f"{prefix}/{n}/detections")) >= 3, what=f"{name} detections")
            assert all(c.mqtt is not None and c.mqtt.connected for c in daemon.cameras)
        for name in "ab":
            events = [json.loads(p) for p in sub.on(f"{prefix}/{name}/detections")]
            assert {e["camera"] for e in events} == {name}
            sub.wait(lambda n=name: sub.on(f"{prefix}/{n}/status")[-1:] == [b"offline"], timeout=5, what="offline")
            objects = [json.loads(p) for p in sub.on(f"{prefix}/{name}/events")]
            assert {e["camera"] for e in objects} <= {name}
    finally:
        sub.close()

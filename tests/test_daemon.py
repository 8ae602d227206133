"""The camera daemon end to end: the real ``python -m edgedet.cli camera`` in a subprocess, on video files
written here, answering a real HTTP client.

The model is either a tiny random SSD exported to ONNX here (torch, no ../shared needed: detections are
arbitrary but deterministic, so the daemon's events must equal ``Detector.detect`` on the same frames)
or the published UltraFace model on face photos (skipped when ../shared is absent).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from conftest import REPO, shared_path
from tests_support import detection_events

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.core.priors import PriorConfig
from edgedet.edge.runtime.detector import Detection, Detector
from edgedet.edge.runtime.media import iter_video, list_images

CAMERA = (sys.executable, "-m", "edgedet.cli", "camera")
TOKEN = "test-token-0123456789"
TINY_SPEC = ModelSpec(
    head="ssd",
    labels=("thing",),
    input_width=160,
    input_height=120,
    priors=PriorConfig(),
    base_channel=8,
    score_threshold=0.75,
)


# ------------------------------------------------------------------------------------------- fixtures


def build_tiny_onnx(path: Path) -> Path:
    """An untrained SSD with larger random weights (so scores follow the image) and its spec in metadata."""
    torch = pytest.importorskip("torch", reason="the tiny test model is built with torch (train extra)")
    onnx = pytest.importorskip("onnx", reason="the spec goes into ONNX metadata with onnx (convert extra)")
    from edgedet.training.model_factory import build_model

    torch.manual_seed(0)
    model = build_model(TINY_SPEC).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 1.5 / p[0].numel() ** 0.5)

    class Predict(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m.predict(x)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Predict(model),
            (torch.zeros(1, 3, TINY_SPEC.input_height, TINY_SPEC.input_width),),
            str(path),
            opset_version=13,
            input_names=["input"],
            output_names=["scores", "locations"],
            dynamo=False,
        )
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "edgedet", TINY_SPEC.to_json()
    onnx.save(proto, str(path))
    return path


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def blob_frames(n: int = 24) -> list[np.ndarray]:
    """A bright disc moving over a dark background: the tiny model's detections move with it."""
    frames = []
    for i in range(n):
        frame = np.full((240, 320, 3), 30, np.uint8)
        cv2.circle(frame, (30 + i * 11, 60 + (i * 7) % 120), 28, (240, 240, 240), -1)
        cv2.putText(frame, str(i), (8, 228), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 200, 0), 2)
        frames.append(frame)
    return frames


def read_frames(path: Path) -> list[np.ndarray]:
    return [frame for _, frame in iter_video(path)]


# ---------------------------------------------------------------------------------- the daemon process


class DaemonProcess:
    """``python -m edgedet.cli camera --config CONFIG`` with the HTTP server on a free port (``port: 0``)."""

    def __init__(
        self,
        workdir: Path,
        config: dict,
        args: tuple[str, ...] = (),
        wait: bool = True,
        env: dict | None = None,
        preexec_fn=None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "camera.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "daemon.log"
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            [*CAMERA, "--config", str(self.config_path), *args],
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            preexec_fn=preexec_fn,  # e.g. a lower RLIMIT_NOFILE
        )
        self.url = ""
        if wait:
            self.url = self._wait_for_url()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_for_url(self, timeout: float = 60.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = re.search(r"serving on (http://\S+?)/ ", self.log())
            if found:
                return found.group(1)
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"daemon did not start serving:\n{self.log()}")

    def get(self, path: str, token: str | None = TOKEN, timeout: float = 5.0) -> tuple[int, dict, bytes]:
        request = urllib.request.Request(self.url + path)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def metrics(self) -> dict[str, float]:
        """``name{labels}`` -> value of every sample (the strict parse is in its own test); the ``camera``
        label of the one camera is left out (``edgedet_fps``, ``edgedet_stage_latency_seconds{stage=...}``)."""
        status, _, body = self.get("/metrics")
        assert status == 200
        samples = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                samples[re.sub(r'camera="[^"]*",?', "", key).replace("{}", "")] = float(value)
        return samples

    def wait_for(self, predicate, timeout: float = 20.0, what: str = "condition") -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) waiting for {what}:\n{self.log()}")
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; metrics: {self.metrics()}\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> float:
        """Send ``sig``; seconds until the process exited."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        elapsed = time.monotonic() - t0
        self._log.close()
        return elapsed


def tiny_config(model: Path, source: Path, workdir: Path, **extra) -> dict:
    config = {
        "name": "test-cam",
        "model": str(model),
        "source": str(source),
        "threads": 1,
        "source_fps": 25,
        "http": {"port": 0, "token": TOKEN},
        "events": {"path": str(workdir / "events.jsonl"), "include_empty": True},
        "reconnect": {"initial_s": 0.1, "max_s": 0.4},
    }
    config.update(extra)
    return config


@pytest.fixture(scope="module")
def daemon(tiny_model, blob_video, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("daemon")
    proc = DaemonProcess(workdir, tiny_config(tiny_model, blob_video, workdir))
    proc.wait_for(lambda: proc.metrics()["edgedet_frames_processed_total"] >= 30, what="30 frames")
    yield proc
    proc.stop()


def match(events_detections: list[dict], reference: list[Detection]) -> None:
    assert len(events_detections) == len(reference)
    for got, want in zip(events_detections, reference, strict=True):
        assert got["label"] == want.label and got["class_id"] == want.class_id
        assert got["score"] == pytest.approx(want.score, abs=1e-5)
        np.testing.assert_allclose(got["box"], want.box, atol=1e-3)


# -------------------------------------------------------------------------------------------- tests


def test_endpoints_answer_a_real_http_client(daemon):
    status, headers, body = daemon.get("/healthz", token=None)
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and health["camera"] == "test-cam"
    assert health["source_state"] == "streaming" and health["frames_processed"] > 0

    status, headers, body = daemon.get("/detections")
    event = json.loads(body)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert set(event) >= {"timestamp", "frame_index", "source", "width", "height", "detections", "latency_ms"}
    assert (event["width"], event["height"], event["camera"]) == (320, 240, "test-cam")

    status, headers, body = daemon.get("/snapshot.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    snapshot = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert snapshot.shape == (240, 320, 3)

    request = urllib.request.Request(daemon.url + "/stream.mjpg", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        ctype = response.headers["Content-Type"]
        assert ctype.startswith("multipart/x-mixed-replace") and "boundary=frame" in ctype
        data = b""
        while data.count(b"--frame\r\n") < 3:
            data += response.read1(65536)
    parts = data.split(b"--frame\r\n")[1:3]
    for part in parts:
        head, _, jpeg = part.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        frame = cv2.imdecode(np.frombuffer(jpeg[:length], np.uint8), cv2.IMREAD_COLOR)
        assert b"Content-Type: image/jpeg" in head and frame.shape == (240, 320, 3)

    assert daemon.get("/nope")[0] == 404


def test_bearer_token_401_without_200_with(daemon):
    for path in ("/metrics", "/detections", "/snapshot.jpg", "/stream.mjpg"):
        status, headers, _ = daemon.get(path, token=None)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), path
        assert daemon.get(path, token="wrong-token-0000")[0] == 401, path
    assert daemon.get("/metrics")[0] == 200
    assert daemon.get("/healthz", token=None)[0] == 200  # liveness stays open (documented)


def test_metrics_parse_as_prometheus_text(daemon):
    parser = pytest.importorskip("prometheus_client.parser", reason="prometheus-client (dev extra) checks the format")
    status, headers, body = daemon.get("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in parser.text_string_to_metric_families(body.decode())}
    types = {
        "edgedet_frames_processed": "counter",
        "edgedet_frames_captured": "counter",
        "edgedet_frames_dropped": "counter",
        "edgedet_source_reconnects": "counter",
        "edgedet_fps": "gauge",
        "edgedet_source_up": "gauge",
        "edgedet_inference_latency_seconds": "histogram",
        "edgedet_stage_latency_seconds": "histogram",
    }
    for name, kind in types.items():
        assert families[name].type == kind, name
    value = {s.name: s.value for f in families.values() for s in f.samples if s.labels in ({}, {"camera": "test-cam"})}
    assert value["edgedet_frames_processed_total"] >= 30 and value["edgedet_source_up"] == 1
    assert 5 < value["edgedet_fps"] < 40  # paced at source_fps 25
    assert value["edgedet_inference_latency_seconds_count"] >= 30
    stages = {s.labels["stage"] for s in families["edgedet_stage_latency_seconds"].samples}
    assert stages == {"preprocess", "inference", "decode"}
    buckets = [s.value for s in families["edgedet_inference_latency_seconds"].samples if s.name.endswith("_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == value["edgedet_inference_latency_seconds_count"]


def test_events_match_the_detector_on_the_same_frames(daemon, tiny_model, blob_video, tmp_path_factory):
    detector = Detector.from_model(tiny_model, threads=1)
    reference = [detector.detect(frame) for frame in read_frames(blob_video)]
    assert sum(map(len, reference)) > 10 and len({len(r) for r in reference}) > 1  # varied, not constant
    events_path = daemon.config_path.parent / "events.jsonl"
    events = detection_events(events_path)
    assert len(events) >= 30
    seen = set()
    for event in events:
        position = event["source_position"]
        match(event["detections"], reference[position])
        assert event["source"] == str(blob_video) and (event["width"], event["height"]) == (320, 240)
        seen.add(position)
    assert len(seen) >= len(reference) // 2
    frame_indices = [e["frame_index"] for e in events]
    assert frame_indices == sorted(set(frame_indices))  # strictly increasing: newest frames, no repeats


def test_daemon_path_imports_no_torch_or_tensorflow():
    code = (
        "import sys, edgedet.cli, edgedet.edge.camera.daemon; "
        "bad = {'torch', 'tensorflow'} & set(sys.modules); print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "set()"


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ({"http": {"port": 70000}}, "http.port: expected an integer in 0..65535, got 70000"),
        ({"reconnect": {"max_s": "soon"}}, "reconnect.max_s: expected a number > 0"),
        ({"model": "/nonexistent/model.onnx"}, "model: model file not found: /nonexistent/model.onnx"),
        ({"spec": "/nonexistent/spec.json"}, "spec: spec file not found"),
    ],
    ids=["port", "reconnect", "model", "spec"],
)
def test_bad_config_value_exits_1_naming_the_key(tmp_path, tiny_model, change, expect):
    config = {"model": str(tiny_model), "source": "0", **change}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run(
        [*CAMERA, "--config", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1, out.stderr
    assert expect in out.stderr and "Traceback" not in out.stderr


def test_flag_only_run_and_port_in_use(tmp_path, tiny_model, blob_video):
    """No config file at all; a taken port is a clear exit-1 error."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [*CAMERA, "--model", str(tiny_model), "--source", str(blob_video), "--http", f"127.0.0.1:{port}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 1 and f"http: cannot listen on 127.0.0.1:{port}" in out.stderr


def test_sigterm_stops_within_2s_with_events_flushed(tmp_path, tiny_model, blob_video):
    proc = DaemonProcess(tmp_path, tiny_config(tiny_model, blob_video, tmp_path, max_fps=0))
    proc.wait_for(lambda: proc.metrics()["edgedet_events_written_total"] >= 10, what="10 events")
    elapsed = proc.stop(signal.SIGTERM)
    assert proc.proc.returncode == 0, proc.log()
    assert elapsed < 2.0, f"took {elapsed:.2f} s to stop"
    text = (tmp_path / "events.jsonl").read_text()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) >= 10 and all(json.loads(line)["camera"] == "test-cam" for line in lines)
    frames = detection_events(tmp_path / "events.jsonl")
    assert "SIGTERM: stopping" in proc.log() and f"stopped after {len(frames)} frames" in proc.log()
    objects = [json.loads(line) for line in lines if json.loads(line)["type"] != "detections"]
    live = {e["id"] for e in objects if e["type"] == "new"}
    assert live and live == {e["id"] for e in objects if e["type"] == "end"}  # every object ended at the stop
    assert {e["reason"] for e in objects if e["type"] == "end"} <= {"lost", "stopped", "source looped"}


def test_systemd_ready_watchdog_and_stopping_notifications(tmp_path, tiny_model, blob_video):
    address = str(tmp_path / "notify.sock")
    messages: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(0.2)

        def receive_until(predicate, timeout=20.0):
            end = time.monotonic() + timeout
            while time.monotonic() < end and not predicate():
                try:
                    messages.append(sock.recv(4096).decode())
                except TimeoutError:
                    pass

        env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "300000"}  # ping every 0.15 s
        proc = DaemonProcess(tmp_path, tiny_config(tiny_model, blob_video, tmp_path), env=env)
        receive_until(lambda: messages.count("WATCHDOG=1") >= 3)
        assert messages[0] == "READY=1" and messages.count("WATCHDOG=1") >= 3
        assert proc.stop() < 2.0 and proc.proc.returncode == 0
        receive_until(lambda: "STOPPING=1" in messages, timeout=2.0)
    assert "STOPPING=1" in messages


@pytest.mark.slow
def test_stream_url_source_reconnects_when_the_stream_ends(tmp_path, tiny_model, blob_video):
    """Daemon B reads daemon A's MJPEG stream over HTTP; A going away and coming back is a reconnect."""
    config_a = tiny_config(tiny_model, blob_video, tmp_path / "a", http={"port": 0}, events={"path": None})
    upstream = DaemonProcess(tmp_path / "a", config_a)
    port = int(upstream.url.rsplit(":", 1)[1])
    source = f"{upstream.url}/stream.mjpg"
    reader = DaemonProcess(tmp_path / "b", tiny_config(tiny_model, source, tmp_path / "b"))
    try:
        processed = lambda: reader.metrics()["edgedet_frames_processed_total"]  # noqa: E731
        reader.wait_for(lambda: processed() >= 5, what="frames from the stream")
        event = json.loads(reader.get("/detections")[2])
        assert event["source"] == source and event["source_position"] is None and event["width"] == 320

        upstream.stop()  # the stream ends
        reader.wait_for(lambda: reader.metrics()["edgedet_source_reconnects_total"] >= 2, what="reconnects")
        assert reader.metrics()["edgedet_source_up"] == 0

        config_a["http"]["port"] = port  # it comes back on the same address
        upstream = DaemonProcess(tmp_path / "a2", config_a)
        before = processed()
        reader.wait_for(lambda: processed() >= before + 5, what="frames after the stream came back")
    finally:
        upstream.stop()
        assert reader.stop() < 2.0 and reader.proc.returncode == 0


@pytest.mark.slow
def test_source_removed_and_truncated_reconnects_without_exiting(tmp_path, tiny_model, blob_video):
    video = tmp_path / "live.avi"
    shutil.copy(blob_video, video)
    proc = DaemonProcess(tmp_path, tiny_config(tiny_model, video, tmp_path))
    processed = lambda: proc.metrics()["edgedet_frames_processed_total"]  # noqa: E731
    reconnects = lambda: proc.metrics()["edgedet_source_reconnects_total"]  # noqa: E731
    proc.wait_for(lambda: processed() >= 5, what="first frames")

    video.unlink()  # the file disappears
    proc.wait_for(lambda: reconnects() >= 2 and proc.metrics()["edgedet_source_up"] == 0, what="reconnect attempts")
    status, _, body = proc.get("/healthz", token=None)
    assert status == 200 and json.loads(body)["source_state"] in ("waiting", "connecting")
    assert "removed" in json.loads(body)["source_error"] or "cannot open" in json.loads(body)["source_error"]

    shutil.copy(blob_video, video)  # it comes back: frames flow again
    before = processed()
    proc.wait_for(lambda: processed() >= before + 5 and proc.metrics()["edgedet_source_up"] == 1, what="recovery")

    count = reconnects()
    os.truncate(video, video.stat().st_size // 3)  # truncated in place while being read
    proc.wait_for(lambda: reconnects() > count, what="reconnect after truncation")
    assert proc.proc.poll() is None and "truncated" in proc.log()
    assert proc.stop() < 2.0 and proc.proc.returncode == 0


@pytest.mark.slow
def test_ultraface_daemon_finds_the_faces_detect_finds(tmp_path):
    model = shared_path("models", "ultraface", "version-slim-320.onnx")
    frames = []
    for path in list_images(shared_path("models", "ultraface", "images"))[:10]:
        image = cv2.imread(str(path))
        scale = min(640 / image.shape[1], 480 / image.shape[0])
        resized = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
        canvas = np.zeros((480, 640, 3), np.uint8)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        frames.append(canvas)
    video = write_video(tmp_path / "faces.avi", frames, fps=10)
    config = {
        "name": "faces",
        "model": str(model),
        "spec": "ultraface",
        "source": str(video),
        "loop": False,
        "source_fps": 8,
        "threads": 2,
        "http": {"port": 0},
        "events": {"path": str(tmp_path / "events.jsonl")},
    }
    proc = DaemonProcess(tmp_path, config)
    try:
        proc.wait_for(
            lambda: json.loads(proc.get("/healthz")[2])["source_state"] == "finished", what="one pass", timeout=30
        )
        processed = proc.metrics()["edgedet_frames_processed_total"]
    finally:
        proc.stop()
    detector = Detector.from_model(model, spec=ModelSpec.ultraface(), threads=2)
    reference = [detector.detect(frame) for frame in read_frames(video)]
    events = detection_events(tmp_path / "events.jsonl")
    assert processed >= 8 and len(events) >= 5  # events only for frames with faces (include_empty off)
    for event in events:
        assert event["detections"] and all(d["label"] == "face" for d in event["detections"])
        match(event["detections"], reference[event["source_position"]])
    assert sum(len(e["detections"]) for e in events) >= 10


# ------------------------------------------------------------------------------------------------ MQTT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto() -> str:
    exe = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None
    )
    if exe is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); .ci/run installs it")
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt (edge extra) publishes the events")
    return exe


def start_broker(exe: str, port: int, workdir: Path) -> subprocess.Popen:
    conf = workdir / f"mosquitto-{port}.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("mosquitto did not start")


@pytest.fixture
def broker(tmp_path):
    proc = start_broker(mosquitto(), port := free_port(), tmp_path)
    yield port
    proc.terminate()
    proc.wait(timeout=5)


class Subscriber:
    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-subscriber")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload, bool(message.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [payload for t, payload, _ in self.messages if t == topic]

    def wait(self, predicate, timeout: float = 15.0, what: str = "messages") -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; got {[(t, r) for t, _, r in self.messages][:20]}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.slow
def test_mqtt_events_and_online_offline_status(tmp_path, broker, tiny_model, blob_video):
    prefix, name = "edgedet-test", "cam1"
    status_topic, detections_topic = f"{prefix}/{name}/status", f"{prefix}/{name}/detections"
    sub = Subscriber(broker, f"{prefix}/#")
    mqtt = {"host": "127.0.0.1", "port": broker, "topic_prefix": prefix, "qos": 1, "keepalive": 5, "detections": True}
    config = tiny_config(tiny_model, blob_video, tmp_path, name=name, mqtt=mqtt)
    try:
        proc = DaemonProcess(tmp_path / "run1", config)
        sub.wait(lambda: b"online" in sub.on(status_topic), what="online")
        sub.wait(lambda: len(sub.on(detections_topic)) >= 10, what="10 events")
        assert proc.metrics()["edgedet_mqtt_connected"] == 1
        events = [json.loads(p) for p in sub.on(detections_topic)]
        assert all(e["camera"] == name and e["source"] == str(blob_video) for e in events)
        detector = Detector.from_model(tiny_model, threads=1)
        reference = [detector.detect(frame) for frame in read_frames(blob_video)]
        for event in events:
            match(event["detections"], reference[event["source_position"]])
        assert proc.stop() < 2.0 and proc.proc.returncode == 0
        sub.wait(lambda: sub.on(status_topic)[-1:] == [b"offline"], timeout=5, what="offline at a clean stop")

        # killed without a goodbye: the broker publishes the last will
        proc = DaemonProcess(tmp_path / "run2", config)
        sub.wait(lambda: sub.on(status_topic)[-1:] == [b"online"], what="online again")
        proc.stop(signal.SIGKILL)
        sub.wait(lambda: sub.on(status_topic)[-1:] == [b"offline"], timeout=10, what="last will")
    finally:
        sub.close()
    # the status is retained: a late subscriber sees the current state at once
    late = Subscriber(broker, status_topic)
    try:
        late.wait(lambda: late.on(status_topic) == [b"offline"], timeout=5, what="retained status")
        assert late.messages[0][2] is True
    finally:
        late.close()


class Forwarder(threading.Thread):
    """A TCP port that forwards to ``target`` once started: a broker 'coming up' on a port the daemon
    already tries, while the test's subscriber is connected to the real one from the beginning."""

    def __init__(self, port: int, target: int) -> None:
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", port))
        self.target = target

    def run(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


@pytest.mark.slow
def test_mqtt_broker_down_at_start_queues_qos1_events_until_it_comes(broker):
    from edgedet.edge.camera.config import MqttConfig
    from edgedet.edge.camera.sinks import MqttSink

    port = free_port()  # nothing listens here yet
    sub = Subscriber(broker, "edgedet/cam/#")
    sink = MqttSink(MqttConfig(host="127.0.0.1", port=port, qos=1, detections=True), "cam", reconnect_max_s=1)
    forwarder = None
    try:
        for i in range(3):
            sink.emit({"frame_index": i})
        time.sleep(0.3)
        assert sink.published == 3 and sink.errors == 0 and not sink.connected  # queued, not lost
        assert sub.on("edgedet/cam/detections") == []
        forwarder = Forwarder(port, broker)  # the broker 'comes up' on the sink's port
        forwarder.start()
        sub.wait(lambda: len(sub.on("edgedet/cam/detections")) == 3, timeout=15, what="queued events")
        assert [json.loads(p)["frame_index"] for p in sub.on("edgedet/cam/detections")] == [0, 1, 2]
        assert sink.connected
    finally:
        t0 = time.monotonic()
        sink.close()
        assert time.monotonic() - t0 < 1.5
        sub.close()
        if forwarder is not None:
            forwarder.close()


@pytest.mark.slow
def test_mqtt_queue_overflow_keeps_the_newest_events_and_delivers_later_ones(broker):
    """Broker away, 8 QoS 1 events for a queue of 5: the 3 oldest are dropped (not the newest); when the
    broker comes the 5 newest arrive in order, then the events made after it came."""
    from edgedet.edge.camera.config import MqttConfig
    from edgedet.edge.camera.sinks import MqttSink

    port = free_port()  # nothing listens here yet
    sub = Subscriber(broker, "edgedet/cam/#")
    sink = MqttSink(
        MqttConfig(host="127.0.0.1", port=port, qos=1, detections=True), "cam", max_queued=5, reconnect_max_s=1
    )
    forwarder = None
    received = lambda: [json.loads(p)["frame_index"] for p in sub.on("edgedet/cam/detections")]  # noqa: E731
    try:
        for i in range(8):
            sink.emit({"frame_index": i})
        assert sink.queued == 5 and sink.errors == 3
        forwarder = Forwarder(port, broker)  # the broker 'comes up' on the sink's port
        forwarder.start()
        sub.wait(lambda: len(received()) >= 5, timeout=15, what="the queued events")
        for i in range(8, 11):  # made after the broker came back
            sink.emit({"frame_index": i})
        sub.wait(lambda: len(received()) >= 8, timeout=10, what="the new events")
        assert received() == [3, 4, 5, 6, 7, 8, 9, 10]
        assert sink.connected and sink.queued == 0 and sink.errors == 3
    finally:
        sink.close()
        sub.close()
        if forwarder is not None:
            forwarder.close()

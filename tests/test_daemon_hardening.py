"""The camera daemon against hostile or broken surroundings, with real components only: a real HTTP server
(in-process or the ``edgedet camera`` subprocess) on 127.0.0.1, real sockets and HTTP clients, real files,
a real ONNX model.

* slow and half-open connections, slowloris, oversized heads, a burst of clients, a low RLIMIT_NOFILE:
  /healthz keeps answering at once (200, or 503 when over the connection cap, never a hang), the camera
  keeps reopening, the accept loop never spins;
* credentials in the source never show in /healthz, events or logs;
* a model whose outputs do not fit its spec: start-up fails naming both; a detector failing on every
  frame makes /healthz 503 ``failing`` and stops the watchdog pings;
* a bad port names the ``source`` key.

Load loops are bounded in count and time and only go to 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import resource
import select
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_daemon import (  # the shared fixtures and helpers of the end-to-end daemon tests
    CAMERA,
    REPO,
    TINY_SPEC,
    TOKEN,
    DaemonProcess,
    blob_frames,
    tiny_config,
    write_video,
)
from tests_support import detection_events

from edgedet.edge.camera.config import load_config
from edgedet.edge.camera.daemon import Daemon
from edgedet.edge.camera.http import HttpApp, HttpServer
from edgedet.edge.camera.latest_result import LatestResult
from edgedet.edge.core.priors import PriorConfig
from edgedet.edge.runtime.detector import Detector, StageTimings

# ------------------------------------------------------------------------------------------- helpers


def get(url: str, token: str | None = None, timeout: float = 5.0) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def timed_get(url: str, timeout: float = 5.0) -> tuple[int, bytes, float]:
    t0 = time.monotonic()
    status, _, body = get(url, timeout=timeout)
    return status, body, time.monotonic() - t0


HALF_HEAD = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "  # never finished


def open_slow(address: tuple[str, int], n: int, connect_timeout: float = 2.0) -> tuple[list[socket.socket], int]:
    """``n`` connections that send half a request head and then nothing; (the sockets, failed connects).
    A connection the server refused at once (503, closed) may reset the send: that is no failure."""
    socks, failed = [], 0
    for _ in range(n):
        try:
            sock = socket.create_connection(address, timeout=connect_timeout)
        except OSError:
            failed += 1
            continue
        socks.append(sock)
        try:
            sock.sendall(HALF_HEAD)
        except OSError:
            pass
    return socks, failed


def closed_by_server(sock: socket.socket, until: float) -> bool:
    """Whether the server closed ``sock`` (EOF or reset) before the monotonic time ``until``."""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return False
        readable, _, _ = select.select([sock], [], [], left)
        if not readable:
            return False
        try:
            if not sock.recv(65536):
                return True
        except OSError:
            return True


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


def wait_for(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def server():
    """An in-process HttpServer on 127.0.0.1 with a trivial app; ``make(**options)`` starts one."""
    made: list[HttpServer] = []

    def make(**options) -> tuple[HttpServer, str]:
        app = HttpApp(LatestResult(80), lambda: "", lambda: (True, {"status": "ok"}), threading.Event(), token=TOKEN)
        http = HttpServer("127.0.0.1", 0, app, **options)
        http.start()
        made.append(http)
        host, port = http.address
        return http, f"http://{host}:{port}"

    yield make
    for http in made:
        http.close()


# ------------------------------------------------------------------------------- 1. connections


def test_slow_half_open_connections_neither_block_healthz_nor_stay(server):
    http, url = server(max_connections=16, request_timeout_s=1.5)
    t0 = time.monotonic()
    slow, failed = open_slow(http.address, 100)
    assert failed == 0  # accepted (or answered 503) at once: the backlog never fills
    try:
        status, body, elapsed = timed_get(url + "/healthz")
        assert status in (200, 503) and elapsed < 1.0, (status, elapsed)
        if status == 503:
            assert json.loads(body)["status"] == "busy" and "too many connections" in json.loads(body)["error"]
        assert http.active <= 16 and http.refused >= 100 - 16
        # every slow connection is gone by the deadline (1.5 s after its accept), none is held
        assert all(closed_by_server(sock, t0 + 1.5 + 3.0) for sock in slow)
        wait_for(lambda: http.active == 0, 2.0, "handler threads to end")
        assert get(url + "/healthz")[0] == 200
    finally:
        close_all(slow)


def test_slowloris_trickling_a_byte_at_a_time_is_cut_at_the_deadline(server):
    """A per-read timeout never fires on a client that sends a byte every 0.2 s; the whole-head deadline does."""
    http, url = server(request_timeout_s=1.0)
    sock = socket.create_connection(http.address, timeout=2)
    t0 = time.monotonic()
    closed_at = None
    try:
        for byte in (HALF_HEAD + b"x" * 40)[:40]:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed_at = time.monotonic() - t0
                break
            if closed_by_server(sock, time.monotonic() + 0.2):
                closed_at = time.monotonic() - t0
                break
    finally:
        sock.close()
    assert closed_at is not None, "a trickling client was still connected after 8 s"
    assert 0.9 <= closed_at < 2.0, closed_at
    assert get(url + "/healthz")[0] == 200


def test_over_the_cap_a_quick_503_never_a_reset_or_a_hang(server):
    http, url = server(max_connections=2, request_timeout_s=5.0)
    slow, _ = open_slow(http.address, 2)
    try:
        wait_for(lambda: http.active == 2, 2.0, "two held connections")
        for _ in range(30):
            t0 = time.monotonic()
            status, headers, body = get(url + "/snapshot.jpg", token=TOKEN, timeout=3)
            assert status == 503 and time.monotonic() - t0 < 0.5
            assert headers["Retry-After"] == "1" and json.loads(body)["status"] == "busy"
    finally:
        close_all(slow)
    wait_for(lambda: http.active == 0, 2.0, "the held connections to end")
    assert get(url + "/healthz")[0] == 200


def test_an_oversized_request_head_is_cut_off(server):
    http, _ = server(request_timeout_s=5.0)
    sock = socket.create_connection(http.address, timeout=2)
    try:
        t0 = time.monotonic()
        head = b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(20))
        try:
            sock.sendall(head)  # 20 kB of headers, within the deadline, never ended
        except OSError:
            pass
        assert closed_by_server(sock, t0 + 2.0)  # at 16 kB, not after the 5 s deadline
    finally:
        sock.close()
    wait_for(lambda: http.active == 0, 2.0, "the handler to end")


def test_fifty_parallel_clients_are_queued_not_syn_retried(server):
    """With a listen backlog of 5, a burst of 50 connects sees 1 s SYN retransmissions."""
    _, url = server()
    barrier = threading.Barrier(50)
    times: list[float] = []
    errors: list[BaseException] = []

    def client() -> None:
        try:
            barrier.wait(timeout=5)
            status, _, elapsed = timed_get(url + "/healthz", timeout=5)
            assert status == 200
            times.append(elapsed)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not errors and len(times) == 50
    assert max(times) < 0.9, sorted(times)[-5:]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _positions(events: Path) -> list[int]:
    return [e["source_position"] for e in detection_events(events)]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files through /proc (Linux)")
def test_low_fd_limit_and_a_flood_of_slow_connections_leave_the_daemon_working(tmp_path, tiny_model):
    """RLIMIT_NOFILE 64 and 150 slow connections: /healthz answers, the looping video is re-opened every
    second (new file descriptors), the accept loop does not spin, everything recovers."""
    video = write_video(tmp_path / "short.avi", blob_frames(12))  # 12 frames at 25 fps: re-opened twice a second
    limit = 64  # the daemon itself needs ~12: the HTTP cap (64) is not reached before the fd reserve

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    config = tiny_config(tiny_model, video, tmp_path)
    proc = DaemonProcess(tmp_path, config, preexec_fn=low_limit)
    events = tmp_path / "events.jsonl"
    slow: list[socket.socket] = []
    try:
        proc.wait_for(lambda: proc.metrics()["edgedet_source_loops_total"] >= 2, what="two loops")
        host, port = proc.url.removeprefix("http://").rsplit(":", 1)
        pid = proc.proc.pid
        base_fds = len(os.listdir(f"/proc/{pid}/fd"))
        cpu0, t0 = _cpu_seconds(pid), time.monotonic()
        time.sleep(2.0)
        idle_cpu = (_cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)

        # 150 connects in a burst outrun the thread starts: a few may wait for one SYN retry (1 s), no more
        slow, failed = open_slow((host, int(port)), 150, connect_timeout=3.0)
        assert failed == 0, f"{failed} connects hung"
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        assert fds <= limit - 12, f"{fds} of {limit} files open (were {base_fds}): no reserve left"

        lines = len(_positions(events))
        cpu0, t0 = _cpu_seconds(pid), time.monotonic()
        for _ in range(5):
            status, _, elapsed = timed_get(proc.url + "/healthz", timeout=5)
            assert status in (200, 503) and elapsed < 1.0, (status, elapsed)
            time.sleep(0.4)
        flooded_cpu = (_cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        assert flooded_cpu < idle_cpu + 0.5, f"{flooded_cpu:.2f} CPU while flooded, {idle_cpu:.2f} before: spinning"
        positions = _positions(events)[lines:]
        assert len(positions) >= 20, "events stopped while flooded"
        assert any(b < a for a, b in itertools.pairwise(positions)), "the video was not re-opened"
        assert proc.proc.poll() is None
    finally:
        close_all(slow)
    try:
        proc.wait_for(lambda: proc.get("/healthz", token=None)[0] == 200, timeout=10, what="healthz 200 again")
        loops = proc.metrics()["edgedet_source_loops_total"]
        proc.wait_for(lambda: proc.metrics()["edgedet_source_loops_total"] >= loops + 2, what="more loops")
        health = json.loads(proc.get("/healthz", token=None)[2])
        assert health["status"] == "ok" and health["source_error"] is None
    finally:
        assert proc.stop() < 2.0 and proc.proc.returncode == 0
    log = proc.log()
    assert "Traceback" not in log and "refusing connections: too many open files" in log


# ------------------------------------------------------------------------------- 2. credentials

SECRETS = ("s3cr", "p@ss", "w/rd", "hunter2", "abc123", "admin")


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} shown in {where}: {text[:2000]}"


@pytest.mark.slow
def test_credentials_in_the_source_never_show_in_healthz_events_or_logs(tmp_path, tiny_model, blob_video):
    """Daemon B reads daemon A's MJPEG stream through a URL full of credentials (A ignores them); then a
    stream with a password holding '@ # / ?' that cannot be reached."""
    upstream = DaemonProcess(
        tmp_path / "a", tiny_config(tiny_model, blob_video, tmp_path / "a", http={"port": 0}, events={"path": None})
    )
    host_port = upstream.url.removeprefix("http://")
    source = f"http://{host_port}/stream.mjpg?user=admin&pwd=s3cret&token=abc123&channel=1"
    reader = DaemonProcess(tmp_path / "b", tiny_config(tiny_model, source, tmp_path / "b"))
    try:
        reader.wait_for(lambda: reader.metrics()["edgedet_frames_processed_total"] >= 3, what="frames")
        shown = f"http://{host_port}/stream.mjpg?user=***&pwd=***&token=***&channel=1"
        health = json.loads(reader.get("/healthz", token=None)[2])
        assert health["source"] == shown
        event = json.loads(reader.get("/detections")[2])
        assert event["source"] == shown
        upstream.stop()  # the stream breaks: source_error and the log say so, without the secrets
        reader.wait_for(lambda: json.loads(reader.get("/healthz", token=None)[2])["source_error"], what="error")
        health_text = reader.get("/healthz", token=None)[2].decode()
        assert_no_secret(health_text, "/healthz")
        assert_no_secret((tmp_path / "b" / "events.jsonl").read_text(), "events")
    finally:
        upstream.stop()
        reader.stop()
    assert_no_secret(reader.log(), "the log")

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]  # bound, never listening: connections are refused
    source = f"rtsp://admin:p@ss#w/rd?x@127.0.0.1:{port}/stream?Password=hunter2"
    proc = DaemonProcess(tmp_path / "c", tiny_config(tiny_model, source, tmp_path / "c"))
    try:
        proc.wait_for(lambda: proc.metrics()["edgedet_source_reconnects_total"] >= 1, what="a failed open")
        health = json.loads(proc.get("/healthz", token=None)[2])
        assert health["source"] == f"rtsp://admin:***@127.0.0.1:{port}/stream?Password=***"
        assert health["source_error"] and "***" in health["source_error"]
        assert_no_secret(json.dumps(health).replace("admin:***", ""), "/healthz")
    finally:
        proc.stop()
        closed.close()
    assert_no_secret(proc.log().replace("admin:***", ""), "the log")


# ------------------------------------------------------------------------------- 3. a failing model

WRONG_PRIORS = dataclasses.replace(
    TINY_SPEC, priors=PriorConfig(min_boxes=((10.0,), (32.0,), (64.0,), (128.0,)))
)  # 406 priors where the model makes 1118


def test_a_model_whose_outputs_do_not_fit_the_spec_stops_the_start(tmp_path, tiny_model, blob_video):
    spec = tmp_path / "wrong-spec.json"
    spec.write_text(WRONG_PRIORS.to_json())
    config = tiny_config(tiny_model, blob_video, tmp_path, spec=str(spec))
    path = tmp_path / "camera.yaml"
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run([*CAMERA, "--config", str(path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    assert f"model: {tiny_model}: a test inference on a blank 160x120 frame failed" in out.stderr
    assert f"the spec '{spec}'" in out.stderr and "1118 box regressions but 406 priors" in out.stderr
    assert "Traceback" not in out.stderr and "READY" not in out.stderr


def test_a_detector_failing_on_every_frame_is_unhealthy_and_stops_the_watchdog(
    tmp_path, tiny_model, blob_video, monkeypatch
):
    """In-process daemon (real capture, real HTTP on 127.0.0.1, the real ONNX model with a spec that does
    not fit: every frame fails, as a model swapped under a running daemon would)."""
    address = str(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s while healthy
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    config = load_config(
        None,
        {
            "model": str(tiny_model),
            "source": str(blob_video),
            "source_fps": 25,
            "threads": 1,
            "http.port": 0,
            "events.path": str(tmp_path / "events.jsonl"),
            "health_window_s": 1.5,
        },
    )
    detector = Detector.from_model(tiny_model, spec=WRONG_PRIORS, threads=1)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(address)
        notify.settimeout(0.1)
        daemon = Daemon(config, detector=detector)
        daemon.start()
        runner = threading.Thread(target=daemon.run, daemon=True)
        runner.start()
        try:
            host, port = daemon.http.address
            url = f"http://{host}:{port}/healthz"
            first = get(url)
            assert first[0] == 200  # within the window: not yet
            wait_for(lambda: get(url)[0] == 503, 5.0, "/healthz 503")
            health = json.loads(get(url)[2])
            assert health["status"] == "failing" and health["frames_processed"] == 0
            assert "1118 box regressions but 406 priors" in health["reason"]  # the detector's own error
            assert "inference failed on" in health["reason"] or "no frame processed successfully" in health["reason"]
            assert health["inference_errors"] >= 10
            messages = []
            while True:  # what was sent while healthy
                try:
                    messages.append(notify.recv(4096).decode())
                except TimeoutError:
                    break
            assert "WATCHDOG=1" in messages  # it was pinged while healthy...
            end = time.monotonic() + 1.0
            late = []
            while time.monotonic() < end:
                try:
                    late.append(notify.recv(4096).decode())
                except TimeoutError:
                    pass
            assert "WATCHDOG=1" not in late  # ...and is not while failing
        finally:
            daemon.stop()
            runner.join(timeout=3)
            daemon.close()


class FlakyDetector:
    """Fails on three frames of four."""

    labels = ("thing",)

    def __init__(self) -> None:
        self.last_timings = StageTimings(1.0, 1.0, 1.0)
        self.calls = 0

    def detect(self, frame):
        self.calls += 1
        if self.calls % 4:
            raise RuntimeError("simulated failure")
        return []


def test_inference_failures_outnumbering_successes_are_unhealthy(tmp_path):
    from edgedet.edge.camera.capture import Frame

    config = load_config(None, {"model": "unused.onnx", "source": str(tmp_path / "v.avi"), "http.enabled": False})
    daemon = Daemon(config, detector=FlakyDetector())
    assert daemon.health()[0]
    image = np.zeros((24, 32, 3), np.uint8)
    for i in range(20):
        daemon.process(Frame(image, i, i, 1700000000.0 + i))
    ok, health = daemon.health()
    assert not ok and health["status"] == "failing"
    assert health["reason"].startswith("inference failed on 15 of 20 frames")
    assert "simulated failure" in health["reason"]


def test_captured_frames_not_processed_for_the_window_are_unhealthy(tmp_path):
    """Few failures (a slow, failing model) but nothing processed while frames come in: unhealthy too."""
    from edgedet.edge.camera.capture import Frame

    config = load_config(None, {"model": "unused.onnx", "source": str(tmp_path / "v.avi"), "http.enabled": False})
    daemon = Daemon(config, detector=FlakyDetector(), processing_window_s=0.3)
    image = np.zeros((24, 32, 3), np.uint8)
    daemon.process(Frame(image, 0, 0, 1700000000.0))  # fails
    assert daemon.health()[0]  # within the window
    time.sleep(0.4)
    assert daemon.health()[0]  # nothing captured meanwhile (a camera reconnecting): not the detector's fault
    daemon.capture.captured += 12  # the capture thread delivered frames
    ok, health = daemon.health()
    assert not ok and health["status"] == "failing"
    assert health["reason"].startswith("no frame processed successfully for 0 s while 12 were captured")
    assert "1 inference errors; the last: RuntimeError: simulated failure" in health["reason"]
    for i in range(1, 5):  # one success clears it
        daemon.process(Frame(image, i, i, 1700000000.0 + i))
    assert daemon.health()[0]


# ------------------------------------------------------------------------------- 6. a bad port


def test_a_port_that_is_not_a_number_names_the_source_key(tmp_path, tiny_model):
    path = tmp_path / "camera.yaml"
    path.write_text(yaml.safe_dump({"model": str(tiny_model), "source": "rtsp://admin:pw@host:notaport/s"}))
    out = subprocess.run([*CAMERA, "--config", str(path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "source: rtsp://admin:***@host:notaport/s: port 'notaport' is not a number" in out.stderr
    assert "Traceback" not in out.stderr and ":pw@" not in out.stderr


def test_the_http_limits_come_from_the_config(tmp_path, tiny_model, blob_video):
    config = load_config(
        None,
        {
            "model": str(tiny_model),
            "source": str(blob_video),
            "threads": 1,
            "http.port": 0,
            "http.max_connections": 2,
            "http.request_timeout_s": 1.0,
            "events.path": str(tmp_path / "events.jsonl"),
        },
    )
    daemon = Daemon(config)
    daemon.start()
    try:
        socks, _ = open_slow(daemon.http.address, 2)
        try:
            wait_for(lambda: daemon.http.active == 2, 3.0, "two slow connections held")
            host, port = daemon.http.address
            status, _, seconds = timed_get(f"http://{host}:{port}/healthz")
            assert status == 503 and seconds < 1.0  # the third: over http.max_connections
            assert all(closed_by_server(s, time.monotonic() + 3.0) for s in socks)  # http.request_timeout_s
        finally:
            close_all(socks)
    finally:
        daemon.stop()

"""The daemon's HTTP endpoints (stdlib ``ThreadingHTTPServer``, one thread per connection).

* ``GET /healthz`` — JSON status; 200 while the capture and detector threads make progress, 503 when one
  has been stuck for ``stall_timeout_s``. Always open, even with a token: it reveals only liveness and
  load balancers / container health checks rarely carry secrets.
* ``GET /metrics`` — Prometheus text format.
* ``GET /detections`` — the newest event as JSON (503 before the first frame).
* ``GET /snapshot.jpg`` — the newest frame, annotated (503 before the first frame).
* ``GET /stream.mjpg`` — ``multipart/x-mixed-replace`` MJPEG of annotated frames, at most
  ``http.stream_fps`` per client and ``http.stream_clients`` clients (503 beyond).

With ``http.token`` every endpoint except ``/healthz`` needs ``Authorization: Bearer <token>`` (401
otherwise). The server binds ``127.0.0.1`` unless configured otherwise.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from edgedet.edge.camera.latest_result import LatestResult
from edgedet.edge.camera.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

__all__ = ["ENDPOINTS", "HttpApp", "HttpServer"]

log = logging.getLogger(__name__)

ENDPOINTS = ("/healthz", "/metrics", "/detections", "/snapshot.jpg", "/stream.mjpg")
BOUNDARY = "frame"


@dataclass
class HttpApp:
    """What the endpoints serve."""

    results: LatestResult
    metrics: Callable[[], str]
    health: Callable[[], tuple[bool, dict[str, Any]]]
    stopping: threading.Event
    token: str | None = None
    stream_fps: float = 10.0
    stream_clients: int = 4

    def __post_init__(self) -> None:
        self.stream_slots = threading.BoundedSemaphore(self.stream_clients)

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        scheme, _, value = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())


class _Handler(BaseHTTPRequestHandler):
    server_version = "edgedet"
    timeout = 10.0  # a client that stops reading is dropped instead of holding a thread
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(code, (json.dumps(data) + "\n").encode(), "application/json", headers)

    def do_GET(self) -> None:
        app = self.server.app
        path = urlsplit(self.path).path
        try:
            if path == "/healthz":
                ok, status = app.health()
                self._json(200 if ok else 503, status)
                return
            if not app.authorized(self.headers.get("Authorization")):
                self._json(401, {"error": "unauthorized"}, {"WWW-Authenticate": 'Bearer realm="edgedet"'})
                return
            if path == "/metrics":
                self._send(200, app.metrics().encode(), METRICS_CONTENT_TYPE)
            elif path == "/detections":
                event = app.results.event()
                if event is None:
                    self._json(503, {"error": "no frame processed yet"}, {"Retry-After": "1"})
                else:
                    self._json(200, event)
            elif path == "/snapshot.jpg":
                jpeg = app.results.jpeg()
                if jpeg is None:
                    self._json(503, {"error": "no frame processed yet"}, {"Retry-After": "1"})
                else:
                    self._send(200, jpeg[1], "image/jpeg")
            elif path == "/stream.mjpg":
                self._stream(app)
            elif path == "/":
                self._send(200, ("edgedet camera daemon: " + " ".join(ENDPOINTS) + "\n").encode(), "text/plain")
            else:
                self._json(404, {"error": f"no such endpoint; try {', '.join(ENDPOINTS)}"})
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the client went away

    def _stream(self, app: HttpApp) -> None:
        if not app.stream_slots.acquire(blocking=False):
            self._json(503, {"error": f"too many stream clients (http.stream_clients = {app.stream_clients})"})
            return
        try:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            gap = 1.0 / app.stream_fps
            sent: int | None = None
            next_at = 0.0
            while not app.stopping.is_set():
                wait = next_at - time.monotonic()
                if wait > 0 and app.stopping.wait(wait):
                    break
                if app.results.wait_newer(sent, timeout=0.5) in (None, sent):
                    continue
                jpeg = app.results.jpeg()
                if jpeg is None:
                    continue
                sent, data = jpeg
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                self.wfile.write(head.encode() + data + b"\r\n")
                self.wfile.flush()
                next_at = time.monotonic() + gap
        finally:
            app.stream_slots.release()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # stream handlers never block shutdown
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: HttpApp) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # HTTPServer's version does a reverse DNS lookup
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])


class HttpServer:
    """Binds at construction (``OSError`` when it cannot), serves from a thread after :meth:`start`."""

    def __init__(self, host: str, port: int, app: HttpApp) -> None:
        self.app = app
        self._server = _Server((host, port), app)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.25,), name="http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

"""The daemon's HTTP endpoints (stdlib ``ThreadingHTTPServer``, one thread per connection).

* ``GET /healthz`` — JSON status; 200 while every camera is ok, 503 when the detector or a capture thread
  has been stuck for ``stall_timeout_s`` or a camera's frames are not processed (``cameras`` lists each).
  Always open, even with a token: it reveals only liveness and load balancers / container health checks
  rarely carry secrets.
* ``GET /`` (and ``/index.html``) — the web page (``web/index.html`` beside this module), also open: it
  holds no data, asks for the token and sends it as ``Authorization: Bearer`` on its own requests.
* ``GET /metrics`` — Prometheus text format.
* ``GET /cameras`` — ``{"cameras": [{"name", "status", "reason", "fps", "latency_ms", ...}]}``.
* ``GET /cameras/<name>/detections`` — the camera's newest event as JSON (503 before the first frame).
* ``GET /cameras/<name>/snapshot.jpg`` — its newest frame, annotated (503 before the first frame).
* ``GET /cameras/<name>/stream.mjpg`` — ``multipart/x-mixed-replace`` MJPEG of annotated frames, at most
  ``http.stream_fps`` per client and ``http.stream_clients`` clients (503 beyond).
* ``GET /detections``, ``/snapshot.jpg``, ``/stream.mjpg`` — the same, while there is exactly one camera.
* ``GET /events[?camera=NAME][&limit=N]`` — the recent object events (``new``, ``update``, ``end``,
  ``enter``, ``exit``), oldest first, the same JSON as the events file and MQTT.
* ``GET /events/<id>/snapshot.jpg[?crop=1]`` — the best snapshot of an object (404 when there is none).
* ``GET /events/<id>/clip.mp4`` — the clip of an object, where clips are kept (404 when there is none, or
  until it is finished): ``video/mp4``, or ``video/x-msvideo`` where OpenCV can only write the MJPEG
  ``.avi`` fallback (then the events name ``/events/<id>/clip.avi``, served the same way).

An unknown camera is a 404 naming it. With ``http.token`` every endpoint except ``/healthz`` and the page
needs ``Authorization: Bearer <token>`` (401 otherwise). The server binds ``127.0.0.1`` unless
configured otherwise.

No client can take the daemon down (the camera, the detector, the watchdog):

* at most ``max_connections`` connections are served at once (one thread each); one more gets a quick
  ``503`` and is closed, before anything is read from it;
* a request's line and headers must all arrive within ``request_timeout_s`` of the connection (one
  deadline for the whole head, not per read, so a client trickling a byte at a time is cut off too) and
  may total at most ``MAX_HEAD_BYTES``;
* connections are refused (``503``) while the process's open files come within ``fd_reserve`` of
  ``RLIMIT_NOFILE``: the camera, the model and the events file keep the reserve; at the limit itself
  the accept loop backs off instead of spinning;
* the listen backlog is ``request_queue_size`` (64), so a burst of clients is queued, not SYN-retried.
"""

from __future__ import annotations

import errno
import hmac
import io
import json
import logging
import mimetypes
import os
import re
import shutil
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from edgedet.edge.camera.latest_result import LatestResult
from edgedet.edge.camera.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from edgedet.edge.camera.throttled_log import Throttled

try:
    import resource
except ImportError:  # not on Windows: the connection cap still applies
    resource = None  # type: ignore[assignment]

__all__ = ["ENDPOINTS", "HttpApp", "HttpServer"]

log = logging.getLogger(__name__)

ENDPOINTS = (
    "/healthz", "/metrics", "/cameras", "/cameras/<name>/detections", "/cameras/<name>/snapshot.jpg",
    "/cameras/<name>/stream.mjpg", "/detections", "/snapshot.jpg", "/stream.mjpg", "/events",
    "/events/<id>/snapshot.jpg", "/events/<id>/clip.mp4",
)  # fmt: skip
CAMERA_PATHS = ("/detections", "/snapshot.jpg", "/stream.mjpg")  # under /cameras/<name>, or alone with one camera
BOUNDARY = "frame"
PAGE = Path(__file__).with_name("web") / "index.html"
EVENT_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
CLIP_PATHS = ("/clip.mp4", "/clip.avi")  # the events name the one of the container written here
CLIP_TYPES = {".mp4": "video/mp4", ".avi": "video/x-msvideo"}
PAGE_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}

MAX_CONNECTIONS = 64  # connections served at once (one thread each); more get 503
REQUEST_TIMEOUT_S = 10.0  # the request line and headers must all arrive within this
MAX_HEAD_BYTES = 16384  # request line + headers (GET only: no bodies)
REQUEST_QUEUE_SIZE = 64  # listen backlog
FD_RESERVE = 64  # open files kept free for the camera, the model and files (at most a quarter of the limit)
LINGER_S = 1.0  # a refused connection is kept this long, half-closed, so its client reads the 503
MAX_LINGERING = 32  # refused connections kept half-closed at once (beyond: closed at once)


def open_fds() -> int | None:
    """How many files this process has open (``None`` where ``/proc`` cannot tell)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the listing's own
    except OSError as exc:
        return 1 << 30 if exc.errno in (errno.EMFILE, errno.ENFILE) else None


def fd_limit() -> int | None:
    """The soft ``RLIMIT_NOFILE`` (``None``: unknown or unlimited)."""
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


class _HeadTooLarge(ConnectionAbortedError):
    pass


class _DeadlineReader(io.RawIOBase):
    """The socket's reads for a handler: each ``recv`` waits at most until the handler's ``deadline``
    (while the request head is read), and the head may not pass ``MAX_HEAD_BYTES``."""

    def __init__(self, sock: socket.socket, handler: _Handler) -> None:
        self._sock = sock
        self._handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        handler = self._handler
        deadline = handler.deadline
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"request head not complete within {handler.server.request_timeout_s:g} s")
            if handler.head_bytes >= MAX_HEAD_BYTES:
                raise _HeadTooLarge(f"request head over {MAX_HEAD_BYTES} bytes")
            self._sock.settimeout(min(left, handler.timeout))
            view = memoryview(buffer)[: MAX_HEAD_BYTES - handler.head_bytes]
            n = self._sock.recv_into(view)
            handler.head_bytes += n
            return n
        return self._sock.recv_into(buffer)


@dataclass
class HttpApp:
    """What the endpoints serve. ``results``: each camera's by name (or one camera's alone)."""

    results: Mapping[str, LatestResult] | LatestResult
    metrics: Callable[[], str]
    health: Callable[[], tuple[bool, dict[str, Any]]]
    stopping: threading.Event
    token: str | None = None
    stream_fps: float = 10.0
    stream_clients: int = 4
    snapshot_file: Callable[[str, bool], Path | None] | None = None  # (event id, crop) -> the JPEG
    camera_status: Callable[[], list[dict[str, Any]]] | None = None  # /cameras (None: the names only)
    clip_file: Callable[[str], Path | None] | None = None  # event id -> its clip
    page: Path | None = PAGE  # GET /; None or a missing file: the plain-text list of endpoints

    def __post_init__(self) -> None:
        self.stream_slots = threading.BoundedSemaphore(self.stream_clients)
        results = self.results
        self.cameras = dict(results) if isinstance(results, Mapping) else {"camera": results}

    def only(self) -> LatestResult | None:
        """The one camera's results (``None`` with several)."""
        return next(iter(self.cameras.values())) if len(self.cameras) == 1 else None

    def unknown(self, name: str) -> str:
        return f"no camera {name!r} (cameras: {', '.join(self.cameras)})"

    def statuses(self) -> list[dict[str, Any]]:
        return self.camera_status() if self.camera_status is not None else [{"name": n} for n in self.cameras]

    def events(self, camera: str | None, limit: int) -> list[dict[str, Any]]:
        """The last ``limit`` object events of ``camera`` (``None``: all cameras, by time), oldest first."""
        if camera is not None:
            return self.cameras[camera].events(limit)
        if len(self.cameras) == 1:
            return next(iter(self.cameras.values())).events(limit)
        merged = [e for results in self.cameras.values() for e in results.events(limit)]
        return sorted(merged, key=lambda e: e.get("timestamp", 0.0))[-limit:]

    def page_html(self) -> bytes | None:
        try:
            return self.page.read_bytes() if self.page is not None else None
        except OSError:
            return None

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        scheme, _, value = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())


class _Handler(BaseHTTPRequestHandler):
    server_version = "edgedet"
    timeout = 10.0  # a client that stops reading is dropped instead of holding a thread
    server: _Server
    deadline: float | None = None  # monotonic time by which the request head must be in
    head_bytes = 0

    def setup(self) -> None:
        self.deadline = time.monotonic() + self.server.request_timeout_s  # from the accept, not the first byte
        super().setup()
        self.rfile.close()  # the plain socket file: replaced by one that keeps the deadline
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self))

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError) as exc:  # the client went away, or sent too much
            log.debug("%s: %s", self.address_string(), exc)

    def parse_request(self) -> bool:
        ok = super().parse_request()  # the request line and all the headers are in
        self.deadline = None
        self.connection.settimeout(self.timeout)  # writes: per-send timeout
        return ok

    def handle_one_request(self) -> None:
        if self.deadline is None:  # a keep-alive connection's next request: a new deadline
            self.deadline = time.monotonic() + self.server.request_timeout_s
            self.head_bytes = 0
        super().handle_one_request()

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
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        try:
            if path == "/healthz":
                ok, status = app.health()
                self._json(200 if ok else 503, status)
                return
            if path in ("/", "/index.html"):
                page = app.page_html()
                if page is not None:  # no token needed: the page asks for it
                    self._send(200, page, "text/html; charset=utf-8", PAGE_HEADERS)
                    return
            if not app.authorized(self.headers.get("Authorization")):
                self._json(401, {"error": "unauthorized"}, {"WWW-Authenticate": 'Bearer realm="edgedet"'})
                return
            if path == "/metrics":
                self._send(200, app.metrics().encode(), METRICS_CONTENT_TYPE)
            elif path in CAMERA_PATHS:
                results = app.only()
                if results is None:
                    names = ", ".join(app.cameras)
                    self._json(404, {"error": f"{len(app.cameras)} cameras: use /cameras/<name>{path} ({names})"})
                else:
                    self._camera(app, results, path)
            elif path == "/cameras":
                self._json(200, {"cameras": app.statuses()})
            elif path.startswith("/cameras/"):
                name, _, rest = path[len("/cameras/") :].partition("/")
                name = unquote(name)
                if name not in app.cameras:
                    self._json(404, {"error": app.unknown(name)})
                elif "/" + rest in CAMERA_PATHS:
                    self._camera(app, app.cameras[name], "/" + rest)
                else:
                    self._json(404, {"error": f"no such endpoint; try {', '.join(ENDPOINTS)}"})
            elif path == "/events":
                self._events(app, query)
            elif path.startswith("/events/") and path.endswith("/snapshot.jpg"):
                event_id = path[len("/events/") : -len("/snapshot.jpg")]
                crop = query.get("crop", ["0"])[0] in ("1", "true")
                file = app.snapshot_file(event_id, crop) if app.snapshot_file is not None else None
                self._file(file, "image/jpeg", f"no snapshot of event {event_id!r}")
            elif path.startswith("/events/") and path.endswith(CLIP_PATHS):
                event_id = path[len("/events/") :].rpartition("/")[0]
                ok = app.clip_file is not None and EVENT_ID.match(event_id)
                file = app.clip_file(event_id) if ok and app.clip_file is not None else None
                kind = CLIP_TYPES.get(file.suffix) if file is not None else None
                self._file(file, kind, f"no clip of event {event_id!r}")
            elif path == "/":
                self._send(200, ("edgedet camera daemon: " + " ".join(ENDPOINTS) + "\n").encode(), "text/plain")
            else:
                self._json(404, {"error": f"no such endpoint; try {', '.join(ENDPOINTS)}"})
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the client went away

    def _camera(self, app: HttpApp, results: LatestResult, path: str) -> None:
        """A camera's ``/detections``, ``/snapshot.jpg`` or ``/stream.mjpg``."""
        if path == "/stream.mjpg":
            self._stream(app, results)
            return
        latest: Any = results.event() if path == "/detections" else results.jpeg()
        if latest is None:
            self._json(503, {"error": "no frame processed yet"}, {"Retry-After": "1"})
        elif path == "/detections":
            self._json(200, latest)
        else:
            self._send(200, latest[1], "image/jpeg")

    def _events(self, app: HttpApp, query: dict[str, list[str]]) -> None:
        try:
            limit = int(query.get("limit", ["50"])[0])
        except ValueError:
            self._json(400, {"error": "limit: expected an integer"})
            return
        camera = query.get("camera", [None])[0]
        if camera is not None and camera not in app.cameras:
            self._json(404, {"error": app.unknown(camera)})
            return
        self._json(200, app.events(camera, max(1, min(limit, 1000))))

    def _file(self, file: Path | None, content_type: str | None, missing: str) -> None:
        """Send ``file`` in chunks (404 ``missing`` when there is none, or it went meanwhile)."""
        try:
            if file is None:
                raise FileNotFoundError(missing)
            f = open(file, "rb")  # closed by the with block below
        except OSError:  # none, or pruned meanwhile
            self._json(404, {"error": missing})
            return
        with f:
            kind = content_type or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(os.fstat(f.fileno()).st_size))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            shutil.copyfileobj(f, self.wfile, 65536)

    def _stream(self, app: HttpApp, results: LatestResult) -> None:
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
                if results.wait_newer(sent, timeout=0.5) in (None, sent):
                    continue
                jpeg = results.jpeg()
                if jpeg is None:
                    continue
                sent, data = jpeg
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                self.wfile.write(head.encode() + data + b"\r\n")
                self.wfile.flush()
                next_at = time.monotonic() + gap
        finally:
            app.stream_slots.release()


def _busy_response(reason: str) -> bytes:
    body = (json.dumps({"status": "busy", "error": reason}) + "\n").encode()
    head = (
        "HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # stream handlers never block shutdown
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        app: HttpApp,
        *,
        max_connections: int = MAX_CONNECTIONS,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        request_queue_size: int = REQUEST_QUEUE_SIZE,
        fd_reserve: int = FD_RESERVE,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        self.max_connections = max(1, int(max_connections))
        self.request_timeout_s = float(request_timeout_s)
        self.request_queue_size = int(request_queue_size)  # listen(): read by server_activate
        self.fd_reserve = int(fd_reserve)
        self.active = 0  # connections being served
        self.refused = 0  # connections answered 503 at once
        self._count_lock = threading.Lock()
        self._lingering: list[tuple[float, socket.socket]] = []
        self._warn = Throttled(log)
        self._spare: int | None = None
        super().__init__(address, _Handler)
        self._spare = self._open_spare()

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # HTTPServer's version does a reverse DNS lookup
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    # ------------------------------------------------------------------------------ accept and refuse

    @staticmethod
    def _open_spare() -> int | None:
        try:
            return os.open(os.devnull, os.O_RDONLY)
        except OSError:
            return None

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            # Out of file descriptors: the pending connection stays readable, so select() would wake at
            # once and this loop would spin. Free the spare descriptor to accept and drop it, and pause.
            self._warn.warning("http: out of file descriptors (%s); dropping connections", exc.strerror)
            if self._spare is not None:
                os.close(self._spare)
                self._spare = None
                try:
                    sock, _ = self.socket.accept()
                    sock.close()
                except OSError:
                    pass
                self._spare = self._open_spare()
            time.sleep(0.05)
            raise

    def _fds_short(self) -> str | None:
        """Why the process is short of file descriptors (``None``: it is not)."""
        limit = fd_limit()
        if limit is None or self.fd_reserve <= 0:
            return None
        reserve = min(self.fd_reserve, max(limit // 4, 1))
        used = open_fds()
        if used is not None and used >= limit - reserve:
            return f"too many open files ({used} of {limit}; {reserve} kept for the camera and files)"
        return None

    def process_request(self, request: Any, client_address: Any) -> None:
        short = self._fds_short()
        reason = short
        if self.active >= self.max_connections:
            reason = f"too many connections (at most {self.max_connections})"
        if reason is not None:
            self.refused += 1
            self._warn.warning("http: refusing connections: %s", reason)
            self._refuse(request, reason, linger=short is None)
            return
        with self._count_lock:
            self.active += 1
        try:
            super().process_request(request, client_address)  # starts the connection's thread
        except BaseException:
            self._done()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done()

    def _done(self) -> None:
        with self._count_lock:
            self.active -= 1

    def _refuse(self, sock: socket.socket, reason: str, linger: bool) -> None:
        """Answer 503 without reading the request; half-close and, with ``linger`` (descriptors to spare),
        keep the socket a moment so that its client reads the answer instead of a reset."""
        try:
            sock.setblocking(False)
            sock.send(_busy_response(reason))
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        if not linger or len(self._lingering) >= MAX_LINGERING:
            self._drain(sock)
            sock.close()
            return
        self._lingering.append((time.monotonic() + LINGER_S, sock))

    @staticmethod
    def _drain(sock: socket.socket) -> bool:
        """Read what the client sent (non-blocking); True once it closed its side."""
        try:
            while True:
                if not sock.recv(65536):
                    return True
        except BlockingIOError:
            return False
        except OSError:
            return True

    def service_actions(self) -> None:
        """Close refused connections once their client closed, or after ``LINGER_S`` (serve loop only)."""
        if not self._lingering:
            return
        now = time.monotonic()
        keep = []
        for until, sock in self._lingering:
            if self._drain(sock) or now >= until:
                sock.close()
            else:
                keep.append((until, sock))
        self._lingering = keep

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("http: error serving %s", client_address, exc_info=True)  # never a traceback on stderr

    def server_close(self) -> None:
        super().server_close()
        for _, sock in self._lingering:
            sock.close()
        self._lingering = []
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None


class HttpServer:
    """Binds at construction (``OSError`` when it cannot), serves from a thread after :meth:`start`.
    ``max_connections``, ``request_timeout_s``, ``request_queue_size``, ``fd_reserve``: see the module
    docstring."""

    def __init__(
        self,
        host: str,
        port: int,
        app: HttpApp,
        *,
        max_connections: int = MAX_CONNECTIONS,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        request_queue_size: int = REQUEST_QUEUE_SIZE,
        fd_reserve: int = FD_RESERVE,
    ) -> None:
        self.app = app
        self._server = _Server(
            (host, port),
            app,
            max_connections=max_connections,
            request_timeout_s=request_timeout_s,
            request_queue_size=request_queue_size,
            fd_reserve=fd_reserve,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.25,), name="http", daemon=True)

    @property
    def active(self) -> int:
        """Connections being served now."""
        return self._server.active

    @property
    def refused(self) -> int:
        """Connections answered 503 at once (over the cap, or file descriptors short)."""
        return self._server.refused

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

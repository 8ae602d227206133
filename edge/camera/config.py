"""The camera daemon's configuration: a YAML file, command-line overrides, validation up front.

Every key, its default and its meaning are listed in ``deploy/README.md`` (and ``deploy/config-*.yaml``).
:func:`load_config` merges the file with the overrides and validates everything before the daemon
starts: a bad value raises ``ValueError`` naming the key and the reason
(``camera.yaml: http.port: expected an integer in 0..65535, got 'abc'``), which the CLI prints before
exiting with status 1. Unknown keys are errors too, so a typo never silently falls back to a default.
Relative paths (model, spec, source, events.path, http.token_file) are relative to the working directory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "DaemonConfig",
    "EventsConfig",
    "HttpConfig",
    "MqttConfig",
    "ReconnectConfig",
    "load_config",
    "parse_http_address",
]

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # camera names are MQTT topic levels and event fields
_MISSING = object()


@dataclass(frozen=True)
class HttpConfig:
    """The HTTP server: ``/healthz``, ``/metrics``, ``/detections``, ``/snapshot.jpg``, ``/stream.mjpg``."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None  # bearer token for every endpoint but /healthz
    jpeg_quality: int = 80  # snapshot and stream
    stream_fps: float = 10.0  # most frames per second sent to one MJPEG client
    stream_clients: int = 4  # concurrent MJPEG clients; more get 503


@dataclass(frozen=True)
class EventsConfig:
    """Detection events as JSON lines: a file rotated by size, or ``-`` for stdout."""

    path: str | None = None
    max_bytes: int = 10_000_000  # rotate when the file would grow past this (0: never)
    backups: int = 3  # rotated files kept: PATH.1 .. PATH.N
    include_empty: bool = False  # also emit (file and MQTT) frames with no detections


@dataclass(frozen=True)
class MqttConfig:
    """Publish events to ``<topic_prefix>/<name>/detections``; ``.../status`` is online/offline (retained)."""

    host: str
    port: int = 1883
    topic_prefix: str = "edgedet"
    client_id: str | None = None  # default: edgedet-<name>
    qos: int = 0
    keepalive: int = 30
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_certs: str | None = None


@dataclass(frozen=True)
class ReconnectConfig:
    """Capped exponential backoff between attempts to re-open a failed source."""

    initial_s: float = 0.5
    max_s: float = 30.0


@dataclass(frozen=True)
class DaemonConfig:
    model: str
    source: str
    name: str = "camera"
    spec: str | None = None  # None: the model's metadata; "ultraface" or a spec JSON path
    threads: int | None = None
    score_threshold: float | None = None
    iou_threshold: float | None = None
    loop: bool = True  # video files and image folders start again at their end
    source_fps: float | None = None  # files/folders: delivery rate (None: their own; 0: unpaced); V4L2: requested
    capture_width: int | None = None  # requested from V4L2 devices
    capture_height: int | None = None
    max_fps: float = 0.0  # most inferences per second (0: as fast as frames come)
    pipeline: bool = True  # inference in its own thread, overlapping the rest (not with max_fps: frames are spaced)
    stall_timeout_s: float = 60.0  # /healthz 503 and no watchdog ping when a thread makes no progress this long
    http: HttpConfig = field(default_factory=HttpConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    mqtt: MqttConfig | None = None
    reconnect: ReconnectConfig = field(default_factory=ReconnectConfig)


class _Section:
    """Typed reads from one mapping of the config; errors name the dotted key."""

    def __init__(self, data: Any, prefix: str, where: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            what = prefix.rstrip(".") or "the config"
            raise ValueError(f"{where}: {what}: expected a mapping of keys, got {type(data).__name__}")
        self.data = dict(data)
        self.prefix = prefix
        self.where = where
        self.used: set[str] = set()

    def fail(self, key: str, reason: str) -> ValueError:
        return ValueError(f"{self.where}: {self.prefix}{key}: {reason}")

    def _get(self, key: str, default: Any) -> Any:
        self.used.add(key)
        value = self.data.get(key, default)
        if value is _MISSING:
            raise self.fail(key, "required")
        return value

    def text(self, key: str, default: Any = None, *, pattern: re.Pattern[str] | None = None) -> Any:
        value = self._get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.fail(key, f"expected a string, got {value!r}")
        value = str(value)
        if not value.strip():
            raise self.fail(key, "must not be empty")
        if pattern is not None and not pattern.match(value):
            raise self.fail(key, f"{value!r} does not match {pattern.pattern}")
        return value

    def integer(self, key: str, default: Any, lo: int, hi: int | None = None) -> Any:
        value = self._get(key, default)
        if value is None:
            return None
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
            limit = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
            raise self.fail(key, f"expected an integer {limit}, got {value!r}")
        return value

    def number(self, key: str, default: Any, lo: float, hi: float | None = None, *, above: bool = False) -> Any:
        value = self._get(key, default)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and value == value
        if ok:
            ok = (value > lo if above else value >= lo) and (hi is None or value <= hi)
        if not ok:
            limit = f"{'>' if above else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
            raise self.fail(key, f"expected a number {limit}, got {value!r}")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def check_unknown(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            raise self.fail(str(unknown[0]), f"unknown key (known here: {known})")


def parse_http_address(value: str) -> tuple[str | None, int]:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` or ``PORT`` -> ``(host or None, port)``."""
    text = str(value).strip()
    host: str | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1 :].startswith(":"):
            raise ValueError(f"--http: expected [IPv6]:PORT, got {value!r}")
        host, port_text = text[1:end], text[end + 2 :]
    elif ":" in text:
        host, port_text = text.rsplit(":", 1)
        host = host or None
    else:
        port_text = text
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"--http: expected HOST:PORT with a port in 0..65535, got {value!r}")
    return host, int(port_text)


def _read_token(section: _Section) -> str | None:
    token = section.text("token")
    token_file = section.text("token_file")
    if token and token_file:
        raise section.fail("token_file", "give token or token_file, not both")
    if token_file:
        path = Path(token_file)
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise section.fail("token_file", f"cannot read {path} ({exc.strerror or exc})") from exc
        if not token:
            raise section.fail("token_file", f"{path} is empty")
    if token is not None and (len(token) < 8 or any(c.isspace() for c in token)):
        raise section.fail("token", "expected at least 8 characters and no whitespace")
    return token


def _http(data: Any, where: str) -> HttpConfig:
    if data is False:
        return HttpConfig(enabled=False)
    s = _Section(data, "http.", where)
    d = HttpConfig()
    cfg = HttpConfig(
        enabled=s.flag("enabled", d.enabled),
        host=s.text("host", d.host),
        port=s.integer("port", d.port, 0, 65535),
        token=_read_token(s),
        jpeg_quality=s.integer("jpeg_quality", d.jpeg_quality, 1, 100),
        stream_fps=s.number("stream_fps", d.stream_fps, 0.0, 60.0, above=True),
        stream_clients=s.integer("stream_clients", d.stream_clients, 1, 64),
    )
    s.check_unknown()
    return cfg


def _events(data: Any, where: str) -> EventsConfig:
    s = _Section(data, "events.", where)
    d = EventsConfig()
    cfg = EventsConfig(
        path=s.text("path"),
        max_bytes=s.integer("max_bytes", d.max_bytes, 0),
        backups=s.integer("backups", d.backups, 0, 100),
        include_empty=s.flag("include_empty", d.include_empty),
    )
    s.check_unknown()
    if cfg.max_bytes and cfg.max_bytes < 4096:
        raise s.fail("max_bytes", f"expected 0 (never rotate) or at least 4096, got {cfg.max_bytes}")
    return cfg


def _mqtt(data: Any, where: str, name: str) -> MqttConfig | None:
    if data is None or data is False:
        return None
    s = _Section(data, "mqtt.", where)
    d = MqttConfig(host="")
    prefix = s.text("topic_prefix", d.topic_prefix)
    if prefix is not None and (any(c in prefix for c in "+#\0") or prefix.startswith("/") or prefix.endswith("/")):
        raise s.fail("topic_prefix", f"no '+', '#' or leading/trailing '/' allowed, got {prefix!r}")
    cfg = MqttConfig(
        host=s.text("host", _MISSING),
        port=s.integer("port", d.port, 1, 65535),
        topic_prefix=prefix,
        client_id=s.text("client_id", f"edgedet-{name}"),
        qos=s.integer("qos", d.qos, 0, 2),
        keepalive=s.integer("keepalive", d.keepalive, 5, 3600),
        username=s.text("username"),
        password=s.text("password"),
        tls=s.flag("tls", d.tls),
        ca_certs=s.text("ca_certs"),
    )
    s.check_unknown()
    if cfg.password and not cfg.username:
        raise s.fail("password", "a password needs a username")
    return cfg


def _reconnect(data: Any, where: str) -> ReconnectConfig:
    s = _Section(data, "reconnect.", where)
    d = ReconnectConfig()
    cfg = ReconnectConfig(
        initial_s=s.number("initial_s", d.initial_s, 0.0, 3600.0, above=True),
        max_s=s.number("max_s", d.max_s, 0.0, 3600.0, above=True),
    )
    s.check_unknown()
    if cfg.max_s < cfg.initial_s:
        raise s.fail("max_s", f"must be >= reconnect.initial_s ({cfg.initial_s}), got {cfg.max_s}")
    return cfg


def _source(s: _Section) -> str:
    source = s.text("source", _MISSING)
    if "!" in source and "appsink" not in source:
        raise s.fail("source", "a GStreamer pipeline must end in '! appsink' (OpenCV reads frames from it)")
    return source


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` with dotted keys (``"http.port"``) applied onto a copy of ``base``."""
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        head, _, rest = key.partition(".")
        if rest:
            section = out.get(head)
            section = dict(section) if isinstance(section, Mapping) else {}
            out[head] = _merge(section, {rest: value})
        else:
            out[head] = value
    return out


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> DaemonConfig:
    """The validated config: YAML ``path`` (optional) with ``overrides`` (dotted keys, ``None`` = not given)."""
    raw: Any = {}
    where = "camera config"
    if path is not None:
        p = Path(path)
        where = str(p)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{p}: not valid YAML ({' '.join(str(exc).split())})") from exc
        if not isinstance(raw, Mapping):
            raise ValueError(f"{p}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    raw = _merge(dict(raw), overrides or {})
    s = _Section(raw, "", where)
    name = s.text("name", "camera", pattern=_NAME)
    spec = s.text("spec")
    cfg = DaemonConfig(
        model=s.text("model", _MISSING),
        source=_source(s),
        name=name,
        spec=spec,
        threads=s.integer("threads", None, 1, 256),
        score_threshold=s.number("score_threshold", None, 0.0, 1.0),
        iou_threshold=s.number("iou_threshold", None, 0.0, 1.0),
        loop=s.flag("loop", True),
        source_fps=s.number("source_fps", None, 0.0, 1000.0),
        capture_width=s.integer("capture_width", None, 1, 16384),
        capture_height=s.integer("capture_height", None, 1, 16384),
        max_fps=s.number("max_fps", 0.0, 0.0, 1000.0),
        pipeline=s.flag("pipeline", True),
        stall_timeout_s=s.number("stall_timeout_s", 60.0, 1.0, 86400.0),
        http=_http(s._get("http", None), where),
        events=_events(s._get("events", None), where),
        mqtt=_mqtt(s._get("mqtt", None), where, name),
        reconnect=_reconnect(s._get("reconnect", None), where),
    )
    s.check_unknown()
    return cfg

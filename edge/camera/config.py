"""The camera daemon's configuration: a YAML file, command-line overrides, validation up front.

Every key is written once, below: its type, default, bounds and meaning. The reference page
``docs/reference/config-daemon.md`` and ``config.schema.json`` beside this file are generated from these models
(``python -m edgedet.config_docs --write``). :func:`load_config` merges the file with the
overrides and validates everything before the daemon starts: a bad value raises ``ValueError`` naming the
file, the key and the reason (``camera.yaml: http.port: expected an integer in 0..65535, got 'abc'``),
which the CLI prints before exiting with status 1. Unknown keys are errors too, so a typo never silently
falls back to a default. Relative paths (model, spec, source, events.path, http.token_file) are relative to
the working directory.

One camera: ``model`` and ``source`` (and ``name``) at the top level. Several cameras, one model: a
``cameras:`` list of :class:`CameraConfig` (``name``, ``source`` and any :class:`CameraSettings` key); the
top-level :class:`CameraSettings` keys are every camera's defaults. :meth:`DaemonConfig.camera_configs`
gives each camera's settings either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator, model_validator

from edgedet.edge.camera.clips import ClipSettings
from edgedet.edge.camera.filters import ObjectFilterSettings
from edgedet.edge.camera.motion import MotionSettings
from edgedet.edge.camera.objects import ObjectSettings
from edgedet.edge.camera.scene import TrackingSettings
from edgedet.edge.camera.snapshots import SnapshotSettings
from edgedet.edge.camera.zones import MaskList, ZoneList, validate_named_items
from edgedet.edge.runtime.settings import (
    ConfigKeyError,
    Expect,
    Flag,
    Int,
    NonEmptyText,
    Number,
    SectionInput,
    StrictModel,
    Text,
    deep_merge,
    load,
    or_false,
    section,
)

__all__ = [
    "CameraConfig",
    "CameraSettings",
    "DaemonConfig",
    "EventsConfig",
    "HttpConfig",
    "MqttConfig",
    "ReconnectConfig",
    "load_config",
    "parse_http_address",
]

NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"  # camera names are MQTT topic levels and event fields


def _check_token(token: str) -> str:
    if len(token) < 8 or any(c.isspace() for c in token):
        raise ValueError("expected at least 8 characters and no whitespace")
    return token


class HttpConfig(StrictModel):
    """The HTTP server: ``/healthz``, ``/metrics``, ``/detections``, ``/snapshot.jpg``, ``/stream.mjpg``."""

    enabled: Flag = Field(True, description="`http: false` switches the server off")
    host: NonEmptyText = Field(
        "127.0.0.1", description="`0.0.0.0` (or an interface address) to serve the network — then set a token"
    )
    port: Annotated[Int, Field(ge=0, le=65535)] = Field(8080, description="`0`: any free port (logged)")
    token: NonEmptyText | None = Field(
        None,
        description="bearer token (8+ characters, no whitespace) for every endpoint but `/healthz`; null: no token",
    )
    token_file: NonEmptyText | None = Field(
        None, description="read `token` from this file (give `token` or `token_file`, not both)"
    )
    jpeg_quality: Annotated[Int, Field(ge=1, le=100)] = Field(80, description="snapshot and stream JPEG quality")
    stream_fps: Annotated[Number, Field(gt=0, le=60)] = Field(
        10.0, description="most frames per second sent to one MJPEG client"
    )
    stream_clients: Annotated[Int, Field(ge=1, le=64)] = Field(4, description="concurrent MJPEG clients; more get 503")
    max_connections: Annotated[Int, Field(ge=1, le=4096)] = Field(
        64, description="connections served at once; one more gets a quick 503 before anything is read"
    )
    request_timeout_s: Annotated[Number, Field(gt=0, le=300)] = Field(
        10.0, description="the request line and headers must all arrive within this long (slow clients are cut)"
    )
    backlog: Annotated[Int, Field(ge=1, le=4096)] = Field(
        64, description="the listen queue of not yet accepted connections"
    )
    fd_reserve: Annotated[Int, Field(ge=0, le=65536)] = Field(
        64,
        description="new connections are refused while open files come within min(this, limit / 4) of the "
        "process's file limit, so the camera and the files can always open",
    )

    @field_validator("token")
    @classmethod
    def _token(cls, token: str | None) -> str | None:
        return token if token is None else _check_token(token)

    @model_validator(mode="after")
    def _read_token_file(self) -> HttpConfig:
        if self.token_file is None:
            return self
        if self.token is not None:
            raise ConfigKeyError("token_file", "give token or token_file, not both")
        path = Path(self.token_file)
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ConfigKeyError("token_file", f"cannot read {path} ({reason})") from exc
        if not token:
            raise ConfigKeyError("token_file", f"{path} is empty")
        try:
            _check_token(token)
        except ValueError as exc:
            raise ConfigKeyError("token", f"{exc} (read from {path})") from exc
        object.__setattr__(self, "token", token)  # frozen: set once, while validating
        return self


class EventsConfig(StrictModel):
    """Detection events as JSON lines: a file rotated by size, or ``-`` for stdout."""

    path: NonEmptyText | None = Field(None, description="JSON-lines file, or `-` for stdout; null: no events")
    max_bytes: Annotated[Int, Field(ge=0)] = Field(
        10_000_000, description="rotate before the file would pass this (`0`: never; else at least 4096)"
    )
    backups: Annotated[Int, Field(ge=0, le=100)] = Field(
        3, description="rotated files kept (`PATH.1` newest … `PATH.N`)"
    )
    include_empty: Flag = Field(False, description="also emit frames with no detections (file and MQTT)")
    detections: Flag = Field(True, description="per-frame detection events in the file")
    objects: Flag = Field(True, description="object events (`new`, `update`, `end`, `enter`, `exit`) in the file")

    @field_validator("max_bytes")
    @classmethod
    def _rotation_size(cls, value: int) -> int:
        if value and value < 4096:
            raise ValueError(f"expected 0 (never rotate) or at least 4096, got {value}")
        return value


class MqttConfig(StrictModel):
    """Publish events to ``<topic_prefix>/<name>/detections``; ``.../status`` is online/offline (retained)."""

    host: NonEmptyText = Field(description="the broker's host name or address")
    port: Annotated[Int, Field(ge=1, le=65535)] = Field(1883, description="the broker's port (TLS: usually 8883)")
    topic_prefix: NonEmptyText = Field("edgedet", description="may contain `/`, not `+`, `#` or a leading/trailing `/`")
    client_id: NonEmptyText | None = Field(
        None,
        description="null: `edgedet-<name>`; with `cameras` (one connection per camera, each with its own last "
        "will): `edgedet-<camera>`, or `<client_id>-<camera>` when given",
    )
    qos: Annotated[Int, Field(ge=0, le=2)] = Field(0, description="QoS of detection events (status is always QoS 1)")
    keepalive: Annotated[Int, Field(ge=5, le=3600)] = Field(
        30, description="seconds; the broker fires the last will after 1.5× this without traffic"
    )
    username: NonEmptyText | None = Field(None, description="broker user name")
    password: NonEmptyText | None = Field(None, description="broker password (needs `username`)")
    tls: Flag = Field(False, description="TLS to the broker")
    ca_certs: NonEmptyText | None = Field(None, description="CA bundle for TLS (null: the system's CAs)")
    detections: Flag = Field(
        False, description="also publish every frame's detections to `<prefix>/<name>/detections` (chatty)"
    )
    discovery: Flag = Field(
        False, description="Home Assistant MQTT discovery: occupancy and count sensors per zone and label"
    )
    discovery_prefix: NonEmptyText = Field("homeassistant", description="Home Assistant's discovery topic prefix")
    max_queued: Annotated[Int, Field(ge=1, le=1_000_000)] = Field(
        1000, description="QoS 1/2 events kept while the broker is away; when full the oldest are dropped"
    )

    @field_validator("topic_prefix")
    @classmethod
    def _topic(cls, value: str) -> str:
        if any(c in value for c in "+#\0") or value.startswith("/") or value.endswith("/"):
            raise ValueError(f"no '+', '#' or leading/trailing '/' allowed, got {value!r}")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> MqttConfig:
        if self.password and not self.username:
            raise ConfigKeyError("password", "a password needs a username")
        return self


class ReconnectConfig(StrictModel):
    """Capped exponential backoff between attempts to re-open a failed source."""

    initial_s: Annotated[Number, Field(gt=0, le=3600)] = Field(
        0.5, description="first wait before re-opening a failed source; doubles up to `max_s`"
    )
    max_s: Annotated[Number, Field(gt=0, le=3600)] = Field(
        30.0, description="longest wait; back to `initial_s` after 5 s of healthy streaming"
    )

    @model_validator(mode="after")
    def _order(self) -> ReconnectConfig:
        if self.max_s < self.initial_s:
            raise ConfigKeyError("max_s", f"must be >= reconnect.initial_s ({self.initial_s}), got {self.max_s}")
        return self


def _http_section(value: Any) -> Any:
    if value is False:
        return {"enabled": False}
    return {} if value is None else value


def _optional_section(value: Any) -> Any:
    return None if value is False else value


def _check_source(source: str | None) -> str | None:
    if source is not None and "!" in source and "appsink" not in source:
        raise ValueError("a GStreamer pipeline must end in '! appsink' (OpenCV reads frames from it)")
    return source


SOURCE_HELP = "camera index or device, GStreamer pipeline, stream URL, video file, image file or folder (see Sources)"


class CameraSettings(StrictModel):
    """What each camera may set for itself: at the top level, the defaults of every camera."""

    score_threshold: Annotated[Number, Field(ge=0, le=1)] | None = Field(
        None, description="post-processing override (null: the model's)"
    )
    iou_threshold: Annotated[Number, Field(ge=0, le=1)] | None = Field(
        None, description="NMS override (null: the model's)"
    )
    loop: Flag = Field(
        True, description="video files and image folders start again at their end; `false`: play once, stay up"
    )
    source_fps: Annotated[Number, Field(ge=0, le=1000)] | None = Field(
        None,
        description="files/folders: delivery rate (null: a file's own, folders 5; `0`: unpaced); V4L2: requested rate",
    )
    capture_width: Annotated[Int, Field(ge=1, le=16384)] | None = Field(
        None, description="requested from V4L2 cameras (null: the device's)"
    )
    capture_height: Annotated[Int, Field(ge=1, le=16384)] | None = Field(
        None, description="requested from V4L2 cameras (null: the device's)"
    )
    max_fps: Annotated[Number, Field(ge=0, le=1000)] = Field(
        0.0, description="most inferences per second (`0`: as fast as frames come); saves CPU and heat"
    )
    reconnect: Annotated[ReconnectConfig, SectionInput] = section(
        ReconnectConfig, "backoff between attempts to re-open a failed source"
    )
    tracking: Annotated[TrackingSettings, SectionInput] = section(TrackingSettings, "the multi-object tracker")
    objects: Annotated[ObjectSettings, SectionInput] = section(ObjectSettings, "when object events are sent")
    zones: ZoneList = Field(
        default_factory=list, description="named polygons: `enter`/`exit` events and object counts per zone"
    )
    masks: MaskList = Field(default_factory=list, description="polygons where detections are ignored")
    filters: Annotated[ObjectFilterSettings, SectionInput] = section(
        ObjectFilterSettings, "per-label minimum score, area and aspect ratio"
    )
    motion: Annotated[MotionSettings, SectionInput] = section(
        MotionSettings, "motion gating: the model sleeps while nothing moves"
    )
    clips: Annotated[ClipSettings, SectionInput] = section(
        ClipSettings,
        "event clips: a video of each object, served at `/events/<id>/clip.mp4`; with `cameras`, each camera "
        "writes into `<dir>/<camera name>/` (budgets per camera) and may turn its own off",
    )


class _CameraId(StrictModel):
    name: Annotated[Text, Field(pattern=NAME_PATTERN)] = Field(
        description="the camera's name (unique): the events' `camera` field, the MQTT topic level, `/cameras/<name>`"
    )
    source: NonEmptyText = Field(description=SOURCE_HELP, json_schema_extra={"type": ["string", "integer"]})

    _source = field_validator("source")(_check_source)


class CameraConfig(CameraSettings, _CameraId):
    """One camera of ``cameras:``: its name and source, and any per-camera key (the top-level ones are the
    defaults: sections are merged key by key, lists such as ``zones`` replaced)."""


def _camera_list(raw: Any) -> Any:
    return validate_named_items(CameraConfig, raw, "camera")


CameraList = Annotated[list[CameraConfig], BeforeValidator(_camera_list)]


class _Shared(StrictModel):
    model: NonEmptyText = Field(
        description="`.onnx` or `.tflite` (both carry their spec inside; an older `.tflite` reads `MODEL.json` "
        "beside it); one model serves every camera"
    )
    source: NonEmptyText | None = Field(
        None,
        description=f"{SOURCE_HELP}; required without `cameras` (with them, each camera has its own)",
        json_schema_extra={"type": ["string", "integer"]},  # `source: 0` is camera 0
    )
    name: Annotated[Text, Field(pattern=NAME_PATTERN)] = Field(
        "camera", description="camera name: the events' `camera` field and the MQTT topic level (not with `cameras`)"
    )
    spec: NonEmptyText | None = Field(
        None, description="`ultraface` or a spec JSON file, for models without metadata (null: the model's own)"
    )
    threads: Annotated[Int, Field(ge=1, le=256)] | None = Field(None, description="inference threads (null: all cores)")

    _source = field_validator("source")(_check_source)


class DaemonConfig(CameraSettings, _Shared):
    """The camera daemon's config (``edgedet camera --config camera.yaml``): ``model`` and ``source`` (or
    ``cameras``) are required, every other key is optional."""

    pipeline: Flag = Field(
        True,
        description="run inference in its own thread, overlapped with capture, pre/post-processing and "
        "publishing (the backends release the GIL); a frame stays in flight only while the next one arrives "
        "within ~1.5 inference times, so a slow camera gets no extra latency; off when a camera sets `max_fps`",
    )
    stall_timeout_s: Annotated[Number, Field(ge=1, le=86400)] = Field(
        60.0, description="a thread without progress this long makes `/healthz` 503 and stops the watchdog pings"
    )
    health_window_s: Annotated[Number, Field(gt=0, le=86400)] = Field(
        10.0,
        description="`/healthz` says `failing` (503, no watchdog pings) when a camera's frames were captured but "
        "none was processed in this long (at least 3 inference times per camera or `max_fps` periods), or "
        "failures outnumber successes in it",
    )
    http: Annotated[
        HttpConfig,
        Expect("a mapping of keys, or false (no server)", "section, or `false`"),
        BeforeValidator(_http_section),
    ] = section(HttpConfig, "the HTTP server (`false`: none)", json_schema_extra=or_false)
    events: Annotated[EventsConfig, SectionInput] = section(EventsConfig, "detection events as JSON lines")
    mqtt: Annotated[
        MqttConfig | None,
        Expect("a mapping of keys, or null (no MQTT)", "section, or null"),
        BeforeValidator(_optional_section),
    ] = Field(
        None, description="MQTT publishing; no `mqtt` section (or null, false): no MQTT", json_schema_extra=or_false
    )
    snapshots: Annotated[SnapshotSettings, SectionInput] = section(
        SnapshotSettings, "the best snapshot of each object, kept under a budget"
    )
    cameras: CameraList = Field(
        default_factory=list,
        description="several cameras, one model: a list of `name`, `source` and any of the per-camera keys "
        "(`score_threshold` ... `clips` above), whose top-level values are every camera's defaults (sections "
        "merged key by key, lists replaced); empty: one camera from `name` and `source`",
    )

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """``mqtt.client_id`` defaults to ``edgedet-<name>`` (with ``cameras``: per camera, in the daemon);
        every camera entry starts from the top-level per-camera keys."""
        if not isinstance(data, Mapping):
            return data
        cameras = data.get("cameras")
        if cameras and isinstance(cameras, Sequence) and not isinstance(cameras, (str, bytes)):
            shared = {k: data[k] for k in CameraSettings.model_fields if k in data}
            merged = [deep_merge(shared, c) if isinstance(c, Mapping) else c for c in cameras]
            data = {**data, "cameras": merged}
        elif isinstance(data.get("mqtt"), Mapping) and "client_id" not in data["mqtt"]:
            name = data.get("name", "camera")
            data = {**data, "mqtt": {**data["mqtt"], "client_id": f"edgedet-{name}"}}
        return data

    @model_validator(mode="after")
    def _source_or_cameras(self) -> DaemonConfig:
        if not self.cameras:
            if self.source is None and "source" in self.model_fields_set:
                raise ConfigKeyError("source", "expected a non-empty string, got null")
            if self.source is None:
                raise ConfigKeyError("source", "required (or a `cameras` list)")
        elif self.source is not None:
            raise ConfigKeyError("source", "with `cameras`, give each camera its own source there")
        elif self.name != _Shared.model_fields["name"].default:
            raise ConfigKeyError("name", "with `cameras`, give each camera its own name there")
        return self

    def camera_configs(self) -> list[CameraConfig]:
        """Every camera's settings: the ``cameras`` entries, or one camera from the top-level keys."""
        if self.cameras:
            return list(self.cameras)
        values = {key: getattr(self, key) for key in CameraSettings.model_fields}
        return [CameraConfig.model_construct(name=self.name, source=self.source, **values)]


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


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> DaemonConfig:
    """The validated config: YAML ``path`` (optional) with ``overrides`` (dotted keys, ``None`` = not given)."""
    return load(DaemonConfig, path, overrides or {}, default_source="camera config")

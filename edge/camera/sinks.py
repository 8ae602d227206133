"""Where events go: a JSON-lines file rotated by size (or stdout), and an MQTT broker.

Every sink has ``emit(event)`` and ``close()``; neither raises on I/O trouble (a full disk, a broker that
is down): the daemon keeps detecting, the failure is logged and counted (``errors``). A failed write never
leaves a partial line in the events file: it is cut back to the last complete line (the event dropped).
While the broker is away, QoS 1/2 events wait in a bounded queue that drops the *oldest* when full, so
what is delivered on reconnect is the most recent history.

MQTT topics (``P`` = ``mqtt.topic_prefix``, ``N`` = the camera ``name``):

* ``P/N/events`` — object events (:mod:`edgedet.edge.camera.objects`: ``new``, ``update``, ``end``,
  ``enter``, ``exit``) as JSON, QoS ``mqtt.qos``, not retained;
* ``P/N/detections`` — every frame's detections (:mod:`edgedet.edge.camera.events`), only with
  ``mqtt.detections: true`` (a person at a door for a minute at 10 fps is 600 of these, and 2 object events);
* ``P/N/<zone>/<label>`` — how many ``label`` objects are in ``zone`` now, retained (republished on every
  reconnect), so a subscriber always sees the current count;
* with ``mqtt.discovery``, Home Assistant discovery configs (retained) under ``<discovery_prefix>/``: per
  zone and label an occupancy ``binary_sensor`` and a count ``sensor`` reading those topics;
* ``P/N/status`` — ``online`` when connected, ``offline`` at a clean stop and, as the broker's last
  will, when the daemon vanishes; QoS 1, retained, so a subscriber always sees the current state.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import IO, Any, Generic, Protocol, TypeVar

from edgedet.edge.camera.config import MqttConfig
from edgedet.edge.camera.throttled_log import Throttled

__all__ = ["OBJECT_EVENTS", "DropOldestQueue", "JsonLinesSink", "MqttSink", "Sink", "discovery_messages", "mqtt_topics"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Sink(Protocol):
    errors: int

    def emit(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), allow_nan=False)


class DropOldestQueue(Generic[T]):
    """A FIFO of at most ``maxlen`` items: :meth:`push` on a full queue drops the oldest (returned), so
    the newest items always fit. Not thread-safe (the MQTT sink holds its lock)."""

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen: expected >= 1, got {maxlen}")
        self.maxlen = maxlen
        self._items: collections.deque[T] = collections.deque()

    def push(self, item: T) -> T | None:
        """Append ``item``; the dropped oldest item when the queue was full, else ``None``."""
        dropped = self._items.popleft() if len(self._items) >= self.maxlen else None
        self._items.append(item)
        return dropped

    def peek(self) -> T:
        return self._items[0]

    def pop(self) -> T:
        return self._items.popleft()

    def items(self) -> list[T]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)


class JsonLinesSink:
    """One JSON object per line, flushed per event. A file is rotated like ``logging``'s
    RotatingFileHandler: before a line would take it past ``max_bytes`` it becomes ``PATH.1`` (older ones
    shift up to ``PATH.<backups>``, the oldest is deleted). ``path`` ``-`` writes to stdout."""

    def __init__(self, path: str, max_bytes: int = 10_000_000, backups: int = 3) -> None:
        self.path = None if path == "-" else Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.errors = 0
        self.written = 0
        self._lock = threading.Lock()
        self._warn = Throttled(log)
        self._file: IO[bytes] | None = None
        self._size = 0
        self._need_newline = False  # a partial line could not be cut: start the next line on a fresh one
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._open()
            except OSError as exc:
                raise ValueError(f"events.path: cannot write {self.path} ({exc.strerror or exc})") from exc

    def _open(self) -> None:
        assert self.path is not None
        # unbuffered: each line goes to the kernel whole or its failure is seen here, never left in a buffer
        self._file = open(self.path, "ab", buffering=0)  # kept open for the daemon's life
        self._size = os.fstat(self._file.fileno()).st_size
        if self._size and not self._ends_with_newline():
            self._cut_partial_line()  # a partial line from before (a crash mid-write, a full disk)

    def _ends_with_newline(self) -> bool:
        assert self.path is not None and self._size > 0
        with open(self.path, "rb") as f:
            f.seek(self._size - 1)
            return f.read(1) == b"\n"

    def _cut_partial_line(self) -> None:
        """Truncate the file after its last complete line."""
        assert self.path is not None and self._file is not None
        with open(self.path, "rb") as f:
            end = self._size
            while end > 0:
                start = max(0, end - 65536)
                f.seek(start)
                newline = f.read(end - start).rfind(b"\n")
                if newline >= 0:
                    end = start + newline + 1
                    break
                end = start
        log.warning("events: %s ended in a partial line; cutting it back to %d bytes", self.path, end)
        try:
            os.ftruncate(self._file.fileno(), end)
        except OSError as exc:
            log.warning("events: cannot cut %s (%s); the next event starts on a new line", self.path, exc)
            self._need_newline = True
            return
        self._size = end

    def _write_line(self, data: bytes) -> None:
        """Append ``data`` (one line) whole, or put the file back as it was and raise ``OSError``."""
        assert self._file is not None
        fd = self._file.fileno()
        start = self._size
        if self._need_newline:
            data = b"\n" + data
        view = memoryview(data)
        try:
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except OSError:
            try:
                os.ftruncate(fd, start)  # shrinking needs no space: no partial line is left behind
            except OSError as exc:
                log.warning("events: cannot cut %s back after a failed write (%s)", self.path, exc)
                self._file.close()
                self._file = None  # re-opened (and its partial line cut, or ended) on the next event
            raise
        self._size = start + len(data)
        self._need_newline = False

    def _rotate(self) -> None:
        assert self.path is not None and self._file is not None
        self._file.close()
        self._file = None  # re-opened on the next event if the renames fail
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._open()

    def emit(self, event: dict[str, Any]) -> None:
        line = _dumps(event) + "\n"
        with self._lock:
            try:
                if self.path is None:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                else:
                    if self._file is None:
                        self._open()
                    assert self._file is not None
                    data = line.encode("utf-8")
                    if self.max_bytes and self._size > 0 and self._size + len(data) > self.max_bytes:
                        self._rotate()
                    self._write_line(data)
                self.written += 1
            except (OSError, ValueError) as exc:
                self.errors += 1  # the event is dropped; the file still ends in a complete line
                self._warn.warning("events: cannot write %s; event dropped (%s)", self.path or "stdout", exc)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                try:
                    os.fsync(self._file.fileno())
                    self._file.close()
                except OSError as exc:
                    log.warning("events: closing %s: %s", self.path, exc)
                self._file = None
            elif self.path is None:
                sys.stdout.flush()


OBJECT_EVENTS = frozenset({"new", "update", "end", "enter", "exit"})


def mqtt_topics(config: MqttConfig, camera: str) -> tuple[str, str]:
    """``(detections topic, status topic)``."""
    base = f"{config.topic_prefix}/{camera}"
    return f"{base}/detections", f"{base}/status"


def discovery_messages(config: MqttConfig, camera: str, zone_labels: dict[str, list[str]]) -> dict[str, str]:
    """Home Assistant MQTT discovery: ``{config topic: JSON}`` for an occupancy ``binary_sensor`` and a count
    ``sensor`` per zone and label, reading the retained ``P/N/<zone>/<label>`` counts."""
    device = {"identifiers": [f"edgedet_{camera}"], "name": f"edgedet {camera}", "manufacturer": "edgedet"}
    out = {}
    for zone, labels in zone_labels.items():
        for label in labels:
            state = f"{config.topic_prefix}/{camera}/{zone}/{label}"
            uid = f"edgedet_{camera}_{zone}_{label}".replace("-", "_").replace(".", "_")
            availability = {"topic": f"{config.topic_prefix}/{camera}/status"}
            out[f"{config.discovery_prefix}/binary_sensor/{uid}/config"] = json.dumps({
                "name": f"{zone} {label} occupancy", "unique_id": f"{uid}_occupancy", "state_topic": state,
                "device_class": "occupancy", "value_template": "{{ 'ON' if value | int > 0 else 'OFF' }}",
                "availability": [availability], "payload_available": "online", "payload_not_available": "offline",
                "device": device,
            })  # fmt: skip
            out[f"{config.discovery_prefix}/sensor/{uid}/config"] = json.dumps({
                "name": f"{zone} {label} count", "unique_id": f"{uid}_count", "state_topic": state,
                "unit_of_measurement": "objects", "state_class": "measurement",
                "availability": [availability], "payload_available": "online", "payload_not_available": "offline",
                "device": device,
            })  # fmt: skip
    return out


class MqttSink:
    """Publishes events through paho-mqtt's network thread; reconnects by itself.

    While disconnected, QoS 1/2 events wait in our own queue of at most ``max_queued``: when it is full
    the *oldest* is dropped, so the newest events (those made just before and after the broker comes back)
    are the ones delivered, in order, on reconnect. QoS 0 events are dropped while disconnected (QoS 0
    promises nothing). ``published`` counts events accepted (sent, or queued to be sent); ``errors`` counts
    events dropped (QoS 0 while disconnected, the oldest queued one on overflow, paho refusing); ``queued``
    is how many wait."""

    def __init__(self, config: MqttConfig, camera: str, max_queued: int = 1000, reconnect_max_s: float = 30.0):
        try:
            import paho.mqtt.client as mqtt
        except ImportError as exc:
            raise ValueError("mqtt: publishing needs paho-mqtt (pip install 'paho-mqtt>=2')") from exc
        self.config = config
        self.camera = camera
        self.topic, self.status_topic = mqtt_topics(config, camera)
        self.events_topic = f"{config.topic_prefix}/{camera}/events"
        self._retained: dict[str, str] = {}  # topic -> latest payload, republished on every connect
        self.errors = 0
        self.published = 0
        self.connected = False
        self.max_queued = max_queued
        self._mqtt = mqtt
        self._warn = Throttled(log)
        self._lock = threading.Lock()  # order: ours, then paho's (paho never calls us holding its own)
        self._pending: DropOldestQueue[tuple[str, str]] = DropOldestQueue(max_queued)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=config.client_id or "", clean_session=True)
        if config.username:
            client.username_pw_set(config.username, config.password)
        if config.tls or config.ca_certs:
            try:
                client.tls_set(ca_certs=config.ca_certs)
            except (OSError, ValueError) as exc:
                raise ValueError(f"mqtt.ca_certs: cannot use {config.ca_certs} ({exc})") from exc
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(reconnect_max_s)))
        # paho's own queue (messages in flight, or caught by a disconnect) is larger than ours, so that a
        # full backlog handed over on reconnect leaves room for new events; when it is full, ours waits
        client.max_queued_messages_set(2 * max_queued + 100)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        client.connect_async(config.host, config.port, config.keepalive)
        client.loop_start()

    @property
    def queued(self) -> int:
        """Events waiting for the broker."""
        return len(self._pending)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            self._warn.warning(
                "mqtt: %s:%s refused the connection (%s)", self.config.host, self.config.port, reason_code
            )
            return
        with self._lock:
            self.connected = True
            log.info(
                "mqtt: connected to %s:%s%s",
                self.config.host,
                self.config.port,
                f"; sending {len(self._pending)} queued events" if self._pending else "",
            )
            client.publish(self.status_topic, "online", qos=1, retain=True)
            for topic, payload in self._retained.items():
                client.publish(topic, payload, qos=1, retain=True)
            self._drain()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if self.connected:
            log.warning("mqtt: disconnected (%s); reconnecting", reason_code)
        self.connected = False  # no lock: paho may hold its own here; emit() re-checks each publish

    def _drain(self) -> None:
        """Hand queued events to paho, oldest first, while connected (under ``_lock``)."""
        mqtt = self._mqtt
        while self._pending and self.connected:
            try:
                topic, payload = self._pending.peek()
                info = self._client.publish(topic, payload, qos=self.config.qos)
            except (OSError, ValueError, RuntimeError) as exc:
                self._pending.pop()
                self.errors += 1
                self._warn.warning("mqtt: event not published (%s)", exc)
                continue
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                return  # paho is full (a slow broker): ours keeps them, dropping the oldest if need be
            if info.rc == mqtt.MQTT_ERR_NO_CONN and self.config.qos == 0:
                return  # disconnected meanwhile: keep it for the reconnect
            self._pending.pop()  # sent, or (QoS 1/2, a disconnect in between) queued by paho
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                self.errors += 1
                self._warn.warning("mqtt: event not published (%s)", mqtt.error_string(info.rc))

    def retain(self, topic: str, payload: str) -> None:
        """Publish ``payload`` on ``P/N/<topic>`` (or a full ``topic`` starting with ``/``, e.g. discovery),
        retained; kept and republished on every connect, so the broker always holds the latest value."""
        full = topic[1:] if topic.startswith("/") else f"{self.config.topic_prefix}/{self.camera}/{topic}"
        with self._lock:
            self._retained[full] = payload
            if self.connected:
                try:
                    self._client.publish(full, payload, qos=1, retain=True)
                except (OSError, ValueError, RuntimeError) as exc:
                    self.errors += 1
                    self._warn.warning("mqtt: %s not published (%s)", full, exc)

    def announce(self, zone_labels: dict[str, list[str]]) -> None:
        """Home Assistant discovery for these zones and labels (with ``mqtt.discovery``)."""
        if self.config.discovery:
            for topic, payload in discovery_messages(self.config, self.camera, zone_labels).items():
                self.retain("/" + topic, payload)

    def emit(self, event: dict[str, Any]) -> None:
        """An object event to ``P/N/events``; a frame's detections to ``P/N/detections`` only with
        ``mqtt.detections``."""
        if event.get("type") in OBJECT_EVENTS:
            topic = self.events_topic
        elif self.config.detections:
            topic = self.topic
        else:
            return
        payload = (topic, _dumps(event))
        with self._lock:
            if not self.connected and self.config.qos == 0:
                self.errors += 1
                self._warn.warning("mqtt: event not published (not connected; QoS 0 events are not queued)")
                return
            if self._pending.push(payload) is not None:
                self.errors += 1
                self._warn.warning(
                    "mqtt: %d events queued for the broker (mqtt queue limit); dropping the oldest", self.max_queued
                )
            self.published += 1
            self._drain()

    def close(self, timeout: float = 0.5) -> None:
        """Publish ``offline`` (retained), wait up to ``timeout`` s for it, disconnect."""
        try:
            if self.connected:
                info = self._client.publish(self.status_topic, "offline", qos=1, retain=True)
                info.wait_for_publish(timeout)
            self._client.disconnect()
        except (OSError, ValueError, RuntimeError) as exc:
            log.debug("mqtt: closing: %s", exc)
        # loop_stop() joins paho's thread, which may sit in a TCP connect to a dead broker: bound the wait
        stopper = threading.Thread(target=self._client.loop_stop, name="mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(timeout)

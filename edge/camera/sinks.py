"""Where detection events go: a JSON-lines file rotated by size (or stdout), and an MQTT broker.

Every sink has ``emit(event)`` and ``close()``; neither raises on I/O trouble (a full disk, a broker that
is down): the daemon keeps detecting, the failure is logged and counted (``errors``).

MQTT topics (``P`` = ``mqtt.topic_prefix``, ``N`` = the camera ``name``):

* ``P/N/detections`` — each event as JSON (:mod:`edgedet.edge.camera.events`), QoS ``mqtt.qos``, not retained;
* ``P/N/status`` — ``online`` when connected, ``offline`` at a clean stop and, as the broker's last
  will, when the daemon vanishes; QoS 1, retained, so a subscriber always sees the current state.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Protocol

from edgedet.edge.camera.config import MqttConfig

__all__ = ["JsonLinesSink", "MqttSink", "Sink", "mqtt_topics"]

log = logging.getLogger(__name__)


class Sink(Protocol):
    errors: int

    def emit(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), allow_nan=False)


class _Throttled:
    """Log a repeating failure at most once every ``every`` seconds."""

    def __init__(self, every: float = 30.0) -> None:
        self.every = every
        self._last = -1e9

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            log.warning(message, *args)


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
        self._warn = _Throttled()
        self._file: IO[str] | None = None
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._open()
            except OSError as exc:
                raise ValueError(f"events.path: cannot write {self.path} ({exc.strerror or exc})") from exc

    def _open(self) -> None:
        assert self.path is not None
        self._file = open(self.path, "a", encoding="utf-8")  # kept open for the daemon's life
        self._size = self._file.tell()

    def _rotate(self) -> None:
        assert self.path is not None and self._file is not None
        self._file.close()
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
                    size = len(line.encode("utf-8"))
                    if self.max_bytes and self._size > 0 and self._size + size > self.max_bytes:
                        self._rotate()
                    self._file.write(line)
                    self._file.flush()
                    self._size += size
                self.written += 1
            except (OSError, ValueError) as exc:
                self.errors += 1
                self._warn.warning("events: cannot write %s (%s)", self.path or "stdout", exc)
                if self._file is not None:
                    try:
                        self._file.close()
                    except OSError:
                        pass
                    self._file = None  # re-opened on the next event

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                try:
                    self._file.flush()
                    os.fsync(self._file.fileno())
                    self._file.close()
                except OSError as exc:
                    log.warning("events: closing %s: %s", self.path, exc)
                self._file = None
            elif self.path is None:
                sys.stdout.flush()


def mqtt_topics(config: MqttConfig, camera: str) -> tuple[str, str]:
    """``(detections topic, status topic)``."""
    base = f"{config.topic_prefix}/{camera}"
    return f"{base}/detections", f"{base}/status"


class MqttSink:
    """Publishes events through paho-mqtt's network thread; reconnects by itself. While disconnected,
    QoS 1/2 events queue (at most ``max_queued``, then they are dropped) and QoS 0 events are dropped;
    drops are counted in ``errors``."""

    def __init__(self, config: MqttConfig, camera: str, max_queued: int = 1000, reconnect_max_s: float = 30.0):
        try:
            import paho.mqtt.client as mqtt
        except ImportError as exc:
            raise ValueError("mqtt: publishing needs paho-mqtt (pip install 'paho-mqtt>=2')") from exc
        self.config = config
        self.topic, self.status_topic = mqtt_topics(config, camera)
        self.errors = 0
        self.published = 0
        self.connected = False
        self._mqtt = mqtt
        self._warn = _Throttled()
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
        client.max_queued_messages_set(max_queued)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        client.connect_async(config.host, config.port, config.keepalive)
        client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            self._warn.warning(
                "mqtt: %s:%s refused the connection (%s)", self.config.host, self.config.port, reason_code
            )
            return
        self.connected = True
        log.info("mqtt: connected to %s:%s", self.config.host, self.config.port)
        client.publish(self.status_topic, "online", qos=1, retain=True)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if self.connected:
            log.warning("mqtt: disconnected (%s); reconnecting", reason_code)
        self.connected = False

    def emit(self, event: dict[str, Any]) -> None:
        try:
            info = self._client.publish(self.topic, _dumps(event), qos=self.config.qos)
        except (OSError, ValueError, RuntimeError) as exc:
            info, reason = None, str(exc)
        else:
            reason = self._mqtt.error_string(info.rc)
        queued = info is not None and self.config.qos > 0 and info.rc == self._mqtt.MQTT_ERR_NO_CONN
        if info is not None and (info.rc == self._mqtt.MQTT_ERR_SUCCESS or queued):  # QoS 1/2: sent on reconnect
            self.published += 1
        else:
            self.errors += 1
            self._warn.warning("mqtt: event not published (%s)", reason)

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

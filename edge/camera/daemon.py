"""``edgedet camera``: the on-device camera daemon.

Data path, one module per step: :mod:`edgedet.edge.camera.sources` (camera, pipeline, stream, file, folder) ->
:mod:`edgedet.edge.camera.capture` (a thread keeping only the newest frame, reconnecting with backoff) ->
``runtime.detector.Detector`` (``runtime.preprocess`` -> ``runtime.backends`` -> ``runtime.decoders`` with NMS)
-> ``camera.events`` (the JSON event) -> ``camera.sinks`` (JSON-lines file or stdout, MQTT) and
``camera.latest_result`` -> ``camera.http`` (``/healthz``, ``/metrics``, ``/detections``,
``/snapshot.jpg``, ``/stream.mjpg``), with :mod:`edgedet.edge.camera.metrics` counting everything.

The detector runs in the main thread; SIGTERM / SIGINT stop it within two seconds, flushing the events
file and publishing MQTT ``offline``. Under systemd (``Type=notify``) it reports ``READY=1`` and pings the
watchdog while the capture and detector threads make progress. Configuration: :mod:`edgedet.edge.camera.config`.
"""

from __future__ import annotations

import argparse
import collections
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

from edgedet.edge.camera.capture import Backoff, CaptureThread, Frame, FrameSlot
from edgedet.edge.camera.config import DaemonConfig, load_config, parse_http_address
from edgedet.edge.camera.events import build_event
from edgedet.edge.camera.http import HttpApp, HttpServer
from edgedet.edge.camera.latest_result import LatestResult
from edgedet.edge.camera.metrics import LATENCY_BUCKETS, CounterFunction, Registry
from edgedet.edge.camera.sinks import JsonLinesSink, MqttSink, Sink
from edgedet.edge.camera.sources import (
    CaptureSource,
    SourceOptions,
    gstreamer_available,
    open_source,
    redact,
    source_kind,
)
from edgedet.edge.camera.systemd import Watchdog, notify
from edgedet.edge.runtime.detector import Detection, Detector, load_spec
from edgedet.edge.runtime.pipeline import Pipeline

__all__ = ["Daemon", "cli", "config_overrides", "open_detector"]

log = logging.getLogger(__name__)

STATUS_EVERY_S = 60.0
FPS_WINDOW_S = 5.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def open_detector(config: DaemonConfig) -> Detector:
    """The config's model; errors name the ``model`` / ``spec`` key."""
    try:
        spec = load_spec(config.spec) if config.spec else None
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"spec: {exc}") from exc
    try:
        return Detector.from_model(
            config.model,
            spec=spec,
            threads=config.threads,
            score_threshold=config.score_threshold,
            iou_threshold=config.iou_threshold,
        )
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"model: {exc}") from exc


class Daemon:
    """Wires source, detector, sinks and HTTP together; :meth:`start`, then :meth:`run` until
    :meth:`stop`, then :meth:`close`."""

    def __init__(
        self,
        config: DaemonConfig,
        detector: Detector | None = None,
        opener: Callable[[], CaptureSource] | None = None,
    ) -> None:
        """``detector``: instead of the config's model; ``opener``: what the capture thread opens instead of
        ``config.source`` (tests and benchmarks)."""
        self.config = config
        self.source = redact(config.source)
        if source_kind(config.source) == "gstreamer" and not gstreamer_available():
            raise ValueError(
                "source: a GStreamer pipeline needs OpenCV built with GStreamer, and this one is not (the pip "
                "wheel never is); use the system python3-opencv, see deploy/README.md"
            )
        self.detector = detector if detector is not None else open_detector(config)
        self.stopping = threading.Event()
        self.slot = FrameSlot()
        options = SourceOptions(config.capture_width, config.capture_height, config.source_fps)
        self.capture = CaptureThread(
            opener or (lambda: open_source(config.source, options)),
            self.slot,
            loop=config.loop,
            pace_fps=config.source_fps,
            backoff=Backoff(config.reconnect.initial_s, config.reconnect.max_s),
        )
        self.results = LatestResult(config.http.jpeg_quality)
        self.sinks: list[Sink] = []
        self.events_sink: JsonLinesSink | None = None
        self.mqtt: MqttSink | None = None
        self.http: HttpServer | None = None
        self.started = time.monotonic()
        self.heartbeat = time.monotonic()
        self.processed = 0
        self._last_frame_time = 0.0
        self._recent: collections.deque[float] = collections.deque(maxlen=1024)  # monotonic times, for fps
        self._failures = 0
        self._build_metrics()

    # ------------------------------------------------------------------------------------------- metrics

    def _build_metrics(self) -> None:
        r = self.metrics = Registry()
        cap, slot = self.capture, self.slot
        CounterFunction("edgedet_frames_captured_total", "Frames read from the source.", lambda: cap.captured, r)
        self.m_processed = Counter("edgedet_frames_processed_total", "Frames run through the detector.", registry=r)
        CounterFunction(
            "edgedet_frames_dropped_total",
            "Frames replaced by a newer one before the detector took them.",
            lambda: slot.dropped,
            r,
        )
        CounterFunction(
            "edgedet_source_reconnects_total",
            "Attempts to re-open the source after it failed.",
            lambda: cap.reconnects,
            r,
        )
        CounterFunction(
            "edgedet_source_loops_total", "Times a video file or image folder reached its end.", lambda: cap.loops, r
        )
        Gauge("edgedet_source_up", "1 while the source delivers frames.", registry=r).set_function(
            lambda: int(cap.connected)
        )
        Gauge("edgedet_fps", f"Frames processed per second over the last {FPS_WINDOW_S:g} s.", registry=r).set_function(
            self.fps
        )
        self.m_latency = Histogram(
            "edgedet_inference_latency_seconds",
            "Detector time per frame (pre-processing + inference + decoding).",
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.m_stage = Histogram(
            "edgedet_stage_latency_seconds",
            "Detector time per frame by stage.",
            ["stage"],
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.m_detections = Counter("edgedet_detections_total", "Objects detected.", registry=r)
        self.m_errors = Counter("edgedet_inference_errors_total", "Frames the detector failed on.", registry=r)
        Gauge(
            "edgedet_last_frame_timestamp_seconds", "Capture time (Unix) of the newest processed frame.", registry=r
        ).set_function(lambda: self._last_frame_time)
        Gauge("edgedet_uptime_seconds", "Seconds since the daemon started.", registry=r).set_function(
            lambda: time.monotonic() - self.started
        )
        CounterFunction(
            "edgedet_events_written_total",
            "Events written to the events file.",
            lambda: self.events_sink.written if self.events_sink else 0,
            r,
        )
        CounterFunction(
            "edgedet_events_errors_total",
            "Events the events file could not take.",
            lambda: self.events_sink.errors if self.events_sink else 0,
            r,
        )
        CounterFunction(
            "edgedet_mqtt_published_total",
            "Events handed to the MQTT client.",
            lambda: self.mqtt.published if self.mqtt else 0,
            r,
        )
        CounterFunction(
            "edgedet_mqtt_errors_total",
            "Events not published (broker down, queue full).",
            lambda: self.mqtt.errors if self.mqtt else 0,
            r,
        )
        Gauge("edgedet_mqtt_connected", "1 while connected to the MQTT broker.", registry=r).set_function(
            lambda: int(self.mqtt.connected) if self.mqtt else 0
        )

    def fps(self) -> float:
        now = time.monotonic()
        times = [t for t in list(self._recent) if now - t <= FPS_WINDOW_S]
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-6)

    # -------------------------------------------------------------------------------------------- health

    def health(self) -> tuple[bool, dict[str, Any]]:
        """``(ok, status)``: not ok when the detector loop or the capture thread is stuck."""
        limit = self.config.stall_timeout_s
        loop_age = time.monotonic() - self.heartbeat
        capture_age = self.capture.stalled_for()
        ok = loop_age < limit and capture_age < limit and not self.stopping.is_set()
        status = {
            "status": "ok" if ok else ("stopping" if self.stopping.is_set() else "stalled"),
            "camera": self.config.name,
            "source": self.source,
            "source_state": self.capture.state,
            "source_error": self.capture.last_error,
            "frames_processed": self.processed,
            "last_frame_age_s": round(time.time() - self._last_frame_time, 3) if self._last_frame_time else None,
            "uptime_s": round(time.monotonic() - self.started, 3),
        }
        return ok, status

    # ----------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Open the sinks, bind the HTTP server, start capturing; ``ValueError`` naming the key on failure."""
        cfg = self.config
        if cfg.events.path:
            self.events_sink = JsonLinesSink(cfg.events.path, cfg.events.max_bytes, cfg.events.backups)
            self.sinks.append(self.events_sink)
        if cfg.mqtt is not None:
            self.mqtt = MqttSink(cfg.mqtt, cfg.name, reconnect_max_s=cfg.reconnect.max_s)
            self.sinks.append(self.mqtt)
        if cfg.http.enabled:
            app = HttpApp(
                self.results,
                self.metrics.render,
                self.health,
                self.stopping,
                token=cfg.http.token,
                stream_fps=cfg.http.stream_fps,
                stream_clients=cfg.http.stream_clients,
            )
            try:
                self.http = HttpServer(cfg.http.host, cfg.http.port, app)
            except OSError as exc:
                raise ValueError(
                    f"http: cannot listen on {cfg.http.host}:{cfg.http.port} ({exc.strerror or exc})"
                ) from exc
            host, port = self.http.address
            if cfg.http.host not in LOOPBACK and cfg.http.token is None:
                log.warning("http: listening on %s without a token: anyone on the network can watch", host)
            self.http.start()
            log.info("http: serving on http://%s:%s/ (token %s)", host, port, "required" if cfg.http.token else "off")
        self.capture.start()
        log.info("camera %r: %s -> %s", cfg.name, self.source, cfg.model)
        notify("READY=1")

    def stop(self) -> None:
        """Ask :meth:`run` to return (safe from a signal handler)."""
        self.stopping.set()
        self.capture.stop()

    def run(self) -> int:
        """Detect on the newest frame until :meth:`stop`; returns the exit status (0).

        With ``pipeline`` (the default) inference runs in its own thread
        (:class:`~edgedet.edge.runtime.pipeline.Pipeline`)
        while this loop publishes the previous frame and prepares the next. A frame stays in flight only
        while the next one arrives within about one inference time; otherwise (a camera slower than the
        detector) it is finished at once, so pipelining never adds a camera period of latency."""
        watchdog = Watchdog()
        gap = 1.0 / self.config.max_fps if self.config.max_fps else 0.0
        next_at = 0.0
        next_status = time.monotonic() + STATUS_EVERY_S
        pipeline = Pipeline(self.detector) if self.config.pipeline and not gap else None
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                self.heartbeat = now
                if watchdog.enabled and self.health()[0]:
                    watchdog.ping()
                if now >= next_status:
                    next_status = now + STATUS_EVERY_S
                    self._log_status()
                if gap and now < next_at:
                    self.stopping.wait(min(next_at - now, 0.25))
                    continue
                frame = self.slot.take(timeout=0.25)
                if frame is None:
                    continue
                if pipeline is None:
                    self.process(frame)
                else:
                    self._pipelined(pipeline, frame)
                if gap:
                    next_at = max(next_at + gap, time.monotonic() - gap)
        finally:
            if pipeline is not None:
                self._guarded(pipeline.flush)
                pipeline.close()
        return 0

    def _pipelined(self, pipeline: Pipeline, frame: Frame) -> None:
        """Start ``frame``, publish the one before it; finish ``frame`` too unless the next comes soon."""
        self._guarded(lambda: pipeline.push(frame.image, frame))
        wait_s = min(self.detector.last_timings.inference_ms / 1e3 * 1.5, 0.25)
        if pipeline.in_flight and not self.slot.wait_fresh(wait_s):
            self._guarded(pipeline.flush)

    def _guarded(self, step: Callable[[], tuple[Frame, list[Detection]] | None]) -> None:
        """Run a pipeline step and publish what it finished; a failure is counted, never fatal."""
        try:
            done = step()
        except Exception as exc:  # one bad frame or a runtime hiccup must not end the daemon
            self._failed(exc, "a frame")
            return
        if done is not None:
            self.publish(*done)

    def _failed(self, exc: Exception, what: str) -> None:
        self.m_errors.inc()
        self._failures += 1
        if self._failures <= 3 or self._failures % 100 == 0:
            log.error("detector failed on %s (%d so far): %s", what, self._failures, exc)

    def process(self, frame: Frame) -> dict[str, Any] | None:
        """Detect on ``frame``, update metrics and the latest result, emit the event; the event."""
        try:
            detections = self.detector.detect(frame.image)
        except Exception as exc:  # one bad frame or a runtime hiccup must not end the daemon
            self._failed(exc, f"frame {frame.index}")
            return None
        return self.publish(frame, detections)

    def publish(self, frame: Frame, detections: list[Detection]) -> dict[str, Any]:
        """Metrics, the latest result and the event for a detected frame (timings: the detector's last)."""
        timings = self.detector.last_timings
        self.m_processed.inc()
        self.m_latency.observe(timings.total_ms / 1e3)
        self.m_stage.labels(stage="preprocess").observe(timings.preprocess_ms / 1e3)
        self.m_stage.labels(stage="inference").observe(timings.inference_ms / 1e3)
        self.m_stage.labels(stage="decode").observe(timings.decode_ms / 1e3)
        self.m_detections.inc(len(detections))
        self.processed += 1
        self._last_frame_time = frame.timestamp
        self._recent.append(time.monotonic())
        event = build_event(self.config.name, self.source, frame, detections, timings)
        self.results.update(frame, detections, event)
        if detections or self.config.events.include_empty:
            for sink in self.sinks:
                sink.emit(event)
        return event

    def _log_status(self) -> None:
        text = (
            f"{self.processed} frames ({self.fps():.1f} fps), {self.slot.dropped} dropped, "
            f"{self.capture.reconnects} reconnects, source {self.capture.state}"
        )
        log.info("status: %s", text)
        notify(f"STATUS={text}")

    def close(self) -> None:
        """Stop everything: HTTP, capture, sinks (files flushed, MQTT offline); well under two seconds."""
        self.stop()
        notify("STOPPING=1")
        if self.http is not None:
            self.http.close()
        if self.capture.is_alive():
            self.capture.join(timeout=0.5)  # a read stuck in a driver is left behind (daemon thread)
        for sink in self.sinks:
            sink.close()
        log.info("stopped after %d frames", self.processed)


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``edgedet camera`` flags as dotted config keys (``None``: not given)."""
    overrides: dict[str, Any] = {
        "model": getattr(args, "model", None),
        "source": getattr(args, "source", None),
        "spec": getattr(args, "spec", None),
        "name": getattr(args, "name", None),
        "threads": getattr(args, "threads", None),
        "score_threshold": getattr(args, "score_threshold", None),
        "events.path": getattr(args, "events", None),
        "http.token": getattr(args, "token", None),
    }
    http = getattr(args, "http", None)
    if http:
        host, port = parse_http_address(http)
        overrides.update({"http.enabled": True, "http.host": host, "http.port": port})
    return overrides


def cli(args: argparse.Namespace) -> int:
    """Run ``edgedet camera`` until SIGTERM / SIGINT; config errors raise ``ValueError`` (exit status 1)."""
    config = load_config(getattr(args, "config", None), config_overrides(args))
    disable_created_metrics()  # process-wide: no *_created series next to the daemon's counters and histograms
    daemon = Daemon(config)

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        daemon.stop()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        daemon.start()
        return daemon.run()
    finally:
        daemon.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

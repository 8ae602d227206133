"""``edgedet camera``: the on-device camera daemon.

Data path, one module per step: :mod:`edgedet.edge.camera.sources` (camera, pipeline, stream, file, folder) ->
:mod:`edgedet.edge.camera.capture` (a thread keeping only the newest frame, reconnecting with backoff) ->
``runtime.detector.Detector`` (``runtime.preprocess`` -> ``runtime.backends`` -> ``runtime.decoders`` with NMS)
-> ``camera.scene`` (filters and masks, the tracker, zones, object events; before the detector, the motion
gate that lets the model sleep on a static scene) -> ``camera.sinks`` (JSON-lines file or stdout, MQTT)
and ``camera.latest_result`` -> ``camera.http`` (``/healthz``, ``/metrics``, ``/detections``,
``/snapshot.jpg``, ``/stream.mjpg``, ``/events``), with :mod:`edgedet.edge.camera.metrics` counting
everything. Per-frame detection events (``camera.events``) still go to the events file; MQTT carries object
events unless ``mqtt.detections`` is set.

The detector runs in the main thread; SIGTERM / SIGINT stop it within two seconds, flushing the events
file and publishing MQTT ``offline``. Under systemd (``Type=notify``) it reports ``READY=1`` and pings the
watchdog while it is healthy (:meth:`Daemon.health`): the capture and detector threads make progress and,
while frames are captured, frames are processed. Start-up runs one inference on a blank frame, so a model
whose outputs do not fit its spec is an error at once. Configuration: :mod:`edgedet.edge.camera.config`.
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

import numpy as np
from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

from edgedet.edge.camera.capture import Backoff, CaptureThread, Frame, FrameSlot
from edgedet.edge.camera.config import DaemonConfig, load_config, parse_http_address
from edgedet.edge.camera.events import build_event
from edgedet.edge.camera.http import HttpApp, HttpServer
from edgedet.edge.camera.latest_result import LatestResult
from edgedet.edge.camera.metrics import LATENCY_BUCKETS, CounterFunction, Registry
from edgedet.edge.camera.overlay import draw_tracks, draw_zones
from edgedet.edge.camera.redact import redact_text
from edgedet.edge.camera.scene import Scene, SceneUpdate
from edgedet.edge.camera.sinks import JsonLinesSink, MqttSink, Sink
from edgedet.edge.camera.snapshots import SnapshotStore
from edgedet.edge.camera.sources import (
    CaptureSource,
    SourceError,
    SourceOptions,
    check_url,
    gstreamer_available,
    open_source,
    redact,
    source_kind,
)
from edgedet.edge.camera.systemd import Watchdog, notify
from edgedet.edge.camera.tracking import Track
from edgedet.edge.camera.zones import ConfigCheckError, check_labels
from edgedet.edge.runtime.backends.base import failure_reason
from edgedet.edge.runtime.detector import Detection, Detector, load_spec
from edgedet.edge.runtime.draw import draw_detections
from edgedet.edge.runtime.pipeline import Pipeline

__all__ = ["Daemon", "cli", "config_overrides", "open_detector"]

log = logging.getLogger(__name__)

STATUS_EVERY_S = 60.0
FPS_WINDOW_S = 5.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# /healthz is 503 when, while frames are captured, none was processed successfully for this long (at least
# three inference times or max_fps periods), or when failures outnumber successes (MIN_FAILURES or more).
MIN_FAILURES = 10


def check_detector(detector: Detector, model: str, spec_key: str | None = None) -> None:
    """Run one inference on a blank frame of the model's input size: ``ValueError`` naming the model and
    what does not fit when its outputs do not match the spec (instead of failing on every frame later)."""
    spec = detector.spec
    width, height = spec.input_width, spec.input_height
    try:
        detector.detect(np.zeros((height, width, 3), np.uint8))
    except Exception as exc:  # any runtime or decoder failure: the model cannot work with this spec
        where = f"the spec {spec_key!r}" if spec_key else "the spec in the model's metadata"
        raise ValueError(
            f"model: {model}: a test inference on a blank {width}x{height} frame failed, so the model does not "
            f"fit {where} ({spec.head} head, {len(spec.labels)} label(s)): {failure_reason(exc)}"
        ) from exc


def open_detector(config: DaemonConfig) -> Detector:
    """The config's model, tried once on a blank frame; errors name the ``model`` / ``spec`` key."""
    try:
        spec = load_spec(config.spec) if config.spec else None
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"spec: {exc}") from exc
    try:
        detector = Detector.from_model(
            config.model,
            spec=spec,
            threads=config.threads,
            score_threshold=config.score_threshold,
            iou_threshold=config.iou_threshold,
        )
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"model: {exc}") from exc
    check_detector(detector, config.model, config.spec)
    return detector


class Daemon:
    """Wires source, detector, sinks and HTTP together; :meth:`start`, then :meth:`run` until
    :meth:`stop`, then :meth:`close`."""

    def __init__(
        self,
        config: DaemonConfig,
        detector: Detector | None = None,
        opener: Callable[[], CaptureSource] | None = None,
        *,
        processing_window_s: float | None = None,
        http_options: dict[str, Any] | None = None,
    ) -> None:
        """``detector``: instead of the config's model (not tried on a blank frame); ``opener``: what the
        capture thread opens instead of ``config.source`` (tests and benchmarks); ``processing_window_s``:
        see :meth:`health`; ``http_options``: keyword arguments for
        :class:`~edgedet.edge.camera.http.HttpServer` (``max_connections``, ``request_timeout_s``...)."""
        self.config = config
        self.source = redact(config.source)
        kind = source_kind(config.source)
        if kind == "gstreamer" and not gstreamer_available():
            raise ValueError(
                "source: a GStreamer pipeline needs OpenCV built with GStreamer, and this one is not (the pip "
                "wheel never is); use the system python3-opencv, see deploy/README.md"
            )
        if kind == "url" and opener is None:
            try:
                check_url(str(config.source).strip())
            except SourceError as exc:
                raise ValueError(f"source: {exc}") from exc
        self.processing_window_s = config.health_window_s if processing_window_s is None else processing_window_s
        self.http_options = dict(http_options or {})
        self.detector = detector if detector is not None else open_detector(config)
        labels = tuple(self.detector.labels)
        try:
            config.filters.check_labels(labels)
            check_labels(config.zones, labels, "zones")
            check_labels(config.masks, labels, "masks")
        except ConfigCheckError as exc:
            raise ValueError(str(exc)) from exc
        self.snapshots = SnapshotStore(config.snapshots, live=self._live_event_ids) if config.snapshots.dir else None
        self.scene = Scene(
            config.name,
            labels,
            tracking=config.tracking,
            objects=config.objects,
            filters=config.filters,
            zones=config.zones,
            masks=config.masks,
            motion=config.motion,
            snapshot=self._snapshot if self.snapshots is not None else None,
        )
        self._source_epoch = (0, 0)  # (reconnects, loops) of the capture: a change ends every object
        self._last_extra: Any = None
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
        self.results = LatestResult(config.http.jpeg_quality, overlay=self._overlay)
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
        self._last_failure: str | None = None
        self._last_ok = time.monotonic()  # the last frame processed successfully (or the start)
        self._captured_at_ok = 0  # capture.captured then
        self._outcomes: collections.deque[list[int]] = collections.deque(maxlen=300)  # [second, ok, failed]
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
        self.m_skipped = Counter(
            "edgedet_frames_skipped_total",
            "Frames the motion gate kept from the detector, by reason.",
            ["reason"],
            registry=r,
        )
        self.m_objects = Counter("edgedet_object_events_total", "Object events by type.", ["type"], registry=r)
        Gauge("edgedet_objects_active", "Objects being tracked now.", registry=r).set_function(
            lambda: len(self.scene.objects.live)
        )
        CounterFunction(
            "edgedet_detections_filtered_total",
            "Detections dropped by the filters and ignore masks.",
            lambda: self.scene.filtered,
            r,
        )
        CounterFunction(
            "edgedet_snapshot_errors_total",
            "Snapshots that could not be written (full or read-only disk).",
            lambda: self.snapshots.errors if self.snapshots else 0,
            r,
        )

    def fps(self) -> float:
        now = time.monotonic()
        times = [t for t in list(self._recent) if now - t <= FPS_WINDOW_S]
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-6)

    # -------------------------------------------------------------------------------------------- health

    def _tally(self, ok: bool) -> None:
        """Count a frame's outcome in its second (main thread only)."""
        second = int(time.monotonic())
        if not self._outcomes or self._outcomes[-1][0] != second:
            self._outcomes.append([second, 0, 0])
        self._outcomes[-1][1 if ok else 2] += 1

    def processing_window(self) -> float:
        """Seconds without a processed frame (while frames are captured) before /healthz says ``failing``."""
        gap = 1.0 / self.config.max_fps if self.config.max_fps else 0.0
        return max(self.processing_window_s, 3 * gap, 3 * self.detector.last_timings.total_ms / 1e3)

    def _processing_problem(self) -> str | None:
        """Why frames are not being processed, or ``None`` when they are (or none are captured)."""
        now = time.monotonic()
        window = self.processing_window()
        since = now - window
        ok = failed = 0
        outcomes = self._outcomes  # appended by the detector loop meanwhile: index from the newest end
        for i in range(1, len(outcomes) + 1):
            try:
                second, good, bad = outcomes[-i]
            except IndexError:
                break
            if second + 1 <= since:
                break
            ok, failed = ok + good, failed + bad
        last = f"; the last: {self._last_failure}" if self._last_failure else ""
        captured = self.capture.captured - self._captured_at_ok
        idle = now - self._last_ok
        if captured > 0 and idle > window:
            return (
                f"no frame processed successfully for {idle:.0f} s while {captured} were captured "
                f"({self._failures} inference errors{last})"
            )
        if failed >= MIN_FAILURES and failed > ok:
            return f"inference failed on {failed} of {ok + failed} frames in the last {window:.0f} s{last}"
        return None

    def health(self) -> tuple[bool, dict[str, Any]]:
        """``(ok, status)``: not ok when the detector loop or the capture thread is stuck (``stalled``, for
        ``stall_timeout_s``) or when captured frames are not being processed (``failing``: none processed
        successfully for :meth:`processing_window` seconds, or inference failures outnumber successes);
        ``reason`` says why."""
        limit = self.config.stall_timeout_s
        loop_age = time.monotonic() - self.heartbeat
        capture_age = self.capture.stalled_for()
        reason: str | None = None
        if self.stopping.is_set():
            state, reason = "stopping", "the daemon is stopping"
        elif loop_age >= limit or capture_age >= limit:
            which = "detector loop" if loop_age >= capture_age else "capture thread"
            state = "stalled"
            reason = f"the {which} made no progress for {max(loop_age, capture_age):.0f} s"
        else:
            reason = self._processing_problem()
            state = "ok" if reason is None else "failing"
        error = self.capture.last_error
        status = {
            "status": state,
            "reason": reason,
            "camera": self.config.name,
            "source": self.source,
            "source_state": self.capture.state,
            "source_error": redact_text(error, self.config.source) if error else None,
            "frames_processed": self.processed,
            "inference_errors": self._failures,
            "last_frame_age_s": round(time.time() - self._last_frame_time, 3) if self._last_frame_time else None,
            "uptime_s": round(time.monotonic() - self.started, 3),
        }
        return state == "ok", status

    # ----------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Open the sinks, bind the HTTP server, start capturing; ``ValueError`` naming the key on failure."""
        cfg = self.config
        if cfg.events.path:
            self.events_sink = JsonLinesSink(cfg.events.path, cfg.events.max_bytes, cfg.events.backups)
            self.sinks.append(self.events_sink)
        if cfg.mqtt is not None:
            self.mqtt = MqttSink(
                cfg.mqtt, cfg.name, max_queued=cfg.mqtt.max_queued, reconnect_max_s=cfg.reconnect.max_s
            )
            self.sinks.append(self.mqtt)
            labels = list(self.scene.labels)
            self.mqtt.announce({z.name: list(z.labels or labels) for z in cfg.zones})
        self._last_ok, self._captured_at_ok = time.monotonic(), self.capture.captured
        if cfg.http.enabled:
            app = HttpApp(
                self.results,
                self.metrics.render,
                self.health,
                self.stopping,
                token=cfg.http.token,
                stream_fps=cfg.http.stream_fps,
                stream_clients=cfg.http.stream_clients,
                snapshot_file=self.snapshots.path if self.snapshots is not None else None,
            )
            try:
                options = {
                    "max_connections": cfg.http.max_connections,
                    "request_timeout_s": cfg.http.request_timeout_s,
                    "request_queue_size": cfg.http.backlog,
                    "fd_reserve": cfg.http.fd_reserve,
                    **self.http_options,  # tests and benches override
                }
                self.http = HttpServer(cfg.http.host, cfg.http.port, app, **options)
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
        healthy = True
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                self.heartbeat = now
                ok, status = self.health()
                if ok != healthy and not self.stopping.is_set():
                    healthy = ok
                    if ok:
                        log.info("healthy again")
                    else:
                        log.error("unhealthy: %s%s", status["reason"], self._no_watchdog(watchdog))
                if watchdog.enabled and ok:
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
                self._check_source_restart()
                if not self._gate(frame):
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

    def _gate(self, frame: Frame) -> bool:
        """Does the model run on ``frame``? A skipped frame still shows on the stream, and counts as
        handled for ``/healthz`` (nothing moved, so nothing was missed)."""
        decision = self.scene.gate(frame.image, frame.timestamp)
        if decision.run:
            return True
        self.m_skipped.labels(reason=decision.reason).inc()
        self.scene.skip(frame.timestamp)
        self._last_ok, self._captured_at_ok = time.monotonic(), self.capture.captured
        self.results.update(frame, (), self.results.event() or {}, self._last_extra)
        return False

    def _check_source_restart(self) -> None:
        """The source reconnected or a file looped: the objects seen before are gone (``end`` events)."""
        epoch = (self.capture.reconnects, self.capture.loops)
        if epoch != self._source_epoch:
            reason = "source restarted" if epoch[0] != self._source_epoch[0] else "source looped"
            self._source_epoch = epoch
            self._emit_objects(self.scene.restart(time.time(), reason), {})

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

    @staticmethod
    def _no_watchdog(watchdog: Watchdog) -> str:
        return "; watchdog pings stop" if watchdog.enabled else ""

    def _failed(self, exc: Exception, what: str) -> None:
        self.m_errors.inc()
        self._failures += 1
        self._last_failure = failure_reason(exc, limit=200)
        self._tally(False)
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
        update = self.scene.observe(frame.image, detections, frame.timestamp)
        detections = update.detections
        self.m_detections.inc(len(detections))
        self.processed += 1
        self._last_frame_time = frame.timestamp
        self._recent.append(time.monotonic())
        self._last_ok, self._captured_at_ok = time.monotonic(), self.capture.captured
        self._tally(True)
        event = build_event(self.config.name, self.source, frame, detections, timings)
        self._last_extra = update
        self.results.update(frame, detections, event, update)
        if detections or self.config.events.include_empty:
            if self.events_sink is not None and self.config.events.detections:
                self.events_sink.emit(event)
            if self.mqtt is not None:
                self.mqtt.emit(event)  # published only with mqtt.detections
        self._emit_objects(update.events, update.changed)
        return event

    def _emit_objects(self, events: list[dict[str, Any]], changed: dict[tuple[str, str], int]) -> None:
        """Object events to ``/events``, the events file and MQTT; changed zone counts to MQTT (retained)."""
        if events:
            self.results.add_events(events)
            for e in events:
                self.m_objects.labels(type=e["type"]).inc()
                if self.events_sink is not None and self.config.events.objects:
                    self.events_sink.emit(e)
                if self.mqtt is not None:
                    self.mqtt.emit(e)
        if self.mqtt is not None:
            for (zone, label), n in changed.items():
                self.mqtt.retain(f"{zone}/{label}", str(n))

    # ------------------------------------------------------------------------------- drawing, snapshots

    def _overlay(self, image: np.ndarray, detections: Any, extra: Any) -> np.ndarray:
        """The annotated frame of ``/snapshot.jpg`` and the stream: zones, then tracks with their IDs (or
        plain boxes without tracking)."""
        if not isinstance(extra, SceneUpdate) or self.scene.tracker is None:
            return draw_detections(image, detections)
        out = image
        if self.scene.zones is not None and (self.scene.zones.zones or self.scene.zones.masks):
            out = draw_zones(image, self.scene.zones, extra.counts)
        tracks = {track.id: det for track, det in extra.tracks}
        return draw_tracks(out, tracks, self.scene.labels, copy=out is image)

    def _snapshot(self, event_id: str, image: np.ndarray, track: Track) -> str | None:
        label = self.scene.labels[track.class_id] if 0 <= track.class_id < len(self.scene.labels) else ""
        det = Detection(tuple(float(v) for v in track.box), float(track.score), int(track.class_id), label)
        annotated = draw_tracks(image, {track.id: det}, self.scene.labels)
        assert self.snapshots is not None
        ok = self.snapshots.save(event_id, annotated, track.box, label, crop_from=image)
        return f"/events/{event_id}/snapshot.jpg" if ok else None

    def _live_event_ids(self) -> set[str]:
        return {life.event_id for life in self.scene.objects.live.values()}

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
        self._emit_objects(self.scene.restart(time.time(), "stopped"), {})
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

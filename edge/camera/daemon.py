"""``edgedet camera``: the on-device camera daemon: one model, one or several cameras.

Data path, one module per step: :mod:`edgedet.edge.camera.sources` (camera, pipeline, stream, file, folder) ->
:mod:`edgedet.edge.camera.capture` (a thread per camera keeping only its newest frame, reconnecting with
backoff) -> ``runtime.detector.Detector`` (``runtime.preprocess`` -> ``runtime.backends`` ->
``runtime.decoders`` with NMS; one backend session for every camera) -> ``camera.scene`` (filters and masks,
the tracker, zones, object events; before the detector, the motion gate that lets the model sleep on a
static scene) -> ``camera.sinks`` (JSON-lines file or stdout, MQTT) and ``camera.latest_result`` ->
``camera.http`` (``/healthz``, ``/metrics``, ``/cameras``, ``/detections``, ``/snapshot.jpg``,
``/stream.mjpg``, ``/events``, ``/events/<id>/clip.mp4``), with :mod:`edgedet.edge.camera.metrics` counting
everything; with ``clips.enabled``, each camera's :mod:`edgedet.edge.camera.clips` recorder gets its frames
and object events (see :class:`~edgedet.edge.camera.camera.Camera`).
What is per camera lives in :class:`edgedet.edge.camera.camera.Camera`. Per-frame detection events
(``camera.events``) still go to the events file; MQTT carries object events unless ``mqtt.detections`` is set.

The detector serves the cameras in turn (round robin over each camera's newest frame: a camera without a
fresh frame, or held back by its ``max_fps``, is skipped that turn; old frames are never queued), so each
gets its fair share however fast its source is.

The detector runs in the main thread; SIGTERM / SIGINT stop it within two seconds, flushing the events
file, finishing the open clips (at most ``CLOSE_CLIPS_S``; one not finished by then stays a hidden partial
file) and publishing MQTT ``offline``. Under systemd (``Type=notify``) it reports ``READY=1`` and pings the
watchdog while it is healthy (:meth:`Daemon.health`): the capture and detector threads make progress and,
while frames are captured, frames are processed. Start-up runs one inference on a blank frame, so a model
whose outputs do not fit its spec is an error at once. Configuration: :mod:`edgedet.edge.camera.config`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import disable_created_metrics

from edgedet.edge.camera.camera import Camera, check_source
from edgedet.edge.camera.capture import CaptureThread, Frame, FrameSlot
from edgedet.edge.camera.config import DaemonConfig, load_config, parse_http_address
from edgedet.edge.camera.http import HttpApp, HttpServer
from edgedet.edge.camera.latest_result import LatestResult
from edgedet.edge.camera.metrics import DaemonMetrics
from edgedet.edge.camera.scene import Scene
from edgedet.edge.camera.sinks import JsonLinesSink, MqttSink, Sink
from edgedet.edge.camera.snapshots import SnapshotStore
from edgedet.edge.camera.sources import CaptureSource
from edgedet.edge.camera.systemd import Watchdog, notify
from edgedet.edge.runtime.backends.base import failure_reason
from edgedet.edge.runtime.detector import Detection, Detector, load_spec
from edgedet.edge.runtime.pipeline import Pipeline

__all__ = ["Daemon", "cli", "config_overrides", "open_detector"]

log = logging.getLogger(__name__)

STATUS_EVERY_S = 60.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")
WAIT_S = 0.25  # the detector loop looks at health and the watchdog at least this often
WORST_FIRST = ("stalled", "failing", "stopping", "ok")
CLOSE_CAPTURE_S = 0.5  # close(): for the capture threads, together
CLOSE_CLIPS_S = 0.8  # close(): for the clip writers, together (the whole stop stays under 2 s)
Opener = Callable[[], CaptureSource]


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
    """Wires sources, the detector, sinks and HTTP together; :meth:`start`, then :meth:`run` until
    :meth:`stop`, then :meth:`close`."""

    def __init__(
        self,
        config: DaemonConfig,
        detector: Detector | None = None,
        opener: Opener | Mapping[str, Opener] | None = None,
        *,
        processing_window_s: float | None = None,
        http_options: dict[str, Any] | None = None,
    ) -> None:
        """``detector``: instead of the config's model (not tried on a blank frame); ``opener``: what the
        capture thread opens instead of the source (tests and benchmarks), for every camera or by camera
        name; ``processing_window_s``: see :meth:`health`; ``http_options``: keyword arguments for
        :class:`~edgedet.edge.camera.http.HttpServer` (``max_connections``, ``request_timeout_s``...)."""
        self.config = config
        settings = config.camera_configs()
        several = bool(config.cameras)
        keys = [f"cameras.{i}." if several else "" for i in range(len(settings))]
        openers = dict(opener) if isinstance(opener, Mapping) else {c.name: opener for c in settings}
        for camera, key in zip(settings, keys, strict=True):
            check_source(camera.source, f"{key}source", openers.get(camera.name) is not None)
        window = config.health_window_s if processing_window_s is None else processing_window_s
        self.processing_window_s = window
        self.http_options = dict(http_options or {})
        self.detector = detector if detector is not None else open_detector(config)
        self.snapshots = SnapshotStore(config.snapshots, live=self._live_event_ids) if config.snapshots.dir else None
        self.stopping = threading.Event()
        self.wake = threading.Event()  # set by every camera's new frame (and by stop)
        run = int(time.time())
        self.cameras = [
            Camera(
                camera,
                config,
                self.detector,
                key=key,
                wake=self.wake,
                opener=openers.get(camera.name),
                snapshots=self.snapshots,
                run_id=f"{camera.name}-{run}" if several else None,  # event ids unique across cameras
                processing_window_s=window,
            )
            for camera, key in zip(settings, keys, strict=True)
        ]
        self.events_sink: JsonLinesSink | None = None
        self.sinks: list[Sink] = []
        self.http: HttpServer | None = None
        # /events/<id>/clip.mp4: the cameras' recorders (tests may set another before start)
        clips = any(c.clip_settings is not None for c in self.cameras)
        self.clip_file: Callable[[str], Path | None] | None = self._clip_file if clips else None
        self.started = time.monotonic()
        self.heartbeat = time.monotonic()
        self._turn = 0  # the camera whose turn is next
        self._metrics = DaemonMetrics(self)
        self.metrics = self._metrics.registry
        for camera in self.cameras:
            camera.series = self._metrics.series(camera.name)

    # -------------------------------------------------- the single camera's parts (tests, benchmarks)

    @property
    def slot(self) -> FrameSlot:
        return self.cameras[0].slot

    @property
    def capture(self) -> CaptureThread:
        return self.cameras[0].capture

    @property
    def scene(self) -> Scene:
        return self.cameras[0].scene

    @property
    def results(self) -> LatestResult:
        return self.cameras[0].results

    @property
    def mqtt(self) -> MqttSink | None:
        return self.cameras[0].mqtt

    @property
    def processed(self) -> int:
        """Frames processed, all cameras together."""
        return sum(c.processed for c in self.cameras)

    def process(self, frame: Frame) -> dict[str, Any] | None:
        """Detect on a frame of the first camera (see :meth:`Camera.process`)."""
        return self.cameras[0].process(frame)

    def publish(self, frame: Frame, detections: list[Detection]) -> dict[str, Any]:
        """Publish a detected frame of the first camera (see :meth:`Camera.publish`)."""
        return self.cameras[0].publish(frame, detections)

    # -------------------------------------------------------------------------------------------- health

    def health(self) -> tuple[bool, dict[str, Any]]:
        """``(ok, status)``: ok only while every camera is: not when the detector loop or a capture thread
        is stuck (``stalled``, for ``stall_timeout_s``) or when a camera's captured frames are not being
        processed (``failing``: none processed successfully for :meth:`Camera.processing_window` seconds,
        or inference failures outnumber successes); ``reason`` says why. A camera whose source is away is
        listed in ``sources_down`` (it reconnects by itself: no reason to restart the daemon). With one
        camera its fields are at the top level too."""
        loop_age = time.monotonic() - self.heartbeat
        n = len(self.cameras)
        limit, stopping = self.config.stall_timeout_s, self.stopping.is_set()
        cameras = [c.health(loop_age, limit, stopping, n) for c in self.cameras]
        state = min((c["status"] for c in cameras), key=WORST_FIRST.index)
        uptime = round(time.monotonic() - self.started, 3)
        if n == 1:
            status = {**cameras[0], "uptime_s": uptime}
        else:
            bad = [c for c in cameras if c["status"] != "ok"]
            status = {
                "status": state,
                "reason": "; ".join(f"camera {c['camera']!r}: {c['reason']}" for c in bad) or None,
                "frames_processed": sum(c["frames_processed"] for c in cameras),
                "inference_errors": sum(c["inference_errors"] for c in cameras),
                "uptime_s": uptime,
            }
        down = [c["camera"] for c in cameras if c["source_error"] is not None or c["source_state"] == "waiting"]
        status["sources_down"] = down
        status["cameras"] = cameras
        return state == "ok", status

    def camera_status(self) -> list[dict[str, Any]]:
        """``/cameras``: each camera's status, fps, latency and source."""
        loop_age = time.monotonic() - self.heartbeat
        limit, stopping, n = self.config.stall_timeout_s, self.stopping.is_set(), len(self.cameras)
        return [c.summary(c.health(loop_age, limit, stopping, n)) for c in self.cameras]

    # ----------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Open the sinks, bind the HTTP server, start capturing; ``ValueError`` naming the key on failure."""
        cfg = self.config
        if cfg.events.path:
            self.events_sink = JsonLinesSink(cfg.events.path, cfg.events.max_bytes, cfg.events.backups)
            self.sinks.append(self.events_sink)
        for camera in self.cameras:
            camera.events_sink = self.events_sink
            if cfg.mqtt is not None:
                mqtt = cfg.mqtt
                if cfg.cameras:  # one connection per camera: each has its own status topic and last will
                    mqtt = mqtt.model_copy(update={"client_id": f"{mqtt.client_id or 'edgedet'}-{camera.name}"})
                camera.mqtt = MqttSink(
                    mqtt, camera.name, max_queued=mqtt.max_queued, reconnect_max_s=camera.config.reconnect.max_s
                )
                self.sinks.append(camera.mqtt)
                labels = list(camera.scene.labels)
                camera.mqtt.announce({z.name: list(z.labels or labels) for z in camera.config.zones})
        for camera in self.cameras:
            camera.open_clips()  # before the server answers: /metrics has their series from the start
        if cfg.http.enabled:
            self._start_http()
        for camera in self.cameras:
            camera.start()
            log.info("camera %r: %s -> %s", camera.name, camera.source, cfg.model)
        notify("READY=1")

    def _start_http(self) -> None:
        cfg = self.config
        app = HttpApp(
            {c.name: c.results for c in self.cameras},
            self.metrics.render,
            self.health,
            self.stopping,
            token=cfg.http.token,
            stream_fps=cfg.http.stream_fps,
            stream_clients=cfg.http.stream_clients,
            snapshot_file=self.snapshots.path if self.snapshots is not None else None,
            camera_status=self.camera_status,
            clip_file=self.clip_file,
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
            raise ValueError(f"http: cannot listen on {cfg.http.host}:{cfg.http.port} ({exc.strerror or exc})") from exc
        host, port = self.http.address
        if cfg.http.host not in LOOPBACK and cfg.http.token is None:
            log.warning("http: listening on %s without a token: anyone on the network can watch", host)
        self.http.start()
        log.info("http: serving on http://%s:%s/ (token %s)", host, port, "required" if cfg.http.token else "off")

    def stop(self) -> None:
        """Ask :meth:`run` to return (safe from a signal handler)."""
        self.stopping.set()
        self.wake.set()
        for camera in self.cameras:
            camera.capture.stop()

    def run(self) -> int:
        """Detect on the cameras' newest frames, in turn, until :meth:`stop`; returns the exit status (0).

        With ``pipeline`` (the default; off when a camera sets ``max_fps``) inference runs in its own thread
        (:class:`~edgedet.edge.runtime.pipeline.Pipeline`) while this loop publishes the previous frame and
        prepares the next. A frame stays in flight only while another arrives within about one inference
        time; otherwise (cameras slower than the detector) it is finished at once, so pipelining never adds a
        camera period of latency."""
        watchdog = Watchdog()
        next_status = time.monotonic() + STATUS_EVERY_S
        pipelined = self.config.pipeline and not any(c.gap for c in self.cameras)
        pipeline = Pipeline(self.detector) if pipelined else None
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
                        log.error(
                            "unhealthy: %s%s", status["reason"], "; watchdog pings stop" if watchdog.enabled else ""
                        )
                if watchdog.enabled and ok:
                    watchdog.ping()
                if now >= next_status:
                    next_status = now + STATUS_EVERY_S
                    self._log_status()
                taken = self._next_frame(now + WAIT_S)
                if taken is None:
                    continue
                camera, frame = taken
                camera.check_source_restart()
                if not camera.gate(frame):
                    continue
                camera.scheduled()
                if pipeline is None:
                    camera.process(frame)
                else:
                    self._pipelined(pipeline, camera, frame)
        finally:
            if pipeline is not None:
                self._guarded(pipeline, pipeline.flush)
                pipeline.close()
        return 0

    def _next_frame(self, until: float) -> tuple[Camera, Frame] | None:
        """The newest frame of the next camera in turn that has one and is due (``max_fps``), waiting until
        the monotonic time ``until`` at most; the turn then passes to the camera after it."""
        n = len(self.cameras)
        while not self.stopping.is_set():
            self.wake.clear()  # before looking: a frame put after this sets it again
            now = time.monotonic()
            wake_at = until
            for k in range(n):
                camera = self.cameras[(self._turn + k) % n]
                if not camera.due(now):
                    wake_at = min(wake_at, camera.next_at)
                    continue
                frame = camera.take()
                if frame is not None:
                    self._turn = (self._turn + k + 1) % n
                    return camera, frame
            if now >= until:
                return None
            if any(c.due(now) for c in self.cameras):
                self.wake.wait(wake_at - now)  # a frame for a camera that is due, or the next one due
            else:
                self.stopping.wait(wake_at - now)  # frames now would wait anyway: no wake-up for each
        return None

    def _fresh_within(self, timeout: float) -> bool:
        """Does a camera that is due have a fresh frame, or get one within ``timeout`` seconds?"""
        end = time.monotonic() + timeout
        while True:
            self.wake.clear()
            now = time.monotonic()
            if any(c.due(now) and c.slot.wait_fresh(0) for c in self.cameras):
                return True
            if now >= end or self.stopping.is_set():
                return False
            self.wake.wait(end - now)

    def _pipelined(self, pipeline: Pipeline, camera: Camera, frame: Frame) -> None:
        """Start ``frame``, publish the one before it; finish ``frame`` too unless another comes soon."""
        tag = (camera, frame)
        self._guarded(pipeline, lambda: pipeline.push(frame.image, tag, detector=camera.detector), tag)
        wait_s = min(camera.detector.last_timings.inference_ms / 1e3 * 1.5, WAIT_S)
        if pipeline.in_flight and not self._fresh_within(wait_s):
            self._guarded(pipeline, pipeline.flush)

    def _guarded(
        self,
        pipeline: Pipeline,
        step: Callable[[], tuple[tuple[Camera, Frame], list[Detection]] | None],
        pushed: tuple[Camera, Frame] | None = None,
    ) -> None:
        """Run a pipeline step and publish what it finished; a failure is counted for the camera whose
        frame failed (the one pushed when it could not be prepared, else the one collected), never fatal."""
        before = pipeline.pending_tag
        try:
            done = step()
        except Exception as exc:  # one bad frame or a runtime hiccup must not end the daemon
            failed = pushed if pushed is not None and pipeline.pending_tag is not pushed else before
            if failed is not None:
                failed[0].failed(exc, "a frame", failed[1])
            return
        if done is not None:
            (camera, frame), detections = done
            camera.publish(frame, detections, camera.detector.last_timings)

    def _clip_file(self, event_id: str) -> Path | None:
        """The finished clip of ``event_id``, whichever camera recorded it (``None``: none, or not yet)."""
        for camera in self.cameras:
            path = camera.clips.clip_file(event_id) if camera.clips is not None else None
            if path is not None:
                return path
        return None

    def _live_event_ids(self) -> set[str]:
        return set().union(*(c.live_event_ids() for c in self.cameras))

    def _log_status(self) -> None:
        if len(self.cameras) == 1:
            text = self.cameras[0].status_line()
        else:
            text = "; ".join(f"{c.name}: {c.status_line()}" for c in self.cameras)
        log.info("status: %s", text)
        notify(f"STATUS={text}")

    def close(self) -> None:
        """Stop everything: HTTP, capture, clips (the open ones finished), sinks (files flushed, MQTT
        offline); well under two seconds."""
        self.stop()
        notify("STOPPING=1")
        if self.http is not None:
            self.http.close()
        deadline = time.monotonic() + CLOSE_CAPTURE_S
        for camera in self.cameras:
            camera.close(max(deadline - time.monotonic(), 0.0))
        for camera in self.cameras:  # every recorder starts finishing its clips now, then each is waited for
            if camera.clips is not None:
                camera.clips.close(0.0)
        deadline = time.monotonic() + CLOSE_CLIPS_S
        for camera in self.cameras:
            camera.close_clips(max(deadline - time.monotonic(), 0.0))
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

"""One camera of the daemon: its capture thread and frame slot, its scene, its latest result, its health.

The daemon (:mod:`edgedet.edge.camera.daemon`) runs one detector for all its cameras; a :class:`Camera`
holds everything else that is per camera. Its :class:`CaptureThread` reconnects alone when its source
fails, while the other cameras go on. The detector loop takes a camera's newest frame
(:meth:`Camera.take`), asks its motion gate (:meth:`Camera.gate`), and hands the detections to
:meth:`Camera.publish`: metrics, the scene (tracks, zones, object events), ``/detections`` and the
stream, the events file and the camera's MQTT connection. :meth:`Camera.health` says whether its frames
are being processed.

With ``clips.enabled`` the camera owns a :class:`~edgedet.edge.camera.clips.ClipRecorder` (made at
:meth:`Camera.start`, finished by :meth:`Camera.close_clips`). Every frame taken from its slot goes to it:
a frame the motion gate skipped at once, with the last processed frame's boxes; a processed one after
inference, with its own tracks' boxes, so the boxes on a clip match its frames (pipelined, a frame
skipped right after one still in flight reaches the recorder first; the older one is then left out of
the clip); one the detector failed on, without boxes. Every object event goes to the recorder before it
is sent, so that the event can carry ``clip`` (the URL path of its clip, or null). With several cameras
(``cameras:``) each camera writes into ``<clips.dir>/<camera name>/``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgedet.edge.camera.capture import Backoff, CaptureThread, Frame, FrameSlot
from edgedet.edge.camera.clips import ClipRecorder, ClipSettings
from edgedet.edge.camera.config import CameraConfig, DaemonConfig
from edgedet.edge.camera.events import build_event
from edgedet.edge.camera.latest_result import LatestResult
from edgedet.edge.camera.metrics import FPS_WINDOW_S, CameraSeries
from edgedet.edge.camera.overlay import draw_tracks, draw_zones
from edgedet.edge.camera.redact import redact_text
from edgedet.edge.camera.scene import Scene, SceneUpdate
from edgedet.edge.camera.sinks import JsonLinesSink, MqttSink
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
from edgedet.edge.camera.tracking import Track
from edgedet.edge.camera.zones import ConfigCheckError, check_labels
from edgedet.edge.runtime.backends.base import failure_reason
from edgedet.edge.runtime.detector import Detection, Detector, StageTimings
from edgedet.edge.runtime.draw import draw_detections

__all__ = ["MIN_FAILURES", "Camera", "WakingSlot", "check_source"]

log = logging.getLogger(__name__)

# /healthz says `failing` when, while frames are captured, none was processed successfully for the processing
# window, or when failures outnumber successes (MIN_FAILURES or more).
MIN_FAILURES = 10


class WakingSlot(FrameSlot):
    """A :class:`FrameSlot` that also sets ``wake`` on every new frame: the detector loop waits on one event
    for all cameras."""

    def __init__(self, wake: threading.Event) -> None:
        super().__init__()
        self._wake = wake

    def put(self, frame: Frame) -> None:
        super().put(frame)
        self._wake.set()


def check_source(source: str, key: str, opener_given: bool) -> None:
    """``ValueError`` naming ``key`` (``source``, ``cameras.1.source``) for a source that cannot work here."""
    kind = source_kind(source)
    if kind == "gstreamer" and not gstreamer_available():
        raise ValueError(
            f"{key}: a GStreamer pipeline needs OpenCV built with GStreamer, and this one is not (the pip "
            "wheel never is); use the system python3-opencv, see deploy/README.md"
        )
    if kind == "url" and not opener_given:
        try:
            check_url(str(source).strip())
        except SourceError as exc:
            raise ValueError(f"{key}: {exc}") from exc


def clip_settings(settings: ClipSettings, camera: str, several: bool) -> ClipSettings | None:
    """A camera's clip settings (``None``: clips off); with ``several`` cameras, in ``<dir>/<camera>/``."""
    if not settings.enabled or settings.dir is None:
        return None
    if not several:
        return settings
    return settings.model_copy(update={"dir": str(Path(settings.dir) / camera)})


def camera_detector(detector: Detector, config: CameraConfig, key: str) -> Detector:
    """``detector``, or for a camera with its own thresholds one on the same backend (one session) with them."""
    spec = getattr(detector, "spec", None)
    thresholds = {k: getattr(config, k) for k in ("score_threshold", "iou_threshold")}
    overrides = {k: v for k, v in thresholds.items() if v is not None and spec is not None and v != getattr(spec, k)}
    if not overrides:
        return detector
    try:
        return Detector(detector.backend, replace(spec, **overrides))
    except ValueError as exc:
        raise ValueError(f"{key}score_threshold: {exc}") from exc


class Camera:
    """One camera (see the module docstring). ``key``: how config errors name its section (``""`` for a
    single camera, ``cameras.1.``); ``wake``: set on each captured frame; ``opener``: what the capture thread
    opens instead of the source (tests, benchmarks); ``run_id``: prefix of its object event ids."""

    def __init__(
        self,
        config: CameraConfig,
        shared: DaemonConfig,
        detector: Detector,
        *,
        key: str = "",
        wake: threading.Event,
        opener: Callable[[], CaptureSource] | None = None,
        snapshots: SnapshotStore | None = None,
        run_id: str | None = None,
        processing_window_s: float = 10.0,
    ) -> None:
        self.config, self.shared, self.name = config, shared, config.name
        self._where = f" of camera {self.name!r}" if key else ""  # in log lines, with several cameras
        self.source = redact(config.source)
        self.detector = camera_detector(detector, config, key)
        labels = tuple(detector.labels)
        try:
            config.filters.check_labels(labels, f"{key}filters")
            check_labels(config.zones, labels, f"{key}zones")
            check_labels(config.masks, labels, f"{key}masks")
        except ConfigCheckError as exc:
            raise ValueError(str(exc)) from exc
        self.snapshots = snapshots
        self.clip_settings = clip_settings(config.clips, config.name, several=bool(key))
        if key and self.clip_settings is not None and not config.name.strip("."):  # "." or ".."
            raise ValueError(f"{key}name: {config.name!r} cannot name the folder of its clips")
        self.clips: ClipRecorder | None = None  # made at start() when clips are on
        self.scene = Scene(
            config.name,
            labels,
            tracking=config.tracking,
            objects=config.objects,
            filters=config.filters,
            zones=config.zones,
            masks=config.masks,
            motion=config.motion,
            run_id=run_id,
            snapshot=self._snapshot if snapshots is not None else None,
        )
        self.slot = WakingSlot(wake)
        options = SourceOptions(config.capture_width, config.capture_height, config.source_fps)
        self.capture = CaptureThread(
            opener or (lambda: open_source(config.source, options)),
            self.slot,
            loop=config.loop,
            pace_fps=config.source_fps,
            backoff=Backoff(config.reconnect.initial_s, config.reconnect.max_s),
            name=f"capture-{self.name}" if key else "capture",
            what=f"camera {self.name!r} source" if key else "source",
        )
        self.results = LatestResult(shared.http.jpeg_quality, overlay=self._overlay)
        self.events_sink: JsonLinesSink | None = None  # the daemon's, shared by every camera (set at start)
        self.mqtt: MqttSink | None = None  # this camera's connection (set at start)
        self.series: CameraSeries | None = None  # set by the daemon with its metrics
        self.gap = 1.0 / config.max_fps if config.max_fps else 0.0
        self.next_at = 0.0  # monotonic time of the next inference allowed by max_fps
        self.processing_window_s = processing_window_s
        self.processed = 0
        self.last_frame_time = 0.0
        self.last_timings = StageTimings()
        self._recent: collections.deque[float] = collections.deque(maxlen=1024)  # monotonic times, for fps
        self._failures = 0
        self._last_failure: str | None = None
        self._last_ok = time.monotonic()  # the last frame processed successfully (or the start)
        self._captured_at_ok = 0  # capture.captured then
        self._outcomes: collections.deque[list[int]] = collections.deque(maxlen=300)  # [second, ok, failed]
        self._source_epoch = (0, 0)  # (reconnects, scene_loops) of the capture: a change ends every object
        self._last_extra: Any = None

    # ------------------------------------------------------------------------------------------ frames

    def start(self) -> None:
        self.open_clips()
        self._last_ok, self._captured_at_ok = time.monotonic(), self.capture.captured
        self.capture.start()

    def open_clips(self) -> ClipRecorder | None:
        """The camera's clip recorder, made (and its thread started) on the first call; ``None``: clips off.
        A folder that cannot be made is logged now, not fatal: each clip then fails, counted and logged,
        until it can be written."""
        if self.clip_settings is not None and self.clips is None:
            self.clips = ClipRecorder(self.clip_settings, camera=self.name)
            try:
                self.clips.dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                log.error(
                    "clips%s: cannot make %s (%s): no clip is written until it can be; detection goes on",
                    self._where,
                    self.clips.dir,
                    exc.strerror or exc,
                )
        return self.clips

    def due(self, now: float) -> bool:
        """May the detector run on this camera now (``max_fps``)?"""
        return not self.gap or now >= self.next_at

    def take(self) -> Frame | None:
        """The newest frame not taken yet, without waiting."""
        return self.slot.take(timeout=0)

    def scheduled(self) -> None:
        """The detector ran on a frame of this camera: the next may come one ``max_fps`` period later."""
        if self.gap:
            self.next_at = max(self.next_at + self.gap, time.monotonic() - self.gap)

    def gate(self, frame: Frame) -> bool:
        """Does the model run on ``frame``? A skipped frame still shows on the stream, and counts as
        handled for ``/healthz`` (nothing moved, so nothing was missed)."""
        decision = self.scene.gate(frame.image, frame.timestamp)
        if decision.run:
            return True
        assert self.series is not None
        self.series.skipped(decision.reason).inc()
        self.scene.skip(frame.timestamp)
        self._last_ok, self._captured_at_ok = time.monotonic(), self.capture.captured
        self.results.update(frame, (), self.results.event() or {}, self._last_extra)
        self.record(frame, self._last_extra)  # nothing moved: the boxes of the last processed frame
        return False

    def check_source_restart(self) -> None:
        """The source reconnected or a file looped: the objects seen before are gone (``end`` events)."""
        epoch = (self.capture.reconnects, self.capture.scene_loops)
        if epoch != self._source_epoch:
            reason = "source restarted" if epoch[0] != self._source_epoch[0] else "source looped"
            self._source_epoch = epoch
            self.emit_objects(self.scene.restart(time.time(), reason), {})

    def process(self, frame: Frame) -> dict[str, Any] | None:
        """Detect on ``frame`` (not pipelined), publish it; the event (``None`` when the detector failed)."""
        try:
            detections = self.detector.detect(frame.image)
        except Exception as exc:  # one bad frame or a runtime hiccup must not end the daemon
            self.failed(exc, f"frame {frame.index}", frame)
            return None
        return self.publish(frame, detections)

    def failed(self, exc: Exception, what: str, frame: Frame | None = None) -> None:
        """The detector failed on a frame of this camera: counted and logged, never fatal (``frame`` still
        goes to the clips, without boxes)."""
        if frame is not None:
            self.record(frame, None)
        assert self.series is not None
        self.series.errors.inc()
        self._failures += 1
        self._last_failure = failure_reason(exc, limit=200)
        self._tally(False)
        if self._failures <= 3 or self._failures % 100 == 0:
            log.error("detector failed on %s%s (%d so far): %s", what, self._where, self._failures, exc)

    def publish(self, frame: Frame, detections: list[Detection], timings: StageTimings | None = None) -> dict[str, Any]:
        """Metrics, the scene, the latest result and the events of a detected frame (``timings``: the
        camera detector's last)."""
        timings = timings or self.detector.last_timings
        series = self.series
        assert series is not None
        series.processed.inc()
        series.latency.observe(timings.total_ms / 1e3)
        series.stages["preprocess"].observe(timings.preprocess_ms / 1e3)
        series.stages["inference"].observe(timings.inference_ms / 1e3)
        series.stages["decode"].observe(timings.decode_ms / 1e3)
        update = self.scene.observe(frame.image, detections, frame.timestamp)
        detections = update.detections
        self.record(frame, update)  # before its events: a clip starting now has this frame
        series.detections.inc(len(detections))
        self.processed += 1
        self.last_frame_time = frame.timestamp
        self.last_timings = timings
        self._recent.append(time.monotonic())
        self._last_ok, self._captured_at_ok = time.monotonic(), self.capture.captured
        self._tally(True)
        event = build_event(self.name, self.source, frame, detections, timings)
        self._last_extra = update
        self.results.update(frame, detections, event, update)
        if detections or self.shared.events.include_empty:
            if self.events_sink is not None and self.shared.events.detections:
                self.events_sink.emit(event)
            if self.mqtt is not None:
                self.mqtt.emit(event)  # published only with mqtt.detections
        self.emit_objects(update.events, update.changed)
        return event

    def record(self, frame: Frame, update: Any) -> None:
        """Hand a frame taken from the slot to the clips (never waits), with the boxes of ``update`` (a
        :class:`SceneUpdate`: its tracks, or its detections without tracking)."""
        if self.clips is None:
            return
        overlay = None
        if isinstance(update, SceneUpdate) and self.clips.settings.draw_boxes:
            if self.scene.tracker is not None:
                overlay = [
                    {"box": det.box, "label": det.label, "class_id": det.class_id, "track_id": track.id}
                    for track, det in update.tracks
                ]
            else:
                overlay = [{"box": d.box, "label": d.label, "class_id": d.class_id} for d in update.detections]
        self.clips.on_frame(frame.timestamp, frame.image, overlay)

    def emit_objects(self, events: list[dict[str, Any]], changed: dict[tuple[str, str], int]) -> None:
        """Object events to ``/events``, the events file and MQTT; changed zone counts to MQTT (retained).
        With clips, each event goes to the recorder first and carries ``clip``: the URL path of its object's
        clip (being written or written; the file is served once finished), or null."""
        if events and self.clips is not None:
            for e in events:
                self.clips.on_event(e)
                e["clip"] = self.clips.clip_path(str(e.get("id", "")))
        if events:
            self.results.add_events(events)
            for e in events:
                if self.series is not None:
                    self.series.object_event(e["type"]).inc()
                if self.events_sink is not None and self.shared.events.objects:
                    self.events_sink.emit(e)
                if self.mqtt is not None:
                    self.mqtt.emit(e)
        if self.mqtt is not None:
            for (zone, label), n in changed.items():
                self.mqtt.retain(f"{zone}/{label}", str(n))

    def close(self, timeout: float = 0.5) -> None:
        """Stop the capture (waiting ``timeout`` s at most: a read stuck in a driver is left behind) and end
        every object (``stopped``); the daemon then calls :meth:`close_clips`."""
        self.capture.stop()
        if self.capture.is_alive():
            self.capture.join(timeout=timeout)
        self.emit_objects(self.scene.restart(time.time(), "stopped"), {})

    def close_clips(self, timeout: float) -> bool:
        """Finish the open clips (their post-roll cut short), waiting ``timeout`` s at most; whether they
        were. A clip not finished in time stays under its hidden ``.part`` name: never a broken clip."""
        if self.clips is None:
            return True
        done = self.clips.close(timeout)
        if not done:
            log.warning(
                "clips%s: not finished in %.1f s; those still open stay hidden partial files (pruned later)",
                self._where,
                timeout,
            )
        return done

    # ------------------------------------------------------------------------------------------- health

    def fps(self) -> float:
        now = time.monotonic()
        times = [t for t in list(self._recent) if now - t <= FPS_WINDOW_S]
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-6)

    def _tally(self, ok: bool) -> None:
        """Count a frame's outcome in its second (detector loop only)."""
        second = int(time.monotonic())
        if not self._outcomes or self._outcomes[-1][0] != second:
            self._outcomes.append([second, 0, 0])
        self._outcomes[-1][1 if ok else 2] += 1

    def processing_window(self, cameras: int = 1) -> float:
        """Seconds without a processed frame (while frames are captured) before this camera is ``failing``:
        at least three inference times per camera sharing the detector, or three ``max_fps`` periods."""
        inference_s = self.detector.last_timings.total_ms / 1e3
        return max(self.processing_window_s, 3 * self.gap, 3 * cameras * inference_s)

    def _processing_problem(self, cameras: int) -> str | None:
        """Why frames are not being processed, or ``None`` when they are (or none are captured)."""
        now = time.monotonic()
        window = self.processing_window(cameras)
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

    def health(self, loop_age: float, limit: float, stopping: bool, cameras: int = 1) -> dict[str, Any]:
        """This camera's ``/healthz`` status: ``stalled`` when the detector loop (``loop_age`` seconds since
        its last progress) or the capture thread made no progress for ``limit`` seconds, ``failing`` when
        captured frames are not being processed, else ``ok`` (a source that is reconnecting is ``ok``: its
        ``source_state`` and ``source_error`` say so)."""
        capture_age = self.capture.stalled_for()
        reason: str | None = None
        if stopping:
            state, reason = "stopping", "the daemon is stopping"
        elif loop_age >= limit or capture_age >= limit:
            which = "detector loop" if loop_age >= capture_age else "capture thread"
            state = "stalled"
            reason = f"the {which} made no progress for {max(loop_age, capture_age):.0f} s"
        else:
            reason = self._processing_problem(cameras)
            state = "ok" if reason is None else "failing"
        error = self.capture.last_error
        return {
            "status": state,
            "reason": reason,
            "camera": self.name,
            "source": self.source,
            "source_state": self.capture.state,
            "source_error": redact_text(error, self.config.source) if error else None,
            "frames_processed": self.processed,
            "inference_errors": self._failures,
            "last_frame_age_s": round(time.time() - self.last_frame_time, 3) if self.last_frame_time else None,
        }

    def summary(self, health: dict[str, Any]) -> dict[str, Any]:
        """The camera's entry in ``/cameras``, from its :meth:`health`."""
        return {
            "name": self.name,
            "status": health["status"],
            "reason": health["reason"],
            "fps": round(self.fps(), 2),
            "latency_ms": round(self.last_timings.total_ms, 3) if self.processed else None,
            "frames_processed": self.processed,
            "source_state": health["source_state"],
            "source_error": health["source_error"],
            "last_frame_age_s": health["last_frame_age_s"],
        }

    def status_line(self) -> str:
        return (
            f"{self.processed} frames ({self.fps():.1f} fps), {self.slot.dropped} dropped, "
            f"{self.capture.reconnects} reconnects, source {self.capture.state}"
        )

    # ------------------------------------------------------------------------------- drawing, snapshots

    def _overlay(self, image: np.ndarray, detections: Any, extra: Any) -> np.ndarray:
        """The annotated frame of the snapshot and the stream: zones, then tracks with their IDs (or plain
        boxes without tracking)."""
        if not isinstance(extra, SceneUpdate) or self.scene.tracker is None:
            return draw_detections(image, detections)
        out = image
        if self.scene.zones is not None and (self.scene.zones.zones or self.scene.zones.masks):
            out = draw_zones(image, self.scene.zones, extra.counts)
        tracks = {track.id: det for track, det in extra.tracks}
        return draw_tracks(out, tracks, self.scene.labels, copy=out is image)

    def _snapshot(self, event_id: str, image: np.ndarray, track: Track) -> str | None:
        labels = self.scene.labels
        label = labels[track.class_id] if 0 <= track.class_id < len(labels) else ""
        det = Detection(tuple(float(v) for v in track.box), float(track.score), int(track.class_id), label)
        annotated = draw_tracks(image, {track.id: det}, labels)
        assert self.snapshots is not None
        ok = self.snapshots.save(event_id, annotated, track.box, label, crop_from=image)
        return f"/events/{event_id}/snapshot.jpg" if ok else None

    def live_event_ids(self) -> set[str]:
        return {life.event_id for life in self.scene.objects.live.values()}

"""The camera daemon's Prometheus metrics, on ``prometheus_client``.

Each daemon owns a :class:`Registry` (a ``CollectorRegistry``, not the library's global ``REGISTRY``, so
several daemons in one process do not collide) that also carries the library's process metrics
(``process_resident_memory_bytes``, ``process_cpu_seconds_total``, ``process_open_fds``, ... on Linux) and
``python_info``. Components keep plain integer counters; :class:`CounterFunction` and :class:`GaugeFunction`
read them at scrape time.

:class:`DaemonMetrics` holds the daemon's families. Every per-camera series carries a ``camera`` label (one
camera too); what the process shares (the events file, snapshots, uptime) has none. The event clips'
families (``edgedet_clip*``) have a series only for the cameras that record clips.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

try:  # the format generate_latest writes; CONTENT_TYPE_LATEST is text format 1.0.0 since prometheus_client 0.22
    from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE
except ImportError:  # older prometheus_client: CONTENT_TYPE_LATEST is still 0.0.4
    from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE

__all__ = [
    "CONTENT_TYPE",
    "FPS_WINDOW_S",
    "LATENCY_BUCKETS",
    "CameraSeries",
    "CounterFunction",
    "DaemonMetrics",
    "GaugeFunction",
    "Registry",
]

# Seconds: 1 ms .. 2.5 s covers a Jetson at 2 ms and a Pi Zero at a second.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
FPS_WINDOW_S = 5.0
STAGES = ("preprocess", "inference", "decode")
CAMERA = ("camera",)

Values = Callable[[], float | Mapping[tuple[str, ...], float]]


class Registry(CollectorRegistry):
    """One daemon's metrics plus process and platform metrics; :meth:`render` is the ``/metrics`` body."""

    def __init__(self) -> None:
        super().__init__()
        ProcessCollector(registry=self)
        PlatformCollector(registry=self)

    def render(self) -> str:
        return generate_latest(self).decode()


class CounterFunction(Collector):
    """A counter whose value ``function`` returns at each scrape (name it ``..._total``): a number, or with
    ``labelnames`` a mapping of label values to numbers."""

    family: type[CounterMetricFamily] | type[GaugeMetricFamily] = CounterMetricFamily

    def __init__(
        self,
        name: str,
        documentation: str,
        function: Values,
        registry: CollectorRegistry,
        labelnames: Sequence[str] = (),
    ) -> None:
        self.name, self.documentation, self.function = name, documentation, function
        self.labelnames = tuple(labelnames)
        registry.register(self)

    def describe(self) -> Iterable[Metric]:  # the names, for the registry's duplicate check
        return [self.family(self.name, self.documentation)]

    def collect(self) -> Iterable[Metric]:
        if not self.labelnames:
            return [self.family(self.name, self.documentation, value=float(self.function()))]  # type: ignore[arg-type]
        metric = self.family(self.name, self.documentation, labels=self.labelnames)
        for labels, value in self.function().items():  # type: ignore[union-attr]
            metric.add_metric(list(labels), float(value))
        return [metric]


class GaugeFunction(CounterFunction):
    """A gauge read at scrape time, like :class:`CounterFunction`."""

    family = GaugeMetricFamily


class CameraView(Protocol):
    """What the metrics read of a camera (:class:`edgedet.edge.camera.camera.Camera`)."""

    name: str
    capture: Any  # captured, reconnects, loops, connected
    slot: Any  # dropped
    scene: Any  # objects.live, filtered
    mqtt: Any  # published, errors, connected (or None)
    clips: Any  # stats() (or None: no clips)
    last_frame_time: float

    def fps(self) -> float: ...


class DaemonView(Protocol):
    cameras: Sequence[CameraView]
    started: float
    events_sink: Any  # written, errors (or None)
    snapshots: Any  # errors (or None)


@dataclass(frozen=True)
class CameraSeries:
    """One camera's series that the detector loop updates."""

    processed: Counter
    latency: Histogram
    stages: dict[str, Histogram]
    detections: Counter
    errors: Counter
    skipped_family: Counter
    objects_family: Counter
    camera: str

    def skipped(self, reason: str) -> Counter:
        return self.skipped_family.labels(camera=self.camera, reason=reason)

    def object_event(self, kind: str) -> Counter:
        return self.objects_family.labels(camera=self.camera, type=kind)


class DaemonMetrics:
    """The daemon's metric families in its own :class:`Registry`; :meth:`series` gives a camera its own."""

    def __init__(self, daemon: DaemonView) -> None:
        r = self.registry = Registry()

        def per_camera(read: Callable[[Any], float]) -> Callable[[], dict[tuple[str, ...], float]]:
            return lambda: {(c.name,): float(read(c)) for c in daemon.cameras}

        def mqtt(read: Callable[[Any], float]) -> Callable[[], dict[tuple[str, ...], float]]:
            return per_camera(lambda c: read(c.mqtt) if c.mqtt is not None else 0)

        def clips(*keys: str) -> Callable[[], dict[tuple[str, ...], float]]:
            def read() -> dict[tuple[str, ...], float]:
                recorders = [(c.name, c.clips) for c in daemon.cameras if c.clips is not None]
                return {(name,): float(sum(rec.stats()[k] for k in keys)) for name, rec in recorders}

            return read

        def shared(thing: Callable[[], Any], attr: str) -> Callable[[], float]:
            return lambda: getattr(thing(), attr) if thing() is not None else 0

        counters = (
            ("edgedet_frames_captured_total", "Frames read from the source.", lambda c: c.capture.captured),
            (
                "edgedet_frames_dropped_total",
                "Frames replaced by a newer one before the detector took them.",
                lambda c: c.slot.dropped,
            ),
            (
                "edgedet_source_reconnects_total",
                "Attempts to re-open the source after it failed.",
                lambda c: c.capture.reconnects,
            ),
            (
                "edgedet_source_loops_total",
                "Times a video file or image folder reached its end.",
                lambda c: c.capture.loops,
            ),
            (
                "edgedet_detections_filtered_total",
                "Detections dropped by the filters and ignore masks.",
                lambda c: c.scene.filtered,
            ),
        )
        for name, doc, read in counters:
            CounterFunction(name, doc, per_camera(read), r, CAMERA)
        gauges = (
            ("edgedet_source_up", "1 while the source delivers frames.", lambda c: int(c.capture.connected)),
            ("edgedet_fps", f"Frames processed per second over the last {FPS_WINDOW_S:g} s.", lambda c: c.fps()),
            (
                "edgedet_last_frame_timestamp_seconds",
                "Capture time (Unix) of the newest processed frame.",
                lambda c: c.last_frame_time,
            ),
            ("edgedet_objects_active", "Objects being tracked now.", lambda c: len(c.scene.objects.live)),
        )
        for name, doc, read in gauges:
            GaugeFunction(name, doc, per_camera(read), r, CAMERA)
        self.processed = Counter(
            "edgedet_frames_processed_total", "Frames run through the detector.", CAMERA, registry=r
        )
        self.latency = Histogram(
            "edgedet_inference_latency_seconds",
            "Detector time per frame (pre-processing + inference + decoding).",
            CAMERA,
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.stages = Histogram(
            "edgedet_stage_latency_seconds",
            "Detector time per frame by stage.",
            ("camera", "stage"),
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.detections = Counter("edgedet_detections_total", "Objects detected.", CAMERA, registry=r)
        self.errors = Counter("edgedet_inference_errors_total", "Frames the detector failed on.", CAMERA, registry=r)
        self.skipped = Counter(
            "edgedet_frames_skipped_total",
            "Frames the motion gate kept from the detector, by reason.",
            ("camera", "reason"),
            registry=r,
        )
        self.objects = Counter("edgedet_object_events_total", "Object events by type.", ("camera", "type"), registry=r)
        GaugeFunction(
            "edgedet_uptime_seconds", "Seconds since the daemon started.", lambda: time.monotonic() - daemon.started, r
        )
        events = lambda: daemon.events_sink  # noqa: E731
        CounterFunction(
            "edgedet_events_written_total", "Events written to the events file.", shared(events, "written"), r
        )
        CounterFunction(
            "edgedet_events_errors_total", "Events the events file could not take.", shared(events, "errors"), r
        )
        CounterFunction(
            "edgedet_mqtt_published_total", "Events handed to the MQTT client.", mqtt(lambda m: m.published), r, CAMERA
        )
        CounterFunction(
            "edgedet_mqtt_errors_total",
            "Events not published (broker down, queue full).",
            mqtt(lambda m: m.errors),
            r,
            CAMERA,
        )
        GaugeFunction(
            "edgedet_mqtt_connected",
            "1 while connected to the MQTT broker.",
            mqtt(lambda m: int(m.connected)),
            r,
            CAMERA,
        )
        CounterFunction(
            "edgedet_snapshot_errors_total",
            "Snapshots that could not be written (full or read-only disk).",
            shared(lambda: daemon.snapshots, "errors"),
            r,
        )

        clip_counters = (
            ("edgedet_clips_written_total", "Event clips written (finished and named).", "clips_written"),
            (
                "edgedet_clips_failed_total",
                "Event clips stopped by an error (full or read-only disk); their partial files removed.",
                "clips_failed",
            ),
            (
                "edgedet_clips_skipped_total",
                "Objects without a clip: clips.max_concurrent were being written.",
                "clips_skipped",
            ),
            (
                "edgedet_clip_frames_dropped_total",
                "Frames the clip writer could not take (its queue was full).",
                "frames_dropped",
            ),
            ("edgedet_clip_errors_total", "Clip writer errors of any kind (logged).", "errors"),
        )
        for name, doc, *keys in clip_counters:
            CounterFunction(name, doc, clips(*keys), r, CAMERA)
        clip_gauges = (
            ("edgedet_clips_recording", "Event clips being written now.", "clips_recording"),
            ("edgedet_clip_buffer_bytes", "JPEG bytes held by the pre-roll buffer.", "bytes_buffered"),
            ("edgedet_clip_buffer_frames", "Frames held by the pre-roll buffer.", "frames_buffered"),
            (
                "edgedet_clip_frames_queued",
                "Frames waiting for the clip writer (queued, and behind a pre-roll being written).",
                "frames_queued",
                "frames_backlog",
            ),
        )
        for name, doc, *keys in clip_gauges:
            GaugeFunction(name, doc, clips(*keys), r, CAMERA)

    def series(self, camera: str) -> CameraSeries:
        """``camera``'s series, created now (so they read 0 before its first frame)."""
        return CameraSeries(
            processed=self.processed.labels(camera=camera),
            latency=self.latency.labels(camera=camera),
            stages={stage: self.stages.labels(camera=camera, stage=stage) for stage in STAGES},
            detections=self.detections.labels(camera=camera),
            errors=self.errors.labels(camera=camera),
            skipped_family=self.skipped,
            objects_family=self.objects,
            camera=camera,
        )

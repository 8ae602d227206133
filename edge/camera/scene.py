"""What one camera makes of its detections: objects.

    frame -> motion gate (does the model run?) -> detector -> filters and ignore masks -> tracker
          -> zones (enter / exit, counts) -> object events (new / update / end) -> sinks

:class:`Scene` holds the per-camera state of that chain — the tracker, the zone tracker, the object
events, the motion gate — and the daemon calls it once per frame: :meth:`Scene.gate` before inference,
:meth:`Scene.skip` for a frame the gate skipped, :meth:`Scene.observe` with a frame's detections.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from edgedet.edge.camera.filters import ObjectFilter, ObjectFilterSettings
from edgedet.edge.camera.motion import GateDecision, MotionGate, MotionSettings
from edgedet.edge.camera.objects import ObjectEvents, ObjectSettings
from edgedet.edge.camera.tracking import Track, Tracker, TrackerSettings
from edgedet.edge.camera.zones import MaskSettings, Zones, ZoneSettings, ZoneTracker, ZoneUpdate
from edgedet.edge.runtime.detector import Detection
from edgedet.edge.runtime.settings import Flag, Int, Number, StrictModel

__all__ = ["Scene", "SceneUpdate", "TrackingSettings"]

ZeroToOne = Annotated[Number, Field(ge=0, le=1)]


class TrackingSettings(StrictModel):
    """The multi-object tracker (:mod:`edgedet.edge.camera.tracking`); times in seconds, so one setting
    works at 5 and at 30 fps."""

    enabled: Flag = Field(True, description="track objects and send object events (`false`: per-frame only)")
    class_aware: Flag = Field(True, description="a detection only continues a track of its own class")
    high_score: ZeroToOne = Field(0.5, description="detections from here on match any track and may start one")
    low_score: ZeroToOne = Field(0.1, description="detections below are ignored; between the two they only continue")
    new_track_score: ZeroToOne = Field(0.6, description="an unmatched detection starts a track from this score up")
    match_iou: ZeroToOne = Field(0.2, description="IoU a detection needs with a track's predicted box")
    min_hits: Annotated[Int, Field(ge=1, le=100)] = Field(2, description="matches in a row that confirm a new track")
    max_age_s: Annotated[Number, Field(gt=0, le=3600)] = Field(
        1.0, description="a lost track ends once unseen this long (time the motion gate skipped does not count)"
    )

    def tracker_settings(self) -> TrackerSettings:
        return TrackerSettings(
            high_score=self.high_score,
            low_score=self.low_score,
            new_track_score=max(self.new_track_score, self.high_score),
            match_iou=self.match_iou,
            class_aware=self.class_aware,
            min_hits=self.min_hits,
            max_age_s=self.max_age_s,
        )


@dataclass
class SceneUpdate:
    """What one processed frame gave: the detections kept, the confirmed tracks seen on it (with their
    detections), the object events and the zone counts that changed."""

    detections: list[Detection]
    tracks: list[tuple[Track, Detection]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    changed: dict[tuple[str, str], int] = field(default_factory=dict)


class Scene:
    """The object pipeline of one camera (see the module docstring). ``labels``: the model's class names;
    ``snapshot(event_id, frame, track)`` saves a best snapshot and returns its URL path."""

    def __init__(
        self,
        camera: str,
        labels: Sequence[str],
        *,
        tracking: TrackingSettings | None = None,
        objects: ObjectSettings | None = None,
        filters: ObjectFilterSettings | None = None,
        zones: Sequence[ZoneSettings] = (),
        masks: Sequence[MaskSettings] = (),
        motion: MotionSettings | None = None,
        run_id: str | None = None,
        snapshot: Callable[[str, np.ndarray, Track], str | None] | None = None,
    ) -> None:
        self.camera = camera
        self.labels = tuple(labels)
        self.tracking = tracking or TrackingSettings()
        self.filter = ObjectFilter(filters)
        self.zone_settings, self.mask_settings = tuple(zones), tuple(masks)
        self.gate_ = MotionGate(motion or MotionSettings())
        self._snapshot = snapshot
        self._frame: np.ndarray | None = None
        self.objects = ObjectEvents(
            camera, self.labels, objects, run_id=run_id, snapshot=self._snap if snapshot is not None else None
        )
        self.tracker = Tracker(self.tracking.tracker_settings()) if self.tracking.enabled else None
        self.zones: Zones | None = None
        self.zone_tracker: ZoneTracker | None = None
        self.filtered = 0  # detections dropped by the filters and masks

    def _snap(self, event_id: str, track: Track) -> str | None:
        assert self._snapshot is not None and self._frame is not None
        return self._snapshot(event_id, self._frame, track)

    def _zones_for(self, width: int, height: int) -> Zones:
        if self.zones is None or (self.zones.width, self.zones.height) != (width, height):
            self.zones = Zones(self.zone_settings, self.mask_settings, width=width, height=height)
            if self.zone_tracker is None:
                self.zone_tracker = ZoneTracker(self.zones, self.labels)
            else:  # a new resolution: same zones, new pixels
                self.zone_tracker.zones = self.zones
        return self.zones

    def gate(self, image: np.ndarray, t: float) -> GateDecision:
        """Does the model run on this frame? On motion, while an object moved in the last
        ``motion.settle_s``, and at least every ``motion.refresh_s``; always with gating off."""
        moving = self.objects.moving(t, self.gate_.settings.settle_s)
        return self.gate_.check(image, tracks_active=moving, now=t)

    def skip(self, t: float) -> None:
        """The gate skipped the frame at ``t``: nothing moved, so tracks stay where they are and the time
        does not age them."""
        if self.tracker is not None:
            self.tracker.still(t)

    def observe(self, image: np.ndarray, detections: Sequence[Detection], t: float) -> SceneUpdate:
        """The frame ``image`` captured at ``t`` and its detections -> the tracks and object events."""
        height, width = image.shape[:2]
        zones = self._zones_for(width, height)
        kept = zones.drop_masked(self.filter.apply(detections, (width, height)))
        self.filtered += len(detections) - len(kept)
        update = SceneUpdate(kept)
        if self.tracker is None:
            return update
        boxes = np.array([d.box for d in kept], dtype=np.float64).reshape(-1, 4)
        scores = np.array([d.score for d in kept], dtype=np.float64)
        classes = np.array([d.class_id for d in kept], dtype=np.int64)
        seen = self.tracker.update(boxes, scores, classes, t)
        update.tracks = [(track, kept[track.detection]) for track in seen]
        zone_update: ZoneUpdate | None = None
        if self.zone_tracker is not None:  # every confirmed track, lost ones at their predicted box: a
            # short miss must not make an object leave and re-enter its zones
            live = {track.id: track for track in self.tracker.tracks if track.id > 0}
            zone_update = self.zone_tracker.update(live)
            update.counts, update.changed = zone_update.counts, zone_update.changed
        self._frame = image
        try:
            update.events = self.objects.update(seen, self.tracker.ended(), zone_update, t)
        finally:
            self._frame = None
        return update

    def restart(self, t: float, reason: str) -> list[dict[str, Any]]:
        """The source restarted (or the daemon stops): every object ends with ``reason``."""
        if self.tracker is not None:
            self.tracker.close(t)
        if self.zone_tracker is not None and self.zones is not None:
            self.zone_tracker = ZoneTracker(self.zones, self.labels)
        self.gate_.reset()
        return self.objects.end_all(t, reason)

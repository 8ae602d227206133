"""Object events: the daemon speaks in objects, not frames.

Fed once per processed frame with the tracker's confirmed tracks, the tracks that ended and the zone
update, :class:`ObjectEvents` emits a few events per object instead of one per frame:

* ``new`` — the track was confirmed (one alert per object);
* ``update`` — throttled: only when its zones change, its best score rises by ``score_step``, it becomes
  stationary or starts moving again, or every ``update_interval_s`` while it lives;
* ``end`` — the track was lost (or the source restarted, or the daemon stopped), with its duration, the
  zones it visited, its best score and its first and last box;
* ``enter`` / ``exit`` — a zone transition (the zone's own event, also folded into ``update``).

Every event carries ``type``, ``camera``, ``id`` (``<run>-<track id>``, unique across restarts), ``track_id``,
``label``, ``score``, ``best_score``, ``box``, ``zones``, ``stationary``, ``timestamp``/``time`` and
``snapshot`` (the URL path of the best-so-far snapshot, when snapshots are kept).

An object is **stationary** when its box centre has stayed within ``stationary_fraction`` of its box size
(the larger side) of where it settled for ``stationary_s`` seconds; moving that far again makes it
non-stationary. A parked car called a person alerts once (``new``) and then only says it is stationary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field

from edgedet.edge.camera.events import iso_time
from edgedet.edge.camera.zones import ZoneUpdate
from edgedet.edge.runtime.settings import Number, StrictModel

__all__ = ["ObjectEvents", "ObjectSettings"]


class ObjectSettings(StrictModel):
    """When object events are sent and when an object counts as stationary."""

    update_interval_s: Annotated[Number, Field(gt=0, le=86400)] = Field(
        30.0,
        description="an `update` at least this often while an object lives (besides zone/score/stationary changes)",
    )
    score_step: Annotated[Number, Field(gt=0, le=1)] = Field(
        0.05, description="an `update` (and a new best snapshot) when the best score rises by this much"
    )
    stationary_s: Annotated[Number, Field(gt=0, le=86400)] = Field(
        10.0, description="an object whose centre stays put this long is `stationary`"
    )
    stationary_fraction: Annotated[Number, Field(gt=0, le=10)] = Field(
        0.1, description="'stays put': the centre moves less than this fraction of the box's larger side"
    )


@dataclass
class _Life:
    """What the events of one confirmed track need to remember."""

    event_id: str
    label: str
    first_t: float
    first_box: tuple[float, ...]
    best_score: float = 0.0
    zones: set[str] = field(default_factory=set)
    visited: list[str] = field(default_factory=list)
    anchor: tuple[float, float] = (0.0, 0.0)  # where the centre settled
    anchor_t: float = 0.0
    stationary: bool = False
    last_update_t: float = 0.0
    last_box: tuple[float, ...] = ()
    last_score: float = 0.0
    last_t: float = 0.0
    snapshot: str | None = None


def _centre(box: Sequence[float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0


def _rounded(box: Sequence[float]) -> list[float]:
    return [round(float(v), 1) for v in box]


class ObjectEvents:
    """Turns tracks and zone updates into object events (see the module docstring).

    ``labels`` maps class ids to names; ``run_id`` prefixes event ids (default: the start time in
    seconds); ``snapshot`` is called as ``snapshot(event_id, track)`` when a track reaches a new best
    score and returns the snapshot's URL path (or ``None``)."""

    def __init__(
        self,
        camera: str,
        labels: Sequence[str],
        settings: ObjectSettings | None = None,
        run_id: str | None = None,
        snapshot: Callable[[str, Any], str | None] | None = None,
    ) -> None:
        self.camera = camera
        self.labels = tuple(labels)
        self.settings = settings or ObjectSettings()
        self.run_id = run_id or str(int(time.time()))
        self.snapshot = snapshot
        self._live: dict[int, _Life] = {}

    @property
    def live(self) -> Mapping[int, _Life]:
        return self._live

    def moving(self, t: float | None = None, settle_s: float | None = None) -> bool:
        """Is any live object not stationary? With ``t`` and ``settle_s``: did one move (its centre beyond
        ``stationary_fraction`` of its size) in the ``settle_s`` seconds before ``t``? Motion gating keeps
        the model running while one did."""
        if t is None or settle_s is None:
            return any(not life.stationary for life in self._live.values())
        return any(not life.stationary and t - life.anchor_t < settle_s for life in self._live.values())

    def _label(self, class_id: int) -> str:
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)

    def _event(self, kind: str, track_id: int, life: _Life, t: float, **extra: Any) -> dict[str, Any]:
        return {
            "type": kind,
            "camera": self.camera,
            "id": life.event_id,
            "track_id": track_id,
            "label": life.label,
            "score": round(life.last_score, 4),
            "best_score": round(life.best_score, 4),
            "box": _rounded(life.last_box),
            "zones": sorted(life.zones),
            "stationary": life.stationary,
            "timestamp": round(t, 6),
            "time": iso_time(t),
            "snapshot": life.snapshot,
            **extra,
        }

    def _stationary(self, life: _Life, box: Sequence[float], t: float) -> bool:
        """Update ``life``'s anchor with the new box; whether its stationary state changed."""
        cx, cy = _centre(box)
        size = max(box[2] - box[0], box[3] - box[1], 1.0)
        limit = self.settings.stationary_fraction * size
        if abs(cx - life.anchor[0]) > limit or abs(cy - life.anchor[1]) > limit:
            life.anchor, life.anchor_t = (cx, cy), t
            changed, life.stationary = life.stationary, False
            return changed
        if not life.stationary and t - life.anchor_t >= self.settings.stationary_s:
            life.stationary = True
            return True
        return False

    def update(
        self, tracks: Iterable[Any], ended: Iterable[Any], zones: ZoneUpdate | None, t: float
    ) -> list[dict[str, Any]]:
        """The events of one processed frame captured at ``t``: ``tracks`` are the confirmed tracks seen
        in it, ``ended`` those that ended since the last frame, ``zones`` the zone tracker's update."""
        events: list[dict[str, Any]] = []
        entered: dict[int, list[Any]] = {}
        for zone_event in zones.events if zones is not None else ():
            entered.setdefault(zone_event.track_id, []).append(zone_event)
        for track in tracks:
            events += self._seen(track, entered.pop(track.id, []), t)
        for track_id, transitions in entered.items():  # exits of tracks not seen this frame
            life = self._live.get(track_id)
            if life is not None:
                events += self._zones(track_id, life, transitions, t)
        for track in ended:
            events += self.end(track.id, t, getattr(track, "end_reason", None) or "lost")
        return events

    def _seen(self, track: Any, transitions: list[Any], t: float) -> list[dict[str, Any]]:
        box, score = tuple(float(v) for v in track.box), float(track.score)
        life = self._live.get(track.id)
        born = life is None
        if life is None:
            life = self._live[track.id] = _Life(
                event_id=f"{self.run_id}-{track.id}",
                label=self._label(int(track.class_id)),
                first_t=float(getattr(track, "first_t", t)),
                first_box=tuple(float(v) for v in getattr(track, "first_box", box)),
                anchor=_centre(box),
                anchor_t=t,
                last_update_t=t,
            )
        life.last_box, life.last_score, life.last_t = box, score, t
        better = self._best(track, life, score)
        still_changed = self._stationary(life, box, t)
        zone_events = self._zones(track.id, life, transitions, t)
        if born:  # one alert per object; its first zone entries follow it
            return [self._event("new", track.id, life, t), *zone_events]
        due = t - life.last_update_t >= self.settings.update_interval_s
        if not (zone_events or better or still_changed or due):
            return []
        life.last_update_t = t
        reason = "zones" if zone_events else "score" if better else "stationary" if still_changed else "interval"
        return [self._event("update", track.id, life, t, reason=reason), *zone_events]

    def _best(self, track: Any, life: _Life, score: float) -> bool:
        """A new best score (by ``score_step``, or the first): take a snapshot; whether it rose."""
        if life.best_score and score < life.best_score + self.settings.score_step:
            life.best_score = max(life.best_score, score)
            return False
        life.best_score = max(life.best_score, score)
        if self.snapshot is not None:
            life.snapshot = self.snapshot(life.event_id, track) or life.snapshot
        return True

    def _zones(self, track_id: int, life: _Life, transitions: list[Any], t: float) -> list[dict[str, Any]]:
        out = []
        for z in transitions:
            if z.kind == "enter":
                life.zones.add(z.zone)
                if z.zone not in life.visited:
                    life.visited.append(z.zone)
            else:
                life.zones.discard(z.zone)
            out.append(self._event(z.kind, track_id, life, t, zone=z.zone))
        return out

    def end(self, track_id: int, t: float, reason: str) -> list[dict[str, Any]]:
        """The ``end`` event of a live object (none for an unknown id)."""
        life = self._live.pop(track_id, None)
        if life is None:
            return []
        return [
            self._event(
                "end",
                track_id,
                life,
                t,
                reason=reason,
                duration_s=round(life.last_t - life.first_t, 3),
                zones_visited=list(life.visited),
                first_box=_rounded(life.first_box),
                last_box=_rounded(life.last_box),
                first_time=iso_time(life.first_t),
            )
        ]

    def end_all(self, t: float, reason: str) -> list[dict[str, Any]]:
        """``end`` every live object (the source restarted, or the daemon stops)."""
        return [e for track_id in list(self._live) for e in self.end(track_id, t, reason)]

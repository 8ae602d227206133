"""Zones and ignore masks: polygons on the frame, which objects are in them, and who entered or left.

A zone is a named polygon (frame pixels, or 0..1 with ``normalized: true``); an object is in it when its
``anchor`` is: the bottom centre of its box (where it stands, the default), the box centre, or any part of
the box (``box``). A zone may count only some labels, and an object must be inside (or outside) for
``inertia`` consecutive updates before it enters (or leaves), so a box jittering on the edge does not
flicker in and out. An ignore mask is a polygon whose objects (by the same anchor rule) are dropped.

* :class:`ZoneSettings`, :class:`MaskSettings`, :class:`PolygonSettings`: the config models; use the list
  types :data:`ZoneList` / :data:`MaskList` / :data:`PolygonList` as config fields, so an error names the
  item: ``zones.1.polygon: zone 'drive': edges 0 (points 0-1) and 2 (points 2-3) cross``.
* :func:`check_frame`, :func:`check_labels`, :func:`check_zone_refs`: the checks that need the frame size,
  the model's labels, or the rest of the config.
* :class:`Zones`: the polygons in pixels of one frame size; :meth:`Zones.assign` (zones per object) and
  :meth:`Zones.ignored` (masked objects), vectorised over the objects.
* :class:`ZoneTracker`: fed ``{track_id: box}`` per update, yields ``enter``/``exit`` events and the count
  per zone and label (published as retained ``<prefix>/<camera>/<zone>/<label>``).
* :func:`draw_zones`, :func:`draw_tracks`: overlays for ``/snapshot.jpg`` and ``/stream.mjpg``.

Points are numbered from 0 in error messages, as are list items in key paths (``zones.0``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, BeforeValidator, Field, ValidationError, model_validator

from edgedet.edge.core.polygons import (
    in_area,
    polygon_problem,
)
from edgedet.edge.runtime.detector import Detection
from edgedet.edge.runtime.settings import (
    ConfigKeyError,
    Flag,
    Int,
    NonEmptyText,
    StrictModel,
    Text,
    error_line,
)

__all__ = [
    "ANCHORS",
    "ConfigCheckError",
    "MaskList",
    "MaskSettings",
    "PolygonList",
    "PolygonSettings",
    "ZoneEvent",
    "ZoneList",
    "ZoneSettings",
    "ZoneTracker",
    "ZoneUpdate",
    "Zones",
    "check_frame",
    "check_labels",
    "check_zone_refs",
    "validate_items",
    "validate_named_items",
]

ZONE_NAME = r"^[A-Za-z0-9_.-]+$"  # zone names are MQTT topic levels (like camera names)
ANCHORS = ("bottom_center", "center", "box")
Anchor = Literal["bottom_center", "center", "box"]
UNLABELLED = "object"  # the label of a track given without one

M = TypeVar("M", bound=BaseModel)


class ConfigCheckError(ConfigKeyError):
    """A config key that is wrong given something known later (the frame size, the model's labels).

    Raised inside a model validator it reads like any :class:`ConfigKeyError` (the key under the section);
    raised outside, ``str()`` is the whole line: ``zones.1.polygon: zone 'drive': point 2 ... is outside``.
    """

    def __str__(self) -> str:
        return f"{self.key}: {self.reason}" if self.key else self.reason


# --- validating list and mapping items so that errors name the item --------------------------------------


def validate_items(model_cls: type[M], raw: Any, what: str, *, mapping: bool = False) -> list[M] | dict[str, M]:
    """``raw`` (a YAML list, or a mapping when ``mapping``) validated item by item as ``model_cls``.

    The settings' error lines stop at list items and mapping keys (``zones: expected a list of ...``); this
    validates each item itself and raises a :class:`ConfigKeyError` whose key is ``<index or key>.<key>``,
    so the line reads ``zones.1.polygon: ...`` / ``filters.labels.person.min_area: ...``. ``null``: empty.
    """
    if raw is None:
        return {} if mapping else []
    if mapping and not isinstance(raw, Mapping):
        raise ValueError(f"expected a mapping of names to {what} settings (mappings of keys), got {raw!r}")
    if not mapping and (isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, Sequence)):
        raise ValueError(f"expected a list of {what} settings (mappings of keys), got {raw!r}")
    items = raw.items() if mapping else enumerate(raw)
    out: dict[str, M] = {}
    listed: list[M] = []
    for index, item in items:
        where = str(index)
        if mapping and (not isinstance(index, str) or not index.strip()):
            raise ValueError(f"expected non-empty names, got {index!r}")
        if isinstance(item, model_cls):
            value = item
        elif item is None and mapping:
            value = model_cls()
        elif not isinstance(item, Mapping):
            raise ConfigKeyError(where, f"expected a mapping of keys, got {item!r}")
        else:
            try:
                value = model_cls.model_validate(dict(item))
            except ValidationError as exc:
                err = exc.errors(include_url=False)[0]
                custom = [e for e in exc.errors(include_url=False) if e.get("type") == "value_error"]
                key, reason = error_line(model_cls, item, custom[0] if custom else err)
                raise ConfigKeyError(f"{where}.{key}" if key else where, reason) from None
        if mapping:
            out[index] = value
        else:
            listed.append(value)
    return out if mapping else listed


# --- config models ----------------------------------------------------------------------------------------


def _read_polygon(value: Any) -> Any:
    """A YAML list of ``[x, y]`` pairs as float tuples; a repeated closing point is dropped."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise ValueError(f"expected a list of [x, y] points, got {value!r}")
    points: list[tuple[float, float]] = []
    for i, point in enumerate(value):
        pair = point if isinstance(point, Sequence) and not isinstance(point, (str, bytes)) else None
        ok = pair is not None and len(pair) == 2
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in pair)
        if not ok:
            raise ValueError(f"point {i}: expected [x, y] (two finite numbers), got {point!r}")
        points.append((float(pair[0]), float(pair[1])))
    if len(points) > 3 and points[0] == points[-1]:
        points.pop()  # closed the GeoJSON way: the first point again at the end
    if len(points) < 3:
        raise ValueError(f"expected at least 3 points (a polygon), got {len(points)}")
    return points


def _read_labels(value: Any) -> Any:
    if value is not None and isinstance(value, list):
        if not value:
            raise ValueError("expected at least one label, or null (all labels)")
        seen = [v for i, v in enumerate(value) if v in value[:i]]
        if seen:
            raise ValueError(f"label {seen[0]!r} is listed twice")
    return value


Polygon = Annotated[list[tuple[float, float]], BeforeValidator(_read_polygon)]
Labels = Annotated[list[NonEmptyText] | None, BeforeValidator(_read_labels)]


class PolygonSettings(StrictModel):
    """A polygon on the frame (a motion mask; the base of zones and ignore masks)."""

    name: NonEmptyText | None = Field(None, description="a name for messages and drawings (optional)")
    polygon: Polygon = Field(
        description="at least 3 `[x, y]` points, in frame pixels (or 0..1 with `normalized`); edges must not cross"
    )
    normalized: Flag = Field(False, description="`true`: the points are fractions 0..1 of the frame's width/height")

    @property
    def what(self) -> str:
        """How messages name this polygon: ``zone 'drive'``, ``mask 'tv'``, ``polygon``."""
        kind = {ZoneSettings: "zone", MaskSettings: "mask"}.get(type(self), "polygon")
        return f"{kind} {self.name!r}" if self.name else kind

    @model_validator(mode="after")
    def _shape(self) -> PolygonSettings:
        pts = np.asarray(self.polygon, dtype=np.float64)
        if self.normalized:
            out = np.flatnonzero(np.any((pts < 0) | (pts > 1), axis=1))
            if len(out):
                x, y = self.polygon[out[0]]
                raise ConfigKeyError("polygon", f"point {out[0]} ({x:g}, {y:g}) is outside 0..1 (normalized: true)")
        else:
            out = np.flatnonzero(np.any(pts < 0, axis=1))
            if len(out):
                x, y = self.polygon[out[0]]
                raise ConfigKeyError("polygon", f"point {out[0]} ({x:g}, {y:g}) is outside the frame (negative)")
        problem = polygon_problem(pts)
        if problem:
            raise ConfigKeyError("polygon", f"not a simple polygon: {problem}")
        return self

    def points(self, width: int, height: int) -> np.ndarray:
        """The polygon in pixels of a ``width`` x ``height`` frame, ``[M, 2]`` float64."""
        pts = np.asarray(self.polygon, dtype=np.float64)
        return pts * np.array([width, height], dtype=np.float64) if self.normalized else pts

    def check_frame(self, width: int, height: int) -> None:
        """Raise a :class:`ConfigCheckError` (key ``polygon``, naming this polygon) if a point is off the frame."""
        if self.normalized:
            return
        pts = np.asarray(self.polygon, dtype=np.float64)
        out = np.flatnonzero((pts[:, 0] > width) | (pts[:, 1] > height))
        if len(out):
            x, y = self.polygon[out[0]]
            raise ConfigCheckError(
                "polygon",
                f"{self.what}: point {out[0]} ({x:g}, {y:g}) is outside the {width}x{height} frame "
                f"(x in 0..{width}, y in 0..{height}; or give fractions with normalized: true)",
            )


class MaskSettings(PolygonSettings):
    """An ignore mask: detections whose anchor is inside are dropped (a poster, a TV, a parked car)."""

    anchor: Anchor = Field(
        "bottom_center",
        description="the box point that must be inside: `bottom_center`, `center`, or `box` (any overlap)",
    )
    labels: Labels = Field(None, description="only drop these labels (null: all)")


class ZoneSettings(PolygonSettings):
    """A named zone: objects entering and leaving it are events, how many are in it is published."""

    name: Annotated[Text, Field(pattern=ZONE_NAME)] = Field(
        description="the zone's name (letters, digits, `_.-`): the events' `zone` and an MQTT topic level"
    )
    anchor: Anchor = Field(
        "bottom_center",
        description="where an object must be to be in the zone: `bottom_center` of its box (where it stands), "
        "`center`, or `box` (any overlap)",
    )
    labels: Labels = Field(None, description="only these labels count in the zone (null: all)")
    inertia: Annotated[Int, Field(ge=1, le=1000)] = Field(
        3, description="consecutive updates inside before an object enters (and outside before it leaves)"
    )


def validate_named_items(model_cls: type[M], raw: Any, what: str) -> list[M]:
    """:func:`validate_items` on a list whose items' ``name`` must be unique (a duplicate is an error
    naming ``<index>.name`` and the item it repeats)."""
    items = validate_items(model_cls, raw, what)
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        name = item.name  # type: ignore[attr-defined]
        if name in first:
            raise ConfigKeyError(f"{i}.name", f"duplicate {what} name {name!r} (also item {first[name]})")
        first[name] = i
    return items  # type: ignore[return-value]


def _zone_list(raw: Any) -> Any:
    return validate_named_items(ZoneSettings, raw, "zone")


ZoneList = Annotated[list[ZoneSettings], BeforeValidator(_zone_list)]
"""A config field type: a list of zones, errors naming the item (``zones.1.polygon``); unique names."""
MaskList = Annotated[list[MaskSettings], BeforeValidator(lambda raw: validate_items(MaskSettings, raw, "mask"))]
"""A config field type: a list of ignore masks, errors naming the item (``masks.0.polygon``)."""
PolygonList = Annotated[
    list[PolygonSettings], BeforeValidator(lambda raw: validate_items(PolygonSettings, raw, "polygon"))
]
"""A config field type: a list of polygons (motion masks), errors naming the item."""


# --- the checks that need more than one key ---------------------------------------------------------------


def check_frame(items: Iterable[PolygonSettings], width: int, height: int, key: str = "zones") -> None:
    """Raise a :class:`ConfigCheckError` (``zones.1.polygon: zone 'x': point ...``) if a polygon leaves the
    ``width`` x ``height`` frame. ``key``: where the list sits in the config."""
    for i, item in enumerate(items):
        try:
            item.check_frame(width, height)
        except ConfigCheckError as exc:
            raise ConfigCheckError(f"{key}.{i}.{exc.key}", exc.reason) from None


def check_labels(items: Iterable[ZoneSettings | MaskSettings], model_labels: Iterable[str], key: str = "zones") -> None:
    """Raise a :class:`ConfigCheckError` if a zone or mask's ``labels`` names a label the model lacks."""
    known = list(model_labels)
    for i, item in enumerate(items):
        for label in item.labels or ():
            if label not in known:
                raise ConfigCheckError(
                    f"{key}.{i}.labels",
                    f"{item.what}: unknown label {label!r} (the model's labels: {', '.join(known) or 'none'})",
                )


def check_zone_refs(zones: Iterable[ZoneSettings], refs: Mapping[str, str | Iterable[str] | None]) -> None:
    """Raise a :class:`ConfigKeyError` if a key in ``refs`` names a zone that is not defined.

    ``refs`` maps key paths to the zone name(s) they give, e.g. ``{"mqtt.zones": ["drive"], "x.zone": "yard"}``
    (``None``: not given). Call it from the daemon config's model validator: the error then reads
    ``camera.yaml: mqtt.zones: unknown zone 'yrad' (zones: drive, yard)``.
    """
    names = [z.name for z in zones]
    for key, value in refs.items():
        given = [value] if isinstance(value, str) else list(value or ())
        for name in given:
            if name not in names:
                raise ConfigCheckError(key, f"unknown zone {name!r} (zones: {', '.join(names) or 'none defined'})")


# --- zones of one frame size --------------------------------------------------------------------------------


def _boxes_of(boxes: Any) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes: expected shape [N, 4], got {list(arr.shape)}")
    return arr


def _label_mask(allowed: Sequence[str] | None, labels: Sequence[str | None] | None, n: int) -> np.ndarray:
    """Which objects a zone or mask with label filter ``allowed`` considers (unknown labels: only no filter)."""
    if allowed is None:
        return np.ones(n, dtype=bool)
    if labels is None:
        return np.zeros(n, dtype=bool)
    allowed_set = set(allowed)
    return np.fromiter((label in allowed_set for label in labels), dtype=bool, count=n)


class Zones:
    """Zones and ignore masks in pixels of a ``width`` x ``height`` frame (checked to lie on it).

    Build it again if the frame size changes (a reconnect at another resolution).
    """

    def __init__(
        self,
        zones: Sequence[ZoneSettings] = (),
        masks: Sequence[MaskSettings] = (),
        *,
        width: int,
        height: int,
        key: str = "zones",
        mask_key: str = "masks",
    ) -> None:
        check_frame(zones, width, height, key)
        check_frame(masks, width, height, mask_key)
        self.zones = tuple(zones)
        self.masks = tuple(masks)
        self.width, self.height = int(width), int(height)
        self.names = tuple(z.name for z in self.zones)
        self.polygons = tuple(z.points(width, height) for z in self.zones)
        self.mask_polygons = tuple(m.points(width, height) for m in self.masks)
        self._overlay: dict[tuple[int, int], np.ndarray] = {}

    def membership(self, boxes: Any, labels: Sequence[str | None] | None = None) -> np.ndarray:
        """``[N, Z]`` bools: object n is in zone z (its anchor, its label among the zone's ``labels``).

        ``labels=None``: labels unknown, so zones with a ``labels`` filter count nobody.
        """
        b = _boxes_of(boxes)
        out = np.zeros((len(b), len(self.zones)), dtype=bool)
        for z, (zone, poly) in enumerate(zip(self.zones, self.polygons, strict=True)):
            considered = _label_mask(zone.labels, labels, len(b))
            if considered.any():
                out[considered, z] = in_area(b[considered], poly, zone.anchor)
        return out

    def assign(self, boxes: Any, labels: Sequence[str | None] | None = None) -> list[set[str]]:
        """The names of the zones each corner box ``[N, 4]`` (frame pixels) is in, one set per object."""
        member = self.membership(boxes, labels)
        return [{self.names[z] for z in np.flatnonzero(row)} for row in member]

    def ignored(self, boxes: Any, labels: Sequence[str | None] | None = None) -> np.ndarray:
        """``[N]`` bools: the object is inside an ignore mask (by the mask's anchor and labels)."""
        b = _boxes_of(boxes)
        out = np.zeros(len(b), dtype=bool)
        for mask, poly in zip(self.masks, self.mask_polygons, strict=True):
            considered = _label_mask(mask.labels, labels, len(b)) & ~out
            if considered.any():
                out[considered] = in_area(b[considered], poly, mask.anchor)
        return out

    def drop_masked(self, detections: Sequence[Detection]) -> list[Detection]:
        """The detections not inside an ignore mask."""
        if not self.masks or not detections:
            return list(detections)
        drop = self.ignored([d.box for d in detections], [d.label for d in detections])
        return [d for d, gone in zip(detections, drop, strict=True) if not gone]


# --- enter / exit with inertia, counts per zone and label -------------------------------------------------


@dataclass(frozen=True)
class ZoneEvent:
    """Track ``track_id`` (``label``) entered or left ``zone``; ``lost``: it left because the track ended."""

    kind: Literal["enter", "exit"]
    zone: str
    track_id: int
    label: str
    lost: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.kind,
            "zone": self.zone,
            "track_id": self.track_id,
            "label": self.label,
            "lost": self.lost,
        }


@dataclass(frozen=True)
class ZoneUpdate:
    """What one :meth:`ZoneTracker.update` changed: events, all counts, and the counts that changed."""

    events: list[ZoneEvent]
    counts: dict[str, dict[str, int]]  # zone -> label -> objects in it now (0 for labels seen before)
    changed: dict[tuple[str, str], int] = field(default_factory=dict)  # (zone, label) -> new count: publish these


@dataclass
class _TrackState:
    label: str
    inside: np.ndarray  # [Z] bools: entered (after inertia)
    streak: np.ndarray  # [Z] ints: consecutive updates whose raw membership disagrees with ``inside``


def _label_of(value: Any, class_names: Sequence[str] | None) -> str | None:
    """The label of a detection or track: ``.label``, else ``class_names[.class_id]``, else ``None``."""
    label = getattr(value, "label", None)
    if label is None and class_names is not None:
        class_id = getattr(value, "class_id", None)
        if class_id is not None and 0 <= int(class_id) < len(class_names):
            label = class_names[int(class_id)]
    return label


def _track_fields(value: Any, class_names: Sequence[str] | None) -> tuple[Any, str | None]:
    """A tracks-mapping value as ``(box, label)``: a detection or track object (``.box``, ``.label`` or
    ``.class_id``), or a bare box."""
    box = getattr(value, "box", None)
    if box is not None:
        return box, _label_of(value, class_names)
    return value, None


class ZoneTracker:
    """Enter/exit events with inertia and the number of objects per zone and label, fed tracks per update.

    ``update({track_id: box_or_track}, labels)`` once per processed frame; a value is a corner box in frame
    pixels or anything with ``.box`` and ``.label`` or ``.class_id`` (a :class:`Detection`, a tracker's track;
    ``class_names`` turns class ids into labels). ``labels`` (``{track_id: label}``) overrides. A track must
    be inside a zone for the zone's ``inertia`` consecutive updates to enter it, and outside as long to
    leave; a track missing from an update has ended: it leaves its zones at once (``lost=True``).
    """

    def __init__(self, zones: Zones, class_names: Sequence[str] | None = None) -> None:
        self.zones = zones  # may be replaced by a Zones with the same zones for another frame size
        self._tracks: dict[int, _TrackState] = {}
        self._inertia = np.array([z.inertia for z in zones.zones], dtype=np.int64)
        self._labels: list[dict[str, None]] = [dict.fromkeys(z.labels or ()) for z in zones.zones]
        self._published: dict[tuple[str, str], int] = {}
        self.class_names = class_names

    def update(self, tracks: Mapping[int, Any], labels: Mapping[int, str] | None = None) -> ZoneUpdate:
        """Feed this update's live tracks; returns the events and counts (see :class:`ZoneUpdate`)."""
        ids = list(tracks)
        fields = [_track_fields(tracks[t], self.class_names) for t in ids]
        track_labels = [
            (labels or {}).get(t) or (label if label is not None else UNLABELLED)
            for t, (_, label) in zip(ids, fields, strict=True)
        ]
        boxes = _boxes_of([box for box, _ in fields]) if ids else np.zeros((0, 4))
        raw = self.zones.membership(boxes, track_labels)
        events: list[ZoneEvent] = []
        names = self.zones.names
        for gone in [t for t in self._tracks if t not in tracks]:
            state = self._tracks.pop(gone)
            events += [ZoneEvent("exit", names[z], gone, state.label, True) for z in np.flatnonzero(state.inside)]
        zero = np.zeros(len(names), dtype=np.int64)
        for n, track_id in enumerate(ids):
            state = self._tracks.get(track_id)
            if state is None:
                state = _TrackState(track_labels[n], np.zeros(len(names), dtype=bool), zero.copy())
                self._tracks[track_id] = state
            state.label = track_labels[n]
            differs = raw[n] != state.inside
            state.streak = np.where(differs, state.streak + 1, 0)
            flip = differs & (state.streak >= self._inertia)
            for z in np.flatnonzero(flip):
                kind: Literal["enter", "exit"] = "exit" if state.inside[z] else "enter"
                events.append(ZoneEvent(kind, names[z], int(track_id), state.label))
            state.inside = state.inside ^ flip
            state.streak[flip] = 0
        counts = self.counts()
        flat = {(zone, label): n for zone, per in counts.items() for label, n in per.items()}
        changed = {k: v for k, v in flat.items() if self._published.get(k) != v}
        self._published = flat
        return ZoneUpdate(events, counts, changed)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{zone: {label: objects in it}}``: the zone's ``labels`` and every label seen in it (0 when gone)."""
        for state in self._tracks.values():
            for z in np.flatnonzero(state.inside):
                self._labels[z].setdefault(state.label)
        out: dict[str, dict[str, int]] = {}
        for z, name in enumerate(self.zones.names):
            per = dict.fromkeys(self._labels[z], 0)
            for state in self._tracks.values():
                if state.inside[z]:
                    per[state.label] += 1
            out[name] = per
        return out

    def zones_of(self, track_id: int) -> set[str]:
        """The zones ``track_id`` is in now (after inertia)."""
        state = self._tracks.get(track_id)
        if state is None:
            return set()
        return {self.zones.names[z] for z in np.flatnonzero(state.inside)}

    def reset(self) -> ZoneUpdate:
        """Every track leaves (``lost``): e.g. when the source restarts."""
        return self.update({})

"""What ``/snapshot.jpg``, the stream and the snapshots show: zones outlined with their counts, ignore masks
dimmed and hatched, tracks with ``label #id score``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from edgedet.edge.camera.zones import Zones, _label_of
from edgedet.edge.runtime.draw import PALETTE

__all__ = ["draw_tracks", "draw_zones"]


_MASK_COLOR = (128, 128, 128)


def _label(out: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int]) -> None:
    """``text`` on a filled ``color`` box, above (x, y) if there is room, else below (draw.py's style)."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    ty = y - 4 if y - th - base - 4 >= 0 else y + th + 4
    cv2.rectangle(out, (x, ty - th - 2), (x + tw + 2, ty + base - 2), color, -1)
    cv2.putText(out, text, (x + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)


def _mask_overlay(zones: Zones, shape: tuple[int, int]) -> np.ndarray:
    """The masks rasterised for frame ``shape`` (h, w): 0 outside, 1 inside, 2 on a hatch line (cached)."""
    cached = zones._overlay.get(shape)
    if cached is None:
        h, w = shape
        inside = np.zeros((h, w), dtype=np.uint8)
        for poly in zones.mask_polygons:
            cv2.fillPoly(inside, [np.round(poly).astype(np.int32)], 1)
        yy, xx = np.mgrid[0:h, 0:w]
        hatch = ((xx + yy) % 12) < 2
        cached = np.where(inside.astype(bool) & hatch, 2, inside).astype(np.uint8)
        zones._overlay[shape] = cached
    return cached


def draw_zones(
    frame: np.ndarray, zones: Zones, counts: Mapping[str, Mapping[str, int]] | None = None, *, copy: bool = True
) -> np.ndarray:
    """The BGR ``frame`` with the zones outlined (name, and the counts if given) and the masks dimmed and
    hatched; a copy unless ``copy=False``."""
    out = frame.copy() if copy else frame
    thickness = max(1, round(min(out.shape[:2]) / 300))
    if zones.masks:
        overlay = _mask_overlay(zones, out.shape[:2])
        inside = overlay > 0
        out[inside] = out[inside] // 2
        out[overlay == 2] = _MASK_COLOR
        for poly in zones.mask_polygons:
            cv2.polylines(out, [np.round(poly).astype(np.int32)], True, _MASK_COLOR, thickness, cv2.LINE_AA)
    for z, (zone, poly) in enumerate(zip(zones.zones, zones.polygons, strict=True)):
        color = PALETTE[(z + 3) % len(PALETTE)]
        pts = np.round(poly).astype(np.int32)
        cv2.polylines(out, [pts], True, color, thickness, cv2.LINE_AA)
        per = (counts or {}).get(zone.name) or {}
        text = zone.name + "".join(f" {label} {n}" for label, n in per.items() if n)
        top = int(np.argmin(pts[:, 1] * 100000 + pts[:, 0]))
        _label(out, text, int(pts[top, 0]), int(pts[top, 1]), color)
    return out


def draw_tracks(
    frame: np.ndarray,
    tracks: Mapping[int, Any] | Iterable[Any],
    class_names: Sequence[str] | None = None,
    *,
    copy: bool = True,
) -> np.ndarray:
    """The BGR ``frame`` with each track's box and ``label #id score`` (colour by class), like
    :func:`edgedet.edge.runtime.draw.draw_detections`; a copy unless ``copy=False``.

    ``tracks``: ``{track_id: detection}``, ``(track_id, detection)`` pairs, or objects with ``.id``; each
    with ``.box``, ``.score``, ``.class_id`` and ``.label`` (or a label from ``class_names``).
    """
    out = frame.copy() if copy else frame
    thickness = max(1, round(min(out.shape[:2]) / 300))
    items = (
        tracks.items() if isinstance(tracks, Mapping) else (t if isinstance(t, tuple) else (t.id, t) for t in tracks)
    )
    for track_id, det in items:
        class_id = int(getattr(det, "class_id", 0))
        color = PALETTE[class_id % len(PALETTE)]
        x1, y1, x2, y2 = (round(v) for v in det.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        label = _label_of(det, class_names) or str(class_id)
        _label(out, f"{label} #{track_id} {float(det.score):.2f}", x1, y1, color)
    return out

"""Polygons, vectorised in numpy: simple-polygon checks (segment intersection), points in a polygon (ray
casting), boxes overlapping a polygon, and the anchor point of a box (``bottom_center``, ``center``)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "anchor_points",
    "box_overlaps_polygon",
    "in_area",
    "points_in_polygon",
    "polygon_problem",
    "segments_intersect",
]


def _orient(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Twice the signed area of (a, b, c): > 0 counter-clockwise (y up), 0 collinear."""
    return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])


def _on_segment(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Whether ``c`` (known collinear with a-b) lies on the closed segment a-b."""
    return (
        (np.minimum(a[..., 0], b[..., 0]) <= c[..., 0])
        & (c[..., 0] <= np.maximum(a[..., 0], b[..., 0]))
        & (np.minimum(a[..., 1], b[..., 1]) <= c[..., 1])
        & (c[..., 1] <= np.maximum(a[..., 1], b[..., 1]))
    )


def segments_intersect(p1: Any, p2: Any, q1: Any, q2: Any) -> np.ndarray:
    """Whether closed segments p1-p2 and q1-q2 share a point (crossing, touching or overlapping).

    Arrays of points ``[..., 2]`` that broadcast together; exact for integer coordinates.
    """
    p1, p2, q1, q2 = (np.asarray(v, dtype=np.float64) for v in (p1, p2, q1, q2))
    d1, d2 = _orient(q1, q2, p1), _orient(q1, q2, p2)
    d3, d4 = _orient(p1, p2, q1), _orient(p1, p2, q2)
    proper = (((d1 > 0) & (d2 < 0)) | ((d1 < 0) & (d2 > 0))) & (((d3 > 0) & (d4 < 0)) | ((d3 < 0) & (d4 > 0)))
    touch = (
        ((d1 == 0) & _on_segment(q1, q2, p1))
        | ((d2 == 0) & _on_segment(q1, q2, p2))
        | ((d3 == 0) & _on_segment(p1, p2, q1))
        | ((d4 == 0) & _on_segment(p1, p2, q2))
    )
    return proper | touch


def polygon_problem(points: Any) -> str | None:
    """Why ``points`` ``[M, 2]`` (M >= 3, implicitly closed) is no simple polygon, or ``None`` if it is one.

    Rejected: a point repeating the one before it, two edges that cross or touch (other than neighbours at
    their shared point), a neighbour folding back onto the edge before it, and zero area.
    """
    pts = np.asarray(points, dtype=np.float64)
    n = len(pts)
    nxt = np.roll(pts, -1, axis=0)
    same = np.all(pts == nxt, axis=1)
    if same.any():
        i = int(np.argmax(same))
        return f"point {(i + 1) % n} repeats point {i}"
    a, b = pts, nxt  # edge i runs from point i to point i+1
    if np.all(_orient(pts[0], pts[1], pts[2:]) == 0):
        return "the points lie on one line (zero area)"
    hits = segments_intersect(a[:, None], b[:, None], a[None], b[None])
    idx = np.arange(n)
    gap = (idx[None, :] - idx[:, None]) % n
    far = (gap > 1) & (gap < n - 1)  # not the same edge, not neighbours
    bad = np.argwhere(np.triu(hits & far))
    if len(bad):
        i, j = (int(v) for v in bad[0])
        return f"edges {i} (points {i}-{(i + 1) % n}) and {j} (points {j}-{(j + 1) % n}) cross or touch"
    c = np.roll(pts, -2, axis=0)  # edge i+1 runs from b[i] to c[i]
    folds = (_orient(a, b, c) == 0) & (np.sum((b - a) * (c - b), axis=1) < 0)
    if folds.any():
        i = int(np.argmax(folds))
        return f"edge {(i + 1) % n} (points {(i + 1) % n}-{(i + 2) % n}) folds back onto edge {i}"
    area = 0.5 * abs(float(np.sum(a[:, 0] * b[:, 1] - b[:, 0] * a[:, 1])))
    if area == 0:
        return "the points lie on one line (zero area)"
    return None


def points_in_polygon(points: Any, polygon: Any) -> np.ndarray:
    """Whether each of ``points [N, 2]`` is inside ``polygon [M, 2]`` (even-odd ray casting), ``[N]`` bools.

    A point exactly on an edge may fall either side (half-open rule: the left and bottom edges are in, in
    image coordinates with y down the top and left edges); anything off the boundary is exact.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0 or len(poly) < 3:
        return np.zeros(len(pts), dtype=bool)
    x, y = pts[:, :1], pts[:, 1:]
    x1, y1 = poly[:, 0], poly[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    spans = (y1 > y) != (y2 > y)  # [N, M]: the edge crosses the horizontal line through the point
    dy = np.where(y2 == y1, 1.0, y2 - y1)
    x_cross = x1 + (y - y1) * (x2 - x1) / dy
    return (np.count_nonzero(spans & (x < x_cross), axis=1) % 2) == 1


def box_overlaps_polygon(boxes: Any, polygon: Any) -> np.ndarray:
    """Whether each corner box ``[N, 4]`` overlaps (or touches) ``polygon [M, 2]``, ``[N]`` bools.

    True when a box corner is inside the polygon (covers a box inside the polygon) or a polygon edge
    meets the box (Liang-Barsky clipping of every edge against every box, vectorised).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    if len(b) == 0 or len(poly) < 3:
        return np.zeros(len(b), dtype=bool)
    corners = b[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 2)
    inside = points_in_polygon(corners, poly).reshape(-1, 4).any(axis=1)
    x0, y0 = poly[:, 0], poly[:, 1]
    dx, dy = np.roll(x0, -1) - x0, np.roll(y0, -1) - y0
    xmin, ymin, xmax, ymax = (b[:, k : k + 1] for k in range(4))
    p = np.stack(np.broadcast_arrays(-dx[None], dx[None], -dy[None], dy[None]))  # [4, 1, M]
    q = np.stack(np.broadcast_arrays(x0 - xmin, xmax - x0, y0 - ymin, ymax - y0))  # [4, N, M]
    p = np.broadcast_to(p, q.shape)
    parallel_out = np.any((p == 0) & (q < 0), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p != 0, q / np.where(p == 0, 1.0, p), 0.0)
    t0 = np.max(np.where(p < 0, t, -np.inf), axis=0, initial=-np.inf)
    t1 = np.min(np.where(p > 0, t, np.inf), axis=0, initial=np.inf)
    t0, t1 = np.maximum(t0, 0.0), np.minimum(t1, 1.0)
    crosses = ~parallel_out & (t0 <= t1)
    return inside | crosses.any(axis=1)


def anchor_points(boxes: Any, anchor: str) -> np.ndarray:
    """The anchor point of each corner box ``[N, 4]``: ``bottom_center`` (cx, y2) or ``center`` (cx, cy)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cx = (b[:, 0] + b[:, 2]) / 2
    cy = b[:, 3] if anchor == "bottom_center" else (b[:, 1] + b[:, 3]) / 2
    return np.stack([cx, cy], axis=1)


def in_area(boxes: np.ndarray, polygon: np.ndarray, anchor: str) -> np.ndarray:
    if anchor == "box":
        return box_overlaps_polygon(boxes, polygon)
    return points_in_polygon(anchor_points(boxes, anchor), polygon)

"""One synthetic detection scene: labelled shapes and unlabelled clutter over a textured background.

Objects (one class per shape name) vary in size (about 12 px to 60% of the shorter image side), aspect
ratio, rotation, colour and texture (solid, gradient, stripes, noise); they may be cut by the image
border or partly hidden by each other and by distractors that are not classes (lines, blobs, rings,
arcs, scribbles). Shapes are drawn without anti-aliasing, so each box is the exact tight box of the
object's visible pixels: pixel columns ``x1 .. x2 - 1`` and rows ``y1 .. y2 - 1``. Objects less than
half visible are left out of the scene (never drawn unlabelled).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["SHAPES", "TEXTURES", "SceneObject", "SyntheticScene", "distinct_colour", "render_scene", "shape_polygon"]

SHAPES = ("circle", "square", "triangle", "star", "cross", "hexagon")
TEXTURES = ("solid", "gradient", "stripes", "noise")
_SHIFT = 4  # sub-pixel bits for cv2.fillPoly
_MIN_VISIBLE = 0.5  # fraction of the shape's area that must show
_MIN_SIDE = 6  # visible box side, pixels


@dataclass(frozen=True)
class SceneObject:
    """A labelled object: class index, tight box, texture, main BGR colour, visible fraction of its area,
    and whether another item hides part of it (being cut by the image border does not count)."""

    label: int
    box: tuple[int, int, int, int]
    texture: str
    colour: tuple[int, int, int]
    visible: float
    occluded: bool


@dataclass(frozen=True)
class SyntheticScene:
    """The rendered ``HxWx3`` uint8 BGR image, ``[M, 4]`` float32 boxes, ``[M]`` int64 labels, and details."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    objects: tuple[SceneObject, ...]


def shape_polygon(shape: str, rng: np.random.Generator) -> np.ndarray:
    """Outline of a shape centred on 0 within the unit square ``[-1, 1]^2``, as ``[K, 2]`` float points."""
    if shape == "circle":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if shape == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    if shape == "triangle":
        t = np.deg2rad(np.array([-90.0, 30.0, 150.0]) + rng.uniform(-12, 12, 3))
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if shape == "star":
        t = np.linspace(-np.pi / 2, 1.5 * np.pi, 10, endpoint=False)
        radius = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
        return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)
    if shape == "cross":
        a = rng.uniform(0.25, 0.4)
        pts = [
            (-a, -1),
            (a, -1),
            (a, -a),
            (1, -a),
            (1, a),
            (a, a),
            (a, 1),
            (-a, 1),
            (-a, a),
            (-1, a),
            (-1, -a),
            (-a, -a),
        ]
        return np.array(pts, dtype=np.float64)
    if shape == "hexagon":
        t = np.linspace(0, 2 * np.pi, 6, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    raise ValueError(f"unknown synthetic shape {shape!r}: expected one of {SHAPES}")


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, 3).astype(np.float32)


def distinct_colour(rng: np.random.Generator, against: np.ndarray, min_l1: float = 120.0) -> np.ndarray:
    """A random BGR colour at least ``min_l1`` (sum of channel differences) from ``against`` (20 tries)."""
    colour = _colour(rng)
    for _ in range(20):
        if np.abs(colour - against).sum() >= min_l1:
            break
        colour = _colour(rng)
    return colour


def _texture(rng: np.random.Generator, kind: str, shape: tuple[int, int], colour: np.ndarray) -> np.ndarray:
    """A ``h x w x 3`` float32 patch of one texture around a main colour."""
    h, w = shape
    if kind == "solid":
        return np.broadcast_to(colour, (h, w, 3))
    second = np.clip(colour + rng.uniform(-110, 110, 3), 0, 255)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    proj = xs * np.cos(angle) + ys * np.sin(angle)
    if kind == "gradient":
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
        return colour + (second - colour) * t[..., None]
    if kind == "stripes":
        half = rng.uniform(1.5, 6.0)
        t = (np.floor(proj / half) % 2)[..., None]
        return colour + (second - colour) * t
    if kind == "noise":
        return colour + rng.standard_normal((h, w, 1), dtype=np.float32) * np.float32(rng.uniform(8, 30))
    raise ValueError(f"unknown texture {kind!r}: expected one of {TEXTURES}")


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:  # linear gradient
        image = _texture(rng, "gradient", (height, width), _colour(rng)).copy()
    elif kind == 1:  # smooth colour noise
        grid = rng.uniform(0, 255, (int(rng.integers(2, 7)), int(rng.integers(2, 9)), 3)).astype(np.float32)
        image = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    else:  # flat
        image = np.empty((height, width, 3), np.float32)
        image[:] = _colour(rng)
    n_panels = int(rng.integers(0, 8))
    for _ in range(n_panels):  # large, faint, soft-edged panels: clutter that never looks like an object
        w, h = int(rng.uniform(0.25, 1.0) * width), int(rng.uniform(0.25, 1.0) * height)
        x1, y1 = int(rng.integers(-w // 2, width - w // 2)), int(rng.integers(-h // 2, height - h // 2))
        region = (slice(max(y1, 0), max(y1 + h, 0)), slice(max(x1, 0), max(x1 + w, 0)))
        alpha = rng.uniform(0.15, 0.5)
        image[region] = (1 - alpha) * image[region] + alpha * _colour(rng)
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(0, 14))
    if n_panels or rng.random() < 0.5:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(1.0, 2.5) if n_panels else rng.uniform(0.5, 1.5))
    return np.clip(image, 0, 255)


def _fill(poly: np.ndarray, width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(poly * (1 << _SHIFT)).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
    return mask.astype(bool)


def _object(rng: np.random.Generator, shape: str, width: int, height: int, min_size: float) -> tuple[np.ndarray, float]:
    """Mask and true (unclipped) area of one randomly sized, stretched, rotated and placed shape."""
    short = min(width, height)
    size = float(np.exp(rng.uniform(np.log(min_size), np.log(max(0.6 * short, min_size + 1)))))
    aspect = float(np.exp(rng.uniform(np.log(0.6), np.log(1.67))))
    half = np.array([size * np.sqrt(aspect), size / np.sqrt(aspect)]) / 2
    half *= size / 2 / half.max()  # the longer side is `size`
    angle = rng.uniform(0, 2 * np.pi) if shape != "square" or rng.random() < 0.7 else 0.0
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    poly = (shape_polygon(shape, rng) * half) @ rot.T
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    extent = hi - lo
    centre = []
    for axis, limit in enumerate((width, height)):
        low, high = -lo[axis] - 0.3 * extent[axis], limit - hi[axis] + 0.3 * extent[axis]
        centre.append(rng.uniform(low, high) if high > low else limit / 2)
    poly = poly + np.array(centre)
    area = float(cv2.contourArea(poly.astype(np.float32)))
    return _fill(poly, width, height), max(area, 1.0)


def _distractor(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Mask of one unlabelled clutter item: a line, blob, ring, arc or scribble."""
    mask = np.zeros((height, width), np.uint8)
    short = min(width, height)
    kind = rng.integers(5)
    point = (int(rng.integers(0, width)), int(rng.integers(0, height)))
    if kind == 0:
        end = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.line(mask, point, end, 1, int(rng.integers(1, 5)))
    elif kind == 1:
        axes = (int(rng.integers(2, 5)), int(rng.integers(2, 5)))
        cv2.ellipse(mask, point, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif kind in (2, 3):
        radius = int(rng.integers(6, max(short // 4, 7)))
        axes = (radius, int(radius * rng.uniform(0.6, 1.0)))
        thickness = max(1, int(radius * rng.uniform(0.08, 0.2)))
        start = 0.0 if kind == 2 else float(rng.uniform(0, 360))
        span = 360.0 if kind == 2 else float(rng.uniform(60, 270))
        cv2.ellipse(mask, point, axes, float(rng.uniform(0, 180)), start, start + span, 1, thickness)
    else:
        pts = np.array(point) + rng.normal(0, short / 8, (int(rng.integers(3, 7)), 2))
        cv2.polylines(mask, [pts.astype(np.int32)], False, 1, int(rng.integers(1, 4)))
    return mask.astype(bool)


def _owners(masks: list[np.ndarray], width: int, height: int) -> np.ndarray:
    owner = np.full((height, width), -1, np.int32)
    for i, mask in enumerate(masks):
        owner[mask] = i
    return owner


def render_scene(
    rng: np.random.Generator,
    size: tuple[int, int] = (320, 240),
    classes: Sequence[str] = ("circle", "square", "triangle"),
    *,
    max_objects: int = 6,
    max_distractors: int = 8,
    min_object_size: float = 12.0,
) -> SyntheticScene:
    """Render one scene of ``size = (width, height)`` with up to ``max_objects`` objects (about 4% of scenes
    have none) and 1 to ``max_distractors`` distractors; each class name is one of ``SHAPES``."""
    width, height = size
    for name in classes:
        if name not in SHAPES:
            raise ValueError(f"unknown synthetic class {name!r}: expected names from {SHAPES}")
    background = _background(rng, width, height)
    n_objects = int(rng.integers(1, max_objects + 1)) if max_objects > 0 and rng.random() >= 0.04 else 0
    items: list[dict] = []
    for _ in range(n_objects):
        label = int(rng.integers(len(classes)))
        mask, area = _object(rng, classes[label], width, height, min_object_size)
        items.append({"label": label, "mask": mask, "area": area, "texture": TEXTURES[rng.integers(len(TEXTURES))]})
    for _ in range(int(rng.integers(1, max_distractors + 1)) if max_distractors > 0 else 0):
        items.append(
            {"label": -1, "mask": _distractor(rng, width, height), "texture": ("solid", "noise")[rng.integers(2)]}
        )
    items = [items[i] for i in rng.permutation(len(items))]  # z-order: later items are drawn on top

    while True:  # leave out objects too hidden to label; removing one can only reveal others
        owner = _owners([item["mask"] for item in items], width, height)
        keep, changed = [], False
        for i, item in enumerate(items):
            if item["label"] >= 0:
                visible = owner == i
                ys, xs = np.nonzero(visible.any(axis=1))[0], np.nonzero(visible.any(axis=0))[0]
                item["visible"] = float(visible.sum()) / item["area"]
                small = len(xs) == 0 or xs[-1] - xs[0] + 1 < _MIN_SIDE or ys[-1] - ys[0] + 1 < _MIN_SIDE
                if small or item["visible"] < _MIN_VISIBLE:
                    changed = True
                    continue
                item["box"] = (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)
                item["occluded"] = bool((item["mask"] & ~visible).any())
            keep.append(item)
        items = keep
        if not changed:
            break

    image = background
    objects = []
    for item in items:
        ys, xs = np.nonzero(item["mask"])
        if len(ys) == 0:
            continue
        y1, x1 = ys.min(), xs.min()
        region = (slice(y1, ys.max() + 1), slice(x1, xs.max() + 1))
        colour = distinct_colour(rng, image[item["mask"]].mean(axis=0))
        patch = _texture(rng, item["texture"], (ys.max() + 1 - y1, xs.max() + 1 - x1), colour)
        local = item["mask"][region]
        image[region][local] = patch[local]
        if item["label"] >= 0:
            objects.append(
                SceneObject(
                    label=item["label"],
                    box=item["box"],
                    texture=item["texture"],
                    colour=tuple(int(c) for c in colour),
                    visible=min(item["visible"], 1.0),
                    occluded=item["occluded"],
                )
            )
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    boxes = np.array([o.box for o in objects], np.float32).reshape(-1, 4)
    labels = np.array([o.label for o in objects], np.int64)
    return SyntheticScene(image, boxes, labels, tuple(objects))

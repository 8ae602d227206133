"""Synthetic videos with ground-truth tracks, and noisy detections made from that truth.

``render_tracks`` draws the project's shapes (see :mod:`~edgedet.edge.datasets.synthetic_scene`), each
with its own texture, moving over a textured, cluttered background:

* two objects of the same class cross each other head-on, one partly hiding the other (at 30% of the
  motion time, or earlier if that would take them faster than 5 sizes per second);
* the other objects walk between random waypoints, some stopping for a while, some entering the frame
  from outside after the start and some leaving it for good (an object that leaves never comes back, so a
  new identity is always a new object);
* a stretch in the middle where nothing moves at all (``still_s`` seconds: the motion clock stops);
* lighting flicker: a slow brightness wobble plus sudden dips of one or two frames.

Motion is defined in seconds, not frames: the same seed gives the same scene at any ``fps``, sampled more or
less often, so a tracker can be scored at 5 and at 30 fps on the same objects. Everything depends only on the
arguments (the same seed gives identical pixels and truth).

Ground truth per frame (:class:`TrackFrame`): each object's track ID, class and the tight box of its
*visible* pixels (columns ``x1 .. x2 - 1``, rows ``y1 .. y2 - 1``), for every object with at least
``min_visible`` (a third) of its area in view and unhidden; its visible fraction is kept too.

``noisy_detections`` turns the truth into what a detector would give: jittered boxes, scores that drop with
occlusion, missed objects (more often when occluded), and false positives, for tracker-only evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgedet.edge.datasets.synthetic import DEFAULT_CLASSES
from edgedet.edge.datasets.synthetic_scene import (
    SHAPES,
    TEXTURES,
    _texture,
    distinct_colour,
    render_scene,
    shape_polygon,
)

__all__ = [
    "FrameDetections",
    "TrackFrame",
    "TrackVideo",
    "noisy_detections",
    "render_tracks",
    "write_video",
]

_SHIFT = 4  # sub-pixel bits for cv2.fillPoly
_FOURCC = {".avi": "MJPG", ".mp4": "mp4v"}


@dataclass(frozen=True)
class TrackFrame:
    """Ground truth of one frame at time ``t`` (seconds): ``[M, 4]`` float32 tight boxes of the visible
    pixels, ``[M]`` int64 class labels and track IDs (1-based, one per object for the whole video), and
    ``[M]`` float32 visible fractions of each object's area."""

    index: int
    t: float
    boxes: np.ndarray
    labels: np.ndarray
    track_ids: np.ndarray
    visible: np.ndarray


@dataclass(frozen=True)
class TrackVideo:
    """A rendered video: ``frames`` (``HxWx3`` uint8 BGR; empty when rendered without images), one
    :class:`TrackFrame` of truth per frame, the rate, the size ``(width, height)``, the class names, the
    time span ``still`` (start, end) in which nothing moves, the number of objects, and the background
    (the scene without objects, flicker or sensor noise)."""

    frames: tuple[np.ndarray, ...]
    truth: tuple[TrackFrame, ...]
    fps: float
    size: tuple[int, int]
    classes: tuple[str, ...]
    still: tuple[float, float]
    num_objects: int
    background: np.ndarray


@dataclass(frozen=True)
class FrameDetections:
    """Simulated detections of one frame: ``[N, 4]`` float32 boxes, ``[N]`` float32 scores, ``[N]`` int64
    class ids, and ``[N]`` int64 true track IDs (-1 for a false positive)."""

    index: int
    t: float
    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    truth_ids: np.ndarray


@dataclass
class _Mover:
    label: int
    poly: np.ndarray  # outline around 0, pixels
    radius: float
    keys: np.ndarray  # [K, 3]: motion time, x, y (linear in between; absent before the first / after the last)
    spin: float  # radians per second of motion time
    patch: np.ndarray  # texture, (2R+3)^2 x 3 float32, centred on the object
    exits: bool  # leaves the frame for good after its last key


def _motion_clock(t: np.ndarray | float, still: tuple[float, float]) -> np.ndarray | float:
    """Motion time: real time with the still stretch taken out (nothing moves in it)."""
    start, end = still
    return np.where(t < start, t, np.where(t < end, start, t - (end - start)))


def _walk(
    rng: np.random.Generator,
    start: np.ndarray,
    t0: float,
    t_end: float,
    speed: float,
    width: int,
    height: int,
    r: float,
) -> list[tuple[float, float, float]]:
    """Keys from ``start`` at motion time ``t0`` through random waypoints (sometimes pausing) until ``t_end``."""
    keys = [(t0, float(start[0]), float(start[1]))]
    t, pos = t0, start
    while t < t_end:
        target = rng.uniform([r, r], [width - r, height - r])
        t += float(np.linalg.norm(target - pos)) / speed
        keys.append((t, float(target[0]), float(target[1])))
        pos = target
        if rng.random() < 0.4:  # stop for a while
            t += float(rng.uniform(0.5, 2.0))
            keys.append((t, float(pos[0]), float(pos[1])))
    return keys


def _outside(rng: np.random.Generator, width: int, height: int, r: float) -> np.ndarray:
    """A point just outside a random border."""
    side = int(rng.integers(4))
    along = rng.uniform(0.2, 0.8)
    if side == 0:
        return np.array([-1.5 * r, along * height])
    if side == 1:
        return np.array([width + 1.5 * r, along * height])
    if side == 2:
        return np.array([along * width, -1.5 * r])
    return np.array([along * width, height + 1.5 * r])


def _movers(
    rng: np.random.Generator,
    classes: Sequence[str],
    num_objects: int,
    width: int,
    height: int,
    motion_s: float,
    background: np.ndarray,
    object_size: tuple[float, float],
) -> list[_Mover]:
    short = min(width, height)
    movers = []
    for k in range(num_objects):
        label = 0 if k < 2 else int(rng.integers(len(classes)))
        radius = float(rng.uniform(*object_size) * short)
        if k < 2:  # the head-on crossing: same class, same size, slightly different rows
            radius = movers[0].radius if k == 1 else radius
            y = height / 2 + (radius * 0.45 if k == 0 else -radius * 0.45)
            x0, x1 = (radius * 1.2, width - radius * 1.2) if k == 0 else (width - radius * 1.2, radius * 1.2)
            # they meet at 30% of the motion time, moving at 2 to 5 object sizes per second (earlier in a
            # long video, and not at all in one too short for that speed)
            speed = float(np.clip((width / 2 - radius * 1.2) / (0.3 * motion_s), 2 * radius, 5 * radius))
            cross = (width / 2 - radius * 1.2) / speed
            leave = width + 2 * radius if k == 0 else -2 * radius
            keys = [(0.0, x0, y), (cross, width / 2, y), (2 * cross, x1, y)]
            keys.append((2 * cross + abs(leave - x1) / speed, leave, y))  # out of the frame for good
            exits = True
        else:
            speed = float(rng.uniform(2.0, 5.0) * radius)  # pixels per second: 1 to 2.5 object sizes
            kind = rng.random()
            if kind < 0.35:  # enters later, from outside
                t0 = float(rng.uniform(0.05, 0.6) * motion_s)
                start = _outside(rng, width, height, radius)
            else:
                t0 = 0.0
                start = rng.uniform([radius, radius], [width - radius, height - radius])
            exits = rng.random() < 0.4
            stop = float(rng.uniform(0.5, 0.9) * motion_s) if exits else motion_s + 1.0
            keys = _walk(rng, start, t0, stop, speed, width, height, radius)
            if exits:
                last = np.array(keys[-1][1:])
                gone = _outside(rng, width, height, radius)
                keys.append((keys[-1][0] + float(np.linalg.norm(gone - last)) / speed, *gone))
        poly = shape_polygon(classes[label], rng)
        stretch = np.exp(rng.uniform(np.log(0.75), np.log(1.33)))
        poly = poly * radius * np.array([math.sqrt(stretch), 1 / math.sqrt(stretch)])
        side = int(2 * math.ceil(np.linalg.norm(poly, axis=1).max()) + 3)  # room for any rotation
        colour = distinct_colour(rng, background.reshape(-1, 3).mean(axis=0), 160.0)
        texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
        patch = np.ascontiguousarray(_texture(rng, texture, (side, side), colour), dtype=np.float32)
        spin = float(rng.uniform(-0.6, 0.6)) if classes[label] != "circle" else 0.0
        movers.append(_Mover(label, poly, radius, np.array(keys), spin, patch, exits))
    return movers


def _position(m: _Mover, tau: float) -> np.ndarray | None:
    keys = m.keys
    if tau < keys[0, 0] or (m.exits and tau > keys[-1, 0]):
        return None
    return np.array([np.interp(tau, keys[:, 0], keys[:, 1]), np.interp(tau, keys[:, 0], keys[:, 2])])


def _gain(rng: np.random.Generator, n_frames: int, fps: float, flicker: bool) -> np.ndarray:
    """Per-frame brightness: a slow wobble and rare one- or two-frame dips (by time, so fps-independent
    in shape; the dips are drawn per frame)."""
    if not flicker:
        return np.ones(n_frames)
    t = np.arange(n_frames) / fps
    gain = 1.0 + 0.07 * np.sin(2 * np.pi * 0.7 * t) + 0.03 * np.sin(2 * np.pi * 5.3 * t)
    dips = rng.random(n_frames) < min(0.6 / fps, 0.5)  # about 0.6 dips per second
    for i in np.nonzero(dips)[0]:
        gain[i : i + int(rng.integers(1, 3))] *= rng.uniform(0.6, 0.85)
    return gain


def render_tracks(
    frames: int = 150,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
    *,
    fps: float = 15.0,
    classes: Sequence[str] = DEFAULT_CLASSES,
    num_objects: int = 6,
    still_s: float | None = None,
    flicker: bool = True,
    noise: float = 2.0,
    object_size: tuple[float, float] = (0.06, 0.12),
    images: bool = True,
    min_visible: float = 1 / 3,
) -> TrackVideo:
    """Render ``frames`` frames at ``fps`` of ``num_objects`` (at least 2) moving shapes; see the module
    docstring. ``still_s``: length of the motionless stretch (default: 15% of the video, starting at 55%).
    ``flicker``: brightness changes; ``noise``: standard deviation of the sensor noise (grey levels).
    ``object_size``: range of object radii, as fractions of the shorter image side; walkers move at 1 to 2.5
    times their size per second.
    ``images=False`` computes the truth only (the drawing of masks still runs, the frames are not kept).
    """
    classes = tuple(classes)
    if not classes or not set(classes) <= set(SHAPES):
        raise ValueError(f"classes: expected names from {SHAPES}, got {classes}")
    if frames < 1 or fps <= 0 or num_objects < 2:
        raise ValueError(f"expected frames >= 1, fps > 0 and num_objects >= 2, got {frames}, {fps}, {num_objects}")
    width, height = int(size[0]), int(size[1])
    if min(width, height) < 64:
        raise ValueError(f"size: expected (width, height), each at least 64, got {size}")
    duration = frames / fps
    still_len = 0.15 * duration if still_s is None else float(still_s)
    still = (0.55 * duration, 0.55 * duration + still_len)
    motion_s = duration - still_len
    rng = np.random.default_rng((seed, 7 << 20))
    background = render_scene(rng, (width, height), classes, max_objects=0).image.astype(np.float32)
    movers = _movers(rng, classes, num_objects, width, height, motion_s, background, tuple(object_size))
    gain = _gain(rng, frames, fps, flicker)
    noise_rng = np.random.default_rng((seed, 7 << 20, 1))

    out_frames: list[np.ndarray] = []
    truth: list[TrackFrame] = []
    for index in range(frames):
        t = index / fps
        tau = float(_motion_clock(t, still))
        image = background.copy() if images else None
        owner = np.full((height, width), -1, np.int16)
        drawn = []
        for k, m in enumerate(movers):
            centre = _position(m, tau)
            if centre is None:
                continue
            angle = m.spin * tau
            rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
            poly = m.poly @ rot.T + centre
            area = max(float(cv2.contourArea(poly.astype(np.float32))), 1.0)
            half = m.patch.shape[0] // 2
            cx, cy = round(float(centre[0])), round(float(centre[1]))
            x0, y0 = cx - half, cy - half  # the patch's top-left corner in the frame
            bx0, by0 = max(x0, 0), max(y0, 0)
            bx1, by1 = min(x0 + m.patch.shape[1], width), min(y0 + m.patch.shape[0], height)
            if bx1 <= bx0 or by1 <= by0:
                continue
            mask = np.zeros((by1 - by0, bx1 - bx0), np.uint8)
            local = np.round((poly - [bx0, by0]) * (1 << _SHIFT)).astype(np.int32)
            cv2.fillPoly(mask, [local], 1, cv2.LINE_8, _SHIFT)
            sel = mask.astype(bool)
            if not sel.any():
                continue
            region = (slice(by0, by1), slice(bx0, bx1))
            if image is not None:
                image[region][sel] = m.patch[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0][sel]
            owner[region][sel] = k
            drawn.append((k, region, area))
        boxes, labels, ids, visible = [], [], [], []
        for k, region, area in drawn:
            seen = owner[region] == k
            count = int(seen.sum())
            if count < min_visible * area:
                continue
            ys = np.nonzero(seen.any(axis=1))[0]
            xs = np.nonzero(seen.any(axis=0))[0]
            x_off, y_off = region[1].start, region[0].start
            boxes.append((xs[0] + x_off, ys[0] + y_off, xs[-1] + 1 + x_off, ys[-1] + 1 + y_off))
            labels.append(movers[k].label)
            ids.append(k + 1)
            visible.append(min(count / area, 1.0))
        truth.append(
            TrackFrame(
                index=index,
                t=t,
                boxes=np.array(boxes, np.float32).reshape(-1, 4),
                labels=np.array(labels, np.int64),
                track_ids=np.array(ids, np.int64),
                visible=np.array(visible, np.float32),
            )
        )
        if image is not None:
            image *= np.float32(gain[index])
            if noise > 0:
                image += noise_rng.standard_normal((height, width, 1), dtype=np.float32) * np.float32(noise)
            out_frames.append(np.clip(np.round(image), 0, 255).astype(np.uint8))
    plain = np.clip(np.round(background), 0, 255).astype(np.uint8)
    return TrackVideo(tuple(out_frames), tuple(truth), float(fps), (width, height), classes, still, len(movers), plain)


def write_video(path: str | Path, video: TrackVideo) -> Path:
    """Write ``video``'s frames to ``path`` (``.avi``: MJPG, ``.mp4``: mp4v), like ``render_video``."""
    path = Path(path)
    if path.suffix.lower() not in _FOURCC:
        raise ValueError(f"video path must end in {tuple(_FOURCC)}, got {path.name!r}")
    if not video.frames:
        raise ValueError("the video was rendered with images=False: no frames to write")
    fourcc = cv2.VideoWriter_fourcc(*_FOURCC[path.suffix.lower()])
    writer = cv2.VideoWriter(str(path), fourcc, video.fps, video.size)
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {path} with codec {_FOURCC[path.suffix.lower()]}")
    try:
        for frame in video.frames:
            writer.write(frame)
    finally:
        writer.release()
    return path


def noisy_detections(
    truth: TrackVideo | Sequence[TrackFrame],
    seed: int = 0,
    *,
    jitter: float = 0.04,
    miss_rate: float = 0.05,
    score: float = 0.85,
    score_std: float = 0.08,
    false_positives: float = 0.3,
    occlusion_miss: float = 0.7,
    occlusion_score: float = 1.2,
    num_classes: int | None = None,
    size: tuple[int, int] | None = None,
    min_score: float = 0.1,
) -> list[FrameDetections]:
    """What a decent detector would report for each frame of ``truth``.

    An object is missed with probability ``miss_rate``, plus ``occlusion_miss`` times how far its visible
    fraction is below 0.8; a detected one gets its box jittered by ``jitter`` of its side (each edge, normal)
    and a score of ``score`` minus ``occlusion_score * (0.8 - visible)`` when less than 0.8 of it shows, plus
    normal noise ``score_std`` (occluded objects score low: the second stage of a ByteTrack-like tracker has to
    pick them up). ``false_positives`` is the mean number of spurious boxes per frame (Poisson), of any class,
    scoring mostly low. Scores below ``min_score`` are dropped, as a detector's threshold would.
    """
    frames = truth.truth if isinstance(truth, TrackVideo) else tuple(truth)
    if num_classes is None:
        num_classes = (
            len(truth.classes)
            if isinstance(truth, TrackVideo)
            else 1 + max((int(f.labels.max()) for f in frames if len(f.labels)), default=0)
        )
    if size is None:
        size = truth.size if isinstance(truth, TrackVideo) else (320, 240)
    width, height = size
    out = []
    for f in frames:
        rng = np.random.default_rng((seed, f.index, 11))
        n = len(f.boxes)
        hidden = np.clip(0.8 - f.visible, 0, None)
        found = rng.random(n) >= miss_rate + occlusion_miss * hidden
        boxes = f.boxes[found].astype(np.float64)
        wh = np.maximum(boxes[:, 2:] - boxes[:, :2], 1.0)
        boxes += rng.standard_normal(boxes.shape) * jitter * np.tile(wh, 2)
        scores = score - occlusion_score * hidden[found] + rng.standard_normal(len(boxes)) * score_std
        labels = f.labels[found]
        ids = f.track_ids[found]
        n_fp = int(rng.poisson(false_positives))
        if n_fp:
            side = rng.uniform(0.06, 0.25, (n_fp, 2)) * min(width, height)
            corner = rng.uniform([0, 0], [width, height], (n_fp, 2)) - side / 2
            boxes = np.concatenate([boxes, np.concatenate([corner, corner + side], axis=1)])
            scores = np.concatenate([scores, rng.beta(2, 4, n_fp)])  # mostly below 0.5
            labels = np.concatenate([labels, rng.integers(0, num_classes, n_fp)])
            ids = np.concatenate([ids, np.full(n_fp, -1, np.int64)])
        scores = np.clip(scores, 0.0, 1.0)
        x2 = np.maximum(boxes[:, 2], boxes[:, 0] + 1)
        y2 = np.maximum(boxes[:, 3], boxes[:, 1] + 1)
        boxes = np.stack([boxes[:, 0], boxes[:, 1], x2, y2], axis=1)
        keep = scores >= min_score
        out.append(
            FrameDetections(
                index=f.index,
                t=f.t,
                boxes=boxes[keep].astype(np.float32),
                scores=scores[keep].astype(np.float32),
                class_ids=labels[keep].astype(np.int64),
                truth_ids=ids[keep].astype(np.int64),
            )
        )
    return out

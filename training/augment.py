"""Training augmentation in numpy + OpenCV (no torch): SSD-style photometric distortion, zoom-out, random
crop, horizontal flip, and the final resize (stretch or letterbox).

Every step is a function ``step(image, boxes, labels, rng, ...)`` on an ``H x W x 3`` uint8 BGR image,
``[M, 4]`` float corner-pixel boxes and ``[M]`` labels that returns the new triple (``resize`` also returns
the ``edgedet.edge.runtime.preprocess.Transform`` it applied). Geometric steps move the boxes with the pixels, clip
them to the image and drop any left without width or height, so boxes always satisfy
``0 <= x1 < x2 <= W`` and ``0 <= y1 < y2 <= H``. ``Compose`` chains steps; ``train_transform`` and
``eval_transform`` build the standard pipelines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import cv2
import numpy as np

from edgedet.edge.core.boxes import pairwise_iou
from edgedet.edge.runtime.preprocess import Transform

__all__ = [
    "DEFAULT_MIN_IOUS",
    "Compose",
    "Step",
    "eval_transform",
    "horizontal_flip",
    "letterbox",
    "photometric_distort",
    "random_crop",
    "random_zoom_out",
    "resize",
    "train_transform",
]

Triple = tuple[np.ndarray, np.ndarray, np.ndarray]
Step = Callable[..., tuple]
DEFAULT_MIN_IOUS: tuple[float | None, ...] = (None, 0.1, 0.3, 0.5, 0.7, 0.9)
_GRAY = (127.0, 127.0, 127.0)


def _arrays(boxes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(boxes) != len(labels):
        raise ValueError(f"{len(boxes)} boxes but {len(labels)} labels")
    return boxes, labels


def _clip_valid(boxes: np.ndarray, labels: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Clip to the image and drop boxes left with no width or height."""
    upper = np.array([width, height, width, height], dtype=np.float32)
    boxes = np.clip(boxes, 0, upper).astype(np.float32)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[keep], labels[keep]


def _fill(colour: Sequence[float]) -> np.ndarray:
    return np.clip(np.round(np.asarray(colour, dtype=np.float64)), 0, 255).astype(np.uint8).reshape(3)


def photometric_distort(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    *,
    brightness: float = 32.0,
    contrast: tuple[float, float] = (0.5, 1.5),
    saturation: tuple[float, float] = (0.5, 1.5),
    hue: float = 18.0,
    noise: float = 0.0,
    p: float = 0.5,
) -> Triple:
    """SSD's colour jitter, each part with probability ``p``: brightness shift (+-``brightness``), contrast
    scale (before or after the HSV part), saturation scale, hue shift (+-``hue`` degrees); then Gaussian
    channel noise of std ``noise`` (0: none). Boxes are unchanged."""
    img = image.astype(np.float32)
    if rng.random() < p:
        img += np.float32(rng.uniform(-brightness, brightness))
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < p:
        img *= np.float32(rng.uniform(*contrast))
    sat = rng.uniform(*saturation) if rng.random() < p else None
    shift = rng.uniform(-hue, hue) / 2 if rng.random() < p else None  # OpenCV hue is 0..180
    if sat is not None or shift is not None:
        hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV).astype(np.float32)
        if sat is not None:
            hsv[..., 1] *= np.float32(sat)
        if shift is not None:
            hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(shift), 180)
        hsv = np.clip(np.round(hsv), 0, [179, 255, 255]).astype(np.uint8)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR).astype(np.float32)
    if not contrast_first and rng.random() < p:
        img *= np.float32(rng.uniform(*contrast))
    if noise > 0:
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), *_arrays(boxes, labels)


def random_zoom_out(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    *,
    max_ratio: float = 4.0,
    fill: Sequence[float] = _GRAY,
    p: float = 0.5,
) -> Triple:
    """With probability ``p``, place the image at a random spot of a canvas ``r`` times its size
    (``r`` uniform in [1, ``max_ratio``]) filled with ``fill`` (BGR): objects get smaller."""
    boxes, labels = _arrays(boxes, labels)
    if max_ratio <= 1 or rng.random() >= p:
        return image, boxes, labels
    h, w = image.shape[:2]
    ratio = rng.uniform(1.0, max_ratio)
    new_w, new_h = max(w, int(w * ratio)), max(h, int(h * ratio))
    left, top = int(rng.integers(0, new_w - w + 1)), int(rng.integers(0, new_h - h + 1))
    canvas = np.empty((new_h, new_w, 3), dtype=np.uint8)
    canvas[:] = _fill(fill)
    canvas[top : top + h, left : left + w] = image
    return canvas, boxes + np.array([left, top, left, top], dtype=np.float32), labels


def random_crop(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    *,
    min_ious: Sequence[float | None] = DEFAULT_MIN_IOUS,
    min_scale: float = 0.3,
    max_aspect: float = 2.0,
    max_trials: int = 50,
    max_modes: int = 10,
) -> Triple:
    """SSD's random crop. Pick a mode from ``min_ious`` (``None``: keep the whole image), then try up to
    ``max_trials`` crops with sides in [``min_scale``, 1] of the image's and aspect in
    [1/``max_aspect``, ``max_aspect``] until one overlaps some box with IoU >= the mode and contains the
    centre of at least one box. Boxes whose centre is inside are kept and clipped; the rest dropped.
    An image without boxes takes the first crop tried. After ``max_modes`` failed modes the image is kept.
    """
    boxes, labels = _arrays(boxes, labels)
    h, w = image.shape[:2]
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    for _ in range(max_modes):
        mode = min_ious[int(rng.integers(len(min_ious)))]
        if mode is None:
            return image, boxes, labels
        # The mode's trials drawn at once and the first acceptable one taken: the same distribution as
        # one trial at a time, without ~50 small numpy calls per image (the loader's main cost).
        cw, ch = rng.uniform(min_scale * w, w, max_trials), rng.uniform(min_scale * h, h, max_trials)
        x1 = (rng.uniform(0, 1, max_trials) * (w - cw)).astype(np.int64)
        y1 = (rng.uniform(0, 1, max_trials) * (h - ch)).astype(np.int64)
        x2, y2 = np.maximum(x1 + 1, (x1 + cw).astype(np.int64)), np.maximum(y1 + 1, (y1 + ch).astype(np.int64))
        ok = (ch / cw >= 1 / max_aspect) & (ch / cw <= max_aspect)
        if len(boxes):
            rects = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
            ok &= pairwise_iou(rects, boxes).max(axis=1) >= mode
            cx, cy = centres[None, :, 0], centres[None, :, 1]
            inside_all = (cx > x1[:, None]) & (cx < x2[:, None]) & (cy > y1[:, None]) & (cy < y2[:, None])
            ok &= inside_all.any(axis=1)
        hits = np.flatnonzero(ok)
        if not len(hits):
            continue
        t = int(hits[0])
        x1_, y1_, x2_, y2_ = int(x1[t]), int(y1[t]), int(x2[t]), int(y2[t])
        inside = inside_all[t] if len(boxes) else np.zeros(0, dtype=bool)
        shifted = boxes[inside] - np.array([x1_, y1_, x1_, y1_], dtype=np.float32)
        crop = np.ascontiguousarray(image[y1_:y2_, x1_:x2_])
        return crop, *_clip_valid(shifted, labels[inside], x2_ - x1_, y2_ - y1_)
    return image, boxes, labels


def horizontal_flip(
    image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator, *, p: float = 0.5
) -> Triple:
    """Mirror left-right with probability ``p``: pixel column ``x`` goes to ``W - 1 - x``."""
    boxes, labels = _arrays(boxes, labels)
    if rng.random() >= p:
        return image, boxes, labels
    w = image.shape[1]
    flipped = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1).astype(np.float32)
    return np.ascontiguousarray(image[:, ::-1]), flipped, labels


def resize(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator | None = None,
    *,
    size: tuple[int, int],
    letterbox: bool = False,
    fill: Sequence[float] = _GRAY,
    interpolation: int = cv2.INTER_LINEAR,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Transform]:
    """Resize to ``size = (width, height)``: stretched, or letterboxed (aspect kept, centred, padded with
    ``fill``) exactly as ``edgedet.edge.runtime.preprocess.Preprocessor`` does at run time. Returns the image, boxes,
    labels and the ``Transform`` (``input = frame * scale + pad``) applied. ``rng`` is unused."""
    del rng
    boxes, labels = _arrays(boxes, labels)
    h, w = image.shape[:2]
    tw, th = int(size[0]), int(size[1])
    if not letterbox:
        new_w, new_h, pad_x, pad_y = tw, th, 0, 0
    else:
        scale = min(tw / w, th / h)
        new_w, new_h = min(tw, max(1, round(w * scale))), min(th, max(1, round(h * scale)))
        pad_x, pad_y = (tw - new_w) // 2, (th - new_h) // 2
    transform = Transform(new_w / w, new_h / h, float(pad_x), float(pad_y), w, h)
    resized = image if (new_w, new_h) == (w, h) else cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    if (new_w, new_h) != (tw, th):
        canvas = np.empty((th, tw, 3), dtype=np.uint8)
        canvas[:] = _fill(fill)
        canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
        resized = canvas
    boxes, labels = _clip_valid(transform.to_input(boxes), labels, tw, th)
    return resized, boxes, labels, transform


def letterbox(
    image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, size: tuple[int, int], *, fill: Sequence[float] = _GRAY
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Transform]:
    """``resize(..., letterbox=True)``: keep the aspect ratio, centre, pad; returns the scale/pad ``Transform``."""
    return resize(image, boxes, labels, size=size, letterbox=True, fill=fill)


class Compose:
    """Apply steps in order; each is called ``step(image, boxes, labels, rng)`` and its first three
    outputs are passed on. Returns ``(image uint8, boxes [M, 4] float32, labels [M] int64)``."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = list(steps)

    def __call__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> Triple:
        boxes, labels = _arrays(boxes, labels)
        for step in self.steps:
            image, boxes, labels = step(image, boxes, labels, rng)[:3]
        return image, boxes, labels

    def __repr__(self) -> str:
        names = [getattr(s, "func", s).__name__ if callable(s) else repr(s) for s in self.steps]
        return f"Compose({', '.join(names)})"


def train_transform(
    size: tuple[int, int],
    *,
    mean: Sequence[float] = _GRAY,
    photometric: bool = True,
    crop: bool = True,
    zoom_out: float = 4.0,
    flip: bool = True,
    letterbox: bool = False,
    min_ious: Sequence[float | None] = DEFAULT_MIN_IOUS,
    zoom_p: float = 0.5,
    noise: float = 0.0,
) -> Compose:
    """The SSD training pipeline: zoom-out up to ``zoom_out`` times (1: off), random crop, horizontal
    flip, resize to ``size = (width, height)``, then photometric distortion. SSD jitters colours first, on
    the full-size photo; jittering the resized image is the same per-pixel augmentation (the zoom-out
    canvas is jittered too) at a fraction of the cost (a 640x480 photo: 20 ms -> ~5 ms per sample,
    which on a 2-core machine is CPU taken from the training step).

    ``mean`` fills the zoom-out canvas and letterbox padding; give it in the image's BGR order.
    """
    steps: list[Step] = []
    if zoom_out > 1:
        steps.append(partial(random_zoom_out, max_ratio=zoom_out, fill=tuple(mean), p=zoom_p))
    if crop:
        steps.append(partial(random_crop, min_ious=tuple(min_ious)))
    if flip:
        steps.append(horizontal_flip)
    steps.append(partial(resize, size=tuple(size), letterbox=letterbox, fill=tuple(mean)))
    if photometric:  # last, at the model's size: colour jitter is per pixel, and there are fewer pixels here
        steps.append(partial(photometric_distort, noise=noise))
    return Compose(steps)


def eval_transform(size: tuple[int, int], *, mean: Sequence[float] = _GRAY, letterbox: bool = False) -> Compose:
    """Evaluation: only the resize to ``size = (width, height)`` (stretch or letterbox)."""
    return Compose([partial(resize, size=tuple(size), letterbox=letterbox, fill=tuple(mean))])

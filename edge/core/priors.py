"""SSD priors (anchor boxes), generated two ways, as normalised centre boxes ``[N, 4]`` (cx, cy, w, h).

* ``style="ssd"`` — the seed's scales ``s_k = s_min + (s_max - s_min)(k - 1)/(m - 1)`` (or explicit
  ``scales``) with aspect ratios; for ratio 1 an extra square prior of side ``sqrt(s_k * s_{k+1})``.
* ``style="ultraface"`` — UltraFace's ``min_boxes`` (pixels) per level, divided by the image size per
  axis ("per-axis shrinkage"): 320x240 gives 4420 priors, 640x480 gives 17640.

Centres are ``((j + 0.5) / fm_w, (i + 0.5) / fm_h)`` for row ``i`` and column ``j``; the order is
level -> row -> column -> anchor, the order the head's outputs are flattened in. Feature-map sizes are
``ceil(size / stride)``, which is exactly what a chain of 3x3, stride-2, padding-1 convolutions produces.

Where we differ from the seed's snippet: the seed takes ``s_{m+1} = s_m`` for the last level's extra
square prior (a duplicate of its ratio-1 prior); we extrapolate the linear schedule one step,
``s_{m+1} = s_m + (s_max - s_min)/(m - 1)``, as the original SSD does (its last extra prior is 1.05).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "PriorConfig",
    "feature_map_sizes",
    "ssd_priors",
    "ssd_scales",
    "ultraface_priors",
]

ULTRAFACE_MIN_BOXES: tuple[tuple[float, ...], ...] = ((10, 16, 24), (32, 48), (64, 96), (128, 192, 256))
DEFAULT_STRIDES: tuple[int, ...] = (8, 16, 32, 64)


def ssd_scales(s_min: float, s_max: float, num_levels: int) -> list[float]:
    """Linear scales ``s_k = s_min + (s_max - s_min)(k - 1)/(m - 1)`` for k = 1..m."""
    if num_levels < 1:
        raise ValueError(f"num_levels: expected >= 1, got {num_levels}")
    if not 0 < s_min <= s_max:
        raise ValueError(f"scales: expected 0 < s_min <= s_max, got s_min={s_min}, s_max={s_max}")
    if num_levels == 1:
        return [float(s_min)]
    step = (s_max - s_min) / (num_levels - 1)
    return [s_min + step * k for k in range(num_levels)]


def feature_map_sizes(image_size: tuple[int, int], strides: Sequence[int]) -> list[tuple[int, int]]:
    """``(fm_w, fm_h)`` per level for an image ``(width, height)``: ``ceil(size / stride)``."""
    w, h = _check_image_size(image_size)
    return [(math.ceil(w / s), math.ceil(h / s)) for s in strides]


def _grid_priors(fm_w: int, fm_h: int, sizes: np.ndarray) -> np.ndarray:
    """Priors of one level: every cell centre crossed with every (w, h) in ``sizes [A, 2]``."""
    cx = (np.arange(fm_w, dtype=np.float64) + 0.5) / fm_w
    cy = (np.arange(fm_h, dtype=np.float64) + 0.5) / fm_h
    out = np.empty((fm_h, fm_w, len(sizes), 4), dtype=np.float64)
    out[..., 0] = cx[None, :, None]
    out[..., 1] = cy[:, None, None]
    out[..., 2:] = sizes[None, None, :, :]
    return out.reshape(-1, 4)


def ssd_anchor_sizes(
    scales: Sequence[float], aspect_ratios: Sequence[Sequence[float]], next_scale: float
) -> list[np.ndarray]:
    """Per level, the ``[A, 2]`` normalised (w, h) of its anchors, in anchor order."""
    out = []
    for k, (scale, ratios) in enumerate(zip(scales, aspect_ratios, strict=True)):
        s_next = scales[k + 1] if k + 1 < len(scales) else next_scale
        sizes = []
        for ratio in ratios:
            if ratio <= 0:
                raise ValueError(f"aspect_ratios[{k}]: ratios must be > 0, got {ratio}")
            sizes.append((scale * math.sqrt(ratio), scale / math.sqrt(ratio)))
            if ratio == 1:
                side = math.sqrt(scale * s_next)
                sizes.append((side, side))
        out.append(np.asarray(sizes, dtype=np.float64))
    return out


def ssd_priors(
    fm_sizes: Sequence[tuple[int, int]],
    aspect_ratios: Sequence[Sequence[float]],
    scales: Sequence[float],
    next_scale: float | None = None,
    clamp: bool = False,
) -> np.ndarray:
    """Seed-style SSD priors for feature maps ``(fm_w, fm_h)``; ``next_scale`` is ``s_{m+1}``.

    ``next_scale`` defaults to one more step of the (linear) schedule: ``2 s_m - s_{m-1}``.
    """
    if not (len(fm_sizes) == len(aspect_ratios) == len(scales)):
        raise ValueError(
            f"ssd_priors: {len(fm_sizes)} feature maps, {len(aspect_ratios)} aspect-ratio lists and "
            f"{len(scales)} scales; expected one of each per level"
        )
    if next_scale is None:
        next_scale = 2 * scales[-1] - scales[-2] if len(scales) > 1 else scales[-1]
    levels = [
        _grid_priors(fm_w, fm_h, sizes)
        for (fm_w, fm_h), sizes in zip(fm_sizes, ssd_anchor_sizes(scales, aspect_ratios, next_scale), strict=True)
    ]
    return _finish(levels, clamp)


def ultraface_priors(
    image_size: tuple[int, int],
    min_boxes: Sequence[Sequence[float]] = ULTRAFACE_MIN_BOXES,
    strides: Sequence[int] = DEFAULT_STRIDES,
    clamp: bool = True,
) -> np.ndarray:
    """UltraFace priors: ``min_boxes`` in pixels, normalised per axis by the image ``(width, height)``."""
    w, h = _check_image_size(image_size)
    if len(min_boxes) != len(strides):
        raise ValueError(f"min_boxes has {len(min_boxes)} levels but strides has {len(strides)}")
    levels = []
    for (fm_w, fm_h), boxes in zip(feature_map_sizes((w, h), strides), min_boxes, strict=True):
        sizes = np.array([(b / w, b / h) for b in boxes], dtype=np.float64)
        levels.append(_grid_priors(fm_w, fm_h, sizes))
    return _finish(levels, clamp)


def _finish(levels: list[np.ndarray], clamp: bool) -> np.ndarray:
    priors = np.concatenate(levels, axis=0)
    if clamp:
        np.clip(priors, 0.0, 1.0, out=priors)
    return priors.astype(np.float32)


def _check_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    if len(image_size) != 2 or any(int(v) != v or v <= 0 for v in image_size):
        raise ValueError(f"image_size: expected (width, height) positive integers, got {image_size!r}")
    return int(image_size[0]), int(image_size[1])


@dataclass(frozen=True)
class PriorConfig:
    """Everything that defines a model's priors; serialisable into model metadata.

    ``style="ultraface"`` uses ``min_boxes``; ``style="ssd"`` uses ``scales`` (or ``s_min``/``s_max``)
    and ``aspect_ratios``. ``strides`` give the feature-map sizes for a given input size.
    """

    style: str = "ultraface"
    strides: tuple[int, ...] = DEFAULT_STRIDES
    min_boxes: tuple[tuple[float, ...], ...] = ULTRAFACE_MIN_BOXES
    s_min: float = 0.1
    s_max: float = 0.9
    scales: tuple[float, ...] | None = None
    aspect_ratios: tuple[tuple[float, ...], ...] = field(default=((1.0, 2.0, 0.5),) * 4)
    clamp: bool = True
    center_variance: float = 0.1
    size_variance: float = 0.2

    def __post_init__(self) -> None:
        if self.style not in ("ultraface", "ssd"):
            raise ValueError(f"priors.style: expected 'ultraface' or 'ssd', got {self.style!r}")
        if not self.strides or any(int(s) != s or s <= 0 for s in self.strides):
            raise ValueError(f"priors.strides: expected positive integers, got {self.strides!r}")
        if self.style == "ultraface":
            if len(self.min_boxes) != len(self.strides):
                raise ValueError(
                    f"priors.min_boxes: expected {len(self.strides)} levels (one per stride), got {len(self.min_boxes)}"
                )
            if any(not level or any(b <= 0 for b in level) for level in self.min_boxes):
                raise ValueError(f"priors.min_boxes: expected non-empty lists of sizes > 0, got {self.min_boxes}")
        else:
            if len(self.aspect_ratios) != len(self.strides):
                raise ValueError(
                    f"priors.aspect_ratios: expected {len(self.strides)} levels, got {len(self.aspect_ratios)}"
                )
            if self.scales is not None and len(self.scales) != len(self.strides):
                raise ValueError(f"priors.scales: expected {len(self.strides)} values, got {len(self.scales)}")
            ssd_scales(self.s_min, self.s_max, len(self.strides))  # validates the range
        for key in ("center_variance", "size_variance"):
            if not getattr(self, key) > 0:
                raise ValueError(f"priors.{key}: expected > 0, got {getattr(self, key)}")

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    def anchors_per_location(self) -> list[int]:
        """``p`` per level: how many priors sit on each feature-map cell."""
        if self.style == "ultraface":
            return [len(level) for level in self.min_boxes]
        return [len(r) + (1 if 1 in r else 0) for r in self.aspect_ratios]

    def level_scales(self) -> list[float]:
        if self.scales is not None:
            return list(self.scales)
        return ssd_scales(self.s_min, self.s_max, self.num_levels)

    def generate(self, image_size: tuple[int, int]) -> np.ndarray:
        """Priors ``[N, 4]`` (cx, cy, w, h), float32, for an input image ``(width, height)``."""
        if self.style == "ultraface":
            return ultraface_priors(image_size, self.min_boxes, self.strides, self.clamp)
        scales = self.level_scales()
        next_scale = None
        if self.scales is None and len(scales) > 1:
            next_scale = scales[-1] + (self.s_max - self.s_min) / (len(scales) - 1)
        return ssd_priors(
            feature_map_sizes(image_size, self.strides), self.aspect_ratios, scales, next_scale, self.clamp
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "style": self.style,
            "strides": list(self.strides),
            "min_boxes": [list(level) for level in self.min_boxes],
            "s_min": self.s_min,
            "s_max": self.s_max,
            "scales": None if self.scales is None else list(self.scales),
            "aspect_ratios": [list(r) for r in self.aspect_ratios],
            "clamp": self.clamp,
            "center_variance": self.center_variance,
            "size_variance": self.size_variance,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PriorConfig:
        """Build from a config/metadata mapping; unknown keys are an error naming the key."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"priors: unknown key(s) {unknown}; expected some of {sorted(known)}")
        kw: dict[str, Any] = dict(d)
        try:
            for key in ("strides",):
                if key in kw:
                    kw[key] = tuple(int(v) for v in kw[key])
            for key in ("min_boxes", "aspect_ratios"):
                if key in kw:
                    kw[key] = tuple(tuple(float(v) for v in level) for level in kw[key])
            if kw.get("scales") is not None:
                kw["scales"] = tuple(float(v) for v in kw["scales"])
            for key in ("s_min", "s_max", "center_variance", "size_variance"):
                if key in kw:
                    kw[key] = float(kw[key])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"priors: malformed value ({exc})") from exc
        return cls(**kw)

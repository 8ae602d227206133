"""Cheap motion detection, and the gate that runs the model only when something may have changed.

:class:`MotionDetector` works on a small copy of the frame (``width`` pixels wide, 160 by default; in
colour, so that an object as bright as what is behind it still shows, or grey with ``colour: false``):
Gaussian blur, difference (the largest over the channels) against a running average of past frames
(``cv2.accumulateWeighted``, weight ``alpha``), threshold, dilate to join nearby pixels into blobs; there
is motion when one blob holds at least ``min_area`` of the frame in changed pixels (counted before
dilation, so dilating never turns scattered sensor noise into motion). Pixels under ``masks`` (a clock,
a tree in the wind) never count.

Lighting. Two defences, both on by default:

* ``normalize``: before differencing, each frame's brightness and contrast (mean and standard deviation
  over the unmasked pixels) are matched to the background's, so a global change of exposure, gain or
  mains flicker (frame = a * background + b) leaves no difference; a local change (an object) still does.
* ``lighting_area``: a change over more than this fraction of the frame at once (a lamp switched on, the
  IR cut filter, a cloud) is taken for a lighting change, not motion: the background is reset to the new
  frame and the frame reports ``lighting`` (the gate skips it with reason ``lighting``).

:class:`MotionGate` decides per frame whether the model runs: on ``motion``; while the caller has a live
track that moved in the last ``settle_s`` (``tracks``); at least every ``refresh_s`` (``refresh``; the
first frame too); else it skips (``static`` or ``lighting``). With ``enabled: false`` every frame runs
(``always``). It counts decisions by reason for ``/metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

import cv2
import numpy as np
from pydantic import Field, field_validator

from edgedet.edge.camera.zones import PolygonList, check_frame
from edgedet.edge.runtime.settings import Flag, Int, Number, StrictModel

__all__ = [
    "RUN_REASONS",
    "SKIP_REASONS",
    "GateDecision",
    "MotionDetector",
    "MotionGate",
    "MotionResult",
    "MotionSettings",
]

RUN_REASONS = ("always", "motion", "tracks", "refresh")
SKIP_REASONS = ("static", "lighting")


class MotionSettings(StrictModel):
    """Motion gating: run the model only on motion, while tracks move, and every ``refresh_s``."""

    enabled: Flag = Field(
        False, description="`true`: run the model only on motion, while tracks move, and every `refresh_s`"
    )
    width: Annotated[Int, Field(ge=32, le=1280)] = Field(
        160, description="motion is computed on a copy this many pixels wide"
    )
    threshold: Annotated[Int, Field(ge=1, le=255)] = Field(
        25, description="levels (0..255, in any channel) a pixel must differ from the background to count as changed"
    )
    min_area: Annotated[Number, Field(gt=0, le=1)] = Field(
        0.001, description="motion when one blob of changed pixels covers this fraction of the frame"
    )
    blur: Annotated[Int, Field(ge=1, le=31)] = Field(5, description="Gaussian blur kernel (odd; `1`: none)")
    alpha: Annotated[Number, Field(gt=0, le=1)] = Field(
        0.05, description="how fast the background follows the frames (weight of each new frame)"
    )
    dilate: Annotated[Int, Field(ge=0, le=10)] = Field(
        2, description="dilation steps (3x3) joining nearby changed pixels into one blob"
    )
    colour: Flag = Field(
        True,
        description="compare colour, not just grey (`false`: grey only, cheaper): an object as bright as "
        "the background behind it differs only in colour",
    )
    normalize: Flag = Field(
        True, description="match each frame's brightness and contrast to the background's (global flicker)"
    )
    lighting_area: Annotated[Number, Field(gt=0, le=1)] = Field(
        0.8,
        description="a change over more than this fraction of the frame is a lighting change, not motion: "
        "the background is reset (`1`: never)",
    )
    refresh_s: Annotated[Number, Field(gt=0, le=86400)] = Field(
        5.0, description="the model runs at least this often, motion or not (stationary objects stay counted)"
    )
    settle_s: Annotated[Number, Field(ge=0, le=86400)] = Field(
        2.0,
        description="the model keeps running until every tracked object has stayed put this long "
        "(shorter than `objects.stationary_s`: the gate need not wait for the `stationary` flag)",
    )
    masks: PolygonList = Field(
        default_factory=list,
        description="polygons where motion is ignored (`polygon`, `normalized`, `name`), e.g. a clock or a tree",
    )

    @field_validator("blur")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"expected an odd kernel size, got {value}")
        return value


@dataclass(frozen=True)
class MotionResult:
    """One frame's motion: ``motion``; ``area`` (changed pixels of the motion blobs, as a fraction of the
    frame); ``boxes`` of the blobs (frame pixels, x1 y1 x2 y2); ``lighting``: a lighting change was seen."""

    motion: bool
    area: float = 0.0
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    lighting: bool = False
    changed: float = 0.0  # all changed pixels, as a fraction of the unmasked frame


class MotionDetector:
    """Motion in successive frames of one camera (see the module); ``detect(frame) -> MotionResult``."""

    def __init__(self, settings: MotionSettings | None = None, *, key: str = "motion.masks") -> None:
        self.settings = settings or MotionSettings()
        self.key = key
        self.seconds = 0.0  # time spent in detect(), for /metrics
        self._shape: tuple[int, int] | None = None
        self._bg: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the background (the next frame starts a new one)."""
        self._bg = None

    def _setup(self, width: int, height: int) -> None:
        s = self.settings
        check_frame(s.masks, width, height, self.key)
        sw = min(s.width, width)
        sh = max(1, round(height * sw / width))
        valid = np.ones((sh, sw), dtype=np.uint8)
        scale = np.array([sw / width, sh / height])
        for mask in s.masks:
            cv2.fillPoly(valid, [np.round(mask.points(width, height) * scale).astype(np.int32)], 0)
        self._shape = (height, width)
        self._small = (sw, sh)
        self._scale = (width / sw, height / sh)
        self._valid = valid
        self._n_valid = int(np.count_nonzero(valid))
        self._min_pixels = max(1, round(s.min_area * sw * sh))
        self._bg = None

    def _small_frame(self, frame: np.ndarray) -> np.ndarray:
        """The downscaled, blurred float32 frame: BGR with ``colour`` (grey input stays grey), else grey."""
        # INTER_LINEAR (a 2x2 sample per output pixel) costs an eighth of INTER_AREA on a 640x480 BGR frame;
        # the blur below averages the sensor noise that area averaging would have.
        small = cv2.resize(frame, self._small, interpolation=cv2.INTER_LINEAR)
        colour = self.settings.colour
        if small.ndim == 3 and small.shape[2] == 4:
            small = cv2.cvtColor(small, cv2.COLOR_BGRA2BGR if colour else cv2.COLOR_BGRA2GRAY)
        elif small.ndim == 3 and small.shape[2] == 3:
            small = small if colour else cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        elif small.ndim == 3:
            small = small[..., 0]
        k = self.settings.blur
        if k > 1:
            small = cv2.GaussianBlur(small, (k, k), 0)
        return small.astype(np.float32)

    def detect(self, frame: np.ndarray) -> MotionResult:
        """Compare ``frame`` (BGR, BGRA or grey, any size) with the background, then update it."""
        start = time.perf_counter()
        try:
            return self._detect(frame)
        finally:
            self.seconds += time.perf_counter() - start

    def _detect(self, frame: np.ndarray) -> MotionResult:
        s = self.settings
        h, w = frame.shape[:2]
        if self._shape != (h, w):
            self._setup(w, h)
        cur = self._small_frame(frame)
        bg = self._bg
        if bg is None or bg.shape != cur.shape or self._n_valid == 0:  # first frame, or grey <-> colour
            self._bg = cur
            return MotionResult(False)
        target = cur
        if s.normalize:  # per channel
            mf, sf = (v.reshape(-1) for v in cv2.meanStdDev(cur, mask=self._valid))
            mb, sb = (v.reshape(-1) for v in cv2.meanStdDev(bg, mask=self._valid))
            ok = (sf > 1.0) & (sb > 1.0)
            gain = np.where(ok, np.clip(sb / np.where(ok, sf, 1.0), 1 / 3, 3.0), 1.0)
            # target = (cur - mf) * gain + mb, per channel, in one cv2 pass (numpy's takes 50x longer)
            affine = np.hstack([np.diag(gain), (mb - mf * gain)[:, None]]).astype(np.float32)
            target = cv2.transform(cur[..., None] if cur.ndim == 2 else cur, affine).reshape(cur.shape)
        diff = cv2.absdiff(target, bg)
        if diff.ndim == 3:  # a pixel changed when any colour channel did (cv2: numpy's max(axis=2) is 10x slower)
            b, g, r = cv2.split(diff)
            diff = cv2.max(cv2.max(b, g), r)
        changed = (diff > s.threshold).astype(np.uint8)
        changed &= self._valid
        n_changed = int(np.count_nonzero(changed))
        fraction = n_changed / self._n_valid
        if fraction > s.lighting_area:
            self._bg = cur
            return MotionResult(False, lighting=True, changed=fraction)
        cv2.accumulateWeighted(cur, bg, s.alpha)
        if n_changed < self._min_pixels:
            return MotionResult(False, changed=fraction)
        grown = cv2.dilate(changed, None, iterations=s.dilate) if s.dilate else changed
        n, labels, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
        pixels = np.bincount(labels[changed > 0], minlength=n)[1:]  # changed pixels per blob (not dilated)
        big = np.flatnonzero(pixels >= self._min_pixels)
        if len(big) == 0:
            return MotionResult(False, changed=fraction)
        sx, sy = self._scale
        boxes = [
            (
                int(stats[i + 1, 0] * sx),
                int(stats[i + 1, 1] * sy),
                int(np.ceil((stats[i + 1, 0] + stats[i + 1, 2]) * sx)),
                int(np.ceil((stats[i + 1, 1] + stats[i + 1, 3]) * sy)),
            )
            for i in big
        ]
        area = float(pixels[big].sum()) / (self._small[0] * self._small[1])
        return MotionResult(True, area=area, boxes=boxes, changed=fraction)


@dataclass(frozen=True)
class GateDecision:
    """Whether the model runs on this frame, why (:data:`RUN_REASONS` / :data:`SKIP_REASONS`), and the
    frame's motion (``None`` with gating off)."""

    run: bool
    reason: str
    motion: MotionResult | None = None


class MotionGate:
    """Per frame: run the model or skip it (see the module). ``check`` once per frame; a ``run`` decision
    means the caller runs the model now (the ``refresh_s`` clock restarts)."""

    def __init__(
        self,
        settings: MotionSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        key: str = "motion.masks",
    ) -> None:
        self.settings = settings or MotionSettings()
        self.detector = MotionDetector(self.settings, key=key)
        self.clock = clock
        self.ran: dict[str, int] = dict.fromkeys(RUN_REASONS, 0)
        self.skipped: dict[str, int] = dict.fromkeys(SKIP_REASONS, 0)
        self._last_run: float | None = None

    def check(self, frame: np.ndarray, tracks_active: bool = False, now: float | None = None) -> GateDecision:
        """The decision for ``frame``; ``tracks_active``: a non-stationary track is alive; ``now``: the
        frame's time in seconds (default: ``clock()``)."""
        if not self.settings.enabled:
            self.ran["always"] += 1
            return GateDecision(True, "always")
        now = self.clock() if now is None else now
        motion = self.detector.detect(frame)
        if motion.motion:
            reason = "motion"
        elif tracks_active:
            reason = "tracks"
        elif self._last_run is None or now - self._last_run >= self.settings.refresh_s:
            reason = "refresh"
        else:
            reason = "lighting" if motion.lighting else "static"
            self.skipped[reason] += 1
            return GateDecision(False, reason, motion)
        self._last_run = now
        self.ran[reason] += 1
        return GateDecision(True, reason, motion)

    def reset(self) -> None:
        """Start over after a source restart: new background, and the next frame runs."""
        self.detector.reset()
        self._last_run = None

    def counts(self) -> dict[str, dict[str, int]]:
        """``{"run": {reason: frames}, "skip": {reason: frames}}`` since start (every reason, zeros too)."""
        return {"run": dict(self.ran), "skip": dict(self.skipped)}

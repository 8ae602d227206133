"""Multi-object tracking: a stable integer ID for every object the detector sees, through short misses,
crossings and partial occlusions. Pure numpy (no scipy, no OpenCV).

    tracker = Tracker(TrackerSettings())
    for frame in frames:                                  # t: the frame's capture time, in seconds
        for track in tracker.update(boxes, scores, class_ids, frame.timestamp):
            print(track.id, track.box, track.detection)   # detection: index into this call's inputs
        for track in tracker.ended():                      # tracks that ended since the last call
            print(track.id, track.end_reason, track.first_t, track.last_t)

**Motion model.** ByteTrack's constant-velocity Kalman filter with BoT-SORT's state: the box centre, width
and height ``(cx, cy, w, h)`` and their velocities (ByteTrack itself filters the aspect ratio ``w / h``,
which reacts slowly when a box is cut by the border or by an occluder). Noise is relative to the box's size
(x and w to its width, y and h to its height), as in ByteTrack, but **per second instead of per frame**, so
one setting works at 5 and at 30 fps and across skipped frames: each update predicts by the real time since
the previous one (``dt`` from the timestamps), the process noise grows with ``dt`` (a random walk on
position and velocity), and velocities are in pixels per second. The defaults are ByteTrack's values
(``1/20`` of the box per frame for position, ``1/160`` for velocity, ``1/20`` measurement noise) converted
at its 30 fps. Because the four coordinates are independent (diagonal noise, ``H = [I 0]``), the 8x8
covariance is four 2x2 blocks; the filter keeps mean, velocity and those blocks as one ``[tracks, 5, 4]``
array and runs every track at once in a handful of numpy operations (exactly the 8x8 filter).

**Gating.** IoU is taken between the predicted box and the detection both grown by ``gate_sigmas``
standard deviations of the track's predicted position (per axis, on every side). A well-followed track
has a few pixels of uncertainty, so this is plain IoU; a new track (velocity unknown) or one lost for a
while has a wide gate, so it still overlaps its object after a fast move, a turn or a long time step
(5 fps, skipped frames). Without it, tracks of objects moving more than a box per frame at 5 fps never
get confirmed.

**Association** (ByteTrack's two stages), by that IoU, only within a class unless ``class_aware=False``:

1. detections scoring at least ``high_score`` against confirmed tracks, visible or lost (IoU >= ``match_iou``);
   then, with ``recover_lost``, the lost tracks left against the high-score detections left by IoU with the
   track's last *detected* box (OC-SORT's recovery: a prediction that overshot a stop or a turn);
2. detections scoring in ``[low_score, high_score)`` against the confirmed tracks left, visible or lost
   (IoU >= ``low_match_iou``): a weak detection continues a track, never starts one. (ByteTrack takes
   visible tracks only; a partly hidden object is often missed once and then detected weakly, and
   taking lost tracks too removes a fifth of the misses and half the ID switches on the synthetic videos);
3. the high-score detections left against tentative tracks (IoU >= ``tentative_match_iou``);
4. each high-score detection still left that scores at least ``new_track_score`` starts a tentative track.

Each stage is an optimal assignment (the largest total IoU): the IoU graph is split into connected
components, a component with one candidate on a side is settled directly, and the rest (objects that
overlap, typically 2x2) go to a small Hungarian solver (:func:`assign_max`).

**Life cycle.** ``tentative`` until ``min_hits`` matches in a row (a tentative track that misses an update
ends, reason ``unconfirmed``, and is not reported by :meth:`Tracker.ended`); then ``confirmed``, when it
gets its ID (1, 2, 3, ... per tracker, in order of confirmation); ``lost`` while unmatched, still predicted
and matchable in stage 1; ended (reason ``lost``) once unseen for more than ``max_age_s`` seconds of
tracked time (or more than ``max_age_updates`` updates, if set). :meth:`Tracker.still` tells the tracker
that a frame showed no motion (motion gating skipped inference): nothing moves, velocities become zero and
that time does not count towards ``max_age_s``. :meth:`Tracker.close` ends every track (reason ``closed``).

``Track`` objects are updated in place by later updates; :meth:`Track.to_dict` takes a snapshot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = [
    "CLOSED",
    "CONFIRMED",
    "LOST",
    "TENTATIVE",
    "TIMED_OUT",
    "UNCONFIRMED",
    "EndReason",
    "Track",
    "TrackState",
    "Tracker",
    "TrackerSettings",
    "assign_max",
]

TrackState = Literal["tentative", "confirmed", "lost", "ended"]
EndReason = Literal["lost", "unconfirmed", "closed"]
TENTATIVE: TrackState = "tentative"
CONFIRMED: TrackState = "confirmed"
LOST: TrackState = "lost"
ENDED: TrackState = "ended"
TIMED_OUT: EndReason = "lost"  # unseen for longer than max_age
UNCONFIRMED: EndReason = "unconfirmed"  # a tentative track missed before min_hits
CLOSED: EndReason = "closed"  # Tracker.close(): end of the stream

_MIN_SIDE = 1.0  # pixels: predicted widths and heights never shrink below this
_SCALE = np.array([2, 3, 2, 3])  # per coordinate (cx, cy, w, h), the side its noise is relative to


@dataclass(frozen=True)
class TrackerSettings:
    """How the tracker associates, confirms and ends tracks. Times are in seconds, scores in [0, 1].

    The defaults suit 5-30 fps: ``max_age_s = 1.0`` keeps a lost track for ByteTrack's 30 frames at 30 fps
    and 5 updates at 5 fps; ``min_hits = 2`` confirms a track on its second consecutive detection (0.07 s
    at 30 fps, 0.4 s at 5 fps). The noise figures are fractions of the box's side (per second, or per
    square root of a second for the random walks). The two-stage split only helps if the detector reports
    weak detections: run it with a score threshold of about ``low_score`` and let the tracker filter.
    ``gate_sigmas = 2`` and ``recover_lost`` were chosen on synthetic videos (seeds 0-5 of
    :mod:`edgedet.edge.datasets.synthetic_tracks` at 5, 15 and 30 fps); the benchmark scores other seeds.
    """

    high_score: float = 0.5  # stage 1: these detections match any confirmed track and may start tracks
    low_score: float = 0.1  # detections below are ignored; [low_score, high_score) is stage 2 only
    new_track_score: float = 0.6  # an unmatched high-score detection starts a track from this score up
    match_iou: float = 0.2  # stage 1 (ByteTrack: cost 0.8)
    low_match_iou: float = 0.5  # stage 2 (ByteTrack: 0.5)
    tentative_match_iou: float = 0.3  # stage 3 (ByteTrack: cost 0.7)
    class_aware: bool = True  # a detection only continues a track of its own class
    min_hits: int = 2  # matches in a row that confirm a tentative track
    max_age_s: float = 1.0  # a lost track ends once unseen for longer than this
    max_age_updates: int | None = None  # ... or unseen for more than this many updates (None: no limit)
    position_noise: float = 0.27  # process noise of cx, cy, w, h, per sqrt(s) (ByteTrack 1/20 per frame)
    velocity_noise: float = 1.0  # process noise of the velocities, per s per sqrt(s) (ByteTrack 1/160 per frame)
    measurement_noise: float = 0.05  # detection noise (ByteTrack 1/20)
    initial_velocity_std: float = 2.0  # a new track's velocity uncertainty, sides per second
    gate_sigmas: float = 2.0  # IoU on boxes grown by this many standard deviations of the track's position
    recover_lost: bool = True  # also match lost tracks by their last detected box (OC-SORT's recovery)

    def __post_init__(self) -> None:
        for name in ("high_score", "low_score", "new_track_score", "match_iou", "low_match_iou"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: expected a value in [0, 1], got {value}")
        if not 0.0 <= self.tentative_match_iou <= 1.0:
            raise ValueError(f"tentative_match_iou: expected a value in [0, 1], got {self.tentative_match_iou}")
        if self.low_score > self.high_score:
            raise ValueError(f"low_score ({self.low_score}) must not exceed high_score ({self.high_score})")
        if self.new_track_score < self.high_score:
            raise ValueError(f"new_track_score ({self.new_track_score}) must be at least high_score")
        if self.min_hits < 1:
            raise ValueError(f"min_hits: expected at least 1, got {self.min_hits}")
        if not self.max_age_s > 0:
            raise ValueError(f"max_age_s: expected a positive number of seconds, got {self.max_age_s}")
        if self.max_age_updates is not None and self.max_age_updates < 1:
            raise ValueError(f"max_age_updates: expected at least 1 or None, got {self.max_age_updates}")
        for name in ("position_noise", "velocity_noise", "measurement_noise", "initial_velocity_std"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)}")
        if not self.gate_sigmas >= 0:
            raise ValueError(f"gate_sigmas: expected a number >= 0, got {self.gate_sigmas}")


@dataclass(eq=False, slots=True)
class Track:
    """One tracked object. ``box`` is the filtered corner box (x1, y1, x2, y2) in frame pixels: the
    posterior after a match, the prediction while lost. ``id`` is 0 until the track is confirmed.
    ``age`` counts the updates since the track started, ``hits`` those that matched it, ``misses`` the
    updates in a row that did not; ``detection`` is the index of the detection it matched in the latest
    update (-1: none). ``first_t`` / ``last_t``: the first and the latest time a detection matched it.
    ``velocity``: of the box centre, pixels per second."""

    id: int
    class_id: int
    box: tuple[float, float, float, float]
    score: float
    first_t: float
    last_t: float
    first_box: tuple[float, float, float, float]
    best_score: float
    hits: int = 1
    age: int = 1
    misses: int = 0
    detection: int = -1
    state: TrackState = TENTATIVE
    velocity: tuple[float, float] = (0.0, 0.0)
    end_reason: EndReason | None = None
    end_t: float | None = None
    unseen_s: float = field(default=0.0, repr=False)  # tracked time since the last match

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot."""
        return {
            "id": self.id,
            "class_id": self.class_id,
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "best_score": round(float(self.best_score), 4),
            "state": self.state,
            "hits": self.hits,
            "age": self.age,
            "first_t": self.first_t,
            "last_t": self.last_t,
            "first_box": [round(float(v), 2) for v in self.first_box],
            "velocity": [round(float(v), 2) for v in self.velocity],
            "end_reason": self.end_reason,
            "end_t": self.end_t,
        }


def _hungarian_min(cost: list[list[float]], n: int, m: int) -> list[int]:
    """Column of each row in a minimum-cost assignment of ``cost`` (``n`` rows of ``m`` columns, ``n <= m``):
    shortest augmenting paths with potentials, O(n^2 m). Plain Python: for the blocks tracking makes
    (2x2 to 20x20) it is several times faster than the same loop vectorised with numpy."""
    inf = math.inf
    u = [0.0] * (n + 1)
    v = [0.0] * (m + 1)
    p = [0] * (m + 1)  # p[j]: the row (1-based) holding column j; p[0]: the row being placed
    way = [0] * (m + 1)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = [inf] * (m + 1)
        used = [False] * (m + 1)
        while True:
            used[j0] = True
            i0 = p[j0]
            row = cost[i0 - 1]
            ui = u[i0]
            delta = inf
            j1 = 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = row[j - 1] - ui - v[j]
                    if cur < minv[j]:
                        minv[j] = cur
                        way[j] = j0
                    if minv[j] < delta:
                        delta = minv[j]
                        j1 = j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    cols = [0] * n
    for j in range(1, m + 1):
        if p[j]:
            cols[p[j] - 1] = j - 1
    return cols


def _solve_block(rows: list[int], cols: list[int], weight: dict[tuple[int, int], float]) -> list[tuple[int, int]]:
    """Maximum-weight matching of one connected block; ``weight`` holds its allowed ``(row, col)`` pairs."""
    if len(rows) == 1 or len(cols) == 1:
        return [max(weight, key=weight.__getitem__)]
    flip = len(rows) > len(cols)
    a, b = (cols, rows) if flip else (rows, cols)
    if flip:
        cost = [[-weight.get((y, x), 0.0) for y in b] for x in a]
    else:
        cost = [[-weight.get((x, y), 0.0) for y in b] for x in a]
    picks = _hungarian_min(cost, len(a), len(b))
    pairs = [(b[j], a[i]) for i, j in enumerate(picks)] if flip else [(a[i], b[j]) for i, j in enumerate(picks)]
    return [pair for pair in pairs if pair in weight]  # a row left on a barred (zero) pair stays unmatched


def assign_max(weights: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching of rows to columns by ``weights [n, m]`` (e.g. IoU): among the pairs
    with a weight of at least ``threshold`` (and above 0), the matching with the largest total weight.

    Returns ``(rows, cols)`` index arrays. A pair alone on its row and its column is taken as is; the
    other allowed pairs are split into connected blocks (objects that overlap), each solved exactly.
    """
    n, m = weights.shape
    empty = np.empty(0, np.intp)
    if n == 0 or m == 0:
        return empty, empty
    ri, ci = np.nonzero(weights >= threshold if threshold > 0 else weights > 0)
    if len(ri) == 0:
        return empty, empty
    alone = (np.bincount(ri, minlength=n)[ri] == 1) & (np.bincount(ci, minlength=m)[ci] == 1)
    if alone.all():
        return ri, ci
    rows: list[int] = ri[alone].tolist()
    cols: list[int] = ci[alone].tolist()
    rest_r, rest_c = ri[~alone], ci[~alone]
    pairs = zip(rest_r.tolist(), rest_c.tolist(), strict=True)
    weight = dict(zip(pairs, weights[rest_r, rest_c].tolist(), strict=True))
    row_cols: dict[int, list[int]] = {}
    col_rows: dict[int, list[int]] = {}
    for r, c in weight:
        row_cols.setdefault(r, []).append(c)
        col_rows.setdefault(c, []).append(r)
    seen_rows: set[int] = set()
    seen_cols: set[int] = set()
    for start in row_cols:
        if start in seen_rows:
            continue
        seen_rows.add(start)
        b_rows, b_cols, stack = [start], [], [start]
        while stack:  # rows and columns joined by allowed pairs form one block
            for c in row_cols[stack.pop()]:
                if c not in seen_cols:
                    seen_cols.add(c)
                    b_cols.append(c)
                    for r in col_rows[c]:
                        if r not in seen_rows:
                            seen_rows.add(r)
                            b_rows.append(r)
                            stack.append(r)
        if len(b_rows) == len(row_cols):  # the only block
            block = weight
        else:
            block = {(r, c): weight[(r, c)] for r in b_rows for c in row_cols[r]}
        for r, c in _solve_block(b_rows, b_cols, block):
            rows.append(r)
            cols.append(c)
    return np.asarray(rows, np.intp), np.asarray(cols, np.intp)


def _checked(boxes: Any, scores: Any, class_ids: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The detections as ``[N, 4]`` float64, ``[N]`` float64 and ``[N]`` int64, or a clear ``ValueError``."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes: expected shape [N, 4], got {list(boxes.shape)}")
    if not np.isfinite(boxes).all():
        raise ValueError("boxes: non-finite value (NaN or inf)")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    class_ids = np.asarray(class_ids).reshape(-1).astype(np.int64, copy=False)
    if len(scores) != len(boxes) or len(class_ids) != len(boxes):
        raise ValueError(
            f"boxes, scores and class_ids must have one entry per detection, got {len(boxes)}, "
            f"{len(scores)} and {len(class_ids)}"
        )
    return boxes, scores, class_ids


def _iou(a: np.ndarray, b: np.ndarray, margin: np.ndarray | None = None) -> np.ndarray:
    """IoU of every box of ``a [N, 4]`` with every box of ``b [M, 4]`` (``edgedet.edge.core.boxes.pairwise_iou``
    without its input checks, done once in ``update``). With ``margin [N, 2]`` (x, y), each pair is compared
    with both boxes grown by row ``i``'s margin on every side: an uncertain track (new, or lost for a while)
    still overlaps a detection that moved further than its box."""
    ax1, ay1, ax2, ay2 = a.T
    bx1, by1, bx2, by2 = b.T
    iw = np.minimum(ax2[:, None], bx2) - np.maximum(ax1[:, None], bx1)
    ih = np.minimum(ay2[:, None], by2) - np.maximum(ay1[:, None], by1)
    wa, ha = ax2 - ax1, ay2 - ay1
    wb, hb = np.maximum(bx2 - bx1, 0.0), np.maximum(by2 - by1, 0.0)
    if margin is None:
        union = (wa * ha)[:, None] + wb * hb
    else:
        gx, gy = 2 * margin[:, :1], 2 * margin[:, 1:]  # [N, 1]
        iw += gx
        ih += gy
        union = ((wa + gx[:, 0]) * (ha + gy[:, 0]))[:, None] + (wb + gx) * (hb + gy)
    np.maximum(iw, 0.0, out=iw)
    np.maximum(ih, 0.0, out=ih)
    inter = iw * ih
    union -= inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _xyxy_to_state(boxes: np.ndarray) -> np.ndarray:
    wh = np.maximum(boxes[:, 2:] - boxes[:, :2], _MIN_SIDE)
    return np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, wh], axis=1)


def _state_to_xyxy(x: np.ndarray) -> np.ndarray:
    half = x[:, 2:] / 2
    return np.concatenate([x[:, :2] - half, x[:, :2] + half], axis=1)


class Tracker:
    """The multi-object tracker; see the module docstring. Not thread-safe: one caller at a time."""

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self._tracks: list[Track] = []
        # per track and coordinate (cx, cy, w, h): mean, velocity (per second), and the 2x2 covariance
        # block (position variance, cross term, velocity variance): [tracks, 5, 4]
        self._s = np.zeros((0, 5, 4))
        self._obs = np.zeros((0, 4))  # each track's latest matched detection box
        self._cls = np.zeros(0, np.int64)
        self._t: float | None = None
        self._next_id = 1
        self._ended: list[Track] = []
        self.updates = 0
        self.unconfirmed_ended = 0  # tentative tracks dropped so far (false starts)

    # ---------------------------------------------------------------- state

    @property
    def tracks(self) -> list[Track]:
        """Every live track: tentative, confirmed (visible) and lost."""
        return list(self._tracks)

    @property
    def time(self) -> float | None:
        """The timestamp of the latest update (None before the first)."""
        return self._t

    def _scale(self, x: np.ndarray) -> np.ndarray:
        """Per coordinate, the side the noise is relative to: width for cx and w, height for cy and h."""
        return x[:, _SCALE]

    def _predict(self, dt: float) -> None:
        if not len(self._tracks):
            return
        s = self.settings
        if dt > 0:
            lost = [i for i, t in enumerate(self._tracks) if t.state == LOST]
            if lost:  # a lost box keeps its size (ByteTrack zeroes the height velocity)
                self._s[lost, 1, 2:] = 0.0
            side2 = self._scale(self._s[:, 0]) ** 2
            # mean and covariance blocks move together: x += dt v; pp += 2 dt pv + dt^2 vv; pv += dt vv
            step = np.array(
                [
                    [1.0, dt, 0.0, 0.0, 0.0],
                    [0.0, 1.0, 0.0, 0.0, 0.0],
                    [0.0, 0.0, 1.0, 2 * dt, dt * dt],
                    [0.0, 0.0, 0.0, 1.0, dt],
                    [0.0, 0.0, 0.0, 0.0, 1.0],
                ]
            )
            noise = np.array([0.0, 0.0, s.position_noise**2 * dt, 0.0, s.velocity_noise**2 * dt])
            self._s = step @ self._s + noise[:, None] * side2[:, None, :]
            np.maximum(self._s[:, 0, 2:], _MIN_SIDE, out=self._s[:, 0, 2:])

    def _correct(self, idx: np.ndarray, z: np.ndarray) -> None:
        """Kalman update of tracks ``idx`` with measured states ``z [k, 4]``."""
        r = (self.settings.measurement_noise * self._scale(z)) ** 2
        st = self._s[idx]
        x, v, pp, pv, vv = st.transpose(1, 0, 2)
        s_inv = 1.0 / (pp + r)
        kp, kv = pp * s_inv, pv * s_inv
        y = z - x
        x += kp * y
        np.maximum(x[:, 2:], _MIN_SIDE, out=x[:, 2:])
        v += kv * y
        vv -= kv * pv
        kp = 1.0 - kp
        pp *= kp
        pv *= kp
        self._s[idx] = st

    def _end(self, track: Track, reason: EndReason, t: float) -> None:
        track.state = ENDED
        track.end_reason = reason
        track.end_t = t
        track.detection = -1
        if track.id:
            self._ended.append(track)
        else:
            self.unconfirmed_ended += 1

    def _drop(self, keep: np.ndarray) -> None:
        if keep.all():
            return
        self._tracks = [t for t, k in zip(self._tracks, keep.tolist(), strict=True) if k]
        self._s = self._s[keep]
        self._obs = self._obs[keep]
        self._cls = self._cls[keep]

    def _sync_boxes(self) -> None:
        if not self._tracks:
            return
        boxes = _state_to_xyxy(self._s[:, 0]).tolist()
        vel = self._s[:, 1, :2].tolist()
        for track, box, v in zip(self._tracks, boxes, vel, strict=True):
            track.box = tuple(box)
            track.velocity = tuple(v)

    def _advance(self, t: float) -> float:
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"t: expected a finite timestamp in seconds, got {t}")
        dt = 0.0 if self._t is None else max(t - self._t, 0.0)  # a clock that steps back counts as no time
        self._t = t if self._t is None else max(t, self._t)
        return dt

    # ---------------------------------------------------------------- public API

    def update(
        self,
        boxes: np.ndarray | Sequence[Sequence[float]],
        scores: np.ndarray | Sequence[float],
        class_ids: np.ndarray | Sequence[int],
        t: float,
    ) -> list[Track]:
        """Feed the detections of the frame captured at ``t`` (seconds, any origin, non-decreasing):
        ``boxes [N, 4]`` corner boxes in pixels, ``scores [N]``, ``class_ids [N]``. Returns the confirmed
        tracks matched by a detection of this frame, each with ``detection`` set to that detection's index.
        """
        boxes, scores, class_ids = _checked(boxes, scores, class_ids)
        dt = self._advance(t)
        t = self._t
        self.updates += 1
        self._predict(dt)
        keep = scores >= self.settings.low_score
        det_index = None if keep.all() else np.nonzero(keep)[0]
        if det_index is not None:
            boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
        matched_det, det_used = self._associate(boxes, scores, class_ids)
        hit = np.nonzero(matched_det >= 0)[0]
        if len(hit):
            self._obs[hit] = boxes[matched_det[hit]]
            self._correct(hit, _xyxy_to_state(boxes[matched_det[hit]]))
        self._drop(self._age(matched_det, scores.tolist(), det_index, dt, t))
        new = np.nonzero(~det_used & (scores >= self.settings.new_track_score))[0]
        if len(new):
            self._start(new, boxes, scores, class_ids, det_index, t)
        self._sync_boxes()
        return [tr for tr in self._tracks if tr.detection >= 0 and tr.state == CONFIRMED]

    def _associate(self, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stages of the module docstring: ``(matched detection per track or -1, detections used)``."""
        s, tracks = self.settings, self._tracks
        matched_det = np.full(len(tracks), -1, np.intp)
        det_used = np.zeros(len(boxes), bool)
        if not len(tracks) or not len(boxes):
            return matched_det, det_used
        margin = s.gate_sigmas * np.sqrt(self._s[:, 2, :2]) if s.gate_sigmas > 0 else None
        iou = _iou(_state_to_xyxy(self._s[:, 0]), boxes, margin)
        if s.class_aware:
            iou[self._cls[:, None] != class_ids[None, :]] = 0.0
        states = [tr.state for tr in tracks]
        high = scores >= s.high_score
        confirmed = np.array([st != TENTATIVE for st in states])
        lost = confirmed & ~np.array([st == CONFIRMED for st in states])
        stages = (
            (confirmed, high, s.match_iou, iou),
            (lost, high, s.match_iou, None),  # lost tracks by their last seen box
            (confirmed, ~high, s.low_match_iou, iou),
            (~confirmed, high, s.tentative_match_iou, iou),
        )
        for track_ok, det_ok, threshold, w in stages:
            ti = np.nonzero(track_ok & (matched_det < 0))[0]
            di = np.nonzero(det_ok & ~det_used)[0]
            if not len(ti) or not len(di) or (w is None and not s.recover_lost):
                continue
            if w is None:
                sub = _iou(self._obs[ti], boxes[di], None if margin is None else margin[ti])
                if s.class_aware:
                    sub[self._cls[ti][:, None] != class_ids[di][None, :]] = 0.0
            else:
                sub = w[ti][:, di]
            r, c = assign_max(sub, threshold)
            matched_det[ti[r]] = di[c]
            det_used[di[c]] = True
        return matched_det, det_used

    def _age(
        self, matched_det: np.ndarray, det_scores: list[float], det_index: np.ndarray | None, dt: float, t: float
    ) -> np.ndarray:
        """Hits confirm, misses age, the old end: each track's life after this update; which stay alive."""
        s = self.settings
        alive = np.ones(len(self._tracks), bool)
        for i, (track, d) in enumerate(zip(self._tracks, matched_det.tolist(), strict=True)):
            track.age += 1
            if d >= 0:
                self._hit(track, d if det_index is None else int(det_index[d]), det_scores[d], t)
                continue
            track.detection = -1
            track.misses += 1
            track.unseen_s += dt
            if track.state == TENTATIVE:
                self._end(track, UNCONFIRMED, t)
                alive[i] = False
            elif track.unseen_s > s.max_age_s or (s.max_age_updates is not None and track.misses > s.max_age_updates):
                self._end(track, TIMED_OUT, t)
                alive[i] = False
            else:
                track.state = LOST
        return alive

    def _hit(self, track: Track, detection: int, score: float, t: float) -> None:
        track.detection = detection
        track.hits += 1
        track.misses = 0
        track.unseen_s = 0.0
        track.last_t = t
        track.score = score
        track.best_score = max(track.best_score, score)
        if track.state != TENTATIVE:
            track.state = CONFIRMED
        elif track.hits >= self.settings.min_hits:
            track.state = CONFIRMED
            track.id = self._next_id
            self._next_id += 1

    def _start(
        self,
        new: np.ndarray,
        boxes: np.ndarray,
        scores: np.ndarray,
        class_ids: np.ndarray,
        det_index: np.ndarray | None,
        t: float,
    ) -> None:
        s = self.settings
        x = _xyxy_to_state(boxes[new])
        side2 = self._scale(x) ** 2
        st = np.zeros((len(new), 5, 4))
        st[:, 0] = x
        st[:, 2] = (2 * s.measurement_noise) ** 2 * side2
        st[:, 4] = s.initial_velocity_std**2 * side2
        self._s = np.concatenate([self._s, st])
        self._obs = np.concatenate([self._obs, boxes[new]])
        self._cls = np.concatenate([self._cls, class_ids[new]])
        confirm = s.min_hits <= 1
        for k, box in zip(new.tolist(), boxes[new].tolist(), strict=True):
            score = float(scores[k])
            track = Track(
                id=0,
                class_id=int(class_ids[k]),
                box=tuple(box),
                score=score,
                first_t=t,
                last_t=t,
                first_box=tuple(box),
                best_score=score,
                detection=k if det_index is None else int(det_index[k]),
            )
            if confirm:
                track.state = CONFIRMED
                track.id = self._next_id
                self._next_id += 1
            self._tracks.append(track)

    def still(self, t: float) -> None:
        """The frame at ``t`` showed no motion (e.g. motion gating skipped inference): every track stays
        where it is with zero velocity, and the time since the previous call does not count towards
        ``max_age_s``."""
        self._advance(t)
        if len(self._tracks):
            self._s[:, 1] = 0.0
            self._sync_boxes()

    def ended(self) -> list[Track]:
        """The confirmed tracks that ended since the previous call (each once), oldest first."""
        out, self._ended = self._ended, []
        return out

    def close(self, t: float | None = None) -> list[Track]:
        """End every live track (confirmed ones with reason ``closed``) and return :meth:`ended`."""
        when = self._t if t is None else float(t)
        for track in self._tracks:
            self._end(track, UNCONFIRMED if track.state == TENTATIVE else CLOSED, when if when is not None else 0.0)
        self._drop(np.zeros(len(self._tracks), bool))
        return self.ended()

"""``edgedet bench tracking``: our tracker against the ones a camera project would otherwise pull in.

Every tracker runs in this one process on identical detections: the noisy ground-truth detections of
synthetic tracking videos (:mod:`edgedet.edge.datasets.synthetic_tracks`: crossings, stops, entries and
exits, a still stretch, flicker), or, with ``--model``, the detections of a real model on those videos.

* ``ours``: :class:`edgedet.edge.camera.tracking.Tracker` with its defaults, all detections (>= 0.1).
* ``norfair-frigate``: norfair configured as Frigate's ``NorfairTracker`` (its default tracker): a distance
  on the bottom centre and the size change normalised by the estimate's size (written here after Frigate's),
  threshold 2.5, ``OptimizedKalmanFilterFactory(R=3.4)``, ``initialization_delay = fps / 2`` and
  ``hit_counter_max = 5 * fps`` (Frigate's ``min_initialized`` and ``max_disappeared`` defaults), fed the
  detections scoring >= 0.5 (Frigate's default ``min_score``), labels kept apart as Frigate does.
* ``norfair-iou``: norfair with its own ``"iou"`` distance (threshold 0.7), ``hit_counter_max = fps``.
* ``sv-bytetrack``: ``supervision.ByteTrack`` (supervision <= 0.26; frame-based), defaults, ``frame_rate=fps``.
* ``trackers-bytetrack``: Roboflow ``trackers.ByteTrackTracker`` (what supervision 0.27+ points to),
  defaults, ``frame_rate=fps``, fed the timestamps.

A tracker reports, per frame, the objects it matched to a detection of that frame (with their IDs); each
library's own box for them. Quality comes from py-motmetrics (MOTA, IDF1, ID switches, IoU >= 0.5) and,
where TrackEval imports, HOTA. Cost is the median wall time of one update, input conversion included (the
daemon holds numpy arrays), on streams of about 5, 20 and 50 objects, trackers interleaved round by round.

The third-party packages are never installed into the project's environment (supervision and TrackEval
require ``opencv-python``, which clashes with ``opencv-python-headless``; norfair pins ``numpy<2``); the
Makefile's ``bench-tracking`` target builds a separate environment for them. A tracker whose package does not
import is listed as unavailable; without motmetrics the quality columns come from a small built-in CLEAR-MOT
count (MOTA and ID switches, no IDF1).
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgedet.edge.bench.figures import median, print_figures
from edgedet.edge.camera.tracking import Tracker, TrackerSettings, assign_max
from edgedet.edge.core.boxes import pairwise_iou
from edgedet.edge.datasets.synthetic_tracks import FrameDetections, TrackFrame, noisy_detections, render_tracks

__all__ = [
    "EvalSequence",
    "bench_cost",
    "bench_quality",
    "clear_mot_counts",
    "cli",
    "cost_streams",
    "make_adapters",
    "make_sequences",
    "mot_accumulator",
    "mot_summary",
]

Boxes = np.ndarray


@dataclass(frozen=True)
class EvalSequence:
    """One evaluation sequence: the processed frames' truth and detections (same length), and its rate."""

    name: str
    group: str
    fps: float
    truth: tuple[TrackFrame, ...]
    detections: tuple[FrameDetections, ...]


# ----------------------------------------------------------------------------------------------- adapters


class Adapter:
    """A tracker behind one interface: ``reset(fps)`` then ``step(...)`` per frame -> (boxes [K, 4], ids [K])."""

    name = "?"
    package = ""

    def reset(self, fps: float) -> None:
        raise NotImplementedError

    def step(self, boxes: Boxes, scores: np.ndarray, class_ids: np.ndarray, t: float) -> Any:
        """The timed part: convert the inputs and update; returns the library's own result."""
        raise NotImplementedError

    def output(self, result: Any) -> tuple[Boxes, list[int]]:
        """Untimed: the objects matched in this frame, as boxes and IDs."""
        raise NotImplementedError


class Ours(Adapter):
    name = "ours"
    package = "edgedet"

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()

    def reset(self, fps: float) -> None:
        self.tracker = Tracker(self.settings)

    def step(self, boxes, scores, class_ids, t):
        return self.tracker.update(boxes, scores, class_ids, t)

    def output(self, result):
        return np.array([tr.box for tr in result], float).reshape(-1, 4), [tr.id for tr in result]


def frigate_style_distance(detection_points: np.ndarray, estimate: np.ndarray) -> float:
    """Frigate's norfair distance, restated: the bottom-centre offset relative to the estimate's width and
    height, and the relative growth of width and height (larger / smaller - 1), combined as a Euclidean norm."""
    (ex1, ey1), (ex2, ey2) = estimate
    (dx1, dy1), (dx2, dy2) = detection_points
    ew, eh = ex2 - ex1, ey2 - ey1
    dw, dh = dx2 - dx1, dy2 - dy1
    off_x = ((dx1 + dx2) / 2 - (ex1 + ex2) / 2) / ew
    off_y = (max(dy1, dy2) - max(ey1, ey2)) / eh
    grow_w = max(ew, dw) / min(ew, dw) - 1.0
    grow_h = max(eh, dh) / min(eh, dh) - 1.0
    return math.sqrt(off_x * off_x + off_y * off_y + grow_w * grow_w + grow_h * grow_h)


class Norfair(Adapter):
    package = "norfair"

    def __init__(self, flavour: str = "frigate", min_score: float = 0.5) -> None:
        import norfair  # noqa: F401  (fails early when missing)

        self.flavour = flavour
        self.name = f"norfair-{flavour}"
        self.min_score = min_score

    def reset(self, fps: float) -> None:
        from norfair import Tracker as NorfairTracker
        from norfair.filter import OptimizedKalmanFilterFactory

        logging.disable(logging.WARNING)  # norfair warns that a scalar distance function is slow (Frigate's is)
        try:
            if self.flavour == "frigate":
                hit_max = max(int(5 * fps), 2)
                self.tracker = NorfairTracker(
                    distance_function=lambda det, obj: frigate_style_distance(det.points, obj.estimate),
                    distance_threshold=2.5,
                    initialization_delay=min(int(fps / 2), hit_max - 1),
                    hit_counter_max=hit_max,
                    filter_factory=OptimizedKalmanFilterFactory(R=3.4),
                )
            else:
                self.tracker = NorfairTracker(
                    distance_function="iou", distance_threshold=0.7, hit_counter_max=max(round(fps), 2)
                )
        finally:
            logging.disable(logging.NOTSET)

    def step(self, boxes, scores, class_ids, t):
        from norfair import Detection

        keep = np.nonzero(scores >= self.min_score)[0]
        dets = [
            Detection(points=boxes[i].reshape(2, 2).astype(np.float64), label=int(class_ids[i]), data=i) for i in keep
        ]
        return dets, self.tracker.update(detections=dets)

    def output(self, result):
        dets, objects = result
        now = {id(d) for d in dets}
        matched = [o for o in objects if id(o.last_detection) in now]
        boxes = np.array([o.last_detection.points.reshape(4) for o in matched], float).reshape(-1, 4)
        return boxes, [int(o.id) for o in matched]


class SvByteTrack(Adapter):
    name = "sv-bytetrack"
    package = "supervision"

    def __init__(self) -> None:
        import supervision

        if not hasattr(supervision, "ByteTrack"):
            raise ImportError(f"supervision {supervision.__version__} has no ByteTrack (removed after 0.26)")

    def reset(self, fps: float) -> None:
        import supervision

        self.tracker = supervision.ByteTrack(frame_rate=max(round(fps), 1))

    def step(self, boxes, scores, class_ids, t):
        import supervision

        dets = supervision.Detections(
            xyxy=boxes.astype(np.float32), confidence=scores.astype(np.float32), class_id=class_ids.astype(int)
        )
        return self.tracker.update_with_detections(dets)

    def output(self, result):
        return result.xyxy.astype(float).reshape(-1, 4), [int(i) for i in result.tracker_id]


class TrackersByteTrack(Adapter):
    name = "trackers-bytetrack"
    package = "trackers"

    def __init__(self) -> None:
        import trackers  # noqa: F401

    def reset(self, fps: float) -> None:
        import trackers

        self.tracker = trackers.ByteTrackTracker(frame_rate=float(fps))

    def step(self, boxes, scores, class_ids, t):
        import supervision

        dets = supervision.Detections(
            xyxy=boxes.astype(np.float32), confidence=scores.astype(np.float32), class_id=class_ids.astype(int)
        )
        return self.tracker.update(dets, timestamp=float(t))

    def output(self, result):
        keep = result.tracker_id >= 0
        return result.xyxy[keep].astype(float).reshape(-1, 4), [int(i) for i in result.tracker_id[keep]]


def make_adapters(names: Sequence[str]) -> tuple[list[Adapter], dict[str, str]]:
    """The trackers that import, and why each other one does not."""
    factories: dict[str, Callable[[], Adapter]] = {
        "ours": Ours,
        "norfair-frigate": lambda: Norfair("frigate"),
        "norfair-iou": lambda: Norfair("iou"),
        "sv-bytetrack": SvByteTrack,
        "trackers-bytetrack": TrackersByteTrack,
    }
    adapters, missing = [], {}
    for name in names:
        if name not in factories:
            raise ValueError(f"--trackers: unknown tracker {name!r}, expected some of {', '.join(factories)}")
        try:
            adapters.append(factories[name]())
        except ImportError as exc:
            missing[name] = str(exc)
    return adapters, missing


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


# ------------------------------------------------------------------------------------------------- data


def _drop_frames(seq: EvalSequence, fraction: float, seed: int) -> EvalSequence:
    rng = np.random.default_rng((seed, 99))
    keep = rng.random(len(seq.truth)) >= fraction
    keep[0] = True
    truth = tuple(f for f, k in zip(seq.truth, keep, strict=True) if k)
    dets = tuple(d for d, k in zip(seq.detections, keep, strict=True) if k)
    return EvalSequence(f"{seq.name}-drop", f"{seq.fps:g} fps, {fraction:.0%} dropped", seq.fps, truth, dets)


def _model_detections(model: str, video, threads: int | None) -> tuple[FrameDetections, ...]:
    from edgedet.edge.runtime.detector import Detector

    detector = Detector.from_model(model, threads=threads, score_threshold=0.1)
    out = []
    for frame, truth in zip(video.frames, video.truth, strict=True):
        found = detector.detect(frame)
        out.append(
            FrameDetections(
                index=truth.index,
                t=truth.t,
                boxes=np.array([d.box for d in found], np.float32).reshape(-1, 4),
                scores=np.array([d.score for d in found], np.float32),
                class_ids=np.array([d.class_id for d in found], np.int64),
                truth_ids=np.full(len(found), -1, np.int64),
            )
        )
    return tuple(out)


def make_sequences(
    seeds: Sequence[int],
    seconds: float,
    rates: Sequence[float],
    drop: float = 0.3,
    model: str | None = None,
    threads: int | None = None,
) -> list[EvalSequence]:
    """Per seed and rate, one video and its detections; with ``drop`` > 0 also the 15 fps (or first rate)
    videos with that fraction of frames dropped at random (inference busy: the tracker sees time gaps)."""
    seqs = []
    drop_rate = 15.0 if 15.0 in rates else rates[0]
    for fps in rates:
        for seed in seeds:
            video = render_tracks(round(seconds * fps), seed=seed, fps=fps, images=model is not None)
            dets = tuple(noisy_detections(video, seed)) if model is None else _model_detections(model, video, threads)
            seq = EvalSequence(f"s{seed}-{fps:g}fps", f"{fps:g} fps", fps, video.truth, dets)
            seqs.append(seq)
            if drop > 0 and fps == drop_rate:
                seqs.append(_drop_frames(seq, drop, seed))
    return seqs


# ----------------------------------------------------------------------------------------------- quality


def _run(adapter: Adapter, seq: EvalSequence) -> list[tuple[Boxes, list[int]]]:
    adapter.reset(seq.fps)
    out = []
    for d in seq.detections:
        out.append(adapter.output(adapter.step(d.boxes, d.scores, d.class_ids, d.t)))
    return out


def clear_mot_counts(truth: Sequence[TrackFrame], hyps: Sequence[tuple[Boxes, list[int]]]) -> dict[str, int]:
    """Built-in CLEAR-MOT counts (the fallback without motmetrics): one-to-one matches at IoU >= 0.5 with the
    largest total IoU per frame; a truth object matched to another ID than last time is a switch."""
    last: dict[int, int] = {}
    counts = {"gt": 0, "fp": 0, "fn": 0, "idsw": 0}
    for frame, (boxes, ids) in zip(truth, hyps, strict=True):
        counts["gt"] += len(frame.boxes)
        rows, cols = (np.empty(0, int), np.empty(0, int))
        if len(frame.boxes) and len(boxes):
            rows, cols = assign_max(pairwise_iou(frame.boxes, boxes), 0.5)
        counts["fn"] += len(frame.boxes) - len(rows)
        counts["fp"] += len(boxes) - len(rows)
        for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
            who = int(frame.track_ids[i])
            counts["idsw"] += who in last and last[who] != ids[j]
            last[who] = ids[j]
    return counts


def _hota(truth: Sequence[TrackFrame], hyps: Sequence[tuple[Boxes, list[int]]]) -> dict[str, Any]:
    """TrackEval's HOTA result for one sequence."""
    from trackeval.metrics import HOTA

    gt_map: dict[int, int] = {}
    tr_map: dict[int, int] = {}
    gt_ids, tr_ids, sims = [], [], []
    n_gt = n_tr = 0
    for frame, (boxes, ids) in zip(truth, hyps, strict=True):
        gt_ids.append(np.array([gt_map.setdefault(int(i), len(gt_map)) for i in frame.track_ids], int))
        tr_ids.append(np.array([tr_map.setdefault(int(i), len(tr_map)) for i in ids], int))
        sims.append(
            pairwise_iou(frame.boxes, boxes)
            if len(frame.boxes) and len(boxes)
            else np.zeros((len(frame.boxes), len(boxes)))
        )
        n_gt += len(frame.boxes)
        n_tr += len(boxes)
    data = {
        "num_gt_ids": len(gt_map),
        "num_tracker_ids": len(tr_map),
        "num_gt_dets": n_gt,
        "num_tracker_dets": n_tr,
        "gt_ids": gt_ids,
        "tracker_ids": tr_ids,
        "similarity_scores": sims,
    }
    return HOTA().eval_sequence(data)


def bench_quality(
    adapters: Sequence[Adapter], seqs: Sequence[EvalSequence]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Per tracker and sequence group: MOTA, IDF1, ID switches, FP, FN (motmetrics, or the built-in count),
    and HOTA (TrackEval) where available. Also says which metric packages were used."""
    try:
        import motmetrics as mm
    except ImportError:
        mm = None
    try:
        from trackeval.metrics import HOTA
    except ImportError:
        HOTA = None
    used = {
        "motmetrics": _package_version("motmetrics") if mm else "not installed: built-in CLEAR-MOT count, no IDF1",
        "trackeval": _package_version("trackeval") if HOTA else "not installed: no HOTA",
    }
    groups = list(dict.fromkeys(s.group for s in seqs))
    rows = []
    for adapter in adapters:
        for group in groups:
            members = [s for s in seqs if s.group == group]
            accs, hota_res, counts = [], {}, {"gt": 0, "fp": 0, "fn": 0, "idsw": 0}
            for seq in members:
                hyps = _run(adapter, seq)
                for k, v in clear_mot_counts(seq.truth, hyps).items():
                    counts[k] += v
                if mm is not None:
                    accs.append(mot_accumulator(seq.truth, hyps))
                if HOTA is not None:
                    hota_res[seq.name] = _hota(seq.truth, hyps)
            row: dict[str, Any] = {"tracker": adapter.name, "group": group, "sequences": len(members)}
            row["frames"] = sum(len(s.truth) for s in members)
            if mm is not None:
                row.update(mot_summary(accs, [s.name for s in members]))
            else:
                row.update(
                    mota=1 - (counts["fp"] + counts["fn"] + counts["idsw"]) / max(counts["gt"], 1),
                    idf1=float("nan"),
                    idsw=counts["idsw"],
                    fp=counts["fp"],
                    fn=counts["fn"],
                    gt=counts["gt"],
                )
            row["idsw_builtin"] = counts["idsw"]
            if HOTA is not None:
                combined = HOTA().combine_sequences(hota_res)
                row["hota"] = float(np.mean(combined["HOTA"]))
                row["assa"] = float(np.mean(combined["AssA"]))
            else:
                row["hota"] = row["assa"] = float("nan")
            rows.append(row)
    return rows, used


def mot_accumulator(truth: Sequence[TrackFrame], hyps: Sequence[tuple[Boxes, list[int]]]) -> Any:
    """A ``motmetrics.MOTAccumulator`` of one sequence: per frame the truth IDs, the tracker's IDs and
    their distances (1 - IoU, matches at IoU >= 0.5)."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for frame, (boxes, ids) in zip(truth, hyps, strict=True):
        acc.update(frame.track_ids.tolist(), list(ids), _mot_distances(frame.boxes, boxes))
    return acc


def mot_summary(accs: Sequence[Any], names: Sequence[str]) -> dict[str, Any]:
    """MOTA, IDF1, ID switches, false positives, misses and ground-truth count over ``accs`` together."""
    import motmetrics as mm

    summary = mm.metrics.create().compute_many(
        list(accs),
        metrics=["mota", "idf1", "num_switches", "num_false_positives", "num_misses", "num_objects"],
        names=list(names),
        generate_overall=True,
    )
    overall = summary.loc["OVERALL"]
    return {
        "mota": float(overall["mota"]),
        "idf1": float(overall["idf1"]),
        "idsw": int(overall["num_switches"]),
        "fp": int(overall["num_false_positives"]),
        "fn": int(overall["num_misses"]),
        "gt": int(overall["num_objects"]),
    }


def _mot_distances(truth: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``motmetrics.distances.iou_matrix(..., max_iou=0.5)`` (1 - IoU, NaN where IoU < 0.5), computed here:
    motmetrics 1.4 calls ``np.asfarray``, which numpy 2 removed."""
    truth = np.asarray(truth, float).reshape(-1, 4)
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    if not len(truth) or not len(boxes):
        return np.empty((len(truth), len(boxes)))
    dist = 1.0 - pairwise_iou(truth, boxes)
    dist[dist > 0.5] = np.nan
    return dist


# -------------------------------------------------------------------------------------------------- cost


def cost_streams(counts: Sequence[int], seconds: float, fps: float, seed: int = 0) -> dict[int, EvalSequence]:
    """For each object count, a video scaled so that objects keep their pixel size and density (320x240 holds
    6), and its noisy detections."""
    streams = {}
    for n in counts:
        scale = math.sqrt(max(n, 2) / 6)
        size = (int(320 * scale) // 16 * 16, int(240 * scale) // 16 * 16)
        video = render_tracks(
            round(seconds * fps),
            (max(size[0], 320), max(size[1], 240)),
            seed,
            fps=fps,
            num_objects=max(n, 2),
            object_size=(0.06 / max(scale, 1), 0.12 / max(scale, 1)),
            still_s=0.0,
            images=False,
        )
        dets = tuple(noisy_detections(video, seed))
        streams[n] = EvalSequence(f"{n}-objects", f"{n} objects", fps, video.truth, dets)
    return streams


def bench_cost(
    adapters: Sequence[Adapter], streams: dict[int, EvalSequence], rounds: int = 3, warmup: int = 10
) -> list[dict[str, Any]]:
    """Median and p90 microseconds per update (input conversion included) of each tracker on each stream,
    trackers interleaved: round ``r`` runs them in a rotated order."""
    rows = []
    clock = time.perf_counter
    for n, seq in streams.items():
        times: dict[str, list[float]] = {a.name: [] for a in adapters}
        for r in range(rounds):
            order = list(adapters[r % len(adapters) :]) + list(adapters[: r % len(adapters)])
            for adapter in order:
                adapter.reset(seq.fps)
                sink = times[adapter.name]
                for k, d in enumerate(seq.detections):
                    boxes, scores, class_ids, t = d.boxes, d.scores, d.class_ids, d.t
                    t0 = clock()
                    adapter.step(boxes, scores, class_ids, t)
                    dt = clock() - t0
                    if k >= warmup:
                        sink.append(dt * 1e6)
        visible = float(np.mean([len(f.boxes) for f in seq.truth]))
        n_dets = float(np.mean([len(d.boxes) for d in seq.detections]))
        ours = median(times["ours"]) if "ours" in times else float("nan")
        for adapter in adapters:
            us = median(times[adapter.name])
            rows.append(
                {
                    "objects": n,
                    "visible": visible,
                    "detections": n_dets,
                    "tracker": adapter.name,
                    "median_us": us,
                    "p90_us": float(np.percentile(times[adapter.name], 90)),
                    "vs_ours": us / ours,
                    "updates": len(times[adapter.name]),
                }
            )
    return rows


# -------------------------------------------------------------------------------------------------- print


def print_tracking(figures: dict[str, Any]) -> None:
    meta = figures["meta"]
    print(f"tracking bench: {meta['machine']}, python {meta['python']}, numpy {meta['numpy']}")
    print(
        "versions: "
        + (", ".join(f"{k} {v}" for k, v in meta["versions"].items()) or "no third-party tracker")
        + f"; metrics: motmetrics {meta['metrics']['motmetrics']}, trackeval {meta['metrics']['trackeval']}"
    )
    for name, why in meta["unavailable"].items():
        print(f"not run: {name} ({why})")
    print(f"detections: {meta['detections']}")
    print()
    print("quality (IoU >= 0.5; HOTA and AssA: TrackEval, mean over alpha)")
    print(
        f"{'sequences':<31} {'tracker':<19} {'MOTA':>6} {'IDF1':>6} {'HOTA':>6} {'AssA':>6} {'IDsw':>5} "
        f"{'FP':>6} {'FN':>6}"
    )
    for r in figures["quality"]:
        print(
            f"{r['group'] + ' (' + str(r['frames']) + ' fr)':<31} {r['tracker']:<19} {r['mota']:>6.3f} "
            f"{r['idf1']:>6.3f} {r['hota']:>6.3f} {r['assa']:>6.3f} {r['idsw']:>5d} {r['fp']:>6d} {r['fn']:>6d}"
        )
    print()
    print("cost per update (input conversion included), microseconds; trackers interleaved")
    print(f"{'objects':>7} {'visible':>7} {'dets':>5} {'tracker':<19} {'median':>8} {'p90':>8} {'x ours':>7}")
    for r in figures["cost"]:
        print(
            f"{r['objects']:>7d} {r['visible']:>7.1f} {r['detections']:>5.1f} {r['tracker']:<19} "
            f"{r['median_us']:>8.0f} {r['p90_us']:>8.0f} {r['vs_ours']:>6.2f}x"
        )
    print()
    for line in figures["goals"]:
        print(line)


def _goals(quality: list[dict[str, Any]], cost: list[dict[str, Any]], target_us: float) -> list[str]:
    lines = []
    groups = list(dict.fromkeys(r["group"] for r in quality))
    idf1_ok = idsw_ok = True
    for group in groups:
        rows = [r for r in quality if r["group"] == group]
        ours = next((r for r in rows if r["tracker"] == "ours"), None)
        theirs = [r for r in rows if r["tracker"] != "ours"]
        if ours is None or not theirs:
            continue
        best_idf1 = max(theirs, key=lambda r: r["idf1"] if not math.isnan(r["idf1"]) else -1)
        fewest = min(theirs, key=lambda r: r["idsw"])
        if not math.isnan(ours["idf1"]):
            idf1_ok &= ours["idf1"] >= best_idf1["idf1"]
        idsw_ok &= ours["idsw"] <= fewest["idsw"]
        lines.append(
            f"{group}: IDF1 ours {ours['idf1']:.3f} vs best other {best_idf1['idf1']:.3f} ({best_idf1['tracker']}); "
            f"ID switches ours {ours['idsw']} vs fewest other {fewest['idsw']} ({fewest['tracker']})"
        )
    at20 = next((r for r in cost if r["tracker"] == "ours" and r["objects"] == 20), None)
    if lines:
        lines.append(f"goal IDF1 >= every other tracker's, in every group: {'met' if idf1_ok else 'NOT met'}")
        lines.append(f"goal ID switches <= every other tracker's, in every group: {'met' if idsw_ok else 'NOT met'}")
    else:
        lines.append("quality goals: no other tracker ran (see 'not run' above)")
    if at20 is not None:
        ok = at20["median_us"] <= target_us
        lines.append(
            f"goal <= {target_us:.0f} us per update at 20 objects: {at20['median_us']:.0f} us, "
            f"{'met' if ok else 'NOT met'}"
        )
    return lines


def cli(args: Any) -> int:
    """``edgedet bench tracking [--seeds N] [--seconds S] [--fps ...] [--model M] [--json]``."""
    names = (
        args.trackers.split(",")
        if getattr(args, "trackers", None)
        else [
            "ours",
            "norfair-frigate",
            "norfair-iou",
            "sv-bytetrack",
            "trackers-bytetrack",
        ]
    )
    if getattr(args, "model", None) and not os.path.exists(args.model):
        raise FileNotFoundError(f"--model: {args.model} not found")
    adapters, missing = make_adapters(names)
    started = time.perf_counter()
    seeds = list(range(args.seed_base, args.seed_base + args.seeds))
    seqs = make_sequences(seeds, args.seconds, [float(f) for f in args.fps], args.drop, args.model, args.threads)
    quality, used = bench_quality(adapters, seqs)
    cost = bench_cost(adapters, cost_streams(args.objects, args.cost_seconds, 15.0, args.seed_base), rounds=args.rounds)
    versions = {a.package: _package_version(a.package) for a in adapters if a.package != "edgedet"}
    figures = {
        "meta": {
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", {os.cpu_count()} cpus",
            "python": platform.python_version(),
            "numpy": np.__version__,
            "versions": versions,
            "metrics": used,
            "unavailable": missing,
            "detections": (
                f"model {args.model} (score >= 0.1)"
                if args.model
                else "noisy ground truth (noisy_detections defaults: 4% box jitter, 5% misses + more when occluded, "
                "occluded objects score lower, 0.3 false positives per frame)"
            )
            + f"; seeds {seeds[0]}..{seeds[-1]}, {args.seconds:g} s each at {', '.join(f'{f:g}' for f in args.fps)} fps"
            + (f" (+ 15 fps with {args.drop:.0%} of frames dropped)" if args.drop > 0 else ""),
        },
        "quality": quality,
        "cost": cost,
        "goals": _goals(quality, cost, args.target_us),
    }
    figures["meta"]["wall_s"] = round(time.perf_counter() - started, 1)
    code = print_figures(figures, print_tracking, args.json)
    print(f"wall time {figures['meta']['wall_s']} s")
    return code

"""``edgedet bench gating``: what the camera daemon's motion gate saves and costs, and what object events save.

One synthetic tracking video (:mod:`edgedet.edge.datasets.synthetic_tracks`: walkers, a head-on crossing,
entries and exits, flicker, and a stretch in the middle where nothing moves) goes twice through
:class:`edgedet.edge.camera.scene.Scene`, the daemon's per-camera object pipeline, called exactly as
:class:`edgedet.edge.camera.daemon.Daemon` calls it: ``scene.gate(image, t)`` first; on a skip
``scene.skip(t)``; otherwise the frame's detections go to ``scene.observe(image, detections, t)``; at the end
``scene.restart(t, "stopped")`` as when the daemon stops.

* ungated: ``motion.enabled: false`` (the default), every frame observed;
* gated: ``motion.enabled: true`` with the other :class:`~edgedet.edge.camera.motion.MotionSettings` defaults.

The "detector" is the video's noisy ground truth (``noisy_detections``: jittered boxes, misses, false
positives), fixed per frame index, so a skipped frame simply does not consume its detections; with
``--model`` a real model's detections on the rendered frames instead (computed once, before both passes).

Figures:

* inferences skipped: over the whole video and over the still stretch (frames with ``t`` in ``video.still``),
  and the gate's decisions by reason;
* recall lost: a ground-truth object in a frame is *covered* when the box of some confirmed live track
  (confirmed or lost, i.e. the objects the daemon holds; on a skipped frame the tracks as they stand) has
  IoU >= 0.5 with it, class-agnostic; the loss is (covered ungated - covered gated) / all ground-truth
  track-frames;
* gate cost: wall time of ``scene.gate(...)`` per frame in the gated pass (the motion detector on the full
  frame, and the live-object check), median and p90, the first frame (set-up) left out;
* messages per minute of video: per-frame ``detections`` messages (one per processed frame, as with
  ``events.include_empty``; also the frames with detections left, the default), against object events
  (``new`` / ``update`` / ``end`` / ``enter`` / ``exit``: all that ``observe`` returned, plus the ``end``
  events of the final stop), ungated and gated.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgedet.edge.bench.figures import median, p90, parse_size
from edgedet.edge.camera.motion import MotionSettings
from edgedet.edge.camera.objects import ObjectSettings
from edgedet.edge.camera.scene import Scene
from edgedet.edge.core.boxes import pairwise_iou
from edgedet.edge.datasets.synthetic_tracks import FrameDetections, TrackVideo, noisy_detections, render_tracks
from edgedet.edge.runtime.detector import Detection
from edgedet.edge.runtime.output_paths import output_file, write_text_atomic

__all__ = ["PassResult", "bench_gating", "cli", "make_video", "run_pass"]

IOU = 0.5
EVENT_TYPES = ("new", "update", "end", "enter", "exit")


@dataclass
class PassResult:
    """One pass of the video through a :class:`Scene`."""

    name: str
    frames: int
    processed: int
    skipped: int
    still_frames: int
    still_skipped: int
    decisions: dict[str, dict[str, int]]  # the gate's counts: {"run": {reason: n}, "skip": {reason: n}}
    still_decisions: dict[str, int]  # the gate's reasons on the still stretch's frames
    gt: int  # ground-truth track-frames
    covered: int  # of those, covered by a confirmed live track (IoU >= 0.5)
    still_gt: int
    still_covered: int
    frame_messages: int  # per-frame detection messages with include_empty (one per processed frame)
    frame_messages_nonempty: int  # ... without include_empty (the default): frames with detections left
    events: dict[str, int]  # object events by type
    update_reasons: dict[str, int]
    gate_ms: list[float]  # time of scene.gate per frame (the summary leaves the first, the set-up, out)

    @property
    def object_events(self) -> int:
        return sum(self.events.values())

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "gate_ms"}
        out["object_events"] = self.object_events
        out["gate_ms"] = {
            "median": median(self.gate_ms[1:]),
            "p90": p90(self.gate_ms[1:]),
            "frames": len(self.gate_ms[1:]),
        }
        return out


def make_video(
    seconds: float, fps: float, size: tuple[int, int], seed: int, still_s: float, flicker: bool = True
) -> TrackVideo:
    """The rendered video (frames kept)."""
    return render_tracks(round(seconds * fps), size, seed, fps=fps, still_s=still_s, flicker=flicker)


def _as_detections(d: FrameDetections, labels: Sequence[str]) -> list[Detection]:
    """One frame's simulated detections as the detector's :class:`Detection` list."""
    out = []
    for box, score, cls in zip(d.boxes.tolist(), d.scores.tolist(), d.class_ids.tolist(), strict=True):
        label = labels[cls] if 0 <= cls < len(labels) else str(cls)
        out.append(Detection((box[0], box[1], box[2], box[3]), float(score), int(cls), label))
    return out


def _covered(truth_boxes: np.ndarray, scene: Scene) -> int:
    """Ground-truth boxes of one frame with IoU >= 0.5 against some confirmed live track's box."""
    if not len(truth_boxes) or scene.tracker is None:
        return 0
    boxes = [tr.box for tr in scene.tracker.tracks if tr.id > 0]
    if not boxes:
        return 0
    iou = pairwise_iou(truth_boxes.astype(np.float64), np.asarray(boxes, np.float64).reshape(-1, 4))
    return int(np.count_nonzero(iou.max(axis=1) >= IOU))


def run_pass(
    name: str,
    video: TrackVideo,
    detections: Sequence[Sequence[Detection]],
    motion: MotionSettings,
    labels: Sequence[str],
    objects: ObjectSettings | None = None,
    progress: bool = False,
) -> PassResult:
    """The video through a fresh :class:`Scene` with ``motion`` (and ``objects``), called as the daemon calls it."""
    scene = Scene("bench", labels, objects=objects, motion=motion, run_id="bench")
    start, end = video.still
    clock = time.perf_counter
    events: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    still_reasons: Counter[str] = Counter()
    r = PassResult(name, len(video.frames), 0, 0, 0, 0, {}, {}, 0, 0, 0, 0, 0, 0, {}, {}, [])
    n = len(video.frames)
    t = 0.0
    for i, (image, truth) in enumerate(zip(video.frames, video.truth, strict=True)):
        if progress and i % 150 == 0:
            print(f"  {name}: frame {i}/{n}", file=sys.stderr, flush=True)
        t = truth.t
        in_still = start <= t < end
        t0 = clock()
        decision = scene.gate(image, t)
        r.gate_ms.append((clock() - t0) * 1e3)
        found: list[dict[str, Any]] = []
        if decision.run:
            update = scene.observe(image, detections[i], t)
            r.processed += 1
            r.frame_messages += 1
            r.frame_messages_nonempty += bool(update.detections)
            found = update.events
        else:
            scene.skip(t)
            r.skipped += 1
            r.still_skipped += in_still
        for e in found:
            events[e["type"]] += 1
            if e["type"] == "update":
                reasons[e.get("reason", "?")] += 1
        covered = _covered(truth.boxes, scene)
        r.gt += len(truth.boxes)
        r.covered += covered
        if in_still:
            still_reasons[decision.reason] += 1
            r.still_frames += 1
            r.still_gt += len(truth.boxes)
            r.still_covered += covered
    for e in scene.restart(t, "stopped"):  # the daemon stops: every object still alive ends
        events[e["type"]] += 1
    r.decisions = scene.gate_.counts()
    r.still_decisions = dict(still_reasons.most_common())
    r.events = {k: events.get(k, 0) for k in EVENT_TYPES} | {k: v for k, v in events.items() if k not in EVENT_TYPES}
    r.update_reasons = dict(sorted(reasons.items()))
    return r


def _per_minute(count: int, seconds: float) -> float:
    return count * 60.0 / seconds if seconds > 0 else float("nan")


def bench_gating(
    video: TrackVideo,
    frame_detections: Sequence[FrameDetections],
    labels: Sequence[str],
    motion: MotionSettings | None = None,
    objects: ObjectSettings | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Both passes over ``video`` and the figures (see the module docstring). ``motion``: the gated pass's
    settings (default: gating on, the rest the daemon's defaults); ``objects``: both passes' object-event
    settings (default: the daemon's; ``stationary_s`` decides how long a stopped object keeps the gate open)."""
    dets = [_as_detections(d, labels) for d in frame_detections]
    gated_settings = motion or MotionSettings(enabled=True)
    if not gated_settings.enabled:
        raise ValueError("the gated pass needs motion gating enabled")
    objects = objects or ObjectSettings()
    ungated = run_pass("ungated", video, dets, MotionSettings(enabled=False), labels, objects, progress)
    gated = run_pass("gated", video, dets, gated_settings, labels, objects, progress)
    seconds = len(video.frames) / video.fps
    per_min = {
        p.name: {
            "frame_messages": _per_minute(p.frame_messages, seconds),
            "frame_messages_nonempty": _per_minute(p.frame_messages_nonempty, seconds),
            "object_events": _per_minute(p.object_events, seconds),
        }
        for p in (ungated, gated)
    }
    gt = ungated.gt
    return {
        "ungated": ungated.summary(),
        "gated": gated.summary(),
        "skipped_share": gated.skipped / max(gated.frames, 1),
        "still_skipped_share": gated.still_skipped / max(gated.still_frames, 1),
        "recall_ungated": ungated.covered / max(gt, 1),
        "recall_gated": gated.covered / max(gt, 1),
        "recall_lost_pct": 100.0 * (ungated.covered - gated.covered) / max(gt, 1),
        "still_recall_lost_pct": 100.0 * (ungated.still_covered - gated.still_covered) / max(ungated.still_gt, 1),
        "per_minute": per_min,
        "gate_ms": {"median": median(gated.gate_ms[1:]), "p90": p90(gated.gate_ms[1:])},
        "motion_settings": gated_settings.model_dump(mode="json"),
        "object_settings": objects.model_dump(mode="json"),
    }


# -------------------------------------------------------------------------------------------------- print


def _goals(fig: dict[str, Any], still_goal: float, loss_goal: float) -> list[str]:
    still_ok = fig["still_skipped_share"] >= still_goal
    loss_ok = fig["recall_lost_pct"] <= loss_goal
    return [
        f"goal >= {still_goal:.0%} of inferences skipped on the still stretch: "
        f"{fig['still_skipped_share']:.1%}, {'met' if still_ok else 'NOT met'}",
        f"goal <= {loss_goal:g} % of ground-truth track-frames lost against ungated: "
        f"{fig['recall_lost_pct']:.2f} %, {'met' if loss_ok else 'NOT met'}",
    ]


def print_gating(figures: dict[str, Any]) -> None:
    meta, fig = figures["meta"], figures["figures"]
    u, g = fig["ungated"], fig["gated"]
    print(f"gating bench: {meta['machine']}, python {meta['python']}, numpy {meta['numpy']}, opencv {meta['opencv']}")
    print(f"video: {meta['video']}")
    print(f"detections: {meta['detections']}")
    print(f"settings: {meta['settings']}")
    print()
    print(f"{'':<44} {'ungated':>10} {'gated':>10}")
    rows = [
        ("frames", u["frames"], g["frames"], "d"),
        ("inferences run", u["processed"], g["processed"], "d"),
        ("inferences skipped", u["skipped"], g["skipped"], "d"),
        ("  share of the video", u["skipped"] / max(u["frames"], 1), fig["skipped_share"], "%"),
        (
            f"  share of the still stretch ({g['still_frames']} fr)",
            u["still_skipped"] / max(u["still_frames"], 1),
            fig["still_skipped_share"],
            "%",
        ),
        ("ground-truth track-frames", u["gt"], g["gt"], "d"),
        ("  covered by a live track (IoU >= 0.5)", u["covered"], g["covered"], "d"),
        ("  recall", fig["recall_ungated"], fig["recall_gated"], "%"),
        ("per-frame messages / min (one per inference)", *_pm(fig, "frame_messages"), "f"),
        ("  frames with detections only / min", *_pm(fig, "frame_messages_nonempty"), "f"),
        ("object events / min", *_pm(fig, "object_events"), "f"),
        ("object events", u["object_events"], g["object_events"], "d"),
    ]
    rows += [(f"  {k}", u["events"].get(k, 0), g["events"].get(k, 0), "d") for k in u["events"]]
    for label, a, b, kind in rows:
        if kind == "d":
            print(f"{label:<44} {a:>10d} {b:>10d}")
        elif kind == "%":
            print(f"{label:<44} {a:>10.1%} {b:>10.1%}")
        else:
            print(f"{label:<44} {a:>10.1f} {b:>10.1f}")
    print()
    run, skip = g["decisions"]["run"], g["decisions"]["skip"]
    print(
        "gated decisions: run "
        + ", ".join(f"{k} {v}" for k, v in run.items() if v)
        + "; skip "
        + (", ".join(f"{k} {v}" for k, v in skip.items() if v) or "none")
    )
    print("gated decisions on the still stretch: " + ", ".join(f"{k} {v}" for k, v in g["still_decisions"].items()))
    print("update reasons: ungated " + json.dumps(u["update_reasons"]) + ", gated " + json.dumps(g["update_reasons"]))
    print(
        f"recall lost against ungated: {fig['recall_lost_pct']:.2f} % of ground-truth track-frames "
        f"(still stretch: {fig['still_recall_lost_pct']:.2f} % of its own)"
    )
    print(
        f"gate cost per {meta['size']} frame (scene.gate, gated pass): median {fig['gate_ms']['median']:.3f} ms, "
        f"p90 {fig['gate_ms']['p90']:.3f} ms"
    )
    print()
    for line in figures["goals"]:
        print(line)


def _pm(fig: dict[str, Any], key: str) -> tuple[float, float]:
    return fig["per_minute"]["ungated"][key], fig["per_minute"]["gated"][key]


# ---------------------------------------------------------------------------------------------------- cli


def cli(args: Any) -> int:
    """``edgedet bench gating [--seconds S] [--fps F] [--size WxH] [--still-s S] [--model M] [--json PATH]``."""
    json_path = output_file(args.json, "--json") if getattr(args, "json", None) else None
    model = getattr(args, "model", None)
    if model and not os.path.exists(model):
        raise FileNotFoundError(f"--model: {model} not found")
    size = parse_size(args.size)
    if not 0 < args.still_s < args.seconds:
        raise ValueError(f"--still-s: expected between 0 and --seconds ({args.seconds:g}), got {args.still_s:g}")
    started = time.perf_counter()
    print(f"rendering {args.seconds:g} s at {args.fps:g} fps, {size[0]}x{size[1]} ...", file=sys.stderr, flush=True)
    video = make_video(args.seconds, args.fps, size, args.seed, args.still_s, flicker=not args.no_flicker)
    if model:
        from edgedet.edge.bench.tracking_bench import _model_detections

        print(f"running {model} on {len(video.frames)} frames ...", file=sys.stderr, flush=True)
        frame_dets = _model_detections(model, video, args.threads)
        what = f"model {model} (score >= 0.1), run once on every frame; labels as the video's (names only)"
    else:
        frame_dets = noisy_detections(video, args.seed)
        what = (
            "noisy ground truth (noisy_detections defaults: 4% box jitter, 5% misses + more when occluded, "
            "0.3 false positives per frame), fixed per frame"
        )
    objects = ObjectSettings() if args.stationary_s is None else ObjectSettings(stationary_s=args.stationary_s)
    fig = bench_gating(video, frame_dets, video.classes, objects=objects, progress=True)
    import cv2

    figures = {
        "meta": {
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", {os.cpu_count()} cpus",
            "python": platform.python_version(),
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "size": f"{size[0]}x{size[1]}",
            "video": (
                f"synthetic tracks seed {args.seed}, {size[0]}x{size[1]}, {len(video.frames)} frames at "
                f"{args.fps:g} fps ({len(video.frames) / args.fps:g} s), {video.num_objects} objects, still "
                f"{video.still[0]:.1f}-{video.still[1]:.1f} s, flicker {'off' if args.no_flicker else 'on'}"
            ),
            "detections": what,
            "settings": f"motion: the defaults with enabled: true (refresh_s {fig['motion_settings']['refresh_s']:g}); "
            f"objects: stationary_s {objects.stationary_s:g}"
            + (" (the default)" if args.stationary_s is None else " (--stationary-s; default 10)"),
        },
        "figures": fig,
        "goals": _goals(fig, args.target_still_skip, args.target_loss_pct),
    }
    figures["meta"]["wall_s"] = round(time.perf_counter() - started, 1)
    print_gating(figures)
    print(f"wall time {figures['meta']['wall_s']} s")
    if json_path is not None:
        write_text_atomic(json_path, json.dumps(figures, indent=2) + "\n")
        print(f"wrote {json_path}")
    return 0

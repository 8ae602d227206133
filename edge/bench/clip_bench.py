"""``edgedet bench clips``: what event clips cost one camera — CPU while only buffering the pre-roll, memory
held by the ring buffer per second of pre-roll, and CPU while a clip is being written.

Frames come from a synthetic tracking video (:func:`edgedet.edge.datasets.synthetic_tracks.render_tracks`,
640x480 by default: textured background, moving shapes, sensor noise, flicker; at most ``--unique-s``
seconds are rendered and then looped) and go to a real :class:`edgedet.edge.camera.clips.ClipRecorder`
exactly as the daemon hands them over: ``on_frame(t, image, overlay)`` with the frame's ground-truth boxes
as the overlay, then its events. CPU is the process's (``time.process_time``: the caller's thread and the
recorder's together) per second of video, i.e. the share of one core a camera at that rate costs.

By default the stream is accelerated: each frame is handed over and waited for (``flush``), so no frame is
dropped and CPU-seconds per video-second come out in a fraction of the time; ``--realtime`` paces the
frames at ``--fps`` instead (the same figure, plus the thread's idle wake-ups).

Passes:

* buffering: no event — every frame JPEG-encoded into the ring (the steady cost of a camera);
* writing: one object's ``new`` once the ring is full and its ``end`` ``post_s`` + 1 s before the stream ends,
  so one clip is written whole (pre-roll decoded and encoded in a burst at ``new``, then every frame with its
  boxes drawn and encoded); the clip is read back to check its frames.

Also: JPEG size and encode time at a few qualities, and the alternative of keeping raw frames (memory per
second, and the cost of the copy that alone it would take).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgedet.edge.bench.figures import median, p90, parse_size
from edgedet.edge.camera.clips import ClipRecorder, ClipSettings, video_format
from edgedet.edge.datasets.synthetic_tracks import TrackVideo, render_tracks
from edgedet.edge.runtime.output_paths import output_file, write_text_atomic

__all__ = ["bench_clips", "cli", "run_stream"]

T0 = 1_700_000_000.0
QUALITIES = (60, 80, 95)


def _overlay(video: TrackVideo, index: int) -> list[dict[str, Any]]:
    truth = video.truth[index % len(video.truth)]
    return [
        {"box": box, "label": video.classes[int(label)], "track_id": int(tid), "class_id": int(label)}
        for box, label, tid in zip(truth.boxes.tolist(), truth.labels.tolist(), truth.track_ids.tolist(), strict=True)
    ]


def run_stream(
    video: TrackVideo,
    seconds: float,
    settings: ClipSettings,
    events: dict[int, list[dict[str, Any]]] | None = None,
    realtime: bool = False,
) -> dict[str, Any]:
    """``seconds`` of ``video`` (looped) through a fresh recorder; CPU, the caller's cost, counters."""
    events = events or {}
    fps = video.fps
    n = round(seconds * fps)
    rec = ClipRecorder(settings, camera="bench", prune_every_s=3600.0)
    call_us, bursts = [], []
    overlays = [_overlay(video, i) for i in range(len(video.frames))]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(n):
        if realtime:
            delay = wall0 + i / fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        k = i % len(video.frames)
        start = time.perf_counter()
        rec.on_frame(T0 + i / fps, video.frames[k], overlays[k])
        for event in events.get(i, ()):
            rec.on_event({**event, "timestamp": T0 + i / fps})
        call_us.append((time.perf_counter() - start) * 1e6)
        if not realtime:
            start = time.perf_counter()
            rec.flush()
            if events.get(i):
                bursts.append((time.perf_counter() - start) * 1e3)
    rec.flush()
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    stats = rec.stats()
    rec.close()
    stats["clips_written"] = rec.clips_written
    return {
        "frames": n,
        "video_s": n / fps,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_share": cpu / (n / fps),
        "on_frame_us": {"median": median(call_us), "p90": p90(call_us)},
        "event_burst_ms": bursts,
        "stats": stats,
        "recorder": rec,
    }


def _encode_table(video: TrackVideo, fps: float) -> list[dict[str, float]]:
    sample = video.frames[:: max(1, len(video.frames) // 40)]
    rows = []
    for q in QUALITIES:
        sizes, times = [], []
        for image in sample:
            start = time.perf_counter()
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, q])
            times.append((time.perf_counter() - start) * 1e3)
            assert ok
            sizes.append(data.nbytes)
        rows.append(
            {
                "quality": q,
                "bytes_per_frame": float(np.mean(sizes)),
                "bytes_per_s": float(np.mean(sizes)) * fps,
                "encode_ms": median(times),
                "cpu_share": median(times) / 1e3 * fps,
            }
        )
    return rows


def _raw_copy_ms(video: TrackVideo) -> float:
    times = []
    for image in video.frames[:60]:
        start = time.perf_counter()
        image.copy()
        times.append((time.perf_counter() - start) * 1e3)
    return median(times)


def bench_clips(
    video: TrackVideo,
    seconds: float,
    clip_dir: Path,
    pre_s: float = 5.0,
    post_s: float = 5.0,
    quality: int = 80,
    realtime: bool = False,
) -> dict[str, Any]:
    """The figures of the module docstring."""
    fps, (w, h) = video.fps, video.size
    base = {"enabled": True, "dir": str(clip_dir), "pre_s": pre_s, "post_s": post_s, "jpeg_quality": quality}
    settings = ClipSettings(**base, min_free_bytes=0)
    buffering = run_stream(video, seconds, settings, realtime=realtime)
    rec = buffering.pop("recorder")
    ring_frames, ring_bytes = rec.stats()["frames_buffered"], rec.stats()["bytes_buffered"]
    bytes_per_frame = ring_bytes / max(ring_frames, 1)

    i_new = round(pre_s * fps) + 1
    i_end = max(i_new + 1, round(seconds * fps) - round((post_s + 1.0) * fps))
    event = {"id": "bench-1", "camera": "bench", "box": [0, 0, 10, 10], "label": "x"}
    events = {i_new: [{**event, "type": "new"}], i_end: [{**event, "type": "end"}]}
    writing = run_stream(video, seconds, settings, events, realtime=realtime)
    rec = writing.pop("recorder")
    clip = rec.clip_file("bench-1")
    clip_info: dict[str, Any] = {"path": None}
    if clip is not None:
        cap = cv2.VideoCapture(str(clip))
        frames = 0
        while cap.read()[0]:
            frames += 1
        clip_fps = cap.get(cv2.CAP_PROP_FPS)
        cap.release()
        expected_s = (i_end - i_new) / fps + pre_s + post_s
        clip_info = {
            "path": clip.name,
            "bytes": clip.stat().st_size,
            "frames": frames,
            "fps": clip_fps,
            "duration_s": frames / clip_fps if clip_fps else 0.0,
            "expected_s": expected_s,
            "bytes_per_s": clip.stat().st_size / (frames / clip_fps) if frames and clip_fps else 0.0,
        }
    clip_s = clip_info.get("duration_s") or 0.0
    # the clip's share of the stream: writing CPU beyond buffering, per second of clip
    extra_cpu = writing["cpu_s"] - buffering["cpu_share"] * writing["video_s"]
    raw_bytes_per_s = w * h * 3 * fps
    copy_ms = _raw_copy_ms(video)
    return {
        "buffering": buffering,
        "ring": {
            "pre_s": pre_s,
            "frames": ring_frames,
            "bytes": ring_bytes,
            "bytes_per_frame": bytes_per_frame,
            "bytes_per_s": bytes_per_frame * fps,
            "raw_bytes_per_s": raw_bytes_per_s,
            "raw_over_jpeg": raw_bytes_per_s / max(bytes_per_frame * fps, 1.0),
        },
        "raw": {"copy_ms": copy_ms, "cpu_share": copy_ms / 1e3 * fps, "bytes_per_s": raw_bytes_per_s},
        "quality": _encode_table(video, fps),
        "writing": {
            **writing,
            "clips_written": writing["stats"]["clips_written"],
            "clip": clip_info,
            "extra_cpu_share_while_writing": extra_cpu / clip_s if clip_s else None,
            "preroll_burst_ms": writing["event_burst_ms"][0] if writing["event_burst_ms"] else None,
        },
    }


# -------------------------------------------------------------------------------------------------- print


def print_clips(figures: dict[str, Any]) -> None:
    meta, fig = figures["meta"], figures["figures"]
    b, r, wr, raw = fig["buffering"], fig["ring"], fig["writing"], fig["raw"]
    clip = wr["clip"]
    print(f"clips bench: {meta['machine']}, python {meta['python']}, opencv {meta['opencv']}")
    print(f"stream: {meta['stream']}")
    print(f"clips: {meta['format']}; settings: {meta['settings']}")
    print()
    mb = 1e6
    rows = [
        ("buffering: CPU, share of one core", f"{b['cpu_share']:.2%}"),
        ("  CPU-seconds / video-seconds", f"{b['cpu_s']:.2f} / {b['video_s']:.0f}"),
        (
            "  on_frame() in the caller, median / p90",
            f"{b['on_frame_us']['median']:.0f} / {b['on_frame_us']['p90']:.0f} us",
        ),
        ("  frames dropped", f"{b['stats']['frames_dropped']}"),
        (f"ring: {r['frames']} frames held (pre_s {r['pre_s']:g})", f"{r['bytes'] / mb:.2f} MB"),
        ("  per second of pre-roll (JPEG)", f"{r['bytes_per_s'] / mb:.2f} MB"),
        ("  per second of pre-roll (raw frames)", f"{r['raw_bytes_per_s'] / mb:.2f} MB ({r['raw_over_jpeg']:.0f}x)"),
        ("  raw alternative: copy per frame / CPU", f"{raw['copy_ms']:.3f} ms / {raw['cpu_share']:.2%}"),
        ("writing one clip: CPU, share of one core", f"{wr['cpu_share']:.2%} (over the whole stream)"),
    ]
    if wr["extra_cpu_share_while_writing"] is not None:
        rows.append(("  beyond buffering, while the clip is open", f"{wr['extra_cpu_share_while_writing']:.2%}"))
    if wr["preroll_burst_ms"] is not None:
        rows.append(("  pre-roll burst at `new` (decode + encode)", f"{wr['preroll_burst_ms']:.0f} ms"))
    if clip.get("path"):
        rows += [
            (
                "  clip read back: frames, duration",
                f"{clip['frames']} at {clip['fps']:g} fps = {clip['duration_s']:.2f} s "
                f"(expected {clip['expected_s']:.2f} s)",
            ),
            ("  clip size per second", f"{clip['bytes_per_s'] / mb:.2f} MB"),
        ]
    else:
        rows.append(("  clip", "NOT written"))
    for label, value in rows:
        print(f"{label:<48} {value}")
    print()
    print(f"{'JPEG quality':<14} {'KB / frame':>10} {'MB / s pre-roll':>16} {'encode ms':>10} {'CPU':>7}")
    for q in fig["quality"]:
        print(
            f"{q['quality']:<14} {q['bytes_per_frame'] / 1e3:>10.1f} {q['bytes_per_s'] / mb:>16.2f} "
            f"{q['encode_ms']:>10.2f} {q['cpu_share']:>7.2%}"
        )
    print()
    for line in figures["goals"]:
        print(line)


# ---------------------------------------------------------------------------------------------------- cli


def cli(args: Any) -> int:
    """``edgedet bench clips [--seconds S] [--fps F] [--size WxH] [--pre-s S] [--realtime] [--json PATH]``."""
    json_path = output_file(args.json, "--json") if args.json else None
    size = parse_size(args.size)
    if args.fps <= 0 or args.pre_s < 0 or args.post_s < 0:
        raise ValueError(
            f"expected --fps > 0 and --pre-s, --post-s >= 0, got {args.fps:g}, {args.pre_s:g}, {args.post_s:g}"
        )
    if args.seconds < args.pre_s + args.post_s + 2:
        raise ValueError(
            f"--seconds: expected at least --pre-s + --post-s + 2 ({args.pre_s + args.post_s + 2:g}) for one whole "
            f"clip, got {args.seconds:g}"
        )
    started = time.perf_counter()
    unique = max(2, round(min(args.seconds, args.unique_s) * args.fps))
    print(f"rendering {unique} frames at {size[0]}x{size[1]} ...", file=sys.stderr, flush=True)
    video = render_tracks(unique, size, args.seed, fps=args.fps)
    print(f"running {args.seconds:g} s of video twice ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="edgedet-clip-bench-") as tmp:
        fig = bench_clips(
            video,
            args.seconds,
            Path(args.dir) if args.dir else Path(tmp),
            pre_s=args.pre_s,
            post_s=args.post_s,
            quality=args.quality,
            realtime=args.realtime,
        )
    share = fig["buffering"]["cpu_share"]
    fourcc, ext = video_format()
    figures = {
        "meta": {
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", {os.cpu_count()} cpus",
            "python": platform.python_version(),
            "opencv": cv2.__version__,
            "stream": f"synthetic tracks seed {args.seed}, {size[0]}x{size[1]} at {args.fps:g} fps, {args.seconds:g} s "
            f"({unique} frames rendered, looped), {'real time' if args.realtime else 'accelerated (flush per frame)'}",
            "format": f"{fourcc} in {ext}",
            "settings": f"pre_s {args.pre_s:g}, post_s {args.post_s:g}, jpeg_quality {args.quality}, boxes drawn",
            "wall_s": round(time.perf_counter() - started, 1),
        },
        "figures": fig,
        "goals": [
            f"goal <= {args.target_share:.0%} of a core per camera while buffering at {size[0]}x{size[1]} "
            f"{args.fps:g} fps: {share:.2%}, {'met' if share <= args.target_share else 'NOT met'}"
        ],
    }
    print_clips(figures)
    print(f"wall time {figures['meta']['wall_s']} s")
    if json_path is not None:
        write_text_atomic(json_path, json.dumps(figures, indent=2, default=float) + "\n")
        print(f"wrote {json_path}")
    return 0

"""The demo's last stage: the camera daemon's object pipeline on a generated video with ground-truth tracks.

A synthetic tracking video (:func:`edgedet.edge.datasets.synthetic_tracks.render_tracks`: objects that walk,
cross, stop and leave, a still stretch, flicker) goes frame by frame through the demo's detector and the
daemon's :class:`~edgedet.edge.camera.scene.Scene` (filters, tracker, one zone, object events), as
``edgedet camera`` would run it. Object events go to a JSON-lines file, exactly what the daemon writes; the
tracks and the zone are drawn into an annotated copy of the video; MOTA and IDF1 against the video's own
ground truth come from py-motmetrics.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgedet.edge.bench.tracking_bench import mot_accumulator, mot_summary
from edgedet.edge.camera.overlay import draw_tracks, draw_zones
from edgedet.edge.camera.scene import Scene
from edgedet.edge.camera.sinks import JsonLinesSink
from edgedet.edge.camera.zones import ZoneSettings
from edgedet.edge.datasets.synthetic_tracks import render_tracks, write_video
from edgedet.edge.runtime.detector import Detector

__all__ = ["DEMO_ZONE", "track_demo_video"]

# the left half of the frame, by where an object stands (the bottom centre of its box)
DEMO_ZONE = ZoneSettings(name="left_half", polygon=[[0, 0], [0.5, 0], [0.5, 1], [0, 1]], normalized=True)


def track_demo_video(
    model: str | Path,
    out_dir: str | Path,
    *,
    seconds: float = 20.0,
    fps: float = 10.0,
    size: tuple[int, int] = (320, 240),
    seed: int = 3,
    object_size: tuple[float, float] = (0.1, 0.18),
) -> dict[str, Any]:
    """Run ``model`` and the object pipeline over a rendered video; write ``input.avi``, ``tracks.avi`` and
    ``events.jsonl`` under ``out_dir``; return the files, MOTA, IDF1, ID switches and the events by type.

    ``object_size``: the objects' radii as fractions of the shorter side (the default keeps them, at the
    demo model's 160x120 input, within the sizes its training set has)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    video = render_tracks(round(seconds * fps), size, seed, fps=fps, num_objects=5, object_size=object_size)
    write_video(out / "input.avi", video)
    detector = Detector.from_model(model)
    scene = Scene("demo", detector.labels, zones=[DEMO_ZONE], run_id="demo")
    events_path = out / "events.jsonl"
    events_path.unlink(missing_ok=True)
    sink = JsonLinesSink(str(events_path))
    writer = cv2.VideoWriter(str(out / "tracks.avi"), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    kinds: Counter[str] = Counter()
    hyps: list[tuple[np.ndarray, list[int]]] = []
    try:
        t = 0.0
        for frame, truth in zip(video.frames, video.truth, strict=True):
            t = truth.t
            update = scene.observe(frame, detector.detect(frame), t)
            for event in update.events:
                sink.emit(event)
                kinds[event["type"]] += 1
            tracks = [track for track, _ in update.tracks]
            hyps.append((np.array([tr.box for tr in tracks], float).reshape(-1, 4), [tr.id for tr in tracks]))
            assert scene.zones is not None  # observe() made them for this frame size
            image = draw_zones(frame, scene.zones, update.counts)
            writer.write(draw_tracks(image, [(track.id, det) for track, det in update.tracks], copy=False))
        for event in scene.restart(t, "stopped"):  # as when the daemon stops: the objects still alive end
            sink.emit(event)
            kinds[event["type"]] += 1
    finally:
        writer.release()
        sink.close()
    scores = mot_summary([mot_accumulator(video.truth, hyps)], ["demo"])
    return {
        "model": str(model),
        "video": str(out / "input.avi"),
        "annotated": str(out / "tracks.avi"),
        "events_file": str(events_path),
        "frames": len(video.frames),
        "objects": video.num_objects,
        "MOTA": scores["mota"],
        "IDF1": scores["idf1"],
        "ID switches": scores["idsw"],
        "events": dict(sorted(kinds.items())),
    }

"""Runtime benchmarks for the device: decode + NMS, and where the time of one camera frame goes.

    python -m edgedet.edge.bench.runtime decode [--model RAW.onnx] [--images DIR] [--thresholds 0.7 0.3]
    python -m edgedet.edge.bench.runtime frame --model M [--spec S] [--source VIDEO_OR_FOLDER] [--size 640x480]
                                       [--threads N] [--seconds S]
    python -m edgedet.edge.bench.runtime compare --base FP32_MODEL --models INT8_MODEL... [--threads 1] [--rounds 40]
    python -m edgedet.edge.bench.runtime profile --models A.onnx B.onnx... [--threads 1] [--runs 200]

``decode`` runs the published UltraFace model without post-processing on real photos once, then times,
call by call and interleaved in the same run, :class:`edgedet.edge.runtime.decoders.SSDDecoder` (decode + class-aware
hard NMS) against :func:`ultraface_reference`, a plain per-class loop written the way UltraFace's own
numpy post-processing is (every prior decoded, then per class: threshold, sort, greedy ``hard_nms``
with ``candidate_size`` 200), checks that both give the same detections and prints the medians and
their ratio.

``frame`` runs a model the way the camera daemon does: a :class:`edgedet.edge.camera.capture.CaptureThread` keeps the
newest frame in a :class:`edgedet.edge.camera.capture.FrameSlot`, the main loop takes it, runs
:meth:`Detector.detect <edgedet.edge.runtime.detector.Detector.detect>` and publishes
(:func:`~edgedet.edge.camera.events.build_event` + one line written
by :class:`edgedet.edge.camera.sinks.JsonLinesSink`). It prints the median time of each stage per frame — capture
(waiting for the slot), preprocess, inference, decode/NMS, publish — the share of the frame spent
outside inference, and the sustained frame rate, of this instrumented loop; then the same loop
pipelined as the daemon runs it by default (:class:`~edgedet.edge.runtime.pipeline.Pipeline`: inference in its
own thread,
overlapped with the rest), where what a frame costs beyond inference is its period minus its inference
time; and the frame rate of the real :class:`edgedet.edge.camera.daemon.Daemon` loop on the same detector, all against
``1 / inference``. The frames are
decoded from ``--source`` once, up front (resized to ``--size``), and replayed by a camera emulator
(:class:`ReplaySource`): by default a camera always exactly one frame ahead of the detector — a new frame
is in the slot whenever the detector comes for one, so the figures are the detector loop's own — or
one delivering ``--camera-fps``. ``--live`` reads the source through :func:`edgedet.edge.camera.sources.open_source`
in the capture thread instead, decoding as a file source would (then the source may be the limit).

``compare`` answers "is B faster than A on this machine?" where timings drift (a shared or throttled
CPU): rounds of ``--runs`` back-to-back runs of every model in turn, all on the same input shape, and for
each model against ``--base`` the median of the per-round ratios and in how many rounds it was faster
(:func:`bench_paired`). Drift hits both sides of a round alike, so the paired ratio holds where
separately measured medians swing by 20 %.

``profile`` says why: ONNX Runtime's per-node kernel times summed by operator kind, one column per model
(:func:`edgedet.edge.bench.ort_profile.profile_onnx`; depthwise convolutions apart as ``/dw``).

Needs only the ``edge`` extra (numpy, OpenCV, ONNX Runtime / LiteRT). Medians are quoted throughout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgedet.edge.camera.capture import CaptureThread, FrameSlot
from edgedet.edge.camera.events import build_event
from edgedet.edge.camera.sinks import JsonLinesSink
from edgedet.edge.camera.sources import CaptureSource
from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.runtime.backends import open_backend
from edgedet.edge.runtime.decoders import SSDDecoder
from edgedet.edge.runtime.detector import Detector, load_spec
from edgedet.edge.runtime.media import IMAGE_SUFFIXES, iter_video, list_images, read_image
from edgedet.edge.runtime.pipeline import Pipeline
from edgedet.edge.runtime.progress import progress
from edgedet.edge.runtime.quant import quantize

__all__ = [
    "ReplaySource",
    "bench_decode",
    "bench_frame",
    "bench_paired",
    "load_frames",
    "main",
    "ultraface_outputs",
    "ultraface_reference",
]

SHARED = Path(os.environ.get("EDGEDET_SHARED", Path(__file__).resolve().parents[2] / "shared"))
ULTRAFACE = SHARED / "models" / "ultraface"
RAW_MODEL = ULTRAFACE / "version-slim-320_without_postprocessing.onnx"
PHOTOS = ULTRAFACE / "images"


def _median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64))) if len(values) else float("nan")


def _p90(values: Sequence[float]) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), 90)) if len(values) else float("nan")


# ------------------------------------------------------------------------ the plain UltraFace reference


def convert_locations_to_boxes(
    locations: np.ndarray, priors: np.ndarray, center_variance: float, size_variance: float
) -> np.ndarray:
    """UltraFace's decoding: every prior's regression -> a centre-form box."""
    return np.concatenate(
        [
            locations[..., :2] * center_variance * priors[..., 2:] + priors[..., :2],
            np.exp(locations[..., 2:] * size_variance) * priors[..., 2:],
        ],
        axis=len(locations.shape) - 1,
    )


def center_form_to_corner_form(locations: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [locations[..., :2] - locations[..., 2:] / 2, locations[..., :2] + locations[..., 2:] / 2],
        len(locations.shape) - 1,
    )


def area_of(left_top: np.ndarray, right_bottom: np.ndarray) -> np.ndarray:
    hw = np.clip(right_bottom - left_top, 0.0, None)
    return hw[..., 0] * hw[..., 1]


def iou_of(boxes0: np.ndarray, boxes1: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """UltraFace's ``iou_of``. UltraFace adds ``eps = 1e-5`` to the union, which on its normalised boxes
    lowers every IoU by about 0.1 %; the default 0 is the exact IoU that :mod:`edgedet.edge.core.nms` uses."""
    overlap_left_top = np.maximum(boxes0[..., :2], boxes1[..., :2])
    overlap_right_bottom = np.minimum(boxes0[..., 2:], boxes1[..., 2:])
    overlap_area = area_of(overlap_left_top, overlap_right_bottom)
    area0 = area_of(boxes0[..., :2], boxes0[..., 2:])
    area1 = area_of(boxes1[..., :2], boxes1[..., 2:])
    return overlap_area / (area0 + area1 - overlap_area + eps)


def hard_nms(box_scores: np.ndarray, iou_threshold: float, top_k: int = -1, candidate_size: int = 200) -> np.ndarray:
    """UltraFace's greedy ``hard_nms`` over ``[x1, y1, x2, y2, score]`` rows: the best ``candidate_size``
    by score, then repeatedly keep the best and drop the rest overlapping it by IoU > ``iou_threshold``.
    Equal scores: the lower row first (UltraFace's ``argsort`` leaves that to the sort)."""
    scores = box_scores[:, -1]
    boxes = box_scores[:, :-1]
    picked = []
    indexes = np.argsort(-scores, kind="stable")[::-1]  # ascending; among equal scores the lower row last
    indexes = indexes[-candidate_size:]
    while len(indexes) > 0:
        current = indexes[-1]
        picked.append(current)
        if 0 < top_k == len(picked) or len(indexes) == 1:
            break
        current_box = boxes[current, :]
        indexes = indexes[:-1]
        rest_boxes = boxes[indexes, :]
        iou = iou_of(rest_boxes, np.expand_dims(current_box, axis=0))
        indexes = indexes[iou <= iou_threshold]
    return box_scores[picked, :]


def ultraface_reference(
    scores: np.ndarray,
    boxes: np.ndarray,
    priors: np.ndarray | None,
    prob_threshold: float,
    iou_threshold: float,
    width: int,
    height: int,
    *,
    center_variance: float = 0.1,
    size_variance: float = 0.2,
    candidate_size: int = 200,
    top_k: int = -1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """UltraFace's post-processing (``convert_locations_to_boxes``, ``center_form_to_corner_form``, then
    ``predict``: a loop over classes, each thresholded, sorted and put through :func:`hard_nms`), the plain
    way. ``scores [N, C+1]`` softmax with background column 0; ``boxes [N, 4]`` raw regressions decoded
    against ``priors``, or decoded corner boxes when ``priors`` is None. Returns ``(boxes [K, 4] in
    input pixels, scores [K], class ids [K] 0-based)``, best first, at most ``top_k`` (all if < 1)."""
    if priors is not None:
        boxes = center_form_to_corner_form(convert_locations_to_boxes(boxes, priors, center_variance, size_variance))
    picked_box_probs = []
    picked_labels = []
    for class_index in range(1, scores.shape[1]):
        probs = scores[:, class_index]
        mask = probs > prob_threshold
        probs = probs[mask]
        if probs.shape[0] == 0:
            continue
        subset_boxes = boxes[mask, :]
        box_probs = np.concatenate([subset_boxes, probs.reshape(-1, 1)], axis=1)
        box_probs = hard_nms(box_probs, iou_threshold=iou_threshold, top_k=top_k, candidate_size=candidate_size)
        picked_box_probs.append(box_probs)
        picked_labels.extend([class_index - 1] * box_probs.shape[0])
    if not picked_box_probs:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    picked = np.concatenate(picked_box_probs)
    labels = np.asarray(picked_labels, dtype=np.int64)
    order = np.argsort(-picked[:, 4], kind="stable")  # all classes together, best first
    if top_k > 0:
        order = order[:top_k]
    picked, labels = picked[order], labels[order]
    picked[:, 0] *= width
    picked[:, 1] *= height
    picked[:, 2] *= width
    picked[:, 3] *= height
    return picked[:, :4].astype(np.float32), picked[:, 4].astype(np.float32), labels


# ---------------------------------------------------------------------------------------------- decode


def ultraface_outputs(
    model: str | os.PathLike[str], images: str | os.PathLike[str], spec: ModelSpec, threads: int | None = None
) -> list[dict[str, np.ndarray]]:
    """``model``'s raw outputs on every photo of the folder ``images`` (pre-processed for ``spec``)."""
    paths = list_images(images) if Path(images).is_dir() else [Path(images)]
    if not paths:
        raise ValueError(f"{images}: no images ({', '.join(IMAGE_SUFFIXES)})")
    detector = Detector(open_backend(model, threads), spec)
    outputs = []
    for path in paths:
        tensor, _ = detector.preprocess(read_image(path))
        outputs.append(detector.backend.run(tensor))
    return outputs


def _reference_for(decoder: SSDDecoder, outputs: Mapping[str, np.ndarray]) -> Callable[[], Any]:
    """A call of :func:`ultraface_reference` on ``outputs`` with the decoder's spec."""
    scores_name, box_name, role = decoder.resolve(outputs)
    spec = decoder.spec
    assert spec.priors is not None
    scores, boxes = outputs[scores_name][0], outputs[box_name][0]
    priors = decoder.priors if role == "locations" else None
    return lambda: ultraface_reference(
        scores,
        boxes,
        priors,
        spec.score_threshold,
        spec.iou_threshold,
        spec.input_width,
        spec.input_height,
        center_variance=spec.priors.center_variance,
        size_variance=spec.priors.size_variance,
        candidate_size=spec.max_candidates,
        top_k=spec.top_k,
    )


def same_detections(a: Sequence[np.ndarray], b: Sequence[np.ndarray], atol: float = 1e-3) -> bool:
    """Same count, classes and order; scores and boxes (pixels) within ``atol``."""
    (ba, sa, ca), (bb, sb, cb) = a, b
    return (
        len(sa) == len(sb)
        and np.array_equal(ca, cb)
        and bool(np.allclose(sa, sb, rtol=0, atol=atol))
        and bool(np.allclose(ba, bb, rtol=0, atol=atol))
    )


def bench_decode(
    outputs: Sequence[Mapping[str, np.ndarray]],
    spec: ModelSpec,
    thresholds: Sequence[float],
    repeat: int = 30,
    warmup_s: float = 0.5,
) -> list[dict[str, Any]]:
    """Per score threshold: median ms per call of :class:`SSDDecoder` and of :func:`ultraface_reference`
    over all ``outputs``, ``repeat`` rounds, interleaved; their ratio; whether they agree."""
    assert spec.priors is not None
    priors = spec.priors.generate(spec.input_size)
    rows = []
    for threshold in thresholds:
        s = replace(spec, score_threshold=float(threshold))
        decoder = SSDDecoder(s, priors)
        calls = [(lambda o=o, d=decoder: d(o), _reference_for(decoder, o)) for o in outputs]
        identical = all(same_detections(ours(), ref()) for ours, ref in calls)
        detections = sum(len(ours()[1]) for ours, _ in calls)
        scores_name = decoder.resolve(outputs[0])[0]
        candidates = [int((o[scores_name][0][:, 1:] > threshold).any(axis=1).sum()) for o in outputs]
        warm_until = time.perf_counter() + warmup_s  # caches, allocator and clocks settle
        while time.perf_counter() < warm_until:
            for ours, ref in calls:
                ours()
                ref()
        t_ours: list[float] = []
        t_ref: list[float] = []
        clock = time.perf_counter
        for r in range(repeat):
            for ours, ref in calls:
                pair = ((ours, t_ours), (ref, t_ref)) if r % 2 == 0 else ((ref, t_ref), (ours, t_ours))
                for fn, times in pair:
                    t0 = clock()
                    fn()
                    times.append((clock() - t0) * 1e3)
        ours_ms, ref_ms = _median(t_ours), _median(t_ref)
        rows.append(
            {
                "threshold": float(threshold),
                "images": len(outputs),
                "candidates_median": _median(candidates),
                "candidates_max": max(candidates),
                "detections": detections,
                "ours_ms": ours_ms,
                "ours_p90_ms": _p90(t_ours),
                "reference_ms": ref_ms,
                "reference_p90_ms": _p90(t_ref),
                "speedup": ref_ms / ours_ms,
                "identical": identical,
                "calls": len(t_ours),
            }
        )
    return rows


def print_decode(rows: Sequence[Mapping[str, Any]], priors: int, target_ms: float, target_speedup: float) -> None:
    print(f"decode + NMS, {priors} priors, {rows[0]['images']} photos; medians over {rows[0]['calls']} calls each")
    head = (
        f"{'thr':>5} {'cands':>6} {'dets':>5} {'ours ms':>8} {'p90':>7} {'plain ms':>9} {'p90':>7} "
        f"{'speedup':>8} {'same':>5}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['threshold']:>5.2f} {r['candidates_median']:>6.0f} {r['detections']:>5d} {r['ours_ms']:>8.3f} "
            f"{r['ours_p90_ms']:>7.3f} {r['reference_ms']:>9.3f} {r['reference_p90_ms']:>7.3f} "
            f"{r['speedup']:>7.1f}x {'yes' if r['identical'] else 'NO':>5}"
        )
    first = rows[0]
    ok = first["ours_ms"] <= target_ms and first["speedup"] >= target_speedup and all(r["identical"] for r in rows)
    print(
        f"target at threshold {first['threshold']:g}: median <= {target_ms} ms and >= {target_speedup:g}x the plain "
        f"loop, same detections at every threshold: {'met' if ok else 'NOT met'}"
    )


# ----------------------------------------------------------------------------------------------- frame


class ReplaySource:
    """A camera emulator: ``frames`` (decoded already) delivered in a loop, as a live source.

    With ``slot``, each read waits until the detector has taken the previous frame from it: the camera is
    always exactly one frame ahead, so the detector never waits for a frame and the capture thread wakes
    once per frame, as with a real camera (a source spinning faster would only fight the detector for
    the GIL). With ``fps`` instead, it sleeps between frames like a driver waiting for the sensor.
    ``read_ms`` collects the time of each read, waiting excluded.
    """

    live = True
    fps: float | None = None

    def __init__(self, frames: Sequence[np.ndarray], fps: float | None = None, slot: FrameSlot | None = None) -> None:
        if not frames:
            raise ValueError("ReplaySource: no frames")
        if (fps is None) == (slot is None):
            raise ValueError("ReplaySource: give either fps or slot")
        if fps is not None and not fps > 0:
            raise ValueError(f"ReplaySource: fps must be > 0, got {fps}")
        self.frames = list(frames)
        self.period = 1.0 / fps if fps else 0.0
        self.slot = slot
        self._i = 0
        self._due = time.perf_counter()
        self.read_ms: list[float] = []

    def read(self) -> tuple[np.ndarray, int | None]:
        if self.slot is not None:
            self.slot.wait_taken(1.0)
        else:
            delay = self._due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        t0 = time.perf_counter()
        self._due = max(self._due + self.period, t0 - self.period)
        frame = self.frames[self._i % len(self.frames)]
        self._i += 1
        self.read_ms.append((time.perf_counter() - t0) * 1e3)
        return frame, None

    def close(self) -> None:
        pass


def _parse_size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size: expected WIDTHxHEIGHT, e.g. 640x480, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"--size: expected positive sizes, got {text!r}")
    return w, h


def synthetic_frames(size: tuple[int, int], n: int = 16) -> list[np.ndarray]:
    """Moving bright discs on a textured background, for when no photos are at hand."""
    w, h = size
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 3)
    frames = []
    for i in range(n):
        frame = base.copy()
        cv2.circle(frame, ((i * w // n) % w, h // 2), max(4, min(w, h) // 6), (230, 230, 230), -1)
        frames.append(frame)
    return frames


def load_frames(source: str | None, size: tuple[int, int] | None, limit: int = 120) -> tuple[list[np.ndarray], str]:
    """Up to ``limit`` BGR frames of ``source`` (a video, an image folder or an image; default: the
    UltraFace photos when present, else synthetic frames), resized to ``size`` when given; and a name."""
    frames: list[np.ndarray]
    if source is None:
        if PHOTOS.is_dir():
            frames, name = [read_image(p) for p in list_images(PHOTOS)[:limit]], str(PHOTOS)
        else:
            frames, name = synthetic_frames(size or (640, 480)), "synthetic"
    else:
        path = Path(source)
        if path.is_dir():
            frames = [read_image(p) for p in list_images(path)[:limit]]
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            frames = [read_image(path)]
        else:
            frames = [frame for _, frame in zip(range(limit), iter_video(path), strict=False)]
        name = str(path)
    if not frames:
        raise ValueError(f"{source}: no frames could be read")
    if size is not None:
        frames = [f if f.shape[1::-1] == size else cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
    return frames, name


@dataclass
class _Loop:
    """Per-frame stage times (ms) of the instrumented loop."""

    capture: list[float]
    preprocess: list[float]
    inference: list[float]
    decode: list[float]
    publish: list[float]
    frame: list[float]
    detections: int = 0
    frame_size: str = ""


def _instrumented_loop(
    detector: Detector, slot: FrameSlot, sink: JsonLinesSink, name: str, seconds: float, warmup: int
) -> tuple[_Loop, float]:
    """The daemon's loop body with a clock between the stages; ``(times, frames per second)``."""
    times = _Loop([], [], [], [], [], [])
    clock = time.perf_counter
    done = 0
    start = end = 0.0
    while True:
        t0 = clock()
        frame = slot.take(timeout=2.0)
        if frame is None:
            raise RuntimeError("frame benchmark: the capture thread delivered no frame for 2 s")
        t1 = clock()
        detections = detector.detect(frame.image)
        t2 = clock()
        sink.emit(build_event("bench", name, frame, detections, detector.last_timings))
        t3 = clock()
        done += 1
        if done == warmup:
            start = t3
            continue
        if done < warmup:
            continue
        st = detector.last_timings
        times.frame_size = f"{frame.image.shape[1]}x{frame.image.shape[0]}"
        times.capture.append((t1 - t0) * 1e3)
        times.preprocess.append(st.preprocess_ms)
        times.inference.append(st.inference_ms)
        times.decode.append(st.decode_ms)
        times.publish.append((t3 - t2) * 1e3)
        times.frame.append((t3 - t0) * 1e3)
        times.detections += len(detections)
        end = t3
        if end - start >= seconds:
            break
    return times, len(times.frame) / (end - start)


def _pipelined_loop(
    detector: Detector, slot: FrameSlot, sink: JsonLinesSink, name: str, seconds: float, warmup: int
) -> tuple[list[float], list[float], float]:
    """The daemon's pipelined loop (:class:`edgedet.edge.runtime.pipeline.Pipeline`, inference in its own thread):
    ``(frame periods ms, inference ms, frames per second)``; a frame's period is the time between its
    result and the previous one's, so ``period - inference`` is what the frame costs beyond inference."""
    periods: list[float] = []
    inference: list[float] = []
    clock = time.perf_counter
    done = 0
    start = last = 0.0

    def publish(result: tuple[Any, list[Any]] | None) -> None:
        nonlocal done, start, last
        if result is None:
            return
        frame, detections = result
        sink.emit(build_event("bench", name, frame, detections, detector.last_timings))
        now = clock()
        done += 1
        if done > warmup:
            periods.append((now - last) * 1e3)
            inference.append(detector.last_timings.inference_ms)
        elif done == warmup:
            start = now
        last = now

    with Pipeline(detector) as pipeline:
        while done <= warmup or last - start < seconds:
            frame = slot.take(timeout=2.0)
            if frame is None:
                raise RuntimeError("frame benchmark: the capture thread delivered no frame for 2 s")
            publish(pipeline.push(frame.image, frame))
            wait_s = min(detector.last_timings.inference_ms / 1e3 * 1.5, 0.25)
            if not slot.wait_fresh(wait_s):
                publish(pipeline.flush())
        publish(pipeline.flush())
    return periods, inference, len(periods) / (last - start)


def _daemon_fps(
    detector: Detector, source_for: Callable[[FrameSlot], CaptureSource], events: Path, seconds: float, warmup_s: float
) -> float:
    """Frames per second of the real :class:`edgedet.edge.camera.daemon.Daemon` loop (events of every frame written)."""
    from edgedet.edge.camera.config import load_config
    from edgedet.edge.camera.daemon import Daemon  # the HTTP server and MQTT modules load only here

    config = load_config(
        None,
        {
            "model": "bench",
            "source": "bench",
            "events.path": str(events),
            "events.include_empty": True,
            "http.enabled": False,
            "source_fps": 0,  # a file source unpaced, as in the instrumented loop
        },
    )
    slots: list[FrameSlot] = []
    daemon = Daemon(config, detector=detector, opener=lambda: source_for(slots[0]))
    slots.append(daemon.slot)
    runner = threading.Thread(target=daemon.run, name="bench-daemon", daemon=True)
    daemon.start()
    runner.start()
    try:
        time.sleep(warmup_s)
        n0, t0 = daemon.processed, time.perf_counter()
        time.sleep(seconds)
        n1, t1 = daemon.processed, time.perf_counter()
    finally:
        daemon.stop()
        runner.join(timeout=5.0)
        daemon.close()
    return (n1 - n0) / (t1 - t0)


def bench_frame(
    detector: Detector,
    frames: Sequence[np.ndarray] | None = None,
    *,
    source_name: str = "frames",
    opener: Callable[[], CaptureSource] | None = None,
    seconds: float = 5.0,
    camera_fps: float | None = None,
    daemon: bool = True,
    warmup: int = 20,
) -> dict[str, Any]:
    """Time ``detector`` in the daemon's loop on ``frames`` replayed by a :class:`ReplaySource` — one frame
    ahead of the detector, or at ``camera_fps`` — or on what ``opener`` opens; see the module docstring.
    Returns the figures :func:`print_frame` prints."""
    if opener is None and not frames:
        raise ValueError("bench_frame: give frames or an opener")
    replay: list[ReplaySource] = []

    def source_for(slot: FrameSlot) -> CaptureSource:
        """What the capture thread filling ``slot`` opens."""
        if opener is not None:
            return opener()
        assert frames
        replay.append(ReplaySource(frames, fps=camera_fps) if camera_fps else ReplaySource(frames, slot=slot))
        return replay[-1]

    with tempfile.TemporaryDirectory(prefix="edgedet-bench-") as tmp:
        slot = FrameSlot()
        capture = CaptureThread(lambda: source_for(slot), slot, loop=True, pace_fps=0.0, name="bench-capture")
        sink = JsonLinesSink(str(Path(tmp) / "events.jsonl"))
        capture.start()
        try:
            times, loop_fps = _instrumented_loop(detector, slot, sink, source_name, seconds, warmup)
            periods, piped_inference, piped_fps = _pipelined_loop(detector, slot, sink, source_name, seconds, warmup)
        finally:
            capture.stop()
            capture.join(timeout=2.0)
            sink.close()
        dropped, captured = slot.dropped, capture.captured
        read_ms = [t for source in replay for t in source.read_ms]
        daemon_fps = _daemon_fps(detector, source_for, Path(tmp) / "daemon.jsonl", seconds, 1.0) if daemon else None
    frame_ms = _median(times.frame)
    inference_ms = _median(times.inference)
    other = [f - i for f, i in zip(times.frame, times.inference, strict=True)]
    return {
        "source": source_name,
        "frame_size": times.frame_size,
        "model_input": f"{detector.spec.input_width}x{detector.spec.input_height}",
        "camera": "live" if opener is not None else f"{camera_fps:g} fps" if camera_fps else "one frame ahead",
        "camera_fps": camera_fps,
        "frames": len(times.frame),
        "captured": captured,
        "dropped": dropped,
        "detections_per_frame": times.detections / max(1, len(times.frame)),
        "stages_ms": {
            "capture": _median(times.capture),
            "preprocess": _median(times.preprocess),
            "inference": inference_ms,
            "decode": _median(times.decode),
            "publish": _median(times.publish),
        },
        "capture_thread_read_ms": _median(read_ms) if read_ms else None,
        "frame_ms": frame_ms,
        "frame_p90_ms": _p90(times.frame),
        "non_inference_ms": _median(other),
        "non_inference_share": _median([o / f for o, f in zip(other, times.frame, strict=True)]),
        "non_inference_share_total": float(np.sum(other) / np.sum(times.frame)),
        "loop_fps": loop_fps,
        "pipelined_period_ms": _median(periods),
        "pipelined_inference_ms": _median(piped_inference),
        "pipelined_non_inference_share": 1.0 - float(np.sum(piped_inference) / np.sum(periods)),
        "pipelined_fps": piped_fps,
        "daemon_fps": daemon_fps,
        "inference_fps": 1e3 / inference_ms,
    }


def print_frame(r: Mapping[str, Any], threads: int | None, model: str, share: float, fps_ratio: float) -> None:
    st = r["stages_ms"]
    print(
        f"frame: {model} ({r['model_input']} input, {threads or 'default'} threads) on {r['source']} "
        f"({r['frame_size']}); {r['frames']} frames timed; camera: {r['camera']}"
    )
    print(f"{'stage':<12} {'median ms':>10} {'of frame':>9}")
    for name in ("capture", "preprocess", "inference", "decode", "publish"):
        print(f"{name:<12} {st[name]:>10.3f} {st[name] / r['frame_ms']:>9.1%}")
    print(f"{'frame':<12} {r['frame_ms']:>10.3f} {'':>9} (p90 {r['frame_p90_ms']:.3f})")
    print(
        f"outside inference: {r['non_inference_ms']:.3f} ms = {r['non_inference_share']:.1%} of the frame "
        f"(median per frame; {r['non_inference_share_total']:.1%} of all frame time)"
    )
    if r["capture_thread_read_ms"] is not None:
        print(f"capture thread (its own thread): {r['capture_thread_read_ms']:.4f} ms per read")
    inf_fps = r["inference_fps"]
    print(f"1 / inference: {inf_fps:.1f} fps")
    print(f"sustained, instrumented loop: {r['loop_fps']:.1f} fps = {r['loop_fps'] / inf_fps:.1%} of 1 / inference")
    piped = r["pipelined_non_inference_share"]
    print(
        f"pipelined (inference in its own thread, as edgedet.edge.camera.daemon runs by default): frame period "
        f"{r['pipelined_period_ms']:.3f} ms (median), inference {r['pipelined_inference_ms']:.3f} ms; "
        f"outside inference {piped:.1%} of all frame time; {r['pipelined_fps']:.1f} fps = "
        f"{r['pipelined_fps'] / inf_fps:.1%} of 1 / inference"
    )
    if r["daemon_fps"] is not None:
        fps = r["daemon_fps"]
        print(f"sustained, edgedet.edge.camera.daemon loop:  {fps:.1f} fps = {fps / inf_fps:.1%} of 1 / inference")
    print(
        f"frames captured {r['captured']}, replaced before use {r['dropped']}; "
        f"{r['detections_per_frame']:.2f} detections/frame"
    )
    fps = r["daemon_fps"] if r["daemon_fps"] is not None else r["pipelined_fps"]
    ok = piped <= share and fps >= (1.0 - fps_ratio) * inf_fps
    print(
        f"target (pipelined, the daemon's default): outside inference <= {share:.0%} of the frame time, "
        f"sustained fps within {fps_ratio:.0%} of 1 / inference: {'met' if ok else 'NOT met'}"
    )


# --------------------------------------------------------------------------------------- paired latency


def bench_paired(
    base: str | os.PathLike[str], models: Sequence[str | os.PathLike[str]], threads: int = 1, rounds: int = 40,
    runs: int = 20, warmup: int = 20,
) -> list[dict[str, Any]]:  # fmt: skip
    """Interleaved latency of ``base`` and ``models`` (backend ``run`` on one random pre-processed input,
    already quantised for an integer-input model, as :class:`~edgedet.edge.runtime.detector.Detector` passes
    it): per model,
    the median over rounds of each round's median (ms) and, against ``base``, the median per-round ratio
    and the number of rounds it was faster. The base's own row comes first."""
    if rounds < 1 or runs < 1:
        raise ValueError(f"rounds and runs must be >= 1, got {rounds} and {runs}")
    paths = [str(base), *map(str, models)]
    backends = [open_backend(p, threads=threads) for p in paths]
    inputs = []
    for path, backend in zip(paths, backends, strict=True):
        shape = backend.input_shape
        if any(d is None for d in shape):
            raise ValueError(f"{path}: input shape {list(shape)} is not static; compare needs a fixed size")
        x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
        quant = getattr(backend, "input_quant", None)  # an int8-input model gets int8, as the Detector passes it
        inputs.append(x if quant is None else quantize(x, quant, backend.input_dtype))
    for backend, x in zip(backends, inputs, strict=True):
        for _ in range(warmup):
            backend.run(x)
    per_round = np.zeros((len(paths), rounds))
    for r in progress(range(rounds), rounds, "rounds"):
        for i, (backend, x) in enumerate(zip(backends, inputs, strict=True)):
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                backend.run(x)
                times.append(time.perf_counter() - start)
            per_round[i, r] = float(np.median(times)) * 1e3
    ratios = per_round / per_round[0]
    return [
        {
            "model": path,
            "median_ms": float(np.median(per_round[i])),
            "min_round_ms": float(per_round[i].min()),
            "ratio_vs_base": float(np.median(ratios[i])),
            "faster_rounds": int((per_round[i] < per_round[0]).sum()),
            "rounds": rounds,
        }
        for i, path in enumerate(paths)
    ]


def print_paired(rows: Sequence[Mapping[str, Any]], threads: int) -> None:
    print(f"paired latency, {threads} thread(s), {rows[0]['rounds']} interleaved rounds (medians):")
    for i, row in enumerate(rows):
        vs = "base" if i == 0 else (
            f"{row['ratio_vs_base']:.3f}x base, faster in {row['faster_rounds']}/{row['rounds']} rounds"
        )  # fmt: skip
        print(f"  {Path(row['model']).name:36s} {row['median_ms']:7.3f} ms  {vs}")


# ------------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edgedet.edge.bench.runtime", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("decode", help="decode + NMS against UltraFace's plain post-processing")
    d.add_argument("--model", default=str(RAW_MODEL), help="UltraFace without post-processing (.onnx / .tflite)")
    d.add_argument("--images", default=str(PHOTOS), help="folder of photos (default: the UltraFace images)")
    d.add_argument("--thresholds", type=float, nargs="+", default=[0.7, 0.3], help="score thresholds (first: target)")
    d.add_argument("--repeat", type=int, default=30, help="timed rounds over all photos")
    d.add_argument("--target-ms", type=float, default=0.3)
    d.add_argument("--target-speedup", type=float, default=5.0)
    d.add_argument("--json", action="store_true", help="print the figures as JSON too")
    f = sub.add_parser("frame", help="per-frame stage times and sustained fps in the daemon's loop")
    f.add_argument("--model", required=True, help=".onnx / .tflite (spec from its metadata, or --spec)")
    f.add_argument("--spec", help="'ultraface' or a spec JSON file, for a model without metadata")
    f.add_argument("--source", help="video file, image folder or image (default: UltraFace photos or synthetic)")
    f.add_argument("--size", help="resize source frames to WIDTHxHEIGHT first (e.g. 640x480)")
    f.add_argument("--threads", type=int, help="inference threads (default: the runtime's)")
    f.add_argument("--seconds", type=float, default=5.0, help="timed seconds for each of the two loops")
    f.add_argument("--camera-fps", type=float, help="emulated camera rate (default: always one frame ahead)")
    f.add_argument("--live", action="store_true", help="decode --source in the capture thread (no replay)")
    f.add_argument("--no-daemon", action="store_true", help="skip the run through edgedet.edge.camera.daemon.Daemon")
    f.add_argument("--score-threshold", type=float, help="override the spec's")
    f.add_argument("--target-share", type=float, default=0.15)
    f.add_argument("--target-fps-ratio", type=float, default=0.15)
    f.add_argument("--json", action="store_true", help="print the figures as JSON too")
    c = sub.add_parser("compare", help="paired, interleaved latency of models against a base model")
    c.add_argument("--base", required=True, help="the reference model (e.g. the fp32 .onnx / .tflite)")
    c.add_argument("--models", nargs="+", required=True, help="models to compare with it (e.g. int8)")
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--rounds", type=int, default=40)
    c.add_argument("--runs", type=int, default=20, help="back-to-back runs per model per round")
    c.add_argument("--json", action="store_true", help="print the figures as JSON too")
    r = sub.add_parser("profile", help="ONNX Runtime time by operator kind (pointwise / depthwise apart)")
    r.add_argument("--models", nargs="+", required=True, help=".onnx models (e.g. fp32 and its int8 twin)")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--runs", type=int, default=200)
    r.add_argument("--json", action="store_true", help="print the figures as JSON too")
    return p


def _report(measure: Callable[[], Any], show: Callable[[Any], None], as_json: bool) -> int:
    """Run ``measure``; print its figures (and their JSON), or the bad input as an error (exit status 2)."""
    try:
        figures = measure()
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    show(figures)
    if as_json:
        print(json.dumps(figures))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "decode":
        spec = ModelSpec.ultraface()
        for what, path in (("--model", args.model), ("--images", args.images)):
            if not Path(path).exists():
                print(f"{what}: {path} not found", file=sys.stderr)
                return 2
        outputs = ultraface_outputs(args.model, args.images, spec)
        rows = bench_decode(outputs, spec, args.thresholds, args.repeat)
        assert spec.priors is not None
        print_decode(rows, len(spec.priors.generate(spec.input_size)), args.target_ms, args.target_speedup)
        if args.json:
            print(json.dumps(rows))
        return 0
    if args.command == "profile":
        from edgedet.edge.bench.ort_profile import print_profiles, profile_onnx

        return _report(
            lambda: {m: profile_onnx(m, args.runs, args.threads) for m in args.models},
            lambda figures: print_profiles(figures, args.threads),
            args.json,
        )
    if args.command == "compare":
        return _report(
            lambda: bench_paired(args.base, args.models, args.threads, args.rounds, args.runs),
            lambda figures: print_paired(figures, args.threads),
            args.json,
        )
    try:
        spec = load_spec(args.spec) if args.spec else None
        detector = Detector.from_model(
            args.model, spec=spec, threads=args.threads, score_threshold=args.score_threshold
        )
        size = _parse_size(args.size)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.live:
        if args.source is None:
            print("error: --live needs --source", file=sys.stderr)
            return 2
        from edgedet.edge.camera.sources import open_source

        shape = None if size is None else size
        if shape is not None:
            print("note: --size is ignored with --live (frames are used as decoded)", file=sys.stderr)
        result = bench_frame(
            detector,
            source_name=args.source,
            opener=lambda: open_source(args.source),
            seconds=args.seconds,
            daemon=not args.no_daemon,
        )
    else:
        frames, name = load_frames(args.source, size)
        result = bench_frame(
            detector,
            frames,
            source_name=name,
            seconds=args.seconds,
            camera_fps=args.camera_fps,
            daemon=not args.no_daemon,
        )
    print_frame(result, args.threads, Path(args.model).name, args.target_share, args.target_fps_ratio)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``edgedet bench frame``: where the time of one camera frame goes, in the daemon's own loop.

``frame`` runs a model the way the camera daemon does: a :class:`edgedet.edge.camera.capture.CaptureThread`
keeps the newest frame in a :class:`edgedet.edge.camera.capture.FrameSlot`, the main loop takes it, runs
:meth:`Detector.detect <edgedet.edge.runtime.detector.Detector.detect>` and publishes
(:func:`~edgedet.edge.camera.events.build_event` + one line written by
:class:`edgedet.edge.camera.sinks.JsonLinesSink`). It prints the median time of each stage per frame — capture
(waiting for the slot), preprocess, inference, decode/NMS, publish — the share of the frame spent outside
inference, and the sustained frame rate, of this instrumented loop; then the same loop pipelined as the daemon
runs it by default (:class:`~edgedet.edge.runtime.pipeline.Pipeline`: inference in its own thread, overlapped
with the rest), where what a frame costs beyond inference is its period minus its inference time; and the
frame rate of the real :class:`edgedet.edge.camera.daemon.Daemon` loop on the same detector, all against ``1 /
inference``. The frames are decoded from ``--source`` once, up front (resized to ``--size``), and replayed by
a camera emulator (:class:`ReplaySource`): by default a camera always exactly one frame ahead of the detector
— a new frame is in the slot whenever the detector comes for one, so the figures are the detector loop's own —
or one delivering ``--camera-fps``. ``--live`` reads the source through
:func:`edgedet.edge.camera.sources.open_source` in the capture thread instead, decoding as a file source would
(then the source may be the limit).
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgedet.edge.bench.figures import median, p90, parse_size, print_figures
from edgedet.edge.camera.capture import CaptureThread, FrameSlot
from edgedet.edge.camera.events import build_event
from edgedet.edge.camera.sinks import JsonLinesSink
from edgedet.edge.camera.sources import CaptureSource
from edgedet.edge.runtime.detector import Detector, load_spec
from edgedet.edge.runtime.media import IMAGE_SUFFIXES, iter_video, list_images, read_image
from edgedet.edge.runtime.pipeline import Pipeline

__all__ = ["ReplaySource", "bench_frame", "cli", "load_frames", "print_frame", "synthetic_frames"]


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
    return parse_size(text, minimum=1)


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
    """Up to ``limit`` BGR frames of ``source`` (a video, an image folder or an image; default: synthetic
    frames), resized to ``size`` when given; and a name."""
    frames: list[np.ndarray]
    if source is None:
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
    frame_ms = median(times.frame)
    inference_ms = median(times.inference)
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
            "capture": median(times.capture),
            "preprocess": median(times.preprocess),
            "inference": inference_ms,
            "decode": median(times.decode),
            "publish": median(times.publish),
        },
        "capture_thread_read_ms": median(read_ms) if read_ms else None,
        "frame_ms": frame_ms,
        "frame_p90_ms": p90(times.frame),
        "non_inference_ms": median(other),
        "non_inference_share": median([o / f for o, f in zip(other, times.frame, strict=True)]),
        "non_inference_share_total": float(np.sum(other) / np.sum(times.frame)),
        "loop_fps": loop_fps,
        "pipelined_period_ms": median(periods),
        "pipelined_inference_ms": median(piped_inference),
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


def cli(args: Any) -> int:
    """``edgedet bench frame --model M [--source S] [--size WxH] ...``."""
    spec = load_spec(args.spec) if args.spec else None
    detector = Detector.from_model(args.model, spec=spec, threads=args.threads, score_threshold=args.score_threshold)
    size = _parse_size(args.size)
    if args.live:
        if args.source is None:
            raise ValueError("--live needs --source")
        from edgedet.edge.camera.sources import open_source

        if size is not None:
            print("note: --size is ignored with --live (frames are used as decoded)")
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
            detector, frames, source_name=name, seconds=args.seconds, camera_fps=args.camera_fps,
            daemon=not args.no_daemon,
        )  # fmt: skip
    show = lambda r: print_frame(r, args.threads, Path(args.model).name, args.target_share, args.target_fps_ratio)  # noqa: E731
    return print_figures(result, show, args.json)

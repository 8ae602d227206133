"""Timing a model two ways: the backend alone, and whole frames through :class:`edgedet.edge.runtime.detector.Detector`.

Both warm up first (allocation, thread pools and caches settle), then time every call with
``time.perf_counter``; medians are what the report quotes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import cycle, islice
from typing import Any

import numpy as np

from edgedet.edge.bench.figures import timing_summary
from edgedet.edge.runtime.detector import Detector

__all__ = ["frame_timings", "time_backend", "warmup_runs"]


def warmup_runs(runs: int) -> int:
    """Warm-up calls before ``runs`` timed ones: a tenth of them, at least 5."""
    return max(5, runs // 10)


def time_backend(detector: Detector, frames: Sequence[np.ndarray], runs: int) -> dict[str, Any]:
    """``detector.backend.run`` alone on the pre-processed ``frames`` (cycled): warm-up, then ``runs``
    timed calls; the summary plus ``runs`` and ``warmup``."""
    tensors = [detector.preprocess(frame)[0] for frame in frames]
    warmup = warmup_runs(runs)
    run = detector.backend.run
    for tensor in islice(cycle(tensors), warmup):
        run(tensor)
    times = []
    for tensor in islice(cycle(tensors), runs):
        t0 = time.perf_counter()
        run(tensor)
        times.append((time.perf_counter() - t0) * 1e3)
    return {**timing_summary(times), "runs": runs, "warmup": warmup}


def frame_timings(detector: Detector, frames: Sequence[np.ndarray], runs: int) -> dict[str, Any]:
    """``detector.detect`` on ``frames`` (cycled): warm-up, then ``runs`` timed frames; ``frame_ms`` and
    ``frame_p90_ms`` of the whole call and ``stages_ms`` (median pre-processing, inference, decoding)."""
    for frame in islice(cycle(frames), warmup_runs(runs)):
        detector.detect(frame)
    totals, stages = [], []
    for frame in islice(cycle(frames), runs):
        t0 = time.perf_counter()
        detector.detect(frame)
        totals.append((time.perf_counter() - t0) * 1e3)
        t = detector.last_timings
        stages.append((t.preprocess_ms, t.inference_ms, t.decode_ms))
    medians = np.median(np.asarray(stages, dtype=np.float64), axis=0)
    summary = timing_summary(totals)
    return {
        "frame_ms": summary["median"],
        "frame_p90_ms": summary["p90"],
        "stages_ms": dict(zip(("preprocess", "inference", "decode"), map(float, medians), strict=True)),
    }

"""``edgedet bench decode``: SSD decode + NMS against UltraFace's plain post-processing.

``decode`` runs the published UltraFace model without post-processing on real photos once, then times, call by
call and interleaved in the same run, :class:`edgedet.edge.runtime.decoders.SSDDecoder` (decode + class-aware
hard NMS) against :func:`~edgedet.edge.bench.reference_postprocess.ultraface_reference`, a plain per-class
loop written the way UltraFace's own numpy post-processing is (every prior decoded, then per class: threshold,
sort, greedy ``hard_nms`` with ``candidate_size`` 200), checks that both give the same detections and prints
the medians and their ratio.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgedet.edge.bench.figures import median, p90, print_figures
from edgedet.edge.bench.reference_postprocess import ultraface_reference
from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.runtime.backends import open_backend
from edgedet.edge.runtime.decoders import SSDDecoder
from edgedet.edge.runtime.detector import Detector, load_spec
from edgedet.edge.runtime.media import IMAGE_SUFFIXES, list_images, read_image

__all__ = ["bench_decode", "cli", "print_decode", "same_detections", "ultraface_outputs"]


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
        ours_ms, ref_ms = median(t_ours), median(t_ref)
        rows.append(
            {
                "threshold": float(threshold),
                "images": len(outputs),
                "candidates_median": median(candidates),
                "candidates_max": max(candidates),
                "detections": detections,
                "ours_ms": ours_ms,
                "ours_p90_ms": p90(t_ours),
                "reference_ms": ref_ms,
                "reference_p90_ms": p90(t_ref),
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


def cli(args: Any) -> int:
    """``edgedet bench decode --model RAW --images DIR``."""
    spec = load_spec(args.spec)
    for what, path in (("--model", args.model), ("--images", args.images)):
        if not Path(path).exists():
            raise FileNotFoundError(f"{what}: {path} not found")
    rows = bench_decode(ultraface_outputs(args.model, args.images, spec), spec, args.thresholds, args.repeat)
    assert spec.priors is not None
    priors = len(spec.priors.generate(spec.input_size))
    return print_figures(rows, lambda r: print_decode(r, priors, args.target_ms, args.target_speedup), args.json)

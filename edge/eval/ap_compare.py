"""How sure is an AP difference between two models? A paired bootstrap over the images.

Two models (say fp32 and its int8 twin) score the same images. The difference of their AP50 on a small
val set moves with a few detections whose scores swap order, so a point estimate alone cannot say
whether "-1.9 points" is the quantiser's fault or the val set's size. :func:`paired_bootstrap` draws
the images with replacement, scores *both* models on every draw (paired: the same images each time)
and reports the difference on the real set with a percentile confidence interval over the draws.

An image drawn twice counts as two images (renamed copies), as in any bootstrap. Metrics come from
:func:`edgedet.edge.eval.coco_metrics.coco_metrics`, so AP means exactly what ``edgedet eval`` prints. For AP50
and AP the per-image COCO matching is done once per model and only the accumulation is redone per draw
(:class:`edgedet.edge.eval.fast_ap.ResampledAP`: the same numbers, a few ms a draw instead of a full
evaluation); other metrics, and the cases that module cannot promise, run the full evaluation per draw.

Benchmark of the two paths (not a test): ``python -m edgedet.edge.eval.ap_compare --bench``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from edgedet.edge.eval.coco_metrics import METRIC_NAMES, ImageDetections, ImageTruth, coco_metrics
from edgedet.edge.eval.fast_ap import FAST_METRICS, ResampledAP
from edgedet.edge.runtime.progress import progress

__all__ = ["PairedDelta", "paired_bootstrap", "resample"]


@dataclass(frozen=True)
class PairedDelta:
    """``b - a`` of one metric on the real images, and its bootstrap interval (metric units, not points)."""

    metric: str
    a: float
    b: float
    delta: float
    low: float
    high: float
    confidence: float
    resamples: int
    images: int
    b_worse_share: float  # share of draws in which b scored below a

    def line(self, name_a: str = "a", name_b: str = "b") -> str:
        pts = 100.0
        return (
            f"{self.metric} {name_b} - {name_a}: {pts * self.delta:+.1f} points "
            f"({self.confidence:.0%} CI {pts * self.low:+.1f} .. {pts * self.high:+.1f}; paired bootstrap, "
            f"{self.resamples} draws of {self.images} images; {name_b} lower in {self.b_worse_share:.0%} of draws)"
        )


def resample(
    truth: Sequence[ImageTruth], dets: Sequence[ImageDetections], index: Sequence[int]
) -> tuple[list[ImageTruth], list[ImageDetections]]:
    """The images at ``index`` (repeats allowed), each copy under its own id ``"<position>:<id>"``."""
    t_out, d_out = [], []
    for pos, i in enumerate(index):
        new_id = f"{pos}:{truth[i].image_id}"
        t_out.append(replace(truth[i], image_id=new_id))
        d_out.append(replace(dets[i], image_id=new_id))
    return t_out, d_out


def _scorer(
    truth: Sequence[ImageTruth], dets: Sequence[ImageDetections], class_names: Sequence[str], metric: str
) -> Callable[[Sequence[int]], float]:
    """``index -> coco_metrics(*resample(truth, dets, index), class_names)[metric]``: through
    :class:`ResampledAP` for AP50 / AP where it can promise the same numbers, a full evaluation otherwise."""
    fast = ResampledAP.build(truth, dets, class_names) if metric in FAST_METRICS else None
    if fast is not None:
        return lambda index: fast.metric(np.asarray(index), metric)
    return lambda index: float(coco_metrics(*resample(truth, dets, index), class_names)[metric])


def paired_bootstrap(
    truth: Sequence[ImageTruth],
    dets_a: Sequence[ImageDetections],
    dets_b: Sequence[ImageDetections],
    class_names: Sequence[str],
    metric: str = "AP50",
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    show_progress: bool = False,
) -> PairedDelta:
    """``metric(b) - metric(a)`` on the images of ``truth`` and its paired-bootstrap percentile interval.

    ``dets_a`` / ``dets_b`` hold one entry per image of ``truth``, in the same order.
    """
    if metric not in METRIC_NAMES:
        raise ValueError(f"metric {metric!r}: expected one of {list(METRIC_NAMES)}")
    if not len(truth):
        raise ValueError("paired_bootstrap: no images")
    for name, dets in (("dets_a", dets_a), ("dets_b", dets_b)):
        ids = [d.image_id for d in dets]
        if ids != [t.image_id for t in truth]:
            raise ValueError(f"paired_bootstrap: {name} must list the images of truth in the same order")
    if resamples < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(f"paired_bootstrap: resamples >= 1 and 0 < confidence < 1, got {resamples}, {confidence}")

    score_a, score_b = _scorer(truth, dets_a, class_names, metric), _scorer(truth, dets_b, class_names, metric)
    n = len(truth)
    everything = range(n)
    a, b = score_a(everything), score_b(everything)
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    for k in progress(range(resamples), resamples, f"bootstrap {metric}", show_progress):
        index = rng.integers(0, n, n)
        deltas[k] = score_b(index) - score_a(index)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(deltas, [tail, 1.0 - tail])
    return PairedDelta(
        metric, a, b, b - a, float(low), float(high), confidence, resamples, n, float(np.mean(deltas < 0))
    )


def _bench_case(
    seed: int = 0, images: int = 85, per_image: int = 400
) -> tuple[list[ImageTruth], list[ImageDetections], list[ImageDetections]]:
    """One class, 1..12 faces an image, ``per_image`` detections each (a few jittered hits per face, the rest
    scattered low-score boxes, as a detector at score threshold 0.01 gives), and a twin with perturbed scores."""
    rng = np.random.default_rng(seed)
    truth, dets_a, dets_b = [], [], []
    for i in range(images):
        m = int(rng.integers(1, 13))
        xy = rng.uniform(0, 560, (m, 2))
        gt = np.concatenate([xy, xy + rng.uniform(8, 80, (m, 2))], axis=1)
        hits = np.repeat(gt, 4, axis=0) + rng.normal(0, 4, (4 * m, 4))
        xy = rng.uniform(0, 600, (per_image - len(hits), 2))
        boxes = np.concatenate([hits, np.concatenate([xy, xy + rng.uniform(8, 80, xy.shape)], axis=1)])
        scores = np.concatenate([rng.uniform(0.3, 1.0, len(hits)), rng.uniform(0.01, 0.5, per_image - len(hits))])
        truth.append(ImageTruth(f"img{i}", 640, 640, gt, np.zeros(m, np.int64)))
        dets_a.append(ImageDetections(f"img{i}", boxes, scores, np.zeros(len(boxes), np.int64)))
        twin = np.clip(scores + rng.normal(0, 0.02, len(scores)), 0.01, 1.0)
        dets_b.append(ImageDetections(f"img{i}", boxes, twin, np.zeros(len(boxes), np.int64)))
    return truth, dets_a, dets_b


def bench(draws: int = 100, old_draws: int = 100, repeats: int = 5, metric: str = "AP50") -> dict[str, float]:
    """Seconds for ``draws`` paired draws on :func:`_bench_case`: the full evaluation per draw (old) against
    :class:`ResampledAP` (new), on the same draws; prints per-draw medians and totals."""
    truth, dets_a, dets_b = _bench_case()
    n, classes = len(truth), ["face"]
    index = [np.random.default_rng(0).integers(0, n, n) for _ in range(draws)]

    def slow(dets: Sequence[ImageDetections], idx: np.ndarray) -> float:
        return float(coco_metrics(*resample(truth, dets, idx), classes)[metric])

    old_times, old_deltas = [], []
    for idx in index[:old_draws]:
        t0 = time.perf_counter()
        old_deltas.append(slow(dets_b, idx) - slow(dets_a, idx))
        old_times.append(time.perf_counter() - t0)
    builds, totals, new_times = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fast_a, fast_b = ResampledAP.build(truth, dets_a, classes), ResampledAP.build(truth, dets_b, classes)
        assert fast_a is not None and fast_b is not None
        builds.append(time.perf_counter() - t0)
        new_deltas = []
        for idx in index:
            t1 = time.perf_counter()
            new_deltas.append(fast_b.metric(idx, metric) - fast_a.metric(idx, metric))
            new_times.append(time.perf_counter() - t1)
        totals.append(time.perf_counter() - t0)
    worst = max((abs(o - f) for o, f in zip(old_deltas, new_deltas, strict=False)), default=0.0)
    dets_per_image = np.mean([len(d.scores) for d in dets_a])
    old_draw, new_draw = float(np.median(old_times)), float(np.median(new_times))
    old_total = old_draw * draws if old_draws < draws else float(np.sum(old_times))
    new_total = float(np.median(totals))
    print(f"paired bootstrap of {metric}: {n} images x {dets_per_image:.0f} detections, 1 class, {draws} draws")
    print(
        f"  old (coco_metrics per draw, both models): median {old_draw * 1e3:.1f} ms/draw over {len(old_times)} draws"
    )
    print(
        f"  new (ResampledAP): median {new_draw * 1e3:.2f} ms/draw; matching once {np.median(builds):.2f} s (2 models)"
    )
    extrapolated = " (extrapolated)" if old_draws < draws else ""
    print(f"  {draws} draws: old {old_total:.1f} s{extrapolated}, new {new_total:.2f} s (median of {repeats})")
    print(f"  speed-up: {old_draw / new_draw:.0f}x per draw, {old_total / new_total:.0f}x in all")
    print(f"  largest |delta_old - delta_new| over {len(old_deltas)} draws: {worst:.3g}")
    return {"old_per_draw": old_draw, "new_per_draw": new_draw, "old_total": old_total, "new_total": new_total}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgedet.edge.eval.ap_compare", description=__doc__)
    parser.add_argument("--bench", action="store_true", help="time the old and the new paired bootstrap")
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--old-draws", type=int, default=100, help="draws timed on the slow path (fewer: extrapolated)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of the new path (the median is printed)")
    parser.add_argument("--metric", choices=FAST_METRICS, default="AP50")
    args = parser.parse_args(argv)
    if not args.bench:
        parser.print_help()
        return 2
    bench(args.draws, min(args.old_draws, args.draws), args.repeats, args.metric)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

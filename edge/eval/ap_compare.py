"""How sure is an AP difference between two models? A paired bootstrap over the images.

Two models (say fp32 and its int8 twin) score the same images. The difference of their AP50 on a small
val set moves with a few detections whose scores swap order, so a point estimate alone cannot say
whether "-1.9 points" is the quantiser's fault or the val set's size. :func:`paired_bootstrap` draws
the images with replacement, scores *both* models on every draw (paired: the same images each time)
and reports the difference on the real set with a percentile confidence interval over the draws.

An image drawn twice counts as two images (renamed copies), as in any bootstrap. Metrics come from
:func:`edgedet.edge.eval.coco_metrics.coco_metrics`, so AP means exactly what ``edgedet eval`` prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from edgedet.edge.eval.coco_metrics import METRIC_NAMES, ImageDetections, ImageTruth, coco_metrics
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

    def score(dets: Sequence[ImageDetections], index: Sequence[int]) -> float:
        return float(coco_metrics(*resample(truth, dets, index), class_names)[metric])

    n = len(truth)
    everything = range(n)
    a, b = score(dets_a, everything), score(dets_b, everything)
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    for k in progress(range(resamples), resamples, f"bootstrap {metric}", show_progress):
        index = rng.integers(0, n, n)
        deltas[k] = score(dets_b, index) - score(dets_a, index)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(deltas, [tail, 1.0 - tail])
    return PairedDelta(
        metric, a, b, b - a, float(low), float(high), confidence, resamples, n, float(np.mean(deltas < 0))
    )

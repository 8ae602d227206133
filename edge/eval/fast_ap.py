"""AP50 and AP of any bootstrap resample of the images, without re-running COCO evaluation per draw.

COCO evaluation has two stages. *Matching* (greedy by score, per image and category, at every IoU threshold,
at most ``maxDets`` = 100 detections per image and category, ground truth outside the area range ignored)
depends on one image alone. *Accumulation* concatenates every image's matched detections per category,
stable-sorts them by score, and reads precision at 101 recall thresholds. A resample only changes which
images (and how many copies of each) the accumulation sees, so :class:`ResampledAP` lets faster-coco-eval
do the matching once on the real images (the very C++ ``EvaluateImages`` that
:func:`~edgedet.edge.eval.coco_metrics.coco_metrics` runs, read back through its ``ImageEvaluation``
records) and redoes only the accumulation, in numpy, per draw: a few milliseconds instead of a full
evaluation (~0.8 s on 85 images x 465 detections).

What is reproduced, line for line, from faster-coco-eval's C++ ``Accumulate`` and Python ``_summarize``:

* the images of a draw in draw order (a copy is a separate image), each image's kept detections in its own
  score order, concatenated and stable-sorted by descending score (``std::stable_sort`` with ``>``; ties keep
  image-then-detection order);
* true positive = matched and not ignored, false positive = unmatched and not ignored (ignored detections
  count for neither but still take a place in the curve); recall = TP / non-ignored ground truth,
  precision = TP / (TP + FP), 0 before the first non-ignored detection;
* the precision envelope from the right, precision at the first index whose recall >= each recall threshold
  (``lower_bound``), 0 past the end;
* categories without non-ignored ground truth in the draw stay -1 and are left out; the mean runs over the
  same [IoU, recall, category] array in the same order, so the float sums are the same;
* ``coco_metrics``' own shortcut: no ground truth at all -> -1, ground truth but no detection -> 0.

What is *not* reproduced, so :meth:`ResampledAP.build` returns ``None`` and the caller uses the slow path:

* a NaN score: faster-coco-eval 1.8 refuses it (``ValueError``, which the slow path passes on); where a version
  accepts one, its C++ sorts with ``>`` (NaN "equal" to everything: no strict weak order) while the Python IoU
  matrix is built in ``argsort(-score, kind="mergesort")`` order (NaN last), so which detection meets which
  IoU row depends on the sort implementation;
* an empty class list (COCOeval then evaluates every category id it finds rather than none);
* a faster-coco-eval whose ``ImageEvaluation`` records do not read back as expected, or whose own AP/AP50 on
  the real images differs from this module's (checked once per :meth:`ResampledAP.build`).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgedet.edge.eval.coco_metrics import ImageDetections, ImageTruth, _xywh

__all__ = ["FAST_METRICS", "ResampledAP"]

log = logging.getLogger("edgedet.eval")

FAST_METRICS = ("AP", "AP50")


@dataclass(frozen=True)
class _Category:
    """One category's matched detections on the real images, image after image."""

    scores: np.ndarray  # [N] kept detections (<= maxDets per image), each image's in its own score order
    marks: np.ndarray  # [2T, N] int32: per IoU threshold, 1 where a true positive (matched, not ignored),
    # then per IoU threshold 1 where counted at all (not ignored: a true or a false positive)
    start: np.ndarray  # [n] first index of each image's detections in scores
    count: np.ndarray  # [n] kept detections per image
    truth: np.ndarray  # [n] non-ignored ground truth per image


def _coco_inputs(
    truth: Sequence[ImageTruth], dets: Sequence[ImageDetections]
) -> tuple[list[dict], list[dict], list[dict]]:
    """Images, annotations and results exactly as ``coco_metrics`` builds them (image ids 1..n by position)."""
    images, annotations, results = [], [], []
    for i, t in enumerate(truth):
        images.append({"id": i + 1, "width": int(t.width), "height": int(t.height)})
        for box, label in zip(_xywh(t.boxes), np.asarray(t.labels).reshape(-1), strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": int(label) + 1,
                    "bbox": box.tolist(),
                    "area": float(box[2] * box[3]),
                    "iscrowd": 0,
                }
            )
    for i, d in enumerate(dets):
        for box, score, label in zip(_xywh(d.boxes), np.ravel(d.scores), np.ravel(d.labels), strict=True):
            results.append(
                {"image_id": i + 1, "category_id": int(label) + 1, "bbox": box.tolist(), "score": float(score)}
            )
    return images, annotations, results


class ResampledAP:
    """COCO AP50 / AP of resamples of one model's detections on a fixed set of images.

    ``ResampledAP.build(truth, dets, class_names).metric(index, "AP50")`` equals
    ``coco_metrics(*resample(truth, dets, index), class_names)["AP50"]`` for any ``index`` (repeats allowed).
    """

    def __init__(
        self,
        categories: list[_Category],
        n_truth: np.ndarray,
        n_dets: np.ndarray,
        iou_thrs: np.ndarray,
        rec_thrs: np.ndarray,
    ):
        self.categories = categories
        self.n_truth = n_truth  # [n] annotations per image (all labels, as coco_metrics counts them)
        self.n_dets = n_dets  # [n] detections per image
        self.iou_thrs = iou_thrs
        self.rec_thrs = rec_thrs

    @property
    def images(self) -> int:
        return len(self.n_truth)

    @classmethod
    def build(
        cls, truth: Sequence[ImageTruth], dets: Sequence[ImageDetections], class_names: Sequence[str]
    ) -> ResampledAP | None:
        """Match every image once; ``None`` (with the reason logged) where the fast path cannot promise the
        numbers of ``coco_metrics``."""
        if len(truth) != len(dets):
            raise ValueError(f"ResampledAP: {len(truth)} images of truth but {len(dets)} of detections")
        if not len(class_names):
            log.info("fast bootstrap: no class names; COCO evaluation per draw instead")
            return None
        if any(np.isnan(np.asarray(d.scores, dtype=np.float64)).any() for d in dets):
            log.info("fast bootstrap: a NaN score (COCOeval's sort order is undefined); COCO evaluation per draw")
            return None
        images, annotations, results = _coco_inputs(truth, dets)
        n_truth = np.bincount([a["image_id"] - 1 for a in annotations], minlength=len(images))
        n_dets = np.bincount([r["image_id"] - 1 for r in results], minlength=len(images))
        from faster_coco_eval.core.cocoeval import Params

        params = Params(iouType="bbox")
        iou_thrs, rec_thrs = np.asarray(params.iouThrs), np.asarray(params.recThrs)
        if not annotations or not results:  # every draw takes coco_metrics' shortcut
            return cls([], n_truth, n_dets, iou_thrs, rec_thrs)
        try:
            categories, stats = _match(images, annotations, results, class_names)
        except Exception as exc:  # an API this module does not know: never a wrong number, just the slow path
            log.warning(
                "fast bootstrap unavailable (%s: %s); COCO evaluation per draw instead", type(exc).__name__, exc
            )
            return None
        fast = cls(categories, n_truth, n_dets, iou_thrs, rec_thrs)
        everything = np.arange(len(images))
        for name, expected in stats.items():
            got = fast.metric(everything, name)
            if got != expected:
                log.warning(
                    "fast bootstrap: %s %r differs from faster-coco-eval's %r on the real images; "
                    "COCO evaluation per draw instead",
                    name,
                    got,
                    expected,
                )
                return None
        return fast

    def precision(self, index: np.ndarray, iou_rows: Sequence[int]) -> np.ndarray:
        """COCOeval's ``eval["precision"][iou_rows, :, :, area all, maxDets 100]`` for the images at ``index``:
        [len(iou_rows), recall thresholds, categories], -1 for a category without ground truth."""
        index = np.asarray(index, dtype=np.int64)
        rows = np.asarray(iou_rows, dtype=np.int64)
        n_rec = len(self.rec_thrs)
        columns = np.concatenate([rows, len(self.iou_thrs) + rows])
        all_rows = np.array_equal(columns, np.arange(2 * len(self.iou_thrs)))
        out = np.full((len(rows), n_rec, len(self.categories)), -1.0)
        for k, cat in enumerate(self.categories):
            n_valid_truth = int(cat.truth[index].sum())
            if n_valid_truth == 0:
                continue
            lengths = cat.count[index]
            total = int(lengths.sum())
            if total == 0:
                out[:, :, k] = 0.0
                continue
            ends = np.cumsum(lengths)
            picked = np.arange(total) + np.repeat(cat.start[index] - (ends - lengths), lengths)
            picked = picked[np.argsort(-cat.scores[picked], kind="stable")]
            marks = cat.marks if all_rows else cat.marks[columns]
            sums = np.cumsum(marks.take(picked, axis=1), axis=1, dtype=np.int32)  # [2 * len(rows), total]
            tp, counted = sums[: len(rows)], sums[len(rows) :]
            recall = tp / n_valid_truth
            prec = tp / np.maximum(counted, 1)  # 0 before the first counted detection (tp is 0 there)
            prec = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
            for j in range(len(rows)):
                at = np.searchsorted(recall[j], self.rec_thrs, side="left")
                out[j, :, k] = np.where(at < total, prec[j, np.minimum(at, total - 1)], 0.0)
        return out

    def metric(self, index: Sequence[int] | np.ndarray, name: str) -> float:
        """``coco_metrics(*resample(truth, dets, index), class_names)[name]`` for ``name`` in ``FAST_METRICS``."""
        if name not in FAST_METRICS:
            raise ValueError(f"ResampledAP: {name!r} is not one of {FAST_METRICS}")
        index = np.asarray(index, dtype=np.int64)
        if not self.n_truth[index].sum():
            return -1.0
        if not self.n_dets[index].sum():
            return 0.0
        if name == "AP50":  # COCOeval: t = np.where(iouThr == p.iouThrs)[0]
            rows = np.where(0.5 == self.iou_thrs)[0]
        else:
            rows = np.arange(len(self.iou_thrs))
        s = self.precision(index, rows)
        valid = s[s > -1]
        return float(np.mean(valid)) if len(valid) else -1.0


def _match(
    images: list[dict], annotations: list[dict], results: list[dict], class_names: Sequence[str]
) -> tuple[list[_Category], dict[str, float]]:
    """faster-coco-eval's per-image matching (area range "all" only: the other ranges are matched separately
    and never feed AP / AP50), read back per category; and its own AP / AP50 on all the images."""
    from faster_coco_eval import COCO, COCOeval_faster

    gt = COCO()
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(class_names)]
    gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval_faster(gt, dt, iouType="bbox", print_function=lambda *a, **k: None, separate_eval=True)
        p = ev.params
        if p.areaRngLbl[0] != "all":
            raise RuntimeError(f"area ranges {p.areaRngLbl}: expected 'all' first")
        p.areaRng, p.areaRngLbl = p.areaRng[:1], p.areaRngLbl[:1]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    n, k_cats, n_iou = len(images), len(class_names), len(p.iouThrs)
    if [int(i) for i in p.imgIds] != list(range(1, n + 1)) or [int(c) for c in p.catIds] != list(range(1, k_cats + 1)):
        raise RuntimeError("image or category ids out of the expected order")
    if p.maxDets[-1] != 100:
        raise RuntimeError(f"maxDets {p.maxDets}: expected 100 last")
    evals = ev._evalImgs_cpp
    if len(evals) != k_cats * n:
        raise RuntimeError(f"{len(evals)} image evaluations, expected {k_cats * n}")
    out = []
    for c in range(k_cats):
        scores, marks, counts, truths = [], [], [], []
        for i in range(n):
            # ImageEvaluation state: detection_matches [T*D] (gt id, 0 = none), ground_truth_matches [T*G],
            # detection_scores [D], ground_truth_ignores [G], detection_ignores [T*D], matched annotations
            matches, _, det_scores, truth_ignores, det_ignores, _ = evals[c * n + i].__getstate__()
            d = len(det_scores)
            if len(matches) != n_iou * d or len(det_ignores) != n_iou * d or d > p.maxDets[-1]:
                raise RuntimeError(f"ImageEvaluation of {d} detections holds {len(matches)} matches")
            matched = np.asarray(matches, dtype=np.int64).reshape(n_iou, d) > 0
            ignored = np.asarray(det_ignores, dtype=bool).reshape(n_iou, d)
            scores.append(np.asarray(det_scores, dtype=np.float64))
            marks.append(np.concatenate([matched & ~ignored, ~ignored]).astype(np.int32))
            counts.append(d)
            truths.append(len(truth_ignores) - int(np.count_nonzero(truth_ignores)))
        count = np.asarray(counts, dtype=np.int64)
        out.append(
            _Category(
                scores=np.concatenate(scores),
                marks=np.concatenate(marks, axis=1),
                start=np.cumsum(count) - count,
                count=count,
                truth=np.asarray(truths, dtype=np.int64),
            )
        )
    return out, {"AP": float(ev.stats[0]), "AP50": float(ev.stats[1])}

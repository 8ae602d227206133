"""COCO-style box AP (AP@[.5:.95], AP50, AP75, by size) through faster-coco-eval.

Ground truth and detections are plain arrays per image (corner boxes in pixels, 0-based class ids), so
the same code scores a training checkpoint on a desktop and a TFLite model on a device.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ImageDetections", "ImageTruth", "coco_metrics"]

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass(frozen=True)
class ImageTruth:
    image_id: str
    width: int
    height: int
    boxes: np.ndarray  # [M, 4] corner pixels
    labels: np.ndarray  # [M] 0-based


@dataclass(frozen=True)
class ImageDetections:
    image_id: str
    boxes: np.ndarray  # [K, 4] corner pixels
    scores: np.ndarray  # [K]
    labels: np.ndarray  # [K] 0-based


def _xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def coco_metrics(
    truth: Sequence[ImageTruth], detections: Sequence[ImageDetections], class_names: Sequence[str]
) -> dict[str, float | int]:
    """COCO box metrics; AP values are in [0, 1], or -1 where COCO has nothing to score (e.g. no small
    objects). Also reports ``images``, ``ground_truth`` and ``detections`` counts."""
    from faster_coco_eval import COCO, COCOeval_faster

    ids = {t.image_id: i + 1 for i, t in enumerate(truth)}
    if len(ids) != len(truth):
        raise ValueError("coco_metrics: image ids must be unique")
    images, annotations, results = [], [], []
    for t in truth:
        images.append({"id": ids[t.image_id], "width": int(t.width), "height": int(t.height)})
        for box, label in zip(_xywh(t.boxes), np.asarray(t.labels).reshape(-1), strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": ids[t.image_id],
                    "category_id": int(label) + 1,
                    "bbox": box.tolist(),
                    "area": float(box[2] * box[3]),
                    "iscrowd": 0,
                }
            )
    for d in detections:
        if d.image_id not in ids:
            raise ValueError(f"coco_metrics: detections for unknown image {d.image_id!r}")
        for box, score, label in zip(_xywh(d.boxes), np.ravel(d.scores), np.ravel(d.labels), strict=True):
            results.append(
                {
                    "image_id": ids[d.image_id],
                    "category_id": int(label) + 1,
                    "bbox": box.tolist(),
                    "score": float(score),
                }
            )
    counts = {"images": len(images), "ground_truth": len(annotations), "detections": len(results)}
    if not annotations or not results:
        return {**dict.fromkeys(METRIC_NAMES, 0.0 if annotations else -1.0), **counts}
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(class_names)]
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval_faster(gt, dt, iouType="bbox", print_function=lambda *a, **k: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(s) for s in ev.stats[: len(METRIC_NAMES)]]
    return {**dict(zip(METRIC_NAMES, stats, strict=True)), **counts}

"""Accuracy through the device code path: ``edgedet eval --model MODEL --data DATA [--json OUT]``.

A :class:`edgedet.edge.runtime.detector.Detector` (any backend) runs over every image of a dataset; dataset classes are
matched to the model's labels by name (``--class-map`` renames dataset classes first), and COCO-style
AP/AP50 come from :func:`edgedet.edge.eval.coco_metrics.coco_metrics`. Needs only the ``edge`` extra.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgedet.edge.datasets.sample import Dataset
from edgedet.edge.eval.coco_metrics import ImageDetections, ImageTruth, coco_metrics
from edgedet.edge.eval.operating_point import best_f1_threshold
from edgedet.edge.runtime.detector import Detector
from edgedet.edge.runtime.output_paths import output_file, write_text_atomic
from edgedet.edge.runtime.progress import progress as show

__all__ = ["cli", "evaluate_detector", "label_mapping", "parse_class_map", "run_detector"]

log = logging.getLogger("edgedet.eval")
EVAL_SCORE_THRESHOLD = 0.01


def parse_class_map(text: str | None) -> dict[str, str] | None:
    """``"a=face,b=face"`` -> ``{"a": "face", "b": "face"}``."""
    if not text:
        return None
    out = {}
    for item in text.split(","):
        src, sep, dst = item.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise ValueError(f"--class-map: expected SRC=DST[,SRC=DST...], got {item!r}")
        out[src.strip()] = dst.strip()
    return out


def label_mapping(dataset_classes: Sequence[str], model_labels: Sequence[str]) -> np.ndarray:
    """Index array: dataset class ``i`` -> model label index (by name); unknown names are an error."""
    index = {name: i for i, name in enumerate(model_labels)}
    missing = [c for c in dataset_classes if c not in index]
    if missing:
        raise ValueError(
            f"dataset classes {missing} are not among the model's labels {list(model_labels)}; "
            "rename them with --class-map SRC=DST"
        )
    return np.array([index[c] for c in dataset_classes], dtype=np.int64)


def run_detector(
    detector: Detector, dataset: Dataset, progress: bool = True
) -> tuple[list[ImageTruth], list[ImageDetections], list[float]]:
    """Ground truth and detections per readable image of ``dataset`` (labels in the model's indices),
    and the seconds each ``detect`` took; unreadable images are reported and skipped."""
    to_model = label_mapping(dataset.classes, detector.labels)
    truth, dets = [], []
    times = []
    for sample in show(dataset, len(dataset), "evaluating", progress):
        try:
            image = sample.load_image()
        except OSError as exc:
            log.warning("%s: skipped (%s)", sample.image_path, exc)
            continue
        t0 = time.perf_counter()
        found = detector.detect(image)
        times.append(time.perf_counter() - t0)
        truth.append(ImageTruth(sample.image_id, sample.width, sample.height, sample.boxes, to_model[sample.labels]))
        dets.append(
            ImageDetections(
                sample.image_id,
                np.array([d.box for d in found], dtype=np.float64).reshape(-1, 4),
                np.array([d.score for d in found], dtype=np.float64),
                np.array([d.class_id for d in found], dtype=np.int64),
            )
        )
    return truth, dets, times


def _score(
    detector: Detector, dataset: Dataset, progress: bool = True
) -> tuple[list[ImageTruth], list[ImageDetections], dict[str, Any]]:
    truth, dets, times = run_detector(detector, dataset, progress)
    metrics = coco_metrics(truth, dets, detector.labels)
    metrics["median_ms_per_image"] = float(np.median(times) * 1e3) if times else float("nan")
    point = best_f1_threshold(truth, dets)
    metrics["best_f1_threshold"] = None if point is None else point.threshold
    metrics["best_f1"] = None if point is None else point.f1
    return truth, dets, metrics


def evaluate_detector(detector: Detector, dataset: Dataset, progress: bool = True) -> dict[str, Any]:
    """COCO metrics of ``detector`` on ``dataset``, plus timing; unreadable images are reported and skipped."""
    return _score(detector, dataset, progress)[2]


def _metrics_line(m: Mapping[str, Any]) -> str:
    f1 = "" if m.get("best_f1") is None else f"  best F1 {m['best_f1']:.3f} at score >= {m['best_f1_threshold']:.3f}"
    return (
        f"AP50 {m['AP50']:.3f}  AP {m['AP']:.3f}  AP75 {m['AP75']:.3f}{f1}  "
        f"({m['images']} images, {m['ground_truth']} boxes, {m['detections']} detections, "
        f"{m['median_ms_per_image']:.1f} ms/image median)"
    )


def cli(args: argparse.Namespace) -> int:
    from edgedet.edge.datasets.spec import load_dataset
    from edgedet.edge.eval.ap_compare import paired_bootstrap
    from edgedet.edge.runtime.detector import load_spec

    json_path = output_file(args.json, "--json") if getattr(args, "json", None) else None
    spec = load_spec(args.spec) if getattr(args, "spec", None) else None
    threshold = EVAL_SCORE_THRESHOLD if args.score_threshold is None else args.score_threshold
    base_path = getattr(args, "compare", None)
    resamples = getattr(args, "resamples", 1000)
    if base_path and resamples < 1:
        raise ValueError(f"--resamples: expected >= 1, got {resamples}")

    def open_model(path: str) -> Detector:
        return Detector.from_model(path, spec=spec, threads=args.threads, score_threshold=threshold)

    detector = open_model(args.model)
    base = open_model(base_path) if base_path else None
    if base is not None and tuple(base.labels) != tuple(detector.labels):
        raise ValueError(
            f"--compare {base_path}: its labels {list(base.labels)} differ from {args.model}'s {list(detector.labels)}"
        )
    dataset = load_dataset(args.data, class_map=parse_class_map(args.class_map))
    if len(dataset.report):
        print(dataset.report.summary())
    if not len(dataset):
        raise ValueError(f"{args.data}: no labelled image to evaluate (see the problems above)")
    truth, dets, metrics = _score(detector, dataset)
    if not metrics["images"]:
        raise ValueError(f"{args.data}: no image could be evaluated (every one was unreadable or unlabelled)")
    print(f"{args.model}: {_metrics_line(metrics)}")
    record: dict[str, Any] = {"model": str(args.model), "data": args.data, **metrics}
    if base is not None:
        base_truth, base_dets, base_metrics = _score(base, dataset)
        if [t.image_id for t in base_truth] != [t.image_id for t in truth]:  # an image became unreadable between runs
            raise RuntimeError(f"--compare: {base_path} and {args.model} did not see the same images")
        print(f"{base_path}: {_metrics_line(base_metrics)}")
        compare: dict[str, Any] = {"base": str(base_path), "base_metrics": base_metrics}
        for metric in ("AP50", "AP"):
            delta = paired_bootstrap(truth, base_dets, dets, detector.labels, metric, resamples, show_progress=True)
            print(delta.line(Path(base_path).name, Path(args.model).name))
            compare[metric] = {k: v for k, v in vars(delta).items() if k != "metric"}
        record["compare"] = compare
    if json_path is not None:
        write_text_atomic(json_path, json.dumps(record, indent=2))
    return 0

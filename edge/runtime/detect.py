"""``edgedet detect --model MODEL SOURCE... [--json OUT] [--save-dir DIR] [--score-threshold S]``.

Runs the detector over images, folders of images and videos, prints one line per image (or video
frame), optionally writes every detection as JSON (boxes in source pixels) and annotated images.
Returns 1 when any source failed to read, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import cv2

from edgedet.edge.runtime.detector import Detection, Detector, load_spec
from edgedet.edge.runtime.draw import draw_detections
from edgedet.edge.runtime.media import MediaItem, iter_media
from edgedet.edge.runtime.output_paths import output_dir, output_file, write_text_atomic

__all__ = ["cli", "save_name"]

_PALETTE = ((0, 200, 0), (0, 128, 255), (255, 64, 64), (0, 220, 220), (200, 0, 200), (255, 200, 0))


def save_name(item: MediaItem, used: set[str]) -> str:
    """File name for an annotated image: the image's own name, ``VIDEO_frameNNNNNN.jpg`` for a video
    frame; ``_1``, ``_2``, ... added when two sources share a name."""
    if item.frame_index is not None:
        stem, suffix = f"{item.path.stem}_frame{item.frame_index:06d}", ".jpg"
    else:
        stem, suffix = item.path.stem, item.path.suffix
    name, n = f"{stem}{suffix}", 0
    while name.lower() in used:
        n += 1
        name = f"{stem}_{n}{suffix}"
    used.add(name.lower())
    return name


def _summary(item: MediaItem, detections: list[Detection], timings: dict[str, float]) -> str:
    h, w = item.frame.shape[:2] if item.frame is not None else (0, 0)
    shown = ", ".join(f"{d.label} {d.score:.2f}" for d in detections[:5])
    more = f", +{len(detections) - 5} more" if len(detections) > 5 else ""
    times = (
        f"{timings['total_ms']:.1f} ms: pre {timings['preprocess_ms']:.1f}, "
        f"infer {timings['inference_ms']:.1f}, post {timings['decode_ms']:.1f}"
    )
    plural = "s" if len(detections) != 1 else ""
    listed = f": {shown}{more}" if detections else ""
    return f"{item.name}: {w}x{h}, {len(detections)} detection{plural}{listed} ({times})"


def cli(args: argparse.Namespace) -> int:
    """Run ``edgedet detect``; see the module docstring. Model errors raise ``ValueError`` /
    ``FileNotFoundError`` (the CLI prints them); unreadable sources are reported and skipped."""
    spec_arg = getattr(args, "spec", None)
    # outputs first: a bad --json / --save-dir fails now, not after every image was processed
    json_path = output_file(args.json, "--json") if getattr(args, "json", None) else None
    save_dir = output_dir(args.save_dir, "--save-dir") if getattr(args, "save_dir", None) else None
    detector = Detector.from_model(
        args.model,
        spec=load_spec(spec_arg) if spec_arg else None,
        threads=getattr(args, "threads", None),
        score_threshold=getattr(args, "score_threshold", None),
        iou_threshold=getattr(args, "iou_threshold", None),
    )

    records: list[dict[str, Any]] = []
    used: set[str] = set()
    failed = images = found = 0
    for item in iter_media(args.sources):
        if not item.ok or item.frame is None:
            failed += 1
            print(f"error: {item.error}", file=sys.stderr)
            continue
        try:
            detections = detector.detect(item.frame)
        except ValueError as exc:  # an unusable frame: report it, go on
            failed += 1
            print(f"error: {item.name}: {exc}", file=sys.stderr)
            continue
        images += 1
        found += len(detections)
        h, w = item.frame.shape[:2]
        records.append({"image": item.name, "width": w, "height": h, "detections": [d.to_dict() for d in detections]})
        print(_summary(item, detections, detector.last_timings.to_dict()))
        if save_dir is not None:
            target = save_dir / save_name(item, used)
            if not cv2.imwrite(str(target), draw_detections(item.frame, detections)):
                failed += 1
                print(f"error: {target}: could not write the annotated image", file=sys.stderr)

    if json_path is not None:
        write_text_atomic(json_path, json.dumps(records, indent=1) + "\n")
    print(
        f"{images} image{'s' if images != 1 else ''}, {found} detection{'s' if found != 1 else ''}"
        + (f", {failed} failed" if failed else "")
        + (f"; JSON: {json_path}" if json_path else "")
        + (f"; annotated images: {save_dir}" if save_dir else "")
    )
    return 1 if failed else 0

"""Boxes and ``label score`` drawn on a frame (annotated snapshots, the MJPEG stream, ``detect --save-dir``)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edgedet.edge.runtime.detector import Detection

__all__ = ["PALETTE", "draw_detections"]

PALETTE = ((0, 200, 0), (0, 128, 255), (255, 64, 64), (0, 220, 220), (200, 0, 200), (255, 200, 0))


def draw_detections(frame: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
    """A copy of the BGR ``frame`` with each box and ``label score`` drawn (colour by class)."""
    out = frame.copy()
    thickness = max(1, round(min(out.shape[:2]) / 300))
    for det in detections:
        color = PALETTE[det.class_id % len(PALETTE)]
        x1, y1, x2, y2 = (round(v) for v in det.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        text = f"{det.label} {det.score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        ty = y1 - 4 if y1 - th - base - 4 >= 0 else y1 + th + 4
        cv2.rectangle(out, (x1, ty - th - 2), (x1 + tw + 2, ty + base - 2), color, -1)
        cv2.putText(out, text, (x1 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return out

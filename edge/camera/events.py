"""The detection event: one JSON object per processed frame, the same for the events file, MQTT and
``/detections``.

    {"type": "detections", "camera": "front-door", "timestamp": 1718000000.123456, "time": "2024-06-10T06:13:20.123Z",
     "frame_index": 42, "source": "/dev/video0", "source_position": null, "width": 640, "height": 480,
     "detections": [{"box": [x1, y1, x2, y2], "score": 0.93, "class_id": 0, "label": "face"}],
     "latency_ms": 7.8, "timings_ms": {"preprocess": 0.9, "inference": 6.1, "decode": 0.8}}

``timestamp``/``time``: when the frame was captured (Unix seconds, and ISO 8601 UTC). ``frame_index``
counts captured frames since start (gaps are frames dropped because inference was busy).
``source_position`` is the frame's index in a video file or image folder (``null`` for cameras and
streams). ``detections`` are exactly ``edgedet detect --json``'s dicts (boxes in frame pixels).
``latency_ms`` is the detector's time for the frame (pre-processing + inference + decoding).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from edgedet.edge.camera.capture import Frame
from edgedet.edge.runtime.detector import Detection, StageTimings

__all__ = ["build_event", "iso_time"]


def iso_time(timestamp: float) -> str:
    """Unix seconds -> ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    whole = int(timestamp)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((timestamp - whole) * 1000):03d}Z"


def build_event(
    camera: str, source: str, frame: Frame, detections: Sequence[Detection], timings: StageTimings
) -> dict[str, Any]:
    """The event for ``detections`` found on ``frame`` (see the module docstring)."""
    height, width = frame.image.shape[:2]
    return {
        "type": "detections",
        "camera": camera,
        "timestamp": round(frame.timestamp, 6),
        "time": iso_time(frame.timestamp),
        "frame_index": frame.index,
        "source": source,
        "source_position": frame.position,
        "width": int(width),
        "height": int(height),
        "detections": [d.to_dict() for d in detections],
        "latency_ms": round(timings.total_ms, 3),
        "timings_ms": {
            "preprocess": round(timings.preprocess_ms, 3),
            "inference": round(timings.inference_ms, 3),
            "decode": round(timings.decode_ms, 3),
        },
    }

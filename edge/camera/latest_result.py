"""The newest processed frame, its detections and event, shared with the HTTP server.

The detector thread calls :meth:`LatestResult.update` per frame (cheap: it stores references). The
annotated JPEG is drawn and encoded only when someone asks for it (``/snapshot.jpg``, ``/stream.mjpg``)
and then cached for that frame, so an idle daemon spends nothing on it and many stream clients share one
encode. Memory: one frame and one JPEG.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Sequence
from typing import Any

import cv2

from edgedet.edge.camera.capture import Frame
from edgedet.edge.runtime.detector import Detection
from edgedet.edge.runtime.draw import draw_detections

__all__ = ["LatestResult"]

Overlay = Callable[[Any, Sequence[Detection], Any], Any]  # (image, detections, extra) -> annotated image


def _boxes(image: Any, detections: Sequence[Detection], extra: Any) -> Any:
    return draw_detections(image, detections)


class LatestResult:
    """Also the recent object events (``/events``), newest last, at most ``max_events``."""

    def __init__(self, jpeg_quality: int = 80, overlay: Overlay = _boxes, max_events: int = 200) -> None:
        self.jpeg_quality = int(jpeg_quality)
        self.overlay = overlay  # draws the annotated frame: boxes, or tracks and zones
        self._extra: Any = None
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_events)
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._detections: Sequence[Detection] = ()
        self._event: dict[str, Any] | None = None
        self._jpeg: tuple[int, bytes] | None = None  # (frame index, bytes)
        self._encode_lock = threading.Lock()

    def update(self, frame: Frame, detections: Sequence[Detection], event: dict[str, Any], extra: Any = None) -> None:
        """A processed frame; ``extra`` goes to the overlay (the tracks and zone counts)."""
        with self._cond:
            self._frame, self._detections, self._event, self._extra = frame, tuple(detections), event, extra
            self._cond.notify_all()

    def add_events(self, events: Sequence[dict[str, Any]]) -> None:
        with self._cond:
            self._events.extend(events)

    def events(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The recent object events, oldest first (the last ``limit``)."""
        with self._cond:
            items = list(self._events)
        return items[-limit:] if limit else items

    @property
    def index(self) -> int | None:
        """The newest frame's index, ``None`` before the first."""
        with self._cond:
            return None if self._frame is None else self._frame.index

    def event(self) -> dict[str, Any] | None:
        with self._cond:
            return self._event

    def wait_newer(self, index: int | None, timeout: float) -> int | None:
        """Wait up to ``timeout`` s for a frame newer than ``index``; the newest index (maybe unchanged)."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._frame is not None and (index is None or self._frame.index > index), timeout
            )
            return None if self._frame is None else self._frame.index

    def jpeg(self) -> tuple[int, bytes] | None:
        """``(frame index, annotated JPEG)`` of the newest frame, ``None`` before the first."""
        with self._cond:
            frame, detections, extra = self._frame, self._detections, self._extra
        if frame is None:
            return None
        with self._encode_lock:
            if self._jpeg is not None and self._jpeg[0] == frame.index:
                return self._jpeg
            ok, data = cv2.imencode(
                ".jpg", self.overlay(frame.image, detections, extra), [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality]
            )
            if not ok:
                return None
            self._jpeg = (frame.index, data.tobytes())
            return self._jpeg

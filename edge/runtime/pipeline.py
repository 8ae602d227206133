"""Inference in its own thread, overlapped with the rest of the frame's work.

A camera loop that runs ``detect`` frame after frame leaves the inference engine idle while Python takes
the frame, pre-processes it, decodes and publishes — on a small model that is a third of the frame. The
backends release the GIL while they run (ONNX Runtime's ``run``, LiteRT's ``invoke``), so one worker
thread can run frame *n* while the caller finishes frame *n - 1* and prepares frame *n + 1*:

    pipeline = Pipeline(detector)
    for frame in frames:
        done = pipeline.push(frame, tag=frame)      # (tag, detections) of an earlier frame, or None
        ...
    last = pipeline.flush()                        # the frame still in flight

At most two frames are inside at once (one running, one queued behind it), so a result is at most one
inference time older than with ``detect`` and memory stays bounded; results come out in order, with
:attr:`Detector.last_timings` set for the frame just returned. Frames of several cameras may share one
pipeline: ``push(frame, tag=(camera, frame), detector=...)`` prepares and finishes a frame with another
detector on the same backend (its own thresholds), while every inference still runs in the one thread.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from edgedet.edge.runtime.detector import Detection, Detector, Inferred

__all__ = ["Pipeline"]


class Pipeline:
    """Feeds frames to one inference thread; :meth:`push` returns the previous frame's detections."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgedet-inference")
        self._pending: tuple[Future[Inferred], Any, Detector] | None = None

    def push(
        self, frame_bgr: np.ndarray, tag: Any = None, detector: Detector | None = None
    ) -> tuple[Any, list[Detection]] | None:
        """Start ``frame_bgr`` and return ``(tag, detections)`` of the frame pushed before it (None for
        the first). A frame that cannot be prepared raises here and nothing in flight is lost; an
        inference error raises from the call that collects that frame (:attr:`pending_tag` tells which
        frame is in flight after it). ``detector``: prepares and finishes this frame instead of the
        pipeline's own; it must share its backend."""
        detector = detector or self.detector
        prepared = detector.prepare(frame_bgr)
        previous, self._pending = self._pending, (self._pool.submit(detector.infer, prepared), tag, detector)
        return self._collect(previous)

    def flush(self) -> tuple[Any, list[Detection]] | None:
        """``(tag, detections)`` of the frame still in flight, or None."""
        previous, self._pending = self._pending, None
        return self._collect(previous)

    @property
    def in_flight(self) -> bool:
        return self._pending is not None

    @property
    def pending_tag(self) -> Any:
        """The tag of the frame in flight (None when none is)."""
        return None if self._pending is None else self._pending[1]

    def _collect(self, pending: tuple[Future[Inferred], Any, Detector] | None) -> tuple[Any, list[Detection]] | None:
        if pending is None:
            return None
        future, tag, detector = pending
        return tag, detector.finish(future.result())

    def close(self) -> None:
        """Wait for the frame in flight (its result is dropped) and stop the thread."""
        self._pending = None
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

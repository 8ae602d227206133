"""The capture thread: reads the source as fast as it delivers and keeps only the newest frame.

:class:`FrameSlot` holds one frame: a new frame replaces one the detector has not taken yet (counted as
dropped), so inference always runs on the newest frame, never on a queue of stale ones, and memory stays
bounded. :class:`CaptureThread` owns the source: it paces files and folders at their frame rate, loops
them (``loop``), and on any failure — camera unplugged, stream ended, file removed or truncated — closes
the source and re-opens it after a capped exponential backoff, forever, until :meth:`CaptureThread.stop`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgedet.edge.camera.redact import redact_text
from edgedet.edge.camera.sources import CaptureSource, SourceEnded, SourceError

__all__ = ["Backoff", "CaptureThread", "Frame", "FrameSlot"]

log = logging.getLogger(__name__)

FOLDER_FPS = 5.0  # image folders without source_fps
HEALTHY_AFTER_S = 5.0  # a connection streaming this long resets the backoff


@dataclass(frozen=True)
class Frame:
    """A captured BGR frame: ``index`` counts every frame captured since start (0-based), ``position`` is
    its index in a video file or image folder (``None`` for live sources), ``timestamp`` the Unix time of
    capture."""

    image: np.ndarray
    index: int
    position: int | None
    timestamp: float


class FrameSlot:
    """The newest frame only; :meth:`take` waits for one the caller has not had yet."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._fresh = False
        self.dropped = 0  # frames replaced before anyone took them

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._fresh:
                self.dropped += 1
            self._frame, self._fresh = frame, True
            self._cond.notify_all()

    def take(self, timeout: float) -> Frame | None:
        """The newest untaken frame, or ``None`` after ``timeout`` seconds without one."""
        with self._cond:
            if not self._fresh and not self._cond.wait_for(lambda: self._fresh, timeout):
                return None
            self._fresh = False
            self._cond.notify_all()  # for wait_taken
            return self._frame

    def wait_fresh(self, timeout: float) -> bool:
        """Wait until an untaken frame is in the slot (without taking it); False after ``timeout`` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: self._fresh, timeout)

    def wait_taken(self, timeout: float) -> bool:
        """Wait until the newest frame has been taken (or none was put); False after ``timeout`` seconds.
        For sources that should stay just one frame ahead of the detector (benchmarks)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._fresh, timeout)


class Backoff:
    """``initial``, doubling up to ``maximum``; :meth:`reset` after a healthy connection."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2.0, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial


class CaptureThread(threading.Thread):
    """Fills ``slot`` from ``opener()`` until stopped; never ends on its own.

    ``state`` is ``connecting``, ``streaming``, ``waiting`` (backing off before a reconnect), ``finished``
    (a file or folder played once, ``loop`` off) or ``stopped``. Counters: ``captured``, ``reconnects``
    (attempts to re-open after a failure), ``loops`` and ``scene_loops`` (loops that show another scene: not
    those of a single still image, whose objects stay where they were); ``heartbeat`` is the monotonic time of the last
    progress, for stall detection. ``last_error`` says why the source failed (credentials hidden) until a
    frame comes again.
    """

    def __init__(
        self,
        opener: Callable[[], CaptureSource],
        slot: FrameSlot,
        *,
        loop: bool = True,
        pace_fps: float | None = None,
        backoff: Backoff | None = None,
        name: str = "capture",
        what: str = "source",
    ) -> None:
        super().__init__(name=name, daemon=True)  # a read stuck in a driver must not block exit
        self._opener = opener
        self.slot = slot
        self.loop = loop
        self.pace_fps = pace_fps
        self.what = what  # how the log names the source: "source", "camera 'door' source"
        self.backoff = backoff or Backoff(0.5, 30.0)
        self._stop_event = threading.Event()
        self.state = "connecting"
        self.captured = 0
        self.reconnects = 0
        self.loops = 0
        self.scene_loops = 0
        self.last_error: str | None = None
        self.heartbeat = time.monotonic()
        self._healthy_since = time.monotonic()  # since the last successful (re)connect

    @property
    def connected(self) -> bool:
        return self.state == "streaming"

    def stalled_for(self) -> float:
        """Seconds since the thread last made progress (waiting out a backoff or a frame period counts as
        progress; a read or an open blocked in a driver does not)."""
        return time.monotonic() - self.heartbeat

    def stop(self) -> None:
        self._stop_event.set()

    def _beat(self) -> None:
        self.heartbeat = time.monotonic()

    def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` in short slices, staying alive for stall detection; True when stopped."""
        end = time.monotonic() + seconds
        while not self._stop_event.is_set():
            self._beat()
            left = end - time.monotonic()
            if left <= 0:
                return False
            self._stop_event.wait(min(left, 0.5))
        return True

    def _pace(self, source: CaptureSource) -> float:
        if source.live:
            return 0.0
        fps = self.pace_fps if self.pace_fps is not None else (source.fps or FOLDER_FPS)
        return 1.0 / fps if fps > 0 else 0.0

    def run(self) -> None:
        failed = False
        while not self._stop_event.is_set():
            if failed:
                delay = self.backoff.next()
                self.state = "waiting"
                log.warning("%s: %s; reconnecting in %.1f s", self.what, self.last_error, delay)
                if self._wait(delay):
                    break
                self.reconnects += 1
            self.state = "connecting"
            self._beat()
            try:
                source = self._opener()
            except SourceError as exc:
                self.last_error, failed = redact_text(str(exc)), True
                continue
            if failed:
                log.info("%s: reconnected", self.what)
                self._healthy_since = time.monotonic()
            try:
                failed = self._stream(source)
            finally:
                source.close()
            if not failed and not self.loop and not self._stop_event.is_set():
                self.state = "finished"
                log.info("%s: finished (loop is off); the daemon stays up", self.what)
                while not self._wait(3600.0):
                    pass
        self.state = "stopped"

    def _stream(self, source: CaptureSource) -> bool:
        """Read ``source`` until it ends (False), fails (True) or the thread stops (False)."""
        self.state = "streaming"
        period = self._pace(source)
        due = time.monotonic()
        while not self._stop_event.is_set():
            if period:
                now = time.monotonic()
                if due > now and self._wait(due - now):
                    return False
                due = max(due + period, time.monotonic() - period)  # no burst after a slow read
            self._beat()
            try:
                image, position = source.read()
            except SourceEnded:
                self.loops += 1
                self.scene_loops += 0 if getattr(source, "still", False) else 1
                if self.loop:
                    log.debug("%s: end reached, looping", self.what)
                return False
            except SourceError as exc:
                self.last_error = redact_text(str(exc))
                return True
            self._beat()
            self.last_error = None  # frames flow again: the old error is history
            self.slot.put(Frame(image, self.captured, position, time.time()))
            self.captured += 1
            if time.monotonic() - self._healthy_since >= HEALTHY_AFTER_S:
                self.backoff.reset()
        return False

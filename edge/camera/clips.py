"""Event clips: a short video of each object, from ``pre_s`` seconds before its ``new`` event to ``post_s``
seconds after its ``end``, served at ``/events/<id>/clip.mp4``.

One :class:`ClipRecorder` per camera. The daemon calls, from its loop (neither call blocks; the work is done
by the recorder's own thread):

* ``on_frame(timestamp, image, overlay)`` for every frame it takes from the camera (skipped by the motion
  gate or not), ``timestamp`` on the events' clock (the frame's Unix time), ``overlay`` the boxes to draw
  (a list of boxes, of ``{"box", "label"}`` mappings or of objects with ``.box``; or a callable that draws
  on the frame in place, called on the recorder's thread);
* ``on_event(event)`` for every object event (``new`` starts a clip, ``end`` closes it ``post_s`` later;
  the others are ignored);
* ``clip_path(id)`` when it sends an ``end`` event: the URL path of its clip (``None``: no clip);
  ``clip_file(id)`` for ``GET /events/<id>/clip.mp4``: the finished file, ``None`` until it is finished;
* ``stats()`` for ``/metrics``, and ``close()`` when it stops (SIGTERM): the clips still open are finished.

Event ids name the files: cameras sharing ``dir`` need ids unique across them.

The recorder keeps a :class:`FrameRing` of the recent frames as JPEG (the last ``pre_s`` seconds, at most
``buffer_bytes``). On ``new``, a clip starts with the ring's frames from ``timestamp - pre_s`` (decoded and
written a few at a time between new frames, which wait behind them as JPEG, so the queue keeps moving);
every later frame is appended (boxes drawn) until a frame comes after ``end + post_s`` (or ``post_s`` seconds after the
``end`` when no frame comes), or the clip reaches ``max_clip_s``: the rest of the object's life is not
recorded. Frames go to the file at a constant rate (``fps``, or the ring's measured rate): a frame that comes
early is left out, a gap is filled by repeating the last frame (up to two seconds), so the clip lasts as
long as the scene did.

Files: ``.<id>.part.mp4`` while it is written (the name FFmpeg needs to pick the container), renamed to
``<id>.mp4`` once the writer is released and the file reads back; a file named as a clip is always whole.
The container is MPEG-4 Part 2 (``mp4v``) in ``.mp4`` when OpenCV's FFmpeg can write it, otherwise Motion
JPEG in ``.avi`` (:func:`video_format`, probed once; the URL path and file names follow).

Faults. Frames come faster than the thread writes: the newest are dropped once ``queue_frames`` wait
(``frames_dropped``). The folder is read-only or full (an ``OSError`` opening or writing, or less than
``min_free_bytes`` free): that clip stops, its partial file is removed, ``clips_failed`` counts it and a
throttled error is logged; detection never sees it. The frame size changes (a camera reconnected at another
resolution) or time goes back (a video restarted): the open clips are finished as they stand (they stop
there; no new segment) and the ring restarts. ``close()`` finishes every open clip (shortening its
post-roll); a file the process could not finish (killed) stays hidden under its ``.part`` name and is
deleted by a later prune.

Retention: clips past ``max_bytes`` in all or older than ``max_age_s`` are deleted, oldest first, never one
being written (:func:`edgedet.edge.camera.snapshots.prune_files`, shared with the snapshots).
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import cv2
import numpy as np
from pydantic import Field, model_validator

from edgedet.edge.camera.snapshots import prune_files
from edgedet.edge.camera.throttled_log import Throttled
from edgedet.edge.runtime.draw import PALETTE
from edgedet.edge.runtime.settings import ConfigKeyError, Flag, Int, NonEmptyText, Number, StrictModel

__all__ = [
    "BufferedFrame",
    "ClipRecorder",
    "ClipSettings",
    "FrameRing",
    "clip_url",
    "draw_overlay",
    "video_format",
]

log = logging.getLogger(__name__)
_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")  # never a leading dot: those are the partial files
_PART = ".part"
_MAX_GAP_S = 2.0  # longest gap filled by repeating the last frame
_IDLE_S = 0.25  # the thread's wake-up period when no frame comes
_DRAIN = 4  # pre-roll frames written between two frames from the queue
_KEEP_STATES = 4096  # finished clips remembered for clip_path()

Overlay = Sequence[Any] | Callable[[np.ndarray], Any] | None
"""What ``on_frame`` draws: boxes, ``{"box", "label"}`` mappings, objects with ``.box``, or a callable."""


class ClipSettings(StrictModel):
    """Event clips: a video of each object from ``pre_s`` before its ``new`` to ``post_s`` after its ``end``."""

    enabled: Flag = Field(False, description="`true`: record a clip of every object (needs `dir`)")
    dir: NonEmptyText | None = Field(None, description="folder for the clips (made when missing)")
    pre_s: Annotated[Number, Field(ge=0, le=60)] = Field(
        5.0, description="seconds before the object's `new` event the clip starts (kept in memory as JPEG)"
    )
    post_s: Annotated[Number, Field(ge=0, le=600)] = Field(
        5.0, description="seconds after the object's `end` event the clip goes on"
    )
    max_clip_s: Annotated[Number, Field(gt=0, le=3600)] = Field(
        120.0, description="a clip stops at this length (the rest of a long-lived object is not recorded)"
    )
    fps: Annotated[Number, Field(gt=0, le=120)] | None = Field(
        None, description="the clips' frame rate (null: the camera's, measured on the recent frames)"
    )
    jpeg_quality: Annotated[Int, Field(ge=1, le=100)] = Field(
        80, description="JPEG quality of the frames kept in memory for the pre-roll"
    )
    buffer_bytes: Annotated[Int, Field(ge=0)] = Field(
        32_000_000, description="memory cap of one camera's pre-roll buffer (the oldest frames go first)"
    )
    draw_boxes: Flag = Field(True, description="draw the objects' boxes on the clips")
    max_concurrent: Annotated[Int, Field(ge=1, le=64)] = Field(
        4, description="clips written at once per camera; an object beyond these gets none (counted)"
    )
    queue_frames: Annotated[Int, Field(ge=1, le=1000)] = Field(
        15, description="frames waiting for the clip thread; beyond, new frames are dropped (counted)"
    )
    max_bytes: Annotated[Int, Field(ge=0)] = Field(
        2_000_000_000, description="the clip folder's budget; the oldest clips go first (0: no limit)"
    )
    max_age_s: Annotated[Number, Field(ge=0)] = Field(
        7 * 86400.0, description="clips older than this are deleted (0: no limit)"
    )
    min_free_bytes: Annotated[Int, Field(ge=0)] = Field(
        50_000_000, description="a clip stops (counted as failed) when the disk has less than this free"
    )

    @model_validator(mode="after")
    def _needs_dir(self) -> ClipSettings:
        if self.enabled and self.dir is None:
            raise ConfigKeyError("dir", "required when `enabled` is true")
        return self


# ------------------------------------------------------------------------------------------- video format

_FORMAT: tuple[str, str] | None = None
_FORMAT_LOCK = threading.Lock()


def video_format() -> tuple[str, str]:
    """``(fourcc, extension)`` of the clips: ``("mp4v", ".mp4")`` when this OpenCV's FFmpeg writes MPEG-4,
    else ``("MJPG", ".avi")`` (OpenCV's own writer). Probed once per process."""
    global _FORMAT
    with _FORMAT_LOCK:
        if _FORMAT is None:
            _FORMAT = _probe_format()
        return _FORMAT


def _probe_format() -> tuple[str, str]:
    with tempfile.TemporaryDirectory(prefix="edgedet-clip-probe-") as tmp:
        for fourcc, ext in (("mp4v", ".mp4"), ("MJPG", ".avi")):
            path = os.path.join(tmp, f"probe{_PART}{ext}")
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), 10.0, (64, 48))
            opened = writer.isOpened()
            if opened:
                for _ in range(2):
                    writer.write(np.zeros((48, 64, 3), np.uint8))
            writer.release()
            if opened and os.path.exists(path) and os.path.getsize(path) > 0:
                return fourcc, ext
    log.warning("OpenCV writes neither MPEG-4 nor MJPEG here; clips will fail")
    return "MJPG", ".avi"


def clip_url(event_id: str, ext: str = ".mp4") -> str:
    """The URL path of an event's clip: ``/events/<id>/clip.mp4``."""
    return f"/events/{event_id}/clip{ext}"


# ------------------------------------------------------------------------------------------------ overlay

_Box = tuple[int, int, int, int, str, int]  # x1, y1, x2, y2, text, colour index


def _normalise(overlay: Overlay) -> tuple[_Box, ...] | Callable[[np.ndarray], Any] | None:
    """``overlay`` as plain tuples (kept with the frame, drawn later on the recorder's thread)."""
    if overlay is None or callable(overlay):
        return overlay
    boxes = []
    for item in overlay:
        if isinstance(item, Mapping):
            box, label, cls = item["box"], str(item.get("label", "")), int(item.get("class_id", 0))
            if item.get("track_id") is not None:
                label = f"{label} #{item['track_id']}".strip()
        elif hasattr(item, "box"):
            box, label, cls = item.box, str(getattr(item, "label", "") or ""), int(getattr(item, "class_id", 0))
        else:
            box, label, cls = item, "", 0
        x1, y1, x2, y2 = (round(float(v)) for v in list(box)[:4])
        boxes.append((x1, y1, x2, y2, label, cls))
    return tuple(boxes)


def draw_overlay(image: np.ndarray, overlay: Any) -> np.ndarray:
    """A copy of ``image`` with ``overlay`` drawn (normalised boxes, or a callable drawing in place); ``image``
    itself when there is nothing to draw."""
    if not overlay:
        return image
    out = image.copy()
    if callable(overlay):
        result = overlay(out)
        return result if isinstance(result, np.ndarray) and result.shape == out.shape else out
    thickness = max(1, round(min(out.shape[:2]) / 300))
    for x1, y1, x2, y2, text, cls in overlay:
        colour = PALETTE[cls % len(PALETTE)]
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        if text:
            cv2.putText(out, text, (x1 + 2, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return out


# -------------------------------------------------------------------------------------------- ring buffer


@dataclass(frozen=True)
class BufferedFrame:
    """One frame of the pre-roll: its time, its JPEG and what to draw on it."""

    t: float
    jpeg: np.ndarray  # the encoded bytes (uint8)
    overlay: Any = None

    @property
    def nbytes(self) -> int:
        return int(self.jpeg.nbytes)

    def image(self) -> np.ndarray | None:
        return cv2.imdecode(self.jpeg, cv2.IMREAD_COLOR)


class FrameRing:
    """The frames of the last ``pre_s`` seconds (by their timestamps), at most ``max_bytes`` of JPEG in all;
    the oldest go first. Used by one thread only."""

    def __init__(self, pre_s: float, max_bytes: int) -> None:
        self.pre_s = float(pre_s)
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self._frames: collections.deque[BufferedFrame] = collections.deque()

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def seconds(self) -> float:
        """The time from the oldest frame kept to the newest."""
        return self._frames[-1].t - self._frames[0].t if self._frames else 0.0

    def append(self, frame: BufferedFrame) -> None:
        self._frames.append(frame)
        self.bytes += frame.nbytes
        oldest = frame.t - self.pre_s - 1e-6
        while self._frames and (self._frames[0].t < oldest or self.bytes > self.max_bytes):
            self.bytes -= self._frames.popleft().nbytes

    def since(self, t0: float) -> list[BufferedFrame]:
        """The frames kept from ``t0`` on."""
        return [f for f in self._frames if f.t >= t0 - 1e-6]

    def frame_rate(self) -> float | None:
        """The median rate of the frames kept (``None`` with fewer than two)."""
        ts = [f.t for f in self._frames]
        gaps = np.diff(ts) if len(ts) > 1 else np.empty(0)
        gaps = gaps[gaps > 0]
        return float(1.0 / np.median(gaps)) if gaps.size else None

    def clear(self) -> None:
        self._frames.clear()
        self.bytes = 0


# ---------------------------------------------------------------------------------------------- the writer


class _VideoFile:
    """A ``cv2.VideoWriter`` on a partial file that raises ``OSError`` when it cannot write (OpenCV itself
    reports nothing): the real errno when the file cannot be made, ENOSPC when the disk runs low."""

    CHECK_EVERY = 15  # frames between free-space checks

    def __init__(self, path: Path, fourcc: str, fps: float, size: tuple[int, int], min_free_bytes: int) -> None:
        self.path = path
        self.min_free_bytes = min_free_bytes
        self.frames = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb"):  # EROFS, EACCES, ENOSPC as they are
            pass
        self._check_space()
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if not self._writer.isOpened():
            raise OSError(errno.EIO, f"OpenCV could not open a {fourcc} writer", str(path))

    def _check_space(self) -> None:
        if self.min_free_bytes and shutil.disk_usage(self.path.parent).free < self.min_free_bytes:
            raise OSError(errno.ENOSPC, f"less than {self.min_free_bytes} bytes free", str(self.path.parent))

    def write(self, image: np.ndarray) -> None:
        if self.frames and self.frames % self.CHECK_EVERY == 0:
            self._check_space()
        self._writer.write(np.ascontiguousarray(image))  # OpenCV 5 crashed writing a strided view
        self.frames += 1

    def close(self) -> None:
        self._writer.release()


def _plays(path: Path) -> bool:
    """Does ``path`` open as a video with a first frame? (Reads the header and one frame.)"""
    cap = cv2.VideoCapture(str(path))
    try:
        return bool(cap.isOpened() and cap.read()[0])
    finally:
        cap.release()


@dataclass
class _Clip:
    event_id: str
    part: Path
    final: Path
    fps: float
    started: float | None = None  # timestamp of its first frame
    video: _VideoFile | None = None
    end_at: float | None = None  # frames up to this timestamp go in
    ended_mono: float | None = None  # when the ``end`` came (monotonic)
    slot: int = -1  # the last frame slot written
    last: np.ndarray | None = None
    frames: int = 0
    backlog: collections.deque[BufferedFrame] = field(default_factory=collections.deque)  # still to write


# -------------------------------------------------------------------------------------------- the recorder


class ClipRecorder:
    """The clips of one camera (see the module docstring). Thread-safe towards its caller; the encoding,
    the writing and the pruning run on its own thread."""

    def __init__(self, settings: ClipSettings, camera: str = "", *, prune_every_s: float = 30.0) -> None:
        if settings.dir is None:
            raise ValueError("clips.dir: no folder given")
        self.settings = settings
        self.camera = camera
        self.dir = Path(settings.dir)
        self.fourcc, self.ext = video_format()
        self.clips_written = 0
        self.clips_failed = 0
        self.clips_skipped = 0  # objects over max_concurrent
        self.frames_dropped = 0
        self.errors = 0  # failures of any kind (a clip, the overlay, the thread)
        self.last_error: str | None = None
        self._ring = FrameRing(settings.pre_s, settings.buffer_bytes)
        self._cond = threading.Condition()
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._queued_frames = 0
        self._pending = 0  # items queued or being handled
        self._backlog = 0  # frames waiting in the clips' backlogs
        self._state: dict[str, str] = {}  # event id -> "recording" | "written" | "failed"
        self._clips: dict[str, _Clip] = {}  # the thread's own
        self._size: tuple[int, int] | None = None
        self._last_t: float | None = None
        self._closed = False
        self._prune_every_s = prune_every_s
        self._next_prune = 0.0
        self._prune_lock = threading.Lock()
        self._log = Throttled(log, 30.0)  # errors
        self._log_busy = Throttled(log, 30.0)  # objects over max_concurrent, clips cut short
        self._thread = threading.Thread(target=self._run, name=f"clips-{camera or 'camera'}", daemon=True)
        self._thread.start()

    # -------------------------------------------------------------------------------- the caller's side

    def on_frame(self, timestamp: float, image: np.ndarray, overlay: Overlay = None, copy: bool = True) -> bool:
        """Hand a captured frame over (copied unless ``copy=False``); ``False`` when it was dropped (the
        queue is full: counted; or the recorder is closed). Never waits for the disk or the encoder."""
        try:
            boxes = _normalise(overlay) if self.settings.draw_boxes else None
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            self._error(f"overlay not understood: {exc!r}")
            boxes = None
        with self._cond:
            if self._closed:
                return False
            if self._queued_frames >= self.settings.queue_frames:
                self.frames_dropped += 1
                return False
            self._queued_frames += 1
            self._pending += 1
        try:
            item = ("frame", float(timestamp), image.copy() if copy else image, boxes)
        except BaseException:
            with self._cond:
                self._queued_frames -= 1
                self._pending -= 1
            raise
        with self._cond:
            self._queue.append(item)
            self._cond.notify_all()
        return True

    def on_event(self, event: Mapping[str, Any]) -> None:
        """Hand an object event over: ``new`` starts the clip of ``event["id"]``, ``end`` ends it ``post_s``
        later; other types, other cameras' events and unknown ids are ignored."""
        kind, event_id = event.get("type"), str(event.get("id", ""))
        if kind not in ("new", "end") or not _ID.match(event_id):
            return
        if self.camera and event.get("camera") not in (None, self.camera):
            return
        t = event.get("timestamp")
        with self._cond:
            if self._closed:
                return
            if kind == "new":
                if event_id in self._state:
                    return
                recording = sum(1 for s in self._state.values() if s == "recording")
                if recording >= self.settings.max_concurrent:
                    self.clips_skipped += 1
                    self._log_busy.warning(
                        "camera %s: %d clips already being written; no clip for %s (%d skipped)",
                        self.camera,
                        recording,
                        event_id,
                        self.clips_skipped,
                    )
                    return
                self._state[event_id] = "recording"
            elif self._state.get(event_id) != "recording":
                return
            self._queue.append(("event", kind, event_id, None if t is None else float(t)))
            self._pending += 1
            self._cond.notify_all()

    def clip_path(self, event_id: str) -> str | None:
        """The URL path of ``event_id``'s clip (``/events/<id>/clip.mp4``) while it is being written or once
        written; ``None`` when it has none (never started, or failed). For the ``end`` event."""
        state = self._state.get(event_id)
        if state in ("recording", "written") or (state is None and self.clip_file(event_id) is not None):
            return clip_url(event_id, self.ext)
        return None

    def clip_file(self, event_id: str) -> Path | None:
        """The finished clip of ``event_id``; ``None`` until it is finished (or for an id that is not one)."""
        if not _ID.match(event_id):
            return None
        path = self.dir / f"{event_id}{self.ext}"
        return path if path.is_file() else None

    @property
    def bytes_buffered(self) -> int:
        """JPEG bytes held by the pre-roll buffer."""
        return self._ring.bytes

    def stats(self) -> dict[str, int]:
        """The counters for ``/metrics``."""
        with self._cond:
            queued = self._queued_frames
            recording = sum(1 for s in self._state.values() if s == "recording")
        return {
            "clips_written": self.clips_written,
            "clips_failed": self.clips_failed,
            "clips_skipped": self.clips_skipped,
            "clips_recording": recording,
            "frames_dropped": self.frames_dropped,
            "frames_queued": queued,
            "frames_backlog": self._backlog,
            "frames_buffered": len(self._ring),
            "bytes_buffered": self._ring.bytes,
            "errors": self.errors,
        }

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything handed over so far is handled (pre-rolls written); whether it was in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._pending or self._backlog) and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return not (self._pending or self._backlog)

    def close(self, timeout: float = 10.0) -> bool:
        """Stop: the frames queued are handled, every open clip is finished (its post-roll cut short) and
        renamed, or removed when it cannot be; whether the thread ended in ``timeout``. Idempotent."""
        with self._cond:
            if not self._closed:
                self._closed = True
                self._queue.append(("stop",))
                self._pending += 1
                self._cond.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def prune(self, now: float | None = None) -> list[Path]:
        """Delete clips past the budget, oldest first, never one being written; and partial files left by a
        process that died (older than ``max_clip_s + post_s`` plus 5 minutes). The files deleted."""
        now = time.time() if now is None else now
        s = self.settings
        stale_s = s.max_clip_s + s.post_s + 300.0
        with self._prune_lock:
            try:
                files = [p for p in self.dir.iterdir() if p.name.endswith(self.ext) and p.is_file()]
            except OSError:
                return []
            active = {clip.part for clip in list(self._clips.values())}
            deleted = []
            for path in files:
                if path.name.startswith(".") and path not in active:
                    try:
                        if now - path.stat().st_mtime > stale_s:
                            path.unlink()
                            deleted.append(path)
                    except OSError:
                        continue
            files = [p for p in files if p not in deleted]
            deleted += prune_files(files, s.max_bytes, s.max_age_s, now, keep=lambda p: p.name.startswith("."))
            return deleted

    # ------------------------------------------------------------------------------------ the thread

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue:
                    self._cond.wait(0.0 if self._backlog else _IDLE_S)
                item = self._queue.popleft() if self._queue else None
                if item is not None and item[0] == "frame":
                    self._queued_frames -= 1
            try:
                if item is None and not self._backlog:
                    self._idle()
                elif item is None:
                    pass
                elif item[0] == "frame":
                    self._frame(*item[1:])
                elif item[0] == "event":
                    self._event(*item[1:])
                else:
                    self._finish_all()
                self._drain(_DRAIN)
                if time.monotonic() >= self._next_prune:
                    self._next_prune = time.monotonic() + self._prune_every_s
                    self.prune()
            except Exception as exc:  # the thread must go on
                self._error(f"clip thread: {exc!r}")
            finally:
                with self._cond:
                    self._pending -= item is not None
                    self._backlog = sum(len(clip.backlog) for clip in self._clips.values())
                    self._cond.notify_all()
            if item is not None and item[0] == "stop":
                return

    def _idle(self) -> None:
        """No frame came: finish the clips whose post-roll has passed in wall-clock time."""
        now = time.monotonic()
        for clip in list(self._clips.values()):
            if clip.ended_mono is not None and now - clip.ended_mono > self.settings.post_s + _IDLE_S:
                self._finish(clip)

    def _frame(self, t: float, image: np.ndarray, overlay: Any) -> None:
        if image.ndim == 2 or image.shape[2] == 1:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        size = (int(image.shape[1]), int(image.shape[0]))
        if self._size is not None and size != self._size:
            self._restart(f"the frame size changed from {self._size[0]}x{self._size[1]} to {size[0]}x{size[1]}")
        elif self._last_t is not None and t < self._last_t - 1.0:
            self._restart(f"time went back {self._last_t - t:.1f} s")
        self._size, self._last_t = size, t
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(self.settings.jpeg_quality)])
        buffered = BufferedFrame(t, jpeg, overlay) if ok else None
        if buffered is not None:  # with pre_s 0, the ring holds the newest frame: a clip starts with its `new`'s
            self._ring.append(buffered)
        annotated = None
        for clip in list(self._clips.values()):
            if clip.backlog:  # its pre-roll is still being written: this frame waits behind it, as JPEG
                if buffered is not None:
                    clip.backlog.append(buffered)
                continue
            if annotated is None:
                annotated = self._draw(image, overlay)
            self._put(clip, t, annotated)

    def _event(self, kind: str, event_id: str, t: float | None) -> None:
        if kind == "new":
            self._start(event_id, t if t is not None else (self._last_t or time.time()))
            return
        clip = self._clips.get(event_id)
        if clip is None:
            return
        end = t if t is not None else (self._last_t or time.time())
        clip.end_at, clip.ended_mono = end + self.settings.post_s, time.monotonic()
        if not clip.backlog and self._last_t is not None and self._last_t > clip.end_at:
            self._finish(clip)

    def _start(self, event_id: str, t: float) -> None:
        """A new clip; its pre-roll, from the ring, is written a few frames at a time (:meth:`_drain`) so
        that the queue keeps moving."""
        s = self.settings
        fps = s.fps or min(60.0, max(1.0, self._ring.frame_rate() or 15.0))
        clip = _Clip(
            event_id, self.dir / f".{event_id}{_PART}{self.ext}", self.dir / f"{event_id}{self.ext}", float(fps)
        )
        clip.backlog.extend(self._ring.since(t - s.pre_s))
        self._clips[event_id] = clip

    def _drain(self, limit: int) -> None:
        """Write up to ``limit`` frames of the clips' backlogs (oldest clip first)."""
        for clip in list(self._clips.values()):
            while limit > 0 and clip.backlog and clip.event_id in self._clips:
                self._put_buffered(clip, clip.backlog.popleft())
                limit -= 1

    def _put_buffered(self, clip: _Clip, frame: BufferedFrame) -> None:
        image = frame.image()
        if image is not None:
            self._put(clip, frame.t, self._draw(image, frame.overlay))

    def _put(self, clip: _Clip, t: float, image: np.ndarray) -> None:
        """Write a frame at ``t`` unless the clip is over (post-roll done, or ``max_clip_s``)."""
        if clip.end_at is not None and t > clip.end_at:
            self._finish(clip, drain=False)
            return
        self._write(clip, t, image)
        if clip.event_id in self._clips and t - (clip.started or t) >= self.settings.max_clip_s:
            self._finish(clip, drain=False)

    def _draw(self, image: np.ndarray, overlay: Any) -> np.ndarray:
        if not (self.settings.draw_boxes and overlay):
            return image
        try:
            return draw_overlay(image, overlay)
        except Exception as exc:  # a caller's callable
            self._error(f"overlay drawing failed: {exc!r}")
            return image

    def _write(self, clip: _Clip, t: float, image: np.ndarray) -> None:
        try:
            if clip.video is None:
                size = (int(image.shape[1]), int(image.shape[0]))
                clip.video = _VideoFile(clip.part, self.fourcc, clip.fps, size, self.settings.min_free_bytes)
                clip.started = t
            assert clip.started is not None
            slot = round((t - clip.started) * clip.fps)
            if slot <= clip.slot:
                return  # early: this slot has its frame
            if clip.last is not None:
                for _ in range(min(slot - clip.slot - 1, round(_MAX_GAP_S * clip.fps))):
                    clip.video.write(clip.last)
                    clip.frames += 1
            clip.video.write(image)
            clip.slot, clip.last = slot, image
            clip.frames += 1
        except OSError as exc:
            self._fail(clip, exc)

    def _finish(self, clip: _Clip, drain: bool = True) -> None:
        """Write its backlog (with ``drain``), release the writer, check the file plays, and name it as the
        clip."""
        while drain and clip.backlog and clip.event_id in self._clips:
            self._put_buffered(clip, clip.backlog.popleft())
        if clip.event_id not in self._clips:  # finished or failed meanwhile
            return
        clip.backlog.clear()
        self._clips.pop(clip.event_id, None)
        if clip.video is None:  # not one frame came
            self._set_state(clip.event_id, None)
            return
        try:
            clip.video.close()
            if not _plays(clip.part):
                raise OSError(errno.EIO, "the finished file does not play back", str(clip.part))
            os.replace(clip.part, clip.final)
        except OSError as exc:
            clip.video = None
            self._fail(clip, exc)
            return
        self.clips_written += 1
        self._set_state(clip.event_id, "written")
        log.debug("clip %s: %d frames at %g fps -> %s", clip.event_id, clip.frames, clip.fps, clip.final)
        self._next_prune = 0.0  # prune after each new clip

    def _fail(self, clip: _Clip, exc: OSError) -> None:
        """This clip stops: its partial file goes, the failure is counted and logged (throttled)."""
        self._clips.pop(clip.event_id, None)
        clip.backlog.clear()
        if clip.video is not None:
            try:
                clip.video.close()
            except Exception:  # releasing a writer on a broken disk
                pass
        try:
            clip.part.unlink(missing_ok=True)
        except OSError:  # a read-only folder: there is none, or it stays hidden
            pass
        self.clips_failed += 1
        self._set_state(clip.event_id, "failed")
        code = errno.errorcode.get(exc.errno or 0, "")
        self._error(f"clip {clip.event_id} stopped ({code or 'error'}: {exc}); detection goes on")

    def _restart(self, why: str) -> None:
        """Finish the open clips as they stand and empty the ring."""
        if self._clips:
            self._log_busy.warning("camera %s: %s; %d open clip(s) finished here", self.camera, why, len(self._clips))
        self._finish_all()
        self._ring.clear()

    def _finish_all(self) -> None:
        for clip in list(self._clips.values()):
            self._finish(clip)

    def _set_state(self, event_id: str, state: str | None) -> None:
        with self._cond:
            if state is None:
                self._state.pop(event_id, None)
            else:
                self._state.pop(event_id, None)
                self._state[event_id] = state  # newest last
            while len(self._state) > _KEEP_STATES:
                oldest = next((k for k, v in self._state.items() if v != "recording"), None)
                if oldest is None:
                    break
                del self._state[oldest]

    def _error(self, message: str) -> None:
        self.errors += 1
        self.last_error = message
        self._log.warning("camera %s clips: %s (%d errors so far)", self.camera, message, self.errors)

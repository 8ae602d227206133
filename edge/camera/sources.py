"""Where frames come from: V4L2 cameras, GStreamer pipelines, RTSP/HTTP streams, video files, image folders.

:func:`open_source` turns the config's ``source`` string into a :class:`CaptureSource`:

* ``0``, ``/dev/video0`` — a V4L2 camera (USB webcams; ``capture_width``/``capture_height`` requested);
* a string containing ``!`` — a GStreamer pipeline ending in ``appsink`` (Jetson CSI ``nvarguscamerasrc``,
  Raspberry Pi ``libcamerasrc``); needs an OpenCV built with GStreamer (the system one, not the pip wheel);
* ``rtsp://``, ``http://`` ... — a network stream through FFmpeg (RTSP over TCP unless
  ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` says otherwise), with open/read timeouts;
* a folder — its images in name order; an image file — that image; anything else — a video file.

``read()`` returns ``(frame, position)``; ``position`` is the frame's index in a video file or image
folder (``None`` for live sources). It raises :class:`SourceEnded` at the normal end of a file or folder
and :class:`SourceError` when the source failed: a camera unplugged, a stream broken, a video file
removed, replaced or truncated while open. Opening raises :class:`SourceError` too. The capture thread
(:mod:`edgedet.edge.camera.capture`) turns both into looping or reconnecting.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edgedet.edge.camera.redact import redact, split_authority
from edgedet.edge.runtime.backends.base import failure_reason
from edgedet.edge.runtime.media import IMAGE_SUFFIXES, list_images, read_image

__all__ = [
    "CaptureSource",
    "SourceEnded",
    "SourceError",
    "SourceOptions",
    "check_url",
    "gstreamer_available",
    "open_source",
    "redact",
    "source_kind",
]

log = logging.getLogger(__name__)

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
TIMEOUT_MS = 10_000  # FFmpeg open / read timeout for network streams
_REASON_LIMIT = 200  # characters of an OpenCV error kept in a SourceError
SKIP_WARN_EVERY_S = 600.0  # an unreadable image in a looping folder is reported once per 10 minutes
_skip_warned: dict[str, float] = {}  # image path -> monotonic time of its last warning


class SourceEnded(Exception):
    """The normal end of a video file or image folder."""


class SourceError(Exception):
    """The source failed or could not be opened; the message says why."""


@dataclass(frozen=True)
class SourceOptions:
    width: int | None = None  # requested from V4L2 cameras
    height: int | None = None
    fps: float | None = None


class CaptureSource(Protocol):
    live: bool  # a camera or stream (frames come at their own pace) rather than a file or folder
    fps: float | None  # the file's own frame rate, when it has one

    def read(self) -> tuple[np.ndarray, int | None]: ...

    def close(self) -> None: ...


def source_kind(source: str) -> str:
    """``device``, ``gstreamer``, ``url``, ``folder``, ``image`` or ``video``."""
    text = str(source).strip()
    if text.isdigit() or text.startswith("/dev/"):
        return "device"
    if "!" in text:
        return "gstreamer"
    if _URL.match(text):
        return "url"
    path = Path(text)
    if path.is_dir() or text.endswith(("/", os.sep)):
        return "folder"
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return "image"
    return "video"


def check_url(source: str) -> None:
    """``SourceError`` naming the problem when a stream URL cannot be right (a port that is not a number
    in 1..65535, no host): caught at start instead of retried forever. Passwords may hold ``@ # / ?``."""
    scheme = _URL.match(source)
    if not scheme:
        return
    _, host, _ = split_authority(source[scheme.end() :])
    name, colon, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not colon:
        name = host
    elif port and (not port.isdigit() or not 0 < int(port) <= 65535):
        what = "is not a number" if not port.isdigit() else "is not in 1..65535"
        raise SourceError(f"{redact(source)}: port {port!r} {what}")
    if not name and not source.lower().startswith("file:"):
        raise SourceError(f"{redact(source)}: no host in the URL")


def gstreamer_available() -> bool:
    """Whether this OpenCV can open GStreamer pipelines (pip wheels cannot; Debian/JetPack builds can)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


class _CvSource:
    """A ``cv2.VideoCapture`` on a camera, pipeline or stream: every failure is a :class:`SourceError`."""

    live = True
    fps: float | None = None

    def __init__(self, source: str, cap: cv2.VideoCapture, what: str) -> None:
        self.source = source
        self.what = what
        self._cap = cap
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{redact(source)}: cannot open {what}")

    def read(self) -> tuple[np.ndarray, int | None]:
        try:
            ok, frame = self._cap.read()
        except cv2.error as exc:
            raise SourceError(
                f"{redact(self.source)}: {self.what} read failed ({failure_reason(exc, limit=_REASON_LIMIT)})"
            ) from exc
        if not ok or frame is None:
            raise SourceError(f"{redact(self.source)}: {self.what} gave no frame (unplugged, or the stream ended)")
        return frame, None

    def close(self) -> None:
        self._cap.release()


def _open_device(source: str, options: SourceOptions) -> _CvSource:
    if not source.isdigit() and not Path(source).exists():
        raise SourceError(f"{source}: no such camera device")
    backend = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    target: int | str = int(source) if source.isdigit() else source
    cap = cv2.VideoCapture(target, backend)
    if cap.isOpened():
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a queue of old ones
        if options.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, options.width)
        if options.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, options.height)
        if options.fps:
            cap.set(cv2.CAP_PROP_FPS, options.fps)
    return _CvSource(source, cap, "camera")


def _open_url(source: str) -> _CvSource:
    check_url(source)
    if source.lower().startswith("rtsp") and "OPENCV_FFMPEG_CAPTURE_OPTIONS" not in os.environ:
        os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;tcp"  # UDP loses packets on Wi-Fi
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, TIMEOUT_MS]
    return _CvSource(source, cv2.VideoCapture(source, cv2.CAP_FFMPEG, params), "stream")


def _open_gstreamer(source: str) -> _CvSource:
    if not gstreamer_available():
        raise SourceError(
            "this OpenCV has no GStreamer support, so it cannot open the pipeline; use the system OpenCV "
            "(python3-opencv) in a venv made with --system-site-packages (see deploy/README.md)"
        )
    return _CvSource(source, cv2.VideoCapture(source, cv2.CAP_GSTREAMER), "GStreamer pipeline")


class VideoFileSource:
    """A video file; removed, replaced (new inode) or shrunk while open is a :class:`SourceError`."""

    live = False

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        try:
            st = self.path.stat()
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot open video ({exc.strerror or exc})") from exc
        if not self.path.is_file():
            raise SourceError(f"{self.path}: not a video file")
        self._inode, self._size = st.st_ino, st.st_size
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(f"{self.path}: cannot open video (corrupt, or a codec OpenCV lacks)")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps <= 1000.0 else None
        self._position = 0

    def _check_file(self) -> None:
        try:
            st = self.path.stat()
        except OSError as exc:
            raise SourceError(f"{self.path}: video file removed ({exc.strerror or exc})") from exc
        if st.st_ino != self._inode:
            raise SourceError(f"{self.path}: video file replaced")
        if st.st_size < self._size:
            raise SourceError(f"{self.path}: video file truncated ({self._size} -> {st.st_size} bytes)")
        self._size = st.st_size

    def read(self) -> tuple[np.ndarray, int | None]:
        self._check_file()
        try:
            ok, frame = self._cap.read()
        except cv2.error as exc:
            raise SourceError(f"{self.path}: video read failed ({failure_reason(exc, limit=_REASON_LIMIT)})") from exc
        if not ok or frame is None:
            self._check_file()
            if self._position == 0:
                raise SourceError(f"{self.path}: no frames could be decoded")
            raise SourceEnded(f"{self.path}: end of video after {self._position} frames")
        position = self._position
        self._position += 1
        return frame, position

    def close(self) -> None:
        self._cap.release()


class ImageFilesSource:
    """The images of a folder (name order, listed at open) or one image file; unreadable ones are skipped."""

    live = False
    fps: float | None = None

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            try:
                self._images = list_images(self.path)
            except OSError as exc:
                raise SourceError(f"{self.path}: cannot list images ({exc.strerror or exc})") from exc
            if not self._images:
                raise SourceError(f"{self.path}: no images ({', '.join(IMAGE_SUFFIXES)}) in folder")
        elif self.path.is_file():
            self._images = [self.path]
        else:
            raise SourceError(f"{self.path}: no such image or folder")
        self.still = len(self._images) == 1  # looping one image shows the same scene: its objects stay
        self._next = 0
        self._read = 0

    def read(self) -> tuple[np.ndarray, int | None]:
        while self._next < len(self._images):
            index = self._next
            self._next += 1
            try:
                image = read_image(self._images[index])
            except ValueError as exc:
                if not self.path.exists():
                    raise SourceError(f"{self.path}: removed") from exc
                _warn_skip(str(self._images[index]), exc)
                continue
            self._read += 1
            return image, index
        if self._read == 0:  # not one readable image: a failure (backoff), not an end to loop at once
            raise SourceError(f"{self.path}: none of {len(self._images)} images could be read")
        raise SourceEnded(f"{self.path}: end of {len(self._images)} images")

    def close(self) -> None:
        self._images = []


def _warn_skip(path: str, exc: Exception) -> None:
    """Log an unreadable image once per ``SKIP_WARN_EVERY_S`` (a folder loops: every pass would repeat it)."""
    now = time.monotonic()
    last = _skip_warned.get(path)
    if last is not None and now - last < SKIP_WARN_EVERY_S:
        log.debug("skipping %s", exc)
        return
    if len(_skip_warned) >= 4096:  # bounded, whatever the folder holds
        _skip_warned.clear()
    _skip_warned[path] = now
    log.warning("skipping %s (reported again in %.0f min if still unreadable)", exc, SKIP_WARN_EVERY_S / 60)


def open_source(source: str, options: SourceOptions | None = None) -> CaptureSource:
    """Open ``source`` (see the module docstring) or raise :class:`SourceError`; the kind is decided now,
    so a path that appears later as a folder or a file is opened as what it is then."""
    options = options or SourceOptions()
    source = str(source).strip()
    kind = source_kind(source)
    if kind == "device":
        return _open_device(source, options)
    if kind == "gstreamer":
        return _open_gstreamer(source)
    if kind == "url":
        return _open_url(source)
    if kind in ("folder", "image"):
        return ImageFilesSource(source)
    return VideoFileSource(source)

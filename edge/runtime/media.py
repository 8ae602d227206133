"""The SOURCE arguments of ``edgedet detect``: image files, folders of images, video files.

:func:`iter_media` yields one :class:`MediaItem` per image or video frame. A source that cannot be read
(missing path, corrupt image, undecodable video, unsupported type) yields an item with ``error`` set
and no frame, so one bad file is reported and the run goes on.

Images are decoded by :func:`edgedet.edge.datasets.image_files.read_image` (EXIF orientation applied, so
a phone photo is upright; regular files only), and a folder's images are
:data:`edgedet.edge.datasets.image_files.IMAGE_SUFFIXES`, the same suffixes the dataset readers take;
``IMAGE_SUFFIXES``, ``list_images`` and ``read_image`` are re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgedet.edge.datasets.image_files import IMAGE_SUFFIXES, list_images, read_image

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "MediaItem", "iter_media", "iter_video", "list_images", "read_image"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")


@dataclass(frozen=True)
class MediaItem:
    """An image or video frame (``frame`` BGR uint8), or a failure (``error`` set, ``frame`` None).

    ``name`` is the image path, or ``"VIDEO#frame=N"`` for frame ``N`` (0-based) of a video.
    """

    name: str
    path: Path
    frame: np.ndarray | None = None
    frame_index: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def iter_video(path: str | os.PathLike[str]) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, BGR frame)`` for every frame; ``ValueError`` when the file cannot be opened or has none."""
    path = Path(path)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"{path}: cannot open video (corrupt, or a codec OpenCV lacks)")
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            yield index, frame
            index += 1
        if index == 0:
            raise ValueError(f"{path}: no frames could be decoded")
    finally:
        cap.release()


def _image_item(path: Path) -> MediaItem:
    try:
        return MediaItem(str(path), path, read_image(path))
    except ValueError as exc:
        return MediaItem(str(path), path, error=str(exc))


def iter_media(sources: Iterable[str | os.PathLike[str]]) -> Iterator[MediaItem]:
    """Every image / frame of ``sources`` in order; folders give their images (not videos), sorted."""
    for source in sources:
        path = Path(source)
        suffix = path.suffix.lower()
        if not path.exists():
            yield MediaItem(str(path), path, error=f"{path}: no such file or folder")
        elif path.is_dir():
            images = list_images(path)
            if not images:
                yield MediaItem(str(path), path, error=f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in folder")
            for image in images:
                yield _image_item(image)
        elif suffix in IMAGE_SUFFIXES:
            yield _image_item(path)
        elif suffix in VIDEO_SUFFIXES:
            try:
                for index, frame in iter_video(path):
                    yield MediaItem(f"{path}#frame={index}", path, frame, index)
            except ValueError as exc:
                yield MediaItem(str(path), path, error=str(exc))
        else:
            kinds = ", ".join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)
            yield MediaItem(str(path), path, error=f"{path}: unsupported file type {suffix or '(none)'!r} ({kinds})")

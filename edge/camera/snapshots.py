"""The best snapshot of each object: the full frame with its box drawn and a crop of the object, kept on
disk under a size and age budget and served at ``/events/<id>/snapshot.jpg`` (``?crop=1``: the crop).

Files are ``<dir>/<event id>.jpg`` and ``<dir>/<event id>-crop.jpg``, written atomically (a temporary file
renamed over the old one), so a reader never sees half a JPEG. When the folder grows past ``max_bytes`` or
files grow older than ``max_age_s``, the oldest go first — never those of an object still alive. A full or
read-only disk is logged and counted; detection and events go on without snapshots.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Annotated, Any

import cv2
import numpy as np
from pydantic import Field

from edgedet.edge.runtime.output_paths import write_bytes_atomic
from edgedet.edge.runtime.settings import Int, NonEmptyText, Number, StrictModel

__all__ = ["SnapshotSettings", "SnapshotStore", "prune_files"]

log = logging.getLogger(__name__)
_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def prune_files(
    files: Iterable[Path], max_bytes: int, max_age_s: float, now: float, keep: Callable[[Path], bool]
) -> list[Path]:
    """Delete from ``files`` the oldest first (by modification time) while the total is over ``max_bytes``,
    and those older than ``max_age_s`` (0: no limit for either), never one that ``keep(path)`` holds (kept
    files still count in the total); the files deleted. Shared by snapshots and event clips."""
    stats = []
    for path in files:
        try:
            stats.append((path, path.stat()))
        except OSError:  # gone meanwhile
            continue
    stats.sort(key=lambda item: item[1].st_mtime)
    total = sum(st.st_size for _, st in stats)
    deleted = []
    for path, st in stats:
        too_old = max_age_s and now - st.st_mtime > max_age_s
        too_big = max_bytes and total > max_bytes
        if not (too_old or too_big) or keep(path):
            continue
        try:
            path.unlink()
        except OSError:
            continue
        total -= st.st_size
        deleted.append(path)
    return deleted


class SnapshotSettings(StrictModel):
    """Best-so-far snapshots of every object."""

    dir: NonEmptyText | None = Field(None, description="folder for the JPEG files (made when missing); null: none")
    max_bytes: Annotated[Int, Field(ge=0)] = Field(
        200_000_000, description="the folder's budget; the oldest files go first (0: no limit)"
    )
    max_age_s: Annotated[Number, Field(ge=0)] = Field(
        7 * 86400.0, description="files older than this are deleted (0: no limit)"
    )
    jpeg_quality: Annotated[Int, Field(ge=1, le=100)] = Field(85, description="JPEG quality")
    crop_margin: Annotated[Number, Field(ge=0, le=2)] = Field(
        0.2, description="the crop extends the box by this fraction of its size on each side"
    )


class SnapshotStore:
    """Writes, prunes and finds the snapshot files; ``live()`` returns the event ids that must not be
    deleted."""

    def __init__(
        self,
        settings: SnapshotSettings,
        live: Callable[[], Collection[str]] = frozenset,
        prune_every_s: float = 10.0,
    ) -> None:
        if settings.dir is None:
            raise ValueError("snapshots.dir: no folder given")
        self.settings = settings
        self.dir = Path(settings.dir)
        self.live = live
        self.errors = 0
        self.written = 0
        self._lock = threading.Lock()
        self._prune_every_s = prune_every_s
        self._next_prune = 0.0

    def path(self, event_id: str, crop: bool = False) -> Path | None:
        """The file of ``event_id`` (``None`` for an id that is not one of ours or has no file)."""
        if not _ID.match(event_id):
            return None
        path = self.dir / f"{event_id}{'-crop' if crop else ''}.jpg"
        return path if path.is_file() else None

    def save(
        self, event_id: str, frame: np.ndarray, box: Any, label: str = "", crop_from: np.ndarray | None = None
    ) -> bool:
        """Write ``frame`` (annotated by the caller) and the crop of ``box`` (from ``crop_from``, the clean
        frame, when given) for ``event_id``; whether it worked."""
        s = self.settings
        params = [cv2.IMWRITE_JPEG_QUALITY, int(s.jpeg_quality)]
        h, w = frame.shape[:2]
        x1, y1, x2, y2 = (float(v) for v in box)
        mx, my = (x2 - x1) * s.crop_margin, (y2 - y1) * s.crop_margin
        cx1, cy1 = max(0, int(x1 - mx)), max(0, int(y1 - my))
        cx2, cy2 = min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))
        clean = frame if crop_from is None else crop_from
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            ok, data = cv2.imencode(".jpg", frame, params)
            if not ok:
                raise OSError("JPEG encoding failed")
            write_bytes_atomic(self.dir / f"{event_id}.jpg", data.tobytes())
            if cx2 > cx1 and cy2 > cy1:
                ok, data = cv2.imencode(".jpg", clean[cy1:cy2, cx1:cx2], params)
                if ok:
                    write_bytes_atomic(self.dir / f"{event_id}-crop.jpg", data.tobytes())
        except OSError as exc:
            self.errors += 1
            if self.errors <= 3 or self.errors % 100 == 0:
                log.error("snapshot %s (%s): %s (%d errors so far); events go on", event_id, label, exc, self.errors)
            return False
        self.written += 1
        self.prune(keep=(event_id,))
        return True

    def prune(self, now: float | None = None, force: bool = False, keep: Collection[str] = ()) -> list[Path]:
        """Delete past the budget (oldest first, never a live object's nor those of ``keep``); the files
        deleted. Runs at most every ``prune_every_s`` unless ``force``."""
        now = time.time() if now is None else now
        if not force and now < self._next_prune:
            return []
        self._next_prune = now + self._prune_every_s
        s = self.settings
        with self._lock:
            try:
                files = list(self.dir.glob("*.jpg"))
            except OSError:
                return []
            kept = {str(i) for i in self.live()} | set(keep)
            return prune_files(
                files, s.max_bytes, s.max_age_s, now, keep=lambda path: path.stem.removesuffix("-crop") in kept
            )

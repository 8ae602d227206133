"""Shared checks every reader runs: is the image there and readable, is each box sane, is its class known.

Each problem goes into the ``LoadReport`` (and the log) with its file and reason; nothing raises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgedet.edge.datasets.class_names import ClassMapper
from edgedet.edge.datasets.image_files import image_size
from edgedet.edge.datasets.report import (
    BOX_CLIPPED,
    BOX_OUTSIDE,
    INVALID_BOX,
    MISSING_IMAGE,
    SIZE_MISMATCH,
    UNKNOWN_CLASS,
    UNREADABLE_IMAGE,
    ZERO_AREA,
    LoadReport,
)
from edgedet.edge.datasets.sample import Dataset, Sample

__all__ = ["CLIP_TOLERANCE", "SampleBuilder"]

# Boxes overhanging the image by at most this many pixels are clipped without a report: annotation
# conventions (VOC's 1-based xmax == width + 1) and rounding of normalised coordinates, not mistakes.
CLIP_TOLERANCE = 1.0


def _fmt(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


class SampleBuilder:
    """Collects the samples of one dataset, reporting every image, box or class it has to drop."""

    def __init__(self, report: LoadReport, mapper: ClassMapper, *, verify_images: bool = False) -> None:
        self.report = report
        self.mapper = mapper
        self.verify_images = verify_images
        self.samples: list[Sample] = []

    def probe(self, file: str | Path, image_path: Path | None, annotated: tuple[int, int] | None = None):
        """``(width, height)`` of the image, or ``None`` after reporting it missing or unreadable.

        ``file`` is the annotation naming the image. A positive ``annotated`` size that differs from
        the image's own is reported, and the image's size is used.
        """
        if image_path is None or not image_path.is_file():
            where = f"looked for {image_path}" if image_path is not None else "no image file found"
            self.report.add(file, MISSING_IMAGE, f"{where}; image skipped")
            return None
        try:
            size = image_size(image_path, decode=self.verify_images)
        except OSError as exc:
            self.report.add(file, UNREADABLE_IMAGE, f"{exc}; image skipped")
            return None
        if annotated is not None and annotated[0] > 0 and annotated[1] > 0 and tuple(annotated) != size:
            self.report.add(
                file,
                SIZE_MISMATCH,
                f"annotated {annotated[0]}x{annotated[1]}, image {size[0]}x{size[1]}; using the image",
            )
        return size

    def label(self, file: str | Path, where: str, name: str) -> int | None:
        """Label of a class name, or ``None`` after reporting it unknown."""
        label = self.mapper(name)
        if label is None:
            self.report.add(file, UNKNOWN_CLASS, f"{where}: {self.mapper.explain_unknown(name)}; box skipped")
        return label

    def box(self, file: str | Path, where: str, box: Sequence[float], width: int, height: int) -> np.ndarray | None:
        """The box clipped to the image, or ``None`` after reporting why it was skipped.

        Skipped: non-finite or inverted corners, zero area, entirely outside the image or less than a
        pixel inside it. Clipped (and reported, beyond ``CLIP_TOLERANCE``): partly outside.
        """
        x1, y1, x2, y2 = (float(v) for v in box)
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            self.report.add(file, INVALID_BOX, f"{where}: non-finite coordinates {_fmt(box)}; skipped")
            return None
        if x2 < x1 or y2 < y1:
            self.report.add(file, INVALID_BOX, f"{where}: inverted corners {_fmt(box)} (x2 < x1 or y2 < y1); skipped")
            return None
        if x2 == x1 or y2 == y1:
            self.report.add(file, ZERO_AREA, f"{where}: {_fmt(box)} has zero width or height; skipped")
            return None
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            self.report.add(
                file, BOX_OUTSIDE, f"{where}: {_fmt(box)} is entirely outside the {width}x{height} image; skipped"
            )
            return None
        clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
        overhang = max(-x1, -y1, x2 - width, y2 - height)
        if overhang > 0 and (clipped[2] - clipped[0] < 1.0 or clipped[3] - clipped[1] < 1.0):
            self.report.add(
                file, BOX_OUTSIDE, f"{where}: {_fmt(box)} is under 1 px inside the {width}x{height} image; skipped"
            )
            return None
        if overhang > CLIP_TOLERANCE:
            detail = (
                f"{_fmt(box)} extends {overhang:g} px outside the {width}x{height} image; clipped to {_fmt(clipped)}"
            )
            self.report.add(file, BOX_CLIPPED, f"{where}: {detail}")
        return np.array(clipped, dtype=np.float32)

    def add(
        self,
        image_path: Path,
        image_id: str,
        width: int,
        height: int,
        boxes: Sequence[np.ndarray],
        labels: Sequence[int],
    ) -> Sample:
        """Record one sample (its boxes already checked)."""
        sample = Sample(
            image_path=image_path,
            boxes=np.stack(boxes) if len(boxes) else np.zeros((0, 4), np.float32),
            labels=np.asarray(labels, dtype=np.int64),
            width=width,
            height=height,
            image_id=image_id,
        )
        self.samples.append(sample)
        self.report.images += 1
        self.report.boxes += len(sample.boxes)
        self.report.backgrounds += int(len(sample.boxes) == 0)
        return sample

    def dataset(self) -> Dataset:
        return Dataset(self.mapper.classes, self.samples, self.report)

"""What every dataset reader returns: ``Sample`` records gathered in a ``Dataset`` with its ``LoadReport``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgedet.edge.datasets.image_files import read_image
from edgedet.edge.datasets.report import LoadReport

__all__ = ["Dataset", "Sample"]


@dataclass(frozen=True, eq=False)
class Sample:
    """One annotated image.

    ``boxes`` are ``[M, 4]`` float32 corner pixels ``(x1, y1, x2, y2)`` with ``0 <= x1 < x2 <= width``
    (``x2`` is the right edge of the last covered pixel column); ``labels`` are ``[M]`` int64 indices
    into the dataset's class names. Both arrays are read-only copies. ``M`` may be 0 (a background image).
    """

    image_path: Path
    boxes: np.ndarray
    labels: np.ndarray
    width: int
    height: int
    image_id: str

    def __post_init__(self) -> None:
        boxes = np.array(self.boxes, dtype=np.float32).reshape(-1, 4)
        labels = np.array(self.labels, dtype=np.int64).reshape(-1)
        if len(boxes) != len(labels):
            raise ValueError(f"{self.image_id}: {len(boxes)} boxes but {len(labels)} labels")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"{self.image_id}: image size must be positive, got {self.width}x{self.height}")
        boxes.flags.writeable = False
        labels.flags.writeable = False
        object.__setattr__(self, "image_path", Path(self.image_path))
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    def load_image(self) -> np.ndarray:
        """The image as ``HxWx3`` uint8 BGR in its stored pixel layout, ``height x width`` like the boxes
        (EXIF orientation not applied: see :mod:`edgedet.edge.datasets.image_files`); ``OSError`` (an
        :class:`~edgedet.edge.datasets.image_files.ImageReadError`) if it cannot be read."""
        return read_image(self.image_path, exif_orientation=False)


@dataclass
class Dataset:
    """Class names (label ``i`` is ``classes[i]``), the samples, and the report of what went wrong."""

    classes: tuple[str, ...]
    samples: list[Sample]
    report: LoadReport = field(default_factory=LoadReport)

    def __post_init__(self) -> None:
        self.classes = tuple(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    @property
    def num_boxes(self) -> int:
        return sum(len(s.boxes) for s in self.samples)

    def class_counts(self) -> dict[str, int]:
        """Boxes per class name, in class order (classes without boxes count 0)."""
        counts = np.zeros(len(self.classes), dtype=np.int64)
        for sample in self.samples:
            counts += np.bincount(sample.labels, minlength=len(self.classes))[: len(self.classes)]
        return {name: int(n) for name, n in zip(self.classes, counts, strict=True)}

    def subset(self, indices: Sequence[int]) -> Dataset:
        """A dataset with the chosen samples (same classes and report)."""
        return Dataset(self.classes, [self.samples[i] for i in indices], self.report)

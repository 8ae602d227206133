"""What went wrong while loading a dataset: ``Issue`` records collected in a ``LoadReport``.

Readers never drop a label silently and never crash on one: each problem is logged as a warning on
the ``edgedet.edge.datasets`` logger, recorded with its file and reason, and counted by kind.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BOX_CLIPPED",
    "BOX_OUTSIDE",
    "IGNORED_BOX",
    "INVALID_BOX",
    "LOG_LIMIT",
    "MALFORMED_FILE",
    "MISSING_ANNOTATION",
    "MISSING_IMAGE",
    "SIZE_MISMATCH",
    "UNKNOWN_CLASS",
    "UNREADABLE_IMAGE",
    "ZERO_AREA",
    "Issue",
    "LoadReport",
]

log = logging.getLogger("edgedet.edge.datasets")

# Issue kinds (the keys of ``LoadReport.counts``).
BOX_CLIPPED = "box clipped to image"  # partly outside: kept, clipped
BOX_OUTSIDE = "box outside image"  # entirely outside (or < 1 px inside): skipped
ZERO_AREA = "zero-area box"  # x1 == x2 or y1 == y2: skipped
INVALID_BOX = "invalid box"  # non-finite or inverted corners, wrong field count: skipped
UNKNOWN_CLASS = "unknown class"  # not in the class list: skipped
IGNORED_BOX = "ignored box"  # flagged by the format itself (WIDER invalid, COCO crowd): skipped
MISSING_IMAGE = "missing image"  # image skipped
UNREADABLE_IMAGE = "unreadable image"  # image skipped
MISSING_ANNOTATION = "missing annotation"  # listed in a split but not annotated: image skipped
MALFORMED_FILE = "malformed file"  # parse error: that file (or line) skipped
SIZE_MISMATCH = "image size mismatch"  # annotated size differs from the image: the image's size is used

# Warnings logged per kind of problem before the rest go to the debug level (a class filter can skip
# thousands of boxes on purpose); every problem is always in the report.
LOG_LIMIT = 20


@dataclass(frozen=True)
class Issue:
    """One problem: the file it is in, its kind (the count key) and details (where, what was done)."""

    file: str
    kind: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.file}: {self.kind}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class LoadReport:
    """Everything a reader skipped, clipped or could not read, plus what it loaded."""

    source: str = ""
    issues: list[Issue] = field(default_factory=list)
    images: int = 0
    boxes: int = 0
    backgrounds: int = 0
    _logged: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def add(self, file: str | Path, kind: str, detail: str = "") -> None:
        """Record one problem and log it: a warning for the first ``LOG_LIMIT`` of its kind, then debug."""
        issue = Issue(str(file), kind, detail)
        self.issues.append(issue)
        seen = self._logged.get(kind, 0)
        self._logged[kind] = seen + 1
        if seen < LOG_LIMIT:
            log.warning("%s", issue)
        else:
            if seen == LOG_LIMIT:
                log.warning("more '%s' problems: logged at debug level only; all are in the report", kind)
            log.debug("%s", issue)

    @property
    def counts(self) -> dict[str, int]:
        """Number of issues of each kind."""
        return dict(Counter(issue.kind for issue in self.issues))

    def of_kind(self, kind: str) -> list[Issue]:
        """The issues of one kind, in the order met."""
        return [issue for issue in self.issues if issue.kind == kind]

    def __len__(self) -> int:
        return len(self.issues)

    def summary(self) -> str:
        """What was loaded and how many problems of each kind, one kind a line."""
        head = f"{self.source + ': ' if self.source else ''}{self.images} images, {self.boxes} boxes"
        if self.backgrounds:
            head += f" ({self.backgrounds} images without boxes)"
        if not self.issues:
            return head + "; no problems"
        lines = [head + f"; {len(self.issues)} problems:"]
        lines += [f"  {kind}: {n}" for kind, n in sorted(self.counts.items())]
        return "\n".join(lines)

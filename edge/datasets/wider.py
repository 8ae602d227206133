"""WIDER FACE ground-truth reader (``wider_face_train_bbx_gt.txt`` style).

Each record is an image path line, a box count line, then one line per box::

    x1 y1 w h blur expression illumination invalid occlusion pose

A count of 0 is followed by one line of zeros. Boxes flagged ``invalid`` are reported and skipped.
Every box is class ``"face"`` (rename it with ``class_map``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from edgedet.edge.datasets.builder import SampleBuilder
from edgedet.edge.datasets.class_names import ClassMapper
from edgedet.edge.datasets.image_files import IMAGE_SUFFIXES
from edgedet.edge.datasets.report import IGNORED_BOX, INVALID_BOX, MALFORMED_FILE, LoadReport
from edgedet.edge.datasets.sample import Dataset

__all__ = ["WIDER_CLASS", "read_wider"]

WIDER_CLASS = "face"
_INVALID_FIELD = 7


def _is_image_line(line: str) -> bool:
    return line.strip().lower().endswith(IMAGE_SUFFIXES)


def _parse_records(path: Path, lines: list[str], report: LoadReport) -> list[tuple[int, str, list[tuple[int, str]]]]:
    """``(line number, image path, [(line number, box line)])`` per record; structure errors are reported."""
    records = []
    i = 0
    while i < len(lines):
        name = lines[i].strip()
        if not name:
            i += 1
            continue
        if not _is_image_line(name):
            report.add(path, MALFORMED_FILE, f"line {i + 1}: expected an image path, got {name[:60]!r}; line skipped")
            i += 1
            continue
        start = i + 1
        try:
            count = int(lines[i + 1].strip()) if i + 1 < len(lines) else -1
        except ValueError:
            count = -1
        if count < 0:
            report.add(path, MALFORMED_FILE, f"line {i + 2}: expected the box count of {name}; image skipped")
            i += 2 if i + 1 < len(lines) and not _is_image_line(lines[i + 1]) else 1
            continue
        i += 2
        box_lines = []
        for _ in range(max(count, 1)):
            if i >= len(lines) or _is_image_line(lines[i]):
                if count > 0:
                    report.add(
                        path, MALFORMED_FILE, f"line {start}: {name} announces {count} boxes, found {len(box_lines)}"
                    )
                break
            if count > 0:
                box_lines.append((i + 1, lines[i]))
            i += 1
        records.append((start, name, box_lines))
    return records


def read_wider(
    gt_txt: str | Path,
    images: str | Path,
    *,
    class_map: Mapping[str, str] | None = None,
    classes: Sequence[str] | None = None,
    verify_images: bool = False,
) -> Dataset:
    """Read a WIDER FACE ground-truth file; image paths are relative to ``images``.

    A missing ground-truth file or image folder raises ``FileNotFoundError``.
    """
    path, image_dir = Path(gt_txt), Path(images)
    if not path.is_file():
        raise FileNotFoundError(f"WIDER ground-truth file {path} not found")
    if not image_dir.is_dir():
        raise FileNotFoundError(f"WIDER image folder {image_dir} not found")
    report = LoadReport(source=f"wider:{path}:{image_dir}")
    builder = SampleBuilder(report, ClassMapper([WIDER_CLASS], class_map, classes), verify_images=verify_images)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        report.add(path, MALFORMED_FILE, f"not a text file: {exc}; nothing loaded")
        lines = []
    for _, name, box_lines in _parse_records(path, lines, report):
        image_path = image_dir / name
        size = builder.probe(path, image_path)
        if size is None:
            continue
        boxes, labels = [], []
        for lineno, line in box_lines:
            where = f"line {lineno} ({name})"
            try:
                values = [float(v) for v in line.split()]
            except ValueError:
                values = []
            if len(values) < 4:
                report.add(path, INVALID_BOX, f"{where}: expected 'x1 y1 w h ...', got {line.strip()[:60]!r}; skipped")
                continue
            if len(values) > _INVALID_FIELD and values[_INVALID_FIELD] == 1:
                report.add(path, IGNORED_BOX, f"{where}: marked invalid; skipped")
                continue
            label = builder.label(path, where, WIDER_CLASS)
            if label is None:
                continue
            x, y, w, h = values[:4]
            box = builder.box(path, where, (x, y, x + w, y + h), *size)
            if box is not None:
                boxes.append(box)
                labels.append(label)
        builder.add(image_path, Path(name).with_suffix("").as_posix(), size[0], size[1], boxes, labels)
    return builder.dataset()

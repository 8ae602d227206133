"""YOLO txt reader: one ``<stem>.txt`` per image with ``class cx cy w h`` lines, normalised to 0..1.

Layouts: ``ROOT/images/...`` with labels at the same place under ``ROOT/labels/...``, or labels beside
their images. An image without a label file (or with an empty one) is a background sample. Class names
come from ``ROOT/classes.txt`` or the ``names`` of ``ROOT/data.yaml``; without either, class ``k`` is
named ``"k"``. Segmentation lines (``class x1 y1 x2 y2 ...``) give the polygon's bounding box.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from edgedet.edge.datasets.builder import SampleBuilder
from edgedet.edge.datasets.class_names import ClassMapper
from edgedet.edge.datasets.image_files import IMAGE_SUFFIXES
from edgedet.edge.datasets.report import MALFORMED_FILE, MISSING_IMAGE, UNKNOWN_CLASS, LoadReport
from edgedet.edge.datasets.sample import Dataset

__all__ = ["label_path_for", "read_yolo", "yolo_class_names"]

_YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml")


def _data_yaml(root: Path) -> tuple[Path, dict[str, Any]] | None:
    for name in _YAML_NAMES:
        path = root / name
        if path.is_file():
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"{path}: expected a mapping with 'names', got {type(data).__name__}")
            return path, data
    return None


def yolo_class_names(root: str | Path) -> list[str] | None:
    """Class names from ``ROOT/classes.txt`` (one a line) or ``ROOT/data.yaml`` ``names`` (list or dict)."""
    root = Path(root)
    classes_txt = root / "classes.txt"
    if classes_txt.is_file():
        return [line.strip() for line in classes_txt.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    found = _data_yaml(root)
    if found is None or "names" not in found[1]:
        return None
    path, data = found
    names = data["names"]
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise ValueError(f"{path}: 'names' keys must be 0..{len(names) - 1}, got {sorted(names)}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: 'names' must be a list of class names")
    return names


def label_path_for(image: Path) -> Path:
    """``.../images/x/a.jpg`` -> ``.../labels/x/a.txt`` (last ``images`` folder), else ``a.txt`` beside it."""
    parts = image.parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            candidate = Path(*parts[:i], "labels", *parts[i + 1 :]).with_suffix(".txt")
            if candidate.is_file():
                return candidate
            break
    return image.with_suffix(".txt")


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _list_file(path: Path, root: Path) -> list[Path]:
    images = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        candidates = [Path(entry), path.parent / entry, root / entry]
        images.append(next((c for c in candidates if c.exists()), root / entry))
    return images


def _split_images(root: Path, split: str) -> list[Path]:
    found = _data_yaml(root)
    if found is not None and split in found[1]:
        path, data = found
        base = Path(data.get("path") or path.parent)
        base = base if base.is_absolute() else path.parent / base
        base = base if base.is_dir() else path.parent
        entries = data[split] if isinstance(data[split], list) else [data[split]]
        images: list[Path] = []
        for entry in entries:
            target = base / str(entry)
            if target.is_dir():
                images += _images_under(target)
            elif target.is_file():
                images += _list_file(target, base)
            else:
                raise FileNotFoundError(f"{path}: split {split!r} names {target}, which does not exist")
        return images
    for folder in (root / "images" / split, root / split):
        if folder.is_dir():
            return _images_under(folder)
    for list_file in (Path(split), root / split, root / f"{split}.txt"):
        if list_file.suffix == ".txt" and list_file.is_file():
            return _list_file(list_file, root)
    raise FileNotFoundError(
        f"YOLO split {split!r} not found: no key in data.yaml, no folder {root / 'images' / split} or "
        f"{root / split}, no list file {root / (split + '.txt')}"
    )


def _parse_line(fields: list[str]) -> tuple[int, tuple[float, float, float, float]] | str:
    """``(class, (x1, y1, x2, y2) normalised)`` or why the line is malformed."""
    if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
        return f"expected 'class cx cy w h' (5 fields) or a polygon, got {len(fields)} fields"
    try:
        cls_value = float(fields[0])
        values = [float(v) for v in fields[1:]]
    except ValueError:
        return "non-numeric field"
    if cls_value != int(cls_value) or cls_value < 0:
        return f"class {fields[0]!r} is not a non-negative integer"
    if len(fields) == 5:
        cx, cy, w, h = values
        return int(cls_value), (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    xs, ys = values[0::2], values[1::2]
    return int(cls_value), (min(xs), min(ys), max(xs), max(ys))


def _read_labels(path: Path, report: LoadReport | None) -> list[tuple[int, tuple[int, tuple[float, ...]]]]:
    """``(line number, (class, normalised corners))`` of each good line; bad lines are reported (if a report)."""
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        if report is not None:
            report.add(path, MALFORMED_FILE, f"cannot read the label file: {exc}; its labels skipped")
        return []
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        parsed = _parse_line(fields)
        if isinstance(parsed, str):
            if report is not None:
                report.add(path, MALFORMED_FILE, f"line {lineno}: {parsed}: {line.strip()[:60]!r}; line skipped")
            continue
        rows.append((lineno, parsed))
    return rows


def read_yolo(
    root: str | Path,
    split: str | None = None,
    *,
    class_map: Mapping[str, str] | None = None,
    classes: Sequence[str] | None = None,
    verify_images: bool = False,
) -> Dataset:
    """Read a YOLO txt dataset: every image under ``ROOT/images`` (or ``ROOT``), or only ``split``.

    ``split`` is a key of ``ROOT/data.yaml``, a folder ``ROOT/images/SPLIT`` or ``ROOT/SPLIT``, or a list
    file of image paths (``ROOT/SPLIT.txt`` or a path). The image size is read from the image header.
    A missing root or split raises ``FileNotFoundError``; bad label lines are reported and skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"YOLO dataset folder {root} not found")
    report = LoadReport(source=f"yolo:{root}" + (f":{split}" if split else ""))
    if split is not None:
        images = _split_images(root, split)
    else:
        images = _images_under(root / "images" if (root / "images").is_dir() else root)
    names = yolo_class_names(root)
    builder = SampleBuilder(report, ClassMapper(names or [], class_map, classes), verify_images=verify_images)
    if names is None:  # no names file: class k is "k"
        labels_seen = {cls for image in images for _, (cls, _) in _read_labels(label_path_for(image), None)}
        names = [str(k) for k in range(max(labels_seen, default=-1) + 1)]
        builder.mapper = ClassMapper(names, class_map, classes)

    used_labels = set()
    for image in images:
        label_file = label_path_for(image)
        used_labels.add(label_file)
        size = builder.probe(label_file if label_file.is_file() else image, image)
        if size is None:
            continue
        boxes, labels = [], []
        for lineno, (cls, (x1, y1, x2, y2)) in _read_labels(label_file, report):
            where = f"line {lineno}"
            if cls >= len(names):
                report.add(label_file, UNKNOWN_CLASS, f"{where}: class index {cls} but {len(names)} names; skipped")
                continue
            label = builder.label(label_file, where, names[cls])
            if label is None:
                continue
            box = builder.box(label_file, where, (x1 * size[0], y1 * size[1], x2 * size[0], y2 * size[1]), *size)
            if box is not None:
                boxes.append(box)
                labels.append(label)
        image_id = image.relative_to(root).with_suffix("").as_posix() if image.is_relative_to(root) else image.stem
        builder.add(image, image_id, size[0], size[1], boxes, labels)
    if split is None and (root / "labels").is_dir() and (root / "images").is_dir():
        for orphan in sorted(set((root / "labels").rglob("*.txt")) - used_labels):
            report.add(orphan, MISSING_IMAGE, "label file without an image; skipped")
    return builder.dataset()

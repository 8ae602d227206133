"""Pascal VOC reader: ``Annotations/<id>.xml``, ``JPEGImages/<id>.<ext>``, ``ImageSets/Main/<split>.txt`` under ROOT.

Coordinates are used as written (no 1-based shift; VOC's ``xmax == width`` convention is kept by
clipping). Boxes marked ``difficult`` or ``truncated`` are kept like any other.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgedet.edge.datasets.builder import SampleBuilder
from edgedet.edge.datasets.class_names import ClassMapper
from edgedet.edge.datasets.image_files import ImageIndex
from edgedet.edge.datasets.report import INVALID_BOX, MALFORMED_FILE, MISSING_ANNOTATION, LoadReport
from edgedet.edge.datasets.sample import Dataset

__all__ = ["read_split_file", "read_voc", "voc_split_path"]


@dataclass
class _Record:
    xml: Path
    image_id: str
    filename: str | None
    size: tuple[int, int] | None
    objects: list[tuple[str, str, tuple[float, float, float, float] | None]]  # (where, name, box or None)


def voc_split_path(root: str | Path, split: str) -> Path:
    """The split list for ``split``: an existing file path as given, else ``ROOT/ImageSets/Main/<split>.txt``.

    Raises ``FileNotFoundError`` naming the file and the splits that do exist.
    """
    as_path = Path(split)
    if as_path.suffix == ".txt" and as_path.is_file():
        return as_path
    path = Path(root) / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        found = sorted(p.stem for p in path.parent.glob("*.txt")) if path.parent.is_dir() else []
        raise FileNotFoundError(f"split file {path} not found (splits there: {found or 'none'})")
    return path


def read_split_file(path: str | Path) -> list[str]:
    """Ids (first token of each line) of a split list; blank lines and ``#`` comments are skipped."""
    ids = []
    for line in Path(path).read_text(encoding="utf-8-sig").splitlines():
        token = line.split("#", 1)[0].strip().split()
        if token:
            ids.append(token[0])
    return ids


def _text(node: ET.Element, tag: str) -> str | None:
    found = node.find(tag)
    return found.text.strip() if found is not None and found.text and found.text.strip() else None


def _parse(xml: Path, image_id: str, report: LoadReport) -> _Record | None:
    try:
        root = ET.parse(xml).getroot()
    except (ET.ParseError, OSError, UnicodeDecodeError) as exc:
        report.add(xml, MALFORMED_FILE, f"XML parse error: {exc}; image skipped")
        return None
    size = None
    try:
        width, height = (int(float(_text(root, f"size/{k}") or 0)) for k in ("width", "height"))
        size = (width, height) if width > 0 and height > 0 else None
    except ValueError:
        report.add(xml, MALFORMED_FILE, "non-numeric <size>; reading the size from the image")
    objects = []
    for i, obj in enumerate(root.iter("object")):
        name = _text(obj, "name")
        where = f"object {i}" + (f" {name!r}" if name else "")
        try:
            box = tuple(float(_text(obj, f"bndbox/{k}") or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError:
            box = None
        if name is None or box is None or obj.find("bndbox") is None:
            missing = "<name>" if name is None else "numeric <bndbox>"
            report.add(xml, INVALID_BOX, f"{where}: no {missing}; skipped")
            continue
        objects.append((where, name, box))
    return _Record(xml, image_id, _text(root, "filename"), size, objects)


def read_voc(
    root: str | Path,
    split: str | None = None,
    *,
    class_map: Mapping[str, str] | None = None,
    classes: Sequence[str] | None = None,
    verify_images: bool = False,
) -> Dataset:
    """Read a Pascal VOC dataset: the ids in ``split`` (a name under ``ImageSets/Main`` or a .txt path),
    or every annotated image when ``split`` is None.

    Images are found by the XML's ``<filename>`` when it exists, else as ``JPEGImages/<id>.<ext>`` with any
    common extension in any letter case. The size comes from ``<size>`` or, when absent or zero, from
    the image. Without ``classes`` the classes are the names found, renamed by ``class_map``, sorted.
    Bad labels are reported in ``Dataset.report`` and skipped; a missing root, ``Annotations`` folder or
    split file raises ``FileNotFoundError``.
    """
    root = Path(root)
    ann_dir = root / "Annotations"
    if not ann_dir.is_dir():
        raise FileNotFoundError(f"VOC dataset {root}: no Annotations folder at {ann_dir}")
    report = LoadReport(source=f"voc:{root}" + (f":{split}" if split else ""))
    if split is None:
        ids = sorted(p.stem for p in ann_dir.glob("*.xml"))
    else:
        split_path = voc_split_path(root, split)
        ids = read_split_file(split_path)
    records = []
    for image_id in ids:
        xml = ann_dir / f"{image_id}.xml"
        if not xml.is_file():
            report.add(xml, MISSING_ANNOTATION, f"id {image_id!r} is in the split but has no annotation; skipped")
            continue
        record = _parse(xml, image_id, report)
        if record is not None:
            records.append(record)

    mapper = ClassMapper({name for r in records for _, name, _ in r.objects}, class_map, classes, sort=True)
    builder = SampleBuilder(report, mapper, verify_images=verify_images)
    images = ImageIndex(root / "JPEGImages")
    for record in records:
        image_path = images.find(record.image_id, record.filename)
        if image_path is None:
            image_path = images.folder / (record.filename or f"{record.image_id}.jpg")
        size = builder.probe(record.xml, image_path, record.size)
        if size is None:
            continue
        boxes, labels = [], []
        for where, name, raw in record.objects:
            label = builder.label(record.xml, where, name)
            box = builder.box(record.xml, where, raw, *size) if label is not None else None
            if box is not None:
                boxes.append(box)
                labels.append(label)
        builder.add(image_path, record.image_id, size[0], size[1], boxes, labels)
    return builder.dataset()

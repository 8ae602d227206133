"""COCO JSON reader: ``images``, ``annotations`` with ``bbox = [x, y, w, h]`` pixels, ``categories``.

Every image listed in the JSON is a sample (those without annotations are backgrounds). Crowd
annotations (``iscrowd = 1``) are reported as ignored and skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgedet.edge.datasets.builder import SampleBuilder
from edgedet.edge.datasets.class_names import ClassMapper
from edgedet.edge.datasets.report import IGNORED_BOX, INVALID_BOX, MALFORMED_FILE, UNKNOWN_CLASS, LoadReport
from edgedet.edge.datasets.sample import Dataset

__all__ = ["read_coco"]


def _load_json(path: Path, report: LoadReport) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        report.add(path, MALFORMED_FILE, f"JSON parse error: {exc}; nothing loaded")
        return None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        report.add(path, MALFORMED_FILE, "expected an object with an 'images' list; nothing loaded")
        return None
    for key in ("annotations", "categories"):
        if not isinstance(data.get(key, []), list):
            report.add(path, MALFORMED_FILE, f"'{key}' is not a list; nothing loaded")
            return None
    return data


def _categories(path: Path, data: dict[str, Any], report: LoadReport) -> dict[Any, str]:
    names: dict[Any, str] = {}
    for i, cat in enumerate(data.get("categories", [])):
        if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str):
            report.add(path, MALFORMED_FILE, f"categories[{i}]: needs an 'id' and a 'name'; skipped")
            continue
        names[cat["id"]] = cat["name"]
    return dict(sorted(names.items(), key=lambda item: (str(type(item[0])), item[0])))


def read_coco(
    annotations: str | Path,
    images: str | Path | None = None,
    *,
    class_map: Mapping[str, str] | None = None,
    classes: Sequence[str] | None = None,
    verify_images: bool = False,
) -> Dataset:
    """Read a COCO-style JSON; image ``file_name``s are relative to ``images`` (default: the JSON's folder).

    Without ``classes`` the class order is the categories sorted by id (after ``class_map``). A JSON that
    cannot be parsed is reported and gives an empty dataset; a missing JSON file raises ``FileNotFoundError``.
    """
    path = Path(annotations)
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotations file {path} not found")
    image_dir = Path(images) if images is not None else path.parent
    if not image_dir.is_dir():
        raise FileNotFoundError(f"COCO image folder {image_dir} not found")
    report = LoadReport(source=f"coco:{path}:{image_dir}")
    data = _load_json(path, report)
    if data is None:
        return Dataset(tuple(classes or ()), [], report)
    categories = _categories(path, data, report)
    builder = SampleBuilder(report, ClassMapper(categories.values(), class_map, classes), verify_images=verify_images)

    by_image: dict[Any, list[tuple[int, dict[str, Any]]]] = {}
    for i, ann in enumerate(data.get("annotations", [])):
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        by_image.setdefault(image_id, []).append((i, ann))

    seen = set()
    for i, info in enumerate(data["images"]):
        if not isinstance(info, dict) or "id" not in info or not isinstance(info.get("file_name"), str):
            report.add(path, MALFORMED_FILE, f"images[{i}]: needs an 'id' and a 'file_name'; skipped")
            continue
        seen.add(info["id"])
        annotated = (info.get("width"), info.get("height"))
        annotated = annotated if all(isinstance(v, int) for v in annotated) else None
        image_path = image_dir / info["file_name"]
        size = builder.probe(path, image_path, annotated)
        if size is None:
            continue
        boxes, labels = [], []
        for j, ann in by_image.get(info["id"], []):
            where = f"annotations[{j}] (image {info['file_name']})"
            label = _label(path, where, ann, categories, builder)
            box = _xywh(ann.get("bbox"))
            if label is not None and box is None:
                report.add(path, INVALID_BOX, f"{where}: bbox {ann.get('bbox')!r} is not [x, y, w, h]; skipped")
                continue
            if label is not None and box is not None:
                box = builder.box(path, where, box, *size)
                if box is not None:
                    boxes.append(box)
                    labels.append(label)
        builder.add(image_path, str(info["id"]), size[0], size[1], boxes, labels)
    for image_id, anns in by_image.items():
        if image_id not in seen:
            report.add(path, MALFORMED_FILE, f"{len(anns)} annotations refer to unknown image_id {image_id!r}; skipped")
    return builder.dataset()


def _label(path: Path, where: str, ann: dict[str, Any], categories: dict[Any, str], builder: SampleBuilder):
    if ann.get("iscrowd", 0):
        builder.report.add(path, IGNORED_BOX, f"{where}: crowd annotation; skipped")
        return None
    name = categories.get(ann.get("category_id"))
    if name is None:
        builder.report.add(path, UNKNOWN_CLASS, f"{where}: category_id {ann.get('category_id')!r} is not a category")
        return None
    return builder.label(path, where, name)


def _xywh(bbox: Any) -> tuple[float, float, float, float] | None:
    if not isinstance(bbox, list | tuple) or len(bbox) != 4:
        return None
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return None
    return x, y, x + w, y + h

"""The CLI's DATA argument: a dataset YAML file or a short form, parsed into a ``DataSpec`` and loaded.

Short forms (no SPLIT: every annotated image)::

    voc:ROOT[:SPLIT]                 Pascal VOC folder; SPLIT names ImageSets/Main/SPLIT.txt
    coco:ANNOTATIONS.json:IMAGE_DIR  COCO JSON and its image folder
    yolo:ROOT[:SPLIT]                YOLO txt folder; SPLIT is a data.yaml key, images/ sub-folder or list file
    wider:GT_TXT:IMAGE_DIR           WIDER FACE ground truth and its image folder
    synthetic:N[:SPLIT]              N generated images (cached), split train / val / trainval

A dataset YAML holds ``format`` plus the keys that format uses::

    format: voc            # voc | coco | yolo | wider | synthetic
    root: faces            # voc, yolo (and synthetic: where to generate; default a cache folder)
    split: train           # voc, yolo, synthetic
    annotations: gt.json   # coco (JSON), wider (ground-truth txt)
    images: images         # coco, wider
    class_map: {with_mask: face, without_mask: face}
    classes: [face]
    num_images: 500        # synthetic; also seed, size: [width, height]

Relative paths in a YAML file are relative to that file. A bare folder path is read as VOC when it has
``Annotations/``, or as YOLO when it has ``images/``, ``labels/``, ``classes.txt`` or ``data.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from edgedet.edge.datasets.class_names import check_class_args
from edgedet.edge.datasets.coco import read_coco
from edgedet.edge.datasets.sample import Dataset
from edgedet.edge.datasets.synthetic import DEFAULT_CLASSES, synthetic_root
from edgedet.edge.datasets.synthetic_scene import SHAPES
from edgedet.edge.datasets.voc import read_voc
from edgedet.edge.datasets.wider import read_wider
from edgedet.edge.datasets.yolo import read_yolo

__all__ = ["FORMATS", "DataSpec", "load_dataset", "parse_spec"]

FORMATS = ("voc", "coco", "yolo", "wider", "synthetic")
_SHORT_FORMS = {
    "voc": "voc:ROOT[:SPLIT]",
    "coco": "coco:ANNOTATIONS.json:IMAGE_DIR",
    "yolo": "yolo:ROOT[:SPLIT]",
    "wider": "wider:GT_TXT:IMAGE_DIR",
    "synthetic": "synthetic:N[:SPLIT]",
}
_REQUIRED = {"voc": {"root"}, "coco": {"annotations"}, "yolo": {"root"}, "wider": {"annotations", "images"}}
_REQUIRED["synthetic"] = {"num_images"}
_ALLOWED = {
    "voc": {"root", "split"},
    "coco": {"annotations", "images"},
    "yolo": {"root", "split"},
    "wider": {"annotations", "images"},
    "synthetic": {"num_images", "root", "split", "seed", "size"},
}
_COMMON = {"format", "class_map", "classes"}
_YAML_KEYS = sorted(_COMMON | set().union(*_ALLOWED.values()))
_FORMS_HELP = "expected a dataset .yaml file or one of: " + ", ".join(_SHORT_FORMS.values())


@dataclass(frozen=True)
class DataSpec:
    """A parsed DATA argument: the format and the fields that format uses (paths already resolved)."""

    format: str
    root: Path | None = None
    split: str | None = None
    annotations: Path | None = None
    images: Path | None = None
    class_map: dict[str, str] | None = None
    classes: tuple[str, ...] | None = None
    num_images: int | None = None
    seed: int = 0
    size: tuple[int, int] = (320, 240)
    source: str = field(default="", compare=False)


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{what}: expected a positive integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"{what}: expected a positive integer, got {value!r}")
    return number


def _short_form(text: str) -> DataSpec:
    fmt, _, rest = text.partition(":")
    parts = rest.split(":")
    form = _SHORT_FORMS[fmt]
    two_paths = fmt in ("coco", "wider")
    if (two_paths and len(parts) != 2) or (not two_paths and len(parts) > 2):
        raise ValueError(f"DATA {text!r}: expected {form} ({len(parts)} ':'-separated parts after '{fmt}:')")
    names = ("ANNOTATIONS.json", "IMAGE_DIR") if fmt == "coco" else ("GT_TXT", "IMAGE_DIR") if fmt == "wider" else None
    names = names or (("N", "SPLIT") if fmt == "synthetic" else ("ROOT", "SPLIT"))
    for name, part in zip(names, parts, strict=False):
        if not part.strip():
            raise ValueError(f"DATA {text!r}: {name} is empty; expected {form}")
    if fmt == "coco":
        if not parts[0].lower().endswith(".json"):
            raise ValueError(f"DATA {text!r}: ANNOTATIONS must be a .json file, got {parts[0]!r}; expected {form}")
        return DataSpec("coco", annotations=Path(parts[0]), images=Path(parts[1]), source=text)
    if fmt == "wider":
        return DataSpec("wider", annotations=Path(parts[0]), images=Path(parts[1]), source=text)
    split = parts[1] if len(parts) == 2 else None
    if fmt == "synthetic":
        return DataSpec("synthetic", num_images=_positive_int(parts[0], f"DATA {text!r}: N"), split=split, source=text)
    return DataSpec(fmt, root=Path(parts[0]), split=split, source=text)


def _yaml_spec(path: Path) -> DataSpec:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"dataset file {path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"dataset file {path}: expected a mapping of keys ({', '.join(_YAML_KEYS)})")
    fmt = data.get("format")
    if fmt not in FORMATS:
        raise ValueError(f"dataset file {path}: key 'format' must be one of {', '.join(FORMATS)}, got {fmt!r}")
    for key in data:
        if key not in _YAML_KEYS:
            raise ValueError(f"dataset file {path}: unknown key {key!r}; expected keys from {', '.join(_YAML_KEYS)}")
        if key not in _COMMON and key not in _ALLOWED[fmt]:
            raise ValueError(
                f"dataset file {path}: key {key!r} is not used by format {fmt!r} (it uses {sorted(_ALLOWED[fmt])})"
            )
    for key in sorted(_REQUIRED[fmt] - set(data)):
        raise ValueError(f"dataset file {path}: format {fmt!r} needs key {key!r}")

    def as_path(key: str) -> Path | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise ValueError(f"dataset file {path}: key {key!r} must be a path string, got {value!r}")
        p = Path(value).expanduser()
        return p if p.is_absolute() else path.parent / p

    split = data.get("split")
    if split is not None and (not isinstance(split, str | int) or isinstance(split, bool) or str(split) == ""):
        raise ValueError(f"dataset file {path}: key 'split' must be a name, got {split!r}")
    try:
        class_map, classes = check_class_args(data.get("class_map"), data.get("classes"))
    except ValueError as exc:
        raise ValueError(f"dataset file {path}: key {exc}") from exc
    size = data.get("size", [320, 240])
    if not isinstance(size, list | tuple) or len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise ValueError(f"dataset file {path}: key 'size' must be [width, height], got {size!r}")
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"dataset file {path}: key 'seed' must be an integer, got {seed!r}")
    num = data.get("num_images")
    return DataSpec(
        format=fmt,
        root=as_path("root"),
        split=None if split is None else str(split),
        annotations=as_path("annotations"),
        images=as_path("images"),
        class_map=class_map or None,
        classes=classes,
        num_images=None if num is None else _positive_int(num, f"dataset file {path}: key 'num_images'"),
        seed=seed,
        size=(int(size[0]), int(size[1])),
        source=str(path),
    )


def _folder_spec(folder: Path) -> DataSpec:
    if (folder / "Annotations").is_dir():
        return DataSpec("voc", root=folder, source=str(folder))
    if any((folder / name).exists() for name in ("images", "labels", "classes.txt", "data.yaml")):
        return DataSpec("yolo", root=folder, source=str(folder))
    raise ValueError(f"DATA {str(folder)!r}: a folder with neither Annotations/ (VOC) nor images/ or labels/ (YOLO)")


def parse_spec(spec: str | Path) -> DataSpec:
    """Parse a DATA argument; ``ValueError`` names the wrong part and what was expected."""
    text = str(spec).strip()
    if not text:
        raise ValueError(f"DATA is empty; {_FORMS_HELP}")
    if text.lower().endswith((".yaml", ".yml")):
        path = Path(text).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"dataset file {path} not found")
        return _yaml_spec(path)
    prefix, sep, _ = text.partition(":")
    if sep and prefix in FORMATS:
        return _short_form(text)
    if Path(text).is_dir():
        return _folder_spec(Path(text))
    if sep and prefix.isidentifier():
        raise ValueError(f"DATA {text!r}: unknown format {prefix!r}; expected one of {', '.join(FORMATS)}")
    raise ValueError(f"DATA {text!r}: not a folder, dataset file or short form; {_FORMS_HELP}")


def load_dataset(
    spec: str | Path | DataSpec,
    class_map: Mapping[str, str] | None = None,
    classes: Sequence[str] | None = None,
    *,
    cache_dir: str | Path | None = None,
    verify_images: bool = False,
) -> Dataset:
    """Load the dataset a DATA argument names. ``class_map`` / ``classes`` given here override the YAML's.

    Synthetic data is generated once into ``cache_dir`` (see ``synthetic_root``), or into the YAML's
    ``root`` (a cache folder too); ``classes`` made only of shape names (``SHAPES``) choose the shapes drawn,
    otherwise circle, square and triangle are drawn.
    """
    parsed = spec if isinstance(spec, DataSpec) else parse_spec(spec)
    class_map, fixed = check_class_args(class_map, classes)
    parsed = replace(parsed, class_map=class_map or parsed.class_map, classes=fixed or parsed.classes)
    kw = {"class_map": parsed.class_map, "classes": parsed.classes, "verify_images": verify_images}
    if parsed.format == "voc":
        return read_voc(parsed.root, parsed.split, **kw)
    if parsed.format == "yolo":
        return read_yolo(parsed.root, parsed.split, **kw)
    if parsed.format == "coco":
        return read_coco(parsed.annotations, parsed.images, **kw)
    if parsed.format == "wider":
        return read_wider(parsed.annotations, parsed.images, **kw)
    shapes = parsed.classes if parsed.classes and set(parsed.classes) <= set(SHAPES) else DEFAULT_CLASSES
    names = parsed.classes or tuple(dict.fromkeys((parsed.class_map or {}).get(s, s) for s in shapes))
    cache = parsed.root if parsed.root is not None else cache_dir
    root = synthetic_root(parsed.num_images, parsed.size, parsed.seed, shapes, cache_dir=cache)
    return read_voc(root, parsed.split, class_map=parsed.class_map, classes=names, verify_images=verify_images)

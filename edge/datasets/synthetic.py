"""The built-in synthetic detection dataset (the default data: nothing to download) and a synthetic video.

``generate_synthetic`` writes a Pascal VOC folder (``JPEGImages/``, ``Annotations/``,
``ImageSets/Main/{train,val,trainval}.txt``, ``classes.txt``) that ``read_voc`` loads. Image ``i`` is
``render_scene(np.random.default_rng((seed, i)), size, classes)``, so the output depends only on the
arguments: the same seed gives byte-identical annotations and identical pixels.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgedet.edge.datasets.synthetic_scene import SHAPES, distinct_colour, render_scene, shape_polygon

__all__ = [
    "DEFAULT_CLASSES",
    "SYNTHETIC_VERSION",
    "FrameTruth",
    "generate_synthetic",
    "render_video",
    "scene_rng",
    "synthetic_root",
]

DEFAULT_CLASSES = ("circle", "square", "triangle")
SYNTHETIC_VERSION = 1  # bump when the drawing changes, so cached datasets are regenerated
_META = "synthetic.json"


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The generator that draws image ``index`` of the dataset with ``seed``."""
    return np.random.default_rng((seed, index))


def _voc_xml(filename: str, width: int, height: int, names: Sequence[str], boxes: np.ndarray) -> str:
    objects = "".join(
        f"  <object>\n    <name>{name}</name>\n    <pose>Unspecified</pose>\n    <truncated>0</truncated>\n"
        f"    <difficult>0</difficult>\n    <bndbox>\n      <xmin>{x1}</xmin>\n      <ymin>{y1}</ymin>\n"
        f"      <xmax>{x2}</xmax>\n      <ymax>{y2}</ymax>\n    </bndbox>\n  </object>\n"
        for name, (x1, y1, x2, y2) in zip(names, boxes.astype(int).tolist(), strict=True)
    )
    return (
        f"<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{filename}</filename>\n"
        f"  <source>\n    <database>edgedet synthetic</database>\n  </source>\n"
        f"  <size>\n    <width>{width}</width>\n    <height>{height}</height>\n    <depth>3</depth>\n  </size>\n"
        f"  <segmented>0</segmented>\n{objects}</annotation>\n"
    )


def _check_args(num_images: int, size: tuple[int, int], classes: Sequence[str], image_format: str) -> None:
    if int(num_images) < 1:
        raise ValueError(f"num_images: expected at least 1, got {num_images}")
    if len(size) != 2 or min(size) < 32:
        raise ValueError(f"size: expected (width, height), each at least 32, got {size}")
    if not classes or len(set(classes)) != len(classes) or not set(classes) <= set(SHAPES):
        raise ValueError(f"classes: expected distinct names from {SHAPES}, got {tuple(classes)}")
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format: expected 'jpg' or 'png', got {image_format!r}")


def generate_synthetic(
    out_dir: str | Path,
    num_images: int,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
    classes: Sequence[str] = DEFAULT_CLASSES,
    *,
    image_format: str = "jpg",
    val_fraction: float = 0.2,
    jpeg_quality: int = 92,
    min_object_size: float = 12.0,
    max_distractors: int = 8,
) -> Path:
    """Write ``num_images`` scenes of ``size = (width, height)`` as a VOC dataset under ``out_dir``; return it.

    ``min_object_size`` (pixels, the smallest drawn object's longer side) and ``max_distractors`` set the
    difficulty (see :func:`render_scene`).

    The last ``round(num_images * val_fraction)`` images form the ``val`` split (at least one when there are
    two or more images), the rest ``train``. Boxes are the exact tight boxes of each object's visible pixels.
    """
    classes = tuple(classes)
    size = (int(size[0]), int(size[1]))
    _check_args(num_images, size, classes, image_format)
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction: expected a value in [0, 1), got {val_fraction}")
    root = Path(out_dir)
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if image_format == "jpg" else []
    ids = []
    for i in range(int(num_images)):
        scene = render_scene(
            scene_rng(seed, i), size, classes, max_distractors=max_distractors, min_object_size=min_object_size
        )
        image_id = f"synth_{i:06d}"
        filename = f"{image_id}.{image_format}"
        ok, encoded = cv2.imencode(f".{image_format}", scene.image, params)
        if not ok:
            raise OSError(f"could not encode {filename}")
        encoded.tofile(str(root / "JPEGImages" / filename))
        names = [classes[label] for label in scene.labels]
        (root / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(filename, *size, names, scene.boxes))
        ids.append(image_id)
    n_val = min(max(round(len(ids) * val_fraction), 1), len(ids) - 1) if len(ids) > 1 and val_fraction > 0 else 0
    splits = {"train": ids[: len(ids) - n_val], "val": ids[len(ids) - n_val :], "trainval": ids}
    for name, members in splits.items():
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{m}\n" for m in members))
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    meta = {"version": SYNTHETIC_VERSION, "num_images": int(num_images), "size": list(size), "seed": int(seed)}
    meta.update({"classes": list(classes), "image_format": image_format, "val_fraction": val_fraction})
    meta.update({"min_object_size": float(min_object_size), "max_distractors": int(max_distractors)})
    (root / _META).write_text(json.dumps(meta, indent=1) + "\n")
    return root


def synthetic_root(
    num_images: int,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
    classes: Sequence[str] = DEFAULT_CLASSES,
    *,
    cache_dir: str | Path | None = None,
) -> Path:
    """Folder of the synthetic dataset with these arguments, generated on first use and then reused.

    ``cache_dir`` defaults to ``$EDGEDET_CACHE/synthetic`` or ``<system temp>/edgedet-synthetic``. The dataset
    is written to a temporary folder and renamed into place, so concurrent callers never see half of one.
    """
    classes = tuple(classes)
    size = (int(size[0]), int(size[1]))
    _check_args(num_images, size, classes, "jpg")
    if cache_dir is None:
        env = os.environ.get("EDGEDET_CACHE")
        cache_dir = Path(env) / "synthetic" if env else Path(tempfile.gettempdir()) / "edgedet-synthetic"
    cache_dir = Path(cache_dir)
    name = f"v{SYNTHETIC_VERSION}-n{num_images}-s{seed}-{size[0]}x{size[1]}-{'-'.join(classes)}"
    root = cache_dir / name
    if (root / _META).is_file():
        return root
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache_dir))
    try:
        generate_synthetic(tmp, num_images, size, seed, classes)
        try:
            tmp.rename(root)
        except OSError:  # another process finished first
            if not (root / _META).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


@dataclass(frozen=True)
class FrameTruth:
    """Ground truth of one video frame: ``[M, 4]`` float32 tight boxes and ``[M]`` int64 labels."""

    boxes: np.ndarray
    labels: np.ndarray


_FOURCC = {".avi": "MJPG", ".mp4": "mp4v"}


def render_video(
    path: str | Path,
    frames: int = 60,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
    *,
    classes: Sequence[str] = DEFAULT_CLASSES,
    num_objects: int = 3,
    fps: float = 15.0,
) -> list[FrameTruth]:
    """Write a video (``.avi``: MJPG, ``.mp4``: mp4v) of solid shapes drifting over a still background.

    Returns each frame's ground truth: the tight boxes of the visible pixels of every object at least
    a third visible (one hidden further under another object is left out of that frame's truth).
    """
    path = Path(path)
    if path.suffix.lower() not in _FOURCC:
        raise ValueError(f"video path must end in {tuple(_FOURCC)}, got {path.name!r}")
    if frames < 1:
        raise ValueError(f"frames: expected at least 1, got {frames}")
    width, height = int(size[0]), int(size[1])
    rng = np.random.default_rng((seed, 1 << 20))
    background = render_scene(rng, (width, height), classes, max_objects=0).image  # clutter, no objects
    background = cv2.GaussianBlur(background, (0, 0), 2.0)
    movers = []
    for _ in range(num_objects):
        label = int(rng.integers(len(classes)))
        radius = rng.uniform(12, 0.2 * min(width, height))
        movers.append(
            {
                "label": label,
                "poly": shape_polygon(classes[label], rng) * radius,
                "pos": rng.uniform([radius, radius], [width - radius, height - radius]),
                "vel": rng.uniform(-4, 4, 2),
                "spin": rng.uniform(-0.05, 0.05),
                "colour": tuple(int(c) for c in distinct_colour(rng, background.mean(axis=(0, 1)))),
            }
        )
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*_FOURCC[path.suffix.lower()]), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {path} with codec {_FOURCC[path.suffix.lower()]}")
    truth = []
    try:
        for t in range(frames):
            frame = background.copy()
            owner = np.full((height, width), -1, np.int32)
            areas = []
            for i, m in enumerate(movers):
                angle = m["spin"] * t
                rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
                poly = np.round((m["poly"] @ rot.T + m["pos"]) * 16).astype(np.int32)
                cv2.fillPoly(frame, [poly], m["colour"], cv2.LINE_8, 4)
                cv2.fillPoly(owner, [poly], i, cv2.LINE_8, 4)
                areas.append(max(float(cv2.contourArea(poly.astype(np.float32) / 16)), 1.0))
                m["pos"] = m["pos"] + m["vel"]
                for axis, limit in enumerate((width, height)):  # bounce off the borders
                    if m["pos"][axis] < 0:
                        m["vel"][axis] = abs(m["vel"][axis])
                    elif m["pos"][axis] > limit:
                        m["vel"][axis] = -abs(m["vel"][axis])
            boxes, labels = [], []
            for i, m in enumerate(movers):
                ys, xs = np.nonzero(owner == i)
                if len(xs) and len(xs) >= areas[i] / 3:
                    boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
                    labels.append(m["label"])
            truth.append(FrameTruth(np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)))
            writer.write(frame)
    finally:
        writer.release()
    return truth

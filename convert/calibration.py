"""Calibration images for int8 quantisation, through exactly the runtime's pre-processing.

``--calib`` is a dataset (anything :func:`edgedet.edge.datasets.spec.load_dataset` reads: ``voc:ROOT:SPLIT``, a
dataset YAML, a VOC / YOLO folder) or a plain folder of images (searched recursively). A fixed-seed
random subset of ``count`` images is taken, so repeated exports calibrate identically.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.datasets.image_files import IMAGE_SUFFIXES, read_image
from edgedet.edge.datasets.sample import Dataset
from edgedet.edge.runtime.preprocess import Preprocessor
from edgedet.edge.runtime.progress import progress

__all__ = ["CalibSource", "calibration_images", "calibration_tensors"]

log = logging.getLogger("edgedet.calibration")

CalibSource = str | os.PathLike[str] | Dataset | Sequence[str | os.PathLike[str]]


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _source_images(calib: CalibSource) -> list[Path]:
    if isinstance(calib, Dataset):
        return [s.image_path for s in calib]
    if isinstance(calib, (list, tuple)):
        return [Path(p) for p in calib]
    text = os.fspath(calib)
    path = Path(text)
    if path.is_dir():
        from edgedet.edge.datasets.spec import load_dataset

        try:  # a VOC / YOLO folder: its annotated images
            return [s.image_path for s in load_dataset(text)]
        except (ValueError, FileNotFoundError):
            images = _folder_images(path)
            if not images:
                raise ValueError(
                    f"calibration folder {path} has no images ({', '.join(IMAGE_SUFFIXES)}, searched recursively)"
                ) from None
            return images
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        return [path]
    from edgedet.edge.datasets.spec import load_dataset

    try:
        dataset = load_dataset(text)
    except FileNotFoundError as exc:
        raise ValueError(f"calibration data {text!r}: {exc}") from exc
    return [s.image_path for s in dataset]


def calibration_images(calib: CalibSource, count: int, seed: int = 0) -> list[Path]:
    """Up to ``count`` image paths from ``calib`` (a fixed-seed random subset when there are more)."""
    if count <= 0:
        raise ValueError(f"calibration image count: expected a positive number, got {count}")
    images = _source_images(calib)
    if not images:
        raise ValueError(f"calibration data {calib!s}: no images")
    if len(images) > count:
        order = np.random.default_rng(seed).permutation(len(images))[:count]
        images = [images[i] for i in sorted(order)]
    elif len(images) < count:
        log.info("calibration: %d images available (%d asked for); using all", len(images), count)
    return images


def calibration_tensors(
    spec: ModelSpec,
    calib: CalibSource,
    count: int = 200,
    layout: str | None = None,
    show_progress: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """``[N, 3, H, W]`` (or ``[N, H, W, 3]`` for ``layout="nhwc"``) float32 model inputs made by
    :class:`~edgedet.edge.runtime.preprocess.Preprocessor` from ``count`` calibration images; unreadable
    ones are skipped."""
    pre = Preprocessor(replace(spec, layout=layout or spec.layout))
    paths = calibration_images(calib, count, seed)
    tensors = []
    for path in progress(paths, len(paths), "calibration images", show_progress):
        try:
            image = read_image(path)
        except OSError as exc:
            log.warning("calibration: %s skipped (%s)", path, exc)
            continue
        tensors.append(pre(image)[0])
    if not tensors:
        raise ValueError(f"calibration data {calib!s}: none of its {len(paths)} images could be read")
    return np.concatenate(tensors, axis=0)

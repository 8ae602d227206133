"""Torch side of the data path: dataset samples -> augmented, normalised tensors + training targets.

Decoding, augmentation and target building are numpy (they run in DataLoader worker processes, off the
training loop's critical path). Randomness is a pure function of ``(seed, epoch, index)``, so a resumed
run sees exactly the batches it would have seen. :class:`EpochSampler` hands the epoch to the workers
inside each key, so the workers can stay alive between epochs (no per-epoch worker start-up).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import Sampler

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.datasets.sample import Dataset
from edgedet.edge.runtime.preprocess import Preprocessor
from edgedet.training.centernet_targets import centernet_targets
from edgedet.training.ssd_targets import ssd_targets

__all__ = ["DetectionDataset", "EpochSampler", "collate"]

Transform = Callable[[np.ndarray, np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, ...]]

MIN_BOX_SIDE = 1.0  # px: boxes an augmentation squeezed thinner than this are dropped (not encodable)


class DetectionDataset(TorchDataset):
    """Yields ``(image [3, H, W] float32, targets dict)``; SSD targets ``loc [N, 4]``, ``conf [N]``;
    CenterNet targets as :func:`edgedet.training.centernet_targets.centernet_targets`."""

    def __init__(
        self,
        dataset: Dataset,
        spec: ModelSpec,
        transform: Transform,
        seed: int = 0,
        match_iou: float = 0.5,
        min_overlap: float = 0.7,
        max_objects: int = 128,
        regression_radius: int = 0,
    ) -> None:
        self.dataset = dataset
        self.match_iou = match_iou
        self.min_overlap = min_overlap
        self.max_objects = max_objects
        self.regression_radius = regression_radius
        self.spec = spec
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.preprocess = Preprocessor(spec)
        self.priors = spec.priors.generate(spec.input_size) if spec.head == "ssd" else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``key`` is an index (augmented for the epoch of :meth:`set_epoch`) or ``(epoch, index)``."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        sample = self.dataset[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        image, boxes, labels = self.transform(sample.load_image(), sample.boxes, sample.labels, rng)[:3]
        h, w = image.shape[:2]
        if (w, h) != self.spec.input_size:
            raise ValueError(
                f"{sample.image_path}: the transform produced a {w}x{h} image, "
                f"the model takes {self.spec.input_width}x{self.spec.input_height}"
            )
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        keep = np.all(boxes[:, 2:] - boxes[:, :2] >= MIN_BOX_SIDE, axis=1)
        boxes, labels = boxes[keep], labels[keep]
        tensor, _ = self.preprocess(image)
        try:
            targets = self.targets(boxes, labels)
        except ValueError as exc:
            raise ValueError(f"{sample.image_path}: {exc}") from exc
        return torch.from_numpy(np.ascontiguousarray(tensor[0])), targets

    def targets(self, boxes: np.ndarray, labels: np.ndarray) -> dict[str, torch.Tensor]:
        spec = self.spec
        if spec.head == "ssd":
            assert spec.priors is not None and self.priors is not None
            loc, conf = ssd_targets(
                boxes,
                labels,
                spec.input_size,
                self.priors,
                iou_threshold=self.match_iou,
                center_variance=spec.priors.center_variance,
                size_variance=spec.priors.size_variance,
            )
            return {"loc": torch.from_numpy(loc), "conf": torch.from_numpy(conf)}
        t = centernet_targets(
            boxes,
            labels,
            spec.input_size,
            spec.num_classes,
            spec.stride,
            min_overlap=self.min_overlap,
            max_objects=self.max_objects,
            regression_radius=self.regression_radius,
        )
        return {k: torch.from_numpy(v) for k, v in t.items()}


class EpochSampler(Sampler):
    """Wraps an index sampler and yields ``(epoch, index)`` keys for :class:`DetectionDataset`.

    The epoch travels with each key, so persistent DataLoader workers (whose dataset copies never see a
    later :meth:`DetectionDataset.set_epoch`) still augment with the right epoch's randomness.
    """

    def __init__(self, base: Sampler) -> None:
        self.base = base
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, int(i)) for i in self.base)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]


def collate(batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[torch.Tensor, dict[str, Any]]:
    images = torch.stack([b[0] for b in batch])
    keys = batch[0][1].keys()
    return images, {k: torch.stack([b[1][k] for b in batch]) for k in keys}

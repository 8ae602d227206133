"""Small helpers shared by tests (reference implementations and random cases)."""

from __future__ import annotations

import numpy as np


def brute_iou(a, b) -> float:
    """IoU of two corner boxes, written out plainly."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def clustered_boxes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` boxes jittered around a few centres (so they overlap a lot) with distinct scores."""
    centres = rng.uniform(20, 80, (max(1, n // 6 + 1), 2))
    c = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 4, (n, 2))
    wh = rng.uniform(8, 30, (n, 2))
    boxes = np.concatenate([c - wh / 2, c + wh / 2], axis=1)
    return boxes, rng.permutation(n) / max(n, 1) + rng.uniform(0, 1e-3, n)

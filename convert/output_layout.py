"""Pairing a converted model's outputs with the reference ones, whatever the converter renamed or
transposed (onnx2tf writes ``Identity``, ``PartitionedCall:0``, ... and NHWC maps)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["match_outputs", "to_layout_of"]


def to_layout_of(x: np.ndarray, like: np.ndarray) -> np.ndarray | None:
    """``x`` in the layout of ``like``: as it is when the shapes are equal, NHWC -> NCHW when that makes
    them equal; ``None`` when neither does."""
    x, like = np.asarray(x), np.asarray(like)
    if x.shape == like.shape:
        return x
    if x.ndim == 4 and like.ndim == 4 and x.transpose(0, 3, 1, 2).shape == like.shape:
        return x.transpose(0, 3, 1, 2)
    return None


def match_outputs(reference: Mapping[str, np.ndarray], converted: Mapping[str, np.ndarray]) -> dict[str, str]:
    """Reference output name -> converted output name: each reference output is paired with the
    converted output of compatible shape (:func:`to_layout_of`) that is numerically closest."""
    pairs = []
    for ref_name, ref in reference.items():
        ref = np.asarray(ref, dtype=np.float64)
        for name, value in converted.items():
            same = to_layout_of(value, ref)
            if same is not None:
                pairs.append((float(np.mean(np.abs(same - ref))), ref_name, name))
    mapping: dict[str, str] = {}
    for _, ref_name, name in sorted(pairs):
        if ref_name not in mapping and name not in mapping.values():
            mapping[ref_name] = name
    missing = [n for n in reference if n not in mapping]
    if missing:
        shapes = {n: list(np.shape(v)) for n, v in converted.items()}
        raise ValueError(f"converted model: no output matches {missing}; its outputs are {shapes}")
    return mapping

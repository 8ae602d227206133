"""Affine int8/uint8 quantisation of tensors: TFLite's per-tensor or per-axis scale and zero point."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["QuantParams", "dequantize", "quantize"]


@dataclass(frozen=True)
class QuantParams:
    """Affine quantisation ``real = scale * (q - zero_point)``, per tensor or along ``axis``."""

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int = 0

    @classmethod
    def from_details(cls, details: dict[str, Any]) -> QuantParams | None:
        """From a TFLite tensor's details; ``None`` for a float (unquantised) tensor."""
        qp = details.get("quantization_parameters") or {}
        scales = np.asarray(qp.get("scales", []), dtype=np.float32)
        zero_points = np.asarray(qp.get("zero_points", []), dtype=np.int64)
        if scales.size == 0:
            scale, zp = details.get("quantization", (0.0, 0))
            if not scale:
                return None
            scales, zero_points = np.array([scale], np.float32), np.array([zp], np.int64)
        if zero_points.size == 0:
            zero_points = np.zeros_like(scales, dtype=np.int64)
        return cls(scales, zero_points, int(qp.get("quantized_dimension", 0)))

    def _broadcast(self, values: np.ndarray, ndim: int) -> np.ndarray:
        if values.size == 1:
            return values.reshape(())
        shape = [1] * ndim
        shape[self.axis] = values.size
        return values.reshape(shape)


def quantize(x: np.ndarray, params: QuantParams, dtype: np.dtype | type) -> np.ndarray:
    """Float -> integer ``dtype``: ``round(x / scale) + zero_point`` (half away from zero), saturated."""
    info = np.iinfo(dtype)
    v = np.asarray(x, dtype=np.float32) / params._broadcast(params.scale, np.ndim(x))
    q = np.rint(v)  # vectorised; ties go to even here, so exact halves are fixed up below
    ties = np.abs(v - q) == np.float32(0.5)
    if ties.any():
        q[ties] = v[ties] + np.copysign(np.float32(0.5), v[ties])
    q += params._broadcast(params.zero_point, np.ndim(x)).astype(np.float32)
    return np.clip(q, info.min, info.max, out=q).astype(dtype)


def dequantize(q: np.ndarray, params: QuantParams) -> np.ndarray:
    """Integer -> float32: ``scale * (q - zero_point)``."""
    zp = params._broadcast(params.zero_point, np.ndim(q))
    scale = params._broadcast(params.scale, np.ndim(q))
    q = np.asarray(q)
    if q.dtype.kind in "iu" and q.dtype.itemsize <= 2 and np.abs(zp).max() <= 1 << 16:
        # q - zero_point is an integer below 2**18: exact in float32, and its product with a float32 scale is
        # exact in float64, so one float32 multiplication rounds it exactly as the float64 route below does
        out = np.subtract(q, zp.astype(np.float32), dtype=np.float32)
        out *= scale
        return out
    return ((np.asarray(q, dtype=np.float32) - zp) * scale).astype(np.float32)

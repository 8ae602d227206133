"""CenterNet heatmap targets: CornerNet's gaussian radius, the unnormalised 2-D gaussian, and drawing.

The radius is the largest ``r`` such that a box whose corners each move by up to ``r`` keeps IoU >= t
with the original, taken as the minimum over the seed's three cases (the CornerNet-correct roots,
dividing by ``2a``). The seed's worked example: ``(h, w) = (116, 62)``, ``t = 0.3`` gives
``r1 = 25.373`` (one corner in, one out), ``r2 = 17.636`` (both in), ``r3 = 34.085`` (both out):
radius ``int(17.636) = 17``.

Where we differ from the seed's snippet: it calls ``draw_gaussian(..., k=radius)``, passing the radius
as the peak value; here the radius is the radius and the peak is 1. ``sigma = diameter / 6`` as in the
snippet (the overview's ``r / 3`` differs by half a pixel). CenterNet's default overlap is 0.7; the
CornerNet example uses 0.3.
"""

from __future__ import annotations

import numpy as np

__all__ = ["draw_gaussian", "gaussian2d", "gaussian_radius", "gaussian_radius_roots"]


def gaussian_radius_roots(height, width, min_overlap: float = 0.7) -> tuple:
    """The three candidate radii ``(r1, r2, r3)`` of the seed, element-wise over arrays of sizes."""
    if not 0 < min_overlap < 1:
        raise ValueError(f"min_overlap: expected 0 < t < 1, got {min_overlap}")
    h = np.asarray(height, dtype=np.float64)
    w = np.asarray(width, dtype=np.float64)
    if np.any(h < 0) or np.any(w < 0) or not (np.all(np.isfinite(h)) and np.all(np.isfinite(w))):
        raise ValueError(f"gaussian_radius: sizes must be finite and >= 0, got h={height}, w={width}")
    t = min_overlap
    # one corner inside, one outside: r^2 - (h+w) r + (1-t) h w / (1+t) = 0
    b1 = h + w
    c1 = w * h * (1 - t) / (1 + t)
    r1 = (b1 - np.sqrt(b1**2 - 4 * c1)) / 2
    # both corners inside: 4 r^2 - 2 (h+w) r + (1-t) h w = 0
    b2 = 2 * (h + w)
    c2 = (1 - t) * w * h
    r2 = (b2 - np.sqrt(b2**2 - 16 * c2)) / 8
    # both corners outside: 4 t r^2 + 2 t (h+w) r + (t-1) h w = 0
    a3 = 4 * t
    b3 = -2 * t * (h + w)
    c3 = (t - 1) * w * h
    r3 = (b3 + np.sqrt(b3**2 - 4 * a3 * c3)) / (2 * a3)
    return r1, r2, r3


def gaussian_radius(height, width, min_overlap: float = 0.7):
    """``min(r1, r2, r3)`` (a float, or an array for array input); callers take ``max(0, int(r))``."""
    r = np.minimum.reduce(gaussian_radius_roots(height, width, min_overlap))
    return float(r) if np.ndim(r) == 0 else r


def gaussian2d(shape: tuple[int, int], sigma: float = 1.0) -> np.ndarray:
    """Unnormalised gaussian of ``shape`` centred in the middle; values below eps * max are zeroed."""
    m, n = [(s - 1.0) / 2.0 for s in shape]
    y, x = np.ogrid[-m : m + 1, -n : n + 1]
    g = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    g[g < np.finfo(g.dtype).eps * g.max()] = 0
    return g


def draw_gaussian(heatmap: np.ndarray, center: tuple[int, int], radius: int, k: float = 1.0) -> np.ndarray:
    """Draw a gaussian of ``radius`` (sigma = diameter / 6) at integer ``center (x, y)`` into ``heatmap``
    in place, element-wise max with what is there, clipped at the borders. Returns ``heatmap``.
    """
    radius = int(radius)
    if radius < 0:
        raise ValueError(f"draw_gaussian: radius must be >= 0, got {radius}")
    height, width = heatmap.shape[:2]
    x, y = int(center[0]), int(center[1])
    if not (0 <= x < width and 0 <= y < height):
        raise ValueError(f"draw_gaussian: centre ({x}, {y}) outside the {width}x{height} heatmap")
    diameter = 2 * radius + 1
    g = gaussian2d((diameter, diameter), sigma=diameter / 6)
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    region = heatmap[y - top : y + bottom, x - left : x + right]
    patch = g[radius - top : radius + bottom, radius - left : radius + right]
    np.maximum(region, patch * k, out=region)
    return heatmap

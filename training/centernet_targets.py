"""CenterNet training targets for one image (numpy, so it runs in DataLoader workers).

For a box with centre ``c`` (input pixels) and output stride ``R``:

* ``p = c / R`` is the centre on the output map, ``p~ = floor(p)`` its cell (clipped inside the map);
* ``offset = p - p~`` and ``size = (w, h) / R``, both in feature-map units, channel order ``(x, y)`` and
  ``(w, h)`` as :func:`edgedet.edge.core.heatmap_decode.decode_heatmap` reads them;
* a gaussian of radius ``max(0, int(gaussian_radius(h / R, w / R, min_overlap)))`` is drawn at ``p~`` on
  the box's class channel with :func:`edgedet.edge.core.gaussian.draw_gaussian` (element-wise max where objects
  overlap), so the heatmap is exactly 1 at every centre.

Regression samples (``regression_radius = r``): with ``r = 0`` (the paper) size and offset are trained at
the centre cell only. With ``r >= 1`` they are also trained at the cells up to ``r`` away (a
``(2r + 1)^2`` patch), each with its own offset ``p - cell`` (so ``cell + offset`` is still ``p``) and the
box's size, weighted by the object's own gaussian at that cell (``exp(-d^2 / 2 sigma^2)``, ``sigma =
(2 radius + 1) / 6`` as drawn on the heatmap). Big objects get many samples (faster convergence from
scratch, and a peak one cell off still reads a trained size), tiny ones (radius 0) effectively none. A cell
claimed by several objects goes to the highest weight; centre cells are never taken by a neighbour.

A box whose centre lies outside the input (possible after augmentation) gets the nearest border cell and
an offset outside ``[0, 1)``, so ``p~ + offset`` is still ``p`` and decoding still gives the box back.
The output map is ``ceil(size / R)`` per axis, what a chain of stride-2, padding-1 convolutions gives.
"""

from __future__ import annotations

import numpy as np

from edgedet.edge.core.boxes import as_boxes
from edgedet.edge.core.gaussian import draw_gaussian, gaussian_radius
from edgedet.edge.core.priors import feature_map_sizes

__all__ = ["centernet_targets"]

DEFAULT_MAX_OBJECTS = 128
MIN_NEIGHBOUR_WEIGHT = 0.05  # neighbour cells whose gaussian weight is below this are not trained


def centernet_targets(
    boxes_px: np.ndarray,
    labels: np.ndarray,
    input_size: tuple[int, int],
    num_classes: int,
    stride: int = 4,
    min_overlap: float = 0.7,
    max_objects: int = DEFAULT_MAX_OBJECTS,
    regression_radius: int = 0,
) -> dict[str, np.ndarray]:
    """Targets for corner-form pixel ``boxes_px [M, 4]`` with 0-based ``labels [M]`` in an input
    ``(width, height)``.

    Returns a dict of fixed-shape arrays (so a batch is a plain stack), with ``K = max_objects * (2r + 1)^2``
    regression slots: ``heatmap [C, H', W']`` float32, ``size [K, 2]`` and ``offset [K, 2]`` float32,
    ``index [K]`` int64 (``y * W' + x``) and ``mask [K]`` float32, the slot's loss weight: 1 for the ``M``
    centres (the first ``M`` slots, in box order), the gaussian weight for neighbour cells, 0 for padding.

    Raises ``ValueError`` when ``M > max_objects`` (raise ``max_objects``; nothing is dropped silently),
    for a box with zero or negative width or height (the data layer drops those before they get here),
    and for labels outside ``[0, num_classes)``.
    """
    if not isinstance(regression_radius, int | np.integer) or regression_radius < 0:
        raise ValueError(f"centernet_targets: regression_radius must be an integer >= 0, got {regression_radius!r}")
    if num_classes < 1:
        raise ValueError(f"centernet_targets: num_classes must be >= 1, got {num_classes}")
    (out_w, out_h) = feature_map_sizes(input_size, [stride])[0]
    boxes = as_boxes(boxes_px, "boxes_px").reshape(-1, 4).astype(np.float64)
    labels = np.asarray(labels).reshape(-1)
    m = len(boxes)
    if labels.shape != (m,):
        raise ValueError(f"centernet_targets: {m} boxes but labels has shape {list(labels.shape)}")
    if m and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"centernet_targets: labels must be integers in [0, {num_classes}), got {labels!r}")
    if m > max_objects:
        raise ValueError(
            f"centernet_targets: {m} objects but max_objects={max_objects}; raise max_objects "
            "(objects are never dropped silently)"
        )
    wh = (boxes[:, 2:] - boxes[:, :2]) / stride
    empty = np.flatnonzero(np.any(wh <= 0, axis=1))
    if empty.size:
        raise ValueError(f"centernet_targets: boxes_px[{int(empty[0])}] is empty: {boxes[empty[0]].tolist()}")

    centers = (boxes[:, :2] + boxes[:, 2:]) / 2 / stride
    cells = np.floor(centers).astype(np.int64)
    cells[:, 0] = np.clip(cells[:, 0], 0, out_w - 1)
    cells[:, 1] = np.clip(cells[:, 1], 0, out_h - 1)
    radii = np.maximum(0, np.asarray(gaussian_radius(wh[:, 1], wh[:, 0], min_overlap)).astype(np.int64))

    heatmap = np.zeros((num_classes, out_h, out_w), dtype=np.float32)
    for (x, y), r, c in zip(cells, radii.reshape(-1), labels, strict=True):
        draw_gaussian(heatmap[c], (int(x), int(y)), int(r))

    cell_x, cell_y, weight, owner = _regression_cells(cells, radii.reshape(-1), regression_radius, out_w, out_h)
    slots = max_objects * (2 * regression_radius + 1) ** 2
    size = np.zeros((slots, 2), dtype=np.float32)
    offset = np.zeros((slots, 2), dtype=np.float32)
    index = np.zeros(slots, dtype=np.int64)
    mask = np.zeros(slots, dtype=np.float32)
    n = len(owner)
    size[:n] = wh[owner]
    offset[:n] = centers[owner] - np.stack([cell_x, cell_y], axis=1)
    index[:n] = cell_y * out_w + cell_x
    mask[:n] = weight
    return {"heatmap": heatmap, "size": size, "offset": offset, "index": index, "mask": mask}


def _regression_cells(
    cells: np.ndarray, radii: np.ndarray, r: int, out_w: int, out_h: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, weight, object)`` of every regression sample: the ``M`` centre cells first (weight 1),
    then the neighbour cells within ``r`` with a positive gaussian weight, one object per cell (highest
    weight wins, centre cells excluded)."""
    m = len(cells)
    owner = np.arange(m)
    if r == 0 or m == 0:
        return cells[:, 0], cells[:, 1], np.ones(m), owner
    d = np.arange(-r, r + 1)
    dx, dy = (a.reshape(-1) for a in np.meshgrid(d, d))
    ring = (dx != 0) | (dy != 0)
    dx, dy = dx[ring], dy[ring]
    sigma = (2 * radii + 1) / 6.0  # as draw_gaussian
    nx = cells[:, :1] + dx  # [M, P]
    ny = cells[:, 1:] + dy
    w = np.exp(-(dx**2 + dy**2) / (2 * sigma[:, None] ** 2))
    obj = np.broadcast_to(owner[:, None], nx.shape)
    flat = ny * out_w + nx
    centre_cells = cells[:, 1] * out_w + cells[:, 0]
    ok = (nx >= 0) & (nx < out_w) & (ny >= 0) & (ny < out_h) & (w >= MIN_NEIGHBOUR_WEIGHT)
    ok &= ~np.isin(flat, centre_cells)
    flat, w, obj, nx, ny = flat[ok], w[ok], obj[ok], nx[ok], ny[ok]
    order = np.lexsort((obj, -w))  # highest weight first; ties to the earlier object
    _, first = np.unique(flat[order], return_index=True)
    keep = np.sort(order[first])
    return (
        np.concatenate([cells[:, 0], nx[keep]]),
        np.concatenate([cells[:, 1], ny[keep]]),
        np.concatenate([np.ones(m), w[keep]]),
        np.concatenate([owner, obj[keep]]),
    )

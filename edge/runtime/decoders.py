"""Backend outputs -> ``(boxes [K, 4] in model-input pixels, scores [K], class_ids [K])``, best first.

The decoders only find the right output tensors and call the math core
(:func:`edgedet.edge.core.box_coder.decode_to_corners`, :func:`edgedet.edge.core.nms.multiclass_nms`,
:func:`edgedet.edge.core.heatmap_decode.decode_heatmap`). Converters rename and reorder outputs (onnx2tf writes
``Identity``, ``Identity_1``, ``PartitionedCall:0``), so each output's *role* is found by this rule,
first match wins:

1. **Explicit mapping** — ``spec.extra["outputs"]``, role -> output name, e.g.
   ``{"scores": "Identity_1", "locations": "Identity"}``. Roles: SSD ``scores``, ``locations`` (raw
   regression), ``boxes`` (decoded normalised corners); CenterNet ``heatmap``, ``size``, ``offset``,
   ``peaks``.
2. **Known names** (case-insensitive, a ``:0`` suffix ignored): see ``SSD_NAMES`` / ``CENTERNET_NAMES``.
3. **Shape**, for what is left. SSD (batch dimension dropped): ``[N, C+1]`` is ``scores``, ``[N, 4]`` the
   box regression; when ``C + 1 == 4`` the tensor whose rows sum to 1 (softmax) is ``scores``.
   CenterNet (NCHW or NHWC, told apart by where the ``H/stride x W/stride`` grid sits): ``C`` channels
   is ``heatmap`` (of two such, the one with more zeros is ``peaks``), 2 channels ``size`` and
   ``offset``; two unnamed 2-channel maps are told apart by magnitude — ``size`` (objects in
   feature-map cells) has the larger median ``|value|``, ``offset`` lies in [0, 1).

An SSD ``[N, 4]`` output found by shape, or *named* ``boxes``, is taken as decoded corner boxes only if
every row has ``x2 > x1`` and ``y2 > y1`` — always true of decoded boxes (their sizes are ``exp(.) > 0``),
practically never of raw regressions over thousands of priors — else as raw ``locations``. (The
published ``version-slim-320_without_postprocessing.onnx`` names its raw regressions ``boxes``.) Only
an explicit mapping or the name ``locations`` skips that check. Roles are resolved on the first call
and reused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from edgedet.edge.core.box_coder import decode_to_corners
from edgedet.edge.core.heatmap_decode import decode_heatmap
from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.core.nms import batched_nms, multiclass_nms, one_class_nms

__all__ = ["CENTERNET_NAMES", "SSD_NAMES", "CenterNetDecoder", "Decoded", "SSDDecoder", "make_decoder"]

Decoded = tuple[np.ndarray, np.ndarray, np.ndarray]

SSD_NAMES: dict[str, tuple[str, ...]] = {
    "scores": ("scores", "confidences", "confidence", "conf"),
    "locations": ("locations", "location", "loc", "regression"),
    "boxes": ("boxes", "bboxes"),
}
CENTERNET_NAMES: dict[str, tuple[str, ...]] = {
    "heatmap": ("heatmap", "heat", "hm"),
    "size": ("size", "wh"),
    "offset": ("offset", "reg"),
    "peaks": ("peaks",),
}


def _describe(outputs: Mapping[str, np.ndarray]) -> str:
    return ", ".join(f"{name!r} {list(np.shape(v))}" for name, v in outputs.items())


def _by_name(
    outputs: Mapping[str, np.ndarray], names: Mapping[str, tuple[str, ...]], explicit: Mapping[str, str]
) -> dict[str, str]:
    """Roles found by the explicit mapping, then by known names: role -> output name."""
    roles: dict[str, str] = {}
    for role, name in explicit.items():
        if role not in names:
            raise ValueError(f"spec.extra['outputs']: unknown role {role!r}; expected some of {sorted(names)}")
        if name not in outputs:
            raise ValueError(
                f"spec.extra['outputs'][{role!r}] = {name!r} is not an output; outputs: {_describe(outputs)}"
            )
        roles[role] = name
    taken = set(roles.values())
    for name in outputs:
        key = name.lower().split(":")[0]
        for role, known in names.items():
            if role not in roles and name not in taken and key in known:
                roles[role] = name
                taken.add(name)
    return roles


def _explicit(spec: ModelSpec) -> Mapping[str, str]:
    mapping = spec.extra.get("outputs", {}) if isinstance(spec.extra, Mapping) else {}
    if not isinstance(mapping, Mapping):
        raise ValueError(f"spec.extra['outputs']: expected a mapping role -> output name, got {mapping!r}")
    return mapping


def _drop_batch(x: np.ndarray, ndim: int, name: str) -> np.ndarray:
    if x.ndim == ndim + 1:
        if x.shape[0] != 1:
            raise ValueError(f"output {name!r}: expected batch size 1, got shape {list(x.shape)}")
        return x[0]
    if x.ndim != ndim:
        raise ValueError(f"output {name!r}: expected {ndim} dimensions (plus batch), got shape {list(x.shape)}")
    return x


# --------------------------------------------------------------------------- SSD


class SSDDecoder:
    """SSD head: softmax ``scores [N, C+1]`` (background column 0) and raw ``locations`` or decoded
    ``boxes [N, 4]`` -> multi-class hard NMS with the spec's thresholds."""

    def __init__(self, spec: ModelSpec, priors: np.ndarray) -> None:
        if spec.head != "ssd" or spec.priors is None:
            raise ValueError(f"SSDDecoder needs an SSD spec with priors, got head {spec.head!r}")
        self.spec = spec
        self.priors = np.asarray(priors, dtype=np.float32)
        self._prior_xy = np.ascontiguousarray(self.priors[:, :2])
        self._prior_wh = np.ascontiguousarray(self.priors[:, 2:])
        self._scale = np.array([spec.input_width, spec.input_height] * 2, dtype=np.float32)
        self._roles: tuple[str, str, str] | None = None  # (scores name, box name, "locations" | "boxes")

    def _decode(self, regress: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """:func:`edgedet.edge.core.box_coder.decode_to_corners` of the given rows: for float32 regressions the same
        float32 operations in the same order (``w / 2`` as ``w * 0.5``: the same number), in place."""
        assert self.spec.priors is not None
        cv, sv = self.spec.priors.center_variance, self.spec.priors.size_variance
        if regress.dtype != np.float32:
            return decode_to_corners(regress[rows], self.priors[rows], cv, sv)
        loc = regress[rows]
        prior_wh = self._prior_wh[rows]
        centre = loc[:, :2] * cv
        centre *= prior_wh
        centre += self._prior_xy[rows]
        half = loc[:, 2:] * sv
        np.exp(half, out=half)
        half *= prior_wh
        half *= 0.5
        boxes = np.empty_like(loc)
        np.subtract(centre, half, out=boxes[:, :2])
        np.add(centre, half, out=boxes[:, 2:])
        return boxes

    def resolve(self, outputs: Mapping[str, np.ndarray]) -> tuple[str, str, str]:
        """``(scores output, box output, "locations" or "boxes")`` by the module's rule."""
        if self._roles is None:
            self._roles = self._resolve(outputs)
        return self._roles

    def _resolve(self, outputs: Mapping[str, np.ndarray]) -> tuple[str, str, str]:
        explicit = _explicit(self.spec)
        roles = _by_name(outputs, SSD_NAMES, explicit)
        if "locations" in roles and "boxes" in roles:
            raise ValueError(
                f"SSD outputs: both raw 'locations' and decoded 'boxes' given; outputs: {_describe(outputs)}"
            )
        n_cls = self.spec.num_classes + 1
        rest = {  # unclaimed [1, N, K] / [N, K] outputs; anything else is not an SSD head output
            n: _drop_batch(np.asarray(v), 2, n)
            for n, v in outputs.items()
            if n not in roles.values() and (np.ndim(v) == 2 or (np.ndim(v) == 3 and np.shape(v)[0] == 1))
        }
        if "scores" not in roles:
            cands = [n for n, v in rest.items() if v.shape[-1] == n_cls]
            if len(cands) > 1:  # C + 1 == 4: the softmax rows sum to 1
                cands = [n for n in cands if np.allclose(rest[n].sum(-1), 1.0, atol=1e-3)]
            if len(cands) != 1:
                raise ValueError(
                    f"SSD outputs: cannot tell which is the scores [N, {n_cls}]; outputs: {_describe(outputs)} "
                    "(name them in spec.extra['outputs'])"
                )
            roles["scores"] = cands[0]
            rest.pop(cands[0])
        box_role = "locations" if "locations" in roles else "boxes" if "boxes" in roles else None
        if box_role is None:
            cands = [n for n, v in rest.items() if v.shape[-1] == 4]
            if len(cands) != 1:
                raise ValueError(
                    f"SSD outputs: cannot tell which is the box regression [N, 4]; outputs: {_describe(outputs)} "
                    "(name them in spec.extra['outputs'])"
                )
            roles["boxes"], box_role = cands[0], "boxes"
        box_name = roles[box_role]
        if box_role == "boxes" and "boxes" not in explicit:
            b = _drop_batch(np.asarray(outputs[box_name]), 2, box_name)
            if not (np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])):
                box_role = "locations"
        return roles["scores"], box_name, box_role

    def __call__(self, outputs: Mapping[str, np.ndarray]) -> Decoded:
        scores_name, box_name, box_role = self.resolve(outputs)
        scores = _drop_batch(np.asarray(outputs[scores_name]), 2, scores_name)
        regress = _drop_batch(np.asarray(outputs[box_name]), 2, box_name)
        if scores.shape != (len(regress), self.spec.num_classes + 1):
            raise ValueError(
                f"SSD outputs: scores {list(scores.shape)} and boxes {list(regress.shape)} do not fit "
                f"{self.spec.num_classes} classes + background"
            )
        if box_role == "locations" and len(regress) != len(self.priors):
            raise ValueError(
                f"SSD outputs: {len(regress)} box regressions but {len(self.priors)} priors for input "
                f"{self.spec.input_width}x{self.spec.input_height}; is the spec's input size or prior config wrong?"
            )
        # Only rows that can pass the threshold are decoded; NMS sees exactly the same candidates.
        spec = self.spec
        if scores.shape[1] == 2:  # one class: its candidates straight to NMS
            column = scores[:, 1]
            rows = (column > spec.score_threshold).nonzero()[0]
            boxes = self._decode(regress, rows) if box_role == "locations" else regress[rows]
            cand = column[rows]
            keep = one_class_nms(boxes, cand, spec.iou_threshold, spec.top_k, spec.max_candidates)
            kept_boxes, kept_scores = boxes[keep] * self._scale, cand[keep]
            if kept_boxes.dtype != np.float32:
                kept_boxes = kept_boxes.astype(np.float32)
            if kept_scores.dtype != np.float32:
                kept_scores = kept_scores.astype(np.float32)
            return kept_boxes, kept_scores, np.zeros(len(keep), dtype=np.int64)
        obj = scores[:, 1:]
        rows = np.flatnonzero((obj > spec.score_threshold).any(axis=1))
        boxes = self._decode(regress, rows) if box_role == "locations" else regress[rows]
        boxes, kept, cls = multiclass_nms(
            boxes,
            obj[rows],
            self.spec.score_threshold,
            self.spec.iou_threshold,
            top_k=self.spec.top_k,
            max_candidates=self.spec.max_candidates,
        )
        return (boxes * self._scale).astype(np.float32), kept, cls


# --------------------------------------------------------------------------- CenterNet


class CenterNetDecoder:
    """CenterNet head: ``heatmap [C, H, W]`` (or NHWC, or a ready ``peaks`` map), ``size`` and
    ``offset [2, H, W]`` -> top-K peaks, then class-aware NMS at ``spec.iou_threshold`` (1 = none),
    boxes in model-input pixels."""

    def __init__(self, spec: ModelSpec) -> None:
        if spec.head != "centernet":
            raise ValueError(f"CenterNetDecoder needs a CenterNet spec, got head {spec.head!r}")
        self.spec = spec
        s = spec.stride
        w, h = spec.input_size
        self.grids = {(math.ceil(h / s), math.ceil(w / s)), (h // s, w // s)}
        self._roles: dict[str, str] | None = None

    def _to_chw(self, x: np.ndarray, name: str) -> np.ndarray:
        x = _drop_batch(np.asarray(x), 3, name)
        chw, hwc = tuple(x.shape[1:]) in self.grids, tuple(x.shape[:2]) in self.grids
        if hwc and (not chw or self.spec.layout == "nhwc"):
            return x.transpose(2, 0, 1)
        if chw:
            return x
        raise ValueError(
            f"output {name!r} {list(x.shape)}: expected a {sorted(self.grids)[0]} (H, W) map for input "
            f"{self.spec.input_width}x{self.spec.input_height} at stride {self.spec.stride}"
        )

    def resolve(self, outputs: Mapping[str, np.ndarray]) -> dict[str, str]:
        """Role -> output name by the module's rule."""
        if self._roles is None:
            maps = {}
            for name, value in outputs.items():
                try:
                    maps[name] = self._to_chw(value, name)
                except ValueError:  # not a map on the output grid: not a head output
                    continue
            self._roles = self._resolve(maps, outputs)
        return self._roles

    def _resolve(self, maps: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> dict[str, str]:
        roles = _by_name(maps, CENTERNET_NAMES, _explicit(self.spec))
        grid = "x".join(str(v) for v in max(self.grids))
        where = (
            f"outputs: {_describe(outputs)}; expected maps on the {grid} (HxW) grid of stride {self.spec.stride} "
            "(name them in spec.extra['outputs'])"
        )
        c = self.spec.num_classes
        rest = {n: v for n, v in maps.items() if n not in roles.values()}
        if not {"heatmap", "peaks"} & set(roles):
            if c == 2 and len(rest) > 1:
                raise ValueError(f"CenterNet: with 2 classes the heatmap cannot be told from size/offset; {where}")
            heat = sorted((n for n, v in rest.items() if len(v) == c), key=lambda n: np.count_nonzero(rest[n] == 0))
            if not heat:
                raise ValueError(f"CenterNet: no heatmap with {c} channels; {where}")
            roles["heatmap"] = heat[0]
            if len(heat) > 1:  # the peak map is zero off the peaks
                roles["peaks"] = heat[1]
            for n in heat[:2]:
                rest.pop(n)
        two = [n for n, v in rest.items() if len(v) == 2]
        missing = [r for r in ("size", "offset") if r not in roles]
        if len(two) < len(missing):
            raise ValueError(f"CenterNet: cannot find {missing} [2, H, W]; {where}")
        if len(missing) == 2:  # size (in cells) outweighs offset (in [0, 1))
            roles["size"], roles["offset"] = sorted(
                two[:2], key=lambda n: float(np.median(np.abs(rest[n]))), reverse=True
            )
        elif missing:
            roles[missing[0]] = two[0]
        return roles

    def __call__(self, outputs: Mapping[str, np.ndarray]) -> Decoded:
        roles = self.resolve(outputs)
        peaks = "peaks" in roles
        heat_name = roles["peaks" if peaks else "heatmap"]
        heat = self._to_chw(outputs[heat_name], heat_name)
        size = self._to_chw(outputs[roles["size"]], roles["size"])
        offset = self._to_chw(outputs[roles["offset"]], roles["offset"])
        if len(heat) != self.spec.num_classes:
            raise ValueError(
                f"CenterNet heatmap has {len(heat)} channels but the spec has {self.spec.num_classes} labels"
            )
        boxes, scores, class_ids = decode_heatmap(
            heat,
            size,
            offset,
            self.spec.stride,
            top_k=self.spec.top_k,
            score_threshold=self.spec.score_threshold,
            peaks_done=peaks,
        )
        if self.spec.iou_threshold < 1.0 and len(scores) > 1:
            # The 3x3 max-pool keeps one peak per 3x3 cells, not one per object: a large object, or a
            # heatmap that is still flat, gives several peaks a few cells apart with nearly the same box.
            # A class-aware NMS over the peaks removes them (on raccoon val after 49 epochs: AP50
            # 0.35 -> 0.62); spec.iou_threshold = 1 restores the paper's NMS-free decode.
            keep = batched_nms(boxes, scores, class_ids, self.spec.iou_threshold)
            boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
        return boxes, scores, class_ids


def make_decoder(spec: ModelSpec) -> SSDDecoder | CenterNetDecoder:
    """The decoder for ``spec.head`` (SSD priors generated for the spec's input size)."""
    if spec.head == "ssd":
        assert spec.priors is not None  # ModelSpec guarantees it for SSD
        return SSDDecoder(spec, spec.priors.generate(spec.input_size))
    return CenterNetDecoder(spec)

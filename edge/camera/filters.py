"""Object filters: drop detections by score, box size and shape, per label with a default for all.

Config (:class:`ObjectFilterSettings`)::

    filters:
      default: {min_score: 0.4}            # every label
      labels:
        person: {min_area: 0.002, max_ratio: 1.5}   # keys not given come from `default`
        car: {min_score: 0.6, min_ratio: 0.8}

Areas are **fractions of the frame's area** (box width x height / frame width x height, 0..1), not pixels:
the same config then holds for a 640x480 substream and a 1920x1080 main stream, and for zones given with
``normalized: true``. ``0.01`` is a box of about 64x48 in a 640x480 frame. Ratios are width / height
(a standing person is about 0.4, a car side-on about 2). ``min_score`` below the model's own score threshold
(``score_threshold``) changes nothing: the decoder has dropped those detections already.

:class:`ObjectFilter` applies them: ``ObjectFilter(settings).apply(detections, (width, height))``,
vectorised over the detections; :meth:`ObjectFilterSettings.check_labels` rejects labels the model lacks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import BeforeValidator, Field, model_validator

from edgedet.edge.camera.zones import ConfigCheckError, validate_items
from edgedet.edge.runtime.detector import Detection
from edgedet.edge.runtime.settings import ConfigKeyError, Number, SectionInput, StrictModel, section

__all__ = ["FilterSettings", "ObjectFilter", "ObjectFilterSettings"]

_KEYS = ("min_score", "min_area", "max_area", "min_ratio", "max_ratio")


class FilterSettings(StrictModel):
    """What a detection of one label (or, as ``default``, of every label) must meet to be kept."""

    min_score: Annotated[Number, Field(ge=0, le=1)] = Field(0.0, description="lowest score kept")
    min_area: Annotated[Number, Field(ge=0, le=1)] = Field(
        0.0, description="smallest box kept, as a fraction of the frame's area (0.01: ~64x48 in 640x480)"
    )
    max_area: Annotated[Number, Field(gt=0, le=1)] = Field(
        1.0, description="largest box kept, as a fraction of the frame's area"
    )
    min_ratio: Annotated[Number, Field(ge=0)] = Field(0.0, description="narrowest box kept: width / height")
    max_ratio: Annotated[Number, Field(gt=0)] | None = Field(
        None, description="widest box kept: width / height (null: no limit)"
    )

    @model_validator(mode="after")
    def _order(self) -> FilterSettings:
        if self.max_area < self.min_area:
            raise ConfigKeyError("max_area", f"must be >= min_area ({self.min_area:g}), got {self.max_area:g}")
        if self.max_ratio is not None and self.max_ratio < self.min_ratio:
            raise ConfigKeyError("max_ratio", f"must be >= min_ratio ({self.min_ratio:g}), got {self.max_ratio:g}")
        return self


def _label_filters(raw: Any) -> Any:
    return validate_items(FilterSettings, raw, "label filter", mapping=True)


class ObjectFilterSettings(StrictModel):
    """Filters by label: ``default`` for every label, ``labels`` for some (their keys not given: the default's)."""

    default: Annotated[FilterSettings, SectionInput] = section(FilterSettings, "the filter for every label")
    labels: Annotated[dict[str, FilterSettings], BeforeValidator(_label_filters)] = Field(
        default_factory=dict,
        description="per label (`person: {min_area: 0.002}`): keys not given come from `default`",
    )

    @model_validator(mode="after")
    def _merged_order(self) -> ObjectFilterSettings:
        for label, own in self.labels.items():
            merged = self.for_label(label)
            for low, high in (("min_area", "max_area"), ("min_ratio", "max_ratio")):
                lo, hi = getattr(merged, low), getattr(merged, high)
                if hi is not None and hi < lo:
                    key = high if high in own.model_fields_set else low
                    other = low if key == high else high
                    where = "" if other in own.model_fields_set else " in default"
                    relation = ">=" if key == high else "<="
                    raise ConfigKeyError(
                        f"labels.{label}.{key}",
                        f"must be {relation} {other} ({getattr(merged, other):g}{where}), got {getattr(merged, key):g}",
                    )
        return self

    def for_label(self, label: str) -> FilterSettings:
        """The filter that applies to ``label``: its own keys over ``default``."""
        own = self.labels.get(label)
        if own is None:
            return self.default
        values = {k: getattr(own if k in own.model_fields_set else self.default, k) for k in _KEYS}
        return FilterSettings.model_construct(**values)

    def check_labels(self, model_labels: Iterable[str], key: str = "filters") -> None:
        """Raise a :class:`ConfigCheckError` (``filters.labels.persn: unknown label (...)``) for a label in
        ``labels`` that the model does not have. ``key``: where this section sits in the config."""
        known = list(model_labels)
        for label in self.labels:
            if label not in known:
                raise ConfigCheckError(
                    f"{key}.labels.{label}", f"unknown label (the model's labels: {', '.join(known) or 'none'})"
                )


class ObjectFilter:
    """:class:`ObjectFilterSettings` ready to apply: one row of limits per label, compared in numpy."""

    def __init__(self, settings: ObjectFilterSettings | None = None) -> None:
        self.settings = settings or ObjectFilterSettings()
        self._rows: dict[str, int] = {}
        table = [self._limits(self.settings.default)]
        for label in self.settings.labels:
            self._rows[label] = len(table)
            table.append(self._limits(self.settings.for_label(label)))
        self._table = np.array(table, dtype=np.float64)  # [labels + 1, 5]; row 0: the default
        self.active = not bool(np.all(self._table == np.array(self._limits(FilterSettings()))))  # False: keeps all

    @staticmethod
    def _limits(f: FilterSettings) -> list[float]:
        return [f.min_score, f.min_area, f.max_area, f.min_ratio, np.inf if f.max_ratio is None else f.max_ratio]

    def keep_mask(self, boxes: Any, scores: Any, labels: Sequence[str], frame_size: tuple[int, int]) -> np.ndarray:
        """``[N]`` bools: which of the corner ``boxes [N, 4]`` (frame pixels) with ``scores [N]`` and
        ``labels`` pass their label's filter in a ``frame_size`` = (width, height) frame."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if not (len(b) == len(s) == len(labels)):
            raise ValueError(f"boxes, scores and labels differ in length: {len(b)}, {len(s)}, {len(labels)}")
        width, height = frame_size
        if width <= 0 or height <= 0:
            raise ValueError(f"frame_size: expected a positive (width, height), got {frame_size}")
        rows = np.fromiter((self._rows.get(label, 0) for label in labels), dtype=np.intp, count=len(labels))
        lim = self._table[rows]  # [N, 5]
        w = np.clip(b[:, 2] - b[:, 0], 0, None)
        h = np.clip(b[:, 3] - b[:, 1], 0, None)
        area = w * h / (float(width) * float(height))
        ratio = np.full_like(w, np.inf)
        np.divide(w, h, out=ratio, where=h > 0)  # a box of no height is infinitely wide
        return (
            (s >= lim[:, 0]) & (area >= lim[:, 1]) & (area <= lim[:, 2]) & (ratio >= lim[:, 3]) & (ratio <= lim[:, 4])
        )

    def apply(self, detections: Sequence[Detection], frame_size: tuple[int, int]) -> list[Detection]:
        """The detections that pass their label's filter, in order; ``frame_size`` = (width, height)."""
        if not detections or not self.active:
            return list(detections)
        keep = self.keep_mask(
            [d.box for d in detections], [d.score for d in detections], [d.label for d in detections], frame_size
        )
        return [d for d, ok in zip(detections, keep, strict=True) if ok]

    def dropped(self, detections: Sequence[Detection], frame_size: tuple[int, int]) -> Mapping[str, int]:
        """How many detections of each label the filter drops (for logs and metrics)."""
        if not detections or not self.active:
            return {}
        keep = self.keep_mask(
            [d.box for d in detections], [d.score for d in detections], [d.label for d in detections], frame_size
        )
        out: dict[str, int] = {}
        for d, ok in zip(detections, keep, strict=True):
            if not ok:
                out[d.label] = out.get(d.label, 0) + 1
        return out

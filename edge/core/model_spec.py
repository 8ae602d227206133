"""The self-description every model carries: what the runtime needs to pre-process and decode.

It travels in training checkpoints (``ckpt["spec"]``), in ONNX ``metadata_props`` (key ``edgedet``,
JSON) and in TFLite ``Model.metadata`` (entry ``edgedet``; older files: a ``MODEL.json`` beside them).
Nothing on the device guesses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from edgedet.edge.core.priors import PriorConfig

__all__ = ["SPEC_VERSION", "ModelSpec"]

SPEC_VERSION = 1
_CHOICES = {
    "head": ("ssd", "centernet"),
    "resize": ("stretch", "letterbox"),
    "color": ("rgb", "bgr"),
    "layout": ("nchw", "nhwc"),
}


@dataclass(frozen=True)
class ModelSpec:
    """Head type, input geometry, normalisation ``(x - mean) / std`` per channel (after colour
    conversion, on 0..255 pixels), labels (object classes only; the SSD background class is implicit),
    prior config (SSD) or output stride (CenterNet), and default post-processing thresholds.
    """

    head: str
    labels: tuple[str, ...]
    input_width: int = 320
    input_height: int = 240
    resize: str = "stretch"
    color: str = "rgb"
    layout: str = "nchw"
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    base_channel: int = 16
    priors: PriorConfig | None = None
    stride: int = 4
    score_threshold: float = 0.5
    iou_threshold: float = 0.45
    top_k: int = 200
    max_candidates: int = 1000  # per class, into NMS; UltraFace's detect_imgs.py uses 1000 (200 drops crowds)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, allowed in _CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"spec.{key}: expected one of {list(allowed)}, got {getattr(self, key)!r}")
        if not self.labels or not all(isinstance(s, str) and s for s in self.labels):
            raise ValueError(f"spec.labels: expected a non-empty list of class names, got {self.labels!r}")
        for key in ("input_width", "input_height", "base_channel", "stride", "top_k", "max_candidates"):
            value = getattr(self, key)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"spec.{key}: expected a positive integer, got {value!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s == 0 for s in self.std):
            raise ValueError(f"spec.mean/std: expected 3 values each, std non-zero; got {self.mean}, {self.std}")
        for key in ("score_threshold", "iou_threshold"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"spec.{key}: expected a value in [0, 1], got {getattr(self, key)}")
        if self.head == "ssd" and self.priors is None:
            raise ValueError("spec.priors: an SSD model needs a prior config")

    @property
    def num_classes(self) -> int:
        """Object classes (the SSD head adds one background logit)."""
        return len(self.labels)

    @property
    def input_size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return self.input_width, self.input_height

    def with_input_size(self, width: int, height: int) -> ModelSpec:
        return replace(self, input_width=int(width), input_height=int(height))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["priors"] = None if self.priors is None else self.priors.to_dict()
        d["labels"] = list(self.labels)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["extra"] = dict(self.extra)
        d["version"] = SPEC_VERSION
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "model spec") -> ModelSpec:
        """Validate and build; errors name ``source`` and the offending key."""
        if not isinstance(d, Mapping):
            raise ValueError(f"{source}: expected a mapping, got {type(d).__name__}")
        data = dict(d)
        version = data.pop("version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise ValueError(f"{source}: spec version {version} is not supported (expected {SPEC_VERSION})")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}")
        if "head" not in data or "labels" not in data:
            raise ValueError(f"{source}: 'head' and 'labels' are required")
        try:
            if data.get("priors") is not None:
                data["priors"] = PriorConfig.from_dict(data["priors"])
            if isinstance(data["labels"], str):  # tuple("face") would be ('f', 'a', 'c', 'e')
                raise ValueError(f"spec.labels: expected a list of class names, got the string {data['labels']!r}")
            data["labels"] = tuple(data["labels"])
            for key in ("mean", "std"):
                if key in data:
                    data[key] = tuple(float(v) for v in data[key])
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from exc

    @classmethod
    def from_json(cls, text: str, source: str = "model spec") -> ModelSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: not valid JSON ({exc})") from exc
        return cls.from_dict(data, source)

    @classmethod
    def ultraface(cls, width: int = 320, height: int = 240) -> ModelSpec:
        """The published UltraFace slim model: stretch resize, RGB, (x - 127) / 128, clamped priors,
        hard NMS at IoU 0.3, score threshold 0.7, and the candidate limits of UltraFace's own
        ``detect_imgs.py`` (``candidate_size`` 1000 per class into NMS, ``top_k`` = half of it): at 640x480
        (17640 priors) a crowd photo has far more than 200 candidates and 200 faces."""
        return cls(
            head="ssd",
            labels=("face",),
            input_width=width,
            input_height=height,
            priors=PriorConfig(style="ultraface", clamp=True),
            score_threshold=0.7,
            iou_threshold=0.3,
            top_k=500,
            max_candidates=1000,
        )

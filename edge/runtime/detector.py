"""The detector: a backend, the model's spec, pre-processing and decoding behind ``detect(frame)``.

det = Detector.from_model("model.onnx")                                  # spec from metadata
det = Detector.from_model("version-slim-320.onnx", spec=ModelSpec.ultraface())
for d in det.detect(frame_bgr): print(d.label, d.score, d.box)          # boxes in frame pixels
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.runtime.backends import Backend, open_backend
from edgedet.edge.runtime.decoders import CenterNetDecoder, SSDDecoder, make_decoder
from edgedet.edge.runtime.preprocess import Preprocessor, Transform

__all__ = ["Detection", "Detector", "Inferred", "Prepared", "StageTimings", "load_spec"]


@dataclass(frozen=True)
class Detection:
    """One object: corner ``box`` (x1, y1, x2, y2) in source-frame pixels, ``class_id`` 0-based over
    the spec's labels (no background)."""

    box: tuple[float, float, float, float]
    score: float
    class_id: int
    label: str

    def to_dict(self) -> dict[str, Any]:
        x1, y1, x2, y2 = self.box
        return {
            "box": [float(x1), float(y1), float(x2), float(y2)],
            "score": float(self.score),
            "class_id": int(self.class_id),
            "label": self.label,
        }


@dataclass(frozen=True)
class StageTimings:
    """Wall time of each stage of one ``detect`` call, in milliseconds."""

    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    decode_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms + self.decode_ms

    def to_dict(self) -> dict[str, float]:
        return {
            "preprocess_ms": self.preprocess_ms,
            "inference_ms": self.inference_ms,
            "decode_ms": self.decode_ms,
            "total_ms": self.total_ms,
        }


def load_spec(value: str | os.PathLike[str]) -> ModelSpec:
    """A spec from the command line: ``"ultraface"`` or ``"ultraface:WxH"`` (the published model's preset,
    320x240 by default, e.g. ``ultraface:640x480``) or a JSON file."""
    text = str(value)
    if text.lower() == "ultraface":
        return ModelSpec.ultraface()
    if text.lower().startswith("ultraface:"):
        size = text.split(":", 1)[1]
        try:
            width, height = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise ValueError(f"--spec {text}: expected ultraface:WIDTHxHEIGHT, e.g. ultraface:640x480") from None
        return ModelSpec.ultraface(width, height)
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(
            f"spec file not found: {path} (give a spec JSON file, 'ultraface' or 'ultraface:WIDTHxHEIGHT')"
        )
    return ModelSpec.from_json(path.read_text(encoding="utf-8"), source=str(path))


def _check_input(backend: Backend, spec: ModelSpec) -> ModelSpec:
    """Fit the spec's layout to the model's input and reject a model whose input size differs."""
    if backend.input_layout != spec.layout:
        spec = replace(spec, layout=backend.input_layout)  # the file decides how its input is laid out
    shape = backend.input_shape
    if len(shape) != 4:
        raise ValueError(f"{backend.path}: expected a 4-D image input, got shape {list(shape)}")
    h, w = (shape[2], shape[3]) if spec.layout == "nchw" else (shape[1], shape[2])
    if (h is not None and h != spec.input_height) or (w is not None and w != spec.input_width):
        raise ValueError(
            f"{backend.path}: model input is {w}x{h} (WxH) but the spec says "
            f"{spec.input_width}x{spec.input_height}; use a spec for this input size "
            f"(spec.with_input_size({w}, {h}); ModelSpec.ultraface({w}, {h}) for UltraFace)"
        )
    return spec


@dataclass(frozen=True)
class Prepared:
    """A frame after :meth:`Detector.prepare`: the input tensor and the mapping back to the frame."""

    tensor: np.ndarray
    transform: Transform
    preprocess_ms: float


@dataclass(frozen=True)
class Inferred:
    """A frame after :meth:`Detector.infer`: the backend's outputs, by name."""

    outputs: dict[str, np.ndarray]
    transform: Transform
    preprocess_ms: float
    inference_ms: float


class Detector:
    """Runs a model on BGR frames and returns :class:`Detection` objects in frame pixels."""

    def __init__(self, backend: Backend, spec: ModelSpec) -> None:
        self.backend = backend
        self.spec = _check_input(backend, spec)
        self.preprocess = Preprocessor(self.spec)
        quant = getattr(backend, "input_quant", None)
        if quant is not None:  # a quantised input: pre-processing makes the integer tensor directly
            self.preprocess.quantize_to(quant, backend.input_dtype)
        self.decoder: SSDDecoder | CenterNetDecoder = make_decoder(self.spec)
        self.last_timings = StageTimings()
        self._spare_inputs: list[np.ndarray] = []

    @classmethod
    def from_model(
        cls,
        path: str | os.PathLike[str],
        spec: ModelSpec | None = None,
        threads: int | None = None,
        score_threshold: float | None = None,
        iou_threshold: float | None = None,
    ) -> Detector:
        """Open ``path`` (.onnx, .tflite, .pt); ``spec`` replaces the model's own (required when it has
        none); the thresholds override the spec's."""
        backend = open_backend(path, threads)
        if spec is None:
            spec = backend.read_spec()
        if spec is None:
            raise ValueError(
                f"{backend.path}: the model carries no edgedet metadata (ONNX metadata_props or TFLite metadata "
                f"'edgedet', or a {Path(backend.path).with_suffix('.json').name} spec beside an older .tflite); "
                "supply one: "
                "--spec SPEC.json or --spec ultraface on the command line, spec=ModelSpec... in Python"
            )
        overrides: dict[str, float] = {}
        if score_threshold is not None:
            overrides["score_threshold"] = float(score_threshold)
        if iou_threshold is not None:
            overrides["iou_threshold"] = float(iou_threshold)
        if overrides:
            spec = replace(spec, **overrides)  # validated again by ModelSpec.__post_init__
        return cls(backend, spec)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """Detections on one BGR uint8 frame, best first; timings in :attr:`last_timings`."""
        return self.finish(self.infer(self.prepare(frame_bgr)))

    # The three stages of detect(), separately, so that runtime.pipeline can run inference in its own thread
    # while the caller prepares the next frame and finishes the previous one.

    def prepare(self, frame_bgr: np.ndarray) -> Prepared:
        """Stage 1: the frame as the model's input tensor (any thread)."""
        t0 = time.perf_counter()
        # A backend is done with its input when run() returns, so input buffers are reused: no allocation
        # and no page faults per frame. pop() and append() are atomic, so threads never share one.
        try:
            buffer = self._spare_inputs.pop()
        except IndexError:
            buffer = None
        tensor, transform = self.preprocess(frame_bgr, out=buffer)
        return Prepared(tensor, transform, (time.perf_counter() - t0) * 1e3)

    def infer(self, prepared: Prepared) -> Inferred:
        """Stage 2: run the backend (one thread at a time: backends are not re-entrant)."""
        t0 = time.perf_counter()
        outputs = self.backend.run(prepared.tensor)
        self._spare_inputs.append(prepared.tensor)
        return Inferred(outputs, prepared.transform, prepared.preprocess_ms, (time.perf_counter() - t0) * 1e3)

    def finish(self, inferred: Inferred) -> list[Detection]:
        """Stage 3: decode + NMS into frame pixels; sets :attr:`last_timings` for this frame."""
        t0 = time.perf_counter()
        detections = self.decode(inferred.outputs, inferred.transform)
        decode_ms = (time.perf_counter() - t0) * 1e3
        self.last_timings = StageTimings(inferred.preprocess_ms, inferred.inference_ms, decode_ms)
        return detections

    def decode(self, outputs: dict[str, np.ndarray], transform: Transform) -> list[Detection]:
        """Backend outputs -> detections in the frame ``transform`` came from."""
        boxes, scores, class_ids = self.decoder(outputs)
        if not len(scores):
            return []
        boxes = transform.to_frame(boxes)
        positive = boxes[:, 2:] > boxes[:, :2]
        if not positive.all():  # drop boxes wholly in the padding (clipped to nothing)
            visible = positive.all(axis=1)
            boxes, scores, class_ids = boxes[visible], scores[visible], class_ids[visible]
        labels = self.spec.labels
        return [
            Detection((b[0], b[1], b[2], b[3]), s, c, labels[c])
            for b, s, c in zip(boxes.tolist(), scores.tolist(), class_ids.tolist(), strict=True)
        ]

"""Frame -> model input tensor, and the inverse mapping of boxes back onto the frame.

``Preprocessor(spec)(frame_bgr)`` resizes (``stretch`` to the input size, or ``letterbox``: keep the
aspect ratio, centre, pad with the mean colour), converts BGR -> RGB when ``spec.color == "rgb"``,
normalises ``(x - mean) / std`` and lays the result out as ``[1, 3, H, W]`` or ``[1, H, W, 3]``. The
returned :class:`Transform` maps boxes from model-input pixels back to frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.model_spec import ModelSpec

__all__ = ["Preprocessor", "Transform", "check_frame"]


@dataclass(frozen=True)
class Transform:
    """``input = frame * scale + pad`` per axis; ``frame_width``/``frame_height`` bound the inverse."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    frame_width: int
    frame_height: int

    def to_frame(self, boxes: np.ndarray, clip: bool = True) -> np.ndarray:
        """Corner boxes ``[..., 4]`` in model-input pixels -> frame pixels (clipped to the frame)."""
        boxes = np.asarray(boxes, dtype=np.float32)
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float32)
        scale = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y], dtype=np.float32)
        out = (boxes - offset) / scale
        if clip:
            upper = np.array([self.frame_width, self.frame_height] * 2, dtype=np.float32)
            out = np.clip(out, 0.0, upper)
        return out

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Corner boxes ``[..., 4]`` in frame pixels -> model-input pixels (the forward mapping)."""
        boxes = np.asarray(boxes, dtype=np.float32)
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float32)
        scale = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y], dtype=np.float32)
        return boxes * scale + offset


def check_frame(frame: object, name: str = "frame") -> np.ndarray:
    """Return ``frame`` if it is an ``H x W x 3`` uint8 BGR image, else raise a ``ValueError`` saying why."""
    if frame is None:
        raise ValueError(f"{name} is None (the image could not be read or the camera returned no frame)")
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"{name}: expected dtype uint8 (8-bit BGR), got {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        hint = " (grayscale? convert with cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))" if frame.ndim == 2 else ""
        raise ValueError(f"{name}: expected shape [H, W, 3] (BGR), got {list(frame.shape)}{hint}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"{name}: empty image of shape {list(frame.shape)}")
    return frame


class Preprocessor:
    """Callable turning a BGR uint8 frame into ``(tensor float32, Transform)`` for ``spec``."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.width, self.height = spec.input_size
        self._mean = np.asarray(spec.mean, dtype=np.float32)
        self._inv_std = (1.0 / np.asarray(spec.std, dtype=np.float64)).astype(np.float32)

    def transform_for(self, frame_width: int, frame_height: int) -> Transform:
        """The mapping this preprocessor applies to a frame of the given size."""
        if self.spec.resize == "stretch":
            return Transform(self.width / frame_width, self.height / frame_height, 0.0, 0.0, frame_width, frame_height)
        new_w, new_h = self._letterbox_size(frame_width, frame_height)
        pad_x, pad_y = (self.width - new_w) // 2, (self.height - new_h) // 2
        return Transform(
            new_w / frame_width, new_h / frame_height, float(pad_x), float(pad_y), frame_width, frame_height
        )

    def _letterbox_size(self, frame_width: int, frame_height: int) -> tuple[int, int]:
        scale = min(self.width / frame_width, self.height / frame_height)
        new_w = min(self.width, max(1, round(frame_width * scale)))
        new_h = min(self.height, max(1, round(frame_height * scale)))
        return new_w, new_h

    def _normalise(self, img: np.ndarray) -> np.ndarray:
        if self.spec.color == "rgb":
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        out = img.astype(np.float32)
        out -= self._mean
        out *= self._inv_std
        return out

    def __call__(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, Transform]:
        frame = check_frame(frame_bgr)
        fh, fw = frame.shape[:2]
        transform = self.transform_for(fw, fh)
        if self.spec.resize == "stretch":
            resized = (
                frame
                if (fw, fh) == (self.width, self.height)
                else cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
            )
            hwc = self._normalise(resized)
        else:
            new_w, new_h = self._letterbox_size(fw, fh)
            resized = (
                frame
                if (fw, fh) == (new_w, new_h)
                else cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
            )
            # The mean colour normalises to exactly 0, so the padding is a zero fill.
            hwc = np.zeros((self.height, self.width, 3), dtype=np.float32)
            x0, y0 = int(transform.pad_x), int(transform.pad_y)
            hwc[y0 : y0 + new_h, x0 : x0 + new_w] = self._normalise(resized)
        if self.spec.layout == "nchw":
            return np.ascontiguousarray(hwc.transpose(2, 0, 1))[None], transform
        return hwc[None], transform

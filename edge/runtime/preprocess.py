"""Frame -> model input tensor, and the inverse mapping of boxes back onto the frame.

``Preprocessor(spec)(frame_bgr)`` resizes (``stretch`` to the input size, or ``letterbox``: keep the
aspect ratio, centre, pad with the mean colour), converts BGR -> RGB when ``spec.color == "rgb"``,
normalises ``(x - mean) / std`` and lays the result out as ``[1, 3, H, W]`` or ``[1, H, W, 3]``. The
returned :class:`Transform` maps boxes from model-input pixels back to frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.runtime.quant import QuantParams, quantize

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

    @cached_property
    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(offset, scale, frame size)`` as float32 ``[4]`` rows, made once (a stream reuses its Transform)."""
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float32)
        scale = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y], dtype=np.float32)
        upper = np.array([self.frame_width, self.frame_height] * 2, dtype=np.float32)
        return offset, scale, upper

    def to_frame(self, boxes: np.ndarray, clip: bool = True) -> np.ndarray:
        """Corner boxes ``[..., 4]`` in model-input pixels -> frame pixels (clipped to the frame)."""
        offset, scale, upper = self._arrays
        out = np.asarray(boxes, dtype=np.float32) - offset
        out /= scale
        if clip:
            np.clip(out, 0.0, upper, out=out)
        return out

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Corner boxes ``[..., 4]`` in frame pixels -> model-input pixels (the forward mapping)."""
        offset, scale, _ = self._arrays
        return np.asarray(boxes, dtype=np.float32) * scale + offset


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


def _lut(src: np.ndarray, table: np.ndarray, dst: np.ndarray) -> None:
    """``dst[...] = table[src]`` per channel, written in place by OpenCV."""
    out = cv2.LUT(src, table, dst=dst)
    if out is not dst:  # an OpenCV that would not write into the view
        dst[...] = out


def _affine(src: np.ndarray, alpha: float, gamma: float, dst: np.ndarray) -> None:
    """``dst[...] = src * alpha + gamma`` in float32, one pass by OpenCV, written in place."""
    out = cv2.addWeighted(src, alpha, src, 0.0, gamma, dst=dst, dtype=cv2.CV_32F)
    if out is not dst:
        dst[...] = out


class Preprocessor:
    """Callable turning a BGR uint8 frame into ``(tensor, Transform)`` for ``spec``.

    The tensor is float32, or — after :meth:`quantize_to` — already in a quantised model's integer input
    type. A frame costs one resize, then two passes written straight into the output layout: the
    subtraction of the mean (converting uint8 to float32 as it goes) and the multiplication by
    ``1 / std``, over whole planes (NCHW) or whole rows (NHWC), never over 3-element pixels and with no
    transpose copy. A quantised input has only 256 possible values per channel, so they are computed
    once, with exactly the arithmetic above and :func:`edgedet.edge.runtime.backends.quantize`, into look-up tables
    applied by ``cv2.LUT``. Every call returns a new tensor, never a buffer it will write again.
    """

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.width, self.height = spec.input_size
        self._mean = np.asarray(spec.mean, dtype=np.float32)
        self._inv_std = (1.0 / np.asarray(spec.std, dtype=np.float64)).astype(np.float32)
        # Channel c of the model input comes from BGR plane _planes[c].
        self._planes = (2, 1, 0) if spec.color == "rgb" else (0, 1, 2)
        self._mean_row = np.tile(self._mean, self.width)  # per channel, along an NHWC row
        self._inv_std_row = np.tile(self._inv_std, self.width)
        levels = np.arange(256, dtype=np.float32)
        self._float_lut = (levels[None, :] - self._mean[:, None]) * self._inv_std[:, None]  # [3, 256]
        self._set_tables(self._float_lut, 0.0)
        self._transform: Transform | None = None

    def _set_tables(self, lut: np.ndarray, pad: float | int) -> None:
        self.dtype = lut.dtype
        self._quantized = lut.dtype != np.float32
        self._luts = [np.ascontiguousarray(lut[c].reshape(1, 256)) for c in range(3)]
        self._uniform = bool(np.array_equal(lut[0], lut[1]) and np.array_equal(lut[0], lut[2]))
        # for one cv2.LUT over an H x W x 3 image whose planes are already in input channel order
        self._lut3 = np.ascontiguousarray(lut.T.reshape(1, 256, 3))
        self._pad = pad  # what the mean colour becomes: the letterbox padding
        self._weights = self._exact_weights()
        self._xor: int | None = None
        if self._quantized and self._uniform and lut.dtype.itemsize == 1:
            k = int(lut[0].view(np.uint8)[0])
            if np.array_equal(lut[0].view(np.uint8), np.arange(256, dtype=np.uint8) ^ k):
                self._xor = k

    def quantize_to(self, params: object, dtype: np.dtype | type) -> bool:
        """Produce tensors of integer ``dtype`` quantised with ``params`` (a per-tensor
        :class:`~edgedet.edge.runtime.quant.QuantParams`), exactly what ``runtime.quant.quantize`` makes of the float
        tensor. Returns False (and stays float32) for per-channel parameters."""
        if not isinstance(params, QuantParams) or params.scale.size != 1 or params.zero_point.size != 1:
            return False
        dtype = np.dtype(dtype)
        self._set_tables(quantize(self._float_lut, params, dtype), quantize(np.zeros(1), params, dtype)[0])
        return True

    def transform_for(self, frame_width: int, frame_height: int) -> Transform:
        """The mapping this preprocessor applies to a frame of the given size."""
        cached = self._transform
        if cached is not None and cached.frame_width == frame_width and cached.frame_height == frame_height:
            return cached  # frozen, so it can be shared by every frame of a stream
        if self.spec.resize == "stretch":
            transform = Transform(
                self.width / frame_width, self.height / frame_height, 0.0, 0.0, frame_width, frame_height
            )
        else:
            new_w, new_h = self._letterbox_size(frame_width, frame_height)
            pad_x, pad_y = (self.width - new_w) // 2, (self.height - new_h) // 2
            transform = Transform(
                new_w / frame_width, new_h / frame_height, float(pad_x), float(pad_y), frame_width, frame_height
            )
        self._transform = transform
        return transform

    def _letterbox_size(self, frame_width: int, frame_height: int) -> tuple[int, int]:
        scale = min(self.width / frame_width, self.height / frame_height)
        new_w = min(self.width, max(1, round(frame_width * scale)))
        new_h = min(self.height, max(1, round(frame_height * scale)))
        return new_w, new_h

    def _fill(self, img: np.ndarray, out: np.ndarray, x0: int, y0: int) -> None:
        """Normalise the uint8 BGR ``img`` into ``out`` ([1, 3, H, W] or [1, H, W, 3]) at (x0, y0): plane by
        plane (NCHW), or — the same numbers for every channel, or float output — over whole
        ``[h, w * 3]`` rows (NHWC), never 3-element pixels."""
        h, w = img.shape[:2]
        if self.spec.layout == "nchw":
            planes = cv2.split(img)
            region = out[0, :, y0 : y0 + h, x0 : x0 + w]
            for c, plane in enumerate(self._planes):
                self._normalise(planes[plane], region[c], c)
            return
        if self._planes[0] == 2:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        region = out[0, y0 : y0 + h, x0 : x0 + w]
        if self._uniform:
            self._normalise(img.reshape(h, w * 3), region.reshape(h, w * 3), 0)
        elif self._quantized:
            _lut(img, self._lut3, region)
        else:  # per channel: the channel pattern repeated along the rows
            rows = region.reshape(h, w * 3)
            np.subtract(img.reshape(h, w * 3), self._mean_row[: w * 3], out=rows)
            rows *= self._inv_std_row[: w * 3]

    def _normalise(self, src: np.ndarray, dst: np.ndarray, channel: int) -> None:
        """``dst = (src - mean) * (1 / std)`` (then quantised) for one input channel, uint8 2-D -> 2-D."""
        if self._weights is not None:
            _affine(src, *self._weights, dst)
        elif self._xor is not None:  # the table is x ^ k, e.g. int8 x - 128: one vectorised pass
            np.bitwise_xor(src, self._xor, out=dst.view(np.uint8))
        elif self._quantized:
            _lut(src, self._luts[channel], dst)
        else:  # the uint8 -> float32 conversion inside the subtraction
            np.subtract(src, self._mean[channel], out=dst)
            np.multiply(dst, self._inv_std[channel], out=dst)

    def _exact_weights(self) -> tuple[float, float] | None:
        """``(alpha, gamma)`` when ``x * alpha + gamma`` by OpenCV (``cv2.addWeighted``) gives exactly the
        float32 ``(x - mean) * (1 / std)`` of every uint8 level, the same for all channels (as for the
        usual ``(x - 127) / 128``). Checked here on every level, in long rows, short rows and rows too
        short for any vector code."""
        if self._quantized or not self._uniform:
            return None
        alpha = float(self._inv_std[0])
        gamma = -float(self._mean[0]) * alpha
        want = self._luts[0][0]
        every = np.arange(256, dtype=np.uint8)
        levels = ((np.arange(self.height * self.width * 3) * 7 + 3) % 256).astype(np.uint8)
        levels = levels.reshape(self.height, self.width * 3)
        tails = np.repeat(every, 8).reshape(256, 8)[:, :7]
        for src in (every.reshape(1, 256), levels, levels[:, 1:-2], tails):
            if not np.array_equal(cv2.addWeighted(src, alpha, src, 0.0, gamma, dtype=cv2.CV_32F), want[src]):
                return None
        return alpha, gamma

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The tensor's shape: ``[1, 3, H, W]`` or ``[1, H, W, 3]``."""
        if self.spec.layout == "nchw":
            return (1, 3, self.height, self.width)
        return (1, self.height, self.width, 3)

    def __call__(self, frame_bgr: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, Transform]:
        """``(tensor, transform)`` for one frame. The tensor is a new array, or ``out`` (of :attr:`shape`
        and :attr:`dtype`) written over: a caller that never keeps the tensor past the next call saves the
        allocation, and the page faults of fresh memory, per frame."""
        frame = check_frame(frame_bgr)
        fh, fw = frame.shape[:2]
        transform = self.transform_for(fw, fh)
        if out is None or out.shape != self.shape or out.dtype != self.dtype or not out.flags.c_contiguous:
            out = np.empty(self.shape, dtype=self.dtype)
        if self.spec.resize == "stretch":
            resized = (
                frame
                if (fw, fh) == (self.width, self.height)
                else cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
            )
            self._fill(resized, out, 0, 0)
        else:
            new_w, new_h = self._letterbox_size(fw, fh)
            resized = (
                frame
                if (fw, fh) == (new_w, new_h)
                else cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
            )
            # The mean colour normalises to exactly 0, so the padding is a zero fill (its quantised value).
            out.fill(self._pad)
            self._fill(resized, out, int(transform.pad_x), int(transform.pad_y))
        return out, transform

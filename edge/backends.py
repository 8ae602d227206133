"""Inference backends behind one small interface: ONNX Runtime, LiteRT / TFLite, and (desktop only) a
training checkpoint.

Every backend has ``path``, ``input_shape`` (``None`` for a dynamic dimension), ``input_layout``
(``"nchw"`` or ``"nhwc"``), ``output_names``, ``run(tensor) -> {name: float32 array}`` and
``read_spec() -> ModelSpec | None``. Runtimes are imported when a backend is built, never at module
level, so a device needs only the one it uses, and nothing here imports torch or TensorFlow unless a
``.pt`` checkpoint (torch) or a TFLite model with no LiteRT / tflite_runtime installed (TensorFlow) is
opened.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge.model_spec import ModelSpec

__all__ = [
    "SUFFIXES",
    "Backend",
    "OnnxBackend",
    "QuantParams",
    "TfliteBackend",
    "TorchBackend",
    "default_threads",
    "dequantize",
    "infer_layout",
    "open_backend",
    "quantize",
]

SUFFIXES = (".onnx", ".tflite", ".pt")
TFLITE_RUNTIMES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow")


class Backend(Protocol):
    """What the detector needs from an inference runtime."""

    path: Path
    input_shape: tuple[int | None, ...]
    input_layout: str
    output_names: tuple[str, ...]

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]: ...

    def read_spec(self) -> ModelSpec | None: ...


def default_threads() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def infer_layout(shape: tuple[int | None, ...], default: str) -> str:
    """``"nchw"`` when dim 1 is 3 channels, ``"nhwc"`` when the last is, else ``default``."""
    if len(shape) == 4:
        if shape[1] == 3 and shape[3] != 3:
            return "nchw"
        if shape[3] == 3 and shape[1] != 3:
            return "nhwc"
    return default


def _check_path(path: str | os.PathLike[str], suffix: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if not path.is_file():
        raise ValueError(f"{path}: not a file (expected a {suffix} model)")
    if path.suffix.lower() != suffix:
        raise ValueError(f"{path}: expected a {suffix} file")
    return path


# --------------------------------------------------------------------------- quantisation


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


# --------------------------------------------------------------------------- ONNX Runtime

_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class OnnxBackend:
    """ONNX Runtime on the CPU (or the given ``providers``); ``threads`` sets intra-op parallelism."""

    def __init__(
        self, path: str | os.PathLike[str], threads: int | None = None, providers: list[str] | None = None
    ) -> None:
        self.path = _check_path(path, ".onnx")
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ImportError(f"{self.path}: running .onnx models needs onnxruntime (pip install onnxruntime)") from exc
        options = ort.SessionOptions()
        options.log_severity_level = 3  # the published UltraFace files warn about every weight input
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(self.path), options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own classes (InvalidProtobuf, Fail, ...)
            raise ValueError(f"{self.path}: not a loadable ONNX model ({_reason(exc)})") from exc
        inp = self._session.get_inputs()[0]
        self._input_name = inp.name
        self._input_dtype = _ONNX_DTYPES.get(inp.type, np.float32)
        self.input_shape: tuple[int | None, ...] = tuple(d if isinstance(d, int) and d > 0 else None for d in inp.shape)
        self.input_layout = infer_layout(self.input_shape, "nchw")
        self.output_names = tuple(o.name for o in self._session.get_outputs())

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        outs = self._session.run(None, {self._input_name: tensor.astype(self._input_dtype, copy=False)})
        return {name: np.asarray(o, dtype=np.float32) for name, o in zip(self.output_names, outs, strict=True)}

    def read_spec(self) -> ModelSpec | None:
        """The spec in ``metadata_props`` under ``"edgedet"``, or ``None`` when the model has none."""
        text = self._session.get_modelmeta().custom_metadata_map.get("edgedet")
        if text is None:
            return None
        return ModelSpec.from_json(text, source=f"{self.path} (metadata 'edgedet')")


# --------------------------------------------------------------------------- LiteRT / TFLite


def _tflite_interpreter_class() -> type:
    """LiteRT, then tflite_runtime, then TensorFlow's ``tf.lite`` (desktop)."""
    for module_name in TFLITE_RUNTIMES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        return module.lite.Interpreter if module_name == "tensorflow" else module.Interpreter
    raise ImportError("running .tflite models needs a TFLite runtime: pip install ai-edge-litert (or tflite-runtime)")


class TfliteBackend:
    """LiteRT / TFLite with its default XNNPACK delegate on ``threads`` threads (default: all cores).

    Quantised (int8/uint8) inputs and outputs are converted with each tensor's own scale and zero point,
    so callers may always pass and always receive float32; a tensor already of the quantised input's
    integer type (``input_dtype``, as :meth:`edge.preprocess.Preprocessor.quantize_to` makes it with
    ``input_quant``) is taken as quantised and passed through.
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        self.path = _check_path(path, ".tflite")
        interpreter_class = _tflite_interpreter_class()
        try:
            self._interp = interpreter_class(model_path=str(self.path), num_threads=int(threads or default_threads()))
            self._interp.allocate_tensors()
        except Exception as exc:  # the runtimes raise ValueError or RuntimeError with their own text
            raise ValueError(f"{self.path}: not a loadable TFLite model ({_reason(exc)})") from exc
        self._input = self._interp.get_input_details()[0]
        self._input_quant = QuantParams.from_details(self._input)
        self.input_dtype = np.dtype(self._input["dtype"])
        # how a float tensor becomes this model's integer input; None for a float input
        self.input_quant = self._input_quant if np.issubdtype(self.input_dtype, np.integer) else None
        self._outputs = self._interp.get_output_details()
        self._output_quant = [QuantParams.from_details(d) for d in self._outputs]
        shape = [int(v) for v in self._input["shape"]]
        signature = [int(v) for v in self._input.get("shape_signature", shape)]
        dims: list[int | None] = [None if sig < 0 else s for s, sig in zip(shape, signature, strict=True)]
        if dims:
            dims[0] = 1
        self.input_shape: tuple[int | None, ...] = tuple(dims)
        self.input_layout = infer_layout(self.input_shape, "nhwc")
        self.output_names = tuple(d["name"] for d in self._outputs)
        self._current_shape = tuple(int(v) for v in self._input["shape"])

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        index = self._input["index"]
        if tensor.shape != self._current_shape:
            try:
                self._interp.resize_tensor_input(index, list(tensor.shape))
                self._interp.allocate_tensors()
            except Exception as exc:
                raise ValueError(
                    f"{self.path}: input of shape {list(tensor.shape)} does not fit the model's "
                    f"{list(self.input_shape)} ({_reason(exc)})"
                ) from exc
            self._current_shape = tuple(tensor.shape)
        if tensor.dtype != self.input_dtype:  # a tensor of the input's own type is used as it is
            if self.input_quant is not None:
                tensor = quantize(tensor, self.input_quant, self.input_dtype)
            else:
                tensor = tensor.astype(self.input_dtype, copy=False)
        self._interp.set_tensor(index, tensor)
        self._interp.invoke()
        out = {}
        for details, quant in zip(self._outputs, self._output_quant, strict=True):
            value = self._interp.get_tensor(details["index"])
            if quant is not None and np.issubdtype(value.dtype, np.integer):
                out[details["name"]] = dequantize(value, quant)
            else:
                out[details["name"]] = np.asarray(value, dtype=np.float32)
        return out

    @property
    def sidecar(self) -> Path:
        """``model.tflite`` -> ``model.json``: where a TFLite model's spec lives."""
        return self.path.with_suffix(".json")

    def read_spec(self) -> ModelSpec | None:
        if not self.sidecar.is_file():
            return None
        return ModelSpec.from_json(self.sidecar.read_text(encoding="utf-8"), source=str(self.sidecar))


# --------------------------------------------------------------------------- training checkpoint


class TorchBackend:
    """A training checkpoint (``.pt``) run with torch — desktop only, imported lazily."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        self.path = _check_path(path, ".pt")
        try:
            import torch

            from training.checkpoint import load_checkpoint
            from training.module_backend import ModuleBackend
        except ImportError as exc:
            raise ImportError(
                f"{self.path}: a .pt checkpoint needs torch and the training package (desktop only); "
                "export it to ONNX or TFLite for a device"
            ) from exc
        if threads:
            torch.set_num_threads(int(threads))
        try:
            model, self._spec, _ = load_checkpoint(self.path)
        except (ValueError, FileNotFoundError):
            raise
        except Exception as exc:  # torch.load's pickling / zip errors
            raise ValueError(f"{self.path}: not a loadable checkpoint ({_reason(exc)})") from exc
        self._module = ModuleBackend(model, self._spec, self.path)
        self.input_shape: tuple[int | None, ...] = self._module.input_shape
        self.input_layout = self._module.input_layout
        self.output_names = self._module.output_names

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        return self._module.run(tensor)

    def read_spec(self) -> ModelSpec | None:
        return self._spec


# --------------------------------------------------------------------------- selection


def open_backend(path: str | os.PathLike[str], threads: int | None = None) -> Backend:
    """The backend for ``path`` by its extension: ``.onnx``, ``.tflite`` or ``.pt``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        hint = " (an UltraFace .pth state dict: build a checkpoint with `edgedet import-ultraface`)"
        raise ValueError(
            f"{path}: unknown model type {suffix or '(no extension)'!r}; expected one of {list(SUFFIXES)}"
            + (hint if suffix == ".pth" else "")
        )
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if suffix == ".onnx":
        return OnnxBackend(path, threads)
    if suffix == ".tflite":
        return TfliteBackend(path, threads)
    return TorchBackend(path, threads)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__

"""LiteRT / TFLite backend (ai-edge-litert, then tflite-runtime, then TensorFlow's ``tf.lite`` on a desktop).

The model's spec is read from the file's own ``"edgedet"`` metadata, else from a ``MODEL.json`` sidecar
(older exports); the file wins when both are there (:mod:`edgedet.edge.runtime.backends.tflite_metadata`).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.runtime.backends.base import check_path, default_threads, failure_reason, infer_layout
from edgedet.edge.runtime.backends.tflite_metadata import read_tflite_spec, sidecar_path
from edgedet.edge.runtime.quant import QuantParams, dequantize, quantize

__all__ = ["RUNTIMES", "TfliteBackend", "interpreter_class"]

RUNTIMES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow")


def interpreter_class() -> type:
    """LiteRT, then tflite_runtime, then TensorFlow's ``tf.lite`` (desktop)."""
    for module_name in RUNTIMES:
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
    integer type (``input_dtype``, as :meth:`edgedet.edge.runtime.preprocess.Preprocessor.quantize_to` makes it with
    ``input_quant``) is taken as quantised and passed through.
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        self.path = check_path(path, ".tflite")
        interpreter = interpreter_class()
        try:
            self._interp = interpreter(model_path=str(self.path), num_threads=int(threads or default_threads()))
            self._interp.allocate_tensors()
        except Exception as exc:  # the runtimes raise ValueError or RuntimeError with their own text
            raise ValueError(f"{self.path}: not a loadable TFLite model ({failure_reason(exc)})") from exc
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
                    f"{list(self.input_shape)} ({failure_reason(exc)})"
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
        """``model.tflite`` -> ``model.json``: where files exported before the spec moved inside keep it."""
        return sidecar_path(self.path)

    def read_spec(self) -> ModelSpec | None:
        """The spec in the file's ``"edgedet"`` metadata; else the :attr:`sidecar`'s (older exports); else
        ``None``. The file wins over a sidecar that says something else (which is ignored with a warning)."""
        return read_tflite_spec(self.path)

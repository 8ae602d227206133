"""ONNX Runtime backend; the model's spec is read from ``metadata_props`` (key ``"edgedet"``)."""

from __future__ import annotations

import os

import numpy as np

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.runtime.backends.base import check_path, failure_reason, infer_layout

__all__ = ["OnnxBackend"]

_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class OnnxBackend:
    """ONNX Runtime on the CPU (or the given ``providers``); ``threads`` sets intra-op parallelism."""

    def __init__(
        self, path: str | os.PathLike[str], threads: int | None = None, providers: list[str] | None = None
    ) -> None:
        self.path = check_path(path, ".onnx")
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
            raise ValueError(f"{self.path}: not a loadable ONNX model ({failure_reason(exc)})") from exc
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

"""Inference backends behind one small interface, chosen by the model file's suffix from a table.

Every backend has ``path``, ``input_shape`` (``None`` for a dynamic dimension), ``input_layout``
(``"nchw"`` or ``"nhwc"``), ``output_names``, ``run(tensor) -> {name: float32 array}`` and
``read_spec() -> ModelSpec | None``. :data:`BACKENDS` maps a suffix to ``"module:Class"``; the module is
imported only when such a file is opened, so a device needs only the runtime it uses, and ``edge`` never
imports torch, TensorFlow or the training package (a ``.pt`` checkpoint is opened by a class that lives
in ``edgedet.training``, named here only as a string).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from edgedet.edge.runtime.backends.base import Backend, default_threads, infer_layout

__all__ = ["BACKENDS", "SUFFIXES", "Backend", "default_threads", "infer_layout", "open_backend"]

BACKENDS: dict[str, str] = {
    ".onnx": "edgedet.edge.runtime.backends.onnx:OnnxBackend",
    ".tflite": "edgedet.edge.runtime.backends.tflite:TfliteBackend",
    ".pt": "edgedet.training.torch_backend:TorchBackend",  # desktop only: torch and the training package
}
SUFFIXES = tuple(BACKENDS)


def _backend_class(suffix: str, path: Path) -> type:
    module_name, class_name = BACKENDS[suffix].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if suffix != ".pt":
            raise
        raise ImportError(
            f"{path}: a .pt checkpoint needs torch and the training package (desktop only); "
            "export it to ONNX or TFLite for a device"
        ) from exc
    return getattr(module, class_name)


def open_backend(path: str | os.PathLike[str], threads: int | None = None) -> Backend:
    """The backend for ``path`` by its extension: ``.onnx``, ``.tflite`` or ``.pt``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in BACKENDS:
        hint = " (an UltraFace .pth state dict: build a checkpoint with `edgedet import-ultraface`)"
        raise ValueError(
            f"{path}: unknown model type {suffix or '(no extension)'!r}; expected one of {list(SUFFIXES)}"
            + (hint if suffix == ".pth" else "")
        )
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    return _backend_class(suffix, path)(path, threads)

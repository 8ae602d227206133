"""What every inference backend shares: the :class:`Backend` protocol, thread and layout defaults, checks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from edgedet.edge.core.model_spec import ModelSpec

__all__ = ["Backend", "check_path", "default_threads", "failure_reason", "infer_layout"]


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


def check_path(path: str | os.PathLike[str], suffix: str) -> Path:
    """``path`` as a ``Path``, or a clear error when it is missing, not a file or not a ``suffix`` file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if not path.is_file():
        raise ValueError(f"{path}: not a file (expected a {suffix} model)")
    if path.suffix.lower() != suffix:
        raise ValueError(f"{path}: expected a {suffix} file")
    return path


def failure_reason(exc: BaseException, limit: int = 300) -> str:
    """One line for an exception a runtime raised: its type and its first ``limit`` characters."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}" if text else type(exc).__name__

"""Open a training checkpoint for export, turning every way it can be wrong into a ``ValueError``."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from edgedet.edge.core.model_spec import ModelSpec

__all__ = ["check_input_size", "open_checkpoint"]


def open_checkpoint(path: str | os.PathLike[str], head: str | None = None) -> tuple[nn.Module, ModelSpec]:
    """``(model in eval mode, spec)`` from ``path``; ``head`` (``"ssd"``/``"centernet"``) is checked when given.

    A missing, truncated or foreign file, weights that do not fit the spec, or another head than
    ``head`` raise a ``ValueError`` naming the file and the problem.
    """
    from edgedet.training.checkpoint import load_checkpoint

    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: checkpoint not found")
    try:
        model, spec, _ = load_checkpoint(path)
    except ValueError:
        raise
    except Exception as exc:  # anything torch.load or the model build lets through
        raise ValueError(f"{path}: not a loadable checkpoint ({type(exc).__name__}: {exc})") from exc
    if head is not None and spec.head != head:
        raise ValueError(f"{path}: a {spec.head!r} checkpoint, but a {head!r} model was expected")
    return model.eval(), spec


def check_input_size(spec: ModelSpec, input_size: tuple[int, int] | None, source: str) -> None:
    """Raise unless ``input_size`` (``(width, height)``, ``None`` = the spec's) is the size the model was built for."""
    if input_size is None or tuple(input_size) == spec.input_size:
        return
    w, h = spec.input_size
    raise ValueError(
        f"{source}: the model was built for a {w}x{h} input (its priors / output grid depend on it), "
        f"not {input_size[0]}x{input_size[1]}; build a checkpoint for that size (e.g. "
        f"`edgedet import-ultraface --input-size {input_size[0]}x{input_size[1]}`, or train at that size)"
    )

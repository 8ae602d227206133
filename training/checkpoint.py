"""Training checkpoints: one ``torch.save`` dict carrying the weights and the model's spec.

Layout: ``{"format": "edgedet-checkpoint", "version": 1, "model": state_dict, "spec": spec.to_dict(),
**extra}``; ``extra`` is anything else worth keeping (epoch, metrics, optimizer state), all of it
loadable with ``weights_only=True``. Writes are atomic (temp file in the same folder + ``os.replace``),
so an interrupted save never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.training.model_factory import build_model

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "check_state_dict", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "edgedet-checkpoint"
CHECKPOINT_VERSION = 1
_RESERVED = ("format", "version", "model", "spec")
_SHOW = 8  # how many offending keys an error message lists


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, spec: ModelSpec, /, **extra: Any) -> Path:
    """Write ``model``'s weights and ``spec`` (plus ``extra`` entries) to ``path`` atomically."""
    clash = sorted(set(extra) & set(_RESERVED))
    if clash:
        raise ValueError(f"save_checkpoint: extra keys {clash} are reserved")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": model.state_dict(),
        "spec": spec.to_dict(),
        **extra,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _keys(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Any], source: str) -> None:
    """Raise a ``ValueError`` naming ``source`` unless ``state_dict`` fits ``model`` exactly."""
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{source}: expected a state dict (a mapping of names to tensors)")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{k} {list(state_dict[k].shape)} vs {list(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_keys(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches (file vs model): {_keys(mismatched)}")
    if problems:
        raise ValueError(f"{source}: weights do not fit the model; " + "; ".join(problems))


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelSpec, dict[str, Any]]:
    """Load ``path`` (``weights_only=True``) -> ``(model in eval mode, spec, checkpoint dict)``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file: pickle, zip, EOF, runtime
        raise ValueError(f"{path}: truncated or not a torch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an edgedet checkpoint (no format={CHECKPOINT_FORMAT!r} entry)")
    missing = [k for k in _RESERVED if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks key(s) {missing}")
    if ckpt["version"] != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {ckpt['version']!r} is not supported (expected 1)")
    spec = ModelSpec.from_dict(ckpt["spec"], source=f"{path}: spec")
    try:
        model = build_model(spec)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    check_state_dict(model, ckpt["model"], str(path))
    model.load_state_dict(ckpt["model"])
    model.to(map_location)
    return model.eval(), spec, ckpt

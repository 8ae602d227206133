"""Import the published UltraFace ``version-slim`` weights (a legacy ``torch.save`` state dict) as an
edgedet checkpoint. Our :class:`~edgedet.training.ssd_model.SSD` uses UltraFace's module names, so the state
dict loads as it is (strict); only the priors depend on the input size, and they come from the spec.
"""

from __future__ import annotations

import os
import sys
from argparse import Namespace
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import torch

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.training.checkpoint import check_state_dict, save_checkpoint
from edgedet.training.ssd_model import SSD

__all__ = ["cli", "import_ultraface", "parse_input_size"]

_FIRST_CONV = "base_net.0.0.weight"


def parse_input_size(text: str) -> tuple[int, int]:
    """``"320x240"`` -> ``(320, 240)``."""
    parts = text.lower().split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"input size: expected WIDTHxHEIGHT such as 320x240, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"input size: expected positive sides, got {text!r}")
    return w, h


def import_ultraface(
    pth_path: str | os.PathLike[str], out_path: str | os.PathLike[str], input_size: tuple[int, int] = (320, 240)
) -> ModelSpec:
    """Load UltraFace slim weights from ``pth_path``, save an edgedet checkpoint to ``out_path``.

    The base width is read from the first convolution (the published slim has 16); everything else
    must match :meth:`ModelSpec.ultraface` exactly, or a ``ValueError`` names the file and the keys.
    """
    pth_path = Path(pth_path)
    if not pth_path.is_file():
        raise ValueError(f"{pth_path}: not a file")
    try:
        state = torch.load(pth_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip, EOF and runtime errors all mean "not a usable torch file"
        raise ValueError(f"{pth_path}: truncated or not a torch file ({type(exc).__name__}: {exc})") from exc
    source = f"{pth_path}: not an UltraFace slim state dict"
    if not isinstance(state, Mapping) or not isinstance(state.get(_FIRST_CONV), torch.Tensor):
        raise ValueError(f"{source} (no {_FIRST_CONV!r} tensor)")
    spec = replace(ModelSpec.ultraface(*input_size), base_channel=int(state[_FIRST_CONV].shape[0]))
    model = SSD(spec)
    check_state_dict(model, state, source)
    model.load_state_dict(state)
    save_checkpoint(out_path, model.eval(), spec, source=str(pth_path), imported_from="ultraface-slim")
    return spec


def cli(args: Namespace) -> int:
    """``edgedet import-ultraface``: ``args.pth``, ``args.out``, ``args.input_size`` ("320x240" or None)."""
    try:
        size = parse_input_size(args.input_size) if args.input_size else (320, 240)
        spec = import_ultraface(args.pth, args.out, size)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    n = len(spec.priors.generate(spec.input_size)) if spec.priors is not None else 0
    print(f"wrote {args.out}: UltraFace slim (base_channel {spec.base_channel}), {size[0]}x{size[1]} input, {n} priors")
    return 0

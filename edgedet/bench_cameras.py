"""``edgedet bench cameras``: :mod:`edgedet.edge.bench.cameras_bench`, with a default model.

Without ``--model`` the benchmark builds one here (the bench layer may not import the train and convert
extras; this top layer may): an untrained UltraFace-slim SSD (``ModelSpec.ultraface(320, 240)``,
base_channel 16, torch's default initialisation, seed 0) exported to ONNX with its spec in the metadata,
through the same exporter as ``edgedet export``. It has the published UltraFace slim's architecture, so the
same inference cost per frame at 320x240; being untrained it finds nothing (no score reaches 0.7), so the
tracker, the events and the drawn boxes cost next to nothing. Nothing from ``../shared``, no training.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

from edgedet.edge.bench import cameras_bench

__all__ = ["cli", "untrained_slim_ssd"]

INPUT_SIZE = (320, 240)


def untrained_slim_ssd(folder: Path, input_size: tuple[int, int] = INPUT_SIZE) -> Path:
    """``folder/slim-ssd-untrained-WxH.onnx`` (written now); ``ValueError`` without torch / onnx."""
    try:
        import torch

        from edgedet.convert.onnx_export import export_onnx
        from edgedet.edge.core.model_spec import ModelSpec
        from edgedet.training.checkpoint import save_checkpoint
        from edgedet.training.ssd_model import SSD
    except ImportError as exc:
        raise ValueError(
            f"--model: required without the train and convert extras (building the default model needs {exc.name})"
        ) from None
    torch.manual_seed(0)
    spec = ModelSpec.ultraface(*input_size)
    model = SSD(spec).eval()
    w, h = input_size
    ckpt = save_checkpoint(folder / f"slim-ssd-untrained-{w}x{h}.pt", model, spec, source="untrained (bench cameras)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings about shapes turned into constants
        return export_onnx(ckpt, folder / f"slim-ssd-untrained-{w}x{h}.onnx")


def cli(args: argparse.Namespace) -> int:
    """``edgedet bench cameras``: the benchmark on ``--model``, or on :func:`untrained_slim_ssd`."""
    if args.model:
        return cameras_bench.cli(args)
    with tempfile.TemporaryDirectory(prefix="edgedet-cameras-model-") as tmp:
        print("building the default model: an untrained UltraFace-slim SSD at 320x240 ...", file=sys.stderr, flush=True)
        path = untrained_slim_ssd(Path(tmp))
        args.model = str(path)
        args.model_note = (
            f"{path.name}: UltraFace-slim SSD (base_channel 16) at 320x240, untrained (seed 0), ONNX fp32; "
            "the published slim model's inference cost, no detections"
        )
        return cameras_bench.cli(args)

"""``edgedet bench compare``: paired, interleaved latency of models against a base model.

``compare`` answers "is B faster than A on this machine?" where timings drift (a shared or throttled CPU):
rounds of ``--runs`` back-to-back runs of every model in turn, all on the same input shape, and for each model
against ``--base`` the median of the per-round ratios and in how many rounds it was faster
(:func:`bench_paired`). Drift hits both sides of a round alike, so the paired ratio holds where separately
measured medians swing by 20 %.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgedet.edge.bench.figures import print_figures
from edgedet.edge.runtime.backends import open_backend
from edgedet.edge.runtime.progress import progress
from edgedet.edge.runtime.quant import quantize

__all__ = ["bench_paired", "cli", "print_paired"]


def bench_paired(
    base: str | os.PathLike[str], models: Sequence[str | os.PathLike[str]], threads: int = 1, rounds: int = 40,
    runs: int = 20, warmup: int = 20,
) -> list[dict[str, Any]]:  # fmt: skip
    """Interleaved latency of ``base`` and ``models`` (backend ``run`` on one random pre-processed input,
    already quantised for an integer-input model, as :class:`~edgedet.edge.runtime.detector.Detector` passes
    it): per model,
    the median over rounds of each round's median (ms) and, against ``base``, the median per-round ratio
    and the number of rounds it was faster. The base's own row comes first."""
    if rounds < 1 or runs < 1:
        raise ValueError(f"rounds and runs must be >= 1, got {rounds} and {runs}")
    paths = [str(base), *map(str, models)]
    backends = [open_backend(p, threads=threads) for p in paths]
    inputs = []
    for path, backend in zip(paths, backends, strict=True):
        shape = backend.input_shape
        if any(d is None for d in shape):
            raise ValueError(f"{path}: input shape {list(shape)} is not static; compare needs a fixed size")
        x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
        quant = getattr(backend, "input_quant", None)  # an int8-input model gets int8, as the Detector passes it
        inputs.append(x if quant is None else quantize(x, quant, backend.input_dtype))
    for backend, x in zip(backends, inputs, strict=True):
        for _ in range(warmup):
            backend.run(x)
    per_round = np.zeros((len(paths), rounds))
    for r in progress(range(rounds), rounds, "rounds"):
        for i, (backend, x) in enumerate(zip(backends, inputs, strict=True)):
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                backend.run(x)
                times.append(time.perf_counter() - start)
            per_round[i, r] = float(np.median(times)) * 1e3
    ratios = per_round / per_round[0]
    return [
        {
            "model": path,
            "median_ms": float(np.median(per_round[i])),
            "min_round_ms": float(per_round[i].min()),
            "ratio_vs_base": float(np.median(ratios[i])),
            "faster_rounds": int((per_round[i] < per_round[0]).sum()),
            "rounds": rounds,
        }
        for i, path in enumerate(paths)
    ]


def print_paired(rows: Sequence[Mapping[str, Any]], threads: int) -> None:
    print(f"paired latency, {threads} thread(s), {rows[0]['rounds']} interleaved rounds (medians):")
    for i, row in enumerate(rows):
        vs = "base" if i == 0 else (
            f"{row['ratio_vs_base']:.3f}x base, faster in {row['faster_rounds']}/{row['rounds']} rounds"
        )  # fmt: skip
        print(f"  {Path(row['model']).name:36s} {row['median_ms']:7.3f} ms  {vs}")


def cli(args: Any) -> int:
    """``edgedet bench compare --base FP32 --models INT8...``."""
    rows = bench_paired(args.base, args.models, args.threads, args.rounds, args.runs)
    return print_figures(rows, lambda r: print_paired(r, args.threads), args.json)

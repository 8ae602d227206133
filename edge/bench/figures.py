"""Summary figures of timed runs (medians throughout) and how a bench subcommand prints them."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["median", "p90", "parse_size", "print_figures", "timing_summary"]


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (NaN for none)."""
    return float(np.median(np.asarray(values, dtype=np.float64))) if len(values) else float("nan")


def p90(values: Sequence[float]) -> float:
    """The 90th percentile of ``values`` (NaN for none)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), 90)) if len(values) else float("nan")


def parse_size(text: str, minimum: int | None = None) -> tuple[int, int]:
    """``"640x480"`` -> ``(640, 480)`` for a bench's ``--size``; with ``minimum``, each side at least that."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size: expected WIDTHxHEIGHT, e.g. 640x480, got {text!r}") from None
    if minimum is not None and (w < minimum or h < minimum):
        what = "positive sizes" if minimum == 1 else f"at least {minimum}x{minimum}"
        raise ValueError(f"--size: expected {what}, got {text!r}")
    return w, h


def timing_summary(times_ms: Sequence[float]) -> dict[str, float]:
    """``median``, ``p90`` and ``min`` of ``times_ms``."""
    return {"median": median(times_ms), "p90": p90(times_ms), "min": float(np.min(times_ms))}


def print_figures(figures: Any, show: Callable[[Any], None], as_json: bool) -> int:
    """Print ``figures`` with ``show`` (and as one JSON line with ``as_json``); exit status 0."""
    show(figures)
    if as_json:
        print(json.dumps(figures))
    return 0

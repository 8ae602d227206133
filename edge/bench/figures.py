"""Summary figures of timed runs (medians throughout) and how a bench subcommand prints them."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["median", "p90", "print_figures", "timing_summary"]


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (NaN for none)."""
    return float(np.median(np.asarray(values, dtype=np.float64))) if len(values) else float("nan")


def p90(values: Sequence[float]) -> float:
    """The 90th percentile of ``values`` (NaN for none)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), 90)) if len(values) else float("nan")


def timing_summary(times_ms: Sequence[float]) -> dict[str, float]:
    """``median``, ``p90`` and ``min`` of ``times_ms``."""
    return {"median": median(times_ms), "p90": p90(times_ms), "min": float(np.min(times_ms))}


def print_figures(figures: Any, show: Callable[[Any], None], as_json: bool) -> int:
    """Print ``figures`` with ``show`` (and as one JSON line with ``as_json``); exit status 0."""
    show(figures)
    if as_json:
        print(json.dumps(figures))
    return 0

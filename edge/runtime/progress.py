"""One progress bar helper for long loops (evaluation, calibration, benchmarks): tqdm when it is installed,
the plain iterable otherwise (the ``edge`` extra does not need tqdm)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["progress"]


def progress(items: Iterable[Any], total: int, desc: str, enabled: bool = True) -> Iterable[Any]:
    """``items`` under a tqdm bar (when tqdm is installed and ``enabled``)."""
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, total=total, desc=desc, leave=False, dynamic_ncols=True)

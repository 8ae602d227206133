"""A warning that repeats (a broker down, a disk full, file descriptors short) logged at most once every
``every`` seconds."""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["Throttled"]


class Throttled:
    """Log a repeating condition to ``logger`` at most once every ``every`` seconds."""

    def __init__(self, logger: logging.Logger, every: float = 30.0) -> None:
        self.logger = logger
        self.every = every
        self._last = -1e9

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self.logger.warning(message, *args)

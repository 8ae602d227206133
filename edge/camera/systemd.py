"""systemd notifications over ``$NOTIFY_SOCKET`` (stdlib only): ``READY=1``, ``STOPPING=1``, ``STATUS=...``
and watchdog pings for a unit with ``Type=notify`` and ``WatchdogSec=``. Without systemd they do nothing."""

from __future__ import annotations

import os
import socket
import time

__all__ = ["Watchdog", "notify"]


def notify(message: str) -> bool:
    """Send ``message`` to systemd; False when not run by systemd (or the socket is gone)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True


class Watchdog:
    """Pings ``WATCHDOG=1`` at half the unit's ``WatchdogSec`` when :meth:`ping` is called often enough."""

    def __init__(self) -> None:
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        enabled = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        self.interval = int(usec) / 2e6 if enabled else 0.0
        self._last = 0.0

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def ping(self) -> None:
        now = time.monotonic()
        if self.enabled and now - self._last >= self.interval:
            self._last = now
            notify("WATCHDOG=1")

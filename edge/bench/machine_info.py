"""What a benchmark ran on: CPU model, cores, memory, OS, Python and the runtime versions.

Everything is read from ``/proc``, ``platform`` and installed package metadata; no runtime is imported
(a package's version comes from its metadata), so this is cheap and safe on a device.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "cpu_model", "machine_info", "os_name", "package_versions"]

# label -> distributions providing it, first installed wins
PACKAGES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "litert": ("ai-edge-litert", "tflite-runtime"),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python"),
    "torch": ("torch",),
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
}


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's name: ``model name`` (x86, most ARM), else ``Model`` / ``Hardware`` (Raspberry Pi), else the
    device-tree model (Jetson), else :func:`platform.processor`."""
    text = _read("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(key.strip().lower(), value.strip())
    for key in ("model name", "model", "hardware", "cpu model", "processor"):
        value = fields.get(key, "")
        if value and not value.isdigit():  # x86's "processor : 0" is an index, not a name
            return value
    tree = _read("/proc/device-tree/model").strip("\x00 \n")
    return tree or platform.processor() or platform.machine() or "unknown"


def os_name() -> str:
    """``PRETTY_NAME`` from ``/etc/os-release`` plus the kernel, else :func:`platform.platform`."""
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return f"{line.split('=', 1)[1].strip().strip(chr(34))} (kernel {platform.release()})"
    return platform.platform()


def package_versions() -> dict[str, str | None]:
    """Version of each of :data:`PACKAGES`, ``None`` when not installed."""
    out: dict[str, str | None] = {}
    for label, dists in PACKAGES.items():
        out[label] = None
        for dist in dists:
            try:
                out[label] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def _memory_gb() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024**2, 1)
    return None


def machine_info() -> dict[str, Any]:
    """A JSON-ready description of this machine and its software."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gb": _memory_gb(),
        "os": os_name(),
        "python": platform.python_version(),
        "packages": package_versions(),
    }

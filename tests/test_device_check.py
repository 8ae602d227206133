"""The device check on emulated arm64 (deploy/device-check.sh) end to end.

Runs where arm64 binaries can be run through qemu-user and binfmt_misc (an x86_64 Linux host, as root,
with binfmt_misc in the kernel): the script installs what it misses, builds or reuses its cached arm64
rootfs (``~/.cache/edgedet/device-check`` or ``$EDGEDET_DEVICE_CHECK_CACHE``, shared between runs so a
CI machine is warm after its first run), installs the ``edge`` extra from aarch64 wheels, runs
detect / bench / install-rpi.sh / the daemon, and compares the detections with x86's. Elsewhere the
test skips with the reason. Measured on 2 busy cores: 5-7 minutes warm, 10 cold.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "deploy" / "device-check.sh"
EXIT_CANNOT = 3  # the script's "arm64 cannot be emulated here"
# a static aarch64 ELF that exits with status 42 (the same probe as the script's)
ARM64_PROBE = base64.b64decode(
    "f0VMRgIBAQAAAAAAAAAAAAIAtwABAAAAeABAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAEAAOAABAAAAAAAAAAEAAAAFAAAAAAAAAAAAAAAAAE"
    "AAAAAAAAAAQAAAAAAAhAAAAAAAAACEAAAAAAAAAAAQAAAAAAAAQAWA0qgLgNIBAADU"
)
MODELS = ("onnx fp32", "onnx int8", "tflite fp32", "tflite int8", "camera tflite int8")


def _why_not_here() -> str | None:
    """Why the check cannot run on this machine, before trying anything; ``None`` when it may."""
    if sys.platform != "linux":
        return "needs Linux (qemu-user through binfmt_misc)"
    if platform.machine() != "x86_64":
        return f"emulates arm64 on x86_64 and compares with it; this host is {platform.machine()}"
    if os.geteuid() != 0:
        return "needs root (binfmt_misc, chroot, mounts): run the suite as root, or sudo make device-check"
    if "binfmt_misc" not in Path("/proc/filesystems").read_text():
        return "the kernel has no binfmt_misc"
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if not entry.exists() and not (shutil.which("update-binfmts") or shutil.which("apt-get")):
        return "no qemu-aarch64 binfmt entry, and neither update-binfmts nor apt-get to make one"
    return None


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_device_check_on_emulated_arm64(tmp_path):
    reason = _why_not_here()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "device-check"
    log = tmp_path / "device-check.log"

    # pre-flight: tools, binfmt registration, the script's own probe binary
    pre = subprocess.run(
        ["bash", str(SCRIPT), "--preflight", "--out", str(out)], capture_output=True, text=True, timeout=600
    )
    if pre.returncode == EXIT_CANNOT:
        pytest.skip(f"arm64 cannot be emulated here: {pre.stderr.strip()}")
    assert pre.returncode == 0, pre.stdout + pre.stderr
    probe = tmp_path / "arm64-probe"
    probe.write_bytes(ARM64_PROBE)
    probe.chmod(0o755)
    ran = subprocess.run([str(probe)], timeout=60)
    if ran.returncode != 42:
        pytest.skip(f"binfmt is registered but a trivial arm64 binary does not run (status {ran.returncode})")

    env = {**os.environ, "HOST_PYTHON": sys.executable}  # the x86 side: this interpreter's edgedet
    with log.open("w") as f:
        proc = subprocess.run(
            ["bash", str(SCRIPT), "--out", str(out)], stdout=f, stderr=subprocess.STDOUT, timeout=1700, env=env
        )
    if proc.returncode == EXIT_CANNOT:
        pytest.skip(f"device check cannot run here: {_tail(log, 3)}")
    assert proc.returncode == 0, f"device-check.sh exited {proc.returncode}:\n{_tail(log)}"

    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"], summary["table"]
    rows = {c["name"]: c for c in summary["cases"]}
    for model in MODELS:
        # the same pixels into the network: the runtimes agree within the strict criteria, no allowance
        strict = rows[f"{model} \u00b7 input-size"]
        assert strict["status"] == "ok" and strict["images"] > 0, strict
        # photos are resized on each side: allowed to differ as much as the resize makes them (same count)
        photos = rows[f"{model} \u00b7 photos"]
        assert photos["ok"] and photos["images"] > 0, photos
    for row in rows.values():
        assert row["detections_x86"] == row["detections_arm64"] or row["borderline"], row
    assert summary["bench"]["ok"] and len(summary["bench"]["models"]) == 2, summary["bench"]
    run = summary["run"]
    assert run["arm64"]["machine"] == "aarch64", run["arm64"]
    assert run["install_rpi"]["status"] == 0, run["install_rpi"]
    assert any("skipped" in line for line in run["install_rpi"]["messages"]), run["install_rpi"]

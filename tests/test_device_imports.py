"""`edgedet camera` and `edgedet detect` on ONNX/TFLite models never import torch or TensorFlow: both run
for real in a subprocess that reports ``sys.modules`` when it exits."""

import json
import signal
import subprocess
import sys
import time

from conftest import shared_path

HEAVY = ("torch", "tensorflow", "edgedet.training", "edgedet.convert")
WRAPPER = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('HEAVY', sorted(m for m in {heavy!r} if m in sys.modules), flush=True))\n"
    "from edgedet.cli import main\n"
    "sys.exit(main({argv!r}))\n"
)


def run_cli(argv, until=None, timeout=60.0):
    code = WRAPPER.format(heavy=HEAVY, argv=argv)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if until is not None:
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_camera_on_onnx_and_detect_on_tflite_stay_light(tmp_path):
    uf = shared_path("models", "ultraface")
    events = tmp_path / "events.jsonl"
    argv = [
        "camera",
        "--model",
        str(uf / "version-slim-320.onnx"),
        "--spec",
        "ultraface",
        "--source",
        str(uf / "images"),
        "--events",
        str(events),
    ]
    rc, out, err = run_cli(argv, until=lambda: events.exists() and events.stat().st_size > 0)
    assert rc == 0, err[-2000:]
    assert any(json.loads(line).get("detections") for line in events.read_text().splitlines())
    assert "HEAVY []" in out, out + err[-2000:]

    rc, out, err = run_cli(
        [
            "detect",
            "--model",
            str(uf / "version-slim-320_without_postprocessing.tflite"),
            "--spec",
            "ultraface",
            str(uf / "images" / "1.jpg"),
            "--json",
            str(tmp_path / "d.json"),
        ]
    )
    assert rc == 0, err[-2000:]
    assert json.loads((tmp_path / "d.json").read_text())[0]["detections"]
    assert "HEAVY []" in out, out + err[-2000:]

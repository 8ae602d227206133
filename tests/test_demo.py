"""`edgedet demo --quick` runs every stage for real and says where everything is."""

import json
import os
import subprocess
import sys

import cv2
import pytest


@pytest.mark.slow
def test_quick_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "EDGEDET_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "edgedet.cli", "demo", "--quick", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "demo_summary.json").read_text())
    status = {s["stage"]: s["status"] for s in summary}
    assert list(status.values()) == ["ok"] * 6, summary
    video = next(s for s in summary if s["stage"] == "tracking + zones on a generated video")["outputs"]
    cap = cv2.VideoCapture(video["annotated"])
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == video["frames"] == 20  # 2 s at 10 fps
    events = [json.loads(line) for line in open(video["events_file"])]
    assert len(events) == sum(video["events"].values())  # every event counted was written
    assert {e["camera"] for e in events} <= {"demo"} and video["events"].get("new", 0) == video["events"].get("end", 0)
    assert isinstance(video["MOTA"], float) and "IDF1" in video and "MOTA:" in proc.stdout
    assert "everything is under" in proc.stdout
    lines = [line.strip() for line in proc.stdout.splitlines()]
    assert "PosixPath(" not in proc.stdout  # where everything is, as plain paths, one file per line
    assert any(line.startswith("onnx: ") and line.endswith("last.onnx") for line in lines), proc.stdout[-3000:]

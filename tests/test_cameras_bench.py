"""``edgedet bench cameras``: a very short real run (2 cameras in one daemon, then 2 daemons, real
``edgedet camera`` processes over HTTP) whose figures must be consistent; no timing is asserted."""

from __future__ import annotations

import json

import pytest

from edgedet.cli import build_parser, main
from edgedet.edge.bench import cameras_bench

ARGV = [
    "bench",
    "cameras",
    "--cameras",
    "2",
    "--seconds",
    "2",
    "--warmup",
    "1",
    "--clients",
    "3",
    "--size",
    "320x240",
    "--unique-s",
    "1",
    "--sample-s",
    "0.5",
]


def test_the_cli_parses_through_edgedets_parser():
    args = build_parser().parse_args([*ARGV, "--json", "x.json"])
    assert args._command.handler == "edgedet.bench_cameras:cli"
    assert (args.cameras, args.seconds, args.clients, args.size, args.json) == (2, 2.0, 3, "320x240", "x.json")
    defaults = build_parser().parse_args(["bench", "cameras"])
    assert defaults.cameras == 4 and defaults.clients == 10 and defaults.source_fps == 15.0
    assert defaults.model is None and defaults.cores == 2 and defaults.seconds * 3 + defaults.warmup * 3 <= 180


def test_metrics_are_read_per_camera():
    text = (
        "# HELP edgedet_frames_processed_total Frames run through the detector.\n"
        "# TYPE edgedet_frames_processed_total counter\n"
        'edgedet_frames_processed_total{camera="a"} 12.0\n'
        'edgedet_frames_processed_total{camera="b"} 3.0\n'
        'edgedet_frames_captured_total{camera="a"} 14.0\n'
        'edgedet_inference_latency_seconds_sum{camera="a"} 0.5\n'
        'edgedet_inference_latency_seconds_count{camera="a"} 12.0\n'
        'edgedet_inference_latency_seconds_bucket{camera="a",le="0.01"} 3.0\n'
        'edgedet_stage_latency_seconds_sum{camera="a",stage="inference"} 0.4\n'
        "edgedet_uptime_seconds 5.0\n"
    )
    assert cameras_bench.parse_metrics(text) == {
        "a": {"processed": 12.0, "captured": 14.0, "latency_sum": 0.5, "latency_count": 12.0},
        "b": {"processed": 3.0},
    }


def test_configs_one_camera_at_the_top_several_as_a_list():
    common = {"token": "t" * 12, "threads": 2, "source_fps": 15.0, "stream_clients": 10}
    one = cameras_bench.daemon_config("m.onnx", [("cam0", "a.avi")], **common)
    assert (one["name"], one["source"], one["loop"], one["source_fps"]) == ("cam0", "a.avi", True, 15.0)
    assert one["http"] == {"enabled": True, "port": 0, "token": "t" * 12, "stream_clients": 10}
    several = cameras_bench.daemon_config("m.onnx", [("cam0", "a.avi"), ("cam1", "b.avi")], **common)
    assert several["cameras"] == [{"name": "cam0", "source": "a.avi"}, {"name": "cam1", "source": "b.avi"}]
    assert "source" not in several and "name" not in several
    pytest.importorskip("pydantic")
    from edgedet.edge.camera.config import DaemonConfig

    for config in (one, several):  # what the daemons will be given is a valid config
        cfg = DaemonConfig.model_validate(config)
        assert cfg.http.stream_clients == 10 and cfg.threads == 2


@pytest.mark.slow
def test_a_short_run_gives_consistent_figures(tmp_path, capsys):
    pytest.importorskip("torch", reason="the default model is built with torch (train extra)")
    pytest.importorskip("onnx", reason="the default model is exported with onnx (convert extra)")
    out = tmp_path / "sub" / "cameras.json"
    assert main([*ARGV, "--json", str(out)]) == 0  # edgedet's own parser and entry point, the default model
    text = capsys.readouterr().out
    figures = json.loads(out.read_text())
    fig = figures["figures"]
    assert set(fig) == {"one", "one_clients", "many"}
    assert fig["one"]["processes"] == fig["one_clients"]["processes"] == 1 and fig["many"]["processes"] == 2
    for phase in fig.values():
        assert set(phase["cameras"]) == {"cam0", "cam1"}
        for cam in phase["cameras"].values():
            assert cam["frames"] > 0 and cam["fps"] > 0 and cam["captured_fps"] > 0
            assert cam["latency_ms"] is not None and cam["latency_ms"] > 0
        fps = [c["fps"] for c in phase["cameras"].values()]
        assert phase["fps_total"] == pytest.approx(sum(fps))
        assert phase["fps_min"] == min(fps) and phase["fps_max"] == max(fps)
        memory = phase["memory"]
        assert memory["samples"] >= 2
        assert 0 < memory["rss_median_mb"] <= memory["rss_peak_mb"]
        assert 0 < memory["pss_median_mb"] <= memory["pss_peak_mb"]
        assert len(memory["rss_peak_per_process_mb"]) == phase["processes"]
        assert memory["rss_peak_mb"] <= sum(memory["rss_peak_per_process_mb"]) + 1e-6
        assert phase["cpu_cores"] > 0 and phase["other_cpu_cores"] >= 0
    clients = fig["one_clients"]["clients"]
    assert clients["n"] == 3 and clients["errors"] == []
    assert [c["camera"] for c in clients["per_client"]] == ["cam0", "cam1", "cam0"]
    assert all(c["fps"] > 0 and c["mb_per_s"] > 0 for c in clients["per_client"])
    assert len(figures["goals"]) == 3 and all(line.endswith(("met", "NOT met")) for line in figures["goals"])
    assert "UltraFace-slim SSD" in figures["meta"]["model"]
    assert "processed fps, all cameras" in text and "RSS summed" in text and f"wrote {out}" in text
    for line in figures["goals"]:
        assert line in text


def test_bad_input_is_refused_before_anything_runs(tmp_path, capsys):
    assert main(["bench", "cameras", "--model", str(tmp_path / "missing.onnx")]) == 1
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not read before the checks")
    assert main(["bench", "cameras", "--model", str(model), "--size", "640"]) == 1
    assert main(["bench", "cameras", "--model", str(model), "--cameras", "0"]) == 1
    assert main(["bench", "cameras", "--model", str(model), "--clients", "65"]) == 1
    assert main(["bench", "cameras", "--model", str(model), "--json", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "missing.onnx" in err and "--size" in err and "--clients" in err and "is a folder" in err

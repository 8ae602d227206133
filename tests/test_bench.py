"""``edgedet bench``: a real run over small exported models, the report files and their schema, the
Pareto front, MFLOPs / params from the graph, machine info, and no torch / TensorFlow on the ONNX path."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from tests_support import single_conv_onnx

from edgedet.edge.bench.accuracy_latency import MIN_RUNS, parse_threads, run_bench, short_names
from edgedet.edge.bench.machine_info import cpu_model, machine_info
from edgedet.edge.bench.model_stats import count_ops, model_stats
from edgedet.edge.bench.report import CSV_COLUMNS, pareto_front, write_csv, write_markdown
from edgedet.training.torch_backend import TorchBackend

REPO = Path(__file__).resolve().parents[1]
SHAPES = ("circle", "square", "triangle")  # the synthetic dataset's classes, so AP can be computed
LATENCY_KEYS = {"median", "p90", "min", "runs", "warmup"}
ROW_KEYS = {
    "name",
    "model",
    "head",
    "input",
    "runtime",
    "precision",
    "kind",
    "threads",
    "size_kb",
    "params",
    "mflops",
    "latency_ms",
    "frame_ms",
    "frame_p90_ms",
    "stages_ms",
    "AP50",
    "AP",
    "pareto",
}


# ------------------------------------------------------------------------------------------ small models


def _spec(head: str):
    from edgedet.edge.core.model_spec import ModelSpec
    from edgedet.edge.core.priors import PriorConfig

    return ModelSpec(
        head=head,
        labels=SHAPES,
        input_width=160,
        input_height=120,
        base_channel=8,
        priors=PriorConfig() if head == "ssd" else None,
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny SSD checkpoint, its ONNX and int8 ONNX exports, and a tiny CenterNet ONNX export."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from edgedet.convert.onnx_export import export_onnx
    from edgedet.convert.quantize_onnx import quantize_onnx
    from edgedet.training.checkpoint import save_checkpoint
    from edgedet.training.model_factory import build_model

    root = tmp_path_factory.mktemp("bench_models")
    out: dict[str, Path] = {}
    for head in ("ssd", "centernet"):
        torch.manual_seed(0)
        spec = _spec(head)
        ckpt = save_checkpoint(root / head / "tiny.pt", build_model(spec).eval(), spec)
        out[f"{head}_pt"] = ckpt
        out[f"{head}_onnx"] = export_onnx(ckpt, root / head / "tiny.onnx")
    calib = np.random.default_rng(0).uniform(-1, 1, (4, 3, 120, 160)).astype(np.float32)
    out["ssd_int8"] = quantize_onnx(out["ssd_onnx"], root / "ssd" / "tiny_int8.onnx", calib, show_progress=False)
    return out


# ------------------------------------------------------------------------------------------ the real run


@pytest.mark.slow
def test_bench_writes_the_report_with_every_stat(models, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEDET_CACHE", str(tmp_path / "cache"))
    files = [models["ssd_onnx"], models["ssd_int8"], models["centernet_onnx"]]
    result = run_bench(files, data="synthetic:8:val", out=tmp_path / "rep", threads="1", runs=50, progress=False)
    for key, name in (("report_md", "report.md"), ("report_json", "report.json"), ("report_csv", "report.csv")):
        assert result[key] == tmp_path / "rep" / name and result[key].is_file()
    assert result["pareto_png"] == tmp_path / "rep" / "pareto.png"
    assert result["pareto_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["problems"] == 0 and "Pareto:" in result["summary"]

    report = json.loads(result["report_json"].read_text())
    assert {"created", "machine", "settings", "summary", "results", "errors"} <= set(report)
    assert report["settings"]["runs"] == 50 and report["settings"]["threads"] == [1]
    rows = report["results"]
    assert [r["name"] for r in rows] == ["ssd/tiny.onnx", "ssd/tiny_int8.onnx", "centernet/tiny.onnx"]
    for row in rows:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["threads"] == 1 and row["runtime"] == "onnxruntime"
        assert set(row["latency_ms"]) == LATENCY_KEYS and row["latency_ms"]["runs"] == 50
        lat = row["latency_ms"]
        assert 0 < lat["min"] <= lat["median"] <= lat["p90"]
        assert row["frame_ms"] > 0 and set(row["stages_ms"]) == {"preprocess", "inference", "decode"}
        assert row["size_kb"] > 0 and row["params"] > 0 and row["mflops"] > 0
        assert 0.0 <= row["AP50"] <= 1.0 and 0.0 <= row["AP"] <= row["AP50"]
    fp32, int8, centernet = rows
    assert (fp32["precision"], int8["precision"], centernet["head"]) == ("fp32", "int8", "centernet")
    assert int8["params"] == fp32["params"] and int8["mflops"] == fp32["mflops"]  # same operations
    assert int8["size_kb"] < fp32["size_kb"]
    front = pareto_front([(r["frame_ms"], r["AP50"]) for r in rows])
    assert [i for i, r in enumerate(rows) if r["pareto"]] == front and front

    with result["report_csv"].open() as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0]) == CSV_COLUMNS and len(table) == 3
    assert float(table[1]["latency_median_ms"]) == pytest.approx(int8["latency_ms"]["median"], abs=1e-3)
    md = result["report_md"].read_text()
    assert "| model | runtime / precision |" in md and "## How to read it" in md and "`ssd/tiny_int8.onnx`" in md


@pytest.mark.slow
def test_a_bad_model_is_reported_and_the_others_still_run(models, tmp_path):
    bare = single_conv_onnx(tmp_path / "bare.onnx", cin=3, cout=4, k=3, stride=1, size=(120, 160))
    result = run_bench([bare, models["ssd_onnx"]], out=tmp_path / "rep", threads=[1], runs=MIN_RUNS, progress=False)
    report = json.loads(result["report_json"].read_text())
    assert [r["name"] for r in report["results"]] == ["tiny.onnx"]
    assert result["problems"] == 1 and "metadata" in report["errors"][0]["error"]
    assert result["pareto_png"] is None and "--data" in result["notes"]  # no AP50 without data
    assert report["results"][0]["AP50"] is None and "| n/a | n/a |" in result["report_md"].read_text()
    with pytest.raises(RuntimeError, match="no model could be benchmarked"):
        run_bench([bare], out=tmp_path / "rep2", threads=[1], progress=False)


@pytest.mark.slow
def test_edgedet_bench_on_onnx_imports_no_torch_tensorflow_or_onnx(models, tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        from edgedet.cli import main
        rc = main(["bench", "--models", {str(models["ssd_onnx"])!r}, {str(models["ssd_int8"])!r},
                   "--data", "synthetic:8:val", "--out", {str(tmp_path / "rep")!r}, "--threads", "1", "--runs", "50"])
        heavy = [m for m in ("torch", "tensorflow", "onnx", "training") if m in sys.modules]
        print("RESULT", rc, heavy)
        """
    )
    env = {"EDGEDET_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RESULT 0 []" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "rep" / "pareto.png").is_file() and "| model |" in proc.stdout


# ------------------------------------------------------------------------------------------ the Pareto front


def _brute_front(points):
    def ok(p):
        return p[0] is not None and p[1] is not None and math.isfinite(p[0]) and math.isfinite(p[1])

    front = []
    for i, p in enumerate(points):
        if not ok(p):
            continue
        beaten = any(
            ok(q) and q[0] <= p[0] and q[1] >= p[1] and (q[0] < p[0] or q[1] > p[1])
            for j, q in enumerate(points)
            if j != i
        )
        if not beaten:
            front.append(i)
    return front


def test_pareto_front_on_a_handmade_list():
    points = [
        (10.0, 0.50),  # 0: fastest -> front
        (12.0, 0.60),  # 1: front
        (12.0, 0.55),  # 2: same time as 1, less accurate
        (15.0, 0.60),  # 3: slower than 1, same AP
        (20.0, 0.80),  # 4: front
        (20.0, 0.80),  # 5: a duplicate of a front point -> front
        (25.0, 0.70),  # 6: beaten by 4
        (30.0, None),  # 7: no AP
        (float("nan"), 0.9),  # 8: no time
        (9.0, 0.10),  # 9: fastest of all -> front
    ]
    assert pareto_front(points) == [0, 1, 4, 5, 9] == _brute_front(points)


def test_pareto_front_matches_brute_force_on_random_lists():
    rng = np.random.default_rng(0)
    for n in range(12):
        for _ in range(20):
            # coarse values so that ties in time, in AP and of whole points are common
            points = [(float(rng.integers(1, 6)), float(rng.integers(0, 5)) / 4) for _ in range(n)]
            assert pareto_front(points) == _brute_front(points), points


# ------------------------------------------------------------------------------------------ MFLOPs and params


@pytest.mark.parametrize(
    ("cin", "cout", "k", "stride", "group", "bias"),
    [(3, 8, 3, 1, 1, True), (16, 32, 1, 1, 1, False), (8, 8, 3, 2, 8, True)],  # full, pointwise, depthwise
)
def test_mflops_and_params_of_a_single_conv(tmp_path, cin, cout, k, stride, group, bias):
    h, w = 24, 40
    path = single_conv_onnx(tmp_path / "c.onnx", cin, cout, k, stride, (h, w), group, bias)
    stats = model_stats(path)
    ho, wo = -(-h // stride), -(-w // stride)
    # FLOPs, not MACs: one multiply and one add per weight per output pixel
    assert stats.mflops == pytest.approx(2 * (cin // group) * cout * k * k * ho * wo / 1e6)
    assert stats.params == cout * (cin // group) * k * k + (cout if bias else 0)
    assert (stats.runtime, stats.precision) == ("onnxruntime", "fp32")
    assert stats.size_kb == pytest.approx(path.stat().st_size / 1024)


def test_count_ops_of_nothing():
    assert count_ops([]) == (0, 0.0)


@pytest.mark.slow
def test_checkpoint_and_its_onnx_export_count_the_same(models):
    for head in ("ssd", "centernet"):
        onnx_stats = model_stats(models[f"{head}_onnx"])
        assert TorchBackend(models[f"{head}_pt"]).layer_stats() == (onnx_stats.params, pytest.approx(onnx_stats.mflops))
    assert model_stats(models["ssd_pt"]).runtime == "torch"


BUILD_TFLITE = textwrap.dedent(
    """
    import sys, numpy as np, tensorflow as tf
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(3, 3, 3, 8)).astype(np.float32)
    b1 = rng.normal(size=(8,)).astype(np.float32)
    w2 = rng.normal(size=(3, 3, 8, 1)).astype(np.float32)
    b2 = rng.normal(size=(8,)).astype(np.float32)
    def net(x):
        y = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, w1, 1, "SAME"), b1))
        return tf.nn.bias_add(tf.nn.depthwise_conv2d(y, w2, [1, 2, 2, 1], "SAME"), b2)
    f = tf.function(net, input_signature=[tf.TensorSpec([1, 16, 20, 3])])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    open(sys.argv[1], "wb").write(conv.convert())
    """
)


@pytest.mark.slow
def test_mflops_and_params_of_a_tflite_model(tmp_path):
    pytest.importorskip("tensorflow")  # only to build the model, in a subprocess
    path = tmp_path / "convs.tflite"
    subprocess.run([sys.executable, "-c", BUILD_TFLITE, str(path)], check=True, capture_output=True, timeout=300)
    stats = model_stats(path)
    macs = 8 * 3 * 3 * 3 * (16 * 20) + 8 * 3 * 3 * (8 * 10)  # 3x3 conv 3->8, then 3x3 depthwise stride 2
    assert stats.mflops == pytest.approx(2 * macs / 1e6)
    assert stats.params == (8 * 27 + 8) + (8 * 9 + 8)
    assert (stats.runtime, stats.precision) == ("litert", "fp32")


# ------------------------------------------------------------------------------------------ small parts


def test_parse_threads_and_short_names():
    assert parse_threads("1, 4,1") == [1, 4]
    assert parse_threads([2]) == [2]
    assert parse_threads(None)[0] == 1
    for bad in ("0", "a,b", ","):
        with pytest.raises(ValueError, match="--threads"):
            parse_threads(bad)
    paths = [Path("/m/ssd/last.onnx"), Path("/m/centernet/last.onnx"), Path("/m/ssd/last_int8.onnx")]
    assert short_names(paths) == ["ssd/last.onnx", "centernet/last.onnx", "ssd/last_int8.onnx"]
    assert short_names([Path("/a/x.onnx"), Path("/b/y.tflite")]) == ["x.onnx", "y.tflite"]


def test_bad_arguments_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="at least 50"):
        run_bench([tmp_path / "m.onnx"], out=tmp_path, runs=10)
    with pytest.raises(FileNotFoundError):
        run_bench([tmp_path / "missing.onnx"], out=tmp_path)
    (tmp_path / "m.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown model type"):
        run_bench([tmp_path / "m.pth"], out=tmp_path)


def test_missing_stats_read_n_a(tmp_path):
    row = {"name": "m.pt", "model": "m.pt", "runtime": "torch", "precision": "fp32", "threads": 1, "size_kb": 3.0}
    row.update({"params": None, "mflops": None, "latency_ms": {"median": 1.0, "p90": 2.0, "min": 0.5}})
    row.update({"frame_ms": 2.0, "AP50": None, "AP": None, "pareto": False})
    settings = {"threads": [1], "runs": 50, "warmup": 5, "frames": "f", "data": None}
    machine = {"cpu": "x", "packages": {"numpy": "2"}}
    md = write_markdown(tmp_path / "r.md", {"settings": settings, "results": [row], "machine": machine, "created": "t"})
    assert "| `m.pt` | torch fp32 | 1 | 3 | n/a | n/a | 1.00 (2.00, 0.50) | 2.00 | n/a | n/a |  |" in md.read_text()
    with write_csv(tmp_path / "r.csv", [row]).open() as f:
        (flat,) = list(csv.DictReader(f))
    assert (flat["params"], flat["mflops"], flat["AP50"], flat["latency_p90_ms"]) == ("n/a", "n/a", "n/a", "2.0")


PI_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41

Hardware\t: BCM2835
Revision\t: c03114
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""


def test_machine_info():
    assert cpu_model("processor\t: 0\nmodel name\t: Intel(R) Xeon(R)\n") == "Intel(R) Xeon(R)"
    assert cpu_model(PI_CPUINFO) == "Raspberry Pi 4 Model B Rev 1.4"
    info = machine_info()
    assert {"cpu", "arch", "cores", "usable_cores", "memory_gb", "os", "python", "packages"} <= set(info)
    assert info["packages"]["numpy"] == np.__version__ and info["usable_cores"] >= 1
    json.dumps(info)


def test_the_pareto_plot_names_each_model_once_and_numbers_the_front(tmp_path):
    from edgedet.edge.bench.pareto_plot import front_legend, model_family, write_pareto_plot

    assert model_family("ssd/last_int8_float_io.tflite") == model_family("ssd/last.onnx") == "ssd/last"
    assert model_family("slim-320_fp16.tflite") == "slim-320" != model_family("centernet/last_int8.onnx")
    rows = [
        {"name": n, "runtime": r, "precision": p, "threads": t, "frame_ms": x, "AP50": y}
        for n, r, p, t, x, y in [
            ("ssd/last.onnx", "onnxruntime", "fp32", 1, 1.05, 0.318),
            ("ssd/last_fp32.tflite", "litert", "fp32", 2, 1.01, 0.318),  # two front points 0.04 ms apart:
            ("ssd/last_int8_float_io.tflite", "litert", "int8", 2, 1.02, 0.322),  # their labels used to overlap
            ("centernet/last.onnx", "onnxruntime", "fp32", 1, 1.83, 0.231),
        ]
    ]
    front = pareto_front([(r["frame_ms"], r["AP50"]) for r in rows])
    legend = front_legend(rows, front)
    assert [line.split()[0] for line in legend] == ["1", "2"]  # numbered, fastest first
    assert "ssd/last_fp32.tflite" in legend[0] and "ssd/last_int8_float_io.tflite" in legend[1]
    assert write_pareto_plot(tmp_path / "p.png", rows) is None
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"

"""``edgedet int8-explain``: per-layer error of an int8 QDQ model against its fp32 model, on a tiny SSD."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from test_export import photos, small_checkpoint

from edgedet.cli import main
from edgedet.convert.calibration import calibration_tensors
from edgedet.convert.int8_explain import _analyse, _session, _with_outputs, explain_int8, sqnr_db
from edgedet.convert.onnx_export import export_onnx, read_metadata_spec
from edgedet.convert.quantize_onnx import quantize_onnx
from edgedet.edge.runtime.backends.onnx import OnnxBackend

N_IMAGES = 4


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """``(fp32.onnx, int8.onnx, image folder, inputs [N, 3, H, W])``; int8 calibrated on exactly ``inputs``."""
    root = tmp_path_factory.mktemp("explain")
    fp32 = export_onnx(small_checkpoint(root / "ssd.pt", "ssd"), root / "ssd.onnx")
    folder = root / "frames"
    folder.mkdir()
    for i, frame in enumerate(photos(N_IMAGES)):
        cv2.imwrite(str(folder / f"{i}.png"), frame)
    spec = read_metadata_spec(onnx.load(fp32))
    inputs = calibration_tensors(spec, folder, N_IMAGES, show_progress=False)
    int8 = quantize_onnx(fp32, root / "ssd_int8.onnx", inputs, show_progress=False)
    return fp32, int8, folder, inputs


def _quantized_convs(path) -> set[str]:
    model = onnx.load(path)
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    return {n.name for n in model.graph.node if n.op_type == "Conv" and producer.get(n.input[1]) == "DequantizeLinear"}


def test_sqnr_db():
    assert sqnr_db(1.0, 0.0) == math.inf and sqnr_db(100.0, 1.0) == pytest.approx(20.0)


def test_every_quantised_conv_is_reported_with_finite_errors(models):
    fp32, int8, _, inputs = models
    report = explain_int8(fp32, int8, inputs, top_k=2, calib=inputs, threads=1, show_progress=False)
    convs = _quantized_convs(int8)
    assert len(convs) > 10
    assert {r.node for r in report.layers if r.op == "Conv"} == convs
    assert all(r.quantized for r in report.layers)
    assert not report.unmapped
    for r in report.layers:
        assert math.isfinite(r.sqnr_db) and 0.0 < r.sqnr_db < 80.0, r
        assert 0.9 < r.cosine < 1.0
    assert all(math.isfinite(v) for v in report.output_sqnr_db.values())
    assert set(report.output_sqnr_db) == {"scores", "locations"}
    # sorted by the error each layer adds, worst first; the network order kept for the plot
    local = [r.local_sqnr_db for r in report.layers]
    assert local == sorted(local)
    order = sorted(report.layers, key=lambda r: r.index)
    assert order[0].node == "/model/base_net/base_net.1/base_net.1.3/Conv"  # the first quantised conv
    assert len({r.index for r in report.layers}) == len(report.layers)
    # the top-2 were re-quantised alone, with the same calibration inputs and so the int8 model's scales
    top = report.layers[:2]
    assert all(r.only_layer_output_sqnr_db is not None for r in top)
    assert all(r.scales_match is True for r in top)
    assert all(r.only_layer_output_sqnr_db is None for r in report.layers[2:])
    # one layer alone errs less at the outputs than all of them together
    assert all(r.only_layer_output_sqnr_db > min(report.output_sqnr_db.values()) for r in top)


def test_fp32_against_itself_has_no_error(models):
    fp32, _, _, inputs = models
    report = explain_int8(fp32, fp32, inputs, top_k=0, all_layers=True, threads=1, show_progress=False)
    assert len(report.layers) > 20 and not any(r.quantized for r in report.layers)
    assert all(r.sqnr_db == math.inf and r.cosine == pytest.approx(1.0) for r in report.layers)
    assert all(v == math.inf for v in report.output_sqnr_db.values())
    assert explain_int8(fp32, fp32, inputs, top_k=0, show_progress=False).layers == []  # nothing quantised


def test_a_badly_quantised_layer_comes_out_on_top(models, tmp_path):
    fp32, int8, _, inputs = models
    model = onnx.load(int8)
    victim = "/model/base_net/base_net.5/base_net.5.3/Conv"
    node = next(n for n in model.graph.node if n.name == victim)
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == node.output[0])
    init = next(i for i in model.graph.initializer if i.name == q.input[1])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 0.02, init.name))  # clips ~98% of the range
    bad = tmp_path / "bad_int8.onnx"
    onnx.save(model, bad)
    good = explain_int8(fp32, int8, inputs, top_k=0, show_progress=False)
    report = explain_int8(fp32, bad, inputs, top_k=0, show_progress=False)
    assert report.layers[0].node == victim
    before = {r.node: r for r in good.layers}[victim]
    assert report.layers[0].sqnr_db < before.sqnr_db - 10
    assert min(report.output_sqnr_db.values()) < min(good.output_sqnr_db.values())


def test_plot_without_matplotlib_says_so(models, tmp_path, monkeypatch):
    import sys

    from edgedet.convert.int8_explain import plot_report

    fp32, int8, folder, inputs = models
    report = explain_int8(fp32, int8, inputs, top_k=0, show_progress=False)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_report(report, tmp_path / "p.png")
    argv = ["int8-explain", "--fp32", str(fp32), "--int8", str(int8), "--images", str(folder), "--top-k", "0"]
    assert main([*argv, "--plot", str(tmp_path / "p.png")]) == 1  # before any work, a one-line error
    assert not (tmp_path / "p.png").exists()


def test_probing_does_not_change_what_the_runtime_computes(models):
    _, int8, _, inputs = models
    model = onnx.load(int8)
    _, probes = _analyse(model)
    names = [o.name for o in model.graph.output]
    fetch = [p.fetch for p in probes.values() if p.fetch not in names]
    session = _session(_with_outputs(model, fetch), 1)
    plain = OnnxBackend(int8, threads=1)
    for x in inputs:
        got = session.run(names, {"input": x[None]})
        want = plain.run(x[None])
        for name, value in zip(names, got, strict=True):
            np.testing.assert_array_equal(value, want[name])


def test_cli_writes_markdown_and_json(models, tmp_path):
    fp32, int8, folder, _ = models
    out, js = tmp_path / "r.md", tmp_path / "r.json"
    argv = ["int8-explain", "--fp32", str(fp32), "--int8", str(int8), "--images", str(folder), "--limit", "3"]
    argv += ["--top-k", "1", "--calib-images", str(N_IMAGES), "--threads", "1", "--out", str(out), "--json", str(js)]
    assert main([*argv, "--plot", str(tmp_path / "plot.png")]) == 0
    text = out.read_text()
    assert "| 1 |" in text and "local SQNR" in text and "(ONNX Runtime)" in text
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert data["images"] == 3 and data["layers"][0]["only_layer_output_sqnr_db"] is not None
    assert data["layers"][0]["scales_match"] is True  # --images and its calibration are the same 4 frames
    missing = main(["int8-explain", "--fp32", str(fp32), "--int8", str(tmp_path / "nope.onnx"), "--images", "x"])
    assert missing == 1


def test_ap50_with_each_top_layer_kept_float(models, tmp_path):
    fp32, int8, _, inputs = models
    data = tmp_path / "val.yaml"
    data.write_text(
        f"format: synthetic\nroot: {tmp_path / 'synth'}\nnum_images: 4\nsize: [160, 120]\n"
        "class_map: {circle: a, square: b, triangle: b}\n"
    )
    report = explain_int8(fp32, int8, inputs, top_k=2, calib=inputs, val=data, threads=1, show_progress=False)
    assert report.ap50_fp32 is not None and report.ap50_int8 is not None
    for r in report.layers[:2]:
        assert r.ap50_layer_float is not None and 0.0 <= r.ap50_layer_float <= 1.0
        assert r.output_sqnr_layer_float_db is not None and r.output_sqnr_layer_float_db > 0
    assert all(r.ap50_layer_float is None and r.output_sqnr_layer_float_db is None for r in report.layers[2:])
    assert "AP50, this layer float" in report.markdown()

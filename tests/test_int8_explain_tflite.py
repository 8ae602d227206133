"""``edgedet int8-explain`` on TFLite int8 models and ``export_tflite_int8_keep_float``, on a tiny SSD.

Slow: the export runs onnx2tf once (module fixture) and the analysis converts the fp32 ONNX once more in a
scratch folder (cached in the process, so every test after the first reuses it); one more conversion
makes the mismatched-model error.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import onnx
import pytest
from test_export import photos, small_checkpoint

from edgedet.cli import main
from edgedet.convert.calibration import calibration_tensors
from edgedet.convert.int8_explain import explain_int8, plot_report
from edgedet.convert.onnx_export import export_onnx, read_metadata_spec
from edgedet.convert.quantize_onnx import quantize_onnx
from edgedet.convert.tflite_export import export_tflite
from edgedet.convert.tflite_mixed import (
    TfliteGraph,
    align_graphs,
    conversion,
    export_tflite_int8_keep_float,
    tflite_layer_names,
    tflite_layer_ops,
)
from edgedet.edge.runtime.backends.tflite import TfliteBackend
from edgedet.edge.runtime.backends.tflite_metadata import read_tflite_spec
from edgedet.edge.runtime.detector import Detector

pytestmark = pytest.mark.slow

N_IMAGES = 4
VICTIM = "/model/base_net/base_net.5/base_net.5.3/Conv"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """``(fp32.onnx, {variant: .tflite}, image folder, inputs [N, 3, H, W])``: the int8 files calibrated on
    exactly ``inputs``, as ``edgedet export`` makes them."""
    root = tmp_path_factory.mktemp("explain_tflite")
    fp32 = export_onnx(small_checkpoint(root / "ssd.pt", "ssd"), root / "ssd.onnx")
    folder = root / "frames"
    folder.mkdir()
    for i, frame in enumerate(photos(N_IMAGES)):
        cv2.imwrite(str(folder / f"{i}.png"), frame)
    spec = read_metadata_spec(onnx.load(fp32))
    inputs = calibration_tensors(spec, folder, N_IMAGES, show_progress=False)
    files = export_tflite(
        fp32,
        root / "tfl",
        ["tflite_fp32", "tflite_int8", "tflite_int8_float_io"],
        calib_nhwc=inputs.transpose(0, 2, 3, 1),
        show_progress=False,
    )
    return fp32, files, folder, inputs


@pytest.fixture(scope="module")
def report(models):
    fp32, files, _, inputs = models
    return explain_int8(fp32, files["tflite_int8_float_io"], inputs, top_k=2, calib=inputs, show_progress=False)


def _layer_op(fp32, path, layer_id):
    """The op of ``path`` that is layer ``layer_id``, and the file's graph."""
    lmap = conversion(fp32, show_progress=False).layer_map
    graph = TfliteGraph.read(path)
    return graph.ops[align_graphs(lmap.graph, graph)[lmap.by_id(layer_id).main]], graph


def _outputs(path, inputs):
    backend = TfliteBackend(path, threads=1)
    return [backend.run(np.ascontiguousarray(x.transpose(1, 2, 0)[None])) for x in inputs]


def test_layer_ids_are_the_onnx_node_names_ort_uses(models):
    fp32, _, _, inputs = models
    names = tflite_layer_names(fp32, show_progress=False)
    convs = [n.name for n in onnx.load(fp32).graph.node if n.op_type == "Conv"]
    assert set(convs) <= set(names) and len(names) == len(set(names))
    assert "/Softmax" in names  # TFLite's softmax is int8 too
    ops = tflite_layer_ops(fp32, show_progress=False)
    assert list(ops) == names and ops["/model/Reshape"] == "RESHAPE"
    assert ops["/model/base_net/base_net.2/base_net.2.0/Conv"] == "PAD+DEPTHWISE_CONV_2D"  # the PAD is the conv's
    ort = explain_int8(fp32, quantize_onnx(fp32, fp32.with_name("ort_int8.onnx"), inputs, show_progress=False),
                       inputs, top_k=0, show_progress=False)  # fmt: skip
    assert {r.node for r in ort.layers} <= set(names)  # one id, one layer, in both int8 paths


def test_every_quantised_layer_is_compared(models, report):
    fp32, files, _, _ = models
    assert report.runtime == "LiteRT" and report.images == N_IMAGES
    convs = {n.name for n in onnx.load(fp32).graph.node if n.op_type == "Conv"}
    assert convs <= {r.node for r in report.layers}
    assert all(r.quantized for r in report.layers) and not report.unmapped
    assert "PAD+DEPTHWISE_CONV_2D" in {r.op for r in report.layers}  # the PAD goes with its layer
    for r in report.layers:
        assert math.isfinite(r.sqnr_db) and 0.0 < r.sqnr_db < 80.0, r
        assert 0.9 < r.cosine <= 1.0
    assert set(report.output_sqnr_db) == {"scores", "locations"}
    assert all(15.0 < v < 80.0 for v in report.output_sqnr_db.values())
    local = [r.local_sqnr_db for r in report.layers]
    assert local == sorted(local)
    top, rest = report.layers[:2], report.layers[2:]
    for r in top:  # re-quantised with the export's calibration: the file's scales, and less error alone
        assert r.scales_match is True
        assert r.only_layer_output_sqnr_db > min(report.output_sqnr_db.values())
        assert r.output_sqnr_layer_float_db is not None
    assert all(r.only_layer_output_sqnr_db is None and r.output_sqnr_layer_float_db is None for r in rest)
    # the int8-in/int8-out file is the same int8 graph: the same errors
    same = explain_int8(fp32, files["tflite_int8"], models[3], top_k=0, show_progress=False)
    assert same.output_sqnr_db == pytest.approx(report.output_sqnr_db, abs=0.05)


def test_fp32_tflite_reference_is_accepted(models, report):
    _, files, _, inputs = models
    by_op = explain_int8(files["tflite_fp32"], files["tflite_int8_float_io"], inputs, top_k=1, show_progress=False)
    assert all(r.node.startswith("op") for r in by_op.layers)
    assert by_op.output_sqnr_db == pytest.approx(report.output_sqnr_db, abs=0.05)
    assert sorted(r.sqnr_db for r in by_op.layers if r.op != "PAD")[:5] == pytest.approx(
        sorted(r.sqnr_db for r in report.layers)[:5], abs=0.05
    )
    assert any("give the fp32 .onnx" in n for n in by_op.notes)


def test_a_corrupted_layer_comes_out_on_top(models, report, tmp_path):
    from ai_edge_litert.tools import flatbuffer_utils

    fp32, files, _, inputs = models
    src = files["tflite_int8_float_io"]
    op, _ = _layer_op(fp32, src, VICTIM)
    model = flatbuffer_utils.read_model(str(src))
    quant = model.subgraphs[0].tensors[op.outputs[0]].quantization
    quant.scale = np.asarray(quant.scale, np.float32) * 0.02  # clips ~98 % of the layer's range
    bad = tmp_path / "bad_int8.tflite"
    flatbuffer_utils.write_model(model, str(bad))
    worse = explain_int8(fp32, bad, inputs, top_k=0, show_progress=False)
    assert worse.layers[0].node == VICTIM
    before = {r.node: r for r in report.layers}[VICTIM]
    assert worse.layers[0].sqnr_db < before.sqnr_db - 10
    assert min(worse.output_sqnr_db.values()) < min(report.output_sqnr_db.values()) - 3


def test_keep_float_nothing_is_the_export_and_a_kept_layer_is_float(models, tmp_path):
    fp32, files, _, inputs = models
    same = export_tflite_int8_keep_float(fp32, tmp_path / "none.tflite", inputs, [], show_progress=False)
    for got, want in zip(_outputs(same, inputs), _outputs(files["tflite_int8_float_io"], inputs), strict=True):
        for key in want:
            np.testing.assert_allclose(got[key], want[key], atol=1e-6)
    frames = photos(N_IMAGES)
    ours, theirs = Detector.from_model(same, threads=1), Detector.from_model(files["tflite_int8_float_io"], threads=1)
    assert [[d.to_dict() for d in ours.detect(f)] for f in frames] == [
        [d.to_dict() for d in theirs.detect(f)] for f in frames
    ]
    int8_io = export_tflite_int8_keep_float(fp32, tmp_path / "io.tflite", inputs, [], io="int8", show_progress=False)
    assert TfliteBackend(int8_io).input_dtype == np.int8
    for got, want in zip(_outputs(int8_io, inputs), _outputs(files["tflite_int8"], inputs), strict=True):
        for key in want:
            np.testing.assert_allclose(got[key], want[key], atol=1e-6)

    keep = [VICTIM, "/model/base_net/base_net.2/base_net.2.0/Conv"]  # the second is PAD + DEPTHWISE_CONV_2D
    mixed = export_tflite_int8_keep_float(fp32, tmp_path / "mixed.tflite", inputs, keep, show_progress=False)
    for layer_id in tflite_layer_names(fp32, show_progress=False):
        op, graph = _layer_op(fp32, mixed, layer_id)
        assert graph.dtype(op.outputs[0]) == (np.float32 if layer_id in keep else np.int8), layer_id
        if layer_id in keep:
            assert all(graph.dtype(t) == np.float32 for t in op.inputs if t >= 0)  # float weights and bias too
    spec = read_tflite_spec(mixed)
    assert spec is not None and spec.extra["float_layers"] == keep
    assert spec.extra["quantization"] == "int8-float-io" and set(spec.extra["outputs"]) == {"scores", "locations"}
    report = explain_int8(fp32, mixed, inputs, top_k=0, all_layers=True, show_progress=False)
    rows = {r.node: r for r in report.layers}
    assert not rows[VICTIM].quantized and rows["/Softmax"].quantized
    with pytest.raises(ValueError, match="no TFLite layer"):
        export_tflite_int8_keep_float(fp32, tmp_path / "x.tflite", inputs, ["/model/nope/Conv"], show_progress=False)
    with pytest.raises(ValueError, match="io"):
        export_tflite_int8_keep_float(fp32, tmp_path / "x.tflite", inputs, [], io="uint4", show_progress=False)


def test_plot_and_cli(models, report, tmp_path):
    fp32, files, folder, _ = models
    png = plot_report(report, tmp_path / "sub" / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out, js, plot = tmp_path / "r.md", tmp_path / "r.json", tmp_path / "cli.png"
    argv = ["int8-explain", "--fp32", str(fp32), "--int8", str(files["tflite_int8"]), "--images", str(folder)]
    argv += ["--limit", "3", "--top-k", "0", "--out", str(out), "--json", str(js), "--plot", str(plot)]
    assert main(argv) == 0
    assert "(LiteRT)" in out.read_text() and plot.read_bytes()[:4] == b"\x89PNG"
    data = json.loads(js.read_text())
    assert data["images"] == 3 and data["runtime"] == "LiteRT" and data["layers"][0]["index"] is not None


def test_ap50_with_each_top_layer_kept_float(models, tmp_path):
    fp32, files, _, inputs = models
    data = tmp_path / "val.yaml"
    data.write_text(
        f"format: synthetic\nroot: {tmp_path / 'synth'}\nnum_images: 4\nsize: [160, 120]\n"
        "class_map: {circle: a, square: b, triangle: b}\n"
    )
    report = explain_int8(
        fp32, files["tflite_int8_float_io"], inputs, top_k=1, calib=inputs, val=data, show_progress=False
    )
    assert report.ap50_fp32 is not None and report.ap50_int8 is not None
    assert report.layers[0].ap50_layer_float is not None and 0.0 <= report.layers[0].ap50_layer_float <= 1.0
    # the top layer and the score Softmax (whatever its SQNR rank: its 1/256 grid ties scores), nothing else
    softmax = [r for r in report.layers if "SOFTMAX" in r.op]
    assert len(softmax) == 1 and softmax[0].quantized and softmax[0].ap50_layer_float is not None
    assert all(r.ap50_layer_float is None for r in report.layers[1:] if r is not softmax[0])
    assert "AP50, this layer float" in report.markdown()


def test_bad_inputs_give_clear_errors(models, tmp_path):
    fp32, files, _, inputs = models
    with pytest.raises(ValueError, match=r"no op computes in int8.*fp32"):
        explain_int8(fp32, files["tflite_fp32"], inputs, top_k=0, show_progress=False)
    with pytest.raises(ValueError, match="reference computes in int8"):
        explain_int8(files["tflite_int8"], files["tflite_int8_float_io"], inputs, top_k=0, show_progress=False)
    with pytest.raises(FileNotFoundError):
        explain_int8(fp32, tmp_path / "nope.tflite", inputs, show_progress=False)
    with pytest.raises(ValueError, match=r"expected the fp32 model as \.onnx"):
        explain_int8(fp32.with_name("ssd.pt"), files["tflite_int8"], inputs, show_progress=False)
    # another architecture: the graphs do not align, and the error names both files
    other = export_onnx(small_checkpoint(tmp_path / "cn.pt", "centernet"), tmp_path / "cn.onnx")
    with pytest.raises(ValueError, match=r"cannot align .*ssd_int8_float_io\.tflite.*cn\.onnx"):
        explain_int8(other, files["tflite_int8_float_io"], inputs, top_k=0, show_progress=False)
    # the same graph with other weights: aligned, but not a quantised copy of that model
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(files["tflite_int8_float_io"]))
    graph = TfliteGraph.read(files["tflite_int8_float_io"])
    rng = np.random.default_rng(0)
    for op in graph.ops:
        if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            buffer = model.buffers[model.subgraphs[0].tensors[op.inputs[1]].buffer]
            buffer.data = rng.integers(0, 256, len(buffer.data), dtype=np.uint8)
    scrambled = tmp_path / "scrambled_int8.tflite"
    flatbuffer_utils.write_model(model, str(scrambled))
    with pytest.raises(ValueError, match="does not hold the weights"):
        explain_int8(fp32, scrambled, inputs, top_k=0, show_progress=False)

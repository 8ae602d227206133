"""ONNX Runtime static int8 (QDQ): graph shape, float tail, metadata, calibration sources, accuracy."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import shared_path
from test_export import photos, small_checkpoint, ultraface_checkpoint

from edgedet.convert.calibration import calibration_images, calibration_tensors
from edgedet.convert.onnx_export import export_onnx, read_metadata_spec
from edgedet.convert.parity import check_parity
from edgedet.convert.quantize_onnx import quantize_onnx, stem_nodes, tail_nodes
from edgedet.edge.runtime.backends.onnx import OnnxBackend


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    root = tmp_path_factory.mktemp("q")
    ckpt = small_checkpoint(root / "ssd.pt", "ssd")
    return ckpt, export_onnx(ckpt, root / "ssd.onnx")


def _frames_folder(tmp_path, n=6):
    import cv2

    folder = tmp_path / "frames" / "nested"
    folder.mkdir(parents=True)
    for i, frame in enumerate(photos(n)):
        cv2.imwrite(str(folder / f"{i}.jpg"), frame)
    return tmp_path / "frames"


def test_tail_and_stem_nodes(small_onnx):
    _, path = small_onnx
    model = onnx.load(path)
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    assert stem_nodes(model) == convs[:2]  # the full 3x3 conv and the first depthwise conv
    tail = set(tail_nodes(model))
    kinds = {n.op_type for n in model.graph.node if n.name in tail}
    assert kinds == {"Softmax", "Concat", "Reshape", "Transpose"}
    assert len(tail) == 19  # softmax, 2 concats, 8 transposes and 8 reshapes (4 levels x 2 headers)


def test_quantized_model_is_qdq_with_float_tail_and_keeps_the_spec(small_onnx, tmp_path):
    _, path = small_onnx
    out = quantize_onnx(
        path, tmp_path / "int8.onnx", str(_frames_folder(tmp_path)), calib_images=4, show_progress=False
    )
    model = onnx.load(out)
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    assert producers["scores"] == "Softmax"  # not a DequantizeLinear: scores keep float resolution
    stem = [n for n in model.graph.node if n.op_type == "Conv"][:2]
    assert stem[0].input[0] == "input" and stem[1].input[0] in producers  # the float stem: no DQ before it
    assert producers[stem[1].input[0]] != "DequantizeLinear"
    assert [o.name for o in model.graph.output] == ["scores", "locations"]
    spec = read_metadata_spec(model)
    assert spec is not None and spec.extra["quantization"] == "int8-qdq"
    outputs = OnnxBackend(out).run(np.zeros((1, 3, 120, 160), np.float32))
    assert outputs["scores"].shape[-1] == 3 and outputs["locations"].shape[-1] == 4


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_calibration_methods(small_onnx, tmp_path, method):
    _, path = small_onnx
    spec = read_metadata_spec(onnx.load(path))
    inputs = calibration_tensors(spec, _frames_folder(tmp_path, 3), 3, show_progress=False)
    assert inputs.shape == (3, 3, 120, 160) and inputs.dtype == np.float32
    out = quantize_onnx(path, tmp_path / "q.onnx", inputs, method=method, show_progress=False)
    assert OnnxBackend(out).read_spec().extra["quantization"] == "int8-qdq"


def test_bad_calibration_input(small_onnx, tmp_path):
    _, path = small_onnx
    with pytest.raises(ValueError, match="calibration method"):
        quantize_onnx(path, tmp_path / "q.onnx", np.zeros((2, 3, 120, 160), np.float32), method="kl")
    with pytest.raises(ValueError, match=r"expected \[N, 3, 120, 160\]"):
        quantize_onnx(path, tmp_path / "q.onnx", np.zeros((2, 3, 240, 320), np.float32))
    with pytest.raises(ValueError, match="positive"):
        calibration_images(str(tmp_path), 0)


def test_calibration_from_a_dataset_is_a_fixed_subset():
    data = f"voc:{shared_path('data', 'faces')}:train"
    first, again = calibration_images(data, 10), calibration_images(data, 10)
    assert first == again and len(set(first)) == 10


@pytest.mark.slow
def test_ultraface_int8_onnx_keeps_95_percent_of_detections(tmp_path):
    ckpt = ultraface_checkpoint(tmp_path / "slim.pt")
    fp32 = export_onnx(ckpt, tmp_path / "slim.onnx")
    data = f"voc:{shared_path('data', 'faces')}:train"
    int8 = quantize_onnx(fp32, tmp_path / "slim_int8.onnx", data, calib_images=32, show_progress=False)
    report = check_parity(ckpt, {"onnx_int8": int8}, photos(8), show_progress=False)
    (row,) = report.rows
    assert not row.exact and row.reference_detections >= 8
    assert row.recall >= 0.95, report.table()

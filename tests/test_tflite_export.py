"""TFLite through onnx2tf (slow: each conversion starts TensorFlow): fp32 parity with PyTorch, the spec
inside the file (and in its sidecar), and the full int8 pipeline on UltraFace."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import shared_path
from test_export import photos, small_checkpoint, ultraface_checkpoint

from edgedet.convert.export import export_all
from edgedet.convert.onnx_export import export_onnx
from edgedet.convert.parity import check_parity
from edgedet.convert.tflite_export import export_tflite
from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.runtime.backends.tflite import TfliteBackend
from edgedet.edge.runtime.backends.tflite_metadata import read_metadata
from edgedet.edge.runtime.detector import Detector

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("head", ["ssd", "centernet"])
def test_fp32_tflite_matches_torch_and_has_its_sidecar(tmp_path, head):
    ckpt = small_checkpoint(tmp_path / f"{head}.pt", head)
    onnx_path = export_onnx(ckpt, tmp_path / f"{head}.onnx")
    files = export_tflite(onnx_path, tmp_path / "tfl", ["tflite_fp32"], show_progress=False)
    tflite = files["tflite_fp32"]
    assert tflite.name == f"{head}_fp32.tflite"
    sidecar = json.loads(tflite.with_suffix(".json").read_text())
    assert sidecar["layout"] == "nhwc" and sidecar["head"] == head
    assert sidecar["extra"]["quantization"] == "none"
    backend = TfliteBackend(tflite)
    assert backend.input_shape == (1, 120, 160, 3)
    assert sorted(sidecar["extra"]["outputs"].values()) == sorted(backend.output_names)
    report = check_parity(ckpt, files, photos(4), show_progress=False)
    (row,) = report.rows
    assert row.exact and row.max_abs_diff <= 1e-4 and row.reference_detections > 0
    assert report.passed, report.table()
    # the spec travels inside the file: copied alone to an empty folder, it detects as with its sidecar
    assert read_metadata(tflite).decode("utf-8") == tflite.with_suffix(".json").read_text().strip()
    alone = tmp_path / "device" / tflite.name
    alone.parent.mkdir()
    shutil.copyfile(tflite, alone)
    frames = photos(4)
    sidecar_spec = ModelSpec.from_json(tflite.with_suffix(".json").read_text())
    with_sidecar = Detector.from_model(tflite, spec=sidecar_spec, threads=1)
    by_itself = Detector.from_model(alone, threads=1)
    assert by_itself.spec == sidecar_spec
    dets = [[d.to_dict() for d in with_sidecar.detect(f)] for f in frames]
    assert any(dets) and dets == [[d.to_dict() for d in by_itself.detect(f)] for f in frames]


def test_int8_variants_need_calibration_data(tmp_path):
    ckpt = small_checkpoint(tmp_path / "ssd.pt", "ssd")
    onnx_path = export_onnx(ckpt, tmp_path / "ssd.onnx")
    with pytest.raises(ValueError, match="calibration inputs"):
        export_tflite(onnx_path, tmp_path, ["tflite_int8"])
    with pytest.raises(ValueError, match="TFLite variants"):
        export_tflite(onnx_path, tmp_path, ["tflite_int4"])


def test_ultraface_int8_pipeline_keeps_95_percent_of_detections(tmp_path):
    ckpt = ultraface_checkpoint(tmp_path / "slim.pt")
    data = f"voc:{shared_path('data', 'faces')}:train"
    files = export_all(
        ckpt, tmp_path / "out", ("onnx", "tflite"), int8=True, calib=data, calib_images=32, parity=False,
        show_progress=False,
    )  # fmt: skip
    assert set(files) == {
        "onnx", "onnx_int8", "tflite_fp32", "tflite_fp16", "tflite_dynamic", "tflite_int8", "tflite_int8_float_io"
    }  # fmt: skip
    for key in ("tflite_fp32", "tflite_fp16", "tflite_dynamic", "tflite_int8", "tflite_int8_float_io"):
        spec = json.loads(read_metadata(files[key]))  # every variant carries its spec
        assert spec == json.loads(files[key].with_suffix(".json").read_text()) and spec["layout"] == "nhwc"
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    for key, dtype in (("tflite_int8", np.int8), ("tflite_int8_float_io", np.float32)):
        interpreter = litert.Interpreter(model_path=str(files[key]))
        assert interpreter.get_input_details()[0]["dtype"] == dtype
        assert all(d["dtype"] == dtype for d in interpreter.get_output_details())
        assert files[key].stat().st_size <= 350 * 1024, "issue 5: the slim SSD int8 TFLite is at most 350 KB"
    report = check_parity(ckpt, files, photos(8), show_progress=False)
    assert report.passed, report.table()
    for row in report.rows:
        assert row.reference_detections >= 8
        assert row.recall >= 0.95, report.table()
    faces = Detector.from_model(files["tflite_int8"]).detect(photos(1)[0])
    assert faces and all(d.label == "face" for d in faces)

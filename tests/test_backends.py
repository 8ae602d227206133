"""Backends: quantisation helpers, a real int8/uint8 TFLite model, spec reading, and clear errors."""

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import shared_path

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.runtime.backends import infer_layout, open_backend
from edgedet.edge.runtime.backends.onnx import OnnxBackend
from edgedet.edge.runtime.backends.tflite import TfliteBackend
from edgedet.edge.runtime.detector import Detector
from edgedet.edge.runtime.quant import QuantParams, dequantize, quantize

# ------------------------------------------------------------------------------------------ quantisation


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_quantize_dequantize_round_trip(dtype):
    zp = 0 if dtype == np.int8 else 128
    params = QuantParams(np.array([0.05], np.float32), np.array([zp]))
    x = np.linspace(-6.0, 6.0, 241, dtype=np.float32)
    q = quantize(x, params, dtype)
    assert q.dtype == dtype
    back = dequantize(q, params)
    assert back.dtype == np.float32
    inside = (x >= (np.iinfo(dtype).min - zp) * 0.05) & (x <= (np.iinfo(dtype).max - zp) * 0.05)
    assert np.all(np.abs(back[inside] - x[inside]) <= 0.025 + 1e-6)  # half a step
    assert back[~inside].size == 0 or np.all(np.abs(back[~inside]) <= 6.4 + 1e-6)  # saturated, not wrapped
    assert quantize(np.array([0.025]), params, dtype)[0] == zp + 1  # half away from zero, like TFLite


def test_quant_params_from_tflite_details_and_per_channel():
    assert QuantParams.from_details({"quantization": (0.0, 0), "quantization_parameters": {"scales": []}}) is None
    p = QuantParams.from_details({"quantization": (0.5, 3)})
    assert float(p.scale[0]) == 0.5 and int(p.zero_point[0]) == 3
    per_channel = QuantParams.from_details(
        {"quantization_parameters": {"scales": [1.0, 0.5], "zero_points": [0, 2], "quantized_dimension": 1}}
    )
    q = np.array([[[4, 4]], [[6, 6]]], np.int8).transpose(0, 2, 1)  # [2, 2, 1], channels on axis 1
    np.testing.assert_allclose(dequantize(q, per_channel)[:, :, 0], [[4.0, 1.0], [6.0, 2.0]])


def test_infer_layout():
    assert infer_layout((1, 3, 240, 320), "nhwc") == "nchw"
    assert infer_layout((1, 240, 320, 3), "nchw") == "nhwc"
    assert infer_layout((1, 3, 8, 3), "nhwc") == "nhwc"
    assert infer_layout((1, None, None, 3), "nchw") == "nhwc"


BUILD_QUANT_MODELS = textwrap.dedent(
    """
    import sys, numpy as np, tensorflow as tf
    out = sys.argv[1]
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.5, (3, 3, 3, 2)).astype(np.float32)
    f = tf.function(lambda x: tf.nn.conv2d(x, w, 1, "SAME"), input_signature=[tf.TensorSpec([1, 8, 8, 3])])
    x = rng.uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)
    np.savez(out + "/ref.npz", x=x, y=f(x).numpy())
    for name, dtype in (("int8", tf.int8), ("uint8", tf.uint8)):
        conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)] for _ in range(20))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = dtype
        open(f"{out}/{name}.tflite", "wb").write(conv.convert())
    """
)


@pytest.mark.slow
def test_quantized_tflite_model_takes_and_returns_float(tmp_path):
    pytest.importorskip("tensorflow")  # only to build the model, in a subprocess
    subprocess.run([sys.executable, "-c", BUILD_QUANT_MODELS, str(tmp_path)], check=True, capture_output=True)
    ref = np.load(tmp_path / "ref.npz")
    for name, dtype in (("int8", np.int8), ("uint8", np.uint8)):
        backend = TfliteBackend(tmp_path / f"{name}.tflite", threads=1)
        assert backend._input["dtype"] == dtype and backend.input_layout == "nhwc"
        out = backend.run(ref["x"])
        (y,) = out.values()
        scale = backend._output_quant[0].scale[0]
        assert y.dtype == np.float32 and y.shape == ref["y"].shape
        # within a couple of output steps (input and output rounding) of the float model
        assert np.abs(y - ref["y"]).max() <= 3 * scale, (np.abs(y - ref["y"]).max(), scale)


# ----------------------------------------------------------------------------------------------- errors


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.onnx"):
        open_backend(tmp_path / "nope.onnx")
    with pytest.raises(FileNotFoundError, match=r"nope\.tflite"):
        Detector.from_model(tmp_path / "nope.tflite", spec=ModelSpec.ultraface())
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"model\.bin.*unknown model type '\.bin'"):
        open_backend(tmp_path / "model.bin")
    (tmp_path / "weights.pth").write_bytes(b"x")
    with pytest.raises(ValueError, match="import-ultraface"):
        open_backend(tmp_path / "weights.pth")
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(ValueError, match="not a file"):
        open_backend(tmp_path / "dir.onnx")


@pytest.mark.parametrize("suffix", [".onnx", ".tflite"])
def test_garbage_model_files(tmp_path, suffix):
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match=f"garbage\\{suffix}: not a loadable"):
        open_backend(path)
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="not a loadable"):
        open_backend(empty)


@pytest.mark.parametrize(
    "name", ["version-slim-320.onnx", "version-slim-320_without_postprocessing.tflite"], ids=["onnx", "tflite"]
)
def test_truncated_model_files(tmp_path, name):
    src = shared_path("models", "ultraface", name)
    data = src.read_bytes()
    path = tmp_path / f"truncated{src.suffix}"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=r"truncated.*not a loadable"):
        open_backend(path)


def test_torch_checkpoint_errors_are_clear(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises((ValueError, ImportError), match=r"broken\.pt"):
        open_backend(path)


# ----------------------------------------------------------------------------------------- spec reading


def test_onnx_metadata_spec_is_read(tmp_path):
    onnx = pytest.importorskip("onnx")
    src = shared_path("models", "ultraface", "version-slim-320.onnx")
    assert OnnxBackend(src).read_spec() is None
    model = onnx.load(str(src))
    spec = ModelSpec.ultraface()
    entry = model.metadata_props.add()
    entry.key, entry.value = "edgedet", spec.to_json()
    onnx.save(model, str(tmp_path / "with_meta.onnx"))
    backend = OnnxBackend(tmp_path / "with_meta.onnx", threads=1)
    assert backend.read_spec() == spec
    assert backend.input_shape == (1, 3, 240, 320) and backend.input_layout == "nchw"
    assert backend.output_names == ("scores", "boxes")
    det = Detector.from_model(tmp_path / "with_meta.onnx", threads=1)  # no spec argument needed
    assert det.spec == spec

    entry.value = "{not json"
    onnx.save(model, str(tmp_path / "bad_meta.onnx"))
    with pytest.raises(ValueError, match=r"bad_meta\.onnx \(metadata 'edgedet'\): not valid JSON"):
        Detector.from_model(tmp_path / "bad_meta.onnx")


def test_tflite_sidecar_spec_is_read(tmp_path):
    src = shared_path("models", "ultraface", "version-slim-320_without_postprocessing.tflite")
    shutil.copy(src, tmp_path / "face.tflite")
    backend = TfliteBackend(tmp_path / "face.tflite", threads=1)
    assert backend.read_spec() is None and backend.input_layout == "nhwc"
    assert backend.input_shape == (1, 240, 320, 3)
    spec = ModelSpec.ultraface()
    (tmp_path / "face.json").write_text(spec.to_json())
    det = Detector.from_model(tmp_path / "face.tflite", threads=1)
    assert det.spec.labels == ("face",) and det.spec.layout == "nhwc"  # layout follows the file
    (tmp_path / "face.json").write_text(json.dumps({"head": "ssd"}))
    with pytest.raises(ValueError, match=r"face\.json"):
        Detector.from_model(tmp_path / "face.tflite")


def test_model_without_metadata_needs_a_spec(ultraface_dir):
    with pytest.raises(ValueError, match=r"carries no edgedet metadata.*--spec"):
        Detector.from_model(ultraface_dir / "version-slim-320.onnx")


def test_input_size_must_match_the_spec(ultraface_dir):
    with pytest.raises(ValueError, match=r"model input is 320x240.*spec says 640x480"):
        Detector.from_model(ultraface_dir / "version-slim-320.onnx", spec=ModelSpec.ultraface(640, 480))
    with pytest.raises(ValueError, match=r"model input is 320x240"):
        Detector.from_model(
            ultraface_dir / "version-slim-320_without_postprocessing.tflite", spec=ModelSpec.ultraface(320, 320)
        )

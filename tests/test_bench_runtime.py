"""edgedet bench decode / frame / compare: the plain UltraFace post-processing gives exactly our decoder's
detections on real UltraFace outputs, and the benchmarks run end to end (not timed: the figures only
have to be there).
Also the runtime's fast paths that the benchmarks time give exactly what the plain computations give:
integer input tensors made directly, float32 dequantisation, one-class NMS."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
from conftest import shared_path
from tests_support import clustered_boxes

from edgedet.cli import main
from edgedet.edge.bench.decode_bench import _reference_for, bench_decode, same_detections, ultraface_outputs
from edgedet.edge.bench.frame_bench import ReplaySource, bench_frame, print_frame
from edgedet.edge.bench.paired_bench import bench_paired
from edgedet.edge.bench.reference_postprocess import ultraface_reference
from edgedet.edge.camera.capture import Frame, FrameSlot
from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.core.nms import multiclass_nms, one_class_nms
from edgedet.edge.runtime.decoders import SSDDecoder
from edgedet.edge.runtime.detector import Detector
from edgedet.edge.runtime.preprocess import Preprocessor
from edgedet.edge.runtime.quant import QuantParams, dequantize, quantize

SPEC = ModelSpec.ultraface()
STAGES = ("capture", "preprocess", "inference", "decode", "publish")


def ultraface(*names: str):
    return shared_path("models", "ultraface", *names)


@pytest.fixture(scope="module")
def raw_outputs():
    """The raw model's scores and regressions on the 24 UltraFace photos."""
    return ultraface_outputs(
        ultraface("version-slim-320_without_postprocessing.onnx"), ultraface("images"), SPEC, threads=2
    )


# ------------------------------------------------------------------------------------ decode + NMS


@pytest.mark.parametrize("threshold", [0.7, 0.3, 0.05])
def test_plain_reference_and_decoder_find_the_same_faces(raw_outputs, threshold):
    spec = replace(SPEC, score_threshold=threshold)
    decoder = SSDDecoder(spec, spec.priors.generate(spec.input_size))
    total = 0
    for outputs in raw_outputs:
        ours = decoder(outputs)
        ref = _reference_for(decoder, outputs)()
        assert len(ours[1]) == len(ref[1])
        assert np.array_equal(ours[2], ref[2])
        np.testing.assert_allclose(ours[1], ref[1], rtol=0, atol=1e-7)
        np.testing.assert_allclose(ours[0], ref[0], rtol=0, atol=1e-4)  # pixels of the 320x240 input
        assert same_detections(ours, ref)
        total += len(ref[1])
    assert total > 0


def test_plain_reference_on_decoded_boxes_and_with_top_k():
    onnx = ultraface("version-slim-320.onnx")  # decodes in the graph: softmax scores + corner boxes
    outputs = ultraface_outputs(onnx, ultraface("images", "1.jpg"), SPEC)[0]
    decoder = SSDDecoder(SPEC, SPEC.priors.generate(SPEC.input_size))
    assert decoder.resolve(outputs)[2] == "boxes"
    assert same_detections(decoder(outputs), _reference_for(decoder, outputs)())
    scores, boxes = outputs["scores"][0], outputs["boxes"][0]
    few = ultraface_reference(scores, boxes, None, 0.7, 0.3, 320, 240, top_k=3)
    assert len(few[1]) == 3 and list(few[1]) == sorted(few[1], reverse=True)
    none = ultraface_reference(scores, boxes, None, 1.0, 0.3, 320, 240)
    assert [a.shape for a in none] == [(0, 4), (0,), (0,)]


def test_bench_decode_reports_medians_ratio_and_agreement(raw_outputs):
    rows = bench_decode(raw_outputs[:3], SPEC, [0.7, 0.3], repeat=2, warmup_s=0.0)
    assert [r["threshold"] for r in rows] == [0.7, 0.3]
    for r in rows:
        assert r["identical"] and r["calls"] == 6 and r["ours_ms"] > 0 and r["reference_ms"] > 0
        assert r["speedup"] == pytest.approx(r["reference_ms"] / r["ours_ms"])
        assert r["candidates_max"] >= r["candidates_median"] > 0


def test_decode_command(capsys):
    images = ultraface("images")
    model = ultraface("version-slim-320_without_postprocessing.onnx")
    argv = ["decode", "--model", str(model), "--images", str(images), "--thresholds", "0.7", "--repeat", "1"]
    assert main(["bench", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert "4420 priors" in out and "speedup" in out and "target at threshold 0.7" in out
    assert main(["bench", "decode", "--model", str(images / "missing.onnx"), "--images", str(images)]) == 1


# ------------------------------------------------------------------------------------------- frame


class FakeBackend:
    """A runtime stand-in with fixed raw SSD outputs for 320x240 (UltraFace priors): a few strong priors,
    so every frame has detections to decode and publish."""

    path = "fake.onnx"
    input_shape = (1, 3, 240, 320)
    input_layout = "nchw"
    output_names = ("scores", "locations")

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        n = len(SPEC.priors.generate(SPEC.input_size))
        face = rng.uniform(0.0, 0.2, n).astype(np.float32)
        face[rng.choice(n, 30, replace=False)] = rng.uniform(0.75, 1.0, 30)
        self.outputs = {
            "scores": np.stack([1 - face, face], -1)[None],
            "locations": rng.normal(0, 0.5, (1, n, 4)).astype(np.float32),
        }
        self.calls = 0

    def run(self, tensor):
        assert tensor.shape == self.input_shape and tensor.dtype == np.float32
        self.calls += 1
        return self.outputs

    def read_spec(self):
        return None


def frames(n: int = 6, size=(640, 480)) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) for _ in range(n)]


def test_frame_bench_runs_the_daemon_loop_and_reports_every_stage(capsys):
    backend = FakeBackend()
    detector = Detector(backend, SPEC)
    result = bench_frame(detector, frames(), source_name="noise", seconds=0.5, warmup=5)
    st = result["stages_ms"]
    assert set(st) == set(STAGES) and all(st[k] > 0 for k in STAGES)
    assert result["frames"] > 5 and result["detections_per_frame"] > 0 and result["frame_size"] == "640x480"
    assert result["frame_ms"] >= st["inference"] and 0 < result["non_inference_share"] < 1
    assert result["loop_fps"] > 0 and result["daemon_fps"] > 0 and result["captured"] >= result["frames"]
    assert backend.calls > result["frames"]  # the instrumented loop, then the pipelined one, then the daemon's
    assert result["pipelined_fps"] > 0 and result["pipelined_period_ms"] > 0
    assert 0 < result["pipelined_inference_ms"] and result["pipelined_non_inference_share"] < 1
    print_frame(result, 1, "fake.onnx", 0.15, 0.15)
    out = capsys.readouterr().out
    for word in (
        *STAGES,
        "frame",
        "outside inference",
        "instrumented loop",
        "pipelined",
        "edgedet.edge.camera.daemon loop",
        "target",
    ):
        assert word in out


def test_frame_bench_with_a_paced_camera_and_no_daemon():
    result = bench_frame(Detector(FakeBackend(), SPEC), frames(2), seconds=0.3, camera_fps=400, daemon=False, warmup=2)
    assert result["daemon_fps"] is None and result["camera_fps"] == 400 and result["frames"] > 0
    assert result["loop_fps"] <= 400 * 1.2


def test_frame_command_on_the_published_model(capsys):
    model = ultraface("version-slim-320_without_postprocessing.tflite")
    argv = ["frame", "--model", str(model), "--spec", "ultraface", "--source", str(ultraface("images"))]
    assert main(["bench", *argv, "--size", "320x240", "--threads", "1", "--seconds", "1", "--json"]) == 0
    out = capsys.readouterr().out
    for word in (*STAGES, "1 / inference", "sustained"):
        assert word in out
    assert main(["bench", "frame", "--model", str(model), "--size", "640"]) == 1  # no spec in a bare .tflite


def test_replay_source_stays_one_frame_ahead_of_the_detector():
    slot = FrameSlot()
    source = ReplaySource(frames(2, (32, 24)), slot=slot)
    image, position = source.read()  # nothing in the slot yet: no wait
    assert position is None and image.shape == (24, 32, 3)
    slot.put(Frame(image, 0, None, 0.0))
    assert not slot.wait_taken(0.01)  # the detector has not taken it
    threading.Timer(0.05, lambda: slot.take(0.1)).start()
    assert slot.wait_taken(2.0)
    source.read()
    assert len(source.read_ms) == 2
    with pytest.raises(ValueError, match="either fps or slot"):
        ReplaySource(frames(1))


# ------------------------------------------------------------ the fast paths the benchmarks measure


@pytest.mark.parametrize(
    ("scale", "zero_point", "dtype"),
    [(1 / 128, -1, np.int8), (1 / 128, 127, np.uint8), (0.0123, -3, np.int8), (0.05, 3, np.uint8)],
)
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_quantised_preprocessing_is_quantize_of_the_float_tensor(scale, zero_point, dtype, layout, resize):
    spec = replace(SPEC, layout=layout, resize=resize)
    params = QuantParams(np.array([scale], np.float32), np.array([zero_point]))
    direct = Preprocessor(spec)
    assert direct.quantize_to(params, dtype) and direct.dtype == dtype
    for frame in frames(3, (400, 250)):
        tensor, _ = Preprocessor(spec)(frame)
        q, _ = direct(frame, out=np.full(direct.shape, 5, dtype))
        assert q.dtype == dtype and np.array_equal(q, quantize(tensor, params, dtype))


def test_dequantize_matches_the_float64_formula():
    rng = np.random.default_rng(2)
    for dtype in (np.int8, np.uint8, np.int16):
        info = np.iinfo(dtype)
        q = rng.integers(info.min, info.max + 1, (1, 500, 3), dtype=dtype)
        params = QuantParams(rng.uniform(1e-4, 1, 3).astype(np.float32), rng.integers(-100, 100, 3), axis=2)
        want = ((q.astype(np.float64) - params.zero_point) * params.scale.astype(np.float64)).astype(np.float32)
        got = dequantize(q, params)
        assert got.dtype == np.float32 and np.array_equal(got, want)


def test_one_class_nms_equals_multiclass_nms():
    rng = np.random.default_rng(3)
    for n in (0, 1, 5, 12, 13, 40, 250):
        boxes, scores = clustered_boxes(rng, n)
        boxes = boxes.astype(np.float32)
        scores = np.round(scores, 2).astype(np.float32)  # ties
        keep = one_class_nms(boxes, scores, 0.45, top_k=20, max_candidates=100)
        b, s, c = multiclass_nms(boxes, scores[:, None], -1.0, 0.45, top_k=20, max_candidates=100)
        assert np.array_equal(boxes[keep], b) and np.array_equal(scores[keep], s) and not c.any()


def test_paired_compare_of_two_runtimes_on_the_published_model(capsys):
    onnx_model = ultraface("version-slim-320_without_postprocessing.onnx")
    tflite_model = ultraface("version-slim-320_without_postprocessing.tflite")
    rows = bench_paired(onnx_model, [tflite_model, onnx_model], threads=1, rounds=3, runs=2, warmup=1)
    assert [r["model"] for r in rows] == [str(onnx_model), str(tflite_model), str(onnx_model)]
    base, _, same = rows
    assert base["ratio_vs_base"] == 1.0 and base["faster_rounds"] == 0 and base["rounds"] == 3
    assert all(0 < r["min_round_ms"] <= r["median_ms"] for r in rows)
    assert 0.2 < same["ratio_vs_base"] < 5  # the same model against itself: the same time within noise
    with pytest.raises(ValueError, match="rounds and runs must be >= 1"):
        bench_paired(onnx_model, [tflite_model], rounds=0)
    argv = ["compare", "--base", str(onnx_model), "--models", str(tflite_model), "--rounds", "2", "--runs", "2"]
    assert main(["bench", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert "2 interleaved rounds" in out and "x base, faster in" in out
    missing = str(onnx_model.with_name("missing.onnx"))
    assert main(["bench", "compare", "--base", missing, "--models", str(tflite_model)]) == 1

"""The spec inside a ``.tflite`` file (``Model.metadata["edgedet"]``): written by the converter, read on the
device without TensorFlow, the file winning over a sidecar, older sidecar-only files still working, and
clear errors for truncated or corrupt files. Real files and real LiteRT sessions throughout; the slow test
runs the real export (onnx2tf)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from edgedet.convert.tflite_slim import slim_tflite, write_tflite_metadata
from edgedet.edge.bench.model_stats import model_stats
from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.runtime.backends.tflite import TfliteBackend
from edgedet.edge.runtime.backends.tflite_metadata import read_embedded_spec, read_metadata, read_tflite_spec
from edgedet.edge.runtime.detector import Detector

flatbuffer_utils = pytest.importorskip("ai_edge_litert.tools.flatbuffer_utils")
schema = flatbuffer_utils.schema_fb

PUBLISHED = ("models", "ultraface", "version-slim-320_without_postprocessing.tflite")


def _face_spec(**changes) -> ModelSpec:
    """The published UltraFace model's spec as an export would write it (NHWC, with its quantisation)."""
    return replace(ModelSpec.ultraface(), **{"layout": "nhwc", "extra": {"quantization": "none"}, **changes})


def _pack(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def tiny_model(path: Path) -> np.ndarray:
    """A real one-op TFLite model built without TensorFlow: ``output = input + bias``, ``[1, 4, 4, 3]``
    float32; returns ``bias``."""

    def tensor(name: str, buffer: int):
        t = schema.TensorT()
        t.name, t.buffer, t.type, t.shape = name, buffer, schema.TensorType.FLOAT32, np.array([1, 4, 4, 3], np.int32)
        return t

    bias = (np.arange(48, dtype=np.float32) / 8).reshape(1, 4, 4, 3)
    buffers = [schema.BufferT() for _ in range(4)]  # buffer 0 is the empty sentinel
    buffers[2].data = np.frombuffer(bias.tobytes(), np.uint8).copy()
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, np.array([0, 1], np.int32), np.array([2], np.int32)
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.AddOptions, schema.AddOptionsT()
    graph = schema.SubGraphT()
    graph.tensors = [tensor("input", 1), tensor("bias", 2), tensor("output", 3)]
    graph.inputs, graph.outputs, graph.operators = np.array([0], np.int32), np.array([2], np.int32), [op]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.ADD
    code.version = 1
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], [graph], buffers
    path.write_bytes(_pack(model))
    return bias


def _run(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    return TfliteBackend(path, threads=1).run(x)


# ---------------------------------------------------------------------------------------- writing + reading


def test_round_trip_on_a_tiny_model_keeps_what_it_computes(tmp_path):
    path = tmp_path / "tiny.tflite"
    bias = tiny_model(path)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 4, 4, 3)).astype(np.float32)
    before = _run(path, x)
    assert np.array_equal(before["output"], x + bias)
    assert read_metadata(path) is None and read_embedded_spec(path) is None

    write_tflite_metadata(path, {"edgedet": "héllo ✓", "other": b"\x00\x01"})
    assert read_metadata(path) == "héllo ✓".encode()  # UTF-8
    assert read_metadata(path, "other") == b"\x00\x01"
    after = _run(path, x)
    assert list(after) == list(before) and np.array_equal(after["output"], before["output"])
    buffers = len(flatbuffer_utils.read_model(str(path)).buffers)

    write_tflite_metadata(path, {"edgedet": "second"})  # replaces the entry, reusing its buffer
    model = flatbuffer_utils.read_model(str(path))
    assert sorted(m.name.decode() for m in model.metadata) == ["edgedet", "other"]
    assert len(model.buffers) == buffers
    assert read_metadata(path) == b"second" and read_metadata(path, "other") == b"\x00\x01"
    assert np.array_equal(_run(path, x)["output"], before["output"])


def test_spec_round_trip_on_the_published_model_is_bit_identical(tmp_path):
    published = shared_path(*PUBLISHED)
    path = tmp_path / "face.tflite"
    shutil.copyfile(published, path)
    slim_tflite(path)  # as the export finalises a file: slim, then the spec
    spec = _face_spec()
    write_tflite_metadata(path, {"edgedet": spec.to_json()})
    assert read_metadata(path) == spec.to_json().encode("utf-8")
    assert read_metadata(path, "min_runtime_version") == read_metadata(published, "min_runtime_version")
    assert read_embedded_spec(path) == spec and TfliteBackend(path).read_spec() == spec

    x = np.random.default_rng(0).uniform(-1, 1, (1, 240, 320, 3)).astype(np.float32)
    want, got = _run(published, x), _run(path, x)
    assert list(want) == list(got)
    for name in want:
        assert np.array_equal(want[name], got[name]), name


# ------------------------------------------------------------------------------------- the file vs sidecar


@pytest.fixture
def face_files(tmp_path) -> dict[str, Path]:
    """``alone/face.tflite`` with its spec inside and nothing beside it; ``old/face.tflite`` (the
    published file, no metadata) with only a ``face.json`` sidecar."""
    published = shared_path(*PUBLISHED)
    (tmp_path / "alone").mkdir()
    (tmp_path / "old").mkdir()
    alone = tmp_path / "alone" / "face.tflite"
    shutil.copyfile(published, alone)
    write_tflite_metadata(alone, {"edgedet": _face_spec().to_json()})
    old = tmp_path / "old" / "face.tflite"
    shutil.copyfile(published, old)
    old.with_suffix(".json").write_text(_face_spec().to_json() + "\n")
    return {"alone": alone, "old": old}


def _detections(path: Path, frames: list[np.ndarray]) -> list[list[dict]]:
    detector = Detector.from_model(path, threads=1)
    return [[d.to_dict() for d in detector.detect(frame)] for frame in frames]


def test_a_tflite_copied_alone_and_an_older_sidecar_file_detect_the_same(face_files):
    from edgedet.edge.runtime.media import read_image

    frames = [read_image(p) for p in sorted(shared_path("models", "ultraface", "images").glob("*.jpg"))[:3]]
    assert sorted(p.name for p in face_files["alone"].parent.iterdir()) == ["face.tflite"]
    assert read_embedded_spec(face_files["old"]) is None  # the older file: only its sidecar
    assert TfliteBackend(face_files["old"]).read_spec() == _face_spec()
    assert TfliteBackend(face_files["alone"]).read_spec() == _face_spec()
    alone, old = _detections(face_files["alone"], frames), _detections(face_files["old"], frames)
    assert any(alone) and alone == old


def test_the_file_wins_over_a_differing_sidecar_with_a_warning(face_files, caplog):
    alone = face_files["alone"]
    sidecar = alone.with_suffix(".json")
    sidecar.write_text(_face_spec().to_json())  # the same spec: silently fine
    with caplog.at_level(logging.WARNING, logger="edgedet.runtime"):
        assert read_tflite_spec(alone) == _face_spec()
    assert not caplog.records

    sidecar.write_text(_face_spec(score_threshold=0.2, labels=("cat",)).to_json())
    with caplog.at_level(logging.WARNING, logger="edgedet.runtime"):
        detector = Detector.from_model(alone, threads=1)
    assert detector.spec.labels == ("face",) and detector.spec.score_threshold == 0.7
    assert any("face.json differs from the spec inside face.tflite" in r.getMessage() for r in caplog.records)
    # thresholds are changed at run time, not by editing the sidecar
    assert Detector.from_model(alone, threads=1, score_threshold=0.2).spec.score_threshold == 0.2

    caplog.clear()
    sidecar.write_text("{broken")
    with caplog.at_level(logging.WARNING, logger="edgedet.runtime"):
        assert read_tflite_spec(alone) == _face_spec()
    assert any("unreadable" in r.getMessage() for r in caplog.records)


def test_model_stats_reads_the_quantisation_inside_the_file(face_files):
    alone, old = face_files["alone"], face_files["old"]
    assert model_stats(alone).precision == "fp32"
    write_tflite_metadata(alone, {"edgedet": _face_spec(extra={"quantization": "dynamic-range-int8"}).to_json()})
    assert model_stats(alone).precision == "dynamic"  # only the spec says so: the weights are float
    old.with_suffix(".json").write_text(_face_spec(extra={"quantization": "fp16-weights"}).to_json())
    assert model_stats(old).precision == "fp16"  # an older file: from its sidecar


def test_detect_on_a_lone_tflite_needs_no_spec_and_stays_light(face_files, tmp_path):
    """``edgedet detect`` on the file alone, as on a device: no --spec, no torch / TensorFlow / convert."""
    heavy = ("torch", "tensorflow", "edgedet.training", "edgedet.convert")
    out = tmp_path / "d.json"
    argv = ["detect", "--model", str(face_files["alone"]), str(shared_path("models", "ultraface", "images", "1.jpg"))]
    code = (
        "import atexit, sys\n"
        f"atexit.register(lambda: print('HEAVY', sorted(m for m in {heavy!r} if m in sys.modules), flush=True))\n"
        "from edgedet.cli import main\n"
        f"sys.exit(main({[*argv, '--json', str(out)]!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(out.read_text())[0]["detections"]
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr[-2000:]


# -------------------------------------------------------------------- buffers stored outside the flatbuffer


def test_metadata_stored_outside_the_flatbuffer_is_read(tmp_path):
    """Large (> 2 GB) models keep buffer bytes after the flatbuffer, found by ``offset``/``size``."""
    path = tmp_path / "tiny.tflite"
    bias = tiny_model(path)
    payload = _face_spec().to_json().encode("utf-8")
    model = flatbuffer_utils.read_model(str(path))
    outside = schema.BufferT()
    outside.offset, outside.size = 2, len(payload)  # a placeholder offset first: the packed size is the same
    model.buffers.append(outside)
    entry = schema.MetadataT()
    entry.name, entry.buffer = "edgedet", len(model.buffers) - 1
    model.metadata = [entry]
    first = _pack(model)
    outside.offset = (len(first) + 15) // 16 * 16
    packed = _pack(model)
    assert len(packed) == len(first)
    path.write_bytes(packed + b"\x00" * (outside.offset - len(packed)) + payload)

    assert read_metadata(path) == payload and read_embedded_spec(path) == _face_spec()
    x = np.ones((1, 4, 4, 3), np.float32)
    assert np.array_equal(_run(path, x)["output"], x + bias)  # LiteRT loads it too

    path.write_bytes(path.read_bytes()[:-10])  # the outside bytes cut short
    index = entry.buffer
    with pytest.raises(
        ValueError, match=rf"tiny\.tflite: truncated or corrupt TFLite file: buffers\[{index}\] stored at"
    ):
        read_metadata(path)


# ------------------------------------------------------------------------------------------- bad input


def test_truncated_files_are_a_clear_error(tmp_path):
    src = tmp_path / "tiny.tflite"
    tiny_model(src)
    write_tflite_metadata(src, {"edgedet": _face_spec().to_json()})
    data, payload = src.read_bytes(), _face_spec().to_json().encode()
    cut = tmp_path / "cut.tflite"
    failures = 0
    for length in range(len(data)):
        cut.write_bytes(data[:length])
        try:
            got = read_metadata(cut)
        except ValueError as exc:  # never an IndexError / struct.error from deep inside
            assert str(exc).startswith(f"{cut}: truncated or corrupt TFLite file: "), exc
            failures += 1
        else:  # every byte it reads lies before the cut (the interpreter rejects the rest of the file)
            assert got == payload
    assert failures > len(data) // 2
    for length in (0, 7):
        cut.write_bytes(data[:length])
        with pytest.raises(ValueError, match=rf"cut\.tflite: .*{length} bytes is too short"):
            read_tflite_spec(cut)


def test_a_truncated_exported_file_names_the_file(face_files):
    path = face_files["alone"]
    path.write_bytes(path.read_bytes()[:90])
    with pytest.raises(ValueError, match=r"face\.tflite: truncated or corrupt TFLite file: .*past the end"):
        read_tflite_spec(path)
    stats = model_stats(path)  # a benchmark reports n/a and goes on
    assert stats.params is None and stats.precision == "?"


def test_garbage_and_corrupt_metadata_are_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match=r"garbage\.tflite: .*not a TFLite flatbuffer \(file identifier"):
        read_metadata(garbage)

    path = tmp_path / "tiny.tflite"
    tiny_model(path)
    write_tflite_metadata(path, {"edgedet": "{not json"})
    TfliteBackend(path)  # LiteRT loads it: only the spec is wrong
    with pytest.raises(ValueError, match=r"tiny\.tflite \(metadata 'edgedet'\): not valid JSON"):
        TfliteBackend(path).read_spec()
    write_tflite_metadata(path, {"edgedet": json.dumps({"head": "ssd"})})
    with pytest.raises(ValueError, match=r"tiny\.tflite \(metadata 'edgedet'\): 'head' and 'labels' are required"):
        read_tflite_spec(path)
    write_tflite_metadata(path, {"edgedet": b"\xff\xfe{}"})
    with pytest.raises(ValueError, match=r"tiny\.tflite \(metadata 'edgedet'\): not UTF-8 text"):
        read_embedded_spec(path)

    model = flatbuffer_utils.read_model(str(path))
    model.metadata[0].buffer = 9999
    path.write_bytes(_pack(model))
    with pytest.raises(
        ValueError,
        match=rf"tiny\.tflite: .*metadata points to buffer 9999 but the model has {len(model.buffers)} buffers",
    ):
        read_metadata(path)

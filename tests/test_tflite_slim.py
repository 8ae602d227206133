"""edgedet.convert.tflite_slim: internal tensor names go, identical vectors are written once, the model computes
exactly the same, I/O names stay."""

import shutil

import numpy as np
import pytest
from conftest import shared_path

from edgedet.convert.tflite_slim import SharingBuilder, slim_tflite
from edgedet.edge.runtime.backends.tflite import TfliteBackend


def test_stripped_published_model_is_smaller_and_computes_the_same(tmp_path):
    published = shared_path("models", "ultraface", "version-slim-320_without_postprocessing.tflite")
    slim = tmp_path / "slim.tflite"
    shutil.copyfile(published, slim)
    before, after = slim_tflite(slim)
    assert before == published.stat().st_size and after == slim.stat().st_size
    assert after < before - 30_000  # the names of ~180 tensors

    from ai_edge_litert.tools import flatbuffer_utils

    graph = flatbuffer_utils.read_model(str(slim)).subgraphs[0]
    io = {*map(int, graph.inputs), *map(int, graph.outputs)}
    assert all(not t.name for i, t in enumerate(graph.tensors) if i not in io)
    assert all(graph.tensors[i].name for i in io)

    x = np.random.default_rng(0).uniform(-1, 1, (1, 240, 320, 3)).astype(np.float32)
    want, got = TfliteBackend(published, threads=1).run(x), TfliteBackend(slim, threads=1).run(x)
    assert list(want) == list(got)  # same output names, same order
    for name in want:
        assert np.array_equal(want[name], got[name]), name


def test_a_file_that_is_not_a_model_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"bad\.tflite: not a readable TFLite flatbuffer"):
        slim_tflite(bad)


def test_identical_vectors_are_written_once_and_read_back_the_same():
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    published = shared_path("models", "ultraface", "version-slim-320_without_postprocessing.tflite")
    model = flatbuffer_utils.read_model(str(published))
    tensors = model.subgraphs[0].tensors[:40]
    for i, tensor in enumerate(tensors):  # per-channel style parameters: distinct scales, all-zero points
        tensor.quantization = schema.QuantizationParametersT()
        tensor.quantization.scale = np.full(64, 0.01 * (i + 1), np.float32)
        tensor.quantization.zeroPoint = np.zeros(64, np.int64)

    def pack(builder):
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    plain, shared = pack(flatbuffers.Builder(1024)), pack(SharingBuilder())
    assert len(plain) - len(shared) >= 39 * 64 * 8  # 39 of the 40 zero-point vectors are not written again
    back = flatbuffer_utils.convert_bytearray_to_object(bytearray(shared))
    for i, tensor in enumerate(back.subgraphs[0].tensors[:40]):
        assert np.array_equal(tensor.quantization.zeroPoint, np.zeros(64, np.int64))
        assert np.allclose(tensor.quantization.scale, 0.01 * (i + 1))

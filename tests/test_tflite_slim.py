"""convert.tflite_slim: internal tensor names go, the model computes exactly the same, I/O names stay."""

import shutil

import numpy as np
import pytest
from conftest import shared_path

from convert.tflite_slim import strip_tensor_names
from edge.backends import TfliteBackend


def test_stripped_published_model_is_smaller_and_computes_the_same(tmp_path):
    published = shared_path("models", "ultraface", "version-slim-320_without_postprocessing.tflite")
    slim = tmp_path / "slim.tflite"
    shutil.copyfile(published, slim)
    before, after = strip_tensor_names(slim)
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
        strip_tensor_names(bad)

"""`edgedet bench profile`: ONNX Runtime's own per-node times, summed by operator kind."""

import json
import sys

import pytest
from tests_support import single_conv_onnx

from edgedet.cli import main
from edgedet.edge.bench.ort_profile import profile_onnx


def test_pointwise_and_depthwise_convolutions_are_told_apart(tmp_path):
    pointwise = single_conv_onnx(tmp_path / "pw.onnx", cin=16, cout=32, k=1, stride=1, size=(60, 80))
    depthwise = single_conv_onnx(tmp_path / "dw.onnx", cin=32, cout=32, k=3, stride=1, size=(60, 80), group=32)
    pw, dw = profile_onnx(pointwise, runs=20), profile_onnx(depthwise, runs=20)
    assert "Conv" in pw and "Conv/dw" not in pw
    assert "Conv/dw" in dw and "Conv" not in dw
    for p in (pw, dw):
        assert all(v >= 0 for v in p.values())
        assert p["total"] == pytest.approx(sum(v for k, v in p.items() if k != "total"))
        assert p["total"] > 0


def test_profile_command_prints_one_column_per_model(tmp_path, capsys):
    a = single_conv_onnx(tmp_path / "a.onnx", cin=8, cout=8, k=3, stride=1, size=(32, 32), group=8)
    b = single_conv_onnx(tmp_path / "b.onnx", cin=8, cout=16, k=1, stride=1, size=(32, 32))
    assert main(["bench", "profile", "--models", str(a), str(b), "--runs", "5", "--json"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "a.onnx" in line)
    assert "b.onnx" in header
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith(("Conv", "total"))}
    assert rows["Conv/dw"][1] == "-" and rows["Conv"][0] == "-"  # a is depthwise only, b pointwise only
    figures = json.loads(out.splitlines()[-1])
    assert set(figures) == {str(a), str(b)}


def test_profile_names_what_is_wrong(tmp_path, capsys):
    assert main(["bench", "profile", "--models", str(tmp_path / "missing.onnx")]) == 1
    assert "missing.onnx: no such model file" in capsys.readouterr().err
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    assert main(["bench", "profile", "--models", str(junk)]) == 1
    assert "junk.onnx: ONNX Runtime cannot load it" in capsys.readouterr().err
    with pytest.raises(ValueError, match="runs: expected >= 1"):
        profile_onnx(junk, runs=0)


def test_with_only_the_edge_extra_operators_are_summed_by_type(tmp_path, monkeypatch):
    """No ``onnx`` package on a device: the profile still works, without the depthwise split."""
    depthwise = single_conv_onnx(tmp_path / "dw.onnx", cin=8, cout=8, k=3, stride=1, size=(32, 32), group=8)
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    p = profile_onnx(depthwise, runs=5)
    assert "Conv" in p and "Conv/dw" not in p

"""The parity checker itself: detection matching, the table, and that it catches a wrong model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from test_export import lively, photos, small_checkpoint, small_spec

from edgedet.convert.onnx_export import export_onnx
from edgedet.convert.parity import _max_diff, check_parity, count_matches
from edgedet.edge.runtime.detector import Detection
from edgedet.training.checkpoint import save_checkpoint
from edgedet.training.model_factory import build_model


def det(box, score=0.9, cls=0):
    return Detection(tuple(float(v) for v in box), score, cls, "a")


def test_count_matches_by_class_and_iou():
    ref = [det((0, 0, 10, 10)), det((20, 20, 30, 30)), det((50, 50, 60, 60), cls=1)]
    cand = [det((1, 0, 11, 10)), det((50, 50, 60, 60), cls=0), det((100, 100, 110, 110))]
    assert count_matches(ref, cand) == (1, 2)  # a shifted box matches; the other class does not
    assert count_matches([], cand) == (0, 3)
    assert count_matches(ref, []) == (0, 0)
    # one candidate serves one reference only
    assert count_matches([det((0, 0, 10, 10)), det((0, 0, 10, 10), 0.8)], [det((0, 0, 10, 10))]) == (1, 0)


def test_parity_catches_another_models_weights(tmp_path):
    ckpt = small_checkpoint(tmp_path / "a.pt", "ssd", seed=0)
    other = small_checkpoint(tmp_path / "b.pt", "ssd", seed=1)
    files = {"same": export_onnx(ckpt, tmp_path / "a.onnx"), "other": export_onnx(other, tmp_path / "b.onnx")}
    report = check_parity(ckpt, files, photos(3), show_progress=False)
    rows = {r.name: r for r in report.rows}
    assert rows["same"].passed and not rows["other"].passed and not report.passed
    assert rows["other"].max_abs_diff > 1e-2 and "max |diff|" in rows["other"].note
    table = report.table().splitlines()
    assert table[0].split()[:3] == ["model", "kind", "KB"] and len(table) == 4
    assert "FAIL" in table[3] and table[2].rstrip().endswith("ok")


def test_parity_refuses_a_model_of_another_head(tmp_path):
    ckpt = small_checkpoint(tmp_path / "ssd.pt", "ssd")
    centernet = export_onnx(small_checkpoint(tmp_path / "cn.pt", "centernet"), tmp_path / "cn.onnx")
    with pytest.raises(ValueError, match="'centernet' model, but the checkpoint"):
        check_parity(ckpt, [centernet], show_progress=False)


def test_parity_on_noise_frames_without_images(tmp_path):
    ckpt = small_checkpoint(tmp_path / "ssd.pt", "ssd")
    report = check_parity(ckpt, [export_onnx(ckpt, tmp_path / "m.onnx")], None, max_images=2, show_progress=False)
    assert report.passed and report.rows[0].images == 2


def test_output_difference_is_relative_above_magnitude_one():
    # O(1) outputs: the absolute difference; large regressions (CenterNet sizes of tens of cells): relative
    want = {"size": np.array([[60.0, 0.5]]), "offset": np.array([[0.25, 0.75]])}
    cand = {"size": np.array([[60.0 + 3e-4, 0.5]]), "offset": np.array([[0.25, 0.75 + 2e-5]])}
    assert _max_diff(cand, want, "m") == pytest.approx(max(3e-4 / 60.0, 2e-5))
    cand["size"][0, 1] += 2e-4  # a small value: the bound stays absolute
    assert _max_diff(cand, want, "m") == pytest.approx(2e-4)


def test_parity_compares_detections_below_a_high_default_threshold(tmp_path):
    # a checkpoint whose default threshold nothing reaches still gets its detections compared, at 0.1
    spec = replace(small_spec("ssd"), score_threshold=1.0)
    ckpt = save_checkpoint(tmp_path / "ssd.pt", lively(build_model(spec), 0), spec)
    report = check_parity(ckpt, [export_onnx(ckpt, tmp_path / "m.onnx")], photos(3), show_progress=False)
    assert report.passed and report.rows[0].reference_detections > 0

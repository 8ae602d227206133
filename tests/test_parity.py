"""The parity checker itself: detection matching, the table, and that it catches a wrong model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch
from test_export import lively, photos, small_checkpoint, small_spec

from edgedet.convert.onnx_export import export_onnx, read_metadata_spec, set_metadata_spec
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


def _flat_ssd(tmp_path, name: str, logit: float, threshold: float | None = None):
    """A checkpoint whose every prior scores ``sigmoid(logit)`` for class a, whatever the image; the
    threshold ``sigmoid(logit) - threshold`` below that (``None``: the checkpoint's default)."""
    spec = small_spec("ssd")
    model = lively(build_model(spec), 0)
    with torch.no_grad():
        for head in model.classification_headers:
            last = head[-1] if isinstance(head, torch.nn.Sequential) else head
            last.weight.zero_()
            last.bias.copy_(torch.tensor([0.0, logit, -20.0]).repeat(last.bias.numel() // 3))
    score = float(torch.sigmoid(torch.tensor(logit)))  # background 0, class b -20: softmax = sigmoid
    if threshold is not None:
        spec = replace(spec, score_threshold=score - threshold)
    return save_checkpoint(tmp_path / f"{name}.pt", model, spec)


def _as_int8(ckpt, path):
    """``ckpt``'s ONNX labelled as a reduced-precision file (its parity row is then approximate)."""
    model = onnx.load(export_onnx(ckpt, path))
    spec = read_metadata_spec(model)
    set_metadata_spec(model, replace(spec, extra={**dict(spec.extra), "quantization": "int8-qdq"}))
    onnx.save(model, path)
    return path


def test_int8_parity_leaves_out_detections_within_a_score_step_of_the_threshold(tmp_path):
    # every reference detection scores 0.001 above the threshold; the "int8" copy scores 0.0025 lower (< 1/256):
    # it finds nothing, and that says nothing about int8 (a half-minute raccoon SSD did exactly this)
    ckpt = _flat_ssd(tmp_path, "ref", 0.0, threshold=0.001)
    near = _as_int8(_flat_ssd(tmp_path, "near", -0.01), tmp_path / "near.onnx")
    row = check_parity(ckpt, [near], photos(2), show_progress=False).rows[0]
    assert row.reference_detections == 0 and row.borderline > 0 and row.passed
    assert "borderline" in check_parity(ckpt, [near], photos(1), show_progress=False).table()
    # the same copy against a threshold 0.05 below the scores: they are compared, and all are matched
    ckpt = _flat_ssd(tmp_path, "ref2", 0.0, threshold=0.05)
    row = check_parity(ckpt, [near], photos(2), show_progress=False).rows[0]
    assert row.reference_detections > 0 and row.borderline == 0 and row.recall == 1.0 and row.passed
    # a copy that loses them (scores 0.12 lower) fails
    far = _as_int8(_flat_ssd(tmp_path, "far", -0.5), tmp_path / "far.onnx")
    row = check_parity(ckpt, [far], photos(2), show_progress=False).rows[0]
    assert row.matched == 0 and row.reference_detections > 0 and not row.passed


def test_a_file_the_budget_search_scored_on_val_is_accepted_despite_low_recall(tmp_path):
    from edgedet.convert.export import accept_budgeted
    from edgedet.convert.mixed_precision import BudgetResult
    from edgedet.convert.parity import ParityReport, ParityRow

    def budget(runtime: str, met: bool) -> BudgetResult:
        return BudgetResult(runtime, 0.5, "m", "entropy", {}, [], 40, 0.82, 0.84, 0.84, -0.004, 0.036, 200, met, 1.0)

    def report() -> ParityReport:
        rows = [ParityRow("onnx", tmp_path / "m.onnx", True, passed=False, note="max |diff|")]
        for name in ("onnx_int8", "tflite_int8", "tflite_int8_float_io", "tflite_fp16"):
            rows.append(ParityRow(name, tmp_path / name, False, reference_detections=100, matched=93))
        qat = ParityRow("qat", tmp_path / "q", False, reference_detections=100, matched=93, steps_p99=9.0)
        qat.steps_max = 9.0
        rows.append(qat)
        return ParityReport(rows)

    r = report()
    accept_budgeted(r, [budget("onnxruntime", True), budget("litert", False)])
    ok = {row.name for row in r.rows if row.passed}
    assert ok == {"onnx_int8"}  # not the fp32 file, an unmet budget's files, fp16, or a QAT file
    assert "accepted: within the 0.5-point AP50 budget" in r.table()
    r = report()
    accept_budgeted(r, [budget("litert", True)])
    assert {row.name for row in r.rows if row.passed} == {"tflite_int8", "tflite_int8_float_io"}

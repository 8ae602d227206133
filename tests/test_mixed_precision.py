"""Mixed precision under an AP50 budget (``edgedet export --int8-budget``): the search on its own, against
brute force, and the ONNX Runtime path on a tiny SSD with one layer that int8 cannot represent."""

from __future__ import annotations

import itertools
import json

import cv2
import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import numpy_helper
from test_export import small_checkpoint

from edgedet.cli import main
from edgedet.convert.calibration import calibration_tensors
from edgedet.convert.mixed_precision import budget_markdown, ort_budget, search_keep_float, tflite_budget
from edgedet.convert.onnx_export import export_onnx, read_metadata_spec
from edgedet.convert.quantize_onnx import quantize_onnx
from edgedet.edge.datasets.sample import Dataset, Sample
from edgedet.edge.eval.coco_metrics import coco_metrics
from edgedet.edge.eval.evaluate import EVAL_SCORE_THRESHOLD, run_detector
from edgedet.edge.runtime.detector import Detector

# ---------------------------------------------------------------------------------------------------------
# the search alone: an additive model of AP50 (each float layer gives back its own loss)


def _additive(base: float, gains: dict[str, float], calls: list[tuple[str, ...]]):
    def score(keep: tuple[str, ...]) -> float:
        calls.append(keep)
        return base + sum(gains[k] for k in keep)

    return score


@settings(max_examples=60, deadline=None)
@given(
    gains=st.lists(st.sampled_from([0.0, 0.0, 0.001, 0.01, 0.05, 0.2]), min_size=1, max_size=9),
    need=st.floats(0.0, 0.5),
)
def test_search_meets_a_reachable_target_with_a_1_minimal_set(gains, need):
    names = [f"L{i}" for i in range(len(gains))]
    gain = dict(zip(names, gains, strict=True))
    ranking = sorted(names, key=lambda n: -gain[n])  # a good ranking: worst layer first
    calls: list[tuple[str, ...]] = []
    base = 0.5
    target = base + need
    chosen, trials, met = search_keep_float(_additive(base, gain, calls), ranking, target, max_trials=200)
    reachable = base + sum(gains) >= target
    assert met == reachable
    assert len(calls) == len(set(calls)) == len(trials)  # never scored twice
    if met:
        assert base + sum(gain[c] for c in chosen) >= target
        for c in chosen:  # 1-minimal: no single layer can go back to int8
            assert base + sum(gain[x] for x in chosen if x != c) < target
        # with additive gains and the best-first ranking, the greedy set is as small as brute force's
        smallest = next(
            k for k in range(len(names) + 1) for combo in itertools.combinations(names, k)
            if base + sum(gain[x] for x in combo) >= target
        )  # fmt: skip
        assert len(chosen) == smallest


def test_search_reports_the_best_set_when_the_target_is_out_of_reach():
    gain = {"a": 0.1, "b": 0.2, "c": 0.0}
    chosen, trials, met = search_keep_float(_additive(0.5, gain, []), ["b", "a", "c"], 0.95)
    assert not met
    assert set(chosen) == {"a", "b"}  # the best score, fewest layers among equals (c adds nothing)
    assert max(t.ap50 for t in trials) == pytest.approx(0.8)


def test_search_stops_at_max_trials():
    gain = {f"L{i}": 0.0 for i in range(40)}
    _, trials, met = search_keep_float(_additive(0.5, gain, []), list(gain), 0.9, max_trials=5)
    assert len(trials) == 5 and not met


# ---------------------------------------------------------------------------------------------------------
# ONNX Runtime: a tiny SSD, val truth = its own fp32 detections, one layer broken for int8 only

BLOCK = "/model/base_net/base_net.8/base_net.8"
DW, PW = f"{BLOCK}.0/Conv", f"{BLOCK}.3/Conv"  # a backbone block: depthwise, Relu, pointwise


def _break_for_int8(path) -> None:
    """Break ``DW`` -> ``PW`` for int8 only: input channel 0 of ``PW`` is dead in fp32 (the depthwise ``DW``
    before it gets zero weights and bias on that channel) and ``PW``'s weights on that channel become 1000.
    int8 breaks on both sides: ``PW``'s per-channel weight scale becomes ~8, which rounds its real weights
    (~0.1) to zero, and ``DW``'s all-zero channel gets a degenerate weight scale, so the channel is no longer
    exactly 0 once ``PW`` multiplies it by 1000. Neither layer float alone is enough, both are."""
    model = onnx.load(path)
    inits = {i.name: i for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}

    def edit(name: str, change) -> None:
        array = numpy_helper.to_array(inits[name]).copy()
        change(array)
        inits[name].CopyFrom(numpy_helper.from_array(array, name))

    edit(nodes[DW].input[1], lambda w: w.__setitem__(0, 0.0))
    edit(nodes[DW].input[2], lambda b: b.__setitem__(0, 0.0))
    edit(nodes[PW].input[1], lambda w: w.__setitem__((slice(None), 0), 1000.0))
    onnx.save(model, path)


def _own_detections_as_truth(model_path, folder, n: int) -> Dataset:
    """The fp32 model's own detections above the 90th-percentile score as ground truth: fp32 scores AP50 1.0
    on it (every truth box is one of its detections, every detection below them scores lower)."""
    detector = Detector.from_model(model_path, threads=1, score_threshold=EVAL_SCORE_THRESHOLD)
    found = []
    for i in range(n):
        image = cv2.imread(str(folder / f"{i}.png"))
        found.append(detector.detect(image))
    cut = np.quantile([d.score for dets in found for d in dets], 0.9)
    samples = []
    for i, dets in enumerate(found):
        keep = [d for d in dets if d.score > cut]
        samples.append(
            Sample(
                folder / f"{i}.png",
                np.array([d.box for d in keep], np.float64).reshape(-1, 4),
                np.array([d.class_id for d in keep], np.int64),
                160,
                120,
                str(i),
            )
        )
    return Dataset(tuple(detector.labels), samples)


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    root = tmp_path_factory.mktemp("budget")
    fp32 = export_onnx(small_checkpoint(root / "ssd.pt", "ssd"), root / "ssd.onnx")
    _break_for_int8(fp32)
    from edgedet.edge.datasets.synthetic import generate_synthetic

    n = 16
    scenes = generate_synthetic(root / "scenes", n, size=(160, 120), seed=3, image_format="png")
    folder = root / "frames"
    folder.mkdir()
    for i, path in enumerate(sorted((scenes / "JPEGImages").glob("*.png"))):
        path.rename(folder / f"{i}.png")
    inputs = calibration_tensors(read_metadata_spec(onnx.load(fp32)), folder, n, show_progress=False)
    return fp32, inputs, _own_detections_as_truth(fp32, folder, n), folder


def _ap50(path, dataset: Dataset) -> float:
    detector = Detector.from_model(path, threads=1, score_threshold=EVAL_SCORE_THRESHOLD)
    truth, dets, _ = run_detector(detector, dataset, progress=False)
    return float(coco_metrics(truth, dets, detector.labels)["AP50"])


def _float_convs(path) -> set[str]:
    model = onnx.load(path)
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    return {n.name for n in model.graph.node if n.op_type == "Conv" and producer.get(n.input[1]) != "DequantizeLinear"}


def test_ort_budget_keeps_the_broken_layers_float_and_nothing_else(broken, tmp_path):
    fp32, inputs, val, _ = broken
    assert _ap50(fp32, val) == pytest.approx(1.0)
    plain = quantize_onnx(fp32, tmp_path / "plain.onnx", inputs, show_progress=False)
    assert _ap50(plain, val) < 0.9  # the broken layer costs all-int8 more than 10 points
    out = tmp_path / "mixed.onnx"
    result = ort_budget(fp32, out, inputs, val, 5.0, methods=("minmax",), resamples=50, show_progress=False)
    assert result.met and sorted(result.keep_float) == [DW, PW]
    tried = {t.keep_float: t.ap50 for t in result.trials}
    target = result.ap50_fp32 - 0.05
    assert tried[(DW,)] < target and tried[(PW,)] < target  # 1-minimal: each alone was tried and fell short
    assert result.ap50_mixed >= result.ap50_fp32 - 0.05
    assert result.ap50_mixed == pytest.approx(_ap50(out, val))  # the file written is the one judged
    assert result.ap50_int8 == pytest.approx(_ap50(plain, val))
    assert _float_convs(out) == _float_convs(plain) | {DW, PW}  # everything else as the export quantises
    assert result.delta_low <= result.ap50_mixed - result.ap50_fp32 <= result.delta_high
    assert result.latency_ratio is not None and result.latency_ratio > 0
    assert result.trials[0].keep_float == () and result.trials[-1].ap50 >= 0.0
    text = budget_markdown([result])
    assert "| onnxruntime | 5 | yes | minmax |" in text and PW in text


def test_ort_budget_searches_calibration_methods_and_reports_an_unmet_budget(broken, tmp_path):
    fp32, inputs, val, _ = broken
    result = ort_budget(fp32, tmp_path / "m.onnx", inputs, val, 0.0, max_trials=3, resamples=20, show_progress=False)
    assert set(result.methods_ap50) == {"minmax", "entropy", "percentile"}
    assert result.method == max(result.methods_ap50, key=lambda m: (result.methods_ap50[m], m == "minmax"))
    assert len(result.trials) == 3
    if not result.met:  # a 0-point budget with 3 trials: the best tried is what was written
        assert result.ap50_mixed == pytest.approx(max(t.ap50 for t in result.trials))


def test_export_budget_needs_val_and_int8(tmp_path, capsys):
    ckpt = small_checkpoint(tmp_path / "m.pt", "ssd")
    args = ["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "o"), "--int8-budget"]
    calib = ["--int8", "--calib", str(tmp_path)]
    for extra, message in (
        (["0.5"], "--int8-budget applies to int8 models: add --int8"),
        (["0.5", *calib], "--int8-budget needs labelled val data to judge accuracy: give --val DATA"),
        (["-1", *calib, "--val", "synthetic:4"], "--int8-budget: expected AP50 points >= 0"),
    ):
        assert main([*args, *extra]) != 0
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_export_cli_writes_the_mixed_model_and_its_report(broken, tmp_path):
    """``edgedet export --int8-budget`` end to end on a VOC val folder (the tiny SSD's own checkpoint, not
    broken: its all-int8 model is within a generous budget, so nothing needs to stay float)."""
    from edgedet.edge.datasets.synthetic import generate_synthetic

    data = generate_synthetic(tmp_path / "data", 12, size=(160, 120), seed=3, classes=("circle", "square"))
    ckpt = small_checkpoint(tmp_path / "m.pt", "ssd")
    out = tmp_path / "out"
    code = main(
        ["export", "--checkpoint", str(ckpt), "--out", str(out), "--int8", "--calib", str(data / "JPEGImages"),
         "--int8-budget", "100", "--val", f"voc:{data}:val", "--class-map", "circle=a,square=b", "--no-parity"]
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "int8_budget.json").read_text())
    assert [r["runtime"] for r in report] == ["onnxruntime"] and report[0]["met"]
    assert report[0]["keep_float"] == []
    assert "# int8 under an accuracy budget" in (out / "int8_budget.md").read_text()
    assert (out / "m_int8.onnx").is_file()


@pytest.mark.slow
def test_tflite_budget_keeps_float_what_the_search_needs_and_writes_both_io_files(broken, tmp_path):
    from edgedet.convert.tflite_mixed import export_tflite_int8_keep_float

    fp32, inputs, val, _ = broken
    plain = export_tflite_int8_keep_float(fp32, tmp_path / "plain.tflite", inputs, [], calib_images=len(inputs),
                                          show_progress=False)  # fmt: skip
    assert _ap50(plain, val) < 0.9
    outs = {"float": tmp_path / "m_int8_float_io.tflite", "int8": tmp_path / "m_int8.tflite"}
    outs["float"].with_suffix(".json").write_text("{}")  # the export's sidecar of the all-int8 file
    result = tflite_budget(fp32, outs, plain, inputs, val, 5.0, resamples=20, show_progress=False)
    assert result.runtime == "litert" and result.method == "minmax" and result.met
    assert PW in result.keep_float
    tried = {t.keep_float: t.ap50 for t in result.trials}
    target = result.ap50_fp32 - 0.05
    for layer in result.keep_float:  # 1-minimal: without any one of them the budget was missed
        rest = tuple(k for k in result.keep_float if k != layer)
        assert tried[rest] < target
    assert result.ap50_mixed == pytest.approx(_ap50(outs["float"], val)) and result.ap50_mixed >= target
    for path in outs.values():  # both I/O variants were written, with the float layers in their spec
        detector = Detector.from_model(path, threads=1)
        assert list(detector.spec.extra["float_layers"]) == result.keep_float
    sidecar = json.loads(outs["float"].with_suffix(".json").read_text())  # rewritten, not left stale
    assert sidecar["extra"]["float_layers"] == result.keep_float and not outs["int8"].with_suffix(".json").exists()


def test_export_exits_4_and_keeps_the_best_model_when_the_budget_is_not_met(tmp_path, monkeypatch, capsys):
    """The CLI's contract for an unmet budget (the search's own unmet result is tested above): the best
    model found is written, the report says "no", and the exit status is 4 (3 stays parity's)."""
    import edgedet.convert.export as export_module
    from edgedet.edge.datasets.synthetic import generate_synthetic

    real = export_module.ort_budget

    def unmet(*args, **kwargs):
        result = real(*args, **{**kwargs, "max_trials": 1})
        result.met = False
        return result

    monkeypatch.setattr(export_module, "ort_budget", unmet)
    data = generate_synthetic(tmp_path / "data", 8, size=(160, 120), seed=3, classes=("circle", "square"))
    ckpt = small_checkpoint(tmp_path / "m.pt", "ssd")
    out = tmp_path / "out"
    code = main(
        ["export", "--checkpoint", str(ckpt), "--out", str(out), "--int8", "--calib", str(data / "JPEGImages"),
         "--int8-budget", "0", "--val", f"voc:{data}:val", "--class-map", "circle=a,square=b", "--no-parity"]
    )  # fmt: skip
    assert code == 4
    assert "int8 budget not met" in capsys.readouterr().out
    assert "| onnxruntime | 0 | **no** |" in (out / "int8_budget.md").read_text()
    assert (out / "m_int8.onnx").is_file()


def test_search_finds_a_needed_layer_ranked_last_in_a_few_trials():
    # the raccoon SSD's TFLite case: of 43 layers only the last-ranked (the int8 Softmax) matters
    gain = {f"L{i}": 0.0 for i in range(42)} | {"softmax": 0.03}
    chosen, trials, met = search_keep_float(_additive(0.8, gain, []), list(gain), 0.82, max_trials=16)
    assert met and chosen == ("softmax",)
    assert len(trials) <= 1 + 7 + 4 + 1  # none, doubling to 43, bisection 32..43, the needed layer alone

"""Quantisation-aware training: the fake-quantised twin of a model, the QAT fine-tune, and int8 exports
whose scales are the trained ones (ORT QDQ straight from the model, TFLite with its tensors re-scaled)."""

from __future__ import annotations

import copy
import csv

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from test_export import lively, photos, small_spec
from test_train import TINY
from torch import nn

from edgedet.convert import qat_export
from edgedet.convert.parity import QAT_MAX_STEPS
from edgedet.edge.runtime.backends.onnx import OnnxBackend
from edgedet.edge.runtime.detector import Detector
from edgedet.training import qat
from edgedet.training.checkpoint import load_checkpoint, save_checkpoint
from edgedet.training.config import load_config
from edgedet.training.model_factory import build_model
from edgedet.training.train import train


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEDET_CACHE", str(tmp_path / "cache"))


def inputs(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 120, 160, generator=torch.Generator().manual_seed(seed))


def calibrated(head: str, target: str = "both", seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """``(float model, its fake-quantised twin with observed ranges)`` of a random "lively" model."""
    spec = small_spec(head)
    model = lively(build_model(spec), seed)
    twin = qat.prepare_qat(copy.deepcopy(model), spec, target)
    qat.calibrate(twin, [inputs(4, 1), inputs(4, 2)])
    return model, twin


def qat_checkpoint(path, twin: nn.Module):
    spec = twin.spec
    return save_checkpoint(path, qat.float_model(twin, spec), spec, **qat.qat_checkpoint_entries(twin))


# --------------------------------------------------------------------------- the fake-quantised model


@pytest.mark.parametrize("head", ["ssd", "centernet"])
def test_folded_fake_quant_model_is_the_float_model_up_to_quantisation(head):
    model, twin = calibrated(head)
    x = inputs(2, 3)
    with torch.no_grad():
        want = model.eval()(x)
        twin.apply(torch.ao.quantization.disable_fake_quant)  # folding alone changes nothing
        exact = twin.eval()(x)
        twin.apply(torch.ao.quantization.enable_fake_quant)
        quantised = twin(x)
    for w, e, q in zip(want, exact, quantised, strict=True):
        assert torch.allclose(e, w, rtol=1e-4, atol=1e-4 * float(w.abs().max()))
        cosine = torch.nn.functional.cosine_similarity(q.flatten(), w.flatten(), dim=0)
        assert cosine > 0.99 and not torch.equal(q, w)
    # every quantised conv: BatchNorm folded into the weight exactly as the export folds it, int8 per channel
    folded = qat_export.folded_convs(twin)
    device_form = qat_export.export_model(twin)
    for group in twin.qat_groups:
        conv = model.get_submodule(group.conv)
        weight = conv.weight.detach() * getattr(conv, "scale", 1.0)
        if group.bn:
            bn = model.get_submodule(group.bn)
            weight = weight * (bn.weight / torch.sqrt(bn.running_var + bn.eps)).reshape(-1, 1, 1, 1)
        assert torch.allclose(folded[group.conv][0], weight, rtol=1e-5, atol=1e-7), group.conv
        module = device_form.get_submodule(group.conv)
        scale = weight.abs().amax(dim=(1, 2, 3)) / 127
        assert torch.allclose(module.w_scale, scale, rtol=1e-6), group.conv
        error = (module.quantized_weight() - weight).abs().amax(dim=(1, 2, 3))
        assert bool((error <= scale / 2 * (1 + 1e-4)).all()), group.conv


def test_what_is_quantised_where():
    _, ort_ssd = calibrated("ssd", "ort")
    _, both_ssd = calibrated("ssd", "both")
    _, both_cn = calibrated("centernet", "both")
    # ort: float stem (first conv + first depthwise), the quantised region starts at the first pointwise conv
    assert ort_ssd.qat_stem == ["base_net.0.0", "base_net.1.0"]
    assert isinstance(ort_ssd.base_net[0][0], nn.Conv2d) and isinstance(ort_ssd.base_net[0][1], nn.BatchNorm2d)
    fqs = qat.activation_quantizers(ort_ssd)
    assert "base_net.1.3.input_quant" in fqs and "classification_headers.0.2.activation_post_process" in fqs
    # tflite / both: everything int8 from the input on; SSD head outputs share one range per output
    assert both_ssd.qat_stem == [] and "base_net.0.0.input_quant" in qat.activation_quantizers(both_ssd)
    both_fqs = qat.activation_quantizers(both_ssd)
    assert {"output_quant.0", "output_quant.1"} <= set(both_fqs)
    assert "classification_headers.0.2.activation_post_process" not in both_fqs
    # CenterNet: each neck sum quantised as the input of its smooth block
    assert {f"smooth.{i}.0.input_quant" for i in range(3)} <= set(qat.activation_quantizers(both_cn))
    # scales are uint8 (ORT); zero points of post-ReLU outputs are 0
    assert all(0 <= int(q.zero_point) <= 255 for q in both_fqs.values())
    assert int(both_fqs["base_net.1.3.activation_post_process"].zero_point) == 0


def test_unsupported_layers_are_named():
    spec = small_spec("ssd")
    model = build_model(spec)
    model.base_net[5][1] = nn.GroupNorm(2, model.base_net[5][1].num_features)
    with pytest.raises(ValueError, match=r"'base_net\.5\.1' \(GroupNorm\) cannot be fake-quantised"):
        qat.prepare_qat(model, spec)
    model = build_model(spec)
    model.base_net[5][0] = nn.Identity()  # a BatchNorm with no convolution before it
    with pytest.raises(ValueError, match=r"'base_net\.5\.1' \(BatchNorm2d\) does not directly follow a convolution"):
        qat.prepare_qat(model, spec)
    model = build_model(spec)
    model.extras[0][1] = nn.Hardswish()
    with pytest.raises(ValueError, match=r"'extras\.0\.1' \(Hardswish\)"):
        qat.prepare_qat(model, spec)
    with pytest.raises(ValueError, match=r"qat\.target"):
        qat.prepare_qat(build_model(spec), spec, "coreml")


def test_qat_checkpoint_holds_the_float_weights_and_the_fake_quant_state(tmp_path):
    _, twin = calibrated("centernet")
    path = qat_checkpoint(tmp_path / "qat.pt", twin)
    float_model, spec, ckpt = load_checkpoint(path)  # every tool reads it as a float checkpoint
    assert qat.is_qat_checkpoint(ckpt) and ckpt["qat"]["target"] == "both"
    loaded, _, _ = qat.load_qat_checkpoint(path)
    x = inputs(1, 5)
    with torch.no_grad():
        for a, b in zip(twin.eval()(x), loaded(x), strict=True):
            assert torch.equal(a, b)
    assert qat.load_qat_checkpoint(save_checkpoint(tmp_path / "f.pt", float_model, spec)) is None


# --------------------------------------------------------------------------- ORT QDQ export


@pytest.mark.parametrize(("head", "target"), [("ssd", "ort"), ("ssd", "both"), ("centernet", "ort")])
def test_ort_int8_scales_are_the_trained_scales(tmp_path, head, target):
    _, twin = calibrated(head, target)
    loaded = qat_export.open_qat_checkpoint(qat_checkpoint(tmp_path / "qat.pt", twin))
    path = qat_export.export_qat_onnx(loaded, tmp_path / "m_int8.onnx")
    model = onnx.load(path)
    exported = {(scale, zp) for _, scale, zp in qat_export.activation_qdq_params(model)}
    trained = {(float(q.scale), int(q.zero_point)) for q in qat.activation_quantizers(twin).values()}
    assert exported == trained  # every QDQ has a trained scale and every trained scale is in the graph
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13
    # weights: int8 initialisers with max|w| / 127 per output channel of the folded weights
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    int8_weights = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
                    and inits[n.input[0]].dtype == np.int8]  # fmt: skip
    assert len(int8_weights) == len(twin.qat_groups)
    scales = [inits[n.input[1]].reshape(-1) for n in int8_weights]
    for conv, (weight, _, quantised) in qat_export.folded_convs(twin).items():
        expected = (weight.abs().amax(dim=(1, 2, 3)) / 127).numpy()
        found = any(len(s) == len(expected) and np.allclose(s, expected, rtol=1e-6) for s in scales)
        assert found == quantised, conv
    # ONNX Runtime runs every quantised conv as QLinearConv (and the neck additions as QLinearAdd)
    kernels = qat_export.ort_int8_kernels(path)
    assert kernels.get("QLinearConv", 0) == len(twin.qat_groups)
    if head == "centernet":
        assert kernels.get("QLinearAdd", 0) == 3
    assert read_spec_quantization(path) == ("int8-qdq", target)


def read_spec_quantization(path) -> tuple[str, str]:
    spec = OnnxBackend(path).read_spec()
    return spec.extra["quantization"], spec.extra["qat"]


@pytest.mark.parametrize("target", ["ort", "both"])
def test_ort_int8_outputs_follow_the_fake_quant_model(tmp_path, target):
    _, twin = calibrated("ssd", target)
    loaded = qat_export.open_qat_checkpoint(qat_checkpoint(tmp_path / "qat.pt", twin))
    backend = OnnxBackend(qat_export.export_qat_onnx(loaded, tmp_path / "m.onnx"))
    reference = qat_export.export_model(loaded.model)
    steps = qat_export.output_steps(loaded.model)
    x = inputs(4, 7)
    with torch.no_grad():
        want = dict(zip(("scores", "locations"), reference.predict(x), strict=True))
    for role, step in steps.items():
        got = np.concatenate([backend.run(x[i : i + 1].numpy())[role] for i in range(len(x))])
        diff = np.abs(got - want[role].numpy()) / step
        assert np.quantile(diff, 0.99) <= 1.01 and diff.max() <= 4, role


# --------------------------------------------------------------------------- the training run


def test_qat_needs_a_starting_checkpoint(tmp_path):
    with pytest.raises(ValueError, match=r"qat\.init must name the trained checkpoint"):
        train(load_config(None, [*TINY, f"out={tmp_path}", "qat.enabled=true"]))
    with pytest.raises(ValueError, match=r"qat\.init: .*missing\.pt is not a file"):
        train(load_config(None, [*TINY, f"out={tmp_path}", "qat.enabled=true", f"qat.init={tmp_path / 'missing.pt'}"]))


def test_qat_init_of_another_model_is_refused(tmp_path):
    spec = small_spec("ssd")
    other = save_checkpoint(tmp_path / "other.pt", build_model(spec), spec)  # 160x120, classes a/b
    with pytest.raises(ValueError, match=r"qat\.init: .*other\.pt holds a different model"):
        train(load_config(None, [*TINY, f"out={tmp_path / 'q'}", "qat.enabled=true", f"qat.init={other}"]))


def test_qat_run_config_resolves_the_automatic_values(tmp_path):
    spec = small_spec("ssd")
    ckpt = save_checkpoint(tmp_path / "c.pt", build_model(spec), spec, epoch=99)  # trained 100 epochs
    config = load_config(None, ["qat.enabled=true", f"qat.init={ckpt}", "optimizer.lr=0.004"])
    run = qat.qat_run_config(config)
    assert run["epochs"] == 4 and run["optimizer"]["lr"] == pytest.approx(4e-5)  # 4 % of 100, 1 % of the lr
    assert run["schedule"]["warmup_epochs"] == 0 and not run["ema"]["enabled"] and not run["amp"]
    config = load_config(None, ["qat.enabled=true", f"qat.init={ckpt}", "qat.epochs=2", "qat.lr=0.001"])
    assert qat.qat_run_config(config)["epochs"] == 2 and qat.qat_run_config(config)["optimizer"]["lr"] == 0.001


@pytest.mark.slow
@pytest.mark.parametrize("head", ["ssd", "centernet"])
def test_qat_fine_tune_writes_a_checkpoint_and_resumes_exactly(tmp_path, head):
    run = [*TINY, f"out={tmp_path}", f"model.head={head}", "eval.every=100"]
    base = train(load_config(None, [*run, "epochs=2"]))
    before = (tmp_path / "last.pt").read_bytes()
    qat_run = [*run, "epochs=2", "qat.enabled=true", f"qat.init={base['last']}", "qat.epochs=2"]
    done = train(load_config(None, qat_run))
    assert done["last"].endswith("qat_last.pt") and done["epochs_run"] == 2
    assert (tmp_path / "last.pt").read_bytes() == before  # the original run's files are untouched
    assert [r["epoch"] for r in csv.DictReader((tmp_path / "qat_metrics.csv").open())] == ["1", "2"]
    float_model, _, ckpt = load_checkpoint(done["last"])
    assert ckpt["qat"]["target"] == "both" and ckpt["config"]["epochs"] == 2
    model, _, _ = qat.load_qat_checkpoint(done["last"])
    fqs = qat.activation_quantizers(model)
    assert all(int(q.observer_enabled) == 0 for q in fqs.values())  # frozen half way (freeze_observers_after 0.5)
    assert all(q.observed for q in fqs.values())
    # the weights moved, and the float model is the QAT model with fake quantisation off
    start, _, _ = load_checkpoint(base["last"])
    pairs = zip(start.state_dict().values(), float_model.state_dict().values(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)
    # stopped after one QAT epoch and resumed: the same result as straight through
    again = train(load_config(None, [*qat_run, f"out={tmp_path / 'b'}", "stop_after_epochs=1"]))
    resumed = train(load_config(None, [*qat_run, f"out={tmp_path / 'b'}"]), resume=again["last"])
    a = torch.load(done["last"], weights_only=True)["qat_model"]
    b = torch.load(resumed["last"], weights_only=True)["qat_model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- export end to end


@pytest.fixture(scope="module")
def lively_qat(tmp_path_factory):
    """A QAT checkpoint (target both) of a "lively" random SSD whose ranges were observed on synthetic
    images: decisive scores, so TFLite's 1/256 softmax output step does not decide the detections (a
    briefly trained model's scores cluster within a step of its threshold, for any int8 file)."""
    from edgedet.convert.calibration import calibration_tensors

    root = tmp_path_factory.mktemp("qat_export")
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEDET_CACHE", str(root / "cache"))
    try:
        spec = small_spec("ssd")
        twin = qat.prepare_qat(lively(build_model(spec)), spec, "both")
        images = torch.from_numpy(calibration_tensors(spec, "synthetic:32:train", 32, "nchw", show_progress=False))
        qat.calibrate(twin, images.split(8))
        path = qat_checkpoint(root / "qat.pt", twin)
        yield root, path
    finally:
        mp.undo()


@pytest.mark.slow
def test_export_of_a_qat_checkpoint_uses_the_trained_scales(lively_qat):
    from edgedet.convert.export import export_all
    from edgedet.convert.tflite_slim import _read_model

    root, ckpt = lively_qat
    reports = []
    written = export_all(
        ckpt,
        root / "models",
        formats=("onnx", "tflite"),
        int8=True,
        calib="synthetic:32:train",
        calib_images=32,
        parity_images=8,
        show_progress=False,
        on_report=reports.append,
    )
    (report,) = reports
    rows = {r.name: r for r in report.rows}
    for key in ("onnx_int8", "tflite_int8", "tflite_int8_float_io"):
        row = rows[key]
        # the gate allows QAT_MAX_STEPS for deep 320x240 models; this small one follows within 2 steps
        assert row.steps_p99 is not None and row.steps_p99 <= min(2.0, QAT_MAX_STEPS) + 0.01, report.table()
        assert row.passed, report.table()
    assert report.passed, report.table()
    # the TFLite tensors carry the QAT scales: a conv's output, found by its weights
    model, _, _ = qat.load_qat_checkpoint(ckpt)
    loaded = qat_export.open_qat_checkpoint(ckpt)
    tfl = _read_model(written["tflite_int8"])
    op_of = qat_export._map_convs(tfl, qat_export.folded_convs(model))
    fq = model.get_submodule("base_net.4.3").activation_post_process
    params = tfl.subgraphs[0].tensors[op_of["base_net.4.3"].outputs[0]].quantization
    assert float(params.scale[0]) == pytest.approx(float(fq.scale), rel=1e-6)
    assert int(params.zeroPoint[0]) == int(fq.zero_point) - 128
    # the score Softmax stays float, as in the QAT model: scores are not on TFLite's int8 grid of 1/256
    detector = Detector.from_model(written["tflite_int8_float_io"], threads=1)
    assert detector.spec.extra["float_layers"] == ["/Softmax"] and detector.spec.extra["qat"] == "both"
    x, _ = detector.preprocess(photos(1)[0])
    scores = detector.backend.run(x)[detector.spec.extra["outputs"]["scores"]].ravel()
    off_grid = np.abs(scores * 256 - np.rint(scores * 256)) > 1e-3
    assert scores.size and off_grid.mean() > 0.5
    # a TFLite file of other weights cannot take these scales: the layer is named
    other = copy.deepcopy(loaded)
    with torch.no_grad():
        other.model.get_submodule("base_net.3.3").weight.mul_(-1.0)
    with pytest.raises(qat_export.QatExportError, match=r"QAT layer 'base_net\.3\.3'"):
        qat_export.patch_tflite_scales(other, written["tflite_int8"])

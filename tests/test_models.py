"""Backbone, SSD and CenterNet models, the model factory and checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.core.priors import PriorConfig, feature_map_sizes
from edgedet.training.backbone import Backbone, conv_output_size
from edgedet.training.centernet_model import HEAT_BIAS_INIT, SIZE_SCALE, CenterNet, ScaledConv2d
from edgedet.training.checkpoint import load_checkpoint, save_checkpoint
from edgedet.training.model_factory import build_model
from edgedet.training.ssd_model import SSD, SSD_STRIDES

SIZES = [(128, 96), (160, 120), (320, 240), (640, 480)]
SSD_STYLE = PriorConfig(style="ssd", aspect_ratios=((1.0, 2.0, 0.5), (1.0, 2.0, 3.0, 0.5, 1 / 3), (1.0, 2.0), (3.0,)))


def ssd_spec(size=(128, 96), base=16, labels=("face",), priors=None) -> ModelSpec:
    return ModelSpec(
        head="ssd",
        labels=labels,
        input_width=size[0],
        input_height=size[1],
        base_channel=base,
        priors=priors or PriorConfig(),
    )


def centernet_spec(size=(128, 96), base=16, labels=("a", "b", "c")) -> ModelSpec:
    return ModelSpec(head="centernet", labels=labels, input_width=size[0], input_height=size[1], base_channel=base)


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-default BatchNorm statistics, so a round trip that dropped buffers would show."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


# --- backbone -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", [16, 8])
@pytest.mark.parametrize("size", [*SIZES, (100, 75)])
def test_backbone_maps_are_ceil_of_size_over_stride(size, base):
    w, h = size
    feats = Backbone(base).eval()(torch.zeros(1, 3, h, w), strides=(4, 8, 16, 32))
    for f, stride, width in zip(feats, (4, 8, 16, 32), (2, 4, 8, 16), strict=True):
        assert tuple(f.shape) == (1, base * width, math.ceil(h / stride), math.ceil(w / stride))


def test_backbone_default_levels_and_layer_count():
    net = Backbone(16)
    assert len(net) == 13  # conv_bn + 12 conv_dw, the published base_net.0 .. base_net.12
    c8, c16, c32 = net.eval()(torch.zeros(1, 3, 240, 320))
    assert (c8.shape[1:], c16.shape[1:], c32.shape[1:]) == ((64, 30, 40), (128, 15, 20), (256, 8, 10))
    with pytest.raises(ValueError, match="ascending"):
        net(torch.zeros(1, 3, 32, 32), strides=(16, 8))
    with pytest.raises(ValueError, match="strides"):
        net(torch.zeros(1, 3, 32, 32), strides=(64,))


def test_conv_arithmetic_equals_prior_feature_map_rule():
    for n in range(1, 700):
        for s in SSD_STRIDES:
            assert conv_output_size(n, s) == math.ceil(n / s), (n, s)


# --- SSD ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", [16, 8])
@pytest.mark.parametrize("size", SIZES)
def test_ssd_output_shapes_match_priors(size, base):
    spec = ssd_spec(size, base, labels=("face", "person"))
    model = SSD(spec).eval()
    logits, locs = model(torch.zeros(2, 3, size[1], size[0]))
    n = len(spec.priors.generate(size))
    assert model.num_priors == n and model.priors.shape == (n, 4)
    assert logits.shape == (2, n, 3) and locs.shape == (2, n, 4)
    if size == (320, 240):
        assert n == 4420
    if size == (640, 480):
        assert n == 17640


def test_ssd_style_priors_set_the_anchor_counts_per_level():
    spec = ssd_spec((160, 120), priors=SSD_STYLE, labels=("a", "b", "c"))
    assert SSD_STYLE.anchors_per_location() == [4, 6, 3, 1]
    model = SSD(spec).eval()
    assert [h[-1].out_channels for h in model.classification_headers[:3]] == [16, 24, 12]
    assert model.classification_headers[3].out_channels == 4
    assert [h[-1].out_channels for h in model.regression_headers[:3]] == [16, 24, 12]
    logits, locs = model(torch.zeros(1, 3, 120, 160))
    n = sum(fw * fh * p for (fw, fh), p in zip(feature_map_sizes((160, 120), SSD_STRIDES), [4, 6, 3, 1], strict=True))
    assert logits.shape == (1, n, 4) and locs.shape == (1, n, 4) and n == model.num_priors


def test_ssd_header_inputs_have_prior_feature_map_sizes():
    size = (160, 120)
    model = SSD(ssd_spec(size)).eval()
    seen = []
    hooks = [
        h.register_forward_hook(lambda _m, inp, _out: seen.append(tuple(inp[0].shape[-2:])))
        for h in model.classification_headers
    ]
    model(torch.zeros(1, 3, 120, 160))
    for hook in hooks:
        hook.remove()
    assert seen == [(fh, fw) for fw, fh in feature_map_sizes(size, SSD_STRIDES)]


@pytest.mark.parametrize(("level", "row", "col", "anchor"), [(0, 3, 5, 2), (1, 1, 0, 1), (2, 2, 3, 0), (3, 1, 1, 2)])
def test_ssd_flatten_order_matches_priors(level, row, col, anchor):
    """A one-hot in header ``level`` at (row, col), for ``anchor``, lands on the prior of that cell and anchor."""
    size = (160, 120)
    spec = ssd_spec(size, labels=("face", "cat"))
    model = SSD(spec).eval()
    k = model.num_classes
    cls_channel, loc_channel = anchor * k + 1, anchor * 4 + 2

    def one_hot(channel):
        def hook(_m, _inp, out):
            y = torch.zeros_like(out)
            y[0, channel, row, col] = 1.0
            return y

        return hook

    cls_hooks = [
        h.register_forward_hook(one_hot(cls_channel) if i == level else lambda _m, _i, o: torch.zeros_like(o))
        for i, h in enumerate(model.classification_headers)
    ]
    loc_hooks = [
        h.register_forward_hook(one_hot(loc_channel) if i == level else lambda _m, _i, o: torch.zeros_like(o))
        for i, h in enumerate(model.regression_headers)
    ]
    logits, locs = model(torch.zeros(1, 3, 120, 160))
    for hook in cls_hooks + loc_hooks:
        hook.remove()
    [[idx, cls]] = torch.nonzero(logits[0]).tolist()
    [[idx2, coord]] = torch.nonzero(locs[0]).tolist()
    assert (cls, coord) == (1, 2) and idx == idx2
    fm_w, fm_h = feature_map_sizes(size, SSD_STRIDES)[level]
    prior = model.priors[idx]
    assert prior[:2] == pytest.approx([(col + 0.5) / fm_w, (row + 0.5) / fm_h])
    side = spec.priors.min_boxes[level][anchor]
    assert prior[2:] == pytest.approx(np.clip([side / size[0], side / size[1]], 0, 1))


def test_ssd_predict_is_softmax_of_forward():
    model = SSD(ssd_spec(labels=("a", "b"))).eval()
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    logits, locs = model(x)
    scores, locs2 = model.predict(x)
    assert torch.allclose(scores.sum(-1), torch.ones(2, model.num_priors))
    assert torch.allclose(scores, torch.softmax(logits, -1)) and torch.equal(locs, locs2)


def test_ssd_rejects_other_input_sizes_and_unfit_specs():
    model = SSD(ssd_spec((128, 96)))
    with pytest.raises(ValueError, match=r"\[B, 3, 96, 128\].*1, 3, 120, 160"):
        model(torch.zeros(1, 3, 120, 160))
    with pytest.raises(ValueError, match="input"):
        model(torch.zeros(1, 1, 96, 128))
    with pytest.raises(ValueError, match="strides"):
        SSD(ssd_spec(priors=PriorConfig(strides=(8, 16, 32, 128)), size=(128, 96)))
    with pytest.raises(ValueError, match="strides"):
        SSD(ssd_spec(priors=PriorConfig(strides=(8, 16, 32), min_boxes=((10,), (32,), (64,))), size=(128, 96)))
    with pytest.raises(ValueError, match="'ssd' spec"):
        SSD(centernet_spec())


# --- CenterNet ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", [16, 8])
@pytest.mark.parametrize("size", [*SIZES, (100, 75)])
def test_centernet_output_shapes(size, base):
    model = CenterNet(centernet_spec(size, base)).eval()
    heat, wh, off = model(torch.zeros(2, 3, size[1], size[0]))
    out_w, out_h = CenterNet.output_size(size)
    assert (out_w, out_h) == (math.ceil(size[0] / 4), math.ceil(size[1] / 4))
    assert heat.shape == (2, 3, out_h, out_w)
    assert wh.shape == off.shape == (2, 2, out_h, out_w)


def test_centernet_heat_bias_init_and_predict():
    model = CenterNet(centernet_spec(labels=("a", "b"))).eval()
    assert HEAT_BIAS_INIT == pytest.approx(-2.19, abs=0.01)
    assert torch.allclose(model.heat[-1].bias, torch.full((2,), HEAT_BIAS_INIT))
    assert not torch.allclose(model.size.bias, torch.full((2,), HEAT_BIAS_INIT))
    with torch.no_grad():
        model.heat[-1].weight.zero_()
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    heat, wh, off = model.predict(x)
    assert torch.allclose(heat, torch.full_like(heat, 0.1), atol=1e-4)
    raw = model(x)
    assert torch.equal(wh, raw[1]) and torch.equal(off, raw[2])


def test_scaled_conv_is_a_conv_with_scaled_parameters_and_faster_gradient_steps():
    conv = ScaledConv2d(4, 2, 1, scale=SIZE_SCALE)
    x = torch.randn(2, 4, 5, 6, generator=torch.Generator().manual_seed(0))
    y = conv(x)
    want = torch.nn.functional.conv2d(x, conv.weight * SIZE_SCALE, conv.bias * SIZE_SCALE)
    assert torch.allclose(y, want, atol=1e-6)
    # one SGD step of size lr on the parameters moves the output SIZE_SCALE times as far as a plain conv's
    plain = torch.nn.Conv2d(4, 2, 1)
    with torch.no_grad():
        plain.weight.copy_(conv.weight * SIZE_SCALE)
        plain.bias.copy_(conv.bias * SIZE_SCALE)
    deltas = []
    for layer in (conv, plain):
        before = layer(x).detach()
        layer(x).sum().backward()
        with torch.no_grad():
            for p in layer.parameters():
                p -= 1e-3 * p.grad
        deltas.append((layer(x).detach() - before).abs().mean())
    assert float(deltas[0] / deltas[1]) == pytest.approx(SIZE_SCALE**2, rel=1e-3)


def test_centernet_rejects_other_strides_and_heads():
    with pytest.raises(ValueError, match="stride 4"):
        CenterNet(ModelSpec(head="centernet", labels=("a",), stride=8))
    with pytest.raises(ValueError, match="'centernet' spec"):
        CenterNet(ssd_spec())


def test_build_model_dispatches_on_head():
    assert isinstance(build_model(ssd_spec()), SSD)
    assert isinstance(build_model(centernet_spec()), CenterNet)


# --- checkpoints --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec", [ssd_spec(base=8, labels=("a", "b")), centernet_spec(base=8)], ids=["ssd", "centernet"]
)
def test_checkpoint_round_trip(tmp_path, spec):
    torch.manual_seed(0)
    model = randomise_bn(build_model(spec))
    path = save_checkpoint(tmp_path / "sub" / "model.pt", model, spec, epoch=3, metrics={"map": 0.5})
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]  # no temp file left behind
    loaded, spec2, ckpt = load_checkpoint(path)
    assert not loaded.training and type(loaded) is type(model)
    assert spec2 == spec
    assert ckpt["format"] == "edgedet-checkpoint" and ckpt["version"] == 1
    assert ckpt["epoch"] == 3 and ckpt["metrics"] == {"map": 0.5}
    x = torch.randn(1, 3, 96, 128)
    for a, b in zip(model(x), loaded(x), strict=True):
        assert torch.equal(a, b)


def test_save_checkpoint_is_atomic(tmp_path):
    spec = ssd_spec(base=8)
    path = save_checkpoint(tmp_path / "m.pt", build_model(spec), spec, epoch=1)
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - whatever pickle raises for a lambda
        save_checkpoint(path, build_model(spec), spec, epoch=2, bad=lambda: 0)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(path, build_model(spec), spec, model={})


@pytest.fixture
def saved(tmp_path) -> tuple[Path, ModelSpec, nn.Module]:
    spec = ssd_spec(base=8)
    model = build_model(spec)
    return save_checkpoint(tmp_path / "ok.pt", model, spec), spec, model


def test_load_checkpoint_rejects_missing_and_corrupt_files(tmp_path, saved):
    path = saved[0]
    with pytest.raises(ValueError, match=r"nope\.pt: not a file"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="not a file"):
        load_checkpoint(tmp_path)
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"trunc\.pt: truncated or not a torch checkpoint"):
        load_checkpoint(truncated)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt: truncated or not a torch checkpoint"):
        load_checkpoint(text)


def test_load_checkpoint_rejects_wrong_layout(tmp_path, saved):
    _, spec, model = saved
    bare = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bare)
    with pytest.raises(ValueError, match=r"bare\.pt: not an edgedet checkpoint"):
        load_checkpoint(bare)
    no_spec = tmp_path / "nospec.pt"
    torch.save({"format": "edgedet-checkpoint", "version": 1, "model": model.state_dict()}, no_spec)
    with pytest.raises(ValueError, match=r"nospec\.pt: checkpoint lacks key\(s\) \['spec'\]"):
        load_checkpoint(no_spec)
    future = tmp_path / "v2.pt"
    torch.save({"format": "edgedet-checkpoint", "version": 2, "model": {}, "spec": spec.to_dict()}, future)
    with pytest.raises(ValueError, match=r"v2\.pt: checkpoint version 2"):
        load_checkpoint(future)
    bad_spec = tmp_path / "badspec.pt"
    torch.save({"format": "edgedet-checkpoint", "version": 1, "model": {}, "spec": {"head": "yolo"}}, bad_spec)
    with pytest.raises(ValueError, match=r"badspec\.pt: spec"):
        load_checkpoint(bad_spec)


def test_load_checkpoint_names_keys_that_do_not_fit(tmp_path, saved):
    _, spec, model = saved
    wide = tmp_path / "wide.pt"
    save_checkpoint(wide, build_model(ssd_spec(base=16)), spec)  # weights of base 16, spec says 8
    mismatch = r"wide\.pt: .*shape mismatches.*base_net\.0\.0\.weight \[16, 3, 3, 3\] vs \[8"
    with pytest.raises(ValueError, match=mismatch):
        load_checkpoint(wide)
    state = model.state_dict()
    state.pop("regression_headers.3.bias")
    state["extra_layer.weight"] = torch.zeros(1)
    odd = tmp_path / "odd.pt"
    torch.save({"format": "edgedet-checkpoint", "version": 1, "model": state, "spec": spec.to_dict()}, odd)
    with pytest.raises(
        ValueError, match=r"missing keys: regression_headers\.3\.bias; unexpected keys: extra_layer\.weight"
    ):
        load_checkpoint(odd)


def test_a_centernet_starts_from_a_trained_ssds_backbone(tmp_path):
    """``model.init_backbone``: the backbone tensors are copied exactly, the heads keep their own init;
    a backbone of another width is refused, naming the tensor."""
    from edgedet.training.train import load_backbone

    torch.manual_seed(0)
    ssd = build_model(ssd_spec(base=16))
    path = save_checkpoint(tmp_path / "ssd.pt", ssd, ssd_spec(base=16), epoch=1)
    torch.manual_seed(1)
    cn = build_model(centernet_spec(base=16))
    heads_before = {k: v.clone() for k, v in cn.state_dict().items() if not k.startswith("base_net.")}
    load_backbone(cn, str(path))
    after = cn.state_dict()
    backbone = [k for k in after if k.startswith("base_net.")]
    assert backbone and all(torch.equal(after[k], ssd.state_dict()[k]) for k in backbone)
    assert all(torch.equal(after[k], v) for k, v in heads_before.items())
    with pytest.raises(ValueError, match=r"init_backbone: .*base_net\..* is shape"):
        load_backbone(build_model(centernet_spec(base=8)), str(path))

"""ONNX export: a clean static graph with the spec in its metadata, PyTorch parity, the export CLI and
clear errors for bad input. Also home of the small-checkpoint helpers the other export tests import."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import SHARED, shared_path
from torch import nn

from edgedet.cli import main
from edgedet.convert.export import export_all, parse_formats
from edgedet.convert.onnx_export import export_onnx, read_metadata_spec
from edgedet.convert.parity import check_parity
from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.core.priors import PriorConfig
from edgedet.edge.datasets.image_files import read_image
from edgedet.edge.runtime.backends.onnx import OnnxBackend
from edgedet.training.checkpoint import save_checkpoint
from edgedet.training.model_factory import build_model

# Thresholds at which the "lively" random models below give a moderate number of distinct detections.
THRESHOLDS = {"ssd": 0.95, "centernet": 0.3}


def small_spec(head: str) -> ModelSpec:
    return ModelSpec(
        head=head,
        labels=("a", "b"),
        input_width=160,
        input_height=120,
        base_channel=8,
        priors=PriorConfig() if head == "ssd" else None,
        score_threshold=THRESHOLDS[head],
        iou_threshold=0.45,
    )


def lively(model: nn.Module, seed: int = 0) -> nn.Module:
    """Re-initialise so outputs depend on the input (He-normal convs, random BatchNorm statistics) and
    the SSD class logits spread out: a stand-in for a trained model, built in milliseconds."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.Conv2d):
                mod.weight.normal_(0, (2.0 / mod.weight[0].numel()) ** 0.5, generator=g)
                if mod.bias is not None:
                    mod.bias.normal_(0, 0.1, generator=g)
            elif isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5, generator=g)
                mod.bias.normal_(0, 0.1, generator=g)
                mod.running_mean.normal_(0, 0.1, generator=g)
                mod.running_var.uniform_(0.5, 2.0, generator=g)
        for header in getattr(model, "classification_headers", []):
            last = header[-1] if isinstance(header, nn.Sequential) else header
            last.weight.mul_(6.0)
    return model.eval()


def small_checkpoint(path: Path, head: str, seed: int = 0) -> Path:
    spec = small_spec(head)
    return save_checkpoint(path, lively(build_model(spec), seed), spec)


def ultraface_checkpoint(path: Path) -> Path:
    from edgedet.training.ultraface import import_ultraface

    import_ultraface(shared_path("models", "ultraface", "version-slim-320.pth"), path)
    return path


def photos(n: int = 4) -> list[np.ndarray]:
    """UltraFace's sample photos (BGR), or noise frames where ../shared is missing."""
    folder = SHARED / "models" / "ultraface" / "images"
    if folder.is_dir():
        return [read_image(p) for p in sorted(folder.glob("*.jpg"))[:n]]
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    return {head: small_checkpoint(root / f"{head}.pt", head) for head in ("ssd", "centernet")}


@pytest.mark.parametrize("head", ["ssd", "centernet"])
def test_onnx_graph_is_static_clean_and_carries_the_spec(ckpts, tmp_path, head):
    path = export_onnx(ckpts[head], tmp_path / "m.onnx")
    model = onnx.load(path)
    assert not [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    assert not [n for n in model.graph.node if n.op_type == "Mul"]  # CenterNet's size scale is folded too
    assert [i.name for i in model.graph.input] == ["input"]
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 120, 160]
    expected = ["scores", "locations"] if head == "ssd" else ["heatmap", "size", "offset"]
    assert [o.name for o in model.graph.output] == expected
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13
    assert read_metadata_spec(model) == small_spec(head)
    assert OnnxBackend(path).read_spec() == small_spec(head)


@pytest.mark.parametrize(
    ("head", "option"), [("ssd", None), ("ssd", "boxes_in_graph"), ("centernet", None), ("centernet", "peaks")]
)
def test_torch_and_onnx_agree(ckpts, tmp_path, head, option):
    kwargs = {option: True} if option else {}
    path = export_onnx(ckpts[head], tmp_path / "m.onnx", **kwargs)
    names = [o.name for o in onnx.load(path).graph.output]
    if option == "boxes_in_graph":
        assert names == ["scores", "boxes"]
    if option == "peaks":
        assert names == ["peaks", "size", "offset"]
    report = check_parity(ckpts[head], {"onnx": path}, photos(4), show_progress=False)
    (row,) = report.rows
    assert row.exact and row.max_abs_diff <= 1e-4
    assert row.reference_detections > 0 and row.mismatched_images == 0, report.table()
    assert report.passed


def test_ultraface_export_matches_torch_and_the_published_onnx(tmp_path):
    ckpt = ultraface_checkpoint(tmp_path / "slim.pt")
    path = export_onnx(ckpt, tmp_path / "slim.onnx", boxes_in_graph=True)
    images = photos(6)
    report = check_parity(ckpt, {"onnx": path}, images, show_progress=False)
    assert report.passed and report.rows[0].reference_detections >= 6, report.table()
    published = OnnxBackend(shared_path("models", "ultraface", "version-slim-320.onnx"))
    ours = OnnxBackend(path)
    from edgedet.edge.runtime.preprocess import Preprocessor

    pre = Preprocessor(ModelSpec.ultraface())
    for image in images:
        x, _ = pre(image)
        ref, out = published.run(x), ours.run(x)
        np.testing.assert_allclose(out["scores"], ref["scores"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(out["boxes"], ref["boxes"], atol=1e-4, rtol=0)


def test_export_cli_writes_onnx_and_parity_table(ckpts, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", "--checkpoint", str(ckpts["ssd"]), "--out", str(out)]) == 0
    assert (out / "ssd.onnx").is_file()
    table = (out / "parity.txt").read_text()
    assert "onnx" in table and "FAIL" not in table
    assert "ssd.onnx" in capsys.readouterr().out


# --------------------------------------------------------------------------- bad input


def test_corrupt_and_truncated_checkpoints_are_value_errors(ckpts, tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    truncated = tmp_path / "truncated.pt"
    data = ckpts["ssd"].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    for bad in (garbage, truncated):
        with pytest.raises(ValueError, match=bad.name):
            export_onnx(bad, tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="not found"):
        export_onnx(tmp_path / "missing.pt", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_other_head_than_expected(ckpts, tmp_path):
    with pytest.raises(ValueError, match="'ssd' checkpoint, but a 'centernet' model was expected"):
        export_onnx(ckpts["ssd"], tmp_path / "x.onnx", head="centernet")
    with pytest.raises(ValueError, match="'centernet'"):
        export_all(ckpts["centernet"], tmp_path / "out", head="ssd")


def test_input_size_the_model_was_not_built_for(ckpts, tmp_path):
    with pytest.raises(ValueError, match="built for a 160x120 input"):
        export_onnx(ckpts["ssd"], tmp_path / "x.onnx", input_size=(320, 240))


def test_int8_needs_calibration_images(ckpts, tmp_path, capsys):
    with pytest.raises(ValueError, match="--calib"):
        export_all(ckpts["ssd"], tmp_path / "out", int8=True)
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="has no images"):
        export_all(ckpts["ssd"], tmp_path / "out", int8=True, calib=str(empty), parity=False)
    code = main(["export", "--checkpoint", str(ckpts["ssd"]), "--out", str(tmp_path / "o"), "--int8"])
    assert code == 1 and "--calib" in capsys.readouterr().err


def test_bad_formats_and_opset(ckpts, tmp_path):
    assert parse_formats("ONNX, tflite") == ("onnx", "tflite")
    with pytest.raises(ValueError, match="--formats"):
        parse_formats("onnx,coreml")
    with pytest.raises(ValueError, match="opset"):
        export_onnx(ckpts["ssd"], tmp_path / "x.onnx", opset=11)

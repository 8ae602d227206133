"""Importing the published UltraFace slim weights, and parity with the published ONNX model."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_path

from edgedet.edge.core.box_coder import decode_to_corners
from edgedet.edge.core.model_spec import ModelSpec
from edgedet.training.checkpoint import load_checkpoint, save_checkpoint
from edgedet.training.ssd_model import SSD
from edgedet.training.ultraface import cli, import_ultraface, parse_input_size

PTH = ("models", "ultraface", "version-slim-320.pth")


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> tuple[SSD, ModelSpec, Path]:
    out = tmp_path_factory.mktemp("ultraface") / "slim-320.pt"
    spec = import_ultraface(shared_path(*PTH), out)
    model, loaded_spec, _ = load_checkpoint(out)
    assert loaded_spec == spec
    return model, spec, out


def preprocess(path: Path) -> np.ndarray:
    """UltraFace's own pre-processing: BGR -> RGB, stretch to 320x240 (INTER_LINEAR), (x - 127) / 128, NCHW."""
    cv2 = pytest.importorskip("cv2")
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    image = cv2.resize(image, (320, 240))
    return ((image.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None].copy()


def test_import_gives_the_published_spec_and_weights(imported):
    model, spec, out = imported
    assert spec == ModelSpec.ultraface(320, 240)
    assert model.num_priors == 4420
    legacy = torch.load(shared_path(*PTH), map_location="cpu", weights_only=True)
    ours = model.state_dict()
    assert sorted(ours) == sorted(legacy)
    assert all(torch.equal(ours[k], legacy[k]) for k in legacy)
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["imported_from"] == "ultraface-slim" and ckpt["source"].endswith("version-slim-320.pth")


def test_parity_with_published_onnx(imported):
    """Our softmax scores and decoded corner boxes equal the published ONNX outputs on UltraFace's photos."""
    ort = pytest.importorskip("onnxruntime")
    model, _, _ = imported
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the ONNX keeps its weights as graph inputs and warns about each
    session = ort.InferenceSession(
        str(shared_path("models", "ultraface", "version-slim-320.onnx")), options, providers=["CPUExecutionProvider"]
    )
    photos = sorted(shared_path("models", "ultraface", "images").glob("*.jpg"))
    assert len(photos) >= 10
    confident = 0
    for photo in photos:
        x = preprocess(photo)
        ref_scores, ref_boxes = session.run(["scores", "boxes"], {"input": x})
        scores, locations = model.predict(torch.from_numpy(x))
        boxes = decode_to_corners(locations.numpy(), model.priors)
        assert ref_scores.shape == (1, 4420, 2) and ref_boxes.shape == (1, 4420, 4)
        np.testing.assert_allclose(scores.numpy(), ref_scores, rtol=0, atol=1e-4, err_msg=photo.name)
        np.testing.assert_allclose(boxes, ref_boxes, rtol=0, atol=1e-4, err_msg=photo.name)
        confident += int(ref_scores[0, :, 1].max() > 0.9)
    assert confident == len(photos)  # every photo has a face, so the comparison is not of idle outputs


def test_import_at_640x480(tmp_path):
    out = tmp_path / "slim-640.pt"
    spec = import_ultraface(shared_path(*PTH), out, (640, 480))
    assert spec.input_size == (640, 480)
    model, loaded_spec, _ = load_checkpoint(out)
    assert loaded_spec == spec and model.num_priors == 17640
    scores, locations = model.predict(torch.zeros(1, 3, 480, 640))
    assert scores.shape == (1, 17640, 2) and locations.shape == (1, 17640, 4)


def test_import_rejects_files_that_are_not_ultraface_slim(tmp_path):
    pth = shared_path(*PTH)
    with pytest.raises(ValueError, match="not a file"):
        import_ultraface(tmp_path / "missing.pth", tmp_path / "out.pt")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not torch")
    with pytest.raises(ValueError, match=r"junk\.pth: truncated or not a torch file"):
        import_ultraface(junk, tmp_path / "out.pt")
    # an edgedet checkpoint is a torch file, but not a bare state dict
    spec = ModelSpec.ultraface(128, 96)
    ours = save_checkpoint(tmp_path / "ours.pt", SSD(spec), spec)
    with pytest.raises(ValueError, match=r"ours\.pt: not an UltraFace slim state dict \(no 'base_net\.0\.0\.weight'"):
        import_ultraface(ours, tmp_path / "out.pt")
    # a state dict with one header missing and one extra key: both named
    state = torch.load(pth, map_location="cpu", weights_only=True)
    state.pop("classification_headers.3.bias")
    state["extras.1.weight"] = torch.zeros(3)
    partial = tmp_path / "partial.pth"
    torch.save(state, partial)
    with pytest.raises(ValueError, match=r"missing keys: classification_headers\.3\.bias; unexpected keys: extras\.1"):
        import_ultraface(partial, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_parse_input_size():
    assert parse_input_size("640x480") == (640, 480)
    assert parse_input_size("128X96") == (128, 96)
    for bad in ("640", "640x", "axb", "0x10", "1x2x3"):
        with pytest.raises(ValueError, match="input size"):
            parse_input_size(bad)


def test_cli_writes_checkpoint_and_reports(tmp_path, capsys):
    pth = shared_path(*PTH)
    out = tmp_path / "face.pt"
    assert cli(Namespace(pth=str(pth), out=str(out), input_size="640x480")) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "17640 priors" in printed and "640x480" in printed
    assert load_checkpoint(out)[1].input_size == (640, 480)
    assert cli(Namespace(pth=str(pth), out=str(tmp_path / "d.pt"), input_size=None)) == 0
    assert "4420 priors" in capsys.readouterr().out
    assert cli(Namespace(pth=str(pth), out=str(tmp_path / "x.pt"), input_size="640by480")) == 1
    assert "640by480" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_at_640x480_every_face_of_the_reference_script_is_kept(tmp_path):
    """UltraFace's ``detect_imgs.py`` at 640x480 (17640 priors) keeps 1000 candidates per class and up to
    500 faces; our preset must give its detections box for box on the crowd photos, where a 200-candidate
    cap (our old default) loses faces."""
    from dataclasses import replace

    from edgedet.edge.bench.decode_bench import _reference_for, same_detections
    from edgedet.edge.datasets.image_files import read_image
    from edgedet.edge.runtime.decoders import make_decoder
    from edgedet.edge.runtime.detector import Detector, load_spec
    from edgedet.edge.runtime.media import list_images

    out = tmp_path / "slim-640.pt"
    import_ultraface(shared_path(*PTH), out, (640, 480))
    spec = load_spec("ultraface:640x480")
    assert spec.input_size == (640, 480) and spec.max_candidates >= 1000 and spec.top_k >= 500
    detector = Detector.from_model(out, spec=spec)
    capped = make_decoder(replace(spec, max_candidates=200, top_k=200))
    ours = reference = lost = 0
    for path in list_images(shared_path("models", "ultraface", "images")):
        outputs = detector.backend.run(detector.preprocess(read_image(path))[0])
        got = detector.decoder(outputs)
        reference_dets = _reference_for(detector.decoder, outputs)()  # candidate_size / top_k from the spec
        assert same_detections(got, reference_dets), path.name
        ours += len(got[1])
        reference += len(reference_dets[1])
        lost += len(got[1]) - len(capped(outputs)[1])
    assert ours == reference > 800
    assert lost > 100  # the old cap dropped these faces: this test tells the two apart

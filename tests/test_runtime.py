"""The runtime end to end on the published UltraFace models: backend parity, decoder vs a brute-force
reference of UltraFace's post-processing, the ``detect`` CLI, and no torch/TensorFlow on the device path."""

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import replace

import cv2
import numpy as np
import pytest
from conftest import REPO, shared_path
from tests_support import brute_iou

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.runtime.backends.onnx import OnnxBackend
from edgedet.edge.runtime.decoders import SSDDecoder
from edgedet.edge.runtime.detect import cli
from edgedet.edge.runtime.detector import Detection, Detector, StageTimings
from edgedet.edge.runtime.media import list_images

ONNX = "version-slim-320.onnx"  # decode in the graph: softmax "scores" + corner "boxes"
RAW_ONNX = "version-slim-320_without_postprocessing.onnx"  # raw regressions, named "boxes"
RAW_TFLITE = "version-slim-320_without_postprocessing.tflite"  # raw, outputs Identity / Identity_1


def images():
    return list_images(shared_path("models", "ultraface", "images"))


def model(name):
    return shared_path("models", "ultraface", name)


# --------------------------------------------------------------------- brute-force UltraFace reference


def reference_postprocess(scores, boxes, prob_threshold, iou_threshold=0.3, candidate_size=200):
    """UltraFace's predict(): per class, keep probs > threshold, best ``candidate_size`` by score, greedy
    hard NMS dropping IoU > ``iou_threshold``. Plain loops; returns [(class id, score, box)], best first."""
    found = []
    for cls in range(1, scores.shape[1]):
        cands = [(float(scores[i, cls]), i) for i in range(len(scores)) if scores[i, cls] > prob_threshold]
        cands.sort(key=lambda t: -t[0])
        cands = cands[:candidate_size]
        while cands:
            score, i = cands.pop(0)
            found.append((cls - 1, score, [float(v) for v in boxes[i]]))
            cands = [(s, j) for s, j in cands if brute_iou(boxes[i], boxes[j]) <= iou_threshold]
    found.sort(key=lambda t: -t[1])
    return found


@pytest.mark.parametrize("threshold", [0.7, 0.3, 0.02])
def test_ssd_decoder_equals_brute_force_ultraface_postprocessing(threshold):
    spec = replace(
        ModelSpec.ultraface(), score_threshold=threshold, max_candidates=200, top_k=200
    )  # plain loops: keep it quick
    backend = OnnxBackend(model(ONNX), threads=2)
    detector = Detector(backend, spec)
    decoder = SSDDecoder(spec, spec.priors.generate(spec.input_size))
    scale = np.array([320, 240, 320, 240])
    total = 0
    for path in images():
        tensor, _ = detector.preprocess(cv2.imread(str(path)))
        out = backend.run(tensor)
        boxes, scores, cls = decoder(out)
        ref = reference_postprocess(out["scores"][0], out["boxes"][0], threshold)
        assert len(boxes) == len(ref), path
        np.testing.assert_allclose(scores, [r[1] for r in ref], rtol=0, atol=1e-7)
        np.testing.assert_allclose(boxes / scale, [r[2] for r in ref], rtol=0, atol=1e-6)
        assert cls.tolist() == [r[0] for r in ref]
        total += len(ref)
    assert total > 0


# ------------------------------------------------------------------------------------- backend parity


def _match(a: list[Detection], b: list[Detection], px: float = 0.5, score: float = 1e-3) -> None:
    assert len(a) == len(b), (len(a), len(b))
    left = list(b)
    for d in a:
        dist = [max(abs(p - q) for p, q in zip(d.box, e.box, strict=True)) for e in left]
        k = int(np.argmin(dist))
        assert dist[k] <= px and abs(d.score - left[k].score) <= score, (d, left[k])
        left.pop(k)


def test_onnx_tflite_and_raw_onnx_find_the_same_faces():
    spec = ModelSpec.ultraface()
    dets = {name: Detector.from_model(model(name), spec=spec, threads=2) for name in (ONNX, RAW_ONNX, RAW_TFLITE)}
    faces = 0
    for path in images():
        frame = cv2.imread(str(path))
        ref = dets[ONNX].detect(frame)
        faces += len(ref)
        _match(ref, dets[RAW_ONNX].detect(frame))
        _match(ref, dets[RAW_TFLITE].detect(frame))
    assert faces > 50
    assert dets[ONNX].decoder.resolve({}) == ("scores", "boxes", "boxes")
    # the raw ONNX names its regressions "boxes"; the TFLite names nothing: both decoded with priors
    assert dets[RAW_ONNX].decoder.resolve({}) == ("scores", "boxes", "locations")
    assert dets[RAW_TFLITE].decoder.resolve({}) == ("Identity_1", "Identity", "locations")
    assert dets[RAW_TFLITE].spec.layout == "nhwc"


@pytest.mark.slow
def test_torch_checkpoint_backend_matches_onnx(tmp_path):
    pytest.importorskip("torch")
    from edgedet.training.ultraface import import_ultraface

    import_ultraface(model("version-slim-320.pth"), tmp_path / "uf.pt")
    pt = Detector.from_model(tmp_path / "uf.pt", threads=2)  # spec from the checkpoint
    onnx = Detector.from_model(model(ONNX), spec=ModelSpec.ultraface(), threads=2)
    for path in images()[:4]:
        frame = cv2.imread(str(path))
        _match(onnx.detect(frame), pt.detect(frame))


def test_detect_returns_detections_in_frame_pixels_with_timings():
    det = Detector.from_model(model(ONNX), spec=ModelSpec.ultraface(), threads=2, score_threshold=0.9)
    frame = cv2.imread(str(images()[0]))
    found = det.detect(frame)
    h, w = frame.shape[:2]
    assert found and all(d.score > 0.9 and d.label == "face" and d.class_id == 0 for d in found)
    assert all(0 <= d.box[0] < d.box[2] <= w and 0 <= d.box[1] < d.box[3] <= h for d in found)
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    assert set(found[0].to_dict()) == {"box", "score", "class_id", "label"}
    json.dumps([d.to_dict() for d in found])
    t = det.last_timings
    assert isinstance(t, StageTimings) and t.inference_ms > 0 and t.total_ms >= t.inference_ms
    # letterbox finds the same faces, mapped back to the frame
    boxed = Detector(det.backend, replace(det.spec, resize="letterbox"))
    assert len(boxed.detect(frame)) > 0.5 * len(found)


# ----------------------------------------------------------------------------------------------- CLI


def _args(**kw):
    base = dict(model=None, sources=[], json=None, save_dir=None, score_threshold=None, threads=2, spec=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_detect_cli_over_the_images_folder(tmp_path, capsys):
    folder = shared_path("models", "ultraface", "images")
    out = tmp_path / "out.json"
    rc = cli(
        _args(
            model=str(model(ONNX)),
            sources=[str(folder)],
            json=str(out),
            save_dir=str(tmp_path / "ann"),
            spec="ultraface",
        )
    )
    assert rc == 0
    records = json.loads(out.read_text())
    assert [r["image"] for r in records] == [str(p) for p in images()]
    for r in records:
        assert set(r) == {"image", "width", "height", "detections"}
        img = cv2.imread(r["image"])
        assert (r["width"], r["height"]) == (img.shape[1], img.shape[0])
        for d in r["detections"]:
            assert set(d) == {"box", "score", "class_id", "label"} and d["label"] == "face" and d["class_id"] == 0
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 < x2 <= r["width"] and 0 <= y1 < y2 <= r["height"] and d["score"] > 0.7
    assert sum(len(r["detections"]) for r in records) > 50
    assert sum(1 for r in records if r["detections"]) >= 0.8 * len(records)
    saved = sorted(p.name for p in (tmp_path / "ann").iterdir())
    assert saved == sorted(p.name for p in images())
    assert cv2.imread(str(tmp_path / "ann" / saved[0])) is not None
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(images()) + 1 and "detection" in lines[0]


def test_detect_cli_reports_bad_sources_and_goes_on(tmp_path, capsys):
    src = images()[0]
    shutil.copy(src, tmp_path / "good.jpg")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "o.json"
    rc = cli(
        _args(
            model=str(model(ONNX)),
            sources=[str(tmp_path / "good.jpg"), str(tmp_path / "corrupt.jpg"), str(tmp_path / "missing.png")],
            json=str(out),
            spec="ultraface",
            score_threshold=0.95,
        )
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "corrupt.jpg" in err and "missing.png" in err
    records = json.loads(out.read_text())
    assert len(records) == 1 and records[0]["detections"]
    assert all(d["score"] > 0.95 for d in records[0]["detections"])


def test_detect_cli_video_frames(tmp_path):
    frame = cv2.resize(cv2.imread(str(images()[1])), (320, 240))
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (320, 240))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write MJPG/AVI here")
    for _ in range(3):
        writer.write(frame)
    writer.release()
    out = tmp_path / "v.json"
    rc = cli(
        _args(
            model=str(model(ONNX)),
            sources=[str(tmp_path / "clip.avi")],
            json=str(out),
            save_dir=str(tmp_path / "a"),
            spec="ultraface",
        )
    )
    assert rc == 0
    records = json.loads(out.read_text())
    assert [r["image"] for r in records] == [f"{tmp_path / 'clip.avi'}#frame={i}" for i in range(3)]
    assert all(r["detections"] for r in records)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [f"clip_frame{i:06d}.jpg" for i in range(3)]


def test_detect_cli_model_errors(tmp_path):
    with pytest.raises(ValueError, match="no edgedet metadata"):
        cli(_args(model=str(model(ONNX)), sources=[str(images()[0])]))
    with pytest.raises(FileNotFoundError, match="spec file not found"):
        cli(_args(model=str(model(ONNX)), sources=[str(images()[0])], spec=str(tmp_path / "nope.json")))
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(ModelSpec.ultraface().to_json())
    assert cli(_args(model=str(model(ONNX)), sources=[str(images()[0])], spec=str(spec_file))) == 0


# ------------------------------------------------------------------------ no torch / TF on the device


def test_device_path_never_imports_torch_or_tensorflow(tmp_path):
    onnx_model = model(ONNX)
    image = images()[0]
    code = (
        "import sys, cv2\n"
        "import edgedet.edge.runtime.detector, edgedet.edge.runtime.detect, edgedet.edge.runtime.backends\n"
        "import edgedet.edge.runtime.decoders, edgedet.edge.runtime.media, edgedet.edge.runtime.preprocess\n"
        "from edgedet.edge.runtime.detector import Detector\n"
        "from edgedet.edge.core.model_spec import ModelSpec\n"
        f"det = Detector.from_model({str(onnx_model)!r}, spec=ModelSpec.ultraface(), threads=1)\n"
        f"assert det.detect(cv2.imread({str(image)!r}))\n"
        f"det = Detector.from_model({str(model(RAW_TFLITE))!r}, spec=ModelSpec.ultraface(), threads=1)\n"
        f"assert det.detect(cv2.imread({str(image)!r}))\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'training', 'convert') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    # and the real command line, through edgedet.cli
    out = tmp_path / "cli.json"
    proc = subprocess.run(
        [sys.executable, "-m", "edgedet.cli", "detect", "--model", str(onnx_model), "--spec", "ultraface",
         "--json", str(out), "--threads", "1", str(image)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())[0]["detections"]
    proc = subprocess.run(
        [sys.executable, "-m", "edgedet.cli", "detect", "--model", str(onnx_model), str(image)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 1 and "no edgedet metadata" in proc.stderr and "Traceback" not in proc.stderr

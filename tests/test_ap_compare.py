"""Paired bootstrap of an AP difference (edgedet.edge.eval.ap_compare) and `edgedet eval --compare`."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from conftest import shared_path
from tests_support import random_case

from edgedet.cli import main
from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.eval.ap_compare import paired_bootstrap, resample
from edgedet.edge.eval.coco_metrics import coco_metrics

CLASSES = ["a", "b"]


def jittered(dets, seed, sigma):
    rng = np.random.default_rng(seed)
    return [replace(d, scores=np.clip(d.scores + rng.normal(0, sigma, len(d.scores)), 0, 1)) for d in dets]


def test_resampling_every_image_once_or_twice_keeps_the_metrics():
    truth, dets = random_case(3, n_images=10)
    plain = coco_metrics(truth, dets, CLASSES)
    same = coco_metrics(*resample(truth, dets, range(len(truth))), CLASSES)
    doubled = coco_metrics(*resample(truth, dets, [i for i in range(len(truth)) for _ in (0, 1)]), CLASSES)
    assert same["AP50"] == plain["AP50"] and same["AP"] == plain["AP"]
    # every image twice: the same precision/recall curve at twice the counts (copies are separate images)
    assert doubled["ground_truth"] == 2 * plain["ground_truth"]
    assert doubled["AP50"] == pytest.approx(plain["AP50"], abs=1e-9)
    assert doubled["AP"] == pytest.approx(plain["AP"], abs=1e-9)


def test_a_model_against_itself_differs_by_nothing():
    truth, dets = random_case(4)
    d = paired_bootstrap(truth, dets, dets, CLASSES, resamples=30)
    assert d.delta == 0 and d.low == 0 and d.high == 0 and d.b_worse_share == 0
    assert d.a == d.b == coco_metrics(truth, dets, CLASSES)["AP50"]


def test_promoting_every_false_positive_is_worse_in_every_draw():
    truth, dets = random_case(5)
    worse = []
    for t, d in zip(truth, dets, strict=True):  # random_case: the jittered true boxes first, then 2 false positives
        scores = d.scores.copy()
        scores[len(t.boxes) :] = 2.0  # above every true detection
        worse.append(replace(d, scores=scores))
    r = paired_bootstrap(truth, dets, worse, CLASSES, resamples=50)
    assert r.b < r.a and r.delta == pytest.approx(r.b - r.a)
    assert r.high < 0 and r.b_worse_share == 1.0
    flipped = paired_bootstrap(truth, worse, dets, CLASSES, resamples=50)  # the same pair the other way round
    assert flipped.delta == pytest.approx(-r.delta) and flipped.low > 0


def test_the_interval_holds_the_difference_and_narrows_with_more_images():
    widths = []
    for n in (12, 96):
        truth, dets = random_case(6, n_images=n)
        r = paired_bootstrap(truth, dets, jittered(dets, 7, 0.2), CLASSES, metric="AP", resamples=100)
        assert r.low <= r.delta <= r.high and r.images == n
        widths.append(r.high - r.low)
    assert widths[1] < widths[0] / 1.5  # ~ 1 / sqrt(n): 8x the images, ~2.8x narrower


def test_bad_arguments_are_named():
    truth, dets = random_case(8, n_images=4)
    with pytest.raises(ValueError, match="metric 'mAP'"):
        paired_bootstrap(truth, dets, dets, CLASSES, metric="mAP")
    with pytest.raises(ValueError, match="dets_b must list the images of truth in the same order"):
        paired_bootstrap(truth, dets, dets[::-1], CLASSES)
    with pytest.raises(ValueError, match="no images"):
        paired_bootstrap([], [], [], CLASSES)
    with pytest.raises(ValueError, match="resamples >= 1"):
        paired_bootstrap(truth, dets, dets, CLASSES, resamples=0)


@pytest.mark.slow
def test_eval_compare_prints_and_writes_the_paired_difference(tmp_path, capsys):
    """The published UltraFace ONNX against its published float TFLite on faces val: the same network in two
    runtimes, so the difference is ~0 and its interval holds it."""
    model_dir = shared_path("models", "ultraface")
    faces = shared_path("data", "faces")
    out = tmp_path / "cmp.json"
    argv = ["eval", "--model", str(model_dir / "version-slim-320_without_postprocessing.tflite")]
    argv += ["--compare", str(model_dir / "version-slim-320_without_postprocessing.onnx"), "--spec", "ultraface"]
    argv += ["--data", f"voc:{faces}:val", "--class-map", "with_mask=face,without_mask=face,with_incorrect_mask=face"]
    assert main([*argv, "--threads", "1", "--resamples", "40", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        "AP50 version-slim-320_without_postprocessing.tflite - version-slim-320_without_postprocessing.onnx" in printed
    )
    assert "paired bootstrap, 40 draws of 85 images" in printed
    record = json.loads(out.read_text())
    cmp = record["compare"]
    assert cmp["base_metrics"]["images"] == record["images"] == 85
    for metric in ("AP50", "AP"):
        d = cmp[metric]
        assert d["delta"] == pytest.approx(record[metric] - cmp["base_metrics"][metric])
        assert abs(d["delta"]) < 0.005 and d["low"] <= d["delta"] <= d["high"] and d["resamples"] == 40


def test_eval_compare_refuses_models_with_other_labels(tmp_path, capsys):
    published = shared_path("models", "ultraface", "version-slim-320_without_postprocessing.tflite")
    faces = shared_path("data", "faces")
    for name, labels in (("face", ("face",)), ("cat", ("cat",))):
        shutil.copyfile(published, tmp_path / f"{name}.tflite")
        (tmp_path / f"{name}.json").write_text(replace(ModelSpec.ultraface(), labels=labels).to_json())
    argv = ["eval", "--model", str(tmp_path / "face.tflite"), "--compare", str(tmp_path / "cat.tflite")]
    assert main([*argv, "--data", f"voc:{faces}:val"]) == 1
    assert "cat.tflite: its labels ['cat'] differ from" in capsys.readouterr().err
    assert main([*argv[:3], "--compare", str(tmp_path / "face.tflite"), "--data", "x", "--resamples", "0"]) == 1
    assert "--resamples: expected >= 1, got 0" in capsys.readouterr().err

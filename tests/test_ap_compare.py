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
from edgedet.edge.eval import ap_compare
from edgedet.edge.eval.ap_compare import paired_bootstrap, resample
from edgedet.edge.eval.coco_metrics import ImageDetections, ImageTruth, coco_metrics
from edgedet.edge.eval.fast_ap import ResampledAP

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


def adversarial_case(seed, n_images=10, classes=3):
    """Truth and detections that poke at every corner of COCO matching: images without truth or without
    detections, overlapping boxes on an integer grid (IoUs exactly at a threshold), flipped boxes (negative
    area: ignored truth, ignored unmatched detections), boxes over COCO's 1e10 area range (ignored), zero-size
    boxes, labels outside the class list (COCOeval drops them, coco_metrics still counts them), duplicate
    detections, tied scores, and more than maxDets=100 detections of one class in an image."""
    rng = np.random.default_rng(seed)
    truth, dets = [], []
    for i in range(n_images):
        m = 0 if rng.random() < 0.2 else int(rng.integers(1, 7))
        xy = rng.integers(0, 60, (m, 2)).astype(float)
        gt = np.concatenate([xy, xy + rng.integers(1, 40, (m, 2))], axis=1)
        kind = rng.integers(0, 12, m)
        gt[kind == 0] = gt[kind == 0][:, [2, 1, 0, 3]]  # flipped in x: negative area, ignored by COCO
        gt[kind == 1, 2:] = gt[kind == 1, :2] + [2e5, 1e5]  # area 2e10 > 1e10: ignored
        gt[kind == 2, 2:] = gt[kind == 2, :2]  # zero size
        labels = rng.integers(0, classes, m)
        labels[kind == 3] = classes  # not a class of the list
        truth.append(ImageTruth(f"img{i}", 128, 96, gt, labels))
        if rng.random() < 0.15:
            dets.append(ImageDetections(f"img{i}", np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)))
            continue
        copies = rng.integers(0, 4, m)
        hits = np.repeat(gt, copies, axis=0) + rng.integers(-3, 4, (int(copies.sum()), 4))  # grid-aligned
        hit_labels = np.repeat(labels, copies)
        flip = rng.random(len(hit_labels)) < 0.2
        hit_labels[flip] = rng.integers(0, classes, int(flip.sum()))
        k = int(rng.choice([0, 3, 20, 130]))  # 130 > maxDets in one class
        xy = rng.uniform(0, 80, (k, 2))
        noise = np.concatenate([xy, xy + rng.uniform(-5, 40, (k, 2))], axis=1)  # some flipped
        boxes = np.concatenate([hits, noise])
        labels_d = np.concatenate(
            [hit_labels, np.full(k, rng.integers(0, classes)) if k > 20 else rng.integers(0, classes, k)]
        )
        scores = rng.uniform(0, 1, len(boxes))
        if rng.random() < 0.5:
            scores = np.round(scores * 4) / 4  # many ties, also across images
        if len(boxes) and rng.random() < 0.4:  # exact duplicates
            dup = rng.integers(0, len(boxes), 3)
            boxes, scores, labels_d = (np.concatenate([a, a[dup]]) for a in (boxes, scores, labels_d))
        if len(boxes) and rng.random() < 0.1:
            labels_d[0] = -1  # category 0: dropped by COCOeval
        dets.append(ImageDetections(f"img{i}", boxes, scores, labels_d.astype(np.int64)))
    return truth, dets


def draws(rng, n, count):
    yield np.arange(n)  # the real images
    yield np.zeros(n, np.int64)  # one image n times
    for _ in range(count):
        yield rng.integers(0, n, n)
    yield rng.integers(0, n, 3 * n)  # another size


@pytest.mark.parametrize("seed", range(40))
def test_fast_ap_equals_coco_metrics_on_resamples(seed):
    classes = ["a", "b", "c"][: 1 + seed % 3]
    truth, dets = adversarial_case(
        seed, n_images=int(np.random.default_rng(seed).integers(1, 14)), classes=len(classes)
    )
    fast = ResampledAP.build(truth, dets, classes)
    assert fast is not None
    rng = np.random.default_rng(1000 + seed)
    for index in draws(rng, len(truth), 4):
        slow = coco_metrics(*resample(truth, dets, index), classes)
        for metric in ("AP50", "AP"):
            assert fast.metric(index, metric) == pytest.approx(slow[metric], abs=1e-12, rel=0), (metric, index)


def test_fast_ap_reads_precision_per_category_and_threshold():
    truth, dets = adversarial_case(3, n_images=12)
    fast = ResampledAP.build(truth, dets, [*CLASSES, "c"])
    p = fast.precision(np.arange(12), range(10))
    assert p.shape == (10, 101, 3) and ((p == -1) | ((p >= 0) & (p <= 1))).all()
    assert (np.diff(p, axis=1) <= 0).all()  # the envelope: precision never rises with recall


def test_the_fast_path_and_the_slow_path_give_the_same_bootstrap(monkeypatch):
    truth, dets = adversarial_case(11, n_images=15, classes=2)
    other = jittered(dets, 12, 0.3)
    for metric in ("AP50", "AP"):
        fast = paired_bootstrap(truth, dets, other, CLASSES, metric=metric, resamples=20, seed=5)
        with monkeypatch.context() as m:
            m.setattr(ap_compare, "FAST_METRICS", ())
            slow = paired_bootstrap(truth, dets, other, CLASSES, metric=metric, resamples=20, seed=5)
        assert fast.a == slow.a and fast.b == slow.b and fast.b_worse_share == slow.b_worse_share
        assert fast.low == pytest.approx(slow.low, abs=1e-12) and fast.high == pytest.approx(slow.high, abs=1e-12)


def test_cases_the_fast_path_cannot_promise_use_the_slow_one(monkeypatch):
    truth, dets = random_case(9, n_images=6)
    nan = [replace(d, scores=np.where(np.arange(len(d.scores)) == 0, np.nan, d.scores)) for d in dets]
    assert ResampledAP.build(truth, nan, CLASSES) is None  # NaN scores: COCOeval's own sort order is undefined
    assert ResampledAP.build(truth, dets, []) is None
    with pytest.raises(ValueError, match="'AP75' is not one of"):
        ResampledAP.build(truth, dets, CLASSES).metric(range(6), "AP75")
    built = []
    monkeypatch.setattr(ap_compare.ResampledAP, "build", lambda *a: built.append(a) or None)
    r = paired_bootstrap(truth, dets, dets, CLASSES, metric="AP75", resamples=3)  # no fast path for AP75
    assert r.delta == 0 and not built
    with pytest.raises(ValueError, match="NaN"):  # the slow path: whatever coco_metrics does (this: refuse)
        paired_bootstrap(truth, nan, dets, CLASSES, resamples=3)


def test_fast_ap_without_truth_or_without_detections_is_what_coco_metrics_says():
    truth, dets = random_case(10, n_images=5)
    no_dets = [replace(d, boxes=np.zeros((0, 4)), scores=np.zeros(0), labels=np.zeros(0, np.int64)) for d in dets]
    no_truth = [replace(t, boxes=np.zeros((0, 4)), labels=np.zeros(0, np.int64)) for t in truth]
    for t, d in ((truth, no_dets), (no_truth, dets), (no_truth, no_dets)):
        fast = ResampledAP.build(t, d, CLASSES)
        for index in ([0, 1, 2, 3, 4], [2, 2, 2, 2, 2]):
            slow = coco_metrics(*resample(t, d, index), CLASSES)
            assert fast.metric(index, "AP50") == slow["AP50"] and fast.metric(index, "AP") == slow["AP"]
    # a draw that only holds images without truth, or without detections, while others have both
    mixed_t = [truth[0], no_truth[1]]
    mixed_d = [no_dets[0], dets[1]]
    fast = ResampledAP.build(mixed_t, mixed_d, CLASSES)
    for index in ([0, 0], [1, 1], [0, 1]):
        slow = coco_metrics(*resample(mixed_t, mixed_d, index), CLASSES)
        assert fast.metric(index, "AP") == slow["AP"] and fast.metric(index, "AP50") == slow["AP50"]


@pytest.mark.slow
def test_fast_ap_equals_coco_metrics_on_the_real_faces_split():
    """The published UltraFace ONNX on faces val at the eval threshold 0.01 (~465 detections an image)."""
    from edgedet.edge.datasets.spec import load_dataset
    from edgedet.edge.eval.evaluate import EVAL_SCORE_THRESHOLD, parse_class_map, run_detector
    from edgedet.edge.runtime.detector import Detector, load_spec

    model = shared_path("models", "ultraface", "version-slim-320_without_postprocessing.onnx")
    faces = shared_path("data", "faces")
    detector = Detector.from_model(model, spec=load_spec("ultraface"), threads=1, score_threshold=EVAL_SCORE_THRESHOLD)
    class_map = parse_class_map("with_mask=face,without_mask=face,with_incorrect_mask=face")
    truth, dets, _ = run_detector(detector, load_dataset(f"voc:{faces}:val", class_map=class_map), progress=False)
    assert sum(len(d.scores) for d in dets) > 100 * len(dets)  # maxDets truncation is exercised
    fast = ResampledAP.build(truth, dets, detector.labels)
    assert fast is not None
    rng = np.random.default_rng(0)
    for index in (np.arange(len(truth)), *(rng.integers(0, len(truth), len(truth)) for _ in range(3))):
        slow = coco_metrics(*resample(truth, dets, index), detector.labels)
        assert fast.metric(index, "AP50") == pytest.approx(slow["AP50"], abs=1e-12, rel=0)
        assert fast.metric(index, "AP") == pytest.approx(slow["AP"], abs=1e-12, rel=0)


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

"""Our COCO metrics (faster-coco-eval) against the reference pycocotools on the same random case."""

import contextlib
import io

import numpy as np
import pytest
from tests_support import random_case

from edgedet.edge.eval.coco_metrics import ImageDetections, coco_metrics


def pycocotools_stats(truth, dets, classes):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, res = [], [], []
    for k, (t, d) in enumerate(zip(truth, dets, strict=True)):
        images.append({"id": k + 1, "width": t.width, "height": t.height})
        for b, lab in zip(t.boxes, t.labels, strict=True):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": k + 1,
                    "category_id": int(lab) + 1,
                    "bbox": [b[0], b[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        for b, s, lab in zip(d.boxes, d.scores, d.labels, strict=True):
            res.append(
                {
                    "image_id": k + 1,
                    "category_id": int(lab) + 1,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "score": float(s),
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": i + 1, "name": str(i)} for i in range(classes)],
        }
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(res), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pycocotools(seed):
    truth, dets = random_case(seed)
    ours = coco_metrics(truth, dets, ["a", "b"])
    ref = pycocotools_stats(truth, dets, 2)
    assert ours["AP"] == pytest.approx(ref[0], abs=1e-6)
    assert ours["AP50"] == pytest.approx(ref[1], abs=1e-6)
    assert ours["AP75"] == pytest.approx(ref[2], abs=1e-6)
    assert ours["images"] == 12


def test_perfect_and_empty_detections():
    truth, _ = random_case(3)
    perfect = [ImageDetections(t.image_id, t.boxes, np.ones(len(t.boxes)), t.labels) for t in truth]
    m = coco_metrics(truth, perfect, ["a", "b"])
    assert m["AP"] == pytest.approx(1.0) and m["AP50"] == pytest.approx(1.0)
    none = [ImageDetections(t.image_id, np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)) for t in truth]
    assert coco_metrics(truth, none, ["a", "b"])["AP50"] == 0.0
    with pytest.raises(ValueError, match="unknown image"):
        coco_metrics(truth, [ImageDetections("nope", np.zeros((0, 4)), np.zeros(0), np.zeros(0))], ["a"])

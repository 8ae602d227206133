"""Small helpers shared by tests (reference implementations and random cases)."""

from __future__ import annotations

import numpy as np
import pytest

from edgedet.edge.eval.coco_metrics import ImageDetections, ImageTruth


def detection_events(path) -> list[dict]:
    """The per-frame detection events of an events file (object events share it)."""
    import json
    from pathlib import Path

    events = [json.loads(line) for line in Path(path).read_text().splitlines()]
    return [e for e in events if e.get("type") == "detections"]


def brute_iou(a, b) -> float:
    """IoU of two corner boxes, written out plainly."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def clustered_boxes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` boxes jittered around a few centres (so they overlap a lot) with distinct scores."""
    centres = rng.uniform(20, 80, (max(1, n // 6 + 1), 2))
    c = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 4, (n, 2))
    wh = rng.uniform(8, 30, (n, 2))
    boxes = np.concatenate([c - wh / 2, c + wh / 2], axis=1)
    return boxes, rng.permutation(n) / max(n, 1) + rng.uniform(0, 1e-3, n)


def random_case(seed, n_images=12, classes=2):
    """Ground truth on ``n_images`` images and detections: each box jittered, plus two false positives,
    all with random scores."""
    rng = np.random.default_rng(seed)
    truth, dets = [], []
    for i in range(n_images):
        m = int(rng.integers(0, 5))
        xy = rng.uniform(0, 200, (m, 2))
        gt = np.concatenate([xy, xy + rng.uniform(5, 120, (m, 2))], axis=1)
        labels = rng.integers(0, classes, m)
        truth.append(ImageTruth(f"img{i}", 320, 240, gt, labels))
        noisy = gt + rng.normal(0, 6, gt.shape)
        fp = rng.uniform(0, 200, (2, 2))
        boxes = np.concatenate([noisy, np.concatenate([fp, fp + 30], axis=1)])
        dets.append(
            ImageDetections(
                f"img{i}", boxes, rng.uniform(0, 1, len(boxes)), np.concatenate([labels, rng.integers(0, classes, 2)])
            )
        )
    return truth, dets


def single_conv_onnx(path, cin, cout, k, stride, size, group=1, bias=True):
    """A one-layer ONNX model at ``path``: Conv (random weights, ``group`` groups, same padding) + Relu."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    h, w = size
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(cout, cin // group, k, k)).astype(np.float32), "W")]
    inputs = ["x", "W"]
    if bias:
        inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), "B"))
        inputs.append("B")
    pad = k // 2
    node = helper.make_node("Conv", inputs, ["y"], pads=[pad] * 4, strides=[stride] * 2, group=group)
    graph = helper.make_graph(
        [node, helper.make_node("Relu", ["y"], ["z"])],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, h, w])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, path)
    return path

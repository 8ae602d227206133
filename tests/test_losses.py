"""Losses against plain per-image reference loops and hand-computed cases, and a fit to one batch."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from edgedet.training.centernet_targets import centernet_targets
from edgedet.training.losses import CenterNetLoss, MultiBoxLoss, hard_negative_mask

# --- MultiBox ----------------------------------------------------------------------------------------


def reference_multibox(
    cls_logits: torch.Tensor,
    loc_preds: torch.Tensor,
    conf_targets: torch.Tensor,
    loc_targets: torch.Tensor,
    ratio: int = 3,
) -> tuple[float, float]:
    """One image at a time, one prior at a time: (loc_loss, conf_loss) as the SSD paper states them."""
    loc_sum = conf_sum = 0.0
    total_pos = 0
    for i in range(cls_logits.shape[0]):
        logp = torch.log_softmax(cls_logits[i].double(), dim=-1)
        n = cls_logits.shape[1]
        positives = [j for j in range(n) if conf_targets[i, j] > 0]
        for j in positives:
            for d in (loc_preds[i, j] - loc_targets[i, j]).double().tolist():
                loc_sum += 0.5 * d * d if abs(d) < 1 else abs(d) - 0.5
            conf_sum += -float(logp[j, conf_targets[i, j]])
        background = [j for j in range(n) if conf_targets[i, j] == 0]
        background.sort(key=lambda j: (float(logp[j, 0]), j))  # largest -log p0 first, lower index on ties
        for j in background[: ratio * len(positives)]:
            conf_sum += -float(logp[j, 0])
        total_pos += len(positives)
    norm = max(total_pos, 1)
    return loc_sum / norm, conf_sum / norm


def random_ssd_batch(pos_counts: list[int], n: int = 40, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    b = len(pos_counts)
    cls_logits = torch.randn(b, n, classes + 1, generator=g) * 2
    loc_preds = torch.randn(b, n, 4, generator=g)
    loc_targets = torch.randn(b, n, 4, generator=g) * 1.5
    conf_targets = torch.zeros(b, n, dtype=torch.int64)
    for i, k in enumerate(pos_counts):
        idx = torch.randperm(n, generator=g)[:k]
        conf_targets[i, idx] = torch.randint(1, classes + 1, (k,), generator=g)
    return cls_logits, loc_preds, conf_targets, loc_targets


@pytest.mark.parametrize("pos_counts", [[5, 0, 12], [1], [0, 0], [3, 20]])
def test_multibox_matches_reference(pos_counts: list[int]) -> None:
    # Different positive counts per image, an image without positives, and (20 of 40) one where 3x the
    # positives exceeds the background priors left, so every background prior is taken.
    cls_logits, loc_preds, conf_targets, loc_targets = random_ssd_batch(pos_counts)
    total, loc, conf = MultiBoxLoss()(cls_logits, loc_preds, conf_targets, loc_targets)
    ref_loc, ref_conf = reference_multibox(cls_logits, loc_preds, conf_targets, loc_targets)
    assert float(loc) == pytest.approx(ref_loc, rel=1e-5, abs=1e-6)
    assert float(conf) == pytest.approx(ref_conf, rel=1e-5, abs=1e-6)
    assert float(total) == pytest.approx(ref_loc + ref_conf, rel=1e-5, abs=1e-6)


def test_multibox_hand_computed() -> None:
    # C = 1; prior 0 is positive (class 1), prior 1 background, both with logits (0, 0): CE = ln 2 each,
    # and 3 * 1 negatives clamp to the single background prior. Smooth-L1 of (0.5, 2, 0, 0): 0.125 + 1.5.
    cls_logits = torch.zeros(1, 2, 2)
    loc_preds = torch.zeros(1, 2, 4)
    loc_targets = torch.tensor([[[0.5, 2.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]]])
    conf_targets = torch.tensor([[1, 0]])
    total, loc, conf = MultiBoxLoss()(cls_logits, loc_preds, conf_targets, loc_targets)
    assert float(loc) == pytest.approx(1.625)
    assert float(conf) == pytest.approx(2 * math.log(2))
    assert float(total) == pytest.approx(1.625 + 2 * math.log(2))


def test_multibox_normalises_by_batch_positives() -> None:
    # The same image twice, the second time with no positives: the sums are the same, divided by the
    # batch's positives (3), not averaged per image.
    one = random_ssd_batch([3], seed=1)
    empty = random_ssd_batch([0], seed=2)
    both = [torch.cat([a, b]) for a, b in zip(one, empty, strict=True)]
    _, loc1, conf1 = MultiBoxLoss()(*one)
    _, loc2, conf2 = MultiBoxLoss()(*both)
    assert float(loc2) == pytest.approx(float(loc1))
    assert float(conf2) == pytest.approx(float(conf1))


def test_multibox_no_positives_is_zero() -> None:
    cls_logits, loc_preds, conf_targets, loc_targets = random_ssd_batch([0, 0])
    cls_logits.requires_grad_(True)
    total, loc, conf = MultiBoxLoss()(cls_logits, loc_preds, conf_targets, loc_targets)
    assert total.item() == 0 and loc.item() == 0 and conf.item() == 0
    total.backward()
    assert cls_logits.grad is not None and not cls_logits.grad.any()


def test_hard_negatives_exclude_positives() -> None:
    # Positives carry the largest background loss; they must not be mined.
    loss = torch.tensor([[9.0, 8.0, 1.0, 2.0, 3.0, 4.0, 0.5, 0.1]])
    positives = torch.tensor([[True, True, False, False, False, False, False, False]])
    mask = hard_negative_mask(loss, positives, 1)
    assert mask.tolist() == [[False, False, False, False, True, True, False, False]]
    assert not (mask & positives).any()


def test_hard_negatives_ties_are_deterministic() -> None:
    loss = torch.ones(2, 10)
    positives = torch.zeros(2, 10, dtype=torch.bool)
    positives[0, 3] = True
    positives[1, [0, 5]] = True
    mask = hard_negative_mask(loss, positives, 3)
    assert torch.nonzero(mask[0]).flatten().tolist() == [0, 1, 2]
    assert torch.nonzero(mask[1]).flatten().tolist() == [1, 2, 3, 4, 6, 7]


def test_multibox_gradients_finite_and_sparse() -> None:
    cls_logits, loc_preds, conf_targets, loc_targets = random_ssd_batch([2, 0], n=30)
    cls_logits = (cls_logits * 50).requires_grad_(True)  # extreme logits
    loc_preds.requires_grad_(True)
    total, _, _ = MultiBoxLoss()(cls_logits, loc_preds, conf_targets, loc_targets)
    total.backward()
    assert torch.isfinite(total)
    assert torch.isfinite(cls_logits.grad).all() and torch.isfinite(loc_preds.grad).all()
    positives = conf_targets > 0
    assert not loc_preds.grad[~positives].any()  # no regression gradient on background priors
    assert not cls_logits.grad[1].any()  # the image without positives mines nothing
    assert int((cls_logits.grad[0].abs().sum(-1) > 0).sum()) <= 2 + 6


# --- CenterNet ---------------------------------------------------------------------------------------


def reference_centernet(
    heat_logits: torch.Tensor, size_pred: torch.Tensor, offset_pred: torch.Tensor, targets: dict
) -> tuple[float, float, float]:
    """Element by element: (heat, size, offset) with the seed's formulas, alpha = 2, beta = 4; the L1 terms
    weighted by ``mask`` (1 per centre, gaussian weights for extra regression cells)."""
    heat_sum, num_pos = 0.0, 0
    for logit, y in zip(heat_logits.double().flatten().tolist(), targets["heatmap"].flatten().tolist(), strict=True):
        p = 1 / (1 + math.exp(-logit))
        if y == 1:
            heat_sum += -((1 - p) ** 2) * math.log(p)
            num_pos += 1
        else:
            heat_sum += -((1 - y) ** 4) * p**2 * math.log(1 - p)
    size_sum = offset_sum = 0.0
    num_obj = 0
    width = heat_logits.shape[-1]
    for i in range(heat_logits.shape[0]):
        for k in range(targets["mask"].shape[1]):
            if targets["mask"][i, k] == 0:
                continue
            y, x = divmod(int(targets["index"][i, k]), width)
            weight = float(targets["mask"][i, k])
            for d in range(2):
                size_sum += weight * abs(float(size_pred[i, d, y, x]) - float(targets["size"][i, k, d]))
                offset_sum += weight * abs(float(offset_pred[i, d, y, x]) - float(targets["offset"][i, k, d]))
            num_obj += weight
    return heat_sum / max(num_pos, 1), size_sum / max(num_obj, 1), offset_sum / max(num_obj, 1)


def stack_targets(per_image: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.stack([t[k] for t in per_image])) for k in per_image[0]}


def test_focal_loss_hand_computed_2x2() -> None:
    # target [[1, 0.5], [0, 0]], logits [[0, 0], [0, -ln 3]] -> p = [[1/2, 1/2], [1/2, 1/4]]:
    #   centre     -(1 - 1/2)^2 ln(1/2)              = ln 2 / 4
    #   y = 0.5    -(1 - 0.5)^4 (1/2)^2 ln(1 - 1/2)  = ln 2 / 64
    #   y = 0      -(1/2)^2 ln(1/2)                  = ln 2 / 4
    #   y = 0      -(1/4)^2 ln(3/4)                  = ln(4/3) / 16
    # one positive, so N = 1.
    target = torch.tensor([[[[1.0, 0.5], [0.0, 0.0]]]])
    logits = torch.tensor([[[[0.0, 0.0], [0.0, -math.log(3)]]]])
    expected = math.log(2) * (1 / 4 + 1 / 64 + 1 / 4) + math.log(4 / 3) / 16
    assert float(CenterNetLoss().focal_loss(logits, target)) == pytest.approx(expected, rel=1e-6)


def test_centernet_loss_hand_computed() -> None:
    # One object at cell (x, y) = (1, 1) of a 2x2 map (index 3); a padding slot with junk must not count.
    heat_target = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]])
    heat_logits = torch.zeros(1, 1, 2, 2)
    size_pred = torch.zeros(1, 2, 2, 2)
    offset_pred = torch.zeros(1, 2, 2, 2)
    size_pred[0, :, 1, 1] = torch.tensor([2.0, 3.0])
    offset_pred[0, :, 1, 1] = torch.tensor([0.25, 0.5])
    targets = {
        "heatmap": heat_target,
        "size": torch.tensor([[[1.5, 4.0], [100.0, 100.0]]]),
        "offset": torch.tensor([[[0.5, 0.5], [100.0, 100.0]]]),
        "index": torch.tensor([[3, 0]]),
        "mask": torch.tensor([[1.0, 0.0]]),
    }
    total, heat, size, offset = CenterNetLoss()(heat_logits, size_pred, offset_pred, targets)
    expected_heat = math.log(2) / 4 + 3 * math.log(2) / 4  # one positive and three zeros, all at p = 1/2
    assert float(heat) == pytest.approx(expected_heat, rel=1e-6)
    assert float(size) == pytest.approx(0.5 + 1.0)
    assert float(offset) == pytest.approx(0.25)
    assert float(total) == pytest.approx(expected_heat + 0.1 * 1.5 + 0.25, rel=1e-6)


def centernet_batch(object_counts: list[int], seed: int = 0, regression_radius: int = 0):
    """Random predictions and real targets for 32x24 inputs (8x6 maps), ``object_counts`` per image."""
    rng = np.random.default_rng(seed)
    per_image = []
    for n in object_counts:
        xy = rng.uniform(0, 20, (n, 2))
        # neighbour cells need a gaussian radius >= 1, which takes boxes of ~16+ cells
        wh = rng.uniform(64, 96, (n, 2)) if regression_radius else rng.uniform(3, 12, (n, 2))
        per_image.append(
            centernet_targets(
                np.hstack([xy, xy + wh]),
                rng.integers(0, 2, n),
                (32, 24),
                2,
                max_objects=6,
                regression_radius=regression_radius,
            )
        )
    g = torch.Generator().manual_seed(seed)
    b = len(object_counts)
    preds = (torch.randn(b, 2, 6, 8, generator=g) * 3, torch.randn(b, 2, 6, 8, generator=g) * 4, torch.rand(b, 2, 6, 8))
    return preds, stack_targets(per_image)


@pytest.mark.parametrize("regression_radius", [0, 1])
@pytest.mark.parametrize("object_counts", [[2, 0, 5], [1], [0, 0], [3, 6]])
def test_centernet_loss_matches_reference(object_counts: list[int], regression_radius: int) -> None:
    (heat_logits, size_pred, offset_pred), targets = centernet_batch(object_counts, regression_radius=regression_radius)
    if regression_radius and sum(object_counts):
        assert ((targets["mask"] > 0) & (targets["mask"] < 1)).any()  # weighted neighbour cells are in play
    total, heat, size, offset = CenterNetLoss()(heat_logits, size_pred, offset_pred, targets)
    ref_heat, ref_size, ref_offset = reference_centernet(heat_logits, size_pred, offset_pred, targets)
    assert float(heat) == pytest.approx(ref_heat, rel=1e-5, abs=1e-6)
    assert float(size) == pytest.approx(ref_size, rel=1e-5, abs=1e-6)
    assert float(offset) == pytest.approx(ref_offset, rel=1e-5, abs=1e-6)
    assert float(total) == pytest.approx(ref_heat + 0.1 * ref_size + ref_offset, rel=1e-5, abs=1e-6)


def test_centernet_loss_weights() -> None:
    preds, targets = centernet_batch([2, 3])
    _, heat, size, offset = CenterNetLoss()(*preds, targets)
    total = CenterNetLoss(alpha=2, beta=4, size_weight=0.5, offset_weight=2.0)(*preds, targets)[0]
    assert float(total) == pytest.approx(float(heat + 0.5 * size + 2.0 * offset), rel=1e-6)


def test_centernet_gradients_finite_for_extreme_logits() -> None:
    (heat_logits, size_pred, offset_pred), targets = centernet_batch([2, 0, 4])
    heat_logits = (torch.sign(heat_logits) * 80).requires_grad_(True)  # sigmoid saturates to 0 and 1
    size_pred.requires_grad_(True)
    offset_pred.requires_grad_(True)
    total = CenterNetLoss()(heat_logits, size_pred, offset_pred, targets)[0]
    total.backward()
    assert torch.isfinite(total)
    for t in (heat_logits, size_pred, offset_pred):
        assert t.grad is not None and torch.isfinite(t.grad).all()
    assert not size_pred.grad[1].any()  # the image without objects gets no regression gradient


# --- the models can learn: fit one fixed synthetic batch ---------------------------------------------

IMG_W, IMG_H = 128, 96
COLOURS = np.array([[230, 40, 40], [40, 230, 40]], dtype=np.float32)  # class 0 red, class 1 green


def synthetic_batch(seed: int = 0) -> tuple[torch.Tensor, list[np.ndarray], list[np.ndarray]]:
    """Two 128x96 images of uniform noise with 1 and 3 non-overlapping coloured rectangles (16-47 px),
    normalised as the default spec does, ``(x - 127) / 128``; also their boxes and 0-based labels."""
    rng = np.random.default_rng(seed)
    images, boxes, labels = [], [], []
    for count in (1, 3):
        image = rng.uniform(0, 255, (IMG_H, IMG_W, 3)).astype(np.float32)
        placed: list[np.ndarray] = []
        classes: list[int] = []
        while len(placed) < count:
            w, h = rng.integers(16, 48, 2)
            x, y = rng.integers(0, IMG_W - w), rng.integers(0, IMG_H - h)
            box = np.array([x, y, x + w, y + h], dtype=np.float64)
            if any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3] for o in placed):
                continue
            c = int(rng.integers(0, 2))
            image[y : y + h, x : x + w] = COLOURS[c]
            placed.append(box)
            classes.append(c)
        images.append(image)
        boxes.append(np.stack(placed))
        labels.append(np.array(classes, dtype=np.int64))
    x = torch.from_numpy((np.stack(images) - 127.0) / 128.0).permute(0, 3, 1, 2).float().contiguous()
    return x, boxes, labels


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Train on one intra-op thread: on a busy 2-core machine two OpenMP threads run 10-20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fit(model: torch.nn.Module, loss_fn, steps: int, lr: float = 1e-2) -> tuple[list[float], list[float]]:
    """Adam with cosine decay on one batch; the loss terms at the first and the last step (train mode)."""
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    model.train()
    first: list[float] = []
    for _ in range(steps):
        terms = loss_fn()
        optimiser.zero_grad()
        terms[0].backward()
        optimiser.step()
        schedule.step()
        first = first or [t.item() for t in terms]
    return first, [t.item() for t in terms]


@pytest.mark.slow
def test_ssd_model_can_learn(one_thread: None) -> None:
    from edgedet.edge.core.model_spec import ModelSpec
    from edgedet.edge.core.priors import PriorConfig
    from edgedet.training.model_factory import build_model
    from edgedet.training.ssd_targets import ssd_targets

    torch.manual_seed(0)
    spec = ModelSpec(
        head="ssd",
        labels=("red", "green"),
        input_width=IMG_W,
        input_height=IMG_H,
        base_channel=8,
        priors=PriorConfig(style="ultraface"),
    )
    model = build_model(spec)
    x, boxes, labels = synthetic_batch()
    per_image = [ssd_targets(b, c, spec.input_size, model.priors) for b, c in zip(boxes, labels, strict=True)]
    loc_targets = torch.from_numpy(np.stack([loc for loc, _ in per_image]))
    conf_targets = torch.from_numpy(np.stack([conf for _, conf in per_image]))
    assert (conf_targets > 0).sum(1).tolist()[0] != (conf_targets > 0).sum(1).tolist()[1]
    criterion = MultiBoxLoss()
    first, last = fit(model, lambda: criterion(*model(x), conf_targets, loc_targets), steps=150)
    # At the start the classifier is near uniform over 3 classes: conf ~ 4 ln 3 = 4.4 per positive (each
    # positive brings 3 negatives). A total below 0.05 needs p(correct) > 0.99 on every positive and mined
    # negative and every encoded coordinate within ~0.2 (2% of a prior's size for the centre).
    assert last[0] < 0.1 * first[0], (first, last)
    assert last[0] < 0.05, (first, last)


@pytest.mark.slow
def test_centernet_model_can_learn(one_thread: None) -> None:
    from edgedet.edge.core.model_spec import ModelSpec
    from edgedet.training.model_factory import build_model

    torch.manual_seed(0)
    spec = ModelSpec(head="centernet", labels=("red", "green"), input_width=IMG_W, input_height=IMG_H, base_channel=8)
    model = build_model(spec)
    x, boxes, labels = synthetic_batch()
    targets = stack_targets(
        [
            centernet_targets(b, c, spec.input_size, 2, stride=4, max_objects=8)
            for b, c in zip(boxes, labels, strict=True)
        ]
    )
    criterion = CenterNetLoss()
    first, last = fit(model, lambda: criterion(*model(x), targets), steps=200)
    # Start: heat ~ 2.7 (sigmoid 0.1 everywhere), size ~ 16 cells (|w| + |h| per object, ~ 64 px). The
    # bounds: focal loss below 0.05 per object; size within 0.5 cells summed over w and h (2 px at
    # stride 4) and offset within 0.05 cells (0.2 px), per object.
    assert last[0] < 0.1 * first[0], (first, last)
    assert last[1] < 0.05 and last[2] < 0.5 and last[3] < 0.05, (first, last)
    assert last[0] < 0.1, (first, last)

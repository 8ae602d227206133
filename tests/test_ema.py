"""The moving average of the weights: the closed form of its ramped decay, BatchNorm statistics averaged
too, integer buffers copied."""

import math

import pytest
import torch
from torch import nn

from edgedet.training.ema import ModelEMA


def test_the_average_follows_the_ramped_decay_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    ema = ModelEMA(model, decay=0.9, tau=2.0)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(1, 6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(2, 3, 8, 8))  # moves the BatchNorm running statistics and its counter
        ema.update(model)
        d = 0.9 * (1 - math.exp(-step / 2.0))
        for k, v in model.state_dict().items():
            expected[k] = d * expected[k] + (1 - d) * v if v.dtype.is_floating_point else v.clone()
    got = ema.module.state_dict()
    for k, v in expected.items():
        assert torch.allclose(got[k].float(), v.float(), atol=1e-6), k
    assert got["1.num_batches_tracked"] == 5 and ema.updates == 5
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert not torch.equal(got["1.running_mean"], model.state_dict()["1.running_mean"])  # averaged, not copied


def test_first_update_is_almost_the_weights_and_bad_settings_fail():
    model = nn.Linear(2, 2)
    ema = ModelEMA(model, decay=0.999, tau=100.0)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # decay ~0.00999: the average is ~99 % the new weights
    assert torch.allclose(ema.module.weight, model.weight, atol=0.011)
    with pytest.raises(ValueError, match=r"ema\.decay"):
        ModelEMA(model, decay=1.0, tau=1.0)
    with pytest.raises(ValueError, match=r"ema\.tau"):
        ModelEMA(model, decay=0.5, tau=0.0)

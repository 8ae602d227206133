"""Training-throughput benchmark: is data loading on the training loop's critical path?

    python -m edgedet.training.throughput --config FILE [key=value ...] [--batches 30]

Measures, in one run and with the config's own loader (workers, augmentation, targets):

* ``loader``: images/s the DataLoader delivers with no training at all;
* ``step``: images/s of forward + loss + backward + optimiser step on one cached batch (no data);
* ``loop``: images/s of the real loop (loader feeding the steps).

``loop / step`` near 1 means the data pipeline keeps up (it is off the critical path); well below 1
means the step waits for data (more workers, lighter augmentation). Medians of per-batch rates.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from typing import Any

import torch

from edgedet.edge.datasets.spec import load_dataset
from edgedet.training.config import load_config
from edgedet.training.model_factory import build_model
from edgedet.training.train import build_spec, make_loss, make_optimizer, make_train_loader, step_losses

__all__ = ["cli", "measure"]


def _batches(loader: Any, n: int) -> Iterator[Any]:
    while True:
        for batch in loader:
            yield batch
            n -= 1
            if n <= 0:
                return


def _rate(times: list[float], batch: int) -> float:
    return batch / statistics.median(times)


def measure(config: dict[str, Any], batches: int = 30, warmup: int = 3) -> dict[str, float]:
    """Images/s for the loader alone, the step alone, and the loop, plus ``loop / step``."""
    train_set = load_dataset(
        config["data"]["train"], class_map=config["data"]["class_map"], classes=config["data"]["classes"]
    )
    spec = build_spec(config, tuple(train_set.classes))
    model = build_model(spec).train()
    optimizer = make_optimizer(config, model)
    loss_fn = make_loss(config, spec)
    _, loader, _, _ = make_train_loader(config, spec, train_set)
    bs = config["batch_size"]

    def step(images: torch.Tensor, targets: dict[str, torch.Tensor]) -> None:
        losses = step_losses(model(images), targets, spec.head, loss_fn)
        optimizer.zero_grad(set_to_none=True)
        losses[0].backward()
        optimizer.step()

    timings: dict[str, list[float]] = {"loader": [], "step": [], "loop": []}
    t = time.perf_counter()
    for i, _ in enumerate(_batches(loader, batches + warmup)):
        now = time.perf_counter()
        if i >= warmup:
            timings["loader"].append(now - t)
        t = now
    cached = next(iter(loader))
    for i in range(batches + warmup):
        t = time.perf_counter()
        step(*cached)
        if i >= warmup:
            timings["step"].append(time.perf_counter() - t)
    t = time.perf_counter()
    for i, (images, targets) in enumerate(_batches(loader, batches + warmup)):
        step(images, targets)
        now = time.perf_counter()
        if i >= warmup:
            timings["loop"].append(now - t)
        t = now
    rates = {k: _rate(v, bs) for k, v in timings.items()}
    rates["loop_over_step"] = rates["loop"] / rates["step"]
    return rates


def cli(args: argparse.Namespace) -> int:
    """``edgedet bench train-throughput [--config FILE] [key=value ...] [--batches N]``."""
    config = load_config(args.config, args.overrides)
    print(f"batch {config['batch_size']}, workers {config['workers']}, torch threads {torch.get_num_threads()}")
    rates = measure(config, args.batches)
    for key in ("loader", "step", "loop"):
        print(f"{key:>7}: {rates[key]:8.1f} images/s (median over {args.batches} batches)")
    print(f"loop / step = {rates['loop_over_step']:.2f} (1.0: data loading is off the critical path)")
    return 0

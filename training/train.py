"""The training loop: ``edgedet train --config FILE [key=value ...] [--resume CKPT]``.

One process on CPU or one GPU, or many GPUs with DistributedDataParallel under ``torchrun`` (NCCL on
CUDA, gloo on CPU): a DistributedSampler splits the data, rank 0 alone logs, evaluates and writes
checkpoints, and the losses reported are averaged over ranks. Checkpoints carry the full config and the
class names, are written atomically (``last.pt`` every epoch, ``best.pt`` on the best smoothed AP50 of a
val split big enough to pick on, else the final weights), and ``--resume`` continues exactly: the
optimiser, schedule, epoch, the moving average of the weights and the data order (a function of the seed
and epoch) are restored. What is evaluated, saved and exported is the moving average (:mod:`.ema`).
With ``qat.enabled`` the run fine-tunes ``qat.init`` with fake int8 quantisation instead (:mod:`.qat`):
the ``qat`` section sets its epochs and learning rate, and its files are ``qat_last.pt``, ``qat_best.pt``
and ``qat_metrics.csv`` (so ``out`` may be the original run's folder).
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.core.priors import PriorConfig
from edgedet.edge.datasets.sample import Dataset
from edgedet.edge.datasets.spec import load_dataset
from edgedet.edge.runtime.progress import progress
from edgedet.training.augment import train_transform
from edgedet.training.checkpoint import load_checkpoint, save_checkpoint
from edgedet.training.config import AUTO_SCORE_FALLBACK, load_config
from edgedet.training.data_loader import DetectionDataset, EpochSampler, collate
from edgedet.training.ema import ModelEMA
from edgedet.training.evaluate import evaluate_model
from edgedet.training.losses import CenterNetLoss, MultiBoxLoss
from edgedet.training.model_factory import build_model
from edgedet.training.qat import (
    QatSchedule,
    float_model,
    prepare_qat,
    qat_checkpoint_entries,
    qat_run_config,
    start_qat_model,
)

__all__ = ["build_spec", "cli", "make_loss", "make_optimizer", "make_train_loader", "step_losses", "train"]

log = logging.getLogger("edgedet.train")


def build_spec(config: dict[str, Any], labels: tuple[str, ...]) -> ModelSpec:
    m = config["model"]
    priors = PriorConfig.from_dict(m["priors"]) if m["priors"] else PriorConfig()
    return ModelSpec(
        head=m["head"],
        labels=labels,
        input_width=m["input_size"][0],
        input_height=m["input_size"][1],
        base_channel=m["base_channel"],
        priors=priors if m["head"] == "ssd" else None,
        stride=m["stride"],
        score_threshold=AUTO_SCORE_FALLBACK if m["score_threshold"] == "auto" else m["score_threshold"],
        iou_threshold=m["iou_threshold"],
        top_k=m["top_k"],
    )


def lr_factor(step: int, total: int, warmup: int, sched: dict[str, Any], time_fraction: float = 0.0) -> float:
    """Learning-rate multiplier at iteration ``step`` of ``total``: linear warm-up, then cosine or multistep.

    ``time_fraction`` (elapsed / time limit) moves the schedule on when the wall clock, not the epoch
    count, will end the run, so a time-limited run still anneals.
    """
    if warmup > 0 and step < warmup:
        return 0.1 + 0.9 * step / warmup
    done = max((step - warmup) / max(1, total - warmup), time_fraction)
    if sched["name"] == "cosine":
        lo = sched["min_lr_ratio"]
        return lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
    return sched["gamma"] ** sum(done >= m for m in sched["milestones"])


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and normalisation weights."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_train_loader(
    config: dict[str, Any], spec: ModelSpec, train_set: Dataset, world: int = 1, rank: int = 0, pin_memory: bool = False
) -> tuple[DetectionDataset, DataLoader, Any, torch.Generator]:
    """The augmented training data and its loader (a DistributedSampler when ``world > 1``); the
    returned generator is re-seeded every epoch so the data order is a function of seed and epoch."""
    aug, loss_cfg = config["augment"], config["loss"]
    transform = train_transform(
        spec.input_size,
        mean=spec.mean[::-1] if spec.color == "rgb" else spec.mean,  # fills are drawn on BGR images
        photometric=aug["photometric"],
        crop=aug["crop"],
        zoom_out=aug["zoom_out"],
        flip=aug["flip"],
        letterbox=spec.resize == "letterbox",
    )
    data = DetectionDataset(
        train_set,
        spec,
        transform,
        seed=config["seed"],
        match_iou=loss_cfg["match_iou"],
        min_overlap=loss_cfg["min_overlap"],
        max_objects=loss_cfg["max_objects"],
        regression_radius=loss_cfg["regression_radius"],
    )
    per_rank_batch = max(1, config["batch_size"] // world)
    if config["workers"] > 0:
        _single_threaded_worker(-1)  # see there: the parent must not fork while OpenCV's pool is running
    generator = torch.Generator()
    sampler: Any
    if world > 1:
        sampler = DistributedSampler(data, num_replicas=world, rank=rank, seed=config["seed"], drop_last=True)
    else:
        sampler = RandomSampler(data, generator=generator)
    sampler = EpochSampler(sampler)
    loader = DataLoader(
        data,
        batch_size=per_rank_batch,
        sampler=sampler,
        num_workers=config["workers"],
        collate_fn=collate,
        drop_last=len(data) >= per_rank_batch * world * 2,
        pin_memory=pin_memory,
        persistent_workers=config["workers"] > 0,  # EpochSampler carries the epoch to live workers
        prefetch_factor=4 if config["workers"] > 0 else None,
        worker_init_fn=_single_threaded_worker,
    )
    return data, loader, sampler, generator


def make_optimizer(config: dict[str, Any], model: nn.Module) -> torch.optim.Optimizer:
    opt_cfg = config["optimizer"]
    groups = _param_groups(model, opt_cfg["weight_decay"])
    if opt_cfg["name"] == "sgd":
        return torch.optim.SGD(groups, lr=opt_cfg["lr"], momentum=opt_cfg["momentum"], nesterov=True)
    return torch.optim.AdamW(groups, lr=opt_cfg["lr"])


def make_loss(config: dict[str, Any], spec: ModelSpec) -> nn.Module:
    return MultiBoxLoss(config["loss"]["neg_pos_ratio"]) if spec.head == "ssd" else CenterNetLoss()


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"config: device={name!r} but CUDA is not available here")
    if name == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(name)


class _Dist:
    """Process-group facts; a single process is world size 1, rank 0."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1

    def init(self, device: torch.device) -> None:
        if self.enabled and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            values = values.clone()
            dist.all_reduce(values)
            values /= self.world
        return values

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def step_losses(model_out: tuple[torch.Tensor, ...], targets: dict[str, torch.Tensor], head: str, fn: nn.Module):
    if head == "ssd":
        cls_logits, locs = model_out
        return fn(cls_logits, locs, targets["conf"], targets["loc"])
    heat, size, offset = model_out
    return fn(heat, size, offset, targets)


def train(config: dict[str, Any], resume: str | None = None) -> dict[str, Any]:
    """Run training; returns a summary (run dir, checkpoints, last metrics, wall time)."""
    dd = _Dist()
    device = _device(config["device"], dd.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dd.init(device)
    try:
        return _train(config, resume, dd, device)
    finally:
        dd.close()


@dataclass
class _Clock:
    """Wall time since the run began, against the optional time limit (``limit_s`` 0: none)."""

    limit_s: float
    start: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def fraction(self) -> float:
        """Elapsed / limit: how far the wall clock has moved the schedule (0 without a limit)."""
        return self.elapsed() / self.limit_s if self.limit_s else 0.0

    def expired(self) -> bool:
        return bool(self.limit_s) and self.elapsed() > self.limit_s


@dataclass
class _Selection:
    """How ``best.pt`` is picked: on the smoothed val AP50 when the split is big enough to pick on
    (``eval.select_min_images``), else it is the final weights — on 23 images the single best evaluation
    is mostly noise, and a file picked on it generalises worse than the last one."""

    rule: str = "final"  # "smoothed" | "final"
    smoothed: float = -1.0  # the exponentially smoothed AP50 of the evaluations so far
    best: float = -1.0  # the smoothed AP50 of best.pt

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "smoothed": self.smoothed, "best": self.best}


@dataclass
class _Start:
    """Where the run begins: epoch 0 from scratch, or after the epoch of a resumed checkpoint."""

    epoch: int = 0
    selection: _Selection = field(default_factory=_Selection)
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None  # the resumed checkpoint (optimiser, schedule, scaler)


@dataclass
class _Loop:
    """What one optimisation step needs: data, model (``net`` wraps it under DDP), optimiser and loss."""

    model: nn.Module
    net: nn.Module
    data: DetectionDataset
    loader: DataLoader
    sampler: Any
    generator: torch.Generator
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    use_amp: bool
    loss_fn: nn.Module
    head: str
    parts: tuple[str, ...]  # the loss components after the total, as named in the metrics
    ema: ModelEMA | None = None  # the averaged weights: what is evaluated, saved and exported
    qat: QatSchedule | None = None  # quantisation-aware fine-tuning: freezes BatchNorm and the observers

    @property
    def kept(self) -> nn.Module:
        """The model that is evaluated and saved: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.model


def _train(config: dict[str, Any], resume: str | None, dd: _Dist, device: torch.device) -> dict[str, Any]:
    if config["qat"]["enabled"]:
        config = qat_run_config(config, resume)
    clock = _Clock(config["time_limit_minutes"] * 60)
    out = Path(config["out"])
    torch.manual_seed(config["seed"])
    train_set, val_set = _load_data(config["data"])
    spec = build_spec(config, tuple(train_set.classes))
    model, spec, start = _build_model(config, spec, resume, device)
    loop = _build_loop(config, spec, model, train_set, dd, device, clock, start.checkpoint)
    if dd.main:
        _announce(config, spec, train_set, out, dd, device)
    writer = _tensorboard(out, _file(config, "tb")) if dd.main else None
    selection, history = start.selection, start.history
    if val_set is not None:
        big_enough = len(val_set) >= config["eval"]["select_min_images"]
        selection.rule = "smoothed" if big_enough else "final"
        if dd.main and not big_enough:
            log.info(
                "best.pt = the final weights: %d val images are too few to pick an epoch on "
                "(eval.select_min_images %d)",
                len(val_set),
                config["eval"]["select_min_images"],
            )
    metrics: dict[str, Any] = {}
    epoch = start.epoch - 1
    for epoch in range(start.epoch, config["epochs"]):
        metrics, out_of_time = _train_epoch(loop, config, epoch, dd, device, clock)
        stopped_early = out_of_time or _stop_requested(config, epoch, start.epoch)
        if dd.main and val_set is not None and _evaluates(config, epoch, stopped_early):
            spec = _evaluate(config, loop.kept, spec, val_set, metrics)
        history.append(metrics)
        if dd.main:
            new_best = _select(config, selection, metrics)
            _record_epoch(out, writer, epoch, metrics, _file(config, "metrics.csv"))
            _save_checkpoints(out, config, loop, spec, epoch, history, selection, new_best)
        dd.barrier()
        if stopped_early:
            if dd.main:
                log.info("stopping after epoch %d (time limit or stop_after_epochs)", epoch + 1)
            break
    if writer is not None:
        writer.close()
    return {
        "out": str(out),
        "last": str(out / _file(config, "last.pt")),
        "best": str(out / _file(config, "best.pt")) if (out / _file(config, "best.pt")).is_file() else None,
        "metrics": metrics,
        "epochs_run": epoch + 1,
        "wall_s": clock.elapsed(),
    }


def _load_data(data_cfg: dict[str, Any]) -> tuple[Dataset, Dataset | None]:
    """The training set (an error when it has no usable image) and the validation set, if any."""
    train_set = load_dataset(data_cfg["train"], class_map=data_cfg["class_map"], classes=data_cfg["classes"])
    if len(train_set) == 0:
        raise ValueError(f"data.train: {data_cfg['train']} has no usable images ({train_set.report.summary()})")
    val_set = None
    if data_cfg["val"]:
        val_set = load_dataset(data_cfg["val"], class_map=data_cfg["class_map"], classes=tuple(train_set.classes))
    return train_set, val_set


def _build_model(
    config: dict[str, Any], spec: ModelSpec, resume: str | None, device: torch.device
) -> tuple[nn.Module, ModelSpec, _Start]:
    """The model on ``device``: the ``resume`` checkpoint's weights and progress, or ``model.init``'s
    weights, or a fresh initialisation. A resumed run keeps the score threshold it chose so far."""
    model = build_model(spec).to(device)
    if resume:
        _, ckpt_spec, ckpt = load_checkpoint(resume, map_location=device)
        if config["model"]["score_threshold"] == "auto":  # chosen by the run's own evaluations so far
            spec = replace(spec, score_threshold=ckpt_spec.score_threshold)
        if ckpt_spec != spec:
            raise ValueError(f"{resume}: its model spec differs from this config's; resume with the same config")
        model.load_state_dict(ckpt.get("train_model", ckpt["model"]))  # the raw weights, when averaged
        if ("qat_model" in ckpt) != bool(config["qat"]["enabled"]):
            raise ValueError(f"{resume}: resume a QAT checkpoint with qat.enabled=true, and only a QAT one with it")
        if config["qat"]["enabled"]:
            prepare_qat(model, spec, ckpt["qat"]["target"]).to(device)
            model.load_state_dict(ckpt["qat_model"])
        selection = _Selection(**ckpt["selection"]) if "selection" in ckpt else _Selection()
        start = _Start(int(ckpt["epoch"]) + 1, selection, list(ckpt.get("history", [])), ckpt)
        return model, spec, start
    if config["qat"]["enabled"]:
        model, spec = start_qat_model(config, spec, device)
        return model, spec, _Start()
    if config["model"]["init"]:
        _, _, init = load_checkpoint(config["model"]["init"])
        model.load_state_dict(init["model"])
    if config["model"]["init_backbone"]:
        load_backbone(model, config["model"]["init_backbone"])
    return model, spec, _Start()


def load_backbone(model: nn.Module, path: str) -> None:
    """Copy the backbone (``base_net.*``) of the checkpoint at ``path`` into ``model``; every backbone
    tensor must be there with the same shape (``ValueError`` naming the first that is not)."""
    _, _, ckpt = load_checkpoint(path)
    prefix = "base_net."
    source = {k: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
    target = {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    for key, value in target.items():
        if key not in source or source[key].shape != value.shape:
            found = "missing" if key not in source else f"shape {list(source[key].shape)}"
            raise ValueError(
                f"model.init_backbone: {path}: backbone tensor {key} is {found}, this model needs "
                f"{list(value.shape)} (the same base_channel?)"
            )
    model.load_state_dict(source, strict=False)


def _build_loop(
    config: dict[str, Any],
    spec: ModelSpec,
    model: nn.Module,
    train_set: Dataset,
    dd: _Dist,
    device: torch.device,
    clock: _Clock,
    checkpoint: dict[str, Any] | None,
) -> _Loop:
    """Loader, DDP wrapper, optimiser, schedule, AMP scaler and loss; a resumed ``checkpoint``'s optimiser,
    schedule and scaler state restored."""
    data, loader, sampler, generator = make_train_loader(
        config, spec, train_set, dd.world, dd.rank, pin_memory=device.type == "cuda"
    )
    net: nn.Module = model
    if dd.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(config, model)
    scheduler = _make_scheduler(config, optimizer, max(1, len(loader)), clock)
    use_amp = bool(config["amp"]) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        if "scaler" in checkpoint:
            scaler.load_state_dict(checkpoint["scaler"])
    parts = ("loc", "conf") if spec.head == "ssd" else ("heat", "size", "offset")
    ema = None
    if config["ema"]["enabled"]:
        ema = ModelEMA(model, config["ema"]["decay"], config["ema"]["tau"])
        if checkpoint is not None and "ema" in checkpoint:
            ema.module.load_state_dict(checkpoint["model"])
            ema.updates = int(checkpoint["ema"]["updates"])
        elif checkpoint is not None:  # a run saved without an average: start one from its weights
            ema.updates = 0
    return _Loop(
        model=model,
        net=net,
        data=data,
        loader=loader,
        sampler=sampler,
        generator=generator,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        use_amp=use_amp,
        loss_fn=make_loss(config, spec),
        head=spec.head,
        parts=parts,
        ema=ema,
        qat=_qat_schedule(config, model, len(loader)),
    )


def _qat_schedule(config: dict[str, Any], model: nn.Module, steps_per_epoch: int) -> QatSchedule | None:
    """A QAT run's BatchNorm / observer freezing over its ``epochs``; ``None`` for ordinary training."""
    qat = config["qat"]
    if not qat["enabled"]:
        return None
    total = config["epochs"] * max(1, steps_per_epoch)
    return QatSchedule(model, total, qat["freeze_bn_after"], qat["freeze_observers_after"])


def _make_scheduler(
    config: dict[str, Any], optimizer: torch.optim.Optimizer, steps_per_epoch: int, clock: _Clock
) -> torch.optim.lr_scheduler.LambdaLR:
    """:func:`lr_factor` per step over ``epochs`` epochs, moved on by the wall clock under a time limit."""
    total_steps = config["epochs"] * steps_per_epoch
    warmup = int(config["schedule"]["warmup_epochs"] * steps_per_epoch)
    # a plain lambda: LambdaLR saves the state of callable objects in its state dict, not of functions
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup, config["schedule"], clock.fraction())
    )


def _announce(
    config: dict[str, Any], spec: ModelSpec, train_set: Dataset, out: Path, dd: _Dist, device: torch.device
) -> None:
    """Rank 0: create the run folder and log what is being trained on what."""
    out.mkdir(parents=True, exist_ok=True)
    log.info(
        "training %s on %s: %d images, classes %s, device %s, world %d",
        spec.head,
        config["data"]["train"],
        len(train_set),
        list(spec.labels),
        device,
        dd.world,
    )
    if len(train_set.report):
        log.warning("training data: %s", train_set.report.summary())


def _train_epoch(
    loop: _Loop, config: dict[str, Any], epoch: int, dd: _Dist, device: torch.device, clock: _Clock
) -> tuple[dict[str, Any], bool]:
    """One pass over the training data (cut short when the time limit passes): the epoch's metrics
    (losses averaged over ranks) and whether the time limit ended it."""
    loop.data.set_epoch(epoch)
    loop.generator.manual_seed(config["seed"] * 1000 + epoch)  # the data order: a function of seed and epoch
    loop.sampler.set_epoch(epoch)
    loop.net.train()
    sums = torch.zeros(1 + len(loop.parts), device=device)
    seen, t0 = 0, time.monotonic()
    out_of_time = False
    bar = progress(loop.loader, len(loop.loader), f"epoch {epoch + 1}/{config['epochs']}", dd.main)
    for images, targets in bar:
        images = images.to(device, non_blocking=True)
        targets = {k: v.to(device, non_blocking=True) for k, v in targets.items()}
        losses = _step(loop, images, targets)
        sums += torch.stack([x.detach().float() for x in losses]) * len(images)
        seen += len(images)
        if dd.main and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{losses[0].item():.3f}", lr=f"{loop.optimizer.param_groups[0]['lr']:.4f}")
        if clock.expired():
            out_of_time = True
            break
    avg = dd.mean(sums / max(1, seen)).tolist()
    epoch_time = time.monotonic() - t0
    metrics = {
        "epoch": epoch + 1,
        "lr": loop.optimizer.param_groups[0]["lr"],
        "loss": avg[0],
        **{f"loss_{p}": v for p, v in zip(loop.parts, avg[1:], strict=True)},
        "images_per_s": seen * dd.world / max(epoch_time, 1e-9),
        "wall_s": clock.elapsed(),
    }
    return metrics, out_of_time


def _step(loop: _Loop, images: torch.Tensor, targets: dict[str, torch.Tensor]):
    """One optimisation step on a batch (AMP on CUDA when asked, gradients clipped at norm 10); its losses."""
    if loop.qat is not None:
        loop.qat.before_step(loop.scheduler.last_epoch)  # the steps taken so far (exact on resume)
    autocast = torch.autocast("cuda", dtype=torch.float16) if loop.use_amp else nullcontext()
    with autocast:
        losses = step_losses(loop.net(images), targets, loop.head, loop.loss_fn)
    loop.optimizer.zero_grad(set_to_none=True)
    loop.scaler.scale(losses[0]).backward()
    loop.scaler.unscale_(loop.optimizer)
    nn.utils.clip_grad_norm_(loop.model.parameters(), 10.0)
    loop.scaler.step(loop.optimizer)
    loop.scaler.update()
    loop.scheduler.step()
    if loop.ema is not None:
        loop.ema.update(loop.model)
    return losses


def _stop_requested(config: dict[str, Any], epoch: int, start_epoch: int) -> bool:
    """Whether ``stop_after_epochs`` epochs of this process have run."""
    return bool(config["stop_after_epochs"]) and epoch + 1 - start_epoch >= config["stop_after_epochs"]


def _evaluates(config: dict[str, Any], epoch: int, stopping: bool) -> bool:
    """Validation runs every ``eval.every`` epochs and after the last one (the final or a stopping epoch)."""
    last = epoch + 1 == config["epochs"] or stopping
    return (epoch + 1) % config["eval"]["every"] == 0 or last


def _evaluate(
    config: dict[str, Any], model: nn.Module, spec: ModelSpec, val_set: Dataset, metrics: dict[str, Any]
) -> ModelSpec:
    """AP and AP50 on the validation set into ``metrics``; the spec, with ``score_threshold: auto`` set to
    this evaluation's best-F1 threshold (saved with the checkpoints)."""
    model.eval()
    result = evaluate_model(model, spec, val_set, score_threshold=config["eval"]["score_threshold"])
    metrics.update(AP=result["AP"], AP50=result["AP50"])
    if config["model"]["score_threshold"] == "auto" and result.get("best_f1_threshold") is not None:
        spec = replace(spec, score_threshold=result["best_f1_threshold"])
        metrics["score_threshold"] = spec.score_threshold
    return spec


def _file(config: dict[str, Any], name: str) -> str:
    """A run file's name: ``qat_``-prefixed for a QAT fine-tune (it may share the original run's folder)."""
    return f"qat_{name}" if config["qat"]["enabled"] else name


def _record_epoch(out: Path, writer: Any, epoch: int, metrics: dict[str, Any], csv_name: str = "metrics.csv") -> None:
    """Rank 0: the epoch's metrics to the log, ``metrics.csv`` and TensorBoard (when installed)."""
    log.info("epoch %d: %s", epoch + 1, ", ".join(f"{k}={_fmt(v)}" for k, v in metrics.items() if k != "epoch"))
    _append_csv(out / csv_name, metrics)
    if writer is not None:
        for k, v in metrics.items():
            writer.add_scalar(k, v, epoch + 1)


def _select(config: dict[str, Any], selection: _Selection, metrics: dict[str, Any]) -> bool:
    """Fold this epoch's AP50 (when it was evaluated) into the smoothed AP50 (``AP50_smoothed`` in the
    metrics); whether the epoch becomes ``best.pt``."""
    if "AP50" not in metrics:
        return False
    ap50 = float(metrics["AP50"])
    s = config["eval"]["select_smoothing"]
    selection.smoothed = ap50 if selection.smoothed < 0 else s * selection.smoothed + (1 - s) * ap50
    metrics["AP50_smoothed"] = selection.smoothed
    if selection.rule == "final":
        selection.best = ap50
        return True
    if selection.smoothed > selection.best:
        selection.best = selection.smoothed
        return True
    return False


def _save_checkpoints(
    out: Path,
    config: dict[str, Any],
    loop: _Loop,
    spec: ModelSpec,
    epoch: int,
    history: list[dict[str, Any]],
    selection: _Selection,
    new_best: bool,
) -> None:
    """Rank 0: ``last.pt`` always, ``best.pt`` as :class:`_Selection` picks it, each with everything
    ``--resume`` needs. The checkpoint's model is the moving average (what is exported); the raw
    weights ride along as ``train_model`` so that a resumed run continues exactly."""
    state: dict[str, Any] = {
        "config": config,
        "epoch": epoch,
        "optimizer": loop.optimizer.state_dict(),
        "scheduler": loop.scheduler.state_dict(),
        "scaler": loop.scaler.state_dict(),
        "history": history,
        "selection": selection.to_dict(),
        "best_ap50": selection.best,
    }
    if loop.ema is not None:
        state.update(train_model=loop.model.state_dict(), ema=loop.ema.state())
    kept = loop.kept
    if loop.qat is not None:  # the float network with the QAT weights, plus the fake-quantised model's state
        state.update(qat_checkpoint_entries(kept))
        kept = float_model(kept, spec)
    save_checkpoint(out / _file(config, "last.pt"), kept, spec, **state)
    if new_best:
        save_checkpoint(out / _file(config, "best.pt"), kept, spec, **state)


def _single_threaded_worker(_: int) -> None:
    """Data workers decode and augment one image at a time: OpenCV's own thread pool there would only
    oversubscribe the cores the training step needs.

    The training process calls this too, before its workers fork: a worker forked while the parent's
    OpenCV pool threads exist (after, e.g., generating synthetic data in-process) hangs for ever in its own
    ``cv2.setNumThreads``, waiting on threads that were not copied into it."""
    import cv2

    cv2.setNumThreads(1)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    """Append one epoch; a new column (e.g. AP on an eval epoch) rewrites the header."""
    rows = []
    if path.exists():
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    rows.append({k: _fmt(v) for k, v in row.items()})
    fields = list(dict.fromkeys(k for r in rows for k in r))
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def _tensorboard(out: Path, name: str = "tb"):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out / name))


def cli(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    if args.out:
        config["out"] = args.out
    summary = train(config, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        m = summary["metrics"]
        ap = f", AP50 {m['AP50']:.3f}, AP {m['AP']:.3f}" if "AP50" in m else ""
        print(f"trained {summary['epochs_run']} epochs in {summary['wall_s'] / 60:.1f} min{ap}")
        print(f"checkpoints: {summary['last']}" + (f", {summary['best']}" if summary["best"] else ""))
    return 0

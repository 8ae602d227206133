"""The training config: one YAML for model, data, augmentation, optimiser, schedule and evaluation.

Every key is written once, below (:class:`TrainingConfig`): its type, default, bounds and meaning. The
page ``docs/reference/config-training.md`` and ``config.schema.json`` beside this file are generated from these models
(``python -m edgedet.config_docs --write``). ``load_config(path, ["optimizer.lr=0.01",
"epochs=5"])`` merges the file and the command-line overrides over the defaults and validates the result:
an unknown key or a bad value fails at start, naming the file (or the override), the key and what was
expected. The training loop gets a plain dict (``TrainingConfig.model_dump()``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from edgedet.edge.core.priors import PriorConfig
from edgedet.edge.runtime.settings import (
    Expect,
    Flag,
    Int,
    Number,
    SectionInput,
    StrictModel,
    Text,
    deep_merge,
    load,
    section,
    validate,
)

__all__ = ["AUTO_SCORE_FALLBACK", "DEFAULTS", "TrainingConfig", "load_config", "merge_config"]

AUTO_SCORE_FALLBACK = 0.4  # the spec's threshold under "auto" until (or without) a val evaluation

ZeroToOne = Annotated[Number, Field(ge=0, le=1)]


class ModelSection(StrictModel):
    """The detector: head, width, input size, priors / stride and post-processing."""

    head: Literal["ssd", "centernet"] = Field("ssd", description="detection head")
    base_channel: Annotated[Int, Field(ge=1)] = Field(16, description="backbone width (channels of the first conv)")
    input_size: Annotated[
        list[Annotated[Int, Field(ge=32)]],
        Field(min_length=2, max_length=2),
        Expect("[width, height]: two integers >= 32"),
    ] = Field([320, 240], description="network input `[width, height]` in pixels")
    priors: dict[str, Any] | None = Field(
        None,
        description="SSD prior config (`edgedet.edge.core.priors.PriorConfig` keys); null: UltraFace-style min_boxes",
    )
    stride: Annotated[Int, Field(ge=1)] = Field(4, description="CenterNet output stride")
    score_threshold: Literal["auto"] | Annotated[Number, Field(gt=0, le=1)] = Field(
        "auto",
        description="the spec's score threshold; `auto`: the best-F1 threshold of the latest val evaluation "
        f"({AUTO_SCORE_FALLBACK} until then, or without val data)",
    )
    iou_threshold: ZeroToOne = Field(0.45, description="NMS IoU threshold of the spec")
    top_k: Annotated[Int, Field(ge=1)] = Field(100, description="most detections per image")
    init: Text = Field("", description="checkpoint to start from (weights only); empty: from scratch")
    init_backbone: Text = Field(
        "",
        description="checkpoint whose backbone starts this model's (any head, same `base_channel`), e.g. a "
        "trained SSD's for a CenterNet; the heads start fresh. Empty: none",
    )

    @field_validator("priors")
    @classmethod
    def _priors(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value:
            try:
                PriorConfig.from_dict(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(str(exc).removeprefix("priors: ")) from exc
        return value


class DataSection(StrictModel):
    """Where the images and labels come from (a DATA argument as ``edgedet eval --data`` takes)."""

    train: Text = Field("synthetic:400", description="training data, e.g. `voc:ROOT:train`, `synthetic:400`")
    val: Text = Field("", description="validation data; empty: no evaluation")
    classes: list[Text] | None = Field(None, description="fixed class order; null: the training set's classes")
    class_map: dict[Text, Text] | None = Field(None, description="source class name -> target name")


class LossSection(StrictModel):
    """Target assignment and loss weights of both heads."""

    match_iou: ZeroToOne = Field(
        0.5, description="SSD: priors at IoU >= this with a ground truth are positives (UltraFace: 0.35)"
    )
    neg_pos_ratio: Annotated[Number, Field(ge=0)] = Field(3.0, description="SSD: hard negatives per positive")
    min_overlap: Annotated[Number, Field(gt=0, le=1)] = Field(0.7, description="CenterNet: gaussian radius overlap t")
    max_objects: Annotated[Int, Field(ge=1)] = Field(
        128, description="CenterNet: objects per image (more is an error naming the image)"
    )
    regression_radius: Annotated[Int, Field(ge=0)] = Field(
        1, description="CenterNet: size/offset also trained this many cells around each centre"
    )


class AugmentSection(StrictModel):
    """Training-time augmentation."""

    photometric: Flag = Field(True, description="brightness, contrast, saturation and hue jitter")
    crop: Flag = Field(True, description="SSD random crop")
    zoom_out: Annotated[Number, Field(ge=1)] = Field(2.0, description="largest zoom-out canvas ratio; 1 disables")
    flip: Flag = Field(True, description="horizontal flip")


class OptimizerSection(StrictModel):
    """The optimiser."""

    name: Literal["sgd", "adamw"] = Field("sgd", description="SGD (Nesterov) or AdamW")
    lr: Annotated[Number, Field(gt=0)] = Field(0.02, description="peak learning rate")
    momentum: ZeroToOne = Field(0.9, description="SGD momentum")
    weight_decay: Annotated[Number, Field(ge=0)] = Field(
        5e-4, description="weight decay (not on biases and normalisation weights)"
    )


class ScheduleSection(StrictModel):
    """The learning-rate schedule (a time-limited run anneals by the clock)."""

    name: Literal["cosine", "multistep"] = Field("cosine", description="cosine or multistep, after the warm-up")
    warmup_epochs: Annotated[Number, Field(ge=0)] = Field(1.0, description="linear warm-up length in epochs")
    milestones: list[ZeroToOne] = Field([0.7, 0.9], description="multistep: fractions of the run where lr drops")
    gamma: Annotated[Number, Field(gt=0)] = Field(0.1, description="multistep: lr factor at each milestone")
    min_lr_ratio: ZeroToOne = Field(0.01, description="cosine: final lr as a fraction of the peak")


class EvalSection(StrictModel):
    """Evaluation on ``data.val`` during training."""

    every: Annotated[Int, Field(ge=1)] = Field(
        5, description="epochs between evaluations; the last epoch is always evaluated when `data.val` is set"
    )
    score_threshold: ZeroToOne = Field(0.01, description="lowest score kept for the AP evaluation")
    select_min_images: Annotated[Int, Field(ge=0)] = Field(
        100,
        description="`best.pt` is picked on the smoothed val AP50 only when `data.val` has at least this many "
        "images; on a smaller split it is the final weights (`last.pt`)",
    )
    select_smoothing: Annotated[Number, Field(ge=0, lt=1)] = Field(
        0.5, description="weight of the previous smoothed AP50 when a new evaluation comes in (0: none)"
    )


class EmaSection(StrictModel):
    """The moving average of the weights that is evaluated, saved and exported."""

    enabled: Flag = Field(
        False,
        description="keep an exponential moving average of the weights and evaluate, save and export it "
        "(off by default: in a short run it lagged the weights, see the README)",
    )
    decay: Annotated[Number, Field(ge=0, lt=1)] = Field(
        0.998, description="final decay per step: the average spans about 1 / (1 - decay) steps"
    )
    tau: Annotated[Number, Field(gt=0)] = Field(
        200.0, description="ramp in steps: the decay is decay * (1 - exp(-steps / tau))"
    )


class QatSection(StrictModel):
    """Quantisation-aware fine-tuning of a trained checkpoint (:mod:`edgedet.training.qat`)."""

    enabled: Flag = Field(
        False,
        description="fine-tune `qat.init` with fake int8 quantisation (BatchNorm folded, per-channel int8 weights, "
        "8-bit activations as the int8 exports run them); writes `qat_last.pt` / `qat_best.pt`, which "
        "`edgedet export --int8` exports with the trained scales",
    )
    init: Text = Field(
        "", description="the trained checkpoint to fine-tune (needed when `qat.enabled`), e.g. `runs/x/best.pt`"
    )
    epochs: Annotated[Int, Field(ge=0)] = Field(
        0, description="QAT epochs; 0: 4 % of the epochs `qat.init` was trained for (at least 1)"
    )
    lr: Annotated[Number, Field(ge=0)] = Field(
        0.0, description="peak learning rate of the fine-tune (cosine, no warm-up); 0: 1 % of `optimizer.lr`"
    )
    freeze_bn_after: ZeroToOne = Field(
        0.5, description="fraction of the QAT steps after which BatchNorm statistics freeze (1: never)"
    )
    freeze_observers_after: ZeroToOne = Field(
        0.5, description="fraction of the QAT steps after which the activation ranges freeze (1: never)"
    )
    target: Literal["ort", "tflite", "both"] = Field(
        "both",
        description="int8 graph to match: `ort` (float stem, a range per SSD head level), `tflite` / `both` "
        "(all int8, one range for all SSD head levels: both runtimes follow the QAT model within a few int8 steps)",
    )


class TrainingConfig(StrictModel):
    """The training config (``edgedet train --config FILE [key.sub=value ...]``); every key is optional."""

    out: Text = Field("runs/train", description="run directory (checkpoints, metrics.csv)")
    seed: Int = Field(0, description="seed of the weights, the data order and the augmentation")
    device: Text = Field("auto", description="`auto`, `cpu`, `cuda` or `cuda:N`")
    epochs: Annotated[Int, Field(ge=1)] = Field(30, description="epochs to train")
    stop_after_epochs: Annotated[Int, Field(ge=0)] = Field(
        0, description="> 0: end this run after that many epochs (continue later with `--resume`)"
    )
    time_limit_minutes: Annotated[Number, Field(ge=0)] = Field(
        0.0, description="> 0: stop (and evaluate) when the wall clock runs out"
    )
    batch_size: Annotated[Int, Field(ge=1)] = Field(32, description="images per step (split over the ranks)")
    workers: Annotated[Int, Field(ge=0)] = Field(2, description="data loader processes (0: in the main process)")
    amp: Flag = Field(True, description="mixed precision (CUDA only)")
    model: Annotated[ModelSection, SectionInput] = section(ModelSection, "the detector")
    data: Annotated[DataSection, SectionInput] = section(DataSection, "training and validation data")
    loss: Annotated[LossSection, SectionInput] = section(LossSection, "target assignment and losses")
    augment: Annotated[AugmentSection, SectionInput] = section(AugmentSection, "training-time augmentation")
    optimizer: Annotated[OptimizerSection, SectionInput] = section(OptimizerSection, "the optimiser")
    schedule: Annotated[ScheduleSection, SectionInput] = section(ScheduleSection, "the learning-rate schedule")
    eval: Annotated[EvalSection, SectionInput] = section(EvalSection, "evaluation during training")
    ema: Annotated[EmaSection, SectionInput] = section(EmaSection, "moving average of the weights")
    qat: Annotated[QatSection, SectionInput] = section(QatSection, "quantisation-aware fine-tuning")


DEFAULTS: dict[str, Any] = TrainingConfig().model_dump()
"""Every key's default, as the plain dict :func:`load_config` returns."""


def merge_config(base: dict[str, Any], update: Mapping[str, Any], source: str, prefix: str = "") -> None:
    """Merge ``update`` (the keys under the dotted ``prefix``) into the full config ``base`` in place, validated."""
    for part in reversed([p for p in prefix.split(".") if p]):
        update = {part: update}
    merged = validate(TrainingConfig, deep_merge(base, update), source).model_dump()
    base.clear()
    base.update(merged)


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Defaults <- YAML file <- ``key.sub=value`` overrides (values parsed as YAML), validated; a plain dict."""
    return load(TrainingConfig, path, list(overrides), default_source="config").model_dump()

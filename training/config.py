"""The training config: one YAML for model, data, augmentation, optimiser, schedule and evaluation.

``load_config(path, ["optimizer.lr=0.01", "epochs=5"])`` merges the file and the command-line
overrides over :data:`DEFAULTS`. Every key is checked: an unknown key or a value of the wrong type fails
at start, naming the key, the file and what was expected.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DEFAULTS", "load_config", "merge_config"]

_ANY = object()  # a default that accepts any value (e.g. an optional mapping)

DEFAULTS: dict[str, Any] = {
    "out": "runs/train",
    "seed": 0,
    "device": "auto",  # auto | cpu | cuda | cuda:N
    "epochs": 30,
    "stop_after_epochs": 0,  # > 0: end this run after that many epochs (continue later with --resume)
    "time_limit_minutes": 0.0,  # > 0: stop (and evaluate) when the wall clock runs out
    "batch_size": 32,
    "workers": 2,
    "amp": True,  # mixed precision on CUDA only
    "model": {
        "head": "ssd",  # ssd | centernet
        "base_channel": 16,
        "input_size": [320, 240],  # width, height
        "priors": _ANY,  # PriorConfig mapping; default: UltraFace-style min_boxes
        "stride": 4,
        "score_threshold": "auto",  # or a number; auto: the best-F1 threshold of the latest val evaluation
        "iou_threshold": 0.45,
        "top_k": 100,
        "init": "",  # optional checkpoint to start from (weights only)
    },
    "data": {
        "train": "synthetic:400",
        "val": "",  # empty: no evaluation
        "classes": _ANY,  # fixed class order; default: the training set's classes
        "class_map": _ANY,  # source name -> target name
    },
    "loss": {
        "match_iou": 0.5,  # SSD: priors at IoU >= this with a ground truth are positives (UltraFace: 0.35)
        "neg_pos_ratio": 3.0,  # SSD hard negatives per positive
        "min_overlap": 0.7,  # CenterNet: gaussian radius overlap t
        "max_objects": 128,  # CenterNet: objects per image (more is an error naming the image)
        "regression_radius": 1,  # CenterNet: size/offset also trained this many cells around each centre
    },
    "augment": {
        "photometric": True,
        "crop": True,
        "zoom_out": 2.0,  # max canvas ratio; 1 disables
        "flip": True,
    },
    "optimizer": {
        "name": "sgd",  # sgd | adamw
        "lr": 0.02,
        "momentum": 0.9,
        "weight_decay": 5e-4,
    },
    "schedule": {
        "name": "cosine",  # cosine | multistep
        "warmup_epochs": 1.0,
        "milestones": [0.7, 0.9],  # fractions of the run, for multistep
        "gamma": 0.1,
        "min_lr_ratio": 0.01,
    },
    "eval": {
        "every": 5,  # epochs; the last epoch is always evaluated when data.val is set
        "score_threshold": 0.01,
    },
}

_AUTO_OR_NUMBER = {"model.score_threshold"}
AUTO_SCORE_FALLBACK = 0.4  # the spec's threshold under "auto" until (or without) a val evaluation
_CHOICES = {
    "model.head": ("ssd", "centernet"),
    "optimizer.name": ("sgd", "adamw"),
    "schedule.name": ("cosine", "multistep"),
}


def _check(value: Any, default: Any, key: str, source: str) -> Any:
    if default is _ANY:
        return value
    if key in _AUTO_OR_NUMBER:
        if value != "auto" and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1):
            raise ValueError(f"{source}: {key} must be 'auto' or a number in (0, 1], got {value!r}")
        return value if value == "auto" else float(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{source}: {key} must be true or false, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{source}: {key} must be a number, got {value!r}")
        value = float(value)
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{source}: {key} must be an integer, got {value!r}")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"{source}: {key} must be a string, got {value!r}")
    elif isinstance(default, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{source}: {key} must be a list, got {value!r}")
        value = list(value)
    allowed = _CHOICES.get(key)
    if allowed and value not in allowed:
        raise ValueError(f"{source}: {key} must be one of {list(allowed)}, got {value!r}")
    return value


def merge_config(base: dict[str, Any], update: Mapping[str, Any], source: str, prefix: str = "") -> None:
    """Merge ``update`` into ``base`` in place, validating against :data:`DEFAULTS`."""
    defaults = _lookup(prefix)
    for key, value in update.items():
        full = f"{prefix}{key}"
        if key not in defaults:
            raise ValueError(f"{source}: unknown key {full!r}; expected one of {sorted(defaults)}")
        default = defaults[key]
        if isinstance(default, dict):
            if not isinstance(value, Mapping):
                raise ValueError(f"{source}: {full} must be a mapping, got {value!r}")
            merge_config(base[key], value, source, f"{full}.")
        else:
            base[key] = _check(value, default, full, source)


def _lookup(prefix: str) -> dict[str, Any]:
    node: Any = DEFAULTS
    for part in filter(None, prefix.split(".")):
        node = node[part]
    return node


def _fresh() -> dict[str, Any]:
    def strip(d: dict[str, Any]) -> dict[str, Any]:
        return {k: strip(v) if isinstance(v, dict) else (None if v is _ANY else copy.deepcopy(v)) for k, v in d.items()}

    return strip(DEFAULTS)


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """DEFAULTS <- YAML file <- ``key.sub=value`` overrides (values parsed as YAML)."""
    config = _fresh()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
        merge_config(config, data, str(path))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r}: expected key=value, e.g. optimizer.lr=0.01")
        value: Any = yaml.safe_load(text) if text else ""
        nested: dict[str, Any] = {}
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        merge_config(config, nested, f"override {item!r}")
    _check_ranges(config)
    return config


def _check_ranges(c: dict[str, Any]) -> None:
    positive = {
        "epochs": c["epochs"],
        "batch_size": c["batch_size"],
        "model.base_channel": c["model"]["base_channel"],
        "optimizer.lr": c["optimizer"]["lr"],
        "eval.every": c["eval"]["every"],
    }
    for key, value in positive.items():
        if value <= 0:
            raise ValueError(f"config: {key} must be > 0, got {value}")
    if c["loss"]["regression_radius"] < 0:
        raise ValueError(f"config: loss.regression_radius must be >= 0, got {c['loss']['regression_radius']}")
    if c["workers"] < 0:
        raise ValueError(f"config: workers must be >= 0, got {c['workers']}")
    size = c["model"]["input_size"]
    if len(size) != 2 or any(not isinstance(v, int) or v < 32 for v in size):
        raise ValueError(f"config: model.input_size must be [width, height] integers >= 32, got {size}")
    if c["augment"]["zoom_out"] < 1:
        raise ValueError(f"config: augment.zoom_out must be >= 1, got {c['augment']['zoom_out']}")

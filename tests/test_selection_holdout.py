"""Reproduction (manual, ~2 x MINUTES): is the file users export at least as good as ``last.pt`` on images
it was not selected on? Every 4th training image of raccoon and BCCD is held back; a CenterNet trains on
the rest, ``best.pt`` is picked on the val split as training picks it, and ``best.pt`` and ``last.pt``
(and, with ``ema.enabled=true`` among the overrides, the raw final weights) are scored on the held-back
images. ``EDGEDET_HOLDOUT_MINUTES`` sets the training time, ``EDGEDET_HOLDOUT_OVERRIDES`` more keys.

    python -m pytest -m manual tests/test_selection_holdout.py -s
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import shared_path

from edgedet.edge.datasets.spec import load_dataset
from edgedet.training.checkpoint import load_checkpoint
from edgedet.training.config import load_config
from edgedet.training.evaluate import evaluate_model
from edgedet.training.train import train

MINUTES = float(os.environ.get("EDGEDET_HOLDOUT_MINUTES", "10"))


def holdout_view(root, tmp):
    """A VOC folder whose ``fit`` split is 3 of every 4 training images and ``held`` the 4th."""
    view = tmp / root.name
    (view / "ImageSets" / "Main").mkdir(parents=True)
    for sub in ("Annotations", "JPEGImages"):
        (view / sub).symlink_to(root / sub)
    ids = (root / "ImageSets" / "Main" / "train.txt").read_text().split()
    (view / "ImageSets" / "Main" / "fit.txt").write_text("\n".join(i for k, i in enumerate(ids) if k % 4) + "\n")
    (view / "ImageSets" / "Main" / "held.txt").write_text("\n".join(ids[::4]) + "\n")
    (view / "ImageSets" / "Main" / "val.txt").write_text((root / "ImageSets" / "Main" / "val.txt").read_text())
    return view


@pytest.mark.manual
@pytest.mark.slow  # so that `-m "not slow"` (which replaces the default "not manual") skips it too
@pytest.mark.parametrize("name", ["raccoon", "bccd"])
def test_exported_file_is_at_least_as_good_as_last_on_held_back_images(tmp_path, name):
    view = holdout_view(shared_path("data", name), tmp_path)
    config = load_config(
        f"training/configs/{name}-centernet.yaml",
        [
            f"out={tmp_path / 'run'}",
            f"data.train=voc:{view}:fit",
            f"data.val=voc:{view}:val",
            f"time_limit_minutes={MINUTES}",
            "eval.every=5",
            *os.environ.get("EDGEDET_HOLDOUT_OVERRIDES", "").split(),
        ],
    )
    summary = train(config)
    held = load_dataset(f"voc:{view}:held")
    scores = {}
    runs = [("best.pt", summary["best"], "model"), ("last.pt", summary["last"], "model")]
    if "train_model" in torch.load(summary["last"], weights_only=True):  # with ema.enabled: the raw weights too
        runs.append(("last.pt raw weights", summary["last"], "train_model"))
    for label, path, part in runs:
        model, spec, ckpt = load_checkpoint(path)
        model.load_state_dict(ckpt[part])
        result = evaluate_model(model, spec, held, progress=False)
        scores[label] = {"AP50": result["AP50"], "AP": result["AP"], "epoch": ckpt["epoch"] + 1}
    record = {"dataset": name, "minutes": MINUTES, "held_images": len(held), "val_images": len(load_dataset(
        config["data"]["val"])), "rule": torch.load(summary["best"], weights_only=True)["selection"]["rule"],
        "scores": scores}  # fmt: skip
    print(json.dumps(record, indent=1))
    assert scores["best.pt"]["AP50"] >= scores["last.pt"]["AP50"] - 0.01

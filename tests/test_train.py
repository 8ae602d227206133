"""The training loop for real: a tiny run, exact resume, and DistributedDataParallel on 2 CPU processes."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgedet.edge.datasets.spec import load_dataset
from edgedet.training.checkpoint import load_checkpoint
from edgedet.training.config import load_config
from edgedet.training.evaluate import evaluate_model
from edgedet.training.train import build_spec, make_train_loader, train

TINY = [
    "data.train=synthetic:24:train",
    "data.val=synthetic:24:val",
    "model.input_size=[128, 96]",
    "model.base_channel=8",
    "batch_size=8",
    "workers=0",
    "optimizer.name=adamw",
    "optimizer.lr=0.003",
]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEDET_CACHE", str(tmp_path / "cache"))


@pytest.mark.slow
@pytest.mark.parametrize("head", ["ssd", "centernet"])
def test_tiny_run_writes_checkpoints_and_metrics(tmp_path, head):
    config = load_config(None, [*TINY, f"out={tmp_path / 'run'}", f"model.head={head}", "epochs=2", "eval.every=1"])
    summary = train(config)
    assert summary["epochs_run"] == 2
    _, spec, ckpt = load_checkpoint(summary["last"])
    assert spec.head == head and spec.labels == ("circle", "square", "triangle")
    assert ckpt["config"]["model"]["head"] == head and ckpt["epoch"] == 1
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(float(r["loss"]) > 0 and "AP50" in r for r in rows)
    # score_threshold: auto -> the checkpoint runs at the best-F1 threshold of its own val evaluation
    model, _, _ = load_checkpoint(summary["last"])
    again = evaluate_model(model, spec, load_dataset(config["data"]["val"]), progress=False)
    expected = 0.4 if again["best_f1_threshold"] is None else again["best_f1_threshold"]
    assert spec.score_threshold == pytest.approx(expected)
    assert ("score_threshold" in rows[-1]) == (again["best_f1_threshold"] is not None)


def _epoch_batches(config, epochs):
    spec = build_spec(config, ("circle", "square", "triangle"))
    data, loader, sampler, generator = make_train_loader(config, spec, load_dataset(config["data"]["train"]))
    out = []
    for epoch in range(epochs):
        data.set_epoch(epoch)
        generator.manual_seed(epoch)
        sampler.set_epoch(epoch)
        out.append(torch.cat([images for images, _ in loader]))
    return out


def test_persistent_workers_augment_with_each_epochs_randomness():
    """Workers live across epochs, yet each epoch's batches are exactly those of in-process loading."""
    base = [*TINY[:5], "data.train=synthetic:16:train", "batch_size=4"]
    in_process = _epoch_batches(load_config(None, [*base, "workers=0"]), 3)
    workers = _epoch_batches(load_config(None, [*base, "workers=2"]), 3)
    for epoch, (a, b) in enumerate(zip(in_process, workers, strict=True)):
        assert torch.equal(a, b), epoch
    assert not torch.equal(in_process[0], in_process[1])


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path):
    base = [*TINY, "epochs=3", "eval.every=100", "ema.enabled=true"]
    straight = train(load_config(None, [*base, f"out={tmp_path / 'a'}"]))
    first = train(load_config(None, [*base, f"out={tmp_path / 'b'}", "stop_after_epochs=1"]))
    assert first["epochs_run"] == 1
    resumed = train(load_config(None, [*base, f"out={tmp_path / 'b'}"]), resume=first["last"])
    assert resumed["epochs_run"] == 3
    a = torch.load(straight["last"], weights_only=True)
    b = torch.load(resumed["last"], weights_only=True)
    assert a["ema"] == b["ema"] and a["ema"]["updates"] > 0
    for part in ("model", "train_model"):  # the moving average (saved, exported) and the raw weights
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)


@pytest.mark.slow
def test_best_is_picked_on_the_smoothed_ap50_only_when_the_val_split_is_big_enough(tmp_path):
    base = [*TINY, "epochs=3", "eval.every=1", "eval.select_smoothing=0.5"]
    small = train(load_config(None, [*base, f"out={tmp_path / 'small'}"]))  # a few val images < 100: final weights
    best, last = (torch.load(small[k], weights_only=True) for k in ("best", "last"))
    assert best["selection"]["rule"] == "final" and best["epoch"] == last["epoch"] == 2
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in last["model"])
    picked = train(load_config(None, [*base, f"out={tmp_path / 'big'}", "eval.select_min_images=1"]))
    rows = torch.load(picked["last"], weights_only=True)["history"]  # the metrics at full precision
    assert "AP50_smoothed" in next(csv.DictReader((tmp_path / "big" / "metrics.csv").open()))
    smoothed, expected = [], -1.0
    for row in rows:  # s * previous + (1 - s) * AP50, starting from the first AP50
        ap50 = float(row["AP50"])
        expected = ap50 if expected < 0 else 0.5 * expected + 0.5 * ap50
        assert float(row["AP50_smoothed"]) == pytest.approx(expected)
        smoothed.append(expected)
    best = torch.load(picked["best"], weights_only=True)
    assert best["selection"]["rule"] == "smoothed"
    assert best["epoch"] == max(range(3), key=lambda e: (smoothed[e], -e))  # the first epoch of the best value
    assert best["selection"]["best"] == pytest.approx(max(smoothed))


def test_resume_with_another_model_is_refused(tmp_path):
    first = train(load_config(None, [*TINY, f"out={tmp_path / 'a'}", "epochs=1", "stop_after_epochs=1", "data.val="]))
    with pytest.raises(ValueError, match="model spec differs"):
        train(load_config(None, [*TINY, f"out={tmp_path / 'b'}", "model.base_channel=16"]), resume=first["last"])


@pytest.mark.slow
def test_ddp_two_cpu_processes_with_gloo(tmp_path):
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text("epochs: 2\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EDGEDET_CACHE": str(tmp_path / "cache")}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "edgedet.cli",
        "train",
        "--config",
        str(cfg),
        *TINY,
        "eval.every=2",
        f"out={tmp_path / 'run'}",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world 2" in proc.stderr  # rank 0 logged the world size
    assert proc.stdout.count("trained 2 epochs") == 1  # only rank 0 reports
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and "AP50" in rows[-1]
    _, spec, _ = load_checkpoint(tmp_path / "run" / "last.pt")  # saved unwrapped (no "module." prefix)
    assert spec.base_channel == 8
    assert not any(p.name.startswith(".") for p in Path(tmp_path / "run").iterdir())  # no stray temp files


def test_throughput_benchmark_measures_all_three_rates(tmp_path):
    from edgedet.training.throughput import measure

    rates = measure(load_config(None, [*TINY, "batch_size=4"]), batches=2, warmup=1)
    assert {"loader", "step", "loop", "loop_over_step"} <= rates.keys()
    assert all(rates[k] > 0 for k in ("loader", "step", "loop"))
    assert rates["loop_over_step"] == pytest.approx(rates["loop"] / rates["step"])

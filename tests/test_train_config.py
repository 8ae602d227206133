import itertools

import pytest

from edgedet.training.config import load_config
from edgedet.training.train import lr_factor


def test_defaults_file_and_overrides_merge(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 7\nmodel:\n  head: centernet\n  input_size: [160, 128]\noptimizer:\n  lr: 0.1\n")
    c = load_config(cfg, ["optimizer.lr=0.005", "data.class_map={a: face}", "augment.flip=false"])
    assert c["epochs"] == 7 and c["model"]["head"] == "centernet" and c["model"]["input_size"] == [160, 128]
    assert c["optimizer"]["lr"] == 0.005 and c["optimizer"]["name"] == "sgd"
    assert c["data"]["class_map"] == {"a": "face"} and c["augment"]["flip"] is False
    assert isinstance(load_config(None, ["optimizer.lr=1"])["optimizer"]["lr"], float)


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("epoch: 3\n", [], r"unknown key 'epoch'"),
        ("model:\n  heads: ssd\n", [], r"unknown key 'model.heads'"),
        ("", ["model.head=yolo"], r"model.head must be one of"),
        ("", ["optimizer.lr=fast"], r"optimizer.lr must be a number"),
        ("", ["epochs=0"], r"epochs must be > 0"),
        ("", ["model.score_threshold=high"], r"model.score_threshold must be 'auto' or a number in \(0, 1\]"),
        ("", ["model.score_threshold=1.5"], r"model.score_threshold must be 'auto' or a number in \(0, 1\]"),
        ("", ["batch_size=2.5"], r"batch_size must be an integer"),
        ("", ["model.input_size=[320]"], r"model.input_size must be \[width, height\]"),
        ("", ["lr"], r"expected key=value"),
        ("model: 3\n", [], r"model must be a mapping"),
        ("[1, 2]\n", [], r"expected a mapping at the top level"),
        ("a: [\n", [], r"not valid YAML"),
    ],
)
def test_bad_config_names_the_key_and_source(tmp_path, text, overrides, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(cfg, overrides)


def test_missing_config_file():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config("/nonexistent/config.yaml")


def test_schedules():
    cos = {"name": "cosine", "min_lr_ratio": 0.01}
    assert lr_factor(0, 100, 10, cos) == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, cos) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, cos) == pytest.approx(0.01)
    vals = [lr_factor(s, 100, 10, cos) for s in range(10, 101)]
    assert all(a >= b for a, b in itertools.pairwise(vals))
    # a time-limited run anneals by the clock: half the time gone is half the cosine
    assert lr_factor(20, 100, 10, cos, time_fraction=0.5) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(20, 100, 10, cos, time_fraction=1.2) == pytest.approx(0.01)
    ms = {"name": "multistep", "milestones": [0.5, 0.75], "gamma": 0.1}
    assert [lr_factor(s, 100, 0, ms) for s in (0, 49, 50, 80)] == pytest.approx([1, 1, 0.1, 0.01])


def test_shipped_configs_are_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "training" / "configs").glob("*.yaml"))
    assert len(configs) == 4
    for path in configs:
        c = load_config(path)
        assert c["time_limit_minutes"] == 25 and c["data"]["val"].endswith(":val")

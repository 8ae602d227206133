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
        ("epoch: 3\n", [], r"bad\.yaml: epoch: unknown key \(known here: out, seed, "),
        ("model:\n  heads: ssd\n", [], r"bad\.yaml: model\.heads: unknown key \(known here: head, "),
        ("", ["model.head=yolo"], r"model\.head: expected one of 'ssd', 'centernet', got 'yolo'"),
        ("", ["optimizer.lr=fast"], r"optimizer\.lr: expected a number > 0, got 'fast'"),
        ("", ["epochs=0"], r"epochs: expected an integer >= 1, got 0"),
        ("", ["model.score_threshold=high"], r"model\.score_threshold: expected 'auto' or a number > 0 and <= 1"),
        ("", ["model.score_threshold=1.5"], r"model\.score_threshold: expected 'auto' or a number > 0 and <= 1"),
        ("", ["batch_size=2.5"], r"batch_size: expected an integer >= 1, got 2\.5"),
        ("", ["model.input_size=[320]"], r"model\.input_size: expected \[width, height\]: two integers >= 32"),
        ("", ["model.input_size=[320, 8]"], r"model\.input_size: expected \[width, height\]: two integers >= 32"),
        ("", ["augment.flip=maybe"], r"augment\.flip: expected true or false, got 'maybe'"),
        ("", ["lr"], r"expected key=value"),
        ("model: 3\n", [], r"bad\.yaml: model: expected a mapping of keys, got 3"),
        ("[1, 2]\n", [], r"bad\.yaml: expected a mapping of keys at the top level"),
        ("a: [\n", [], r"bad\.yaml: not valid YAML"),
        ("", ["model.priors={min_box: [[8]]}"], r"model\.priors: unknown key\(s\) \['min_box'\]"),
        ("", ["schedule.milestones=[0.5, 2]"], r"schedule\.milestones: expected a list of numbers >= 0 and <= 1"),
    ],
)
def test_bad_config_names_the_key_and_source(tmp_path, text, overrides, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(cfg, overrides)


def test_an_override_error_names_the_override(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 3\n")
    with pytest.raises(
        ValueError, match=r"^override 'optimizer\.lr=-1': optimizer\.lr: expected a number > 0, got -1$"
    ):
        load_config(cfg, ["optimizer.lr=-1"])
    # an override replaces a bad value of the file (the merged config is what is validated)
    assert load_config(cfg, ["epochs=4"])["epochs"] == 4


def test_special_values_keep_working(tmp_path):
    c = load_config(
        None, ["model.score_threshold=0.3", "data.classes=[face, hand]", "model.priors={center_variance: 0.2}"]
    )
    assert c["model"]["score_threshold"] == 0.3 and c["data"]["classes"] == ["face", "hand"]
    assert c["model"]["priors"] == {"center_variance": 0.2} and c["data"]["class_map"] is None
    c = load_config(None, [])
    assert c["model"]["score_threshold"] == "auto" and c["model"]["priors"] is None and c["data"]["classes"] is None


def test_defaults_and_merge_config_keep_their_shape():
    from edgedet.training.config import DEFAULTS, merge_config

    assert load_config(None) == DEFAULTS
    assert DEFAULTS["model"]["input_size"] == [320, 240] and DEFAULTS["optimizer"]["lr"] == 0.02
    config = load_config(None)
    merge_config(config, {"lr": 0.5}, "test", prefix="optimizer.")
    assert config["optimizer"] == {**DEFAULTS["optimizer"], "lr": 0.5}
    with pytest.raises(ValueError, match=r"^test: optimizer\.momentum: expected a number >= 0 and <= 1, got 2"):
        merge_config(config, {"optimizer": {"momentum": 2}}, "test")


def test_non_utf8_config_names_the_file(tmp_path):
    cfg = tmp_path / "latin1.yaml"
    cfg.write_bytes("out: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.yaml: not a UTF-8 text file"):
        load_config(cfg)


def test_missing_config_file():
    with pytest.raises(FileNotFoundError, match=r"config file not found: /nonexistent/config\.yaml"):
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

"""The camera daemon's config: defaults, flag overrides, and errors that name the key and the reason."""

import argparse
from pathlib import Path

import pytest
import yaml

from edgedet.edge.camera.config import DaemonConfig, HttpConfig, load_config, parse_http_address
from edgedet.edge.camera.daemon import config_overrides


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "camera.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_minimal_config_gets_safe_defaults(tmp_path):
    cfg = load_config(write(tmp_path, {"model": "m.onnx", "source": 0}))
    assert isinstance(cfg, DaemonConfig)
    assert (cfg.model, cfg.source, cfg.name, cfg.loop) == ("m.onnx", "0", "camera", True)
    assert cfg.http == HttpConfig()
    assert cfg.http.host == "127.0.0.1" and cfg.http.token is None  # loopback only by default
    assert cfg.events.path is None and cfg.mqtt is None
    assert (cfg.reconnect.initial_s, cfg.reconnect.max_s) == (0.5, 30.0)


def test_full_config(tmp_path):
    (tmp_path / "token").write_text("0123456789abcdef\n")
    cfg = load_config(
        write(
            tmp_path,
            {
                "name": "front-door",
                "model": "face.onnx",
                "spec": "ultraface",
                "source": "rtsp://user:pw@cam/stream",
                "threads": 2,
                "score_threshold": 0.6,
                "max_fps": 5,
                "http": {"host": "0.0.0.0", "port": 9000, "token_file": str(tmp_path / "token"), "jpeg_quality": 70},
                "events": {"path": "-", "max_bytes": 4096, "backups": 0, "include_empty": True},
                "mqtt": {"host": "broker", "qos": 1, "topic_prefix": "site/a", "username": "u", "password": "p"},
                "reconnect": {"initial_s": 1, "max_s": 10},
            },
        )
    )
    assert cfg.http.token == "0123456789abcdef" and cfg.http.port == 9000 and cfg.http.jpeg_quality == 70
    assert cfg.mqtt is not None and cfg.mqtt.client_id == "edgedet-front-door" and cfg.mqtt.topic_prefix == "site/a"
    assert cfg.events.backups == 0 and cfg.max_fps == 5.0 and cfg.spec == "ultraface"


def test_flags_override_the_file_and_need_no_file(tmp_path):
    path = write(tmp_path, {"model": "a.onnx", "source": "a.mp4", "http": {"port": 1234}, "events": {"backups": 7}})
    args = argparse.Namespace(model="b.onnx", source="1", http="0.0.0.0:5678", events="ev.jsonl", config=None)
    cfg = load_config(path, config_overrides(args))
    assert (cfg.model, cfg.source, cfg.http.host, cfg.http.port) == ("b.onnx", "1", "0.0.0.0", 5678)
    assert cfg.events.path == "ev.jsonl" and cfg.events.backups == 7  # the rest of the section stays
    cfg = load_config(None, config_overrides(argparse.Namespace(model="m.onnx", source="0", http="9999", events=None)))
    assert cfg.http.port == 9999 and cfg.http.host == "127.0.0.1"


def test_http_address_forms():
    assert parse_http_address("8080") == (None, 8080)
    assert parse_http_address(":8080") == (None, 8080)
    assert parse_http_address("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_http_address("[::1]:8080") == ("::1", 8080)
    with pytest.raises(ValueError, match="--http"):
        parse_http_address("localhost:http")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"source": 0}, r"model: required"),
        ({"model": "m.onnx"}, r"source: required"),
        ({"model": "m.onnx", "source": 0, "http": {"port": 70000}}, r"http\.port: expected an integer in 0\.\.65535"),
        ({"model": "m.onnx", "source": 0, "http": {"port": "abc"}}, r"http\.port: .*'abc'"),
        ({"model": "m.onnx", "source": 0, "http": {"prot": 1}}, r"http\.prot: unknown key \(known here: .*port"),
        ({"model": "m.onnx", "source": 0, "http": {"token": "short"}}, r"http\.token: expected at least 8"),
        ({"model": "m.onnx", "source": 0, "http": {"jpeg_quality": 0}}, r"http\.jpeg_quality"),
        ({"model": "m.onnx", "source": 0, "events": {"max_bytes": 100}}, r"events\.max_bytes: expected 0 .* 4096"),
        ({"model": "m.onnx", "source": 0, "events": {"backups": -1}}, r"events\.backups"),
        ({"model": "m.onnx", "source": 0, "mqtt": {"port": 1883}}, r"mqtt\.host: required"),
        (
            {"model": "m.onnx", "source": 0, "mqtt": {"host": "b", "qos": 3}},
            r"mqtt\.qos: expected an integer in 0\.\.2",
        ),
        ({"model": "m.onnx", "source": 0, "mqtt": {"host": "b", "topic_prefix": "a/#"}}, r"mqtt\.topic_prefix"),
        (
            {"model": "m.onnx", "source": 0, "reconnect": {"initial_s": 0}},
            r"reconnect\.initial_s: expected a number > 0",
        ),
        ({"model": "m.onnx", "source": 0, "reconnect": {"initial_s": 5, "max_s": 1}}, r"reconnect\.max_s: must be >="),
        ({"model": "m.onnx", "source": 0, "loop": "yes"}, r"loop: expected true or false"),
        ({"model": "m.onnx", "source": 0, "score_threshold": 1.5}, r"score_threshold: expected a number >= 0"),
        ({"model": "m.onnx", "source": 0, "name": "front door"}, r"name: 'front door' does not match"),
        ({"model": "m.onnx", "source": 0, "threads": 0}, r"threads: expected an integer in 1\.\.256"),
        ({"model": "m.onnx", "source": "videotestsrc ! videoconvert"}, r"source: a GStreamer pipeline must end"),
        ({"model": "m.onnx", "source": 0, "modle": "x"}, r"modle: unknown key"),
        ({"model": "m.onnx", "source": 0, "http": [1, 2]}, r"http: expected a mapping"),
    ],
)
def test_bad_values_name_the_key_and_the_reason(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(ValueError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ValueError, match="expected a mapping of keys at the top level"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ValueError, match=r"http\.token_file: cannot read"):
        load_config(write(tmp_path, {"model": "m", "source": 0, "http": {"token_file": str(tmp_path / "nope")}}))


def test_http_and_mqtt_can_be_switched_off(tmp_path):
    cfg = load_config(write(tmp_path, {"model": "m", "source": 0, "http": False, "mqtt": None}))
    assert not cfg.http.enabled and cfg.mqtt is None


@pytest.mark.parametrize("key", ["model", "source"])
def test_null_model_or_source_names_the_key(tmp_path, key):
    data = {"model": "m.onnx", "source": 0, key: None}
    path = write(tmp_path, data)
    with pytest.raises(ValueError, match=rf"camera\.yaml: {key}: expected a non-empty string, got null"):
        load_config(path)


def test_unknown_keys_are_rejected_with_their_path(tmp_path):
    path = write(tmp_path, {"model": "m", "source": 0, "mqtt": {"host": "b", "qos_level": 1}})
    with pytest.raises(ValueError, match=r"camera\.yaml: mqtt\.qos_level: unknown key \(known here: host, port, "):
        load_config(path)


def test_bounds_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"camera\.yaml: http\.stream_fps: expected a number > 0 and <= 60, got 0"):
        load_config(write(tmp_path, {"model": "m", "source": 0, "http": {"stream_fps": 0}}))
    with pytest.raises(ValueError, match=r"stall_timeout_s: expected a number >= 1 and <= 86400, got 0\.5"):
        load_config(write(tmp_path, {"model": "m", "source": 0, "stall_timeout_s": 0.5}))


def test_dotted_overrides_go_through_the_same_model(tmp_path):
    from edgedet.edge.runtime.settings import load

    path = write(tmp_path, {"model": "m", "source": 0, "http": False})
    cfg = load_config(path, {"http.port": 9000, "mqtt.host": "broker", "reconnect.max_s": 5})
    assert cfg.http.enabled and cfg.http.port == 9000  # an override under `http: false` makes a section again
    assert cfg.mqtt is not None and cfg.mqtt.client_id == "edgedet-camera" and cfg.reconnect.max_s == 5.0
    cfg = load(DaemonConfig, path, ["http.enabled=true", "http.port=9001", "events.path=ev.jsonl"])
    assert cfg.http.port == 9001 and cfg.events.path == "ev.jsonl"
    with pytest.raises(ValueError, match=r"^override http\.port=70000: http\.port: expected an integer in 0\.\.65535"):
        load_config(path, {"http.port": 70000})
    with pytest.raises(ValueError, match=r"^override 'http\.port=x': http\.port: expected an integer"):
        load(DaemonConfig, path, ["http.port=x"])


def test_quoted_numbers_are_read_as_numbers_but_yes_is_no_boolean(tmp_path):
    cfg = load_config(write(tmp_path, {"model": "m", "source": 0, "threads": "2", "max_fps": "2.5"}))
    assert (cfg.threads, cfg.max_fps) == (2, 2.5)
    with pytest.raises(ValueError, match=r"threads: expected an integer in 1\.\.256 \(or null\), got true"):
        load_config(write(tmp_path, {"model": "m", "source": 0, "threads": True}))


def test_non_utf8_config_file_is_named(tmp_path):
    path = tmp_path / "camera.yaml"
    path.write_bytes(b"model: m\xe9.onnx\nsource: 0\n")
    with pytest.raises(ValueError, match=r"camera\.yaml: not a UTF-8 text file"):
        load_config(path)


def test_configs_are_immutable(tmp_path):
    cfg = load_config(None, {"model": "m", "source": 0})
    with pytest.raises(ValueError, match="frozen"):
        cfg.http.port = 1  # type: ignore[misc]


@pytest.mark.parametrize("name", ["config-rpi.yaml", "config-jetson.yaml"])
def test_deploy_configs_load(tmp_path, name):
    (tmp_path / "token").write_text("t" * 32)
    deploy = Path(__file__).resolve().parents[1] / "deploy"
    cfg = load_config(deploy / name, {"http.token_file": str(tmp_path / "token")})  # the installer writes the token
    assert cfg.http.token == "t" * 32 and cfg.events.path == "/var/log/edgedet/events.jsonl"
    assert cfg.reconnect.max_s == 30.0 and cfg.mqtt is None

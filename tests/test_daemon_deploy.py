"""deploy/: the install scripts parse (and pass shellcheck when it is installed), the example configs
validate, the systemd unit and the Dockerfile say what the daemon needs."""

import configparser
import re
import shutil
import subprocess

import pytest
import yaml
from conftest import REPO

from edgedet.edge.camera.config import load_config
from edgedet.edge.camera.sources import source_kind

DEPLOY = REPO / "deploy"
SCRIPTS = ["install-rpi.sh", "install-jetson.sh", "install-common.sh"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_install_scripts_parse(name):
    out = subprocess.run(["bash", "-n", str(DEPLOY / name)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_install_scripts_pass_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    out = subprocess.run(["shellcheck", "-x", *SCRIPTS], cwd=DEPLOY, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("name", ["install-rpi.sh", "install-jetson.sh"])
def test_install_scripts_use_only_the_edge_extra(name):
    text = (DEPLOY / name).read_text() + (DEPLOY / "install-common.sh").read_text()
    assert "[edge]" in text and not re.search(r"\[(train|convert|all|dev)\]", text)
    assert "useradd --system" in text and "edgedet.service" in text
    out = subprocess.run(["bash", str(DEPLOY / name), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--model" in out.stdout


@pytest.mark.parametrize("name", ["config-rpi.yaml", "config-jetson.yaml"])
def test_example_configs_validate(tmp_path, name):
    data = yaml.safe_load((DEPLOY / name).read_text())
    assert data["http"]["token_file"] == "/etc/edgedet/token" and data["http"]["host"] == "127.0.0.1"
    (tmp_path / "token").write_text("x" * 32)
    data["http"]["token_file"] = str(tmp_path / "token")  # the installer generates the real one
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    assert source_kind(cfg.source) == "gstreamer" and cfg.source.rstrip().split("!")[-1].strip().startswith("appsink")
    assert cfg.events.path == "/var/log/edgedet/events.jsonl" and cfg.model.startswith("/var/lib/edgedet/")


def test_systemd_unit():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(DEPLOY / "edgedet.service")
    service = unit["Service"]
    assert service["User"] == "edgedet" and service["Restart"] == "on-failure"
    assert service["Type"] == "notify" and int(service["WatchdogSec"]) > 0  # the daemon pings sd_notify
    assert service["ExecStart"] == "/opt/edgedet/venv/bin/edgedet camera --config /etc/edgedet/camera.yaml"
    assert "video" in service["SupplementaryGroups"] and service["NoNewPrivileges"] == "yes"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_dockerfile():
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert lines[0] == "FROM python:3.11-slim-bookworm"
    code = "\n".join(lines).lower()
    assert "pip install '.[edge]'" in code and "torch" not in code and "tensorflow" not in code
    assert "USER edgedet" in lines
    assert 'ENTRYPOINT ["edgedet"]' in lines and 'CMD ["camera", "--config", "/etc/edgedet/camera.yaml"]' in lines
    assert "linux/arm64" in text
    copied = [line.split()[1] for line in lines if line.startswith("COPY")]
    assert all((REPO / path).exists() for path in copied)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert all(f"!{path.rstrip('/')}" in [i.rstrip("/") for i in ignore] for path in copied)

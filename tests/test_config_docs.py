"""The config models are the one place a key is written: the README tables and the JSON Schema files are
generated from them (``python -m edgedet.config_docs --write``) and must not go stale."""

import json
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import REPO
from pydantic import BaseModel

from edgedet.config_docs import DOCS, stale_docs, write_docs
from edgedet.edge.camera.config import DaemonConfig
from edgedet.edge.runtime import settings
from edgedet.edge.runtime.settings import key_table
from edgedet.training.config import TrainingConfig

MODELS = {"daemon": DaemonConfig, "training": TrainingConfig}
REGENERATE = "stale; run `python -m edgedet.config_docs --write` and commit the result"


def leaf_and_section_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, info in model.model_fields.items():
        keys.append(prefix + name)
        nested = settings._model_in(info.annotation)
        if nested is not None:
            keys += leaf_and_section_keys(nested, f"{prefix}{name}.")
    return keys


def all_fields(model: type[BaseModel], prefix: str = ""):
    for name, info in model.model_fields.items():
        yield prefix + name, info
        nested = settings._model_in(info.annotation)
        if nested is not None:
            yield from all_fields(nested, f"{prefix}{name}.")


def test_generated_tables_and_schemas_are_current():
    stale = stale_docs(REPO)
    assert not stale, f"{[str(p.relative_to(REPO)) for p in stale]}: {REGENERATE}"


def test_the_command_checks_too():
    out = subprocess.run(
        [sys.executable, "-m", "edgedet.config_docs", "--check", "--root", str(REPO)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("target", DOCS, ids=lambda t: t.name)
def test_every_key_is_in_its_readme_table_with_a_description(target):
    model = MODELS[target.name]
    text = (REPO / target.readme).read_text(encoding="utf-8")
    start = text.index(f"<!-- config-table:{target.name}:start -->")
    region = text[start : text.index(f"<!-- config-table:{target.name}:end -->")]
    for key, info in all_fields(model):
        assert f"| `{key}` |" in region, key
        assert info.description, f"{key} has no description"


@pytest.mark.parametrize("target", DOCS, ids=lambda t: t.name)
def test_schema_files_describe_the_models(target):
    model = MODELS[target.name]
    schema = json.loads((REPO / target.schema).read_text(encoding="utf-8"))
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["additionalProperties"] is False  # unknown keys: editors flag them like the loader
    assert list(schema["properties"]) == list(model.model_fields)
    for section in schema["$defs"].values():
        assert section["additionalProperties"] is False


def test_shipped_yaml_files_validate_against_the_schemas():
    jsonschema = pytest.importorskip("jsonschema")
    pairs = [("edge/camera/config.schema.json", p) for p in sorted((REPO / "deploy").glob("config-*.yaml"))]
    pairs += [("training/config.schema.json", p) for p in sorted((REPO / "training" / "configs").glob("*.yaml"))]
    for schema, path in pairs:
        jsonschema.validate(yaml.safe_load(path.read_text()), json.loads((REPO / schema).read_text()))


def test_write_regenerates_a_stale_region_and_schema(tmp_path):
    for target in DOCS:
        for rel in (target.readme, target.schema):
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / rel, tmp_path / rel)
    readme = tmp_path / "deploy" / "README.md"
    readme.write_text(readme.read_text().replace("| `http.port` |", "| `http.prot` |"))
    (tmp_path / "training" / "config.schema.json").write_text("{}\n")
    assert sorted(stale_docs(tmp_path)) == sorted([readme, tmp_path / "training" / "config.schema.json"])
    assert sorted(write_docs(tmp_path)) == sorted([readme, tmp_path / "training" / "config.schema.json"])
    assert stale_docs(tmp_path) == []
    assert (tmp_path / "README.md").read_text() == (REPO / "README.md").read_text()  # only the regions change


def test_a_readme_without_markers_is_an_error(tmp_path):
    for target in DOCS:
        (tmp_path / target.readme).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / target.readme).write_text("# no markers\n")
    with pytest.raises(ValueError, match=r"no <!-- config-table:daemon:start -->"):
        stale_docs(tmp_path)


def test_key_table_lists_every_key_with_type_default_and_bounds():
    table = key_table(DaemonConfig)
    rows = {line.split("|")[1].strip(" `"): line for line in table.splitlines()[2:]}
    assert list(rows) == leaf_and_section_keys(DaemonConfig)
    assert rows["http.port"] == "| `http.port` | integer | `8080` | 0..65535 | `0`: any free port (logged) |"
    assert "| string | required | not empty |" in rows["model"]
    assert "| number | `0.5` | > 0 and <= 3600 |" in rows["reconnect.initial_s"]
    training = {line.split("|")[1].strip(" `"): line for line in key_table(TrainingConfig).splitlines()[2:]}
    assert "| `auto` or number | `auto` | > 0 and <= 1 |" in training["model.score_threshold"]
    assert "| string | `sgd` | one of `sgd`, `adamw` |" in training["optimizer.name"]


def test_defaults_are_valid_values():
    # a default is written once, in the model; it must pass the model's own checks
    TrainingConfig.model_validate(TrainingConfig().model_dump())
    daemon = DaemonConfig(model="m.onnx", source="0")
    DaemonConfig.model_validate(daemon.model_dump())


def test_settings_imports_nothing_above_edge():
    code = (
        "import sys\n"
        "import edgedet.edge.runtime.settings\n"
        "import edgedet.edge.camera.config\n"
        "bad = [m for m in sys.modules if m.startswith(('edgedet.training', 'edgedet.convert', 'torch'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

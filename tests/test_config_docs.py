"""The config models are the one place a key is written: the config reference pages
(``docs/reference/config-*.md``) and the JSON Schema files are generated from them
(``python -m edgedet.config_docs --write``) and must not go stale. The other reference pages (command line,
metrics, MQTT, model spec) have their own tests in test_reference_docs.py."""

import json
import shutil
import subprocess
import sys
import types
from typing import Annotated, Union, get_args, get_origin

import pytest
import yaml
from conftest import REPO
from pydantic import BaseModel

from edgedet.config_docs import CONFIGS, PAGES, config_keys, main, stale_docs, write_docs
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


def _bare(tp):
    while get_origin(tp) is Annotated or get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        tp = args[0]
    return tp


def all_fields(model: type[BaseModel], prefix: str = ""):
    """Every key, with the keys of list items (``zones[].name``) and mapping entries (``x.<name>.y``)."""
    for name, info in model.model_fields.items():
        yield prefix + name, info
        nested = settings._model_in(info.annotation)
        if nested is not None:
            yield from all_fields(nested, f"{prefix}{name}.")
            continue
        tp = _bare(info.annotation)
        args = get_args(tp)
        if get_origin(tp) is list and isinstance(_bare(args[0]), type) and issubclass(_bare(args[0]), BaseModel):
            yield from all_fields(_bare(args[0]), f"{prefix}{name}[].")
        if get_origin(tp) is dict and isinstance(_bare(args[1]), type) and issubclass(_bare(args[1]), BaseModel):
            yield from all_fields(_bare(args[1]), f"{prefix}{name}.<name>.")


def copy_generated(dest):
    """The generated files of the checkout (pages and schema files) under ``dest``."""
    for rel in [p.path for p in PAGES] + [t.schema for t in CONFIGS]:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, dest / rel)


def test_generated_pages_and_schemas_are_current():
    stale = stale_docs(REPO)
    assert not stale, f"{[str(p.relative_to(REPO)) for p in stale]}: {REGENERATE}"


def test_the_command_checks_too():
    out = subprocess.run(
        [sys.executable, "-m", "edgedet.config_docs", "--check", "--root", str(REPO)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("target", CONFIGS, ids=lambda t: t.name)
def test_every_key_is_in_its_page_with_a_description(target):
    model = MODELS[target.name]
    text = (REPO / target.page).read_text(encoding="utf-8")
    keys = []
    for key, info in all_fields(model):
        assert f"\n| `{key}` |" in text, key
        assert info.description, f"{key} has no description"
        keys.append(key)
    assert config_keys(model) == keys
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == len(keys)  # no row of a key that is gone


def test_list_items_and_mapping_entries_have_their_keys():
    text = (REPO / "docs/reference/config-daemon.md").read_text(encoding="utf-8")
    for key in ("zones[].polygon", "masks[].polygon", "motion.masks[].polygon", "cameras[].source"):
        assert f"| `{key}` |" in text, key
    assert "| `filters.labels.<name>.min_score` | number | `0` |" in text
    assert "\n## `zones`\n" in text and "\n## Top-level keys\n" in text


@pytest.mark.parametrize("target", CONFIGS, ids=lambda t: t.name)
def test_a_config_page_says_it_is_generated_and_from_what(target):
    lines = (REPO / target.page).read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"# {target.title}"
    assert lines[1].startswith("<!-- generated from") and "`python -m edgedet.config_docs --write`" in lines[1]
    assert target.model in lines[1]


@pytest.mark.parametrize("target", CONFIGS, ids=lambda t: t.name)
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


def test_write_regenerates_a_stale_page_and_schema(tmp_path):
    copy_generated(tmp_path)
    assert stale_docs(tmp_path) == []
    page = tmp_path / "docs" / "reference" / "config-daemon.md"
    page.write_text(page.read_text().replace("| `http.port` |", "| `http.prot` |"))
    schema = tmp_path / "training" / "config.schema.json"
    schema.write_text("{}\n")
    assert sorted(stale_docs(tmp_path)) == sorted([page, schema])
    assert sorted(write_docs(tmp_path)) == sorted([page, schema])
    assert stale_docs(tmp_path) == []
    assert page.read_text() == (REPO / "docs/reference/config-daemon.md").read_text()


def test_missing_pages_are_stale_and_written_without_a_readme(tmp_path):
    # nothing but the generated files: no README, no markers needed anywhere
    expected = sorted([tmp_path / p.path for p in PAGES] + [tmp_path / t.schema for t in CONFIGS])
    assert sorted(stale_docs(tmp_path)) == expected
    lines = []
    assert main(["--check", "--root", str(tmp_path)], out=lines.append) == 1
    assert len(lines) == len(expected) and all("python -m edgedet.config_docs --write" in line for line in lines)
    assert main(["--write", "--root", str(tmp_path)], out=lines.append) == 0
    assert stale_docs(tmp_path) == []
    assert main(["--check", "--root", str(tmp_path)], out=lines.append) == 0


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

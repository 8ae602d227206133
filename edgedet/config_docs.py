"""The config key tables of the READMEs and the ``config.schema.json`` files, generated from the config
models: ``python -m edgedet.config_docs --write`` rewrites the stale ones, ``--check`` lists them.

The tables sit between ``<!-- config-table:NAME:start -->`` and ``<!-- config-table:NAME:end -->``. This
module names both the daemon's and the training config, so it lives on the top floor with the command
line; the machinery it uses (:func:`~edgedet.edge.runtime.settings.key_table`,
:func:`~edgedet.edge.runtime.settings.json_schema`) is the config layer's own.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from edgedet.edge.runtime.settings import json_schema, key_table

__all__ = ["DOCS", "DocTarget", "main", "stale_docs", "write_docs"]


@dataclass(frozen=True)
class DocTarget:
    """A config model and where its key table and its JSON Schema are written (paths from the repo root)."""

    name: str  # the marker: <!-- config-table:NAME:start --> ... <!-- config-table:NAME:end -->
    model: str  # "module:Class", imported only when the docs are generated
    readme: str
    schema: str
    intro: str = ""  # text placed before the table inside the markers
    outro: str = ""


DOCS: tuple[DocTarget, ...] = (
    DocTarget(
        "daemon",
        "edgedet.edge.camera.config:DaemonConfig",
        "deploy/README.md",
        "edge/camera/config.schema.json",
    ),
    DocTarget(
        "training",
        "edgedet.training.config:TrainingConfig",
        "README.md",
        "training/config.schema.json",
        intro="<details><summary>Every key of the training YAML, its default and its bounds</summary>\n",
        outro="\n</details>",
    ),
)
GENERATED = "<!-- generated from {model} by `python -m edgedet.config_docs --write`; edit the model -->"


def _model_class(spec: str) -> type[BaseModel]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _region(target: DocTarget, model_cls: type[BaseModel]) -> str:
    parts = [GENERATED.format(model=target.model), target.intro, key_table(model_cls).rstrip("\n"), target.outro]
    return "\n" + "\n".join(p for p in parts if p) + "\n"


def _replace_region(text: str, name: str, body: str, where: str) -> str:
    start, end = f"<!-- config-table:{name}:start -->", f"<!-- config-table:{name}:end -->"
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"{where}: no {start} ... {end} markers")
    return text[: i + len(start)] + body + text[j:]


def _rendered(root: Path, targets: Sequence[DocTarget]) -> dict[Path, str]:
    """The generated text of every file the targets own (a README gets all its regions)."""
    out: dict[Path, str] = {}
    for target in targets:
        model_cls = _model_class(target.model)
        readme = root / target.readme
        text = out.get(readme) or readme.read_text(encoding="utf-8")
        out[readme] = _replace_region(text, target.name, _region(target, model_cls), str(readme))
        out[root / target.schema] = json_schema(model_cls)
    return out


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def stale_docs(root: str | Path | None = None, targets: Sequence[DocTarget] = DOCS) -> list[Path]:
    """The generated files (README tables, schema files) that differ from what the models give."""
    rendered = _rendered(Path(root) if root is not None else _repo_root(), targets)
    return [p for p, text in rendered.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]


def write_docs(root: str | Path | None = None, targets: Sequence[DocTarget] = DOCS) -> list[Path]:
    """Regenerate the README tables and the schema files; returns the files that changed."""
    rendered = _rendered(Path(root) if root is not None else _repo_root(), targets)
    changed = [p for p, text in rendered.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    for path in changed:
        path.write_text(rendered[path], encoding="utf-8")
    return changed


def main(argv: Sequence[str] | None = None, out: Callable[[str], Any] = print) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edgedet.config_docs",
        description="Regenerate (--write) or check (--check) the config key tables and JSON Schema files.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the stale files")
    mode.add_argument("--check", action="store_true", help="list the stale files; exit status 1 if any")
    parser.add_argument("--root", default=None, help="the source checkout (default: the one this file is in)")
    args = parser.parse_args(argv)
    if args.write:
        for path in write_docs(args.root):
            out(f"wrote {path}")
        return 0
    stale = stale_docs(args.root)
    for path in stale:
        out(f"stale: {path} (run python -m edgedet.config_docs --write)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())

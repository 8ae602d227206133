"""The layers hold: every import of every module (top-level and lazy, ``import_module("...")`` included)
goes down the floors, and the wheel installs one root name that imports no torch or TensorFlow.

Floors, lowest first (a module may import its own floor and any lower one, never a higher one):
``edge.core`` (the math: nothing of ours) < ``edge.datasets`` < ``edge.runtime`` < ``edge.eval`` and
``edge.camera`` (side by side: neither imports the other) < ``edge.bench`` < ``training`` < ``convert``
< ``edgedet`` itself (the command line and the demo). Nothing imports ``tests``.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"edge": "edgedet.edge", "training": "edgedet.training", "convert": "edgedet.convert", "edgedet": "edgedet"}
FLOORS = [  # (package prefix, floor); the longest matching prefix wins
    ("edgedet.edge.core", 0),
    ("edgedet.edge.datasets", 1),
    ("edgedet.edge.runtime", 2),
    ("edgedet.edge.eval", 3),
    ("edgedet.edge.camera", 3),
    ("edgedet.edge.bench", 4),
    ("edgedet.edge", 0),  # edge/__init__.py: a docstring only
    ("edgedet.training", 5),
    ("edgedet.convert", 6),
    ("edgedet", 7),
]
SIDE_BY_SIDE = {"edgedet.edge.eval", "edgedet.edge.camera"}


def layer_of(module: str) -> tuple[str, int]:
    for prefix, floor in FLOORS:
        if module == prefix or module.startswith(prefix + "."):
            return prefix, floor
    raise AssertionError(f"{module}: in no layer")


def modules() -> dict[str, Path]:
    """Every module of the package, by its installed dotted name."""
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def imports_of(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in ``path``, however deep: ``import x``, ``from x import y``,
    and ``importlib.import_module("x")`` / ``__import__("x")`` with a literal name."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                out.append((node.lineno, node.args[0].value))
    return out


def violations() -> list[str]:
    bad = []
    for module, path in modules().items():
        layer, floor = layer_of(module)
        for line, target in imports_of(path):
            where = f"{path.relative_to(REPO)}:{line}: {module} imports {target}"
            root = target.split(".")[0]
            if root in ("edge", "training", "convert", "tests", "conftest", "tests_support"):
                bad.append(f"{where} (not under the one root name, or a test module)")
                continue
            if root != "edgedet":
                continue
            target_layer, target_floor = layer_of(target)
            if target_floor > floor:
                bad.append(f"{where} (floor {floor} imports floor {target_floor})")
            elif {layer, target_layer} == SIDE_BY_SIDE:
                bad.append(f"{where} (eval and camera sit side by side)")
    return bad


def test_every_import_goes_down_the_floors():
    assert modules(), "no modules found"
    assert violations() == []


def test_the_checker_sees_lazy_and_string_imports(tmp_path):
    # a check that cannot fail proves nothing: a lazy import inside a function and an import_module string
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import importlib\n"
        "def f():\n"
        "    from edgedet.training.train import train\n"
        "    return importlib.import_module('edgedet.convert.export')\n"
    )
    assert [m for _, m in imports_of(probe)] == ["importlib", "edgedet.training.train", "edgedet.convert.export"]
    assert layer_of("edgedet.edge.core.boxes")[1] < layer_of("edgedet.training.train")[1]


def test_backends_are_named_not_imported():
    # the runtime reaches the .pt backend through its table, by name: no import edge -> training
    from edgedet.edge.runtime.backends import BACKENDS

    module, cls = BACKENDS[".pt"].split(":")
    assert module.startswith("edgedet.training.") and cls == "TorchBackend"
    for target in BACKENDS.values():
        module, cls = target.split(":")
        assert getattr(__import__(module, fromlist=[cls]), cls)


@pytest.mark.slow
def test_the_wheel_installs_one_root_name_that_stays_light(tmp_path):
    source = tmp_path / "src"  # a copy: building in the checkout would leave build/ there
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in FOLDERS:
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    wheels = tmp_path / "wheels"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)]
    subprocess.run([*pip_wheel, str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("edgedet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"edgedet", next(t for t in tops if t.endswith(".dist-info"))}, sorted(tops)
    assert "edgedet/edge/core/boxes.py" in names and "edgedet/training/configs/raccoon-ssd.yaml" in names
    assert "edgedet/edge/camera/web/index.html" in names  # the daemon's page at /
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    code = (
        "import sys, edgedet.edge, edgedet.edge.runtime.detector, edgedet.edge.camera.daemon, edgedet.cli\n"
        "assert edgedet.edge.__file__.startswith(sys.argv[1]), edgedet.edge.__file__\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'edgedet.training', 'edgedet.convert') if m in sys.modules))"
    )
    # run from an empty folder, the installed copy first on the path: not the checkout's editable install
    out = subprocess.run(
        [sys.executable, "-c", code, str(site)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"

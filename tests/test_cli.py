import subprocess
import sys

import pytest

from edge.cli import COMMANDS, build_parser, main

CONTRACT = {
    "train": ["--config"],
    "eval": ["--model", "--data", "--json"],
    "export": ["--checkpoint", "--out", "--formats", "--int8", "--calib"],
    "import-ultraface": ["--out", "--input-size"],
    "detect": ["--model", "--json", "--save-dir", "--score-threshold"],
    "bench": ["--models", "--data", "--out"],
    "camera": ["--config", "--model", "--source", "--http", "--events"],
    "demo": [],
}


def test_every_contract_command_and_flag_exists(capsys):
    assert {c.name for c in COMMANDS} == set(CONTRACT)
    for name, flags in CONTRACT.items():
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args([name, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        for flag in flags:
            assert flag in out, f"edgedet {name} --help lacks {flag}"


def test_camera_needs_no_config_file():
    args = build_parser().parse_args(["camera", "--model", "m.onnx", "--source", "0"])
    assert args.config is None and args.model == "m.onnx"


def test_handlers_are_real_modules_or_clearly_missing(capsys):
    # a command whose module does not exist yet says so and fails; it never pretends to work
    for cmd in COMMANDS:
        module = cmd.handler.split(":")[0]
        try:
            __import__(module)
        except ModuleNotFoundError:
            assert main([cmd.name, *_minimal_args(cmd.name)]) == 2
            assert "not available in this version yet" in capsys.readouterr().err


def _minimal_args(name):
    return {
        "train": ["--config", "x.yaml"],
        "eval": ["--model", "m.onnx", "--data", "synthetic:4"],
        "export": ["--checkpoint", "c.pt", "--out", "o"],
        "import-ultraface": ["x.pth", "--out", "x.pt"],
        "detect": ["--model", "m.onnx", "img.jpg"],
        "bench": ["--models", "m.onnx", "--out", "o"],
        "camera": [],
        "demo": ["--quick"],
    }[name]


def test_help_never_imports_torch_or_tensorflow():
    code = (
        "import sys, contextlib, io\n"
        "from edge.cli import main\n"
        "for cmd in ['detect', 'camera', 'eval', 'bench', 'train', 'export']:\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main([cmd, '--help'])\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'training', 'convert') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

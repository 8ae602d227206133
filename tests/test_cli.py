import importlib
import subprocess
import sys

import pytest

from edgedet.cli import COMMANDS, _with_default_subcommand, build_parser

CONTRACT = {
    "train": ["--config"],
    "eval": ["--model", "--data", "--json"],
    "export": ["--checkpoint", "--out", "--formats", "--int8", "--calib"],
    "int8-explain": ["--fp32", "--int8", "--images"],
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
            build_parser().parse_args(["bench", "report", "--help"] if name == "bench" else [name, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        for flag in flags:
            assert flag in out, f"edgedet {name} --help lacks {flag}"


def test_bench_report_is_the_default_and_every_bench_is_a_subcommand(capsys):
    # users' `edgedet bench --models ... --out DIR` keeps working: it is `edgedet bench report ...`
    args = build_parser().parse_args(_with_default_subcommand(["bench", "--models", "a.onnx", "--out", "o"]))
    assert args._command.name == "report" and args.models == ["a.onnx"] and args.out == "o"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--help"])
    out = capsys.readouterr().out
    for kind in ("report", "frame", "decode", "compare", "profile", "train-throughput"):
        assert kind in out
    args = build_parser().parse_args(_with_default_subcommand(["bench", "frame", "--model", "m.onnx"]))
    assert args._command.handler == "edgedet.edge.bench.frame_bench:cli"


def test_camera_needs_no_config_file():
    args = build_parser().parse_args(["camera", "--model", "m.onnx", "--source", "0"])
    assert args.config is None and args.model == "m.onnx"


def test_every_handler_is_a_real_function():
    # every subcommand names a module and function that exist (no placeholder commands)
    for cmd in (*COMMANDS, *(sub for c in COMMANDS for sub in c.subcommands)):
        module, func = cmd.handler.split(":")
        assert callable(getattr(importlib.import_module(module), func)), cmd.handler


def test_help_never_imports_torch_or_tensorflow():
    code = (
        "import sys, contextlib, io\n"
        "from edgedet.cli import main\n"
        "for cmd in ['detect', 'camera', 'eval', 'bench', 'train', 'export']:\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main([cmd, '--help'])\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'training', 'convert') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

"""Bad output paths fail before any work, with one line naming the flag; results are written whole;
an evaluation that evaluated nothing is an error. Through the real ``edgedet`` command line."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest
from conftest import shared_path

from edgedet.cli import main
from edgedet.edge.runtime.output_paths import output_dir, output_file, write_text_atomic

UF = ("models", "ultraface")


def detect_argv(*extra: str) -> list[str]:
    uf = shared_path(*UF)
    return ["detect", "--model", str(uf / "version-slim-320.onnx"), "--spec", "ultraface", str(uf / "images"), *extra]


def test_detect_json_into_a_folder_fails_before_any_image(tmp_path, capsys):
    t0 = time.monotonic()
    assert main(detect_argv("--json", str(tmp_path))) == 1
    err = capsys.readouterr()
    assert f"--json {tmp_path}: is a folder; expected a file name" in err.err
    assert "Traceback" not in err.err and "detection" not in err.out  # no image was processed
    assert time.monotonic() - t0 < 5


def test_detect_save_dir_that_is_a_file_or_under_a_file(tmp_path, capsys):
    a_file = tmp_path / "taken.txt"
    a_file.write_text("x")
    assert main(detect_argv("--save-dir", str(a_file))) == 1
    assert f"--save-dir {a_file}: is a file; expected a folder" in capsys.readouterr().err
    assert main(detect_argv("--json", str(a_file / "sub" / "d.json"))) == 1
    assert "is a file, not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "x"  # nothing lost


def test_detect_writes_json_whole(tmp_path):
    out = tmp_path / "new" / "d.json"
    assert main(detect_argv("--json", str(out))) == 0
    assert len(json.loads(out.read_text())) == len(list(shared_path(*UF, "images").glob("*.jpg")))
    assert [p.name for p in out.parent.iterdir()] == ["d.json"]  # no temporary file left behind


def test_eval_json_into_a_folder_and_an_empty_dataset(tmp_path, capsys):
    model = str(shared_path(*UF, "version-slim-320.onnx"))
    assert (
        main(["eval", "--model", model, "--spec", "ultraface", "--data", "synthetic:2", "--json", str(tmp_path)]) == 1
    )
    assert "is a folder; expected a file name" in capsys.readouterr().err
    # a VOC folder whose only annotation is broken: zero evaluable images is an error, not AP -1
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    cv2.imwrite(str(root / "JPEGImages" / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    (root / "Annotations" / "a.xml").write_text("<annotation><object>")
    rc = main(["eval", "--model", model, "--spec", "ultraface", "--data", f"voc:{root}", "--class-map", "x=face"])
    err = capsys.readouterr().err
    assert rc == 1 and "no labelled image to evaluate" in err and "Traceback" not in err


def test_helpers_directly(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        output_file(tmp_path, "--out")
    assert output_dir(tmp_path / "a" / "b", "--dir").is_dir()
    target = tmp_path / "f.txt"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two" and sorted(p.name for p in tmp_path.iterdir()) == ["a", "f.txt"]

"""`edgedet eval` end to end: the published UltraFace model on the face set's val split."""

import json

import pytest
from conftest import shared_path

from edgedet.cli import main
from edgedet.edge.eval.evaluate import label_mapping, parse_class_map

FACE_MAP = "with_mask=face,without_mask=face,with_incorrect_mask=face"


def test_class_map_and_label_matching():
    assert parse_class_map("a=face, b=face") == {"a": "face", "b": "face"}
    with pytest.raises(ValueError, match="SRC=DST"):
        parse_class_map("a:face")
    assert label_mapping(("b", "a"), ("a", "b", "c")).tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"dataset classes \['dog'\] are not among the model's labels"):
        label_mapping(("dog",), ("face",))


@pytest.mark.slow
def test_published_ultraface_ap50_on_faces_val(tmp_path):
    model = shared_path("models", "ultraface", "version-slim-320.onnx")
    faces = shared_path("data", "faces")
    out = tmp_path / "m.json"
    rc = main(
        [
            "eval",
            "--model",
            str(model),
            "--spec",
            "ultraface",
            "--data",
            f"voc:{faces}:val",
            "--class-map",
            FACE_MAP,
            "--score-threshold",
            "0.05",
            "--threads",
            "1",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    m = json.loads(out.read_text())
    assert m["images"] == 85
    # the reference figure for this model and protocol (issue 5): AP50 0.695
    assert m["AP50"] == pytest.approx(0.695, abs=0.005)
    assert 0 < m["AP"] < m["AP50"]


def test_eval_names_unknown_classes(tmp_path, capsys):
    model = shared_path("models", "ultraface", "version-slim-320.onnx")
    faces = shared_path("data", "faces")
    rc = main(["eval", "--model", str(model), "--spec", "ultraface", "--data", f"voc:{faces}:val"])
    assert rc == 1
    assert "are not among the model's labels ['face']" in capsys.readouterr().err

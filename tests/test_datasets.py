"""Dataset readers (VOC, COCO, YOLO, WIDER), their problem reports, and DATA spec parsing."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import shared_path
from test_media import write_exif_jpeg

from edgedet.edge.datasets import (
    DataSpec,
    Sample,
    image_size,
    load_dataset,
    parse_spec,
    read_coco,
    read_image,
    read_voc,
    read_wider,
    read_yolo,
)
from edgedet.edge.datasets.report import (
    BOX_CLIPPED,
    BOX_OUTSIDE,
    IGNORED_BOX,
    INVALID_BOX,
    LOG_LIMIT,
    MALFORMED_FILE,
    MISSING_ANNOTATION,
    MISSING_IMAGE,
    SIZE_MISMATCH,
    UNKNOWN_CLASS,
    UNREADABLE_IMAGE,
    ZERO_AREA,
    LoadReport,
)

FACE_MAP = {"with_mask": "face", "without_mask": "face", "with_incorrect_mask": "face"}


# --- helpers that write tiny datasets ----------------------------------------------------------------


def write_image(path: Path, width: int = 64, height: int = 48) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)
    return path


def voc_xml(objects: list[tuple[str, tuple[float, float, float, float]]], size=(64, 48), filename=None) -> str:
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
        f"<ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in objects
    )
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    name = f"<filename>{filename}</filename>" if filename else ""
    return f"<annotation>{name}{size_xml}{objs}</annotation>"


def write_voc(root: Path, items: dict[str, str], images: dict[str, Path | None]) -> Path:
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    for image_id, xml in items.items():
        (root / "Annotations" / f"{image_id}.xml").write_text(xml)
    for image_id, ext in images.items():
        if ext is not None:
            write_image(root / "JPEGImages" / f"{image_id}{ext}")
    return root


def issue_files(dataset, kind: str) -> list[str]:
    return [Path(i.file).name for i in dataset.report.of_kind(kind)]


# --- real datasets ------------------------------------------------------------------------------------


def test_raccoon_splits():
    root = shared_path("data", "raccoon")
    train, val = read_voc(root, "train"), read_voc(root, "val")
    assert (len(train), len(val)) == (131, 23)
    assert train.classes == ("raccoon",) and len(train.report) == 0
    assert {s.image_id for s in train}.isdisjoint(s.image_id for s in val)
    for sample in train.samples[:5]:
        image = sample.load_image()
        assert image.shape == (sample.height, sample.width, 3)
        assert np.all(sample.boxes[:, 2:] <= [sample.width, sample.height])


def test_bccd_zero_area_boxes_are_reported_and_skipped():
    dataset = read_voc(shared_path("data", "bccd"))
    assert len(dataset) == 292
    assert issue_files(dataset, ZERO_AREA) == ["BloodImage_00338.xml", "BloodImage_00343.xml"]
    assert dataset.report.counts == {ZERO_AREA: 2}
    assert dataset.num_boxes == 3943 - 2
    assert "zero-area box: 2" in dataset.report.summary()
    assert all(np.all(s.boxes[:, 2:] > s.boxes[:, :2]) for s in dataset)


def test_faces_jpeg_images_are_found():
    dataset = read_voc(shared_path("data", "faces"))
    assert len(dataset) == 582 and dataset.num_boxes == 1167
    jpeg = [s for s in dataset if s.image_path.suffix == ".jpeg"]
    assert len(jpeg) == 10 and all(s.image_path.is_file() for s in jpeg)
    assert not dataset.report.of_kind(MISSING_IMAGE)
    assert dataset.classes == ("with_incorrect_mask", "with_mask", "without_mask")
    assert jpeg[0].load_image().shape[:2] == (jpeg[0].height, jpeg[0].width)


def test_faces_with_a_class_map_to_one_class():
    root = shared_path("data", "faces")
    dataset = read_voc(root, "train", class_map=FACE_MAP)
    assert dataset.classes == ("face",) and len(dataset) == 497
    assert set(np.concatenate([s.labels for s in dataset])) == {0}
    assert dataset.class_counts() == {"face": dataset.num_boxes}
    # one face box in the set overhangs its 256x256 image by 9 px: clipped and reported
    assert dataset.report.counts == {BOX_CLIPPED: 1}


def test_coco128_through_the_yolo_reader():
    dataset = read_yolo(shared_path("data", "coco128"))
    assert len(dataset) == 128 and len(dataset.classes) == 80
    assert dataset.classes[:3] == ("person", "bicycle", "car") and dataset.classes[-1] == "toothbrush"
    labelled = [s for s in dataset if len(s.boxes)]
    backgrounds = sorted(s.image_path.stem for s in dataset if not len(s.boxes))
    assert len(labelled) == 126 and backgrounds == ["000000000250", "000000000508"]
    assert dataset.report.backgrounds == 2 and len(dataset.report) == 0  # rounding overhangs clip silently
    assert dataset.num_boxes == 929
    assert len(read_yolo(shared_path("data", "coco128"), "train2017")) == 128


# --- VOC: every bad-label case on files written here ----------------------------------------------------


@pytest.fixture
def bad_voc(tmp_path: Path) -> Path:
    items = {
        "good": voc_xml([("cat", (1, 2, 30, 40)), ("dog", (10, 10, 20, 20))]),
        "partial": voc_xml([("cat", (-10, 5, 30, 40)), ("dog", (50, 30, 80, 47))]),
        "outside": voc_xml([("cat", (70, 10, 90, 20)), ("cat", (5, 5, 10, 10))]),
        "zero": voc_xml([("dog", (10, 10, 10, 30)), ("cat", (1, 1, 5, 5))]),
        "unknown": voc_xml([("bird", (1, 1, 9, 9)), ("cat", (2, 2, 8, 8))]),
        "unreadable": voc_xml([("cat", (1, 1, 9, 9))]),
        "noimage": voc_xml([("cat", (1, 1, 9, 9))]),
        "malformed": "<annotation><object><name>cat</name>",
        "badbox": voc_xml([("cat", ("a", 1, 9, 9)), ("cat", (9, 9, 1, 1)), ("dog", (3, 3, 9, 9))]),
        "nosize": voc_xml([("dog", (1, 1, 9, 9))], size=None),
        "wrongsize": voc_xml([("dog", (1, 1, 9, 9))], size=(100, 100)),
        "upper": voc_xml([("cat", (1, 1, 9, 9))], filename="elsewhere.jpg"),
    }
    images = {k: ".jpg" for k in items} | {"noimage": None, "upper": ".PNG", "unreadable": None}
    root = write_voc(tmp_path / "voc", items, images)
    (root / "JPEGImages" / "unreadable.jpg").write_bytes(b"this is not a jpeg")
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("good\npartial\n\nghost\n")
    return root


def test_voc_reports_every_bad_label_and_keeps_the_good(bad_voc: Path, caplog):
    with caplog.at_level(logging.WARNING, logger="edgedet.edge.datasets"):
        dataset = read_voc(bad_voc, classes=["cat", "dog"])
    by_id = {s.image_id: s for s in dataset}
    assert set(by_id) == {"good", "partial", "outside", "zero", "unknown", "badbox", "nosize", "wrongsize", "upper"}
    np.testing.assert_array_equal(by_id["good"].boxes, [[1, 2, 30, 40], [10, 10, 20, 20]])
    np.testing.assert_array_equal(by_id["good"].labels, [0, 1])

    assert issue_files(dataset, BOX_CLIPPED) == ["partial.xml", "partial.xml"]
    np.testing.assert_array_equal(by_id["partial"].boxes, [[0, 5, 30, 40], [50, 30, 64, 47]])
    assert "clipped to [0, 5, 30, 40]" in dataset.report.of_kind(BOX_CLIPPED)[0].detail
    assert issue_files(dataset, BOX_OUTSIDE) == ["outside.xml"]
    assert "entirely outside" in dataset.report.of_kind(BOX_OUTSIDE)[0].detail
    np.testing.assert_array_equal(by_id["outside"].boxes, [[5, 5, 10, 10]])
    assert issue_files(dataset, ZERO_AREA) == ["zero.xml"] and len(by_id["zero"].boxes) == 1
    assert issue_files(dataset, UNKNOWN_CLASS) == ["unknown.xml"]
    assert "'bird'" in dataset.report.of_kind(UNKNOWN_CLASS)[0].detail and len(by_id["unknown"].boxes) == 1
    assert issue_files(dataset, UNREADABLE_IMAGE) == ["unreadable.xml"]
    assert issue_files(dataset, MISSING_IMAGE) == ["noimage.xml"]
    assert issue_files(dataset, MALFORMED_FILE) == ["malformed.xml"]
    assert "XML parse error" in dataset.report.of_kind(MALFORMED_FILE)[0].detail
    assert issue_files(dataset, INVALID_BOX) == ["badbox.xml", "badbox.xml"]
    np.testing.assert_array_equal(by_id["badbox"].labels, [1])
    assert (by_id["nosize"].width, by_id["nosize"].height) == (64, 48)
    assert issue_files(dataset, SIZE_MISMATCH) == ["wrongsize.xml"] and by_id["wrongsize"].width == 64
    assert by_id["upper"].image_path.name == "upper.PNG"

    logged = "\n".join(r.getMessage() for r in caplog.records)
    for issue in dataset.report.issues:
        assert str(issue) in logged
    summary = dataset.report.summary()
    assert "9 images" in summary and f"{len(dataset.report)} problems" in summary and "unknown class: 1" in summary


def test_voc_split_lists_and_missing_split(bad_voc: Path):
    dataset = read_voc(bad_voc, "train")
    assert [s.image_id for s in dataset] == ["good", "partial"]
    assert issue_files(dataset, MISSING_ANNOTATION) == ["ghost.xml"]
    assert dataset.classes == ("cat", "dog")
    with pytest.raises(FileNotFoundError, match=r"test\.txt not found \(splits there: \['train'\]\)"):
        read_voc(bad_voc, "test")
    with pytest.raises(FileNotFoundError, match="no Annotations folder"):
        read_voc(bad_voc / "nowhere")


def test_voc_without_classes_sorts_the_source_names(bad_voc: Path):
    dataset = read_voc(bad_voc, class_map={"dog": "animal", "cat": "animal"})
    assert dataset.classes == ("animal", "bird")
    assert not dataset.report.of_kind(UNKNOWN_CLASS)


def test_class_arguments_are_validated(bad_voc: Path):
    with pytest.raises(ValueError, match="duplicate"):
        read_voc(bad_voc, classes=["cat", "cat"])
    with pytest.raises(ValueError, match="class_map"):
        read_voc(bad_voc, class_map={"cat": 3})
    with pytest.raises(ValueError, match="string"):
        read_voc(bad_voc, classes="cat")


def test_sample_checks_and_freezes_its_arrays(tmp_path: Path):
    sample = Sample(tmp_path / "a.jpg", [[1, 2, 3, 4]], [0], 10, 10, "a")
    assert sample.boxes.dtype == np.float32 and sample.labels.dtype == np.int64
    with pytest.raises(ValueError):
        sample.boxes[0, 0] = 5
    with pytest.raises(ValueError, match="2 boxes but 1 labels"):
        Sample(tmp_path / "a.jpg", np.zeros((2, 4)), [0], 10, 10, "a")
    empty = Sample(tmp_path / "a.jpg", np.zeros((0, 4)), [], 10, 10, "a")
    assert empty.boxes.shape == (0, 4)


def test_image_size_reads_headers_and_rejects_garbage(tmp_path: Path):
    image = np.zeros((37, 53, 3), np.uint8)
    for ext in ("jpg", "png", "bmp", "webp"):
        path = tmp_path / f"x.{ext}"
        assert cv2.imwrite(str(path), image)
        assert image_size(path) == (53, 37)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(OSError, match=r"bad\.jpg"):
        image_size(tmp_path / "bad.jpg")
    with pytest.raises(OSError, match="not found"):
        image_size(tmp_path / "missing.png")


def test_tif_images_are_found_by_the_readers(tmp_path: Path):
    root = tmp_path / "yolo"
    write_image(root / "images" / "a.tif", 40, 30)
    write_image(root / "images" / "b.TIFF", 40, 30)
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "classes.txt").write_text("cat\n")
    dataset = read_yolo(root, verify_images=True)
    assert sorted(s.image_path.name for s in dataset) == ["a.tif", "b.TIFF"] and not len(dataset.report)
    assert all((s.width, s.height) == (40, 30) and s.load_image().shape == (30, 40, 3) for s in dataset)


def test_exif_rotated_image_stays_as_stored_so_boxes_stay_on_their_pixels(tmp_path: Path):
    """Annotations are in the stored pixel coordinates: the sample's size, its pixels and its boxes all
    ignore the EXIF orientation, which ``detect`` (``read_image``'s default) applies."""
    stored = np.zeros((30, 60, 3), np.uint8)
    stored[0:10, 0:20] = 255  # the labelled object, top-left as stored
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    path = write_exif_jpeg(root / "images" / "portrait.jpg", stored)
    (root / "labels").mkdir()
    (root / "labels" / "portrait.txt").write_text(f"0 {10 / 60} {5 / 30} {20 / 60} {10 / 30}\n")
    (root / "classes.txt").write_text("cat\n")
    for verify in (False, True):
        (sample,) = read_yolo(root, verify_images=verify)
        assert (sample.width, sample.height) == (60, 30) and len(sample.boxes) == 1
        pixels = sample.load_image()
        assert pixels.shape == (30, 60, 3)
        x1, y1, x2, y2 = (round(float(v)) for v in sample.boxes[0])
        assert (x1, y1, x2, y2) == (0, 0, 20, 10)
        assert pixels[y1:y2, x1:x2].min() > 200 and pixels[y2:, :].max() < 50  # the box covers the object
    assert image_size(path) == image_size(path, decode=True) == (60, 30)
    assert read_image(path).shape == (60, 30, 3)  # what detect shows: upright
    np.testing.assert_array_equal(read_image(path), cv2.rotate(sample.load_image(), cv2.ROTATE_90_CLOCKWISE))


# --- YOLO ---------------------------------------------------------------------------------------------


@pytest.fixture
def bad_yolo(tmp_path: Path) -> Path:
    root = tmp_path / "yolo"
    for name in ("a", "b", "c", "d", "e"):
        write_image(root / "images" / "train" / f"{name}.jpg", 100, 50)
    (root / "images" / "train" / "e.jpg").write_bytes(b"")  # unreadable (empty)
    labels = root / "labels" / "train"
    labels.mkdir(parents=True)
    (labels / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.25 0.25 0.1 0.1\n")
    (labels / "b.txt").write_text("0 0.5 0.5 0.2\n7 0.5 0.5 0.1 0.1\nx 0.5 0.5 0.1 0.1\n1 0.5 0.5 0.1 0.1\n")
    (labels / "c.txt").write_text("0 0.5 0.5 0 0.1\n0 1.5 1.5 0.2 0.2\n0 0.95 0.5 0.2 0.2\n")
    (labels / "e.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (labels / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (root / "classes.txt").write_text("cat\ndog\n")
    return root


def test_yolo_reports_bad_lines_and_keeps_the_good(bad_yolo: Path):
    dataset = read_yolo(bad_yolo)
    by_id = {s.image_id: s for s in dataset}
    assert set(by_id) == {"images/train/a", "images/train/b", "images/train/c", "images/train/d"}
    assert dataset.classes == ("cat", "dog")
    np.testing.assert_allclose(by_id["images/train/a"].boxes, [[40, 15, 60, 35], [20, 10, 30, 15]], atol=1e-4)
    np.testing.assert_array_equal(by_id["images/train/a"].labels, [0, 1])
    assert len(by_id["images/train/d"].boxes) == 0 and dataset.report.backgrounds == 1
    np.testing.assert_array_equal(by_id["images/train/b"].labels, [1])
    malformed = dataset.report.of_kind(MALFORMED_FILE)
    assert [(Path(i.file).name, i.detail.split(":")[0]) for i in malformed] == [
        ("b.txt", "line 1"),
        ("b.txt", "line 3"),
    ]
    assert (
        issue_files(dataset, UNKNOWN_CLASS) == ["b.txt"]
        and "class index 7" in dataset.report.of_kind(UNKNOWN_CLASS)[0].detail
    )
    assert issue_files(dataset, ZERO_AREA) == ["c.txt"]
    assert issue_files(dataset, BOX_OUTSIDE) == ["c.txt"]
    assert issue_files(dataset, BOX_CLIPPED) == ["c.txt"]
    np.testing.assert_allclose(by_id["images/train/c"].boxes, [[85, 20, 100, 30]], atol=1e-4)
    assert issue_files(dataset, UNREADABLE_IMAGE) == ["e.txt"]
    assert issue_files(dataset, MISSING_IMAGE) == ["orphan.txt"]


def test_yolo_splits_names_and_side_by_side_layout(bad_yolo: Path, tmp_path: Path):
    assert len(read_yolo(bad_yolo, "train")) == 4
    (bad_yolo / "subset.txt").write_text("images/train/a.jpg\n./images/train/d.jpg\nimages/train/zz.jpg\n")
    subset = read_yolo(bad_yolo, "subset")
    assert [s.image_path.name for s in subset] == ["a.jpg", "d.jpg"]
    assert issue_files(subset, MISSING_IMAGE) == ["zz.jpg"]
    with pytest.raises(FileNotFoundError, match="YOLO split 'val' not found"):
        read_yolo(bad_yolo, "val")

    side = tmp_path / "side"
    write_image(side / "p.png", 40, 40)
    (side / "p.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (side / "data.yaml").write_text("names: {0: person, 1: car}\n")
    dataset = read_yolo(side, classes=["car"])
    assert dataset.classes == ("car",) and dataset[0].labels.tolist() == [0]
    np.testing.assert_allclose(dataset[0].boxes, [[10, 10, 30, 30]])

    unnamed = tmp_path / "unnamed"
    write_image(unnamed / "q.jpg", 40, 40)
    (unnamed / "q.txt").write_text("2 0.5 0.5 0.5 0.5\n")
    assert read_yolo(unnamed).classes == ("0", "1", "2")


# --- COCO ---------------------------------------------------------------------------------------------


def test_coco_reader(tmp_path: Path):
    write_image(tmp_path / "img" / "1.jpg")
    write_image(tmp_path / "img" / "2.jpg")
    write_image(tmp_path / "img" / "4.jpg")
    data = {
        "images": [
            {"id": 1, "file_name": "1.jpg", "width": 64, "height": 48},
            {"id": 2, "file_name": "2.jpg", "width": 64, "height": 48},
            {"id": 3, "file_name": "3.jpg", "width": 64, "height": 48},
            {"id": 4, "file_name": "4.jpg"},
        ],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 20]},
            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [5, 5, 4, 4]},
            {"id": 3, "image_id": 1, "category_id": 9, "bbox": [5, 5, 4, 4]},
            {"id": 4, "image_id": 1, "category_id": 3, "bbox": [5, 5, 0, 4]},
            {"id": 5, "image_id": 1, "category_id": 3, "bbox": [5, 5, 4, 4], "iscrowd": 1},
            {"id": 6, "image_id": 1, "category_id": 3, "bbox": [5, 5]},
            {"id": 7, "image_id": 3, "category_id": 3, "bbox": [5, 5, 4, 4]},
            {"id": 8, "image_id": 99, "category_id": 3, "bbox": [5, 5, 4, 4]},
            {"id": 9, "image_id": 4, "category_id": 7, "bbox": [60, 40, 10, 10]},
        ],
    }
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(data))
    dataset = read_coco(ann, tmp_path / "img")
    assert dataset.classes == ("cat", "dog")  # categories sorted by id
    by_id = {s.image_id: s for s in dataset}
    assert set(by_id) == {"1", "2", "4"}
    np.testing.assert_array_equal(by_id["1"].boxes, [[1, 2, 11, 22], [5, 5, 9, 9]])
    np.testing.assert_array_equal(by_id["1"].labels, [0, 1])
    assert len(by_id["2"].boxes) == 0
    np.testing.assert_array_equal(by_id["4"].boxes, [[60, 40, 64, 48]])
    counts = dataset.report.counts
    assert counts[UNKNOWN_CLASS] == 1 and counts[ZERO_AREA] == 1 and counts[IGNORED_BOX] == 1
    assert counts[INVALID_BOX] == 1 and counts[MISSING_IMAGE] == 1 and counts[BOX_CLIPPED] == 1
    assert "unknown image_id 99" in dataset.report.of_kind(MALFORMED_FILE)[0].detail
    assert all(Path(i.file).name == "ann.json" for i in dataset.report.issues)

    mapped = read_coco(ann, tmp_path / "img", class_map={"dog": "pet", "cat": "pet"})
    assert mapped.classes == ("pet",) and by_id["1"].labels.tolist() == [0, 1]


def test_coco_malformed_json_gives_an_empty_reported_dataset(tmp_path: Path):
    ann = tmp_path / "bad.json"
    ann.write_text('{"images": [')
    dataset = read_coco(ann, tmp_path)
    assert len(dataset) == 0 and issue_files(dataset, MALFORMED_FILE) == ["bad.json"]
    assert "JSON parse error" in dataset.report.issues[0].detail
    ann.write_text('{"annotations": []}')
    assert issue_files(read_coco(ann, tmp_path), MALFORMED_FILE) == ["bad.json"]
    with pytest.raises(FileNotFoundError):
        read_coco(tmp_path / "none.json", tmp_path)


# --- WIDER --------------------------------------------------------------------------------------------


def test_wider_reader(tmp_path: Path):
    write_image(tmp_path / "img" / "0--Parade" / "a.jpg", 100, 80)
    write_image(tmp_path / "img" / "0--Parade" / "b.jpg", 100, 80)
    write_image(tmp_path / "img" / "1--Handshaking" / "c.jpg", 100, 80)
    gt = tmp_path / "gt.txt"
    gt.write_text(
        "0--Parade/a.jpg\n3\n"
        "10 10 20 30 0 0 0 0 0 0 \n"
        "50 50 10 10 2 0 0 1 0 0 \n"
        "60 60 0 10 0 0 0 0 0 0 \n"
        "0--Parade/b.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \n"
        "0--Parade/missing.jpg\nx\n"
        "1--Handshaking/c.jpg\n2\n5 5 10 10 0 0 0 0 0 0\n"
    )
    dataset = read_wider(gt, tmp_path / "img", class_map={"face": "person"})
    assert dataset.classes == ("person",)
    by_id = {s.image_id: s for s in dataset}
    assert set(by_id) == {"0--Parade/a", "0--Parade/b", "1--Handshaking/c"}
    np.testing.assert_array_equal(by_id["0--Parade/a"].boxes, [[10, 10, 30, 40]])
    assert len(by_id["0--Parade/b"].boxes) == 0
    np.testing.assert_array_equal(by_id["1--Handshaking/c"].boxes, [[5, 5, 15, 15]])
    counts = dataset.report.counts
    assert counts == {IGNORED_BOX: 1, ZERO_AREA: 1, MALFORMED_FILE: 2}
    details = [i.detail for i in dataset.report.of_kind(MALFORMED_FILE)]
    assert "box count of 0--Parade/missing.jpg" in details[0] and "announces 2 boxes, found 1" in details[1]
    assert all(Path(i.file).name == "gt.txt" for i in dataset.report.issues)


# --- DATA specs ---------------------------------------------------------------------------------------


def test_short_forms_parse():
    assert parse_spec("voc:data/faces:train") == DataSpec("voc", root=Path("data/faces"), split="train")
    assert parse_spec("voc:data/faces") == DataSpec("voc", root=Path("data/faces"))
    assert parse_spec("yolo:c128:train2017") == DataSpec("yolo", root=Path("c128"), split="train2017")
    assert parse_spec("coco:a/b.json:imgs") == DataSpec("coco", annotations=Path("a/b.json"), images=Path("imgs"))
    assert parse_spec("wider:gt.txt:imgs") == DataSpec("wider", annotations=Path("gt.txt"), images=Path("imgs"))
    assert parse_spec("synthetic:40") == DataSpec("synthetic", num_images=40)
    assert parse_spec("synthetic:40:val") == DataSpec("synthetic", num_images=40, split="val")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "DATA is empty"),
        ("voc:", "ROOT is empty; expected voc:ROOT"),
        ("voc:a:b:c", r"expected voc:ROOT\[:SPLIT\] \(3 ':'-separated parts"),
        ("coco:a.txt:imgs", "ANNOTATIONS must be a .json file"),
        ("coco:a.json", "expected coco:ANNOTATIONS.json:IMAGE_DIR"),
        ("wider:gt.txt", "expected wider:GT_TXT:IMAGE_DIR"),
        ("wider:gt.txt:", "IMAGE_DIR is empty"),
        ("synthetic:many", "N: expected a positive integer, got 'many'"),
        ("synthetic:0", "N: expected a positive integer"),
        ("vox:data", "unknown format 'vox'"),
        ("no/such/folder", "not a folder, dataset file or short form"),
    ],
)
def test_bad_short_forms_name_the_wrong_part(spec: str, message: str):
    with pytest.raises(ValueError, match=message):
        parse_spec(spec)


def test_yaml_specs(tmp_path: Path, bad_voc: Path):
    good = tmp_path / "sets" / "faces.yaml"
    good.parent.mkdir()
    good.write_text("format: voc\nroot: ../voc\nsplit: train\nclass_map: {cat: pet, dog: pet}\n")
    spec = parse_spec(good)
    assert (
        spec.root == good.parent / "../voc" and spec.split == "train" and spec.class_map == {"cat": "pet", "dog": "pet"}
    )
    dataset = load_dataset(good)
    assert dataset.classes == ("pet",) and len(dataset) == 2
    overridden = load_dataset(good, class_map={"cat": "cat"}, classes=["cat"])
    assert overridden.classes == ("cat",) and overridden.report.counts[UNKNOWN_CLASS] == 2

    cases = {
        "format: vok\nroot: x\n": "key 'format' must be one of voc, coco",
        "format: voc\nroot: x\nsplitt: a\n": "unknown key 'splitt'",
        "format: voc\nroot: x\nimages: y\n": "key 'images' is not used by format 'voc'",
        "format: coco\nimages: y\n": "format 'coco' needs key 'annotations'",
        "format: voc\nroot: x\nclasses: face\n": "key classes: expected a list of names",
        "format: voc\nroot: 3\n": "key 'root' must be a path string",
        "format: synthetic\nnum_images: -2\n": "key 'num_images': expected a positive integer",
        "format: synthetic\nnum_images: 2\nsize: [10]\n": r"key 'size' must be \[width, height\]",
        "- just\n- a list\n": "expected a mapping of keys",
        "format: voc\nroot: [unclosed\n": "not valid YAML",
    }
    bad = tmp_path / "bad.yaml"
    for text, message in cases.items():
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            parse_spec(bad)
    with pytest.raises(FileNotFoundError, match="dataset file"):
        parse_spec(tmp_path / "missing.yaml")


def test_load_dataset_short_forms_and_folders(bad_voc: Path, bad_yolo: Path, tmp_path: Path):
    assert len(load_dataset(f"voc:{bad_voc}:train")) == 2
    assert load_dataset(str(bad_voc)).report.source == f"voc:{bad_voc}"
    assert len(load_dataset(bad_yolo)) == 4
    with pytest.raises(ValueError, match="neither Annotations"):
        load_dataset(tmp_path)
    synth = load_dataset("synthetic:6:val", cache_dir=tmp_path / "cache")
    assert len(synth) == 1 and synth.classes == ("circle", "square", "triangle")
    shapes = load_dataset("synthetic:6", classes=["star", "cross"], cache_dir=tmp_path / "cache")
    assert shapes.classes == ("star", "cross") and len(shapes) == 6 and len(shapes.report) == 0


def test_readers_and_augmentation_never_import_torch():
    code = "import sys, edgedet.edge.datasets, edgedet.training.augment; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_report_logs_a_limited_number_of_warnings_per_kind(caplog):
    report = LoadReport(source="x")
    with caplog.at_level(logging.DEBUG, logger="edgedet.edge.datasets"):
        for i in range(LOG_LIMIT + 5):
            report.add(f"f{i}.xml", UNKNOWN_CLASS, "dog")
        report.add("g.xml", ZERO_AREA)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == LOG_LIMIT + 2 and "debug level only" in warnings[LOG_LIMIT]
    assert len(report) == LOG_LIMIT + 6 and report.counts == {UNKNOWN_CLASS: LOG_LIMIT + 5, ZERO_AREA: 1}
    assert str(report.issues[-1]) == "g.xml: zero-area box"

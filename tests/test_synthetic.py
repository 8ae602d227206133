"""The synthetic dataset: deterministic, tight boxes, VOC-readable, balanced; and the synthetic video."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedet.edge.datasets import generate_synthetic, read_voc, render_video, synthetic_root
from edgedet.edge.datasets.synthetic import scene_rng
from edgedet.edge.datasets.synthetic_scene import SHAPES, render_scene
from edgedet.edge.runtime.media import iter_video


def colour_box(image: np.ndarray, colour: tuple[int, int, int], box: tuple[int, int, int, int], margin: int = 3):
    """Tight box (x2, y2 exclusive) of the pixels of exactly ``colour`` near ``box``."""
    h, w = image.shape[:2]
    x1, y1 = max(box[0] - margin, 0), max(box[1] - margin, 0)
    x2, y2 = min(box[2] + margin, w), min(box[3] + margin, h)
    mask = np.all(image[y1:y2, x1:x2] == np.array(colour, np.uint8), axis=2)
    ys, xs = np.nonzero(mask)
    return x1 + xs.min(), y1 + ys.min(), x1 + xs.max() + 1, y1 + ys.max() + 1


def test_boxes_are_tight_around_the_drawn_pixels():
    checked = 0
    for i in range(60):
        scene = render_scene(scene_rng(7, i), (320, 240), SHAPES)
        assert scene.image.shape == (240, 320, 3) and scene.image.dtype == np.uint8
        for obj, box in zip(scene.objects, scene.boxes, strict=True):
            assert tuple(box) == obj.box and 0 <= box[0] < box[2] <= 320 and 0 <= box[1] < box[3] <= 240
            if obj.texture == "solid" and not obj.occluded:
                found = colour_box(scene.image, obj.colour, obj.box)
                assert np.abs(np.subtract(found, obj.box)).max() <= 1, (i, obj, found)
                checked += 1
    assert checked >= 15


def test_objects_vary_in_size_and_keep_a_minimum_side():
    sides = []
    for i in range(60):
        scene = render_scene(scene_rng(3, i))
        sides += list(np.minimum(scene.boxes[:, 2] - scene.boxes[:, 0], scene.boxes[:, 3] - scene.boxes[:, 1]))
        sides += list(np.maximum(scene.boxes[:, 2] - scene.boxes[:, 0], scene.boxes[:, 3] - scene.boxes[:, 1]))
    sides = np.array(sides)
    assert sides.min() >= 6 and (sides < 20).any() and (sides > 100).any() and sides.max() <= 240


def test_generation_is_deterministic_by_seed(tmp_path: Path):
    a = generate_synthetic(tmp_path / "a", 6, seed=3)
    b = generate_synthetic(tmp_path / "b", 6, seed=3)
    c = generate_synthetic(tmp_path / "c", 6, seed=4)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        names = sorted(p.name for p in (a / sub).iterdir())
        assert names == sorted(p.name for p in (b / sub).iterdir())
        for name in names:
            assert (a / sub / name).read_bytes() == (b / sub / name).read_bytes(), name
    xml = sorted((a / "Annotations").iterdir())
    assert any(p.read_bytes() != (c / "Annotations" / p.name).read_bytes() for p in xml)
    img = cv2.imread(str(a / "JPEGImages" / "synth_000000.jpg"))
    np.testing.assert_array_equal(img, cv2.imread(str(b / "JPEGImages" / "synth_000000.jpg")))


def test_written_dataset_reads_back_through_the_voc_reader(tmp_path: Path):
    root = generate_synthetic(tmp_path / "png", 10, size=(160, 120), seed=5, image_format="png", val_fraction=0.3)
    dataset = read_voc(root)
    assert len(dataset) == 10 and len(dataset.report) == 0
    assert dataset.classes == ("circle", "square", "triangle")
    assert [len(read_voc(root, s)) for s in ("train", "val", "trainval")] == [7, 3, 10]
    assert (root / "classes.txt").read_text().split() == list(dataset.classes)
    for i, sample in enumerate(dataset):
        scene = render_scene(scene_rng(5, i), (160, 120))
        np.testing.assert_array_equal(sample.load_image(), scene.image)
        np.testing.assert_array_equal(sample.boxes, scene.boxes)
        np.testing.assert_array_equal(sample.labels, scene.labels)
        assert (sample.width, sample.height) == (160, 120)


def test_classes_are_roughly_balanced():
    counts = np.zeros(3, int)
    for i in range(100):
        counts += np.bincount(render_scene(scene_rng(0, i)).labels, minlength=3)
    assert counts.sum() > 200
    assert counts.min() > 0.7 * counts.mean() and counts.max() < 1.3 * counts.mean()


def test_bad_arguments_are_rejected(tmp_path: Path):
    with pytest.raises(ValueError, match="classes"):
        generate_synthetic(tmp_path, 2, classes=("circle", "dog"))
    with pytest.raises(ValueError, match="num_images"):
        generate_synthetic(tmp_path, 0)
    with pytest.raises(ValueError, match="image_format"):
        generate_synthetic(tmp_path, 1, image_format="gif")
    with pytest.raises(ValueError, match="unknown synthetic class"):
        render_scene(np.random.default_rng(0), classes=("blob",))


def test_synthetic_root_generates_once_and_reuses(tmp_path: Path):
    root = synthetic_root(4, seed=1, cache_dir=tmp_path)
    stamp = (root / "synthetic.json").stat().st_mtime_ns
    assert synthetic_root(4, seed=1, cache_dir=tmp_path) == root
    assert (root / "synthetic.json").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [root.name]  # no temporary folder left behind
    assert synthetic_root(4, seed=2, cache_dir=tmp_path) != root


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_video_round_trips_frame_count_and_size(tmp_path: Path, suffix: str):
    path = tmp_path / f"clip{suffix}"
    truth = render_video(path, frames=12, size=(160, 120), seed=2)
    assert len(truth) == 12
    frames = [frame for _, frame in iter_video(path)]
    assert len(frames) == 12 and all(f.shape == (120, 160, 3) for f in frames)
    for t in truth:
        assert t.boxes.shape[1] == 4 and len(t.boxes) == len(t.labels) > 0
        assert np.all(t.boxes[:, :2] >= 0) and np.all(t.boxes[:, 2] <= 160) and np.all(t.boxes[:, 3] <= 120)
    moved = [np.abs(a.boxes - b.boxes).max() for a, b in itertools.pairwise(truth) if a.boxes.shape == b.boxes.shape]
    assert max(moved) > 0
    with pytest.raises(ValueError, match="video path"):
        render_video(tmp_path / "clip.gif", frames=2)


def test_min_object_size_sets_the_smallest_objects_and_is_recorded(tmp_path):
    """The demo's easier scenes: every fully visible object's box is at least ~0.7x ``min_object_size`` on
    its longer side (a rotated triangle spans 0.87 of it), and the setting is written to synthetic.json."""

    def smallest(min_size: float) -> float:
        sides = [
            max(o.box[2] - o.box[0], o.box[3] - o.box[1])
            for i in range(150)
            for o in render_scene(np.random.default_rng((0, i)), (160, 120), min_object_size=min_size).objects
            if o.visible >= 0.999 and not o.occluded
        ]
        return min(sides)

    assert smallest(12) < 14 <= 0.7 * 20 <= smallest(20)
    root = generate_synthetic(tmp_path / "d", 3, size=(64, 48), min_object_size=16, max_distractors=0)
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["min_object_size"] == 16 and meta["max_distractors"] == 0

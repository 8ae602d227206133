import os
import struct
import threading

import cv2
import numpy as np
import pytest

from edgedet.edge.camera.sources import ImageFilesSource, source_kind
from edgedet.edge.datasets import image_files
from edgedet.edge.datasets.image_files import ImageReadError, image_size
from edgedet.edge.runtime import media
from edgedet.edge.runtime.media import iter_media, list_images, read_image


def _write(path, value=100, size=(20, 30)):
    img = np.full((*size, 3), value, np.uint8)
    assert cv2.imwrite(str(path), img)
    return img


def test_folder_images_sorted_any_case_and_non_images_skipped(tmp_path):
    _write(tmp_path / "b.PNG")
    _write(tmp_path / "a.jpg")
    _write(tmp_path / "c.JpEg")
    _write(tmp_path / "d.bmp")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "e.jpg")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.JpEg", "d.bmp"]
    items = list(iter_media([tmp_path]))
    assert [i.path.name for i in items] == ["a.jpg", "b.PNG", "c.JpEg", "d.bmp"]
    assert all(i.ok and i.frame.shape == (20, 30, 3) and i.frame_index is None for i in items)


def test_errors_are_items_and_iteration_goes_on(tmp_path):
    good = _write(tmp_path / "good.png", 7)
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "model.onnx").write_bytes(b"x")
    (tmp_path / "emptydir").mkdir()
    sources = [
        tmp_path / "missing.jpg",
        tmp_path / "corrupt.jpg",
        tmp_path / "empty.png",
        tmp_path / "model.onnx",
        tmp_path / "emptydir",
        tmp_path / "good.png",
    ]
    items = list(iter_media(sources))
    assert [i.ok for i in items] == [False] * 5 + [True]
    messages = [i.error for i in items[:5]]
    assert "no such file" in messages[0] and "missing.jpg" in messages[0]
    assert "corrupt.jpg" in messages[1] and "decodable" in messages[1]
    assert "empty file" in messages[2]
    assert "unsupported file type '.onnx'" in messages[3]
    assert "no images" in messages[4]
    np.testing.assert_array_equal(items[-1].frame, good)


def test_read_image_raises_value_error(tmp_path):
    (tmp_path / "bad.webp").write_bytes(b"RIFF0000WEBPjunk")
    with pytest.raises(ValueError, match=r"bad\.webp"):
        read_image(tmp_path / "bad.webp")
    with pytest.raises(ValueError, match="cannot read"):
        read_image(tmp_path / "absent.jpg")


def test_one_reader_and_one_suffix_list_for_detect_and_the_datasets():
    assert media.read_image is image_files.read_image and media.list_images is image_files.list_images
    assert media.IMAGE_SUFFIXES is image_files.IMAGE_SUFFIXES


def test_tif_images_are_listed_and_read_by_detect_and_the_camera(tmp_path):
    a = _write(tmp_path / "a.tif", 10)
    _write(tmp_path / "b.TIFF", 20)
    assert [p.name for p in list_images(tmp_path)] == ["a.tif", "b.TIFF"]
    items = list(iter_media([tmp_path, tmp_path / "a.tif"]))
    assert [i.path.name for i in items] == ["a.tif", "b.TIFF", "a.tif"] and all(i.ok for i in items)
    np.testing.assert_array_equal(items[0].frame, a)
    assert source_kind(str(tmp_path / "a.tif")) == "image"
    frame, _ = ImageFilesSource(str(tmp_path / "a.tif")).read()
    np.testing.assert_array_equal(frame, a)


def _in_a_thread(fn, fifo, seconds=5.0):
    """``fn()``'s exception (or None), failing the test if it is still blocked after ``seconds``."""
    outcome = {}

    def attempt():
        try:
            fn()
            outcome["error"] = None
        except Exception as exc:  # what the test inspects
            outcome["error"] = exc

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():  # blocked in open(): a writer end releases it
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"{fn} blocked on the FIFO {fifo}")
    return outcome["error"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_named_like_an_image_is_refused_at_once(tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    _write(tmp_path / "y.jpg")
    error = _in_a_thread(lambda: read_image(fifo), fifo)
    assert isinstance(error, ImageReadError) and isinstance(error, ValueError) and isinstance(error, OSError)
    assert str(error) == f"{fifo}: not a regular file (a FIFO)"
    error = _in_a_thread(lambda: image_size(fifo), fifo)
    assert isinstance(error, OSError) and "x.jpg: not a regular file" in str(error)
    assert [p.name for p in list_images(tmp_path)] == ["y.jpg"]
    items = []
    assert _in_a_thread(lambda: items.extend(iter_media([fifo, tmp_path])), fifo) is None
    assert [(i.path.name, i.ok) for i in items] == [("x.jpg", False), ("y.jpg", True)]
    assert "x.jpg: not a regular file (a FIFO)" in items[0].error


def test_a_folder_named_like_an_image_is_refused(tmp_path):
    (tmp_path / "z.png").mkdir()
    with pytest.raises(ImageReadError, match=r"z\.png: (not a regular file \(a folder\)|cannot read)"):
        read_image(tmp_path / "z.png")


def write_exif_jpeg(path, image, orientation=6):
    """``image`` as a JPEG whose EXIF orientation tag is ``orientation`` (6: turn 90 degrees clockwise to
    view it upright, as phones store portrait photos)."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = encoded.tobytes()
    path.write_bytes(data[:2] + app1 + data[2:])  # right after SOI
    return path


def test_exif_rotated_jpeg_is_upright_for_detect_and_the_camera(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:8, :8] = 255  # top-left as stored: top-right once turned upright
    path = write_exif_jpeg(tmp_path / "portrait.jpg", stored)
    as_stored = read_image(path, exif_orientation=False)
    assert as_stored.shape == (20, 40, 3) and as_stored[:6, :6].min() > 200
    upright = read_image(path)
    np.testing.assert_array_equal(upright, cv2.rotate(as_stored, cv2.ROTATE_90_CLOCKWISE))
    (item,) = iter_media([path])
    np.testing.assert_array_equal(item.frame, upright)
    frame, _ = ImageFilesSource(str(path)).read()
    np.testing.assert_array_equal(frame, upright)
    assert image_size(path) == image_size(path, decode=True) == (40, 20)  # the stored size, as datasets use


def test_video_frames_are_indexed(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write MJPG/AVI here")
    for k in range(4):
        writer.write(np.full((48, 64, 3), 40 * k, np.uint8))
    writer.release()
    items = list(iter_media([path]))
    assert [i.name for i in items] == [f"{path}#frame={k}" for k in range(4)]
    assert [i.frame_index for i in items] == [0, 1, 2, 3]
    assert all(i.frame.shape == (48, 64, 3) for i in items)
    assert abs(int(items[3].frame.mean()) - 120) < 8


def test_corrupt_video_is_reported(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 64)
    (item,) = list(iter_media([tmp_path / "broken.mp4"]))
    assert not item.ok and "broken.mp4" in item.error

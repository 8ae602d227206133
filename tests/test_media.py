import cv2
import numpy as np
import pytest

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

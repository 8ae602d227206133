"""Frame sources and the capture thread: kinds, files removed/truncated while open, newest-frame-only,
reconnecting with capped backoff, looping."""

import os
import threading
import time

import cv2
import numpy as np
import pytest

from edgedet.edge.camera.capture import Backoff, CaptureThread, Frame, FrameSlot
from edgedet.edge.camera.sources import (
    ImageFilesSource,
    SourceEnded,
    SourceError,
    VideoFileSource,
    gstreamer_available,
    open_source,
    redact,
    source_kind,
)


def write_video(path, n=8, size=(64, 48), fps=25.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(n):
        frame = np.full((size[1], size[0], 3), 20 * i % 256, np.uint8)
        writer.write(frame)
    writer.release()
    return path


def test_source_kinds(tmp_path):
    assert source_kind("0") == source_kind("/dev/video2") == "device"
    assert source_kind("nvarguscamerasrc ! nvvidconv ! appsink") == "gstreamer"
    assert source_kind("rtsp://cam:554/stream") == source_kind("http://cam/video.mjpg") == "url"
    assert source_kind(str(tmp_path)) == "folder"
    assert source_kind("pics/") == "folder"
    assert source_kind("a.JPG") == "image"
    assert source_kind("clip.mp4") == source_kind("clip") == "video"


def test_redact_hides_url_passwords():
    assert redact("rtsp://admin:s3cret@10.0.0.2:554/live") == "rtsp://admin:***@10.0.0.2:554/live"
    assert redact("rtsp://10.0.0.2/live") == "rtsp://10.0.0.2/live"
    assert redact("/dev/video0") == "/dev/video0"


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        # a password holding @ # / ? (not percent-encoded, as typed into a camera's config)
        ("rtsp://admin:p@ss#w/rd?x@10.0.0.1:554/stream", "rtsp://admin:***@10.0.0.1:554/stream"),
        ("rtsp://u:pa%40ss@h/s?token=abc&channel=1", "rtsp://u:***@h/s?token=***&channel=1"),
        ("http://cam/snap.jpg?user=admin&pwd=secret", "http://cam/snap.jpg?user=***&pwd=***"),
        ("http://cam/a?USERNAME=x&Passwd=y&api_key=z&access_token=t&sig=s&n=1", None),
        ("http://cam/a?apikey=1&key=2&auth=3&secret=4&signature=5&pass=6&password=7", None),
        ("rtsp://u:p w@h/s", "rtsp://u:***@h/s"),  # a space in the password
        ("https://ghp_token@host/x", "https://***@host/x"),  # a lone user part may be a token
        ("http://[::1]:8080/x?X-Amz-Signature=abc&a=b", "http://[::1]:8080/x?X-Amz-Signature=***&a=b"),
        (
            "rtspsrc location=rtsp://u:p@h/live?token=t latency=0 user-pw=hunter2 ! decodebin ! appsink",
            "rtspsrc location=rtsp://u:***@h/live?token=*** latency=0 user-pw=*** ! decodebin ! appsink",
        ),
        (
            'rtspsrc location="rtsp://u:p w@h/live" ! decodebin ! appsink',
            'rtspsrc location="rtsp://u:***@h/live" ! decodebin ! appsink',
        ),
        ("0", "0"),
        ("2", "2"),
        ("/dev/video0", "/dev/video0"),
        ("/data/clips/front door.mp4", "/data/clips/front door.mp4"),
        ("pics/", "pics/"),
        ("nvarguscamerasrc ! nvvidconv ! appsink", "nvarguscamerasrc ! nvvidconv ! appsink"),
        ("rtsp://cam:554/stream?channel=1&subtype=0", "rtsp://cam:554/stream?channel=1&subtype=0"),
    ],
)
def test_redact_hides_userinfo_and_credential_parameters_everywhere(source, shown):
    out = redact(source)
    if shown is not None:
        assert out == shown
    else:  # every credential value masked, the rest kept
        params = out.split("?", 1)[1].split("&")
        assert all(p.endswith("=***") for p in params if not p.startswith("n="))
        assert ("n=1" in params) == ("&n=1" in source)


def test_redact_text_hides_a_url_quoted_in_an_error_message():
    from edgedet.edge.camera.redact import redact_text

    raw = "rtsp://admin:p@ss#w/rd?x@10.0.0.1:554/stream"
    text = f"{raw}: cannot open stream (opencv: could not open rtsp://u:pw@10.0.0.1/x?pwd=z)"
    out = redact_text(text, raw)
    assert out == (  # a URL in free text runs to a space or quote: the value (and the ')') is masked whole
        "rtsp://admin:***@10.0.0.1:554/stream: cannot open stream (opencv: could not open rtsp://u:***@10.0.0.1/x?pwd=***"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("rtsp://host:notaport", "rtsp://host:notaport: port 'notaport' is not a number"),
        ("rtsp://admin:pw@host:notaport/s", "rtsp://admin:***@host:notaport/s: port 'notaport' is not a number"),
        ("rtsp://host:70000/s", "rtsp://host:70000/s: port '70000' is not in 1..65535"),
        ("rtsp:///stream", "rtsp:///stream: no host in the URL"),
    ],
)
def test_a_bad_url_is_a_source_error_naming_the_problem(source, message):
    with pytest.raises(SourceError) as caught:
        open_source(source)
    assert str(caught.value) == message


def test_a_bad_port_names_the_source_key_at_daemon_start(tmp_path):
    from edgedet.edge.camera.config import load_config
    from edgedet.edge.camera.daemon import Daemon

    config = load_config(None, {"model": "unused.onnx", "source": "rtsp://host:notaport", "http.enabled": False})
    with pytest.raises(ValueError, match=r"^source: rtsp://host:notaport: port 'notaport' is not a number$"):
        Daemon(config, detector=object())


def test_video_file_positions_and_end(tmp_path):
    src = VideoFileSource(str(write_video(tmp_path / "v.avi", n=5)))
    assert not src.live and src.fps == pytest.approx(25.0)
    positions = [src.read()[1] for _ in range(5)]
    assert positions == [0, 1, 2, 3, 4]
    with pytest.raises(SourceEnded):
        src.read()
    src.close()


@pytest.mark.parametrize("change", ["removed", "truncated", "replaced"])
def test_video_file_changed_while_open_is_a_source_error(tmp_path, change):
    path = write_video(tmp_path / "v.avi", n=20)
    src = open_source(str(path))
    src.read()
    if change == "removed":
        path.unlink()
    elif change == "truncated":
        os.truncate(path, path.stat().st_size // 2)
    else:
        write_video(tmp_path / "other.avi", n=20)
        os.replace(tmp_path / "other.avi", path)
    with pytest.raises(SourceError, match=change):
        src.read()
    src.close()


def test_unopenable_sources(tmp_path):
    with pytest.raises(SourceError, match="cannot open video"):
        open_source(str(tmp_path / "missing.avi"))
    (tmp_path / "garbage.avi").write_bytes(b"\0" * 1000)
    with pytest.raises(SourceError, match=r"garbage\.avi"):
        src = open_source(str(tmp_path / "garbage.avi"))
        src.read()
    with pytest.raises(SourceError, match="no such camera device"):
        open_source("/dev/video-not-here")
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path))  # a folder holding only garbage.avi


@pytest.mark.skipif(gstreamer_available(), reason="this OpenCV has GStreamer: the error path cannot be seen")
def test_gstreamer_without_support_says_what_to_do():
    with pytest.raises(SourceError, match=r"no GStreamer support.*system-site-packages"):
        open_source("videotestsrc ! videoconvert ! appsink")


def test_image_folder_in_name_order_skipping_broken_images(tmp_path):
    for name, value in (("b.png", 2), ("a.jpg", 1), ("c.png", 3)):
        cv2.imwrite(str(tmp_path / name), np.full((8, 8, 3), value * 40, np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    src = ImageFilesSource(str(tmp_path))
    got = []
    with pytest.raises(SourceEnded):
        while True:
            frame, pos = src.read()
            got.append((pos, int(frame[0, 0, 0])))
    assert got == [(0, 40), (1, 80), (3, 120)]  # a, b, (broken skipped), c
    for name in ("a.jpg", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"broken too")
    with pytest.raises(SourceError, match="none of 4 images could be read"):  # backoff, not a busy loop
        ImageFilesSource(str(tmp_path)).read()


def test_frame_slot_keeps_only_the_newest_and_counts_drops():
    slot = FrameSlot()
    assert slot.take(timeout=0.01) is None
    for i in range(5):
        slot.put(Frame(np.zeros((1, 1, 3), np.uint8), i, None, 0.0))
    got = slot.take(timeout=0.01)
    assert got is not None and got.index == 4 and slot.dropped == 4
    assert slot.take(timeout=0.01) is None  # already taken: wait for a newer one
    threading.Timer(0.05, lambda: slot.put(Frame(np.zeros((1, 1, 3), np.uint8), 5, None, 0.0))).start()
    got = slot.take(timeout=2.0)
    assert got is not None and got.index == 5 and slot.dropped == 4


def test_backoff_doubles_up_to_the_cap():
    b = Backoff(0.5, 3.0)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.reset()
    assert b.next() == 0.5


class FakeSource:
    live = True
    fps = None

    def __init__(self, frames, fail_at_end=True):
        self.frames = frames
        self.fail_at_end = fail_at_end
        self.closed = False

    def read(self):
        if not self.frames:
            if self.fail_at_end:
                raise SourceError("fake camera unplugged")
            raise SourceEnded("end")
        time.sleep(0.002)
        return self.frames.pop(0), None

    def close(self):
        self.closed = True


def wait_until(predicate, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_capture_thread_reconnects_with_backoff_and_never_gives_up(caplog):
    opened: list[FakeSource] = []
    attempts = []

    def opener():
        attempts.append(time.monotonic())
        if len(attempts) in (2, 3):  # the camera is gone for two attempts
            raise SourceError("no camera")
        src = FakeSource([np.zeros((4, 4, 3), np.uint8) for _ in range(3)])
        opened.append(src)
        return src

    slot = FrameSlot()
    thread = CaptureThread(opener, slot, backoff=Backoff(0.02, 0.08))
    thread.start()
    assert wait_until(lambda: thread.reconnects >= 5)
    thread.stop()
    thread.join(timeout=1.0)
    assert not thread.is_alive() and thread.state == "stopped"
    assert all(src.closed for src in opened)
    assert thread.captured >= 3 * (len(opened) - 1)
    gaps = np.diff(attempts[:4])
    assert gaps[1] >= 0.035 and gaps[2] >= 0.075  # 0.02, 0.04, 0.08: doubled, then capped
    assert "source: no camera; reconnecting" in caplog.text and "source: fake camera unplugged" in caplog.text


def test_capture_thread_loops_or_finishes_files(tmp_path):
    path = write_video(tmp_path / "v.avi", n=4)
    slot = FrameSlot()
    looping = CaptureThread(lambda: open_source(str(path)), slot, loop=True, pace_fps=0)
    looping.start()
    assert wait_until(lambda: looping.loops >= 3)
    looping.stop()
    looping.join(timeout=1.0)
    assert looping.reconnects == 0 and looping.captured >= 12

    once = CaptureThread(lambda: open_source(str(path)), FrameSlot(), loop=False, pace_fps=200)
    once.start()
    assert wait_until(lambda: once.state == "finished")
    assert once.captured == 4 and once.stalled_for() < 1.0
    t0 = time.monotonic()
    once.stop()
    once.join(timeout=1.0)
    assert not once.is_alive() and time.monotonic() - t0 < 1.0


def test_a_looping_still_image_is_one_scene_and_a_folder_is_not(tmp_path):
    """One image file replayed is the same scene (its objects must not end at each loop, or a still image
    never yields object events); a folder or a video that starts again is a new scene."""
    image = np.full((24, 32, 3), 90, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    cv2.imwrite(str(tmp_path / "b.png"), image)
    for path, still in ((tmp_path / "a.png", True), (tmp_path, False)):
        thread = CaptureThread(lambda p=path: open_source(str(p)), FrameSlot(), loop=True, pace_fps=0)
        thread.start()
        assert wait_until(lambda t=thread: t.loops >= 3)
        thread.stop()
        thread.join(timeout=1.0)
        assert (thread.scene_loops == 0) == still and thread.scene_loops <= thread.loops


def test_files_are_paced_at_their_frame_rate(tmp_path):
    path = write_video(tmp_path / "v.avi", n=10, fps=50.0)
    thread = CaptureThread(lambda: open_source(str(path)), FrameSlot(), loop=False)
    t0 = time.monotonic()
    thread.start()
    assert wait_until(lambda: thread.state == "finished")
    assert time.monotonic() - t0 >= 9 / 50 - 0.01
    thread.stop()


def test_unreadable_images_in_a_looping_folder_are_reported_once(tmp_path, caplog, monkeypatch):
    import edgedet.edge.camera.sources as sources

    monkeypatch.setattr(sources, "_skip_warned", {})
    for name in ("a.png", "c.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "b.png").write_bytes(b"not an image")
    caplog.set_level("WARNING", logger="edgedet.edge.camera.sources")
    for _ in range(5):  # five passes, as a looping folder source re-opens it
        src = open_source(str(tmp_path))
        with pytest.raises(SourceEnded):
            while True:
                src.read()
        src.close()
    skips = [r for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skips) == 1 and "b.png" in skips[0].getMessage()


def test_source_error_is_cleared_once_frames_flow_again():
    attempts = []

    def opener():
        attempts.append(1)
        if len(attempts) <= 2:
            raise SourceError("rtsp://u:***@cam/live: cannot open stream")
        return FakeSource([np.zeros((4, 4, 3), np.uint8) for _ in range(1000)], fail_at_end=True)

    thread = CaptureThread(opener, FrameSlot(), backoff=Backoff(0.02, 0.05))
    thread.start()
    try:
        assert wait_until(lambda: thread.last_error is not None)
        assert "cannot open stream" in thread.last_error
        assert wait_until(lambda: thread.captured >= 3)
        assert thread.last_error is None and thread.state == "streaming"
    finally:
        thread.stop()
        thread.join(timeout=1.0)

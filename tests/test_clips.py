"""Event clips (``edge/camera/clips.py``): real files written by OpenCV and read back frame by frame — the
pre-roll is in, the post-roll stops where it should, the duration follows the timestamps; retention; a full,
read-only or missing folder; ``close()`` mid-clip; a resolution change; a full queue."""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedet.edge.camera import clips
from edgedet.edge.camera.clips import (
    BufferedFrame,
    ClipRecorder,
    ClipSettings,
    FrameRing,
    clip_url,
    draw_overlay,
    video_format,
)
from edgedet.edge.camera.snapshots import prune_files

T0 = 1_700_000_000.0
FPS = 10.0
SIZE = (160, 120)  # width, height


def frame(i: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A frame that tells its index (0-255) back through the codec: 8 vertical stripes, the bits of ``i``
    (light grey: 1, dark grey: 0)."""
    w = size[0] // 8
    image = np.full((size[1], size[0], 3), 30, np.uint8)
    for bit in range(8):
        if i >> bit & 1:
            image[:, bit * w : (bit + 1) * w] = 160
    return image


def index_of(image: np.ndarray) -> int:
    w = image.shape[1] // 8
    return sum(1 << bit for bit in range(8) if image[:, bit * w + w // 4 : (bit + 1) * w - w // 4].mean() > 95)


def read_clip(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, fps


def event(kind: str, event_id: str, i: int, camera: str = "cam", **extra) -> dict:
    return {"type": kind, "id": event_id, "camera": camera, "timestamp": T0 + i / FPS, "box": [1, 2, 3, 4], **extra}


def settings(tmp_path: Path, **kw) -> ClipSettings:
    values = {"enabled": True, "dir": str(tmp_path / "clips"), "pre_s": 1.0, "post_s": 1.0, "min_free_bytes": 0}
    return ClipSettings(**(values | kw))


@pytest.fixture
def recorder(tmp_path):
    made: list[ClipRecorder] = []

    def make(**kw) -> ClipRecorder:
        rec = ClipRecorder(settings(tmp_path, **kw), camera="cam")
        made.append(rec)
        return rec

    yield make
    for rec in made:
        rec.close()


def feed(rec: ClipRecorder, indices, events=None, size=SIZE) -> None:
    """Frames ``indices`` at 10 fps, each followed by its events, as the daemon calls them."""
    events = events or {}
    for i in indices:
        assert rec.on_frame(T0 + i / FPS, frame(i, size))
        for ev in events.get(i, ()):
            rec.on_event(ev)
        assert rec.flush()


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_this_opencv_writes_mp4():
    assert video_format() == ("mp4v", ".mp4")  # the fallback, ("MJPG", ".avi"), where FFmpeg cannot


def test_clip_holds_the_preroll_and_the_postroll(recorder, tmp_path):
    rec = recorder()
    feed(rec, range(21), {20: [event("new", "r-1", 20)]})
    assert rec.clip_path("r-1") == "/events/r-1/clip.mp4" and rec.clip_file("r-1") is None
    feed(rec, range(21, 46), {35: [event("update", "r-1", 35), event("end", "r-1", 35)]})
    assert rec.clip_file("r-1") is None  # post-roll: up to frame 45 (end + 1 s)
    assert names(tmp_path / "clips") == [".r-1.part.mp4"]
    feed(rec, [46])
    path = rec.clip_file("r-1")
    assert path == tmp_path / "clips" / "r-1.mp4" and names(tmp_path / "clips") == ["r-1.mp4"]
    frames, fps = read_clip(path)
    assert fps == pytest.approx(FPS)  # measured on the ring's frames
    assert [index_of(f) for f in frames] == list(range(10, 46))  # 1 s before new ... 1 s after end
    assert frames[0].shape == (SIZE[1], SIZE[0], 3)
    assert rec.stats()["clips_written"] == 1 and rec.clip_path("r-1") == "/events/r-1/clip.mp4"
    assert rec.stats()["clips_failed"] == rec.stats()["frames_dropped"] == rec.stats()["errors"] == 0


def test_live_frames_wait_behind_the_preroll_in_order(recorder):
    rec = recorder(pre_s=3.0, post_s=0.5, queue_frames=100)
    feed(rec, range(31), {30: [event("new", "burst", 30)]})
    assert rec.stats()["frames_buffered"] == 31
    for i in range(31, 51):  # no waiting: frames come while the pre-roll is being written
        assert rec.on_frame(T0 + i / FPS, frame(i))
        if i == 40:
            rec.on_event(event("end", "burst", 40))
    assert rec.flush()
    frames, _ = read_clip(rec.clip_file("burst"))
    assert [index_of(f) for f in frames] == list(range(46))
    assert rec.stats()["frames_dropped"] == 0 and rec.stats()["frames_backlog"] == 0


def test_duration_follows_the_timestamps(recorder):
    rec = recorder(pre_s=0.0, post_s=0.0, fps=10.0)
    # frames 5-9 and 20-22 never come (a stall); one more comes 0.04 s after frame 30
    feed(rec, [*range(0, 5), *range(10, 20), *range(23, 31)], {0: [event("new", "a", 0)]})
    assert rec.on_frame(T0 + 3.04, frame(50))
    feed(rec, [31], {31: [event("end", "a", 31)]})
    feed(rec, [32])
    frames, _ = read_clip(rec.clip_file("a"))
    assert len(frames) == 32  # 3.1 s at 10 fps, frames 0 to 31: the gaps repeat the frame before them
    got = [index_of(f) for f in frames]
    assert got[:5] == [0, 1, 2, 3, 4] and got[5:10] == [4] * 5 and got[20:23] == [19] * 3
    assert got[-2:] == [30, 31] and 50 not in got  # the early frame had no slot of its own


def test_overlay_boxes_and_callables(recorder):
    image = np.zeros((120, 160, 3), np.uint8)
    boxed = draw_overlay(image, clips._normalise([{"box": [10, 10, 60, 60], "label": "person", "track_id": 3}]))
    assert boxed is not image and boxed[10, 30].tolist() == [0, 200, 0] and image.max() == 0
    assert draw_overlay(image, None) is image

    def white(img: np.ndarray) -> None:
        img[:60] = 255

    rec = recorder(pre_s=0.5, post_s=0.0)
    for i in range(10):
        rec.on_frame(T0 + i / FPS, frame(i), overlay=white if i % 2 else [(20, 20, 100, 100)])
        if i == 5:
            rec.on_event(event("new", "b", 5))
        rec.flush()
    rec.on_event(event("end", "b", 9))
    rec.close()
    frames, _ = read_clip(rec.clip_file("b"))
    assert len(frames) == 10  # 0.5 s of pre-roll (frames 0-4), new at 5, through 9
    assert all(f[:60].mean() > 235 for f in frames[1::2])  # odd frames: the callable's white band
    assert all(f[:60].mean() < 200 for f in frames[0::2])


def test_retention_deletes_the_oldest_never_the_clip_being_written(recorder, tmp_path):
    rec = recorder(pre_s=0.0, post_s=0.0, max_bytes=1)
    feed(rec, range(3), {0: [event("new", "live", 0)]})  # being written (its first prune is done)
    folder = tmp_path / "clips"
    now = time.time()
    for name, age in (("old.mp4", 200), ("older.mp4", 300), ("new.mp4", 100)):
        (folder / name).write_bytes(b"x" * 1000)
        os.utime(folder / name, (now - age, now - age))
    (folder / "snap.jpg").write_bytes(b"x" * 1000)  # not a clip: never touched
    stale = folder / ".dead.part.mp4"  # left by a process that was killed
    stale.write_bytes(b"x")
    os.utime(stale, (now - 10_000, now - 10_000))
    deleted = rec.prune()
    assert [p.name for p in deleted] == [".dead.part.mp4", "older.mp4", "old.mp4", "new.mp4"]
    assert names(folder) == [".live.part.mp4", "snap.jpg"]


def test_retention_by_age_and_the_shared_pruning(tmp_path):
    now = time.time()
    files = []
    for name, age in (("a.mp4", 50), ("b.mp4", 500), ("c.mp4", 5000)):
        path = tmp_path / name
        path.write_bytes(b"x" * 10)
        os.utime(path, (now - age, now - age))
        files.append(path)
    deleted = prune_files(files, max_bytes=0, max_age_s=1000, now=now, keep=lambda p: False)
    assert deleted == [tmp_path / "c.mp4"]
    deleted = prune_files(files[:2], max_bytes=15, max_age_s=0, now=now, keep=lambda p: p.name == "b.mp4")
    assert deleted == [tmp_path / "a.mp4"]  # b is older but kept; kept files still count


def test_a_full_disk_stops_the_clip_counts_and_logs(recorder, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="edgedet.edge.camera.clips")
    rec = recorder(pre_s=0.5)
    calls = {"n": 0}
    real_write = clips._VideoFile.write

    def write(self, image):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, image)

    monkeypatch.setattr(clips._VideoFile, "write", write)
    feed(rec, range(10), {5: [event("new", "full", 5)]})
    assert rec.stats()["clips_failed"] == 1 and rec.stats()["clips_recording"] == 0
    assert rec.clip_path("full") is None and rec.clip_file("full") is None
    assert names(tmp_path / "clips") == []  # the partial file is gone
    assert "ENOSPC" in caplog.text and "detection goes on" in caplog.text
    feed(rec, range(10, 12), {10: [event("end", "full", 10)]})  # its end: nothing to do
    monkeypatch.setattr(clips._VideoFile, "write", real_write)
    feed(rec, range(12, 16), {12: [event("new", "next", 12), event("end", "next", 12)]})
    feed(rec, range(16, 30))
    assert rec.clip_file("next") is not None and rec.stats()["clips_written"] == 1


def test_low_free_space_is_a_full_disk(recorder, tmp_path):
    rec = recorder(min_free_bytes=10**18)  # more than any disk has free
    feed(rec, range(5), {2: [event("new", "x", 2)]})
    assert rec.stats()["clips_failed"] == 1 and "ENOSPC" in rec.last_error
    assert rec.clip_path("x") is None and names(tmp_path / "clips") == []


def test_an_unwritable_folder_fails_the_clip_not_the_caller(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the folder should be: no folder can be made, even by root
    rec = ClipRecorder(ClipSettings(enabled=True, dir=str(blocker / "clips"), min_free_bytes=0), camera="cam")
    try:
        feed(rec, range(5), {1: [event("new", "x", 1)]})
        assert rec.stats()["clips_failed"] == 1 and rec.stats()["errors"] == 1
        assert rec.clip_file("x") is None and rec.prune() == []
    finally:
        assert rec.close()


def test_a_read_only_folder_fails_the_clip(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except PermissionError:
        pass
    else:  # root (CAP_DAC_OVERRIDE) writes anyway
        folder.chmod(0o755)
        pytest.skip("chmod does not stop this user from writing (root)")
    rec = ClipRecorder(ClipSettings(enabled=True, dir=str(folder), min_free_bytes=0), camera="cam")
    try:
        feed(rec, range(5), {1: [event("new", "x", 1)]})
        assert rec.stats()["clips_failed"] == 1 and "EACCES" in rec.last_error
    finally:
        rec.close()
        folder.chmod(0o755)


def test_close_mid_clip_leaves_a_playable_clip_and_no_partial(recorder, tmp_path):
    rec = recorder(post_s=30.0)
    feed(rec, range(20), {12: [event("new", "open", 12)], 15: [event("new", "ending", 15)]})
    rec.on_event(event("end", "ending", 19))  # 30 s of post-roll to go
    assert rec.clip_file("open") is None and rec.clip_file("ending") is None
    assert rec.close() and rec.close()  # idempotent
    assert names(tmp_path / "clips") == ["ending.mp4", "open.mp4"]
    assert [index_of(f) for f in read_clip(rec.clip_file("open"))[0]] == list(range(2, 20))
    assert [index_of(f) for f in read_clip(rec.clip_file("ending"))[0]] == list(range(5, 20))
    assert not rec.on_frame(T0 + 3, frame(30))  # closed
    rec.on_event(event("new", "late", 30))
    assert rec.clip_path("late") is None


def test_a_clip_without_frames_leaves_nothing(recorder, tmp_path):
    rec = recorder(pre_s=0.0)
    rec.on_event(event("new", "empty", 0))
    assert rec.close()
    assert names(tmp_path / "clips") == [] and rec.clip_path("empty") is None
    assert rec.stats()["clips_written"] == rec.stats()["clips_failed"] == 0


def test_resolution_change_finishes_the_clip_and_goes_on(recorder):
    rec = recorder()
    feed(rec, range(15), {12: [event("new", "before", 12)]})
    feed(rec, range(15, 25), size=(320, 240))  # the camera came back at another size
    assert rec.stats()["clips_written"] == 1 and rec.stats()["errors"] == 0
    frames, _ = read_clip(rec.clip_file("before"))
    assert [index_of(f) for f in frames] == list(range(2, 15)) and frames[0].shape == (120, 160, 3)
    assert rec.stats()["frames_buffered"] == 10  # the ring restarted at the new size: frames 15-24
    feed(rec, range(25, 40), {26: [event("new", "after", 26), event("end", "after", 26)]}, size=(320, 240))
    frames, _ = read_clip(rec.clip_file("after"))
    assert frames[0].shape == (240, 320, 3) and [index_of(f) for f in frames] == list(range(16, 37))


def test_time_going_back_finishes_the_clip(recorder):
    rec = recorder()
    feed(rec, range(30, 40), {35: [event("new", "loop", 35)]})
    feed(rec, range(0, 3))  # a video source restarted from its start
    assert rec.clip_file("loop") is not None and rec.stats()["frames_buffered"] == 3


def test_a_full_queue_drops_frames_and_counts_them(recorder, monkeypatch):
    rec = recorder(queue_frames=3)
    gate = threading.Event()
    real = ClipRecorder._frame

    def slow(self, *args):
        gate.wait(10)
        real(self, *args)

    monkeypatch.setattr(ClipRecorder, "_frame", slow)
    started = time.perf_counter()
    results = [rec.on_frame(T0 + i / FPS, frame(i)) for i in range(10)]
    assert time.perf_counter() - started < 0.5  # never blocks
    gate.set()
    assert rec.flush()
    # the thread took the first frame (or not yet) and three waited: 6 or 7 dropped
    assert results[:3] == [True] * 3 and results.count(False) in (6, 7)
    assert rec.stats()["frames_dropped"] == results.count(False)


def test_concurrent_clips_are_capped_and_ids_checked(recorder):
    rec = recorder(max_concurrent=2)
    feed(rec, range(3), {1: [event("new", "a", 1), event("new", "b", 1), event("new", "c", 1)]})
    assert rec.stats()["clips_skipped"] == 1 and rec.clip_path("c") is None
    assert rec.stats()["clips_recording"] == 2
    rec.on_event(event("new", "../x", 2))
    rec.on_event(event("new", ".a.part", 2))
    rec.on_event(event("new", "other-cam", 2, camera="garden"))
    rec.on_event({"type": "new"})
    assert rec.stats()["clips_recording"] == 2 and rec.clip_path("other-cam") is None
    assert rec.clip_file("../etc/passwd") is None and rec.clip_file(".a.part") is None
    assert clip_url("a") == "/events/a/clip.mp4"


def test_bad_overlays_never_reach_the_caller(recorder):
    rec = recorder(pre_s=0.0)

    def broken(img):
        raise RuntimeError("boom")

    rec.on_event(event("new", "o", 0))
    assert rec.on_frame(T0, frame(0), overlay=[{"no box": 1}])
    assert rec.on_frame(T0 + 0.1, frame(1), overlay=broken)
    assert rec.flush() and rec.stats()["errors"] == 2
    rec.close()
    assert len(read_clip(rec.clip_file("o"))[0]) == 2


def test_the_ring_is_bounded_by_time_and_bytes():
    ring = FrameRing(pre_s=1.0, max_bytes=10_000)
    for i in range(30):
        ring.append(BufferedFrame(T0 + i / FPS, np.zeros(100, np.uint8)))
    assert len(ring) == 11 and ring.bytes == 1100 and ring.seconds == pytest.approx(1.0)
    assert ring.frame_rate() == pytest.approx(FPS)
    assert [f.t for f in ring.since(T0 + 2.5)] == [T0 + i / FPS for i in range(25, 30)]
    for i in range(30, 40):
        ring.append(BufferedFrame(T0 + i / FPS, np.zeros(3000, np.uint8)))
    assert ring.bytes <= 10_000 and len(ring) == 3
    ring.clear()
    assert len(ring) == 0 and ring.bytes == 0 and ring.frame_rate() is None


def test_settings():
    s = ClipSettings()
    assert not s.enabled and s.dir is None and s.pre_s == 5.0 and s.post_s == 5.0
    with pytest.raises(ValueError, match="required when `enabled` is true"):
        ClipSettings(enabled=True)
    with pytest.raises(ValueError):
        ClipSettings(pre_s=-1)
    with pytest.raises(ValueError):
        ClipSettings(unknown=1)
    with pytest.raises(ValueError, match="no folder"):
        ClipRecorder(ClipSettings())
    assert all(f.description for f in ClipSettings.model_fields.values())


def test_bench_clips_runs_short(tmp_path, capsys):
    from edgedet.cli import main

    out = tmp_path / "clips.json"
    assert (
        main(
            [
                "bench",
                "clips",
                "--seconds",
                "3",
                "--pre-s",
                "0.5",
                "--post-s",
                "0.5",
                "--size",
                "320x240",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "buffering" in printed and "goal" in printed
    figures = json.loads(out.read_text())
    assert figures["figures"]["buffering"]["cpu_share"] > 0
    assert figures["figures"]["ring"]["bytes_per_s"] > 0
    assert figures["figures"]["writing"]["clips_written"] >= 1

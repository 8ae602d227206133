"""Motion detection and the motion gate on synthetic scenes: noise is no motion, a moving square is, global
brightness flicker is not, masked motion is ignored; the gate runs on motion, tracks and every refresh_s
(fake time), and counts what it skipped."""

from __future__ import annotations

from typing import Annotated

import cv2
import numpy as np
import pytest

from edgedet.edge.camera.motion import MotionDetector, MotionGate, MotionSettings
from edgedet.edge.camera.zones import ConfigCheckError
from edgedet.edge.runtime.settings import SectionInput, StrictModel, section, validate

H, W = 480, 640


class Scene:
    """A textured static background with sensor noise, a square that can be placed, and brightness."""

    def __init__(self, seed: int = 0, sigma: float = 4.0) -> None:
        self.rng = np.random.default_rng(seed)
        self.sigma = sigma
        yy, xx = np.mgrid[0:H, 0:W]
        self.base = 110 + 50 * np.sin(xx / 37.0) * np.cos(yy / 23.0) + 25 * ((xx // 40 + yy // 40) % 2)

    def frame(self, square=None, gain: float = 1.0, offset: float = 0.0, size: int = 60) -> np.ndarray:
        img = self.base.copy()
        if square is not None:
            x, y = square
            img[y : y + size, x : x + size] = 235
        img = img * gain + offset + self.rng.normal(0, self.sigma, img.shape)
        grey = np.clip(img, 0, 255).astype(np.uint8)
        return cv2.merge([grey, grey, grey])


def warm(detector: MotionDetector, scene: Scene, n: int = 10) -> None:
    for _ in range(n):
        assert not detector.detect(scene.frame()).motion


def test_a_static_scene_with_noise_has_no_motion():
    scene = Scene(sigma=6.0)
    detector = MotionDetector(MotionSettings(enabled=True))
    results = [detector.detect(scene.frame()) for _ in range(60)]
    assert not any(r.motion for r in results)
    assert max(r.changed for r in results) < 0.001


def test_a_moving_square_is_motion_where_it_moves():
    scene = Scene()
    detector = MotionDetector(MotionSettings(enabled=True))
    warm(detector, scene)
    for step in range(15):
        x, y = 100 + 12 * step, 200
        result = detector.detect(scene.frame(square=(x, y)))
        assert result.motion and 0 < result.area < 0.1
        assert any(x1 <= x + 30 <= x2 and y1 <= y + 30 <= y2 for x1, y1, x2, y2 in result.boxes), result.boxes
    # it stops: the background takes it in and the motion dies down
    still = [detector.detect(scene.frame(square=(x, y))).motion for _ in range(120)]
    assert still[0] and not any(still[-20:])


def test_a_small_square_under_min_area_is_not_motion():
    scene = Scene()
    detector = MotionDetector(MotionSettings(enabled=True, min_area=0.01))  # ~3000 px at 640x480
    warm(detector, scene)
    assert not any(detector.detect(scene.frame(square=(100 + 8 * i, 100), size=30)).motion for i in range(5))
    assert all(detector.detect(scene.frame(square=(300 + 8 * i, 100), size=90)).motion for i in range(5))


@pytest.mark.parametrize(
    ("gain", "offset"), [(1.3, 0), (0.7, 0), (1.0, 40), (1.0, -40), (1.25, -15), (0.8, 20)], ids=str
)
def test_a_global_brightness_change_is_not_motion(gain, offset):
    scene = Scene()
    detector = MotionDetector(MotionSettings(enabled=True))
    warm(detector, scene)
    flicker = [detector.detect(scene.frame(gain=g, offset=o)) for g, o in [(gain, offset), (1, 0)] * 5]
    assert not any(r.motion or r.lighting for r in flicker)  # normalised away: not even a lighting change


def test_flicker_does_not_hide_a_moving_square():
    scene = Scene()
    detector = MotionDetector(MotionSettings(enabled=True))
    warm(detector, scene)
    gains = [1.3, 0.75, 1.2, 0.8, 1.0, 1.25]
    assert all(detector.detect(scene.frame(square=(100 + 15 * i, 150), gain=g)).motion for i, g in enumerate(gains))


def test_without_normalising_flicker_is_a_lighting_change_not_motion():
    scene = Scene()
    detector = MotionDetector(MotionSettings(enabled=True, normalize=False))
    warm(detector, scene)
    first = detector.detect(scene.frame(gain=1.4))
    assert first.lighting and not first.motion and first.changed > 0.8
    # the background was reset to the new light: no motion after it either
    assert not any(detector.detect(scene.frame(gain=1.4)).motion for _ in range(5))


def test_motion_under_a_mask_is_ignored():
    scene = Scene()
    mask = {"name": "clock", "polygon": [[0, 0], [320, 0], [320, 480], [0, 480]]}
    masked = MotionDetector(MotionSettings.model_validate({"enabled": True, "masks": [mask]}))
    normalized = {"polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "normalized": True}
    masked_norm = MotionDetector(MotionSettings.model_validate({"enabled": True, "masks": [normalized]}))
    plain = MotionDetector(MotionSettings(enabled=True))
    for d in (masked, masked_norm, plain):
        warm(d, scene)
    left = [scene.frame(square=(60 + 12 * i, 200)) for i in range(10)]  # moves inside the masked half
    assert not any(masked.detect(f).motion or masked_norm.detect(f).motion for f in left)
    assert all(plain.detect(f).motion for f in left)
    right = [scene.frame(square=(400 + 12 * i, 200)) for i in range(10)]
    assert all(masked.detect(f).motion and masked_norm.detect(f).motion for f in right)


def test_grey_and_bgra_frames_and_a_new_frame_size_work():
    scene = Scene()
    detector = MotionDetector(MotionSettings(enabled=True))
    grey = scene.frame()[..., 0]
    assert not detector.detect(grey).motion and not detector.detect(scene.frame()[..., 0]).motion
    grey_square = scene.frame(square=(200, 200))[..., 0]
    assert detector.detect(grey_square).motion
    bgra = cv2.cvtColor(scene.frame(), cv2.COLOR_BGR2BGRA)
    assert not detector.detect(bgra).motion  # grey -> colour starts a new background, as a new size does
    assert detector.detect(cv2.cvtColor(scene.frame(square=(200, 200)), cv2.COLOR_BGR2BGRA)).motion
    small = cv2.resize(scene.frame(), (320, 240))
    assert not detector.detect(small).motion  # a new size starts a new background
    assert not detector.detect(cv2.resize(scene.frame(), (320, 240))).motion


# --- the gate ------------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_gating_off_runs_every_frame():
    gate = MotionGate(MotionSettings(enabled=False))
    scene = Scene()
    decisions = [gate.check(scene.frame()) for _ in range(5)]
    assert all(d.run and d.reason == "always" and d.motion is None for d in decisions)
    assert gate.counts() == {
        "run": {"always": 5, "motion": 0, "tracks": 0, "refresh": 0},
        "skip": {"static": 0, "lighting": 0},
    }


def test_the_gate_runs_on_motion_tracks_and_refresh_and_skips_static_frames():
    clock = FakeClock()
    gate = MotionGate(MotionSettings(enabled=True, refresh_s=5.0), clock=clock)
    scene = Scene()

    def step(dt: float = 0.1, **kw):
        clock.now += dt
        d = gate.check(scene.frame(square=kw.pop("square", None)), **kw)
        return d.run, d.reason

    assert step() == (True, "refresh")  # the first frame always runs
    assert [step() for _ in range(10)] == [(False, "static")] * 10
    assert step(tracks_active=True) == (True, "tracks")
    assert step() == (False, "static")
    assert step(square=(100, 100)) == (True, "motion")
    assert step(square=(130, 100), tracks_active=True) == (True, "motion")  # motion is named first
    for _ in range(80):  # the square stands still until the background takes it in
        step(square=(130, 100))
    assert step(square=(130, 100)) == (False, "static")
    clock.now += 5.0  # refresh_s since the last run
    assert step(0.0, square=(130, 100)) == (True, "refresh")
    assert step(square=(130, 100)) == (False, "static")
    counts = gate.counts()
    assert counts["run"]["refresh"] >= 2 and counts["run"]["tracks"] == 1 and counts["run"]["motion"] >= 2
    assert counts["skip"]["static"] >= 12 and counts["skip"]["lighting"] == 0
    assert sum(counts["run"].values()) + sum(counts["skip"].values()) == 1 + 10 + 1 + 1 + 2 + 80 + 1 + 2


def test_the_refresh_counts_from_the_last_run_not_the_last_refresh():
    clock = FakeClock()
    gate = MotionGate(MotionSettings(enabled=True, refresh_s=2.0), clock=clock)
    scene = Scene()
    assert gate.check(scene.frame()).reason == "refresh"
    clock.now += 1.5
    assert gate.check(scene.frame(), tracks_active=True).reason == "tracks"
    clock.now += 1.5  # 3 s after the refresh, 1.5 s after the last run
    assert gate.check(scene.frame()).reason == "static"
    clock.now += 0.5
    assert gate.check(scene.frame()).reason == "refresh"
    gate.reset()
    assert gate.check(scene.frame(), now=clock.now).reason == "refresh"  # after a reset the next frame runs


def test_a_lighting_change_is_skipped_with_its_own_reason():
    clock = FakeClock()
    gate = MotionGate(MotionSettings(enabled=True, normalize=False), clock=clock)
    scene = Scene()
    gate.check(scene.frame())
    decision = gate.check(scene.frame(gain=1.5))
    assert (decision.run, decision.reason) == (False, "lighting") and decision.motion.lighting
    assert gate.counts()["skip"]["lighting"] == 1


# --- settings ----------------------------------------------------------------------------------------------


class Camera(StrictModel):
    motion: Annotated[MotionSettings, SectionInput] = section(MotionSettings, "motion gating")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"blur": 4}, "motion.blur: expected an odd kernel size, got 4"),
        ({"width": 8}, "motion.width: expected an integer in 32..1280"),
        ({"min_area": 0}, "motion.min_area: expected a number > 0 and <= 1"),
        ({"refresh_s": -1}, "motion.refresh_s: expected a number > 0"),
        ({"enabled": "yes"}, "motion.enabled: expected true or false"),
        (
            {"masks": [{"polygon": [[0, 0], [10, 10], [10, 0], [0, 10]]}]},
            "motion.masks.0.polygon: not a simple polygon",
        ),
        ({"masks": [{"polygon": [[0, 0], [1, 0]]}]}, "motion.masks.0.polygon: expected at least 3 points"),
        ({"masks": [{"polygon": [[0, 0], [1, 0], [1, 1]], "anchor": "center"}]}, "motion.masks.0.anchor: unknown key"),
    ],
)
def test_bad_motion_configs_name_the_key(data, message):
    with pytest.raises(ValueError, match=r"^camera\.yaml: ") as info:
        validate(Camera, {"motion": data}, "camera.yaml")
    assert message in str(info.value)


def test_a_mask_off_the_frame_is_named_when_the_first_frame_comes():
    cfg = validate(
        Camera, {"motion": {"enabled": True, "masks": [{"name": "tree", "polygon": [[0, 0], [900, 0], [0, 10]]}]}}, "c"
    )
    detector = MotionDetector(cfg.motion)
    with pytest.raises(ConfigCheckError, match=r"^motion\.masks\.0\.polygon: polygon 'tree': point 1 \(900, 0\)"):
        detector.detect(Scene().frame())
    assert validate(Camera, {"motion": None}, "c").motion == MotionSettings()


@pytest.mark.parametrize("colour", [True, False])
def test_an_object_as_bright_as_the_background_moves_only_in_colour(colour):
    """Same grey level, different hue: only the colour comparison (the default) sees it."""
    background = np.full((240, 320, 3), (40, 160, 90), np.uint8)
    patch = (200, 100, 170)  # BGR: purple on green
    grey = cv2.cvtColor(np.array([[background[0, 0], patch]], np.uint8), cv2.COLOR_BGR2GRAY)[0]
    assert abs(int(grey[0]) - int(grey[1])) < 10  # well under the threshold of 25
    detector = MotionDetector(MotionSettings(enabled=True, colour=colour, normalize=False))
    assert not detector.detect(background).motion
    frame = background.copy()
    frame[100:140, 100:140] = patch
    assert detector.detect(frame).motion is colour

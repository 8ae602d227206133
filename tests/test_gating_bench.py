"""``edgedet bench gating``: real short runs of the motion-gating / object-events benchmark on a synthetic video."""

from __future__ import annotations

import json

import pytest

from edgedet.cli import build_parser, main
from edgedet.edge.bench import gating_bench
from edgedet.edge.camera.motion import MotionSettings
from edgedet.edge.camera.objects import ObjectSettings
from edgedet.edge.datasets.synthetic_tracks import noisy_detections

SEED = 0


@pytest.fixture(scope="module")
def video():
    """12 s at 10 fps, 320x240; nothing moves from 6.6 s to 11.6 s."""
    return gating_bench.make_video(12.0, 10.0, (320, 240), SEED, still_s=5.0)


@pytest.fixture(scope="module")
def detections(video):
    return noisy_detections(video, SEED)


@pytest.fixture(scope="module")
def defaults(video, detections):
    """The daemon's settings, gating on."""
    return gating_bench.bench_gating(video, detections, video.classes)


@pytest.fixture(scope="module")
def quick(video, detections):
    """A background that forgets fast and objects that turn stationary after a second: the still stretch
    can be skipped within this short video."""
    return gating_bench.bench_gating(
        video,
        detections,
        video.classes,
        motion=MotionSettings(enabled=True, alpha=0.2),
        objects=ObjectSettings(stationary_s=1.0),
    )


def test_ungated_runs_every_frame(video, defaults, quick):
    for fig in (defaults, quick):
        u = fig["ungated"]
        assert u["frames"] == len(video.frames)
        assert u["skipped"] == 0 and u["still_skipped"] == 0
        assert u["processed"] == u["frames"]
        assert u["decisions"]["run"]["always"] == u["frames"]
        assert sum(u["decisions"]["skip"].values()) == 0


def test_gated_skips_most_of_the_still_stretch(video, quick):
    g = quick["gated"]
    start, end = video.still
    assert g["still_frames"] == sum(start <= f.t < end for f in video.truth) > 0
    assert quick["still_skipped_share"] == g["still_skipped"] / g["still_frames"]
    assert quick["still_skipped_share"] > 0.5
    assert g["still_decisions"].get("static", 0) + g["still_decisions"].get("lighting", 0) == g["still_skipped"]
    # outside the still stretch things move: most frames run
    moving_frames = g["frames"] - g["still_frames"]
    assert g["skipped"] - g["still_skipped"] < moving_frames / 2


def test_skip_counts_are_consistent(defaults, quick):
    for fig in (defaults, quick):
        g = fig["gated"]
        assert 0 <= g["still_skipped"] <= g["skipped"] <= g["frames"]
        assert g["processed"] + g["skipped"] == g["frames"]
        assert sum(g["decisions"]["skip"].values()) == g["skipped"]
        assert sum(g["decisions"]["run"].values()) == g["processed"]
        assert sum(g["still_decisions"].values()) == g["still_frames"]
        assert fig["skipped_share"] == g["skipped"] / g["frames"]
        assert 0.0 <= fig["still_skipped_share"] <= 1.0


def test_recall_loss_matches_the_covered_counts(video, defaults, quick):
    gt = sum(len(f.boxes) for f in video.truth)
    for fig in (defaults, quick):
        u, g = fig["ungated"], fig["gated"]
        assert u["gt"] == g["gt"] == gt > 0
        assert 0 <= u["covered"] <= gt and 0 <= g["covered"] <= gt
        assert u["still_covered"] <= u["still_gt"] and g["still_covered"] <= g["still_gt"]
        assert fig["recall_lost_pct"] == pytest.approx(100.0 * (u["covered"] - g["covered"]) / gt)
        assert fig["recall_ungated"] == pytest.approx(u["covered"] / gt)
        assert fig["recall_gated"] == pytest.approx(g["covered"] / gt)
        assert fig["recall_ungated"] > 0.8  # noisy ground truth: tracks cover nearly every object


def test_messages_per_frame_against_object_events(video, defaults, quick):
    minutes = len(video.frames) / video.fps / 60.0
    for fig in (defaults, quick):
        u, g = fig["ungated"], fig["gated"]
        assert u["frame_messages"] == u["processed"] == len(video.frames)
        assert g["frame_messages"] == g["processed"]
        assert u["frame_messages_nonempty"] <= u["frame_messages"]
        assert fig["per_minute"]["ungated"]["frame_messages"] == pytest.approx(u["frame_messages"] / minutes)
        assert fig["per_minute"]["gated"]["object_events"] == pytest.approx(g["object_events"] / minutes)
        for p in (u, g):
            assert p["object_events"] == sum(p["events"].values()) > 0
            assert p["events"]["new"] == p["events"]["end"] > 0  # every object ends (at the latest at the stop)
            assert p["object_events"] * 3 < u["frame_messages"]  # objects, not frames


def test_the_cli_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "sub" / "gating.json"
    argv = ["bench", "gating", "--seconds", "6", "--fps", "8", "--size", "160x120", "--still-s", "2"]
    args = build_parser().parse_args([*argv, "--json", str(out)])
    assert args._command.handler == "edgedet.edge.bench.gating_bench:cli"
    assert main([*argv, "--json", str(out), "--stationary-s", "1"]) == 0
    text = capsys.readouterr().out
    assert "object events / min" in text and "goal >= 70% of inferences skipped" in text
    figures = json.loads(out.read_text())
    fig = figures["figures"]
    assert fig["ungated"]["frames"] == fig["gated"]["frames"] == 48
    assert fig["object_settings"]["stationary_s"] == 1.0
    assert fig["motion_settings"]["enabled"] is True
    assert len(figures["goals"]) == 2 and all(("met" in line) for line in figures["goals"])


def test_the_cli_rejects_bad_input(tmp_path, capsys):
    assert main(["bench", "gating", "--seconds", "4", "--still-s", "5"]) == 1
    assert main(["bench", "gating", "--seconds", "4", "--still-s", "1", "--json", str(tmp_path)]) == 1
    assert main(["bench", "gating", "--seconds", "4", "--still-s", "1", "--size", "640"]) == 1
    assert "--still-s" in capsys.readouterr().err

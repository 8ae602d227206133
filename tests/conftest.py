"""Shared fixtures. Tests that need ../shared (datasets, the published UltraFace model) skip cleanly,
with a reason, when it is not beside the checkout (a user's fresh clone)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEDET_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """Path under ../shared, or skip the test saying what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the ../shared material beside the checkout); not present here")
    return path


@pytest.fixture
def ultraface_dir() -> Path:
    return shared_path("models", "ultraface")


@pytest.fixture
def data_dir() -> Path:
    return shared_path("data")


# The camera daemon tests' tiny model and blob video, built once per test module that asks for them.


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from test_daemon import build_tiny_onnx

    return build_tiny_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def blob_video(tmp_path_factory) -> Path:
    from test_daemon import blob_frames, write_video

    return write_video(tmp_path_factory.mktemp("video") / "blobs.avi", blob_frames())

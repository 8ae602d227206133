"""runtime.pipeline: inference in its own thread gives the same detections, in order, and really overlaps."""

import threading

import numpy as np
import pytest
from test_daemon import blob_frames, build_tiny_onnx

from edgedet.edge.runtime.backends import open_backend
from edgedet.edge.runtime.detector import Detector
from edgedet.edge.runtime.pipeline import Pipeline


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory) -> Detector:
    return Detector.from_model(build_tiny_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx"), threads=1)


class GatedBackend:
    """A real backend whose ``run`` waits for ``gate`` and can be told to fail on a marked frame."""

    def __init__(self, backend) -> None:
        self._backend = backend
        self.gate = threading.Event()
        self.gate.set()
        self.running = threading.Event()
        self.threads: set[str] = set()

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def run(self, tensor):
        self.threads.add(threading.current_thread().name)
        self.running.set()
        assert self.gate.wait(10.0), "the test never opened the gate"
        if np.all(tensor == tensor.flat[0]) and tensor.flat[0] == tensor.max() and tensor.max() > 0.99:
            raise RuntimeError("simulated inference failure on a white frame")
        return self._backend.run(tensor)


def gated(detector: Detector) -> tuple[Detector, GatedBackend]:
    backend = GatedBackend(open_backend(detector.backend.path, 1))
    return Detector(backend, detector.spec), backend


def test_same_detections_in_order_as_detect(tiny_detector):
    frames = blob_frames(12)
    expected = [tiny_detector.detect(f) for f in frames]
    assert sum(map(len, expected)) > 0  # the comparison means something
    got = []
    with Pipeline(tiny_detector) as pipeline:
        for i, f in enumerate(frames):
            done = pipeline.push(f, tag=i)
            if done is not None:
                got.append(done)
                assert tiny_detector.last_timings.inference_ms > 0
        got.append(pipeline.flush())
        assert pipeline.flush() is None and not pipeline.in_flight
    assert [tag for tag, _ in got] == list(range(12))
    assert [dets for _, dets in got] == expected


def test_push_returns_while_inference_runs_in_its_own_thread(tiny_detector):
    detector, backend = gated(tiny_detector)
    frames = blob_frames(3)
    with Pipeline(detector) as pipeline:
        backend.gate.clear()
        assert pipeline.push(frames[0], tag=0) is None  # returned with inference of frame 0 still blocked
        assert backend.running.wait(5.0) and pipeline.in_flight
        prepared = detector.prepare(frames[1])  # the caller's own work goes on meanwhile
        assert prepared.tensor.shape == detector.preprocess.shape
        backend.gate.set()
        tag, dets = pipeline.push(frames[1], tag=1)
        assert tag == 0 and dets == tiny_detector.detect(frames[0])
        assert pipeline.flush()[0] == 1
    assert backend.threads and all(name.startswith("edgedet-inference") for name in backend.threads)
    assert threading.current_thread().name not in backend.threads


def test_an_inference_failure_is_raised_for_that_frame_and_the_pipeline_goes_on(tiny_detector):
    detector, _ = gated(tiny_detector)
    frames = blob_frames(3)
    white = np.full_like(frames[0], 255)
    with Pipeline(detector) as pipeline:
        assert pipeline.push(white, tag="white") is None
        with pytest.raises(RuntimeError, match="white frame"):
            pipeline.push(frames[0], tag=0)  # collecting the white frame raises its error
        tag, dets = pipeline.push(frames[1], tag=1)  # frame 0 was not lost
        assert tag == 0 and dets == tiny_detector.detect(frames[0])
        assert pipeline.flush()[0] == 1


def test_a_bad_frame_raises_at_push_and_loses_nothing_in_flight(tiny_detector):
    frames = blob_frames(2)
    with Pipeline(tiny_detector) as pipeline:
        pipeline.push(frames[0], tag=0)
        with pytest.raises(ValueError, match="expected dtype uint8"):
            pipeline.push(frames[1].astype(np.float32), tag="bad")
        assert pipeline.flush()[0] == 0

"""ONNX -> TFLite through onnx2tf: fp32, fp16, dynamic-range and full-integer int8 (int8 or float I/O).

onnx2tf runs in a subprocess (TensorFlow's memory and threads stay out of this process, and its
``sys.exit`` on errors becomes a clear ``RuntimeError``) in a scratch folder, fully offline:

* int8 calibration data is handed over with ``-cind input CALIB.npy MEAN STD``: the ``.npy`` holds model
  inputs already made by :class:`edgedet.edge.runtime.preprocess.Preprocessor` in NHWC, so MEAN is 0 and STD is 1
  (onnx2tf computes ``(data - MEAN) / STD``), and calibration sees exactly what the device feeds;
* onnx2tf loads ``calibration_image_sample_data_20x128x128x3_float32.npy`` from its working folder for
  its own shape checks, and downloads it when absent; we write that file (from the calibration images,
  or a fixed pattern) so nothing is fetched, and point proxies at a closed port as a second guard.
* ``-coion`` (renaming outputs) is not used: it needs ``flatc`` and downloads it.

Each ``MODEL_VARIANT.tflite`` carries its spec inside, as the ``.onnx`` does: a ``Model.metadata`` entry
``"edgedet"`` whose buffer holds the spec JSON (UTF-8), so a ``.tflite`` copied alone to a device just
works. The spec is the ONNX one with layout ``"nhwc"``, ``extra["outputs"]`` mapping every output role to
the TFLite output name (found by running both models on the same input, so renaming and reordering by the
converter do not matter) and ``extra["quantization"]`` naming the variant. The same JSON is still written
beside it as the sidecar ``MODEL_VARIANT.json`` for edgedet releases that read only the sidecar (devices
not yet updated, ``deploy/install-common.sh``); the file's own spec wins where both are present.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgedet.convert.output_layout import match_outputs
from edgedet.edge.core.model_spec import ModelSpec

__all__ = ["FLOAT_VARIANTS", "INT8_VARIANTS", "VARIANTS", "embed_spec", "export_tflite", "tflite_spec", "write_sidecar"]

log = logging.getLogger("edgedet.tflite")

# our key -> onnx2tf's file suffix
VARIANTS: dict[str, str] = {
    "tflite_fp32": "float32",
    "tflite_fp16": "float16",
    "tflite_dynamic": "dynamic_range_quant",
    "tflite_int8": "full_integer_quant",
    "tflite_int8_float_io": "integer_quant",
}
FLOAT_VARIANTS = ("tflite_fp32", "tflite_fp16", "tflite_dynamic")
INT8_VARIANTS = ("tflite_int8", "tflite_int8_float_io")
INT8_IO = {"tflite_int8": "int8", "tflite_int8_float_io": "float"}  # each int8 variant's input / output type
QUANTIZATION = {
    "tflite_fp32": "none",
    "tflite_fp16": "fp16-weights",
    "tflite_dynamic": "dynamic-range-int8",
    "tflite_int8": "int8",
    "tflite_int8_float_io": "int8-float-io",
}
SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"  # what onnx2tf would download
DEAD_PROXY = "http://127.0.0.1:9"
TIMEOUT_S = 1800


def _sample_images(spec: ModelSpec, calib_nhwc: np.ndarray | None) -> np.ndarray:
    """20 x 128 x 128 x 3 RGB in [0, 1], the form of onnx2tf's own sample data."""
    import cv2

    if calib_nhwc is not None and len(calib_nhwc):
        mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
        frames = [np.clip((x * std + mean) / 255.0, 0.0, 1.0) for x in calib_nhwc[:20]]
        if spec.color == "bgr":
            frames = [f[..., ::-1] for f in frames]
        frames = [cv2.resize(np.ascontiguousarray(f), (128, 128), interpolation=cv2.INTER_AREA) for f in frames]
        while len(frames) < 20:
            frames.append(frames[len(frames) % len(frames)])
        return np.stack(frames).astype(np.float32)
    return np.random.default_rng(0).uniform(0.0, 1.0, (20, 128, 128, 3)).astype(np.float32)


def _onnx2tf_command(onnx_file: str, int8: bool, dynamic: bool) -> list[str]:
    cmd = [sys.executable, "-m", "onnx2tf", "-i", onnx_file, "-o", "out", "-v", "error"]
    if int8:  # -oiqt also writes the dynamic-range model
        cmd += ["-oiqt", "-qt", "per-channel", "-iqd", "int8", "-oqd", "int8"]
        cmd += ["-cind", "input", "calib.npy", "[[[[0.0, 0.0, 0.0]]]]", "[[[[1.0, 1.0, 1.0]]]]"]
    elif dynamic:
        cmd += ["-odrqt"]
    return cmd


def _offline_env() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        env[key] = DEAD_PROXY
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"})
    return env


def _run_onnx2tf(cmd: Sequence[str], cwd: Path, timeout: float, show_progress: bool = True) -> None:
    """Run onnx2tf, its output to ``cwd/onnx2tf.log``, with an elapsed-time bar; raise on failure."""
    log_path = cwd / "onnx2tf.log"
    bar = None
    if show_progress:
        try:
            from tqdm import tqdm

            bar = tqdm(desc="onnx2tf", bar_format="{desc}: {elapsed} elapsed", leave=False)
        except ImportError:
            pass
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(cmd, cwd=cwd, env=_offline_env(), stdout=log_file, stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                if time.monotonic() - start > timeout:
                    proc.kill()
                    proc.wait()
                    raise RuntimeError(f"onnx2tf did not finish within {timeout:.0f} s")
                time.sleep(0.5)
                if bar is not None:
                    bar.update(0)
                    bar.refresh()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if bar is not None:
                bar.close()
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-25:])
        raise RuntimeError(f"onnx2tf failed (exit {proc.returncode}):\n{tail}")


def tflite_spec(spec: ModelSpec, outputs: Mapping[str, str], quantization: str) -> ModelSpec:
    """``spec`` as a TFLite file's: NHWC, with the output-role mapping and the variant's quantisation."""
    extra = {**dict(spec.extra), "outputs": dict(outputs), "quantization": quantization}
    return replace(spec, layout="nhwc", extra=extra)


def write_sidecar(tflite_path: Path, spec: ModelSpec, outputs: Mapping[str, str], quantization: str) -> Path:
    """``MODEL.json`` beside ``MODEL.tflite``: ``spec`` in NHWC with the output-role mapping."""
    sidecar = tflite_path.with_suffix(".json")
    sidecar.write_text(tflite_spec(spec, outputs, quantization).to_json() + "\n", encoding="utf-8")
    return sidecar


def embed_spec(tflite_path: Path, spec: ModelSpec, outputs: Mapping[str, str], quantization: str) -> Path:
    """The same spec as :func:`write_sidecar`'s inside ``MODEL.tflite``: ``Model.metadata["edgedet"]``."""
    from edgedet.convert.tflite_slim import write_tflite_metadata
    from edgedet.edge.runtime.backends.tflite_metadata import METADATA_NAME

    write_tflite_metadata(tflite_path, {METADATA_NAME: tflite_spec(spec, outputs, quantization).to_json()})
    return tflite_path


def _probe_input(spec: ModelSpec, calib_nhwc: np.ndarray | None) -> np.ndarray:
    if calib_nhwc is not None and len(calib_nhwc):
        return calib_nhwc[:1].astype(np.float32)
    rng = np.random.default_rng(1)
    return rng.uniform(-1.0, 1.0, (1, spec.input_height, spec.input_width, 3)).astype(np.float32)


def _role_mapping(onnx_path: Path, tflite_path: Path, probe_nhwc: np.ndarray) -> dict[str, str]:
    """Role (= ONNX output name) -> TFLite output name, by running both on ``probe_nhwc``."""
    from edgedet.edge.runtime.backends.onnx import OnnxBackend
    from edgedet.edge.runtime.backends.tflite import TfliteBackend

    reference = OnnxBackend(onnx_path, threads=1).run(np.ascontiguousarray(probe_nhwc.transpose(0, 3, 1, 2)))
    converted = TfliteBackend(tflite_path, threads=1).run(probe_nhwc)
    return match_outputs(reference, converted)


def export_tflite(
    onnx_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    variants: Sequence[str] = FLOAT_VARIANTS,
    calib_nhwc: np.ndarray | None = None,
    stem: str | None = None,
    timeout: float = TIMEOUT_S,
    show_progress: bool = True,
) -> dict[str, Path]:
    """Convert an edgedet ONNX model (spec in its metadata) to the TFLite ``variants`` (keys of
    :data:`VARIANTS`) in ``out_dir`` as ``STEM_fp32.tflite`` etc., each with its spec inside (metadata
    ``"edgedet"``) and in its JSON sidecar.

    The int8 variants need ``calib_nhwc``: ``[N, H, W, 3]`` float32 preprocessed calibration inputs.
    """
    import onnx

    from edgedet.convert.onnx_export import read_metadata_spec
    from edgedet.convert.tflite_slim import slim_tflite

    onnx_path = Path(onnx_path)
    if importlib.util.find_spec("onnx2tf") is None:
        raise ImportError("TFLite export needs onnx2tf and TensorFlow: pip install 'edgedet[convert]'")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"TFLite variants {unknown}: expected some of {list(VARIANTS)}")
    spec = read_metadata_spec(onnx.load(onnx_path, load_external_data=False), str(onnx_path))
    if spec is None:
        raise ValueError(f"{onnx_path}: no edgedet spec in its metadata; export it with edgedet.convert.onnx_export")
    int8 = any(v in INT8_VARIANTS for v in variants)
    if int8:
        expected = (spec.input_height, spec.input_width, 3)
        if calib_nhwc is None or calib_nhwc.ndim != 4 or tuple(calib_nhwc.shape[1:]) != expected:
            got = None if calib_nhwc is None else list(calib_nhwc.shape)
            raise ValueError(f"int8 TFLite needs calibration inputs [N, {', '.join(map(str, expected))}], got {got}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or onnx_path.stem
    written: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="edgedet-onnx2tf-") as tmp:
        work = Path(tmp)
        shutil.copyfile(onnx_path, work / "model.onnx")
        np.save(work / SAMPLE_FILE, _sample_images(spec, calib_nhwc))
        if int8:
            np.save(work / "calib.npy", np.ascontiguousarray(calib_nhwc, dtype=np.float32))
        log.info("onnx2tf: converting %s (%s)", onnx_path.name, ", ".join(variants))
        _run_onnx2tf(_onnx2tf_command("model.onnx", int8, "tflite_dynamic" in variants), work, timeout, show_progress)
        probe = _probe_input(spec, calib_nhwc)
        for key in variants:
            produced = work / "out" / f"model_{VARIANTS[key]}.tflite"
            if not produced.is_file():
                raise RuntimeError(f"onnx2tf wrote no {produced.name} (for {key}); see its log")
            target = out_dir / f"{stem}_{key.removeprefix('tflite_')}.tflite"
            shutil.copyfile(produced, target)
            slim_tflite(target)  # names and repeated zero points: ~30 % of an int8 file, never read on a device
            outputs = _role_mapping(onnx_path, target, probe)
            embed_spec(target, spec, outputs, QUANTIZATION[key])  # metadata only: computes the same
            write_sidecar(target, spec, outputs, QUANTIZATION[key])  # for releases that read only the sidecar
            written[key] = target
    return written

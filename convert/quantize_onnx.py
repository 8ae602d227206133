"""ONNX Runtime static int8 quantisation (QDQ) of an edgedet ONNX model, calibrated on real images.

Choices, measured on UltraFace slim-320 with the faces data (see the export report):

* **QDQ format, per-channel symmetric int8 weights, asymmetric uint8 activations.** uint8 activations
  (U8S8) run ONNX Runtime's fast x86 kernels; int8 activations (S8S8) took ~1.8x longer on AVX2.
* **Calibration on real training images** (default 200) through :class:`edgedet.edge.runtime.preprocess.Preprocessor`
  (the device's own pre-processing); with 20 images AP50 fell 0.9 points below fp32, with 50 or 200
  it stayed within 0.3. MinMax is the default: Entropy and Percentile (99.999) were no better
  (-0.4 / -0.9 points). The calibrator runs here, not inside ``quantize_static``, so its histogram
  settings can be chosen: ``quantize_static`` builds the entropy calibrator with 128 bins = 128
  quantised bins, which makes its "Entropy" identical to MinMax (2048 bins clipped ReLU ranges 8x
  and wrecked accuracy; 512 bins are used).
* **The tail stays float** (``keep_tail_float``): every node between the last convolutions and the
  outputs (SSD: transpose / reshape / concat / softmax / in-graph decode; CenterNet: sigmoid / peak
  max-pool), so scores keep full resolution near the score threshold instead of steps of 1/255.
* **The stem stays float** (``keep_stem_float``): the first convolution (3 input channels) and the
  first depthwise convolution, both at half the input resolution. ONNX Runtime's x86 int8 kernels
  (AVX2, no VNNI) are slower than its blocked NCHWc float kernels there (0.43 vs 0.15 ms and 0.21 vs
  0.05 ms on UltraFace), while int8 pointwise convolutions are ~1.5-2x faster than float: all-int8 ran
  ~8% slower than fp32, int8 with a float stem ~20% faster.
* ONNX Runtime fuses DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv at its default graph
  optimisation level (``ORT_ENABLE_ALL``), which :class:`edgedet.edge.runtime.backends.OnnxBackend` uses.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from edgedet.convert.calibration import CalibSource, calibration_tensors
from edgedet.convert.onnx_export import read_metadata_spec, set_metadata_spec
from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.runtime.progress import progress

__all__ = ["CALIBRATION_METHODS", "CalibratedQuantizer", "quantize_onnx", "stem_nodes", "tail_nodes"]

log = logging.getLogger("edgedet.quantize")

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
_CALIBRATOR_OPTIONS = {
    "minmax": {"symmetric": False},
    "entropy": {"symmetric": False, "num_bins": 512, "num_quantized_bins": 255},
    "percentile": {"symmetric": False, "num_bins": 2048, "percentile": 99.999},
}
_HEAD_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _is_depthwise(node: onnx.NodeProto) -> bool:
    return node.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in node.attribute)


def stem_nodes(model: onnx.ModelProto) -> list[str]:
    """The first convolution and, when the next convolution is depthwise, that one too: the layers at
    the highest resolution with the fewest channels, where int8 kernels lose to float ones."""
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    if not convs:
        return []
    stem = [convs[0].name]
    if len(convs) > 1 and _is_depthwise(convs[1]):
        stem.append(convs[1].name)
    return stem


def tail_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes on the way from the last convolutions to the graph outputs (found by walking
    back from each output and stopping at a Conv / Gemm / MatMul)."""
    producer = {out: node for node in model.graph.node for out in node.output}
    initializers = {i.name for i in model.graph.initializer}
    tail: dict[str, None] = {}
    stack = [o.name for o in model.graph.output]
    seen: set[str] = set()
    while stack:
        tensor = stack.pop()
        node = producer.get(tensor)
        if node is None or tensor in seen or tensor in initializers:
            continue
        seen.add(tensor)
        if node.op_type in _HEAD_OPS:
            continue
        tail[node.name] = None
        stack.extend(node.input)
    return list(tail)


class _Reader:
    """``CalibrationDataReader`` over preprocessed inputs, with a progress bar."""

    def __init__(self, inputs: np.ndarray, input_name: str, show_progress: bool) -> None:
        self._inputs = inputs
        self._name = input_name
        self._iter: Iterator[np.ndarray] = iter(progress(inputs, len(inputs), "calibrating (ORT)", show_progress))

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._iter, None)
        return None if x is None else {self._name: np.ascontiguousarray(x[None], dtype=np.float32)}

    def __len__(self) -> int:
        return len(self._inputs)


def _name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name (the quantiser addresses nodes by name)."""
    used = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


def quantize_onnx(
    onnx_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calib: CalibSource | np.ndarray,
    *,
    method: str = "minmax",
    calib_images: int = 200,
    per_channel: bool = True,
    keep_tail_float: bool = True,
    keep_stem_float: bool = True,
    exclude_op_types: Sequence[str] = (),
    exclude_nodes: Sequence[str] = (),
    show_progress: bool = True,
) -> Path:
    """Quantise ``onnx_path`` to int8 QDQ at ``out_path`` and return it.

    ``calib`` is calibration data (a dataset spec, an image folder, a ``Dataset``) or ready model inputs
    ``[N, 3, H, W]``; ``calib_images`` of them are used. ``method`` is ``minmax``, ``entropy`` or
    ``percentile``. ``keep_tail_float`` / ``keep_stem_float`` leave :func:`tail_nodes` /
    :func:`stem_nodes` in float; ``exclude_op_types`` and ``exclude_nodes`` (node names) more. The spec
    metadata is carried over (``extra["quantization"] = "int8-qdq"``).
    """
    with CalibratedQuantizer(onnx_path, calib, method=method, calib_images=calib_images,
                             show_progress=show_progress) as quantizer:  # fmt: skip
        return quantizer.quantize(
            out_path,
            per_channel=per_channel,
            keep_tail_float=keep_tail_float,
            keep_stem_float=keep_stem_float,
            exclude_op_types=exclude_op_types,
            exclude_nodes=exclude_nodes,
        )


class CalibratedQuantizer:
    """One fp32 model calibrated once, quantised as often as asked with different nodes left float.

    ``with CalibratedQuantizer(model, calib, method="entropy") as q: q.quantize(out, exclude_nodes=[...])``:
    the mixed-precision search (:mod:`edgedet.convert.mixed_precision`) tries many float sets on the same
    activation ranges, which is also what makes its trials comparable with each other.
    """

    def __init__(
        self,
        onnx_path: str | os.PathLike[str],
        calib: CalibSource | np.ndarray,
        *,
        method: str = "minmax",
        calib_images: int = 200,
        show_progress: bool = True,
    ) -> None:
        method = method.lower()
        if method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration method {method!r}: expected one of {list(CALIBRATION_METHODS)}")
        self.onnx_path = Path(onnx_path)
        self.method = method
        self._model = onnx.load(self.onnx_path)
        spec = read_metadata_spec(self._model, str(self.onnx_path))
        if spec is None:
            raise ValueError(
                f"{self.onnx_path}: no edgedet spec in its metadata; export it with edgedet.convert.onnx_export"
            )
        self._spec = spec
        self._inputs = _calibration_inputs(calib, spec, calib_images, show_progress)
        self._tmp = tempfile.TemporaryDirectory(prefix="edgedet-quant-")
        tmp_dir = Path(self._tmp.name)
        self._prepared = _prepare(self._model, tmp_dir)
        self._ranges = _calibrate(
            self._prepared, self._inputs, self._model.graph.input[0].name, method, tmp_dir, show_progress
        )
        self._count = 0

    def __enter__(self) -> CalibratedQuantizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._tmp.cleanup()

    @property
    def calibration_inputs(self) -> np.ndarray:
        return self._inputs

    def node_names(self) -> list[str]:
        """Every node of the prepared model (the names ``exclude_nodes`` takes)."""
        return [n.name for n in onnx.load(self._prepared).graph.node]

    def quantize(
        self,
        out_path: str | os.PathLike[str],
        *,
        per_channel: bool = True,
        keep_tail_float: bool = True,
        keep_stem_float: bool = True,
        exclude_op_types: Sequence[str] = (),
        exclude_nodes: Sequence[str] = (),
    ) -> Path:
        """Write the int8 QDQ model with these nodes float to ``out_path``; its path (see :func:`quantize_onnx`)."""
        out_path = Path(out_path)
        exclude = _nodes_to_exclude(
            onnx.load(self._prepared), keep_tail_float, keep_stem_float, exclude_op_types, exclude_nodes
        )
        self._count += 1
        scratch = Path(self._tmp.name) / f"quantized_{self._count}.onnx"
        quantized = _quantize(self._prepared, self._ranges, self.method, per_channel, exclude, scratch)
        scratch.unlink(missing_ok=True)
        _check_outputs(quantized, self._model)
        set_metadata_spec(quantized, replace(self._spec, extra={**dict(self._spec.extra), "quantization": "int8-qdq"}))
        quantized.producer_name = "edgedet"
        out_path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(quantized, out_path)
        log.info(
            "quantised %s -> %s (%s, %d images, %d nodes left float)",
            self.onnx_path,
            out_path,
            self.method,
            len(self._inputs),
            len(exclude),
        )
        return out_path


def _calibration_inputs(
    calib: CalibSource | np.ndarray, spec: ModelSpec, calib_images: int, show_progress: bool
) -> np.ndarray:
    """Up to ``calib_images`` model inputs ``[N, 3, H, W]``: ``calib`` itself when it is an array (checked
    against the spec's input size), else images of it through the device pre-processing."""
    if not isinstance(calib, np.ndarray):
        return calibration_tensors(replace(spec, layout="nchw"), calib, calib_images, show_progress=show_progress)
    inputs = calib[:calib_images]
    expected = (3, spec.input_height, spec.input_width)
    if inputs.ndim != 4 or tuple(inputs.shape[1:]) != expected or not len(inputs):
        want = ", ".join(map(str, expected))
        raise ValueError(f"calibration inputs: expected [N, {want}], got {list(calib.shape)}")
    return inputs


def _prepare(model: onnx.ModelProto, tmp_dir: Path) -> Path:
    """``model`` with every node named, through ONNX Runtime's pre-processing (shape inference, graph
    clean-up), saved in ``tmp_dir``; its path."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    named = tmp_dir / "named.onnx"
    _name_nodes(model)
    onnx.save(model, named)
    prepared = tmp_dir / "prepared.onnx"
    quant_pre_process(str(named), str(prepared), skip_symbolic_shape=True)
    return prepared


def _nodes_to_exclude(
    prepared: onnx.ModelProto,
    keep_tail_float: bool,
    keep_stem_float: bool,
    exclude_op_types: Sequence[str],
    exclude_nodes: Sequence[str],
) -> list[str]:
    """The nodes left in float: the tail and the stem (when kept float), then the nodes of the excluded
    op types or names."""
    exclude = tail_nodes(prepared) if keep_tail_float else []
    exclude += stem_nodes(prepared) if keep_stem_float else []
    exclude += [
        n.name
        for n in prepared.graph.node
        if (n.op_type in exclude_op_types or n.name in exclude_nodes) and n.name not in exclude
    ]
    return exclude


def _ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]


def _calibrate(
    prepared: Path, inputs: np.ndarray, input_name: str, method: str, tmp_dir: Path, show_progress: bool
) -> Path:
    """Run our calibrator (its histogram settings: :data:`_CALIBRATOR_OPTIONS`) over ``inputs`` on the
    prepared model; the file of activation ranges ``quantize_static`` then reads."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    calibrator = create_calibrator(
        prepared,
        None,
        augmented_model_path=str(tmp_dir / "augmented.onnx"),
        calibrate_method=_ort_method(method),
        extra_options=_CALIBRATOR_OPTIONS[method],
    )
    calibrator.collect_data(_Reader(inputs, input_name, show_progress))
    ranges = tmp_dir / "ranges.json"
    save_tensors_data(calibrator.compute_data(), ranges)
    del calibrator
    return ranges


def _quantize(
    prepared: Path, ranges: Path, method: str, per_channel: bool, exclude: Sequence[str], out: Path
) -> onnx.ModelProto:
    """QDQ int8 of the prepared model with the calibrated ``ranges``: symmetric int8 weights (per channel
    when asked), asymmetric uint8 activations, ``exclude`` left float; written to ``out`` and loaded."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(
        str(prepared),
        str(out),
        None,
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(exclude),
        calibrate_method=_ort_method(method),
        calibration_cache_path=str(ranges),
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
    )
    return onnx.load(out)


def _check_outputs(quantized: onnx.ModelProto, model: onnx.ModelProto) -> None:
    """The quantised model must keep the float model's outputs, by name and in order."""
    names = [o.name for o in model.graph.output]
    if [o.name for o in quantized.graph.output] != names:
        raise RuntimeError(f"quantisation changed the outputs: {[o.name for o in quantized.graph.output]} vs {names}")

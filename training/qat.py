"""Quantisation-aware training (QAT): fine-tune a trained checkpoint with the int8 arithmetic the device runs.

``edgedet train --config X.yaml qat.enabled=true qat.init=runs/x/best.pt`` loads the trained float
weights, turns the network into its fake-quantised twin (:func:`prepare_qat`) and fine-tunes it for a few
epochs at a low learning rate (``qat`` section of :mod:`edgedet.training.config`). What is simulated is
what the int8 exports compute (:mod:`edgedet.convert.quantize_onnx`, :mod:`edgedet.convert.tflite_export`):

* **BatchNorm folded into the convolution weights.** Every ``Conv2d -> BatchNorm2d [-> ReLU]`` becomes
  torch.ao's ``torch.ao.nn.intrinsic.qat.ConvBn(ReLU)2d``: the weight that is quantised is ``w * gamma /
  sqrt(running_var + eps)``, exactly the folded weight of the export; the output is rescaled to the batch
  statistics while BatchNorm still learns (Jacob et al. 2018, Krishnamoorthi 2018) and the running
  statistics are used once BatchNorm freezes (``qat.freeze_bn_after``). ``Conv2d [-> ReLU]`` without
  BatchNorm becomes ``torch.ao.nn.qat.Conv2d`` / ``ConvReLU2d``; CenterNet's scaled size conv quantises its
  scaled weight (:class:`QatScaledConv2d`).
* **Weights: per-channel symmetric int8, scale ``max|w| / 127``** of the *current* folded weight
  (:class:`CurrentMinMaxObserver`: no running average, so the exported scale is the one the final weights
  give, which is also what ORT's quantiser and the TFLite converter compute from the same weights).
* **Activations: per-tensor asymmetric 8 bit** (:class:`ActivationFakeQuant`, torch.ao's ``FakeQuantize``
  with a ``MovingAverageMinMaxObserver``, frozen at ``qat.freeze_observers_after``) on every tensor the
  int8 graphs quantise: the output of every quantised convolution (after its ReLU), the input of the
  first quantised convolution (the model input, or with ``qat.target: ort`` the first depthwise
  convolution's output), and CenterNet's neck additions (the input of each ``smooth`` block's first
  convolution). Nearest upsampling and the crop keep their input's grid, as in both runtimes. ORT runs
  these tensors as uint8 (zero point ``z``), TFLite as int8 (zero point ``z - 128``): the same grid, so one
  model serves both; scales and zero points are kept in the uint8 convention.
* **Float where the ORT export keeps float**: the tail (SSD transpose / reshape / concat / softmax,
  CenterNet sigmoid: the head convolutions' outputs are quantised, what follows is float) and, with
  ``qat.target: ort``, the stem convolution and the first depthwise convolution (their BatchNorm and ReLU
  stay ordinary modules).
* ``qat.target`` says which runtime's int8 graph to match where the two differ:

  - ``ort``: each SSD head convolution has its own output range (ORT quantises each level apart); the
    stem is float (on x86 ORT's int8 kernels lose to its float ones there). TFLite cannot take this
    model's per-level ranges (its int8 CONCATENATION needs one scale): its SSD file stays calibrated.
  - ``tflite`` and ``both`` (default; the same model): TFLite's full-integer model runs everything in
    int8, so the model input, the stem convolution and the first depthwise convolution are
    fake-quantised too, and the SSD class logits of all levels share one range and the box regressions
    another (observed on the concatenated outputs), as TFLite's int8 CONCATENATION needs one scale for
    its inputs. The ORT export of this model is its exact QDQ image, int8 stem included, so one model
    matches both runtimes (at ORT's int8-stem speed on x86).

  CenterNet has no concatenation: there the targets differ only in the stem.

Cost: a QAT step is ~2.7x a float step on CPU (the fold's extra rescale and batch-norm pass, the fake
quantisers; SSD 320x240, batch 8, one thread: 0.87 vs 0.33 s), so the default ``qat.epochs`` (4 % of the
original run's epochs) costs about 11 % of the original training time, plus one evaluation.

Why not torch.ao's ``prepare_qat`` / FX ``prepare_qat_fx`` wholesale: FX cannot trace the models' input
checks and CenterNet's shape-dependent crop, and eager ``prepare_qat`` puts observers on every module
output (ReLUs, upsampling) by qconfig rather than where ORT and TFLite quantise. So the torch.ao QAT
modules and fake-quantisers are used as they are and placed explicitly here, as eager mode does (an
``activation_post_process`` child run by a forward hook), which keeps the float model's parameter names.

A QAT checkpoint (``qat_last.pt`` / ``qat_best.pt``) is an ordinary edgedet checkpoint whose ``model`` is
the float network with the QAT-trained weights (every tool loads it), plus ``qat_model`` (the full state of
the fake-quantised model, observers included) and ``qat`` (:data:`QAT_FORMAT`, the target). Load the
fake-quantised model with :func:`load_qat_checkpoint`; ``edgedet export`` does, and exports int8 files
whose scales are the trained ones (:mod:`edgedet.convert.qat_export`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.ao.nn.intrinsic as nni
import torch.ao.nn.intrinsic.qat as nniqat
import torch.ao.nn.qat as nnqat
from torch import nn
from torch.ao.quantization import QConfig
from torch.ao.quantization.fake_quantize import FakeQuantize
from torch.ao.quantization.observer import MovingAverageMinMaxObserver, PerChannelMinMaxObserver

from edgedet.edge.core.model_spec import ModelSpec

__all__ = [
    "QAT_FORMAT",
    "TARGETS",
    "ActivationFakeQuant",
    "CurrentMinMaxObserver",
    "QatScaledConv2d",
    "QatSchedule",
    "activation_quantizers",
    "calibrate",
    "float_model",
    "float_state_dict",
    "freeze_bn",
    "freeze_observers",
    "is_qat_checkpoint",
    "load_qat_checkpoint",
    "output_convs",
    "prepare_qat",
    "qat_checkpoint_entries",
    "qat_run_config",
    "start_qat_model",
    "weight_quantizer",
]

log = logging.getLogger("edgedet.qat")

QAT_FORMAT = "edgedet-qat-1"
TARGETS = ("ort", "tflite", "both")
ACTIVATION_QMIN, ACTIVATION_QMAX = 0, 255  # uint8 (ORT); TFLite's int8 is the same grid, zero point - 128
WEIGHT_QMAX = 127  # symmetric int8 weights: [-127, 127], scale max|w| / 127
AUTO_EPOCH_FRACTION = 0.04  # qat.epochs 0: this fraction of the epochs the checkpoint was trained for
AUTO_LR_FRACTION = 0.01  # qat.lr 0: this fraction of optimizer.lr (where a cosine schedule ends)
_QUANT_CHILDREN = ("activation_post_process", "input_quant", "weight_fake_quant", "output_quant")


# --------------------------------------------------------------------------- fake quantisers


class CurrentMinMaxObserver(PerChannelMinMaxObserver):
    """Per-channel min/max of the tensor it sees *now* (PerChannelMinMaxObserver keeps the running
    extremes of every tensor it has seen): a weight's scale follows the weight as it trains."""

    def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
        self.min_val.resize_(0)
        self.max_val.resize_(0)
        return super().forward(x_orig)


def weight_quantizer(**kwargs: Any) -> FakeQuantize:
    """Per-channel (output channel) symmetric int8 in [-127, 127]: scale ``max|w| / 127``, zero point 0."""
    return FakeQuantize(
        observer=CurrentMinMaxObserver,
        quant_min=-WEIGHT_QMAX,
        quant_max=WEIGHT_QMAX,
        dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric,
        ch_axis=0,
        **kwargs,
    )


class ActivationFakeQuant(FakeQuantize):
    """Per-tensor asymmetric uint8 fake quantisation whose range is a moving average of the min/max of
    the training batches (torch.ao's ``FakeQuantize`` + ``MovingAverageMinMaxObserver``).

    Unlike the stock ``FakeQuantize``, the observer runs only in training mode: evaluation, export and
    parity use the trained range and never move it.
    """

    def __init__(self, averaging_constant: float = 0.01) -> None:
        super().__init__(
            observer=MovingAverageMinMaxObserver,
            quant_min=ACTIVATION_QMIN,
            quant_max=ACTIVATION_QMAX,
            dtype=torch.quint8,
            qscheme=torch.per_tensor_affine,
            reduce_range=False,
            averaging_constant=averaging_constant,
        )

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if self.training and self.observer_enabled[0] == 1:
            self.activation_post_process(X.detach())
            scale, zero_point = self.calculate_qparams()
            self.scale.copy_(scale.to(self.scale.device))
            self.zero_point.copy_(zero_point.to(self.zero_point.device))
        if self.fake_quant_enabled[0] == 1:
            X = torch.fake_quantize_per_tensor_affine(X, self.scale, self.zero_point, ACTIVATION_QMIN, ACTIVATION_QMAX)
        return X

    @property
    def observed(self) -> bool:
        """Whether the observer has seen data (before that the range is the placeholder [0, 1])."""
        return bool(torch.isfinite(self.activation_post_process.min_val).item())


QCONFIG = QConfig(activation=ActivationFakeQuant, weight=weight_quantizer)


class QatScaledConv2d(nnqat.Conv2d):
    """:class:`~edgedet.training.centernet_model.ScaledConv2d` with its *scaled* weight fake-quantised:
    the export folds the scale into the weight, so that product is what the device holds in int8."""

    def __init__(self, *args: Any, scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.scale
        return self._conv_forward(x, self.weight_fake_quant(self.weight * self.scale), bias)

    @classmethod
    def from_scaled(cls, conv: nn.Conv2d, qconfig: QConfig) -> QatScaledConv2d:
        qat = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            qconfig=qconfig,
            scale=conv.scale,
        )
        qat.weight = conv.weight
        qat.bias = conv.bias
        return qat


# --------------------------------------------------------------------------- where the quantisers go


def _observe_output(module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: the module's output through its ``activation_post_process`` (eager mode's way)."""
    return module.activation_post_process(output)


def _quantize_input(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Forward pre-hook: the module's (single) input through its ``input_quant``."""
    return (module.input_quant(inputs[0]), *inputs[1:])


def _quantize_outputs(module: nn.Module, _inputs: Any, outputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Forward hook on a whole SSD: its raw outputs (logits, regressions) through ``output_quant``."""
    quant = module.output_quant
    return tuple(quant[str(i)](out) for i, out in enumerate(outputs))


def _get(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path) if path else model


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(_get(model, parent), name, module)


def _leaf_sequences(model: nn.Module) -> Iterator[list[tuple[str, nn.Module]]]:
    """The leaves of every outermost ``nn.Sequential`` in execution order (nested Sequentials are
    flattened: a conv at the end of an inner one feeds the ReLU after it in the outer one)."""

    def leaves(prefix: str, seq: nn.Sequential) -> Iterator[tuple[str, nn.Module]]:
        for name, child in seq.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(child, nn.Sequential):
                yield from leaves(path, child)
            else:
                yield path, child

    def walk(prefix: str, module: nn.Module) -> Iterator[list[tuple[str, nn.Module]]]:
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(child, nn.Sequential):
                yield list(leaves(path, child))
            else:
                yield from walk(path, child)

    yield from walk("", model)


@dataclass(frozen=True)
class _Group:
    """One convolution and the BatchNorm / ReLU folded into it (paths in the float model)."""

    conv: str
    bn: str | None = None
    relu: str | None = None


def _conv_groups(model: nn.Module) -> list[_Group]:
    """Every convolution with the BatchNorm and ReLU that directly follow it in its Sequential; a
    BatchNorm anywhere else cannot be folded (``ValueError`` naming it)."""
    groups: list[_Group] = []
    for seq in _leaf_sequences(model):
        i = 0
        while i < len(seq):
            path, mod = seq[i]
            if isinstance(mod, nn.Conv2d):
                bn = relu = None
                j = i + 1
                if j < len(seq) and isinstance(seq[j][1], nn.BatchNorm2d):
                    bn = seq[j][0]
                    j += 1
                if j < len(seq) and isinstance(seq[j][1], nn.ReLU):
                    relu = seq[j][0]
                    j += 1
                groups.append(_Group(path, bn, relu))
                i = j
                continue
            if isinstance(mod, nn.BatchNorm2d):
                raise ValueError(
                    f"QAT: layer {path!r} (BatchNorm2d) does not directly follow a convolution, so it cannot be "
                    "folded into one as the int8 export does"
                )
            i += 1
    for path, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d) and not any(g.conv == path for g in groups):
            groups.append(_Group(path))  # a conv outside any Sequential (ModuleList item, attribute)
    return groups


def _check_supported(model: nn.Module) -> None:
    """Every leaf must be something the int8 exports can run: ``ValueError`` naming the first that is not."""
    from edgedet.training.centernet_model import CenterNet, ScaledConv2d
    from edgedet.training.ssd_model import SSD

    if not isinstance(model, (SSD, CenterNet)):
        raise ValueError(f"QAT: {type(model).__name__} is not an edgedet SSD or CenterNet; cannot fake-quantise it")
    allowed = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Identity)
    for path, mod in model.named_modules():
        if list(mod.children()) or isinstance(mod, allowed):
            if isinstance(mod, nn.Conv2d) and (
                type(mod) not in (nn.Conv2d, ScaledConv2d) or mod.padding_mode != "zeros"
            ):
                raise ValueError(
                    f"QAT: layer {path!r} ({type(mod).__name__}, padding_mode {mod.padding_mode!r}) cannot be "
                    "fake-quantised (supported: Conv2d with zero padding)"
                )
            continue
        if isinstance(mod, nn.Upsample) and mod.mode == "nearest":
            continue
        raise ValueError(
            f"QAT: layer {path!r} ({type(mod).__name__}) cannot be fake-quantised (supported: Conv2d "
            "[+ BatchNorm2d] [+ ReLU], ReLU, nearest Upsample)"
        )


def _conv_order(model: nn.Module, spec: ModelSpec) -> list[str]:
    """Paths of the convolutions in the order a forward pass runs them (a dummy input, eval mode)."""
    order: list[str] = []
    handles = [
        mod.register_forward_pre_hook(lambda m, i, p=path: order.append(p))
        for path, mod in model.named_modules()
        if isinstance(mod, nn.Conv2d)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            device = next(model.parameters()).device
            model(torch.zeros(1, 3, spec.input_height, spec.input_width, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return order


def output_convs(model: nn.Module) -> list[str]:
    """Paths of the convolutions whose outputs are the network's raw outputs (the float tail follows)."""
    from edgedet.training.ssd_model import SSD

    paths = []
    if isinstance(model, SSD):
        for kind in ("classification_headers", "regression_headers"):
            for i, header in enumerate(getattr(model, kind)):
                last = len(header) - 1 if isinstance(header, nn.Sequential) else None
                paths.append(f"{kind}.{i}" + (f".{last}" if last is not None else ""))
        return paths
    return [f"heat.{len(model.heat) - 1}", "size", "offset"]


def prepare_qat(model: nn.Module, spec: ModelSpec, target: str = "both") -> nn.Module:
    """Turn a float SSD / CenterNet into its fake-quantised twin, in place (and return it).

    Raises ``ValueError`` naming the layer when the network holds something the int8 exports cannot
    run (a BatchNorm not after a convolution, another layer type). With ``target="ort"`` the stem (first
    convolution and the first depthwise one) stays float; see the module docstring for what is quantised
    where.
    """
    if target not in TARGETS:
        raise ValueError(f"qat.target: expected one of {list(TARGETS)}, got {target!r}")
    if getattr(model, "qat_target", None) is not None:
        raise ValueError("QAT: the model is already fake-quantised")
    _check_supported(model)
    groups = {g.conv: g for g in _conv_groups(model)}
    order = [p for p in _conv_order(model, spec) if p in groups]
    never_run = sorted(set(groups) - set(order))
    if never_run:
        raise ValueError(f"QAT: convolution {never_run[0]!r} does not run in the forward pass; cannot place it")
    stem = order[:1] if target == "ort" else []  # TFLite's full-integer model quantises everything
    if stem and len(order) > 1 and _get(model, order[1]).groups > 1:
        stem.append(order[1])  # the first depthwise conv, as convert.quantize_onnx.stem_nodes keeps float
    outputs = output_convs(model)
    shared_outputs = target in ("tflite", "both") and spec.head == "ssd"
    for path in order:
        if path in stem:
            continue
        group = groups[path]
        qat_module = _qat_conv(model, group)
        _set(model, group.conv, qat_module)
        for other in (group.bn, group.relu):
            if other is not None:
                _set(model, other, nn.Identity())
        if not (shared_outputs and path in outputs):
            qat_module.activation_post_process = ActivationFakeQuant()
            qat_module.register_forward_hook(_observe_output)
    # the quantised region starts at the first quantised conv's input (ORT: the first QDQ); CenterNet's
    # neck sums (lateral + upsampled) are quantised as the input of the smooth block's first conv
    starts = [order[len(stem)]] + [f"smooth.{i}.0" for i in range(len(getattr(model, "smooth", ())))]
    for path in starts:
        conv = _get(model, path)
        conv.input_quant = ActivationFakeQuant()
        conv.register_forward_pre_hook(_quantize_input)
    if shared_outputs:
        model.output_quant = nn.ModuleDict({"0": ActivationFakeQuant(), "1": ActivationFakeQuant()})
        model.register_forward_hook(_quantize_outputs)
    model.qat_target = target
    model.qat_groups = [groups[p] for p in order if p not in stem]  # the fake-quantised convs, in run order
    model.qat_stem = stem
    return model


def _qat_conv(model: nn.Module, group: _Group) -> nn.Module:
    """The torch.ao QAT module for one conv group (BatchNorm and ReLU fused into it)."""
    from edgedet.training.centernet_model import ScaledConv2d

    conv = _get(model, group.conv)
    bn = _get(model, group.bn) if group.bn else None
    relu = _get(model, group.relu) if group.relu else None
    if isinstance(conv, ScaledConv2d):
        if bn is not None or relu is not None:
            raise ValueError(f"QAT: layer {group.conv!r} (ScaledConv2d) followed by BatchNorm/ReLU is not supported")
        return QatScaledConv2d.from_scaled(conv, QCONFIG)
    if bn is not None:
        fused = nni.ConvBnReLU2d(conv, bn, relu) if relu is not None else nni.ConvBn2d(conv, bn)
        qat_cls = nniqat.ConvBnReLU2d if relu is not None else nniqat.ConvBn2d
    elif relu is not None:
        fused, qat_cls = nni.ConvReLU2d(conv, relu), nniqat.ConvReLU2d
    else:
        fused, qat_cls = conv, nnqat.Conv2d
    fused.qconfig = conv.qconfig = QCONFIG  # from_float reads it on the conv inside a fused module
    return qat_cls.from_float(fused)


def activation_quantizers(model: nn.Module) -> dict[str, ActivationFakeQuant]:
    """Every activation fake-quantiser by its module path (``...activation_post_process``, ``...input_quant``,
    ``output_quant.0`` / ``.1``), in registration order."""
    return {path: mod for path, mod in model.named_modules() if isinstance(mod, ActivationFakeQuant)}


# --------------------------------------------------------------------------- state: float <-> QAT


def float_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The QAT model's weights in the float model's layout (BatchNorm back under its own name, no
    quantiser state): what ``build_model(spec).load_state_dict`` takes."""
    renames = {f"{g.conv}.bn.": f"{g.bn}." for g in model.qat_groups if g.bn}
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if any(p in _QUANT_CHILDREN for p in parts):
            continue
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value.detach().clone()
    return out


def float_model(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """A float network with the QAT model's weights (what a QAT checkpoint's ``model`` holds)."""
    from edgedet.training.model_factory import build_model

    net = build_model(spec)
    net.load_state_dict(float_state_dict(model))
    return net.to(next(model.parameters()).device)


def qat_checkpoint_entries(model: nn.Module) -> dict[str, Any]:
    """What a checkpoint carries besides the float weights: the full QAT state and its description."""
    scales = {p: (float(q.scale), int(q.zero_point)) for p, q in activation_quantizers(model).items()}
    return {
        "qat_model": model.state_dict(),
        "qat": {"format": QAT_FORMAT, "target": model.qat_target, "activations": scales},
    }


def is_qat_checkpoint(ckpt: dict[str, Any]) -> bool:
    return isinstance(ckpt.get("qat"), dict) and "qat_model" in ckpt


def load_qat_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelSpec, dict[str, Any]] | None:
    """``(fake-quantised model in eval mode, spec, checkpoint)`` of a QAT checkpoint; ``None`` for a float one."""
    from edgedet.training.checkpoint import load_checkpoint

    model, spec, ckpt = load_checkpoint(path, map_location=map_location)
    if not is_qat_checkpoint(ckpt):
        return None
    meta = ckpt["qat"]
    if meta.get("format") != QAT_FORMAT:
        raise ValueError(f"{path}: QAT state of format {meta.get('format')!r}, this edgedet reads {QAT_FORMAT!r}")
    prepare_qat(model, spec, meta["target"])
    try:
        model.load_state_dict(ckpt["qat_model"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: its QAT state does not fit the model ({exc})") from exc
    return model.to(map_location).eval(), spec, ckpt


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Let the activation observers see ``batches`` (everything else in eval mode: BatchNorm keeps its
    statistics). Observers that have seen nothing yet start from the first batch's range."""
    model.eval()
    quantizers = activation_quantizers(model).values()
    for q in quantizers:
        q.train()
    try:
        for x in batches:
            model(x)
    finally:
        for q in quantizers:
            q.eval()
    return model


def freeze_bn(model: nn.Module) -> None:
    """BatchNorm statistics stop moving; the folded weights use the running statistics from now on."""
    model.apply(nniqat.freeze_bn_stats)


def freeze_observers(model: nn.Module) -> None:
    """Activation ranges stop moving (weight scales keep following the weights: ``max|w| / 127``)."""
    for q in activation_quantizers(model).values():
        q.disable_observer()


class QatSchedule:
    """Freezes BatchNorm and the activation observers at their fractions of the run's ``total`` steps;
    :meth:`before_step` is called with the step about to run (so a resumed run freezes at once)."""

    def __init__(self, model: nn.Module, total_steps: int, freeze_bn_after: float, freeze_observers_after: float):
        self.model = model
        self.bn_step = math.ceil(freeze_bn_after * total_steps) if freeze_bn_after < 1 else None
        self.obs_step = math.ceil(freeze_observers_after * total_steps) if freeze_observers_after < 1 else None
        self.bn_frozen = self.obs_frozen = False

    def before_step(self, step: int) -> None:
        if not self.bn_frozen and self.bn_step is not None and step >= self.bn_step:
            freeze_bn(self.model)
            self.bn_frozen = True
            log.info("QAT: BatchNorm statistics frozen at step %d", step)
        if not self.obs_frozen and self.obs_step is not None and step >= self.obs_step:
            freeze_observers(self.model)
            self.obs_frozen = True
            log.info("QAT: activation ranges frozen at step %d", step)


# --------------------------------------------------------------------------- the training run


def qat_run_config(config: dict[str, Any], resume: str | None = None) -> dict[str, Any]:
    """The config a QAT fine-tune actually runs: ``epochs``, ``optimizer.lr`` from the ``qat`` section
    (its automatic values resolved), no warm-up, no moving average of the weights, no AMP.

    ``ValueError`` naming ``qat.init`` when there is no checkpoint to start from.
    """
    qat = config["qat"]
    if not qat["init"] and not resume:
        raise ValueError(
            "qat.enabled: qat.init must name the trained checkpoint to fine-tune (e.g. qat.init=runs/x/best.pt)"
        )
    if qat["init"] and not Path(qat["init"]).is_file():
        raise ValueError(f"qat.init: {qat['init']} is not a file")
    epochs = qat["epochs"]
    if epochs == 0:
        trained = config["epochs"]
        if qat["init"]:
            ckpt = torch.load(qat["init"], map_location="cpu", weights_only=True)
            trained = int(ckpt.get("epoch", trained - 1)) + 1 if isinstance(ckpt, dict) else trained
        epochs = max(1, round(AUTO_EPOCH_FRACTION * trained))
    lr = qat["lr"] or AUTO_LR_FRACTION * config["optimizer"]["lr"]
    derived = {**config, "epochs": epochs, "amp": False}
    derived["optimizer"] = {**config["optimizer"], "lr": lr}
    derived["schedule"] = {**config["schedule"], "warmup_epochs": 0.0}
    derived["ema"] = {**config["ema"], "enabled": False}
    return derived


def start_qat_model(config: dict[str, Any], spec: ModelSpec, device: torch.device) -> tuple[nn.Module, ModelSpec]:
    """The fake-quantised model starting from ``qat.init`` (which must hold this config's model; with
    ``model.score_threshold: auto`` its threshold carries over until the first evaluation)."""
    from edgedet.training.checkpoint import load_checkpoint

    path = config["qat"]["init"]
    try:
        model, ckpt_spec, ckpt = load_checkpoint(path, map_location=device)
    except ValueError as exc:
        raise ValueError(f"qat.init: {exc}") from exc
    if is_qat_checkpoint(ckpt):
        log.info("qat.init %s is a QAT checkpoint: fine-tuning its float weights again", path)
    if config["model"]["score_threshold"] == "auto":
        spec = replace(spec, score_threshold=ckpt_spec.score_threshold)
    if ckpt_spec != spec:
        raise ValueError(
            f"qat.init: {path} holds a different model than this config describes ({_spec_diff(ckpt_spec, spec)}); "
            "fine-tune with the config it was trained with"
        )
    prepare_qat(model, spec, config["qat"]["target"])
    return model.to(device).train(), spec


def _spec_diff(a: ModelSpec, b: ModelSpec) -> str:
    da, db = a.to_dict(), b.to_dict()
    keys = [k for k in da if da.get(k) != db.get(k)]
    return ", ".join(f"{k}: {da.get(k)!r} vs {db.get(k)!r}" for k in keys[:4]) or "?"

"""A training checkpoint (``.pt``) as an inference backend: the runtime's backend table names this class,
so ``edgedet detect`` / ``eval`` / ``bench`` take checkpoints on a desktop without ``edge`` importing torch."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from edgedet.edge.bench.model_stats import Op, count_ops
from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.runtime.backends.base import check_path, failure_reason
from edgedet.training.checkpoint import load_checkpoint
from edgedet.training.module_backend import ModuleBackend

__all__ = ["TorchBackend"]


class TorchBackend:
    """A training checkpoint (``.pt``) run with torch — desktop only, imported lazily."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        self.path = check_path(path, ".pt")
        if threads:
            torch.set_num_threads(int(threads))
        try:
            model, self._spec, _ = load_checkpoint(self.path)
        except (ValueError, FileNotFoundError):
            raise
        except Exception as exc:  # torch.load's pickling / zip errors
            raise ValueError(f"{self.path}: not a loadable checkpoint ({failure_reason(exc)})") from exc
        self._model = model
        self._module = ModuleBackend(model, self._spec, self.path)
        self.input_shape: tuple[int | None, ...] = self._module.input_shape
        self.input_layout = self._module.input_layout
        self.output_names = self._module.output_names

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        return self._module.run(tensor)

    def read_spec(self) -> ModelSpec | None:
        return self._spec

    def layer_stats(self) -> tuple[int, float]:
        """``(params, MFLOPs)`` by forward hooks on one zero input, counted as the exported graph counts them."""
        model, spec = self._model.eval(), self._spec
        ops: list[Op] = []
        params = 0
        pending_bias = 0  # a bias-less conv's BatchNorm becomes its bias when exported

        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output
            weight = tuple(module.weight.shape)
            if isinstance(module, nn.Linear):
                ops.append(Op("matmul", weight, None, macs_override=math.prod(out.shape[:-1]) * math.prod(weight)))
            elif isinstance(module, nn.ConvTranspose2d):
                ops.append(Op("deconv", weight, None, math.prod(inputs[0].shape[2:])))
            else:
                ops.append(Op("conv", weight, None, math.prod(out.shape[2:])))

        handles = []
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                handles.append(module.register_forward_hook(hook))
                params += module.weight.numel()
                if module.bias is not None:
                    params += module.bias.numel()
                    pending_bias = 0
                else:
                    pending_bias = module.out_channels if hasattr(module, "out_channels") else module.out_features
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                params += pending_bias
                pending_bias = 0
        try:
            with torch.no_grad():
                model(torch.zeros(1, 3, spec.input_height, spec.input_width))
        finally:
            for h in handles:
                h.remove()
        return params, count_ops(ops)[1]

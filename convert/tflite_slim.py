"""Strip what a device never reads from a ``.tflite`` file: tensor and subgraph names and the
description, but not the names of the graph's inputs and outputs (the runtime and the sidecar's output
mapping find outputs by them) nor the signature definitions that refer to them.

onnx2tf and the TFLite converter name every tensor after the Keras/TF ops it came from
(``model/tf.nn.convolution_12/convolution;StatefulPartitionedCall/...``): on the slim SSD those names
are ~15 % of an int8 file. The flatbuffer is read and rewritten with LiteRT's own ``flatbuffer_utils``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["strip_tensor_names"]


def _flatbuffer_utils():
    try:
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError:  # older stacks: the same module inside TensorFlow
        from tensorflow.lite.tools import flatbuffer_utils  # type: ignore[no-redef]
    return flatbuffer_utils


def strip_tensor_names(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Rewrite ``path`` in place without internal tensor names; ``(bytes before, bytes after)``."""
    fu = _flatbuffer_utils()
    path = Path(path)
    before = path.stat().st_size
    try:
        model = fu.read_model(str(path))
    except Exception as exc:  # flatbuffers raises assorted errors on a file that is not a model
        raise ValueError(f"{path}: not a readable TFLite flatbuffer ({exc})") from exc
    model.description = None
    for subgraph in model.subgraphs:
        keep = {*map(int, subgraph.inputs), *map(int, subgraph.outputs)}
        subgraph.name = None
        for index, tensor in enumerate(subgraph.tensors):
            if index not in keep:
                tensor.name = None
    tmp = path.with_suffix(path.suffix + ".tmp")
    fu.write_model(model, str(tmp))
    os.replace(tmp, path)
    return before, path.stat().st_size

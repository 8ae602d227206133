"""Shrink a ``.tflite`` file without changing what it computes.

Two things a device never needs:

- **Internal tensor names.** onnx2tf and the TFLite converter name every tensor after the Keras/TF ops it
  came from (``model/tf.nn.convolution_12/convolution;StatefulPartitionedCall/...``): on the slim SSD
  ~15 % of an int8 file. Stripped, except the names of the graph's inputs and outputs (the runtime and
  the sidecar's output mapping find outputs by them) and the signature definitions that refer to them.
- **Repeated vectors.** A per-channel int8 tensor stores one int64 zero point per channel — all zeros
  for symmetric weights — which is 7284 channels x 8 bytes = 58 KB on the slim SSD. A flatbuffer lets
  many tables point at one vector, so identical vectors are written once (:class:`SharingBuilder`);
  the interpreter reads them exactly as before.

The flatbuffer is read with LiteRT's own ``flatbuffer_utils`` object API and packed again.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np

__all__ = ["SharingBuilder", "slim_tflite"]

_TFLITE_FILE_IDENTIFIER = b"TFL3"


def _flatbuffer_utils() -> Any:
    try:
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError:  # older stacks: the same module inside TensorFlow
        from tensorflow.lite.tools import flatbuffer_utils  # type: ignore[no-redef]
    return flatbuffer_utils


class SharingBuilder(flatbuffers.Builder):
    """A flatbuffers builder that writes each distinct numpy vector once and reuses its offset.

    Sound because a flatbuffer is built back to front: a vector written earlier lies after every table
    written later, so any later table may point at it (the C++ builder's ``CreateSharedString`` does the
    same for strings).
    """

    def __init__(self, initial_size: int = 1024) -> None:
        super().__init__(initial_size)
        self._written: dict[tuple[str, tuple[int, ...], bytes], int] = {}

    def CreateNumpyVector(self, x: np.ndarray) -> int:  # flatbuffers' method name
        key = (x.dtype.str, x.shape, x.tobytes())
        if key not in self._written:
            self._written[key] = super().CreateNumpyVector(x)
        return self._written[key]


def slim_tflite(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Rewrite ``path`` in place without internal tensor names and with shared identical vectors;
    returns ``(bytes before, bytes after)``."""
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
    if sys.byteorder == "big":  # the file is little-endian, as flatbuffer_utils.write_model does
        fu.byte_swap_tflite_model_obj(model, "big", "little")
    builder = SharingBuilder()
    builder.Finish(model.Pack(builder), file_identifier=_TFLITE_FILE_IDENTIFIER)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(builder.Output())
    os.replace(tmp, path)
    return before, path.stat().st_size

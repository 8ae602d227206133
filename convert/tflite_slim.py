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

:func:`write_tflite_metadata` rewrites a file the same way to add (or replace) ``Model.metadata`` entries,
each pointing at a new buffer that holds its bytes: the export puts the edgedet spec there under
``"edgedet"`` (read back on the device by :mod:`edgedet.edge.runtime.backends.tflite_metadata`). Metadata
is never read by the interpreter's kernels, so the model computes exactly the same.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np

__all__ = ["SharingBuilder", "slim_tflite", "write_tflite_metadata"]

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


def _read_model(path: Path) -> Any:
    try:
        return _flatbuffer_utils().read_model(str(path))
    except Exception as exc:  # flatbuffers raises assorted errors on a file that is not a model
        raise ValueError(f"{path}: not a readable TFLite flatbuffer ({exc})") from exc


def _write_model(model: Any, path: Path) -> None:
    """Pack ``model`` (shared identical vectors) and replace ``path`` with it atomically."""
    if sys.byteorder == "big":  # the file is little-endian, as flatbuffer_utils.write_model does
        _flatbuffer_utils().byte_swap_tflite_model_obj(model, "big", "little")
    builder = SharingBuilder()
    builder.Finish(model.Pack(builder), file_identifier=_TFLITE_FILE_IDENTIFIER)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(builder.Output())
    os.replace(tmp, path)


def slim_tflite(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Rewrite ``path`` in place without internal tensor names and with shared identical vectors;
    returns ``(bytes before, bytes after)``."""
    path = Path(path)
    before = path.stat().st_size
    model = _read_model(path)
    model.description = None
    for subgraph in model.subgraphs:
        keep = {*map(int, subgraph.inputs), *map(int, subgraph.outputs)}
        subgraph.name = None
        for index, tensor in enumerate(subgraph.tensors):
            if index not in keep:
                tensor.name = None
    _write_model(model, path)
    return before, path.stat().st_size


def _name(value: bytes | str | None) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def write_tflite_metadata(path: str | os.PathLike[str], entries: Mapping[str, bytes | str]) -> int:
    """Rewrite ``path`` in place with a ``Model.metadata`` entry per ``entries`` item (a ``str`` value is
    stored as UTF-8), each pointing at a buffer that holds the bytes. An entry of the same name is
    replaced (its buffer reused when nothing else points at it), so writing twice leaves one entry.
    Nothing the interpreter computes with changes. Returns the file's new size in bytes."""
    schema = _flatbuffer_utils().schema_fb
    path = Path(path)
    model = _read_model(path)
    model.metadata = list(model.metadata or [])
    model.buffers = list(model.buffers or [])
    for name, value in entries.items():
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        same = [m for m in model.metadata if _name(m.name) == name]
        model.metadata = [m for m in model.metadata if _name(m.name) != name]
        used = {int(m.buffer) for m in model.metadata}
        used |= {int(t.buffer) for g in model.subgraphs or [] for t in g.tensors or []}
        reusable = [int(m.buffer) for m in same if 0 < int(m.buffer) < len(model.buffers) and int(m.buffer) not in used]
        if reusable:
            index = reusable[0]
        else:
            model.buffers.append(None)
            index = len(model.buffers) - 1
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(raw, np.uint8).copy()
        model.buffers[index] = buffer
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, index
        model.metadata.append(entry)
    _write_model(model, path)
    return path.stat().st_size

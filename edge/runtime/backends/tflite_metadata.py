"""The edgedet spec inside a ``.tflite`` file: a ``Model.metadata`` entry named ``"edgedet"`` whose buffer
holds the spec as UTF-8 JSON, the TFLite twin of ONNX's ``metadata_props["edgedet"]``.

The reader needs nothing but the standard library: it walks the flatbuffer by hand (TFLite's
``schema.fbs``: the root ``Model`` table -> its ``metadata`` vector of ``{name, buffer}`` tables ->
``buffers[buffer]``), checking every offset against the file's size, so a truncated or corrupt file is a
``ValueError`` naming the file and what is wrong, never an ``IndexError`` or a crash deep inside. A buffer
holds its bytes either in its ``data`` vector or, in a model written with its weights outside the
flatbuffer (models over 2 GB), at ``offset`` / ``size`` counted from the start of the file; both are read.
The file is memory-mapped, so only the few pages walked are read from disk.

Where a ``.tflite`` model's spec comes from (:func:`read_tflite_spec`):

1. the ``"edgedet"`` metadata inside the file, when it has one: **the file wins**. It is written together
   with the weights it describes (output names, priors, quantisation) and cannot go stale, while a
   ``MODEL.json`` beside it can be left over from an earlier export or copied next to the wrong model.
   A sidecar that says something else is ignored with a warning. To change thresholds without
   re-exporting, pass them at run time (``--score-threshold``/``--iou-threshold``,
   ``Detector.from_model(..., score_threshold=...)``) or give a whole spec (``--spec SPEC.json``,
   ``spec=``), which replaces the file's;
2. otherwise the ``MODEL.json`` sidecar beside it (files exported before the spec moved inside);
3. otherwise ``None``.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
from pathlib import Path

from edgedet.edge.core.model_spec import ModelSpec

__all__ = [
    "METADATA_NAME",
    "TFLITE_IDENTIFIER",
    "read_embedded_spec",
    "read_metadata",
    "read_tflite_spec",
    "sidecar_path",
]

log = logging.getLogger("edgedet.runtime")

METADATA_NAME = "edgedet"
TFLITE_IDENTIFIER = b"TFL3"

# Field numbers in TFLite's schema.fbs (vtable slot = 4 + 2 * field)
_MODEL_BUFFERS = 4
_MODEL_METADATA = 6
_METADATA_NAME = 0
_METADATA_BUFFER = 1
_BUFFER_DATA = 0
_BUFFER_OFFSET = 1
_BUFFER_SIZE = 2


class _Corrupt(Exception):
    """Raised inside the walk; turned into one ValueError naming the file."""


class _Flatbuffer:
    """Bounds-checked reads of a little-endian flatbuffer held in ``data`` (bytes or an mmap)."""

    def __init__(self, data: bytes | mmap.mmap) -> None:
        self.data = data
        self.size = len(data)

    def _unpack(self, fmt: str, pos: int, what: str) -> int:
        width = struct.calcsize(fmt)
        if pos < 0 or pos + width > self.size:
            raise _Corrupt(f"{what} at byte {pos} lies outside the {self.size}-byte file")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def u32(self, pos: int, what: str) -> int:
        return self._unpack("<I", pos, what)

    def u64(self, pos: int, what: str) -> int:
        return self._unpack("<Q", pos, what)

    def deref(self, pos: int, what: str) -> int:
        """The absolute position a ``uoffset_t`` at ``pos`` points to."""
        target = pos + self.u32(pos, what)
        if target >= self.size:
            raise _Corrupt(f"{what} points to byte {target}, past the end of the {self.size}-byte file")
        return target

    def field(self, table: int, index: int, what: str) -> int | None:
        """Absolute position of field ``index`` of the table at ``table``, or ``None`` when absent."""
        vtable = table - self._unpack("<i", table, f"{what} table")
        vtable_size = self._unpack("<H", vtable, f"{what} vtable")
        slot = 4 + 2 * index
        if slot + 2 > vtable_size:
            return None
        offset = self._unpack("<H", vtable + slot, f"{what} vtable")
        return table + offset if offset else None

    def vector(self, pos: int, element_size: int, what: str) -> tuple[int, int]:
        """``(first element position, length)`` of the vector at ``pos``, checked to fit in the file."""
        length = self.u32(pos, f"{what} length")
        start = pos + 4
        if start + length * element_size > self.size:
            raise _Corrupt(f"{what} of {length} entries at byte {pos} runs past the end of the {self.size}-byte file")
        return start, length

    def bytes_at(self, start: int, length: int, what: str) -> bytes:
        if start < 0 or length < 0 or start + length > self.size:
            raise _Corrupt(f"{what} (bytes {start}..{start + length}) runs past the end of the {self.size}-byte file")
        return bytes(self.data[start : start + length])


def _buffer_bytes(fb: _Flatbuffer, model: int, index: int) -> bytes:
    """The bytes of ``Model.buffers[index]``: its ``data`` vector, or ``offset``/``size`` in the file."""
    field = fb.field(model, _MODEL_BUFFERS, "Model")
    if field is None:
        raise _Corrupt(f"metadata points to buffer {index} but the model has no buffers")
    start, count = fb.vector(fb.deref(field, "Model.buffers"), 4, "Model.buffers")
    if index >= count:
        raise _Corrupt(f"metadata points to buffer {index} but the model has {count} buffers")
    slot = start + 4 * index
    buffer = fb.deref(slot, f"buffers[{index}]")
    offset_field = fb.field(buffer, _BUFFER_OFFSET, f"buffers[{index}]")
    offset = fb.u64(offset_field, f"buffers[{index}].offset") if offset_field is not None else 0
    if offset > 1:  # stored outside the flatbuffer (0 and 1 mean "not used", as in TFLite's IsValidBufferOffset)
        size_field = fb.field(buffer, _BUFFER_SIZE, f"buffers[{index}]")
        size = fb.u64(size_field, f"buffers[{index}].size") if size_field is not None else 0
        return fb.bytes_at(offset, size, f"buffers[{index}] stored at offset {offset}, size {size}")
    data_field = fb.field(buffer, _BUFFER_DATA, f"buffers[{index}]")
    if data_field is None:
        return b""
    start, length = fb.vector(fb.deref(data_field, f"buffers[{index}].data"), 1, f"buffers[{index}].data")
    return fb.bytes_at(start, length, f"buffers[{index}].data")


def _find_metadata(fb: _Flatbuffer, name: bytes) -> bytes | None:
    if fb.size < 8:
        raise _Corrupt(f"{fb.size} bytes is too short for a TFLite flatbuffer")
    identifier = fb.bytes_at(4, 4, "file identifier")
    if identifier != TFLITE_IDENTIFIER:
        raise _Corrupt(f"not a TFLite flatbuffer (file identifier {identifier!r}, expected {TFLITE_IDENTIFIER!r})")
    model = fb.deref(0, "root table offset")
    field = fb.field(model, _MODEL_METADATA, "Model")
    if field is None:
        return None
    start, count = fb.vector(fb.deref(field, "Model.metadata"), 4, "Model.metadata")
    for i in range(count):
        entry = fb.deref(start + 4 * i, f"metadata[{i}]")
        name_field = fb.field(entry, _METADATA_NAME, f"metadata[{i}]")
        if name_field is None:
            continue
        text_start, text_length = fb.vector(fb.deref(name_field, f"metadata[{i}].name"), 1, f"metadata[{i}].name")
        if fb.bytes_at(text_start, text_length, f"metadata[{i}].name") != name:
            continue
        buffer_field = fb.field(entry, _METADATA_BUFFER, f"metadata[{i}]")
        index = fb.u32(buffer_field, f"metadata[{i}].buffer") if buffer_field is not None else 0
        return _buffer_bytes(fb, model, index)
    return None


def read_metadata(path: str | os.PathLike[str], name: str = METADATA_NAME) -> bytes | None:
    """The bytes of the ``Model.metadata`` entry ``name`` in the ``.tflite`` file ``path``, or ``None``
    when it has no such entry; ``ValueError`` (naming ``path``) for a file that is not a readable TFLite
    flatbuffer."""
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        try:
            if size == 0:
                return _find_metadata(_Flatbuffer(b""), name.encode("utf-8"))
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _find_metadata(_Flatbuffer(data), name.encode("utf-8"))
        except _Corrupt as exc:
            raise ValueError(f"{path}: truncated or corrupt TFLite file: {exc}") from None


def read_embedded_spec(path: str | os.PathLike[str]) -> ModelSpec | None:
    """The spec in the ``"edgedet"`` metadata of the ``.tflite`` file ``path``, or ``None`` when it has none."""
    data = read_metadata(path, METADATA_NAME)
    if data is None:
        return None
    source = f"{path} (metadata '{METADATA_NAME}')"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{source}: not UTF-8 text ({exc})") from None
    return ModelSpec.from_json(text, source=source)


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """``model.tflite`` -> ``model.json``: where files exported before the spec moved inside keep it."""
    return Path(path).with_suffix(".json")


def _read_sidecar(path: Path) -> ModelSpec | None:
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    return ModelSpec.from_json(sidecar.read_text(encoding="utf-8"), source=str(sidecar))


def read_tflite_spec(path: str | os.PathLike[str]) -> ModelSpec | None:
    """The spec of the ``.tflite`` file ``path``: its own ``"edgedet"`` metadata, which wins over a
    ``MODEL.json`` sidecar (a differing sidecar is ignored with a warning); the sidecar for older files
    without one; ``None`` when there is neither. See the module docstring for why the file wins."""
    path = Path(path)
    embedded = read_embedded_spec(path)
    if embedded is None:
        return _read_sidecar(path)
    try:
        sidecar = _read_sidecar(path)
    except (OSError, ValueError) as exc:
        log.warning("%s: ignored, the spec inside %s is used (the sidecar is unreadable: %s)",
                    sidecar_path(path), path.name, exc)  # fmt: skip
        return embedded
    if sidecar is not None and sidecar != embedded:
        log.warning(
            "%s differs from the spec inside %s and is ignored: the file's own spec wins; change thresholds "
            "with --score-threshold/--iou-threshold or replace the spec with --spec",
            sidecar_path(path),
            path.name,
        )
    return embedded

"""Output paths checked before the work starts, and files written whole: a long run never ends in a
traceback over ``--json DIR`` or an unwritable folder, and never leaves a half-written file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["output_dir", "output_file", "write_bytes_atomic", "write_text_atomic"]


def _writable_ancestor(path: Path, flag: str) -> None:
    """The nearest existing ancestor of ``path`` must be a folder this process can write in."""
    parent = path.parent.resolve()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: cannot write in {parent} (permission denied)")


def output_file(path: str | os.PathLike[str], flag: str) -> Path:
    """``path`` as a file this run can write: not a folder, in a folder that exists or can be made."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path}: is a folder; expected a file name (e.g. {path / 'out.json'})")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{flag} {path}: the file is not writable")
    _writable_ancestor(path, flag)
    return path


def output_dir(path: str | os.PathLike[str], flag: str) -> Path:
    """``path`` as a folder this run can write in, made now (with its parents) when it does not exist."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path}: is a file; expected a folder")
    _writable_ancestor(path / "x", flag) if path.exists() else _writable_ancestor(path, flag)
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: cannot write in this folder (permission denied)")
    return path


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``: readers see the
    old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """:func:`write_bytes_atomic` of ``text`` in UTF-8."""
    write_bytes_atomic(path, text.encode("utf-8"))

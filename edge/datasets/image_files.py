"""Image files: the one image decoder, the suffixes counted as images, the pixel size from the file
header, and case-insensitive look-up by stem.

:func:`read_image` is the decoder every part of edgedet uses (``detect``, the camera daemon, the
benchmarks, the dataset readers, calibration). It opens regular files only (a FIFO, device or folder
named ``x.jpg`` is refused at once, never waited on) and raises :class:`ImageReadError` naming the file
for anything it cannot decode.

**EXIF orientation.** A phone photo is often stored sideways with an EXIF tag saying how to turn it
upright. :func:`read_image` applies that tag by default (``exif_orientation=True``): what ``detect``,
the camera daemon and the benchmarks see is the picture as any viewer shows it. The dataset path does
not: annotations (VOC, COCO, YOLO, WIDER) are in the stored pixel coordinates of the file as labelled,
and a sample's ``width`` / ``height`` come from the file header (:func:`image_size`), which is the stored
size as well. :meth:`edgedet.edge.datasets.sample.Sample.load_image` and ``image_size(decode=True)``
therefore read with ``exif_orientation=False``, so the pixels, the size and the boxes of a sample always
agree; applying the tag there would swap width and height of a 90-degree-rotated image and misplace
every box.

``image_size`` reads only the first bytes of PNG, JPEG, BMP, GIF and WebP files (falling back to a full
decode for anything else), so readers can size thousands of images without decoding them.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageIndex",
    "ImageReadError",
    "image_size",
    "list_images",
    "read_image",
]

# The file suffixes (lower case) taken for images everywhere: folders given to ``detect``, the camera
# daemon and the benchmarks, dataset image look-up, calibration folders.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# A FIFO opens at once with O_NONBLOCK (no writer needed), so it can be refused instead of waited on;
# a regular file reads the same either way.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)


class ImageReadError(ValueError, OSError):
    """An image file that cannot be read or decoded; the message names the file and the reason.

    A ``ValueError`` (what ``detect`` and the camera sources catch) and an ``OSError`` (what the dataset
    readers, evaluation and calibration catch), so every caller reports and skips the one file.
    """


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _open_image_file(path: Path) -> BinaryIO:
    """``path`` opened for binary reading; :class:`ImageReadError` at once when it is not a regular file.

    The file is opened first and then checked (``fstat``), so it cannot be swapped between the check
    and the read. Other ``OSError`` (missing, no permission) propagate unchanged.
    """
    fd = os.open(path, _OPEN_FLAGS)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ImageReadError(f"{path}: not a regular file ({_file_kind(mode)})")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_image(path: str | os.PathLike[str], *, exif_orientation: bool = True) -> np.ndarray:
    """Decode an image file to ``HxWx3`` uint8 BGR, or raise :class:`ImageReadError` naming the file and why.

    ``exif_orientation``: turn the image upright as its EXIF orientation tag says (the default; what a
    viewer shows). ``False`` keeps the stored pixel layout, whose size is the one in the file header and
    in dataset annotations (see the module docstring).
    """
    path = Path(path)
    try:
        with _open_image_file(path) as f:
            data = np.frombuffer(f.read(), dtype=np.uint8)
    except ImageReadError:
        raise
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if data.size == 0:
        raise ImageReadError(f"{path}: empty file")
    flags = cv2.IMREAD_COLOR if exif_orientation else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error as exc:
        raise ImageReadError(f"{path}: not a decodable image ({' '.join(str(exc).split())[:200]})") from exc
    if image is None or image.size == 0:
        raise ImageReadError(f"{path}: not a decodable image (corrupt or unsupported format)")
    return image


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files (:data:`IMAGE_SUFFIXES`, any case) directly inside ``folder``, sorted by name.

    Only regular files: a FIFO or folder with an image suffix is left out."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def image_size(path: str | Path, *, decode: bool = False) -> tuple[int, int]:
    """``(width, height)`` of an image file as stored (EXIF orientation not applied), from its header
    unless ``decode`` (then fully decoded).

    Raises ``OSError`` naming the file when it is missing, empty, not a regular file or not an image.
    """
    if not decode:
        try:
            with _open_image_file(Path(path)) as f:
                size = _header_size(f)
        except FileNotFoundError as exc:
            raise OSError(f"{path}: image file not found") from exc
        except ImageReadError:  # not a regular file: no decode could do better
            raise
        except (struct.error, ValueError):
            size = None
        if size is not None and size[0] > 0 and size[1] > 0:
            return size
    height, width = read_image(path, exif_orientation=False).shape[:2]
    return width, height


def _header_size(f) -> tuple[int, int] | None:
    head = f.read(32)
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", head[6:10])
    if head.startswith(b"BM"):
        width, height = struct.unpack("<ii", head[18:26])
        return width, abs(height)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return _webp_size(head)
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(f)
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _jpeg_size(f) -> tuple[int, int] | None:
    f.seek(2)
    while True:
        byte = f.read(1)
        while byte and byte != b"\xff":  # garbage between segments
            byte = f.read(1)
        while byte == b"\xff":  # fill bytes
            byte = f.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        (length,) = struct.unpack(">H", f.read(2))
        if marker in _JPEG_SOF:
            _, height, width = struct.unpack(">BHH", f.read(5))
            return width, height
        f.seek(length - 2, 1)


class ImageIndex:
    """The image files of one folder, found by name or stem regardless of letter case."""

    def __init__(self, folder: str | Path, extensions: tuple[str, ...] = IMAGE_SUFFIXES) -> None:
        self.folder = Path(folder)
        self._by_name: dict[str, Path] = {}
        self._by_stem: dict[str, Path] = {}
        entries = sorted(self.folder.iterdir()) if self.folder.is_dir() else []
        for path in entries:
            if path.suffix.lower() in extensions and path.is_file():
                self._by_name.setdefault(path.name.lower(), path)
                self._by_stem.setdefault(path.stem.lower(), path)

    def __len__(self) -> int:
        return len(self._by_name)

    def find(self, stem: str, filename: str | None = None) -> Path | None:
        """The file named ``filename`` if present, else the image whose stem is ``stem`` (any extension)."""
        if filename:
            hit = self._by_name.get(Path(filename).name.lower())
            if hit is not None:
                return hit
        return self._by_stem.get(stem.lower())

"""Image files: decoding, the pixel size from the file header, and case-insensitive look-up by stem.

``image_size`` reads only the first bytes of PNG, JPEG, BMP, GIF and WebP files (falling back to a full
decode for anything else), so readers can size thousands of images without decoding them.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "ImageIndex", "image_size", "read_image"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")

# Colour BGR in the stored pixel layout (EXIF rotation ignored), so the decoded size always equals
# the size in the file header and in the annotations.
_IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file as ``HxWx3`` uint8 BGR, or raise ``OSError`` naming the file and why."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise OSError(f"{path}: cannot read image file ({exc.strerror or exc})") from exc
    image = cv2.imdecode(data, _IMREAD_FLAGS) if data.size else None
    if image is None:
        raise OSError(f"{path}: not a decodable image" + ("" if data.size else " (empty file)"))
    return image


def image_size(path: str | Path, *, decode: bool = False) -> tuple[int, int]:
    """``(width, height)`` of an image file, from its header unless ``decode`` (then fully decoded).

    Raises ``OSError`` naming the file when it is missing, empty or not an image.
    """
    if not decode:
        try:
            with open(path, "rb") as f:
                size = _header_size(f)
        except FileNotFoundError as exc:
            raise OSError(f"{path}: image file not found") from exc
        except (struct.error, ValueError):
            size = None
        if size is not None and size[0] > 0 and size[1] > 0:
            return size
    height, width = read_image(path).shape[:2]
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

    def __init__(self, folder: str | Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> None:
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

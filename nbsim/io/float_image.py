"""Raw float32 images (C's ``-floatfile``, C ll. 3098-3106).

C writes ``fpixels*spixels`` native (little-endian) float32 values, fast index fastest,
no header.  The reader also accepts gzip files (detected by their magic bytes), as the
golden data are stored.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ._atomic import atomic_open
from .errors import FormatError

__all__ = ["write_float_image", "read_float_image"]


def write_float_image(path, image) -> None:
    """Write ``image`` as raw little-endian float32 in C (slow-major) order, atomically."""
    data = np.ascontiguousarray(image, dtype="<f4")      # no copy for a float32 image
    with atomic_open(path, "wb") as fh:
        fh.write(data.reshape(-1).view(np.uint8))


def read_float_image(path, shape=None, *, fpixels: int | None = None) -> np.ndarray:
    """Read a raw float32 image; returns (slow, fast) if ``shape``/``fpixels`` given, else 1-D."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) % 4:
        raise FormatError(f"{path}: size {len(raw)} is not a multiple of 4 bytes")
    a = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if shape is not None:
        if int(np.prod(shape)) != a.size:
            raise FormatError(f"{path}: {a.size} floats, expected shape {tuple(shape)}")
        return a.reshape(shape)
    if fpixels:
        if a.size % int(fpixels):
            raise FormatError(f"{path}: {a.size} floats not a multiple of fpixels={fpixels}")
        return a.reshape(-1, int(fpixels))
    return a

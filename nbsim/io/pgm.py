"""PGM (P5) preview image as nanoBragg writes it (C ll. 3187-3225).

Pixels inside the ROI: ``test = float_pixel * pgm_scale`` (double), clipped above at
255 only, then ``(unsigned char) test`` (truncation; C does not clip below 0, a negative
value wraps like gcc's int conversion).  Outside the ROI: 0.  Header, exactly::

    P5\\n<fpixels> <spixels>\\n# pixels scaled by <pgm_scale %g>\\n255\\n

The scale rule (default ``250/(5*rmsd)``) is in :mod:`nbsim.stats`.
"""
from __future__ import annotations

import numpy as np

from ._atomic import atomic_open
from ._roi import as_image2d, roi_tuple, roi_window
from .cformat import c_g
from .errors import FormatError

__all__ = ["pgm_image", "write_pgm", "pgm_header", "read_pgm"]


def _pgm(img, scale, roi, out):
    """C's conversion of the ROI window of ``img`` (float32) into ``out`` (uint8)."""
    win = roi_window(roi)
    test = img[win].astype(np.float64)
    test *= scale
    np.minimum(test, 255.0, out=test)           # NaN stays NaN
    # (unsigned char)(double): cvttsd2si to int32 (truncation; NaN and values below
    # int32 give 0x80000000), then the low 8 bits
    np.trunc(test, out=test)
    test[~(test > -2147483649.0)] = 0.0
    out[win] = test.astype(np.int32).astype(np.uint8)   # integer downcast wraps mod 256


def pgm_image(float_image, pgm_scale: float, roi=None, *, fpixels: int | None = None):
    """uint8 (slow, fast) pixel array of the PGM for a given (final) scale."""
    img = as_image2d(float_image, fpixels).astype(np.float32, copy=False)
    out = np.zeros(img.shape, dtype=np.uint8)
    r = roi_tuple(roi, img.shape[1], img.shape[0])
    _pgm(np.ascontiguousarray(img), float(pgm_scale), r, out)
    return out


def pgm_header(fpixels: int, spixels: int, pgm_scale: float) -> bytes:
    """The exact header text C writes."""
    return ("P5\n%d %d\n# pixels scaled by %s\n255\n"
            % (fpixels, spixels, c_g(pgm_scale))).encode("latin-1")


def write_pgm(path, pixels: np.ndarray, pgm_scale: float) -> None:
    """Write a uint8 (slow, fast) array as C's PGM (atomic)."""
    p = np.asarray(pixels)
    if p.dtype != np.uint8 or p.ndim != 2:
        raise ValueError("PGM pixels must be a 2-D uint8 array (use pgm_image)")
    with atomic_open(path, "wb") as fh:
        fh.write(pgm_header(p.shape[1], p.shape[0], pgm_scale))
        fh.write(np.ascontiguousarray(p).reshape(-1))


def read_pgm(path):
    """Read a binary PGM (P5, maxval <= 255, comments allowed): ``(pixels, comments)``."""
    data = open(path, "rb").read()
    if not data.startswith(b"P5"):
        raise FormatError(f"{path}: not a binary PGM (P5)")
    pos = 2
    fields = []
    comments = []
    while len(fields) < 3:
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            end = data.find(b"\n", pos)
            comments.append(data[pos + 1:end].decode("latin-1").strip())
            pos = end + 1
            continue
        start = pos
        while pos < len(data) and data[pos:pos + 1].isdigit():
            pos += 1
        if start == pos:
            raise FormatError(f"{path}: malformed PGM header")
        fields.append(int(data[start:pos]))
    w, h, maxval = fields
    if maxval > 255:
        raise FormatError(f"{path}: 16-bit PGM not supported")
    pos += 1        # single whitespace after maxval
    pix = np.frombuffer(data, dtype=np.uint8, count=w * h, offset=pos).reshape(h, w)
    return pix.copy(), comments

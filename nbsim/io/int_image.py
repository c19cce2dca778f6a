"""Float image -> 16-bit integer image as nanoBragg writes ``-intfile`` (C ll. 3135-3161).

For every pixel inside the ROI (the mask is *not* consulted; masked pixels hold 0.0 and
become ``adc_offset``)::

    test = float_pixel * intfile_scale + adc_offset      (double)
    clip test to [0, 65535]
    value = (unsigned short) floorf(test + 0.5)          (rounded to float first!)

``floorf`` takes a float, so ``test + 0.5`` is rounded to float32 before the floor; a
value just below an integer can round up to it.  Pixels outside the ROI stay 0 (C's
buffer is calloc'ed).  The scale rule (default 55000/max_I) is in :mod:`nbsim.stats`.
"""
from __future__ import annotations

import numba
import numpy as np

from ._roi import as_image2d, roi_tuple

__all__ = ["int_image"]


@numba.njit(cache=True)
def _c_to_u16(x):
    # gcc x86-64: (unsigned short)(double) = cvttsd2si to int32, keep the low 16 bits;
    # NaN and out-of-int32 values give 0x80000000 -> 0.
    if not (x > -2147483649.0 and x < 2147483648.0):
        return np.uint16(0)
    return np.uint16(np.int64(x) & 0xFFFF)


@numba.njit(cache=True)
def _int_image(img, scale, adc, roi, out):
    ns, nf = img.shape
    for s in range(ns):
        for f in range(nf):
            if f < roi[0] or f > roi[1] or s < roi[2] or s > roi[3]:
                continue
            test = np.float64(img[s, f]) * scale + adc
            if test > 65535.0:
                test = 65535.0
            if test < 0.0:
                test = 0.0
            r = np.float32(test + 0.5)
            out[s, f] = _c_to_u16(np.floor(np.float64(r)))


def int_image(float_image, intfile_scale: float, adc_offset: float = 40.0, roi=None,
              *, fpixels: int | None = None) -> np.ndarray:
    """uint16 (slow, fast) image C writes to ``-intfile`` for a given (final) scale.

    ``float_image`` is the float32 render (values are taken as float32 like C's
    ``floatimage``); ``roi`` is ``(xmin, xmax, ymin, ymax)`` inclusive or None.
    """
    img = as_image2d(float_image, fpixels).astype(np.float32, copy=False)
    out = np.zeros(img.shape, dtype=np.uint16)
    r = roi_tuple(roi, img.shape[1], img.shape[0])
    _int_image(np.ascontiguousarray(img), float(intfile_scale), float(adc_offset), r, out)
    return out

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

import numpy as np

from ._roi import as_image2d, roi_tuple, roi_window

__all__ = ["int_image"]


def _int_image(img, scale, adc, roi, out):
    """C's conversion of the ROI window of ``img`` (float32) into ``out``: the same IEEE
    operations in the same order as C, elementwise with NumPy."""
    win = roi_window(roi)
    test = img[win].astype(np.float64)
    test *= scale
    test += adc
    np.clip(test, 0.0, 65535.0, out=test)      # NaN stays NaN, as C's two tests leave it
    test += 0.5
    r = test.astype(np.float32)                 # floorf takes a float
    np.floor(r, out=r)                          # exact in float32
    # (unsigned short) of NaN is 0 with gcc x86-64 (cvttsd2si gives 0x80000000)
    r[np.isnan(r)] = 0.0
    out[win] = r.astype(np.uint16)              # whole numbers in [0, 65535]


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

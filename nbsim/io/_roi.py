"""C's region-of-interest test, shared by the image converters.

``roi = (xmin, xmax, ymin, ymax)`` in pixels, *inclusive*, x = fast, y = slow, exactly
the ``-roi`` numbers.  C skips a pixel when ``f < xmin or f > xmax or s < ymin or
s > ymax``; without ``-roi`` it uses ``(0, fpixels, 0, spixels)`` (note: not ``-1``),
which covers every pixel.
"""
from __future__ import annotations

import numpy as np


def roi_tuple(roi, fpixels: int, spixels: int) -> np.ndarray:
    """``roi`` as an int64 array (xmin, xmax, ymin, ymax); None -> C's default."""
    if roi is None:
        return np.array([0, fpixels, 0, spixels], dtype=np.int64)
    r = np.asarray(roi, dtype=np.int64).reshape(4)
    # C replaces negative entries by the defaults (ll. 1166-1169)
    default = (0, fpixels, 0, spixels)
    return np.array([r[i] if r[i] >= 0 else default[i] for i in range(4)], dtype=np.int64)


def as_image2d(image, fpixels: int | None = None) -> np.ndarray:
    """A (slow, fast) view of a float image; 1-D input needs ``fpixels``."""
    a = np.asarray(image)
    if a.ndim == 2:
        return a
    if a.ndim == 1 and fpixels:
        return a.reshape(-1, int(fpixels))
    raise ValueError("image must be 2-D (slow, fast), or 1-D with fpixels given")


def roi_window(roi) -> tuple:
    """The (slow, fast) slices of the inclusive ROI ``(xmin, xmax, ymin, ymax)`` (from
    :func:`roi_tuple`): C's per-pixel ROI test as one NumPy window."""
    x0, x1, y0, y1 = (int(v) for v in roi)
    return slice(y0, y1 + 1), slice(x0, x1 + 1)

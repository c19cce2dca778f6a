"""Image statistics nanoBragg.c prints after rendering, and its output-scale rules.

C (ll. 3041-3139) accumulates, *inside the render loop*, over pixels that are in the ROI
and not masked, in raster order, from the stored float32 pixel values:

* ``max_I``: starts at 0.0, replaced when a pixel is strictly greater (first maximum
  wins; an all-nonpositive image reports 0 at 0 0).  Its location ``max_I_x, max_I_y``
  is C's ``Fdet, Sdet`` at that moment: the detector coordinate (metres) of the *last
  sub-pixel* of the pixel, ``subpixel*(fpixel*oversample + oversample-1) + subpixel/2``
  with ``subpixel = pixel_size/oversample`` -- the pixel centre only when oversample = 1;
* ``sum += v`` (double), ``sumsqr += v*v`` where ``v*v`` is a *float32* product;
* ``sumn`` = number of such pixels.

Then ``avg = sum/sumn`` (sumn forced >= 1), ``rms = sqrt(sumsqr/(sumn-1))`` (sumn
forced >= 2), and a second pass over the ROI -- *including masked pixels* (value 0),
with its own count -- gives ``rmsd = sqrt(sum((v-avg)^2)/(n-1))``.  C prints::

    max_I = %g  at %g %g
    mean= %g rms= %g rmsd= %g

Scales: ``intfile_scale <= 0`` (default 0) becomes ``55000/max_I`` (1.0 when max_I <= 0),
printed ``intfile_scale = %g``; ``pgm_scale <= 0`` becomes ``250/(5*rmsd)`` (or
intfile_scale when rmsd <= 0), printed ``pgm_scale = %g``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from .io._roi import as_image2d, roi_tuple
from .io.cformat import c_g

__all__ = ["ImageStats", "image_stats", "intfile_scale_rule", "pgm_scale_rule",
           "max_location"]


@dataclass
class ImageStats:
    """C's statistics of a rendered image (see module doc); lengths in metres."""

    max_I: float
    max_I_x: float
    max_I_y: float
    max_fpixel: int          # -1 when no pixel exceeded 0
    max_spixel: int
    mean: float
    rms: float
    rmsd: float
    sum: float
    sumsqr: float
    sumn: int                # rendered (in-ROI, unmasked) pixels, before C's clamping

    def lines(self) -> list[str]:
        """The two lines C prints."""
        return ["max_I = %s  at %s %s" % (c_g(self.max_I), c_g(self.max_I_x), c_g(self.max_I_y)),
                "mean= %s rms= %s rmsd= %s" % (c_g(self.mean), c_g(self.rms), c_g(self.rmsd))]


@numba.njit(cache=True)
def _stats(img, render, use_mask, roi):
    ns, nf = img.shape
    max_I = 0.0
    mf = -1
    ms = -1
    total = 0.0
    sumsqr = 0.0
    sumn = 0
    for s in range(ns):
        for f in range(nf):
            if f < roi[0] or f > roi[1] or s < roi[2] or s > roi[3]:
                continue
            if use_mask and not render[s, f]:
                continue
            v = img[s, f]
            if v > max_I:
                max_I = np.float64(v)
                mf = f
                ms = s
            total += np.float64(v)
            sumsqr += np.float64(np.float32(v * v))   # float*float in C
            sumn += 1
    n = sumn
    if n <= 0:
        n = 1
    avg = total / n
    if n <= 1:
        n = 2
    rms = math.sqrt(sumsqr / (n - 1))
    sq2 = 0.0
    n2 = 0
    for s in range(ns):
        for f in range(nf):
            if f < roi[0] or f > roi[1] or s < roi[2] or s > roi[3]:
                continue
            t = np.float64(img[s, f]) - avg
            sq2 += t * t
            n2 += 1
    if n2 <= 1:
        n2 = 2
    rmsd = math.sqrt(sq2 / (n2 - 1))
    return max_I, mf, ms, avg, rms, rmsd, total, sumsqr, sumn


def max_location(fpixel: int, spixel: int, pixel_size: float, oversample: int = 1):
    """C's ``(Fdet, Sdet)`` of the last sub-pixel of a pixel, metres (see module doc)."""
    sub = pixel_size / oversample
    fdet = sub * (fpixel * oversample + (oversample - 1)) + sub / 2.0
    sdet = sub * (spixel * oversample + (oversample - 1)) + sub / 2.0
    return fdet, sdet


def image_stats(float_image, *, mask=None, roi=None, pixel_size: float = 0.1e-3,
                oversample: int = 1, fpixels: int | None = None) -> ImageStats:
    """C's statistics of a float image.

    ``mask``: bool (slow, fast), True = rendered (C: mask value != 0); None = no mask.
    ``roi``: ``(xmin, xmax, ymin, ymax)`` inclusive, or None.  ``pixel_size`` in metres
    and ``oversample`` (the final value C used) only set ``max_I_x/max_I_y``.
    """
    img = np.ascontiguousarray(as_image2d(float_image, fpixels), dtype=np.float32)
    use_mask = mask is not None
    render = (np.ascontiguousarray(np.asarray(mask, dtype=np.bool_).reshape(img.shape))
              if use_mask else np.ones((1, 1), dtype=np.bool_))
    r = roi_tuple(roi, img.shape[1], img.shape[0])
    max_I, mf, ms, avg, rms, rmsd, total, sumsqr, sumn = _stats(img, render, use_mask, r)
    if mf >= 0:
        x, y = max_location(mf, ms, pixel_size, oversample)
    else:
        x = y = 0.0
    return ImageStats(float(max_I), x, y, int(mf), int(ms), float(avg), float(rms),
                      float(rmsd), float(total), float(sumsqr), int(sumn))


def intfile_scale_rule(max_I: float, intfile_scale: float = 0.0) -> float:
    """C's int-image scale: the given one if > 0, else 55000/max_I (1.0 if max_I <= 0)."""
    if intfile_scale <= 0.0:
        intfile_scale = 1.0
        if max_I > 0.0:
            intfile_scale = 55000.0 / max_I
    return intfile_scale


def pgm_scale_rule(rmsd: float, intfile_scale: float, pgm_scale: float = 0.0) -> float:
    """C's PGM scale: the given one if > 0, else 250/(5*rmsd) (intfile_scale if rmsd <= 0).

    ``intfile_scale`` must be the final value from :func:`intfile_scale_rule`.
    """
    if pgm_scale <= 0.0:
        pgm_scale = intfile_scale
        if rmsd > 0.0:
            pgm_scale = 250.0 / (5.0 * rmsd)
    return pgm_scale

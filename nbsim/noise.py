"""Poisson-noise image as nanoBragg.c makes it (ll. 3232-3255).

In raster order (slow, then fast), for every pixel inside the ROI -- the mask is *not*
consulted, so masked pixels (float value 0) still draw one uniform and come out as the
ADC offset -- C does::

    test = poidev(floatimage[pixel], &seed)   # float32 mean, one stream for the image
    sum += test
    test += adc_offset
    if test > 65535: test = 65535; ++overloads
    noise[pixel] = (unsigned short) test      # truncation; no lower clip

Pixels outside the ROI keep what C's shared ``intimage`` buffer holds there: 0 (the
int-image loop skips them too and the buffer is calloc'ed).  C then prints
``"%.0f photons on noise image (%d overloads)"``.

The seed: ``-seed N`` makes C's idum ``-N`` (default ``-time(0)``), printed before the
render as ``"  seed: %ld"``.  Noise is the last stream C uses; with ``N <= -1`` (a
positive idum) C continues with the shuffle table the mosaic stream left behind -- pass
that stream's state as ``previous_state`` to reproduce it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from . import rng
from ._numba_setup import prepare_cpu
from .io._roi import as_image2d, roi_tuple
from .io.cformat import c_g

__all__ = ["NoiseResult", "noise_image", "noise_image_into", "noise_rows_into"]


@dataclass
class NoiseResult:
    """Noise image (uint16, (slow, fast)), C's counters and its printed line."""

    image: np.ndarray
    overloads: int
    photons: float          # C's ``sum`` of the Poisson deviates (without ADC offset)
    message: str            # "%.0f photons on noise image (%d overloads)"


@numba.njit(cache=True)
def _c_to_u16(x):
    # gcc x86-64 (unsigned short)(double): cvttsd2si to int32, low 16 bits; NaN -> 0
    if not (x > -2147483649.0 and x < 2147483648.0):
        return np.uint16(0)
    return np.uint16(np.int64(x) & 0xFFFF)


@numba.njit(cache=True)
def noise_image_into(img, adc_offset, roi, state, out):
    """Jitted core: fills ``out`` (uint16, like ``img``) and returns ``(photons, overloads)``.

    ``img`` float32 (slow, fast); ``roi`` int64 (xmin, xmax, ymin, ymax) inclusive;
    ``state`` an :mod:`nbsim.rng` state array (advanced in place).
    """
    return noise_rows_into(img, adc_offset, roi, state, out, 0.0)


@numba.njit(cache=True)
def noise_rows_into(img, adc_offset, roi, state, out, photons):
    """:func:`noise_image_into` for consecutive pieces of one image: ``photons`` is C's
    running sum so far (returned updated), ``state`` carries ran1's stream, and ``roi``
    is given in the piece's rows (``ymin``/``ymax`` shifted by the piece's first row)."""
    ns, nf = img.shape
    total = photons
    overloads = 0
    for s in range(ns):
        for f in range(nf):
            if f < roi[0] or f > roi[1] or s < roi[2] or s > roi[3]:
                continue
            test = np.float64(rng.poidev(img[s, f], state))
            total += test
            test += adc_offset
            if test > 65535.0:
                test = 65535.0
                overloads += 1
            out[s, f] = _c_to_u16(test)
    return total, overloads


@numba.njit(cache=True)
def noise_panels_into(img, adc_offset, roi, state, out):
    """:func:`noise_image_into` of a (panels, slow, fast) image: one ran1 stream in
    nbsim's raster order over panels (panel, slow, fast), ``roi`` in every panel's own
    pixel coordinates."""
    total = 0.0
    overloads = 0
    for p in range(img.shape[0]):
        total, ov = noise_rows_into(img[p], adc_offset, roi, state, out[p], total)
        overloads += ov
    return total, overloads


def noise_image(float_image, seed=None, adc_offset: float = 40.0, roi=None, *,
                idum: int | None = None, state: np.ndarray | None = None,
                previous_state: np.ndarray | None = None,
                fpixels: int | None = None) -> NoiseResult:
    """C's noise image from the float image.

    Give exactly one of

    * ``seed``: the ``-seed`` value (C uses idum ``-seed``; e.g. 12345 -> -12345),
    * ``idum``: C's ``seed`` variable directly (e.g. -12345, or ``-time``),
    * ``state``: a prepared :mod:`nbsim.rng` state array (advanced in place).

    ``previous_state``: the state of the stream C used before (mosaic); only used when
    the idum is positive (see module doc).  ``roi`` is ``(xmin, xmax, ymin, ymax)``
    inclusive or None.  ``float_image`` (slow, fast) is taken as float32; a (panels,
    slow, fast) image draws one stream in raster order over panels (panel, slow, fast),
    ``roi`` applying to every panel.
    """
    given = sum(v is not None for v in (seed, idum, state))
    if given != 1:
        raise ValueError("give exactly one of seed, idum, state")
    prepare_cpu()
    if state is None:
        if idum is None:
            idum = rng.idum_from_seed_flag(seed)
        state = rng.new_state(int(idum))
        if previous_state is not None and int(idum) > 0:
            rng.share_table(state, previous_state)
    a = np.asarray(float_image)
    img = np.ascontiguousarray(a if a.ndim == 3 else as_image2d(a, fpixels),
                               dtype=np.float32)
    out = np.zeros(img.shape, dtype=np.uint16)
    r = roi_tuple(roi, img.shape[-1], img.shape[-2])
    if img.ndim == 3:
        total, overloads = noise_panels_into(img, float(adc_offset), r, state, out)
    else:
        total, overloads = noise_image_into(img, float(adc_offset), r, state, out)
    msg = "%s photons on noise image (%d overloads)" % (c_g(total, ".0f"), overloads)
    return NoiseResult(out, int(overloads), float(total), msg)

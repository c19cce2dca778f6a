"""C's per-pixel loops after the render, compiled: statistics, int image, PGM.

The same operations in the same order and precision as the NumPy versions
(:func:`nbsim.stats.image_stats`, :func:`nbsim.io.int_image`, :func:`nbsim.io.pgm_image`,
which follow nanoBragg.c ll. 3041-3225), but one pass over the image instead of five to
ten, and no image-sized temporaries: the CPU path of the ``nbsim`` command uses these
(a GPU run keeps the NumPy versions, so it never sets up Numba's CPU target).  Every
function takes a block of whole detector rows starting at detector row ``row0`` and can
continue a previous block, so the streamed path (:mod:`nbsim.streaming`) uses them too.
No fast-math: every sum is C's sequential float64 sum, ``v*v`` is a float32 product.

``roi`` is C's inclusive ``(xmin, xmax, ymin, ymax)`` (:func:`nbsim.io._roi.roi_tuple`),
in detector rows.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from . import physics as ph

__all__ = ["stats_first_pass", "stats_deviation_pass", "int_rows", "pgm_rows",
           "omega_flat"]


@numba.njit(cache=True, nogil=True)
def _window(roi, row0, nrows, ncols):
    """The ROI part of a block: (first row, last row + 1, first column, last column + 1)
    as block-local indices (empty when they cross)."""
    r_lo = max(roi[2] - row0, 0)
    r_hi = min(roi[3] - row0 + 1, nrows)
    c_lo = max(roi[0], 0)
    c_hi = min(roi[1] + 1, ncols)
    return r_lo, r_hi, c_lo, c_hi


_FIRST, _DEVIATION, _INT, _PGM = range(4)


@numba.njit(cache=True, nogil=True)
def _passes(kind, img, row0, roi, mask, use_mask, acc, avg, scale, adc, out16, out8):
    """All four loops in one compiled function (``kind`` picks one): a run loads one
    cache entry instead of four (each load costs about as much as the NumPy passes on a
    256 x 256 image)."""
    nrows, ncols = img.shape
    r_lo, r_hi, c_lo, c_hi = _window(roi, row0, nrows, ncols)
    if kind == _FIRST:
        max_I = acc[0]
        mf = acc[1]
        ms = acc[2]
        total = acc[3]
        sumsqr = acc[4]
        sumn = acc[5]
        for r in range(r_lo, r_hi):
            base = (row0 + r) * ncols
            for c in range(c_lo, c_hi):
                if use_mask and mask[base + c] == 0:
                    continue
                v = img[r, c]
                if v > max_I:                 # strictly: the first maximum wins; not NaN
                    max_I = np.float64(v)
                    mf = c
                    ms = row0 + r
                total += np.float64(v)
                sumsqr += np.float64(v * v)   # float * float in C, summed in double
                sumn += 1.0
        acc[0] = max_I
        acc[1] = mf
        acc[2] = ms
        acc[3] = total
        acc[4] = sumsqr
        acc[5] = sumn
    elif kind == _DEVIATION:
        s = acc[0]
        n = acc[1]
        for r in range(r_lo, r_hi):
            for c in range(c_lo, c_hi):
                t = np.float64(img[r, c]) - avg
                s += t * t
                n += 1.0
        acc[0] = s
        acc[1] = n
    elif kind == _INT:
        for r in range(r_lo, r_hi):
            for c in range(c_lo, c_hi):
                test = np.float64(img[r, c]) * scale
                test = test + adc
                if test < 0.0:
                    test = 0.0
                elif test > 65535.0:
                    test = 65535.0
                f = np.float32(test + 0.5)    # floorf takes a float
                if f != f:
                    out16[r, c] = 0           # gcc x86-64: (unsigned short) NaN is 0
                else:
                    out16[r, c] = np.uint16(np.floor(f))
    else:
        for r in range(r_lo, r_hi):
            for c in range(c_lo, c_hi):
                test = np.float64(img[r, c]) * scale
                if test > 255.0:
                    test = 255.0
                test = np.trunc(test)
                if not (test > -2147483649.0):    # NaN and below int32: 0x80000000
                    out8[r, c] = 0
                else:
                    out8[r, c] = np.uint8(np.int64(test) & 0xFF)


_NO_MASK = np.zeros(1, dtype=np.uint8)
_NO_ACC = np.zeros(6)
_NO_OUT16 = np.zeros((1, 1), dtype=np.uint16)
_NO_OUT8 = np.zeros((1, 1), dtype=np.uint8)


def _img(img):
    return np.ascontiguousarray(img, dtype=np.float32)


def stats_first_pass(img, row0, roi, mask, use_mask, acc):
    """C's first statistics pass over a block (float32 (rows, fpixels)).

    ``mask``: flat uint8 raster mask of the whole detector (C renders where != 0), read
    only when ``use_mask``.  ``acc`` float64[6] carries (max_I, max_fpixel, max_spixel,
    sum, sumsqr, sumn) from block to block (start: :func:`new_first_pass_acc`)."""
    _passes(_FIRST, _img(img), int(row0), roi, mask, bool(use_mask), acc, 0.0, 0.0, 0.0,
            _NO_OUT16, _NO_OUT8)


def stats_deviation_pass(img, row0, roi, avg, acc):
    """C's second pass (``rmsd``): the ROI including masked pixels; ``acc`` float64[2]
    carries (sum of (v - avg)^2, count)."""
    acc6 = np.zeros(6)
    acc6[:2] = acc
    _passes(_DEVIATION, _img(img), int(row0), roi, _NO_MASK, False, acc6, float(avg), 0.0,
            0.0, _NO_OUT16, _NO_OUT8)
    acc[:] = acc6[:2]


def int_rows(img, row0, roi, scale, adc, out):
    """C's int-image conversion of a block into ``out`` (uint16, same shape, C order;
    pixels outside the ROI are left as they are: C's calloc'ed zeros)."""
    _passes(_INT, _img(img), int(row0), roi, _NO_MASK, False, _NO_ACC, 0.0, float(scale),
            float(adc), out, _NO_OUT8)


def pgm_rows(img, row0, roi, scale, out):
    """C's PGM conversion of a block into ``out`` (uint8, C order): clipped above at 255
    only, then ``(unsigned char)`` of the double (int32 truncation, low 8 bits)."""
    _passes(_PGM, _img(img), int(row0), roi, _NO_MASK, False, _NO_ACC, 0.0, float(scale),
            0.0, _NO_OUT16, out)


def new_first_pass_acc() -> np.ndarray:
    return np.array([0.0, -1.0, -1.0, 0.0, 0.0, 0.0])


@numba.njit(cache=True, nogil=True)
def omega_flat(part, fpixels, oversample, subS, subF, subpixel_size, Odet, fdet, sdet, odet,
               pix0, pixel_size, close_distance, point_pixel, out):
    """Solid angle (sr) of the sub-pixel (subS, subF) at depth ``Odet`` (m) of the pixels
    with raster indices ``part`` of a flat single-panel detector, into ``out[:part.size]``:
    the kernels' physics functions, elementwise with IEEE arithmetic, so the same values
    as :func:`nbsim.stats.solid_angle_sum`'s NumPy arrays (used from 512 x 512 pixels up,
    where it is ~10x faster than NumPy's temporaries)."""
    half = subpixel_size / 2.0
    for i in range(part.shape[0]):
        row = part[i] // fpixels
        fp = np.float64(part[i] - row * fpixels)
        sp = np.float64(row)
        _, _, x, y, z = ph.subpixel_position(
            subpixel_size, fp * oversample + subF, sp * oversample + subS, half, Odet,
            fdet[0], fdet[1], fdet[2], sdet[0], sdet[1], sdet[2], odet[0], odet[1], odet[2],
            pix0[0], pix0[1], pix0[2])
        out[i] = ph.solid_angle(pixel_size, math.sqrt(x * x + y * y + z * z),
                                close_distance, point_pixel)

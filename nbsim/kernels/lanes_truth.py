"""Reflection-truth slots of the SIMD lanes kernels (:mod:`.cpu_lanes` float64,
:mod:`.cpu_lanes32` float32; docs/truth.md): the scalar helpers both kernels inline.

The lanes kernels compare lattice points as one float64 per lane (the vectorised pass
computes it next to the Miller indices): (h0, k0, l0) packed with 17 bits each
(|h0| < 2^16), an exact integer below 2^51.  A lane keeps the photons of its current
point in a running sum and flushes it to the pixel's slots (``bundle.TruthSlots``, keys
packed with ``bundle.HKL_BITS`` bits an index) only when the point changes -- most
consecutive sub-paths of a pixel hit the same point -- and at the end of the pixel.
"""
from __future__ import annotations

import numba
import numpy as np

from .bundle import EMPTY_KEY, HKL_BITS, HKL_OFFSET

#: offset and base of the lanes' float packing (17 bits an index)
LANE_HKL_OFFSET = 65536.0
LANE_HKL_BASE = 131072.0
_LANE_BITS = 17
_LANE_MASK = (1 << _LANE_BITS) - 1
_LANE_OFF = 1 << 16


def lanes_truth_fits(plan) -> bool:
    """Whether every Miller index the plan can reach, |h| <= 2 |a| / lambda_min, fits
    the lanes kernels' packed lattice point (else the general kernel fills the slots)."""
    cells = np.abs(plan.cells).reshape(-1, 3, 3)
    longest = float(np.sqrt((cells ** 2).sum(axis=2)).max()) if cells.size else 0.0
    lam = float(np.min(plan.src_lambda)) if plan.src_lambda.size else 0.0
    return lam > 0.0 and 2.0 * longest / lam + 2.0 < LANE_HKL_OFFSET


@numba.njit(cache=True, nogil=True, inline="always")
def pack_float(h0, k0, l0):
    """The lane's lattice point (floats holding integers) as one exact float64."""
    return ((h0 + LANE_HKL_OFFSET) * LANE_HKL_BASE + (k0 + LANE_HKL_OFFSET)) \
        * LANE_HKL_BASE + (l0 + LANE_HKL_OFFSET)


@numba.njit(cache=True, nogil=True, inline="always")
def slot_key(packed):
    """The slot key (``bundle.HKL_BITS`` bits an index) of a :func:`pack_float` point:
    shifts and masks only (the packed value is non-negative)."""
    p = np.int64(packed)
    m = np.int64(_LANE_MASK)
    d = np.int64(HKL_OFFSET - _LANE_OFF)
    l0 = (p & m) + d
    k0 = ((p >> np.int64(_LANE_BITS)) & m) + d
    h0 = (p >> np.int64(2 * _LANE_BITS)) + d
    return (h0 << np.int64(2 * HKL_BITS)) | (k0 << np.int64(HKL_BITS)) | l0


@numba.njit(cache=True, nogil=True, inline="always")
def reset_row(t_key, t_photons, t_phase, t_overflow, row):
    """Empty pixel row ``row``'s slots (the kernel fills rows of reused arrays)."""
    for q in range(t_key.shape[1]):
        t_key[row, q] = EMPTY_KEY
        t_photons[row, q] = 0.0
        t_phase[row, q] = 0.0
    t_overflow[row] = 0


@numba.njit(cache=True, nogil=True, inline="always")
def flush(t_key, t_photons, t_phase, t_overflow, row, packed, photons, phase):
    """Add a lane's running sum (``photons``, rotation-weighted ``phase``) of lattice
    point ``packed`` to pixel row ``row``'s slots: its slot, else the first empty one,
    else flag the row as overflowed (the host re-renders it with more slots)."""
    key = slot_key(packed)
    for q in range(t_key.shape[1]):
        kq = t_key[row, q]
        if kq == key:
            t_photons[row, q] += photons
            t_phase[row, q] += phase
            return
        if kq == EMPTY_KEY:
            t_key[row, q] = key
            t_photons[row, q] = photons
            t_phase[row, q] = phase
            return
    t_overflow[row] = 1


@numba.njit(cache=True, nogil=True, inline="always")
def finish_row(t_key, t_photons, t_phase, row, factor):
    """The pixel's final factors (``factor``: scale and the once-per-pixel capture
    fraction, polarization and solid angle, as on the pixel's value) on its slots."""
    for q in range(t_key.shape[1]):
        if t_key[row, q] == EMPTY_KEY:
            break
        t_photons[row, q] *= factor
        t_phase[row, q] *= factor


@numba.njit(cache=True, nogil=True, inline="always")
def lanes_sum(n, pks, con, cp, cur0, acc0, fz0, cur1, acc1, fz1):
    """One sub-path of every lane of a run: lane j got photons ``con[j]`` from lattice
    point ``pks[j]`` (rotation fraction ``cp``, 0 for stills).  A lane sums two points
    at a time (``cur0``, the newer, and ``cur1``; their photons ``acc`` and
    rotation-weighted photons ``fz``): a pixel whose sub-paths alternate between two
    points (mosaic domains or phi steps on either side of a half-integer) flushes
    nothing.  Returns the number of lanes whose point is neither (then
    :func:`flush_changed`).  Branch-free with float masks and a float count: an integer
    count, a select or the flush loop in the same function keeps LLVM from vectorising
    the loop (3-5x slower)."""
    changed = 0.0
    for j in range(n):
        p = pks[j]
        s0 = 1.0 if p == cur0[j] else 0.0
        s1 = 1.0 if p == cur1[j] else 0.0
        x = con[j]
        x0 = x * s0
        x1 = x * s1
        acc0[j] += x0
        fz0[j] += x0 * cp
        acc1[j] += x1
        fz1[j] += x1 * cp
        changed += 1.0 - s0 - s1
    return changed


@numba.njit(cache=True, nogil=True)
def flush_changed(n, pks, con, cp, cur0, acc0, fz0, cur1, acc1, fz1, t_key, t_photons,
                  t_phase, t_overflow, row0):
    """The rare pass after :func:`lanes_sum`: a lane whose point is neither of its two
    flushes the older sum to its pixel's slots (row ``row0 + j``), keeps the newer as
    the older and starts summing the new point with this sub-path's photons."""
    for j in range(n):
        p = pks[j]
        if p != cur0[j] and p != cur1[j]:
            if acc1[j] != 0.0:
                flush(t_key, t_photons, t_phase, t_overflow, row0 + j, cur1[j], acc1[j],
                      fz1[j])
            cur1[j] = cur0[j]
            acc1[j] = acc0[j]
            fz1[j] = fz0[j]
            cur0[j] = p
            acc0[j] = con[j]
            fz0[j] = con[j] * cp


@numba.njit(cache=True, nogil=True, inline="always")
def lanes_start(n, cur0, acc0, fz0, cur1, acc1, fz1, t_key, t_photons, t_phase,
                t_overflow, row0):
    """A run's start: no points summed (NaN compares unequal), its rows' slots empty."""
    for j in range(n):
        cur0[j] = np.nan
        cur1[j] = np.nan
        acc0[j] = 0.0
        acc1[j] = 0.0
        fz0[j] = 0.0
        fz1[j] = 0.0
        reset_row(t_key, t_photons, t_phase, t_overflow, row0 + j)


@numba.njit(cache=True, nogil=True, inline="always")
def lanes_end(j, cur0, acc0, fz0, cur1, acc1, fz1, t_key, t_photons, t_phase,
              t_overflow, row, factor):
    """Lane j's pixel is done: its two sums to the slots (the older first: slots in the
    order the points started), then the pixel's final ``factor`` on every slot."""
    if acc1[j] != 0.0:
        flush(t_key, t_photons, t_phase, t_overflow, row, cur1[j], acc1[j], fz1[j])
    if acc0[j] != 0.0:
        flush(t_key, t_photons, t_phase, t_overflow, row, cur0[j], acc0[j], fz0[j])
    finish_row(t_key, t_photons, t_phase, row, factor)

"""Compiled passes of the truth aggregation (:mod:`nbsim.truth`): over the (n, K) slot
arrays of a render, a few serial passes of a few nanoseconds a slot, instead of NumPy
temporaries of the long table.

A row of the frame's table is a cell of the box (panel, h, k, l) spanned by the frame's
lattice points, numbered ((panel * ext_h + h - lo_h) * ext_k + k - lo_k) * ext_l + l - lo_l;
rows are the occupied cells in increasing order.  Slots of a pixel are filled from the
first (EMPTY_KEY ends them); a slot with no photons is skipped.
"""
from __future__ import annotations

import numba
import numpy as np

from .kernels.bundle import EMPTY_KEY, HKL_BITS, HKL_OFFSET

_MASK = (1 << HKL_BITS) - 1


@numba.njit(cache=True, nogil=True, inline="always")
def _unpack(key):
    h = ((key >> (2 * HKL_BITS)) & _MASK) - HKL_OFFSET
    k = ((key >> HKL_BITS) & _MASK) - HKL_OFFSET
    l_ = (key & _MASK) - HKL_OFFSET
    return h, k, l_


@numba.njit(cache=True, nogil=True, inline="always")
def _cell(key, panel, lo, ext):
    h, k, l_ = _unpack(key)
    return ((panel * ext[0] + h - lo[0]) * ext[1] + k - lo[1]) * ext[2] + l_ - lo[2]


@numba.njit(cache=True, nogil=True)
def hkl_bounds(key, photons, lo, hi):
    """Widen lo/hi (int64 (3,)) to the lattice points of the filled slots."""
    for n in range(key.shape[0]):
        for q in range(key.shape[1]):
            kq = key[n, q]
            if kq == EMPTY_KEY:
                break
            if photons[n, q] > 0.0:
                h, k, l_ = _unpack(kq)
                lo[0] = min(lo[0], h)
                lo[1] = min(lo[1], k)
                lo[2] = min(lo[2], l_)
                hi[0] = max(hi[0], h)
                hi[1] = max(hi[1], k)
                hi[2] = max(hi[2], l_)


@numba.njit(cache=True, nogil=True)
def mark_cells(key, photons, pix, fp, rows_per_panel, lo, ext, present):
    """present[cell] = 1 for the cell of every filled slot (pix: raster index per row)."""
    last = -1
    for n in range(key.shape[0]):
        # (integer divisions once a pixel, not once a slot)
        panel = (pix[n] // fp) // rows_per_panel
        for q in range(key.shape[1]):
            kq = key[n, q]
            if kq == EMPTY_KEY:
                break
            if photons[n, q] > 0.0:
                c = _cell(kq, panel, lo, ext)
                if c != last:          # neighbouring slots mostly repeat a cell
                    present[c] = 1
                    last = c


@numba.njit(cache=True, nogil=True)
def _cells_of(key, photons, pix, fp, rows_per_panel, lo, ext, out, m):
    for n in range(key.shape[0]):
        for q in range(key.shape[1]):
            kq = key[n, q]
            if kq == EMPTY_KEY:
                break
            if photons[n, q] > 0.0:
                out[m] = _cell(kq, (pix[n] // fp) // rows_per_panel, lo, ext)
                m += 1
    return m


def sorted_cells(blocks, fp, rows_per_panel, lo, ext) -> np.ndarray:
    """The occupied cells, sorted (for boxes too large for a lookup table)."""
    total = sum(int(np.count_nonzero(k != EMPTY_KEY)) for _, k, _, _ in blocks)
    out = np.empty(total, dtype=np.int64)
    m = 0
    for pix, key, photons, _phase in blocks:
        m = _cells_of(key, photons, pix, fp, rows_per_panel, lo, ext, out, m)
    return np.unique(out[:m])


@numba.njit(cache=True, nogil=True)
def accumulate(key, photons, phase, pix, fp, rows_per_panel, lo, ext, table, cells, sums,
               npx, labels, bragg):
    """Add a block of slots to the rows: sums[0] photons, sums[1] photons x (fast + 0.5),
    sums[2] photons x (slow + 0.5) (pixels of the panel), sums[3] the rotation-weighted
    photons; npx: pixels where the row gives >= half the pixel's Bragg photons; per pixel
    (raster index) labels = the row giving most photons (the first slot on a tie) and
    bragg = the pixel's Bragg photons.  ``table`` (int32 per cell) maps cells to rows, or
    is None-like (size 0) and rows are found in the sorted ``cells``."""
    use_table = table.shape[0] > 0
    for n in range(key.shape[0]):
        idx = pix[n]
        tot = 0.0
        for q in range(key.shape[1]):
            if key[n, q] == EMPTY_KEY:
                break
            if photons[n, q] > 0.0:
                tot += photons[n, q]
        if tot == 0.0:
            continue
        bragg[idx] = tot
        srow = idx // fp
        fast = idx - srow * fp
        panel = srow // rows_per_panel
        slow = srow - panel * rows_per_panel
        best = -1
        best_ph = 0.0
        for q in range(key.shape[1]):
            kq = key[n, q]
            if kq == EMPTY_KEY:
                break
            ph = photons[n, q]
            if ph > 0.0:
                c = _cell(kq, panel, lo, ext)
                if use_table:
                    r = table[c]
                else:
                    r = np.searchsorted(cells, c)
                sums[0, r] += ph
                sums[1, r] += ph * (fast + 0.5)
                sums[2, r] += ph * (slow + 0.5)
                sums[3, r] += phase[n, q]
                if ph >= 0.5 * tot:
                    npx[r] += 1
                if ph > best_ph:
                    best_ph = ph
                    best = r
        labels[idx] = best

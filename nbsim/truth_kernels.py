"""Compiled passes of the truth aggregation (:mod:`nbsim.truth`): over the (n, K) slot
arrays of a render, a few passes of a few nanoseconds a slot (in parallel over fixed chunks
of slot rows), instead of NumPy temporaries of the long table.

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


#: slot rows per chunk of the parallel passes (``chunk`` arguments; accumulate takes at
#: least the row count): a chunk is the unit of work of a thread, and its partial sums are
#: added to the rows in chunk order, so the sums depend on the chunks (fixed by the frame)
#: and never on the thread count or the scheduling
CHUNK_ROWS = 2048


@numba.njit(cache=True, nogil=True, inline="always")
def _nchunks(n, chunk):
    return (n + chunk - 1) // chunk


@numba.njit(cache=True, nogil=True, parallel=True)
def hkl_bounds(key, photons, lo, hi, chunk):
    """Widen lo/hi (int64 (3,)) to the lattice points of the filled slots (per chunk in
    parallel, then min/max of the chunks: exact in any order)."""
    n = key.shape[0]
    nch = _nchunks(n, chunk)
    clo = np.empty((nch, 3), dtype=np.int64)
    chi = np.empty((nch, 3), dtype=np.int64)
    for c in numba.prange(nch):
        l0 = lo[0]
        l1 = lo[1]
        l2 = lo[2]
        h0 = hi[0]
        h1 = hi[1]
        h2 = hi[2]
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            for q in range(key.shape[1]):
                kq = key[i, q]
                if kq == EMPTY_KEY:
                    break
                if photons[i, q] > 0.0:
                    h, k, l_ = _unpack(kq)
                    l0 = min(l0, h)
                    l1 = min(l1, k)
                    l2 = min(l2, l_)
                    h0 = max(h0, h)
                    h1 = max(h1, k)
                    h2 = max(h2, l_)
        clo[c, 0] = l0
        clo[c, 1] = l1
        clo[c, 2] = l2
        chi[c, 0] = h0
        chi[c, 1] = h1
        chi[c, 2] = h2
    for c in range(nch):
        for j in range(3):
            lo[j] = min(lo[j], clo[c, j])
            hi[j] = max(hi[j], chi[c, j])


@numba.njit(cache=True, nogil=True, parallel=True)
def mark_cells(key, photons, pix, fp, rows_per_panel, lo, ext, present, chunk):
    """present[cell] = 1 for the cell of every filled slot (pix: raster index per row).
    Threads may store the same 1 into the same byte: the result is the same whatever
    the order."""
    n = key.shape[0]
    for c in numba.prange(_nchunks(n, chunk)):
        last = -1
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            # (integer divisions once a pixel, not once a slot)
            panel = (pix[i] // fp) // rows_per_panel
            for q in range(key.shape[1]):
                kq = key[i, q]
                if kq == EMPTY_KEY:
                    break
                if photons[i, q] > 0.0:
                    cell = _cell(kq, panel, lo, ext)
                    if cell != last:          # neighbouring slots mostly repeat a cell
                        present[cell] = 1
                        last = cell


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


@numba.njit(cache=True, nogil=True, parallel=True)
def accumulate(key, photons, phase, pix, fp, rows_per_panel, lo, ext, table, cells, sums,
               npx, labels, bragg, chunk_rows):
    """Add a block of slots to the rows: sums[0] photons, sums[1] photons x (fast + 0.5),
    sums[2] photons x (slow + 0.5) (pixels of the panel), sums[3] the rotation-weighted
    photons; npx: pixels where the row gives >= half the pixel's Bragg photons; per pixel
    (raster index) labels = the row giving most photons (the first slot on a tie) and
    bragg = the pixel's Bragg photons.  ``table`` (int32 per cell) maps cells to rows, or
    is None-like (size 0) and rows are found in the sorted ``cells``.

    In parallel over chunks of slot rows (``chunk_rows``, at least the row count so
    that a chunk's row map costs no more than its slots): each chunk sums its slots into
    its own partial rows (in slot order), then the partials are added to ``sums`` chunk
    by chunk in chunk order -- the same float64 operations in the same order whatever
    the thread count and scheduling (labels and bragg: each pixel is in one chunk)."""
    n = key.shape[0]
    nslot = key.shape[1]
    nrows = sums.shape[1]
    use_table = table.shape[0] > 0
    chunk = max(chunk_rows, nrows)
    nch = _nchunks(n, chunk)
    cap = min(chunk * nslot, nrows)          # distinct rows a chunk can touch
    prow = np.empty(nch * cap, dtype=np.int32)
    p0 = np.empty(nch * cap)
    p1 = np.empty(nch * cap)
    p2 = np.empty(nch * cap)
    p3 = np.empty(nch * cap)
    pnpx = np.empty(nch * cap, dtype=np.int32)
    count = np.zeros(nch, dtype=np.int64)
    for ch in numba.prange(nch):
        base = ch * cap
        local = np.full(nrows, -1, dtype=np.int64)     # row -> its entry of this chunk
        m = 0
        last_r = -1
        e = 0
        for i in range(ch * chunk, min(n, (ch + 1) * chunk)):
            idx = pix[i]
            tot = 0.0
            for q in range(nslot):
                if key[i, q] == EMPTY_KEY:
                    break
                if photons[i, q] > 0.0:
                    tot += photons[i, q]
            if tot == 0.0:
                continue
            bragg[idx] = tot
            srow = idx // fp
            fast = idx - srow * fp
            panel = srow // rows_per_panel
            slow = srow - panel * rows_per_panel
            best = -1
            best_ph = 0.0
            for q in range(nslot):
                kq = key[i, q]
                if kq == EMPTY_KEY:
                    break
                ph = photons[i, q]
                if ph > 0.0:
                    c = _cell(kq, panel, lo, ext)
                    if use_table:
                        r = table[c]
                    else:
                        r = np.searchsorted(cells, c)
                    if r != last_r:          # neighbouring slots mostly repeat a row
                        e = local[r]
                        if e < 0:
                            e = base + m
                            local[r] = e
                            m += 1
                            prow[e] = r
                            p0[e] = 0.0
                            p1[e] = 0.0
                            p2[e] = 0.0
                            p3[e] = 0.0
                            pnpx[e] = 0
                        last_r = r
                    p0[e] += ph
                    p1[e] += ph * (fast + 0.5)
                    p2[e] += ph * (slow + 0.5)
                    p3[e] += phase[i, q]
                    if ph >= 0.5 * tot:
                        pnpx[e] += 1
                    if ph > best_ph:
                        best_ph = ph
                        best = r
            labels[idx] = best
        count[ch] = m
    # the chunks' partial rows, in chunk order (serial: a few entries per row)
    for ch in range(nch):
        base = ch * cap
        for e in range(count[ch]):
            r = prow[base + e]
            sums[0, r] += p0[base + e]
            sums[1, r] += p1[base + e]
            sums[2, r] += p2[base + e]
            sums[3, r] += p3[base + e]
            npx[r] += pnpx[base + e]

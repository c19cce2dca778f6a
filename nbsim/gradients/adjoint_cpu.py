"""CPU adjoint kernel: one ``prange`` over per-thread chunks of the pixel list.

Chunk ``c`` takes pixels ``c, c + nchunks, c + 2 nchunks, ...`` (interleaved, so bright
regions are shared out evenly) and owns row ``c`` of the accumulator array
(``(nchunks, NACC)``) and, when the structure-factor gradient is wanted, slice ``c`` of
the grid gradient ``(nchunks, h_range, k_range, l_range)``.  The rows are summed on the
host.  Nothing is sized pixels x parameters.

The options are runtime values (one compiled kernel, cached on disk, serves every
configuration); the forward kernel specialises instead, which is why its run time is the
reference the benchmark compares against.
"""
from __future__ import annotations

import numba
from numba.extending import register_jitable

from ..kernels.cpu import FASTMATH
from .core import NACC, make_pixel_adjoint  # noqa: F401  (NACC re-exported)


@register_jitable
def _scatter_cpu(gF, slot, i, j, k, v):
    gF[slot, i, j, k] += v


# compiled once as its own function (cached), so the parallel kernel around it stays small
_pixel_adjoint = numba.njit(cache=True, nogil=True, error_model="numpy")(
    make_pixel_adjoint(_scatter_cpu))


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH, nogil=True, error_model="numpy")
def adjoint_kernel(cot, image, pixel_index, ka, has_mask, src_dlam, dcells,
                   carry_pixel, switch_pixel, iopt, nchunks, acc, gF):
    """Accumulate ``sum_pixels cot * d(pixel)/d(plan quantities)`` into ``acc`` (and
    ``gF``); write each rendered pixel's value into ``image`` (flat).  ka: the plan's
    argument bundle (``kernels.bundle.KernelArrays``)."""
    mask = ka.mask
    npix = pixel_index.shape[0]
    for ch in numba.prange(nchunks):
        a = acc[ch]
        for n in range(ch, npix, nchunks):
            idx = pixel_index[n]
            if has_mask:
                if mask[idx] == 0:
                    continue
            image[idx] = _pixel_adjoint(idx, cot[idx], ka, src_dlam, dcells, carry_pixel,
                                        switch_pixel, iopt, a, gF, ch)

"""CPU kernel: one ``prange`` over pixels; per pixel the loops over sensor layers,
sub-pixels, sources, phi steps and mosaic domains run in ``pixel.render_pixel``, the
body shared with the CUDA kernel.

A kernel is built per :class:`KernelOptions`: the options are closure constants, so
Numba prunes the branches not in use, and ``cache=True`` stores each variant on disk
(Numba keys the cache on the closure values).
"""
from __future__ import annotations

import functools

import numba

from .options import SOURCE_STAMP, KernelOptions
from .pixel import TRACE_LEN, get_pixel_fn  # noqa: F401  (TRACE_LEN re-exported)


# fast-math without the no-NaN/no-Inf assumptions (C tests isnan; we keep NaN out anyway).
# The detector geometry (sub-pixel position, diffracted direction, scattering vector) is
# computed by nbsim.physics' "IEEE twins", which keep C's exact arithmetic inside these
# kernels (see there: it decides the direct-beam pixel of -round_xtal).
FASTMATH = {"contract", "arcp", "nsz", "afn", "reassoc"}


@functools.lru_cache(maxsize=None)
def get_kernel(opts: KernelOptions):
    """The compiled kernel for ``opts`` (one per option set, built once per process)."""
    HAS_MASK = bool(opts.has_mask)
    RECORD_OOR = bool(opts.record_oor)
    pixel = get_pixel_fn(opts, fastmath=FASTMATH, error_model="numpy")
    STAMP = SOURCE_STAMP      # closure constant: a change of the shared sources recompiles

    @numba.njit(parallel=True, cache=True, fastmath=FASTMATH, nogil=True, error_model="numpy")
    def render(image, pixel_index, ka, carry_pixel, interp_switch_pixel, oor_flags, trace,
               truth):
        """Render pixels ``pixel_index`` (flat raster indices) into ``image`` (flat).

        ka: the plan's argument bundle (``bundle.KernelArrays``); the per-pixel loop nest:
        ``pixel.render_pixel``.  oor_flags[idx] is set to 1 where a tricubic evaluation
        fell off the grid (opts.record_oor); trace row n receives pixel n's scaling chain
        (opts.trace); with opts.truth, row n of ``truth`` (``bundle.TruthSlots``)
        receives pixel n's reflection slots.
        """
        if STAMP < 0:         # never: only ties the cache entry to the sources
            return
        mask = ka.mask
        fpixels = ka.fpixels
        oversample = ka.oversample
        thicksteps = ka.thicksteps
        ncell = ka.ncell
        hkls = ka.hkls
        nsrc = ka.src_lambda.shape[0]
        npix = pixel_index.shape[0]
        for n in numba.prange(npix):
            idx = pixel_index[n]
            if HAS_MASK:
                if mask[idx] == 0:
                    continue
            fpixel = idx % fpixels
            spixel = idx // fpixels
            val, oor = pixel(idx, fpixel, spixel, ka, oversample, thicksteps, nsrc, ncell,
                             hkls, carry_pixel, interp_switch_pixel, trace, n, truth, n)
            image[idx] = val
            if RECORD_OOR:
                if oor:
                    oor_flags[idx] = 1
    return render

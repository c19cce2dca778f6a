"""CUDA twin of :mod:`.cpu`: one thread per pixel, the same pixel function.

Tested in Numba's CUDA simulator (tests/test_amorphous_cuda.py).  numba.cuda is imported
on first use; the kernel sees it as a module global (the simulator swaps it).
"""
from __future__ import annotations

import math

import numpy as np

from .pixel import amorphous_pixel

cuda = None
_KERNEL = None


def _get_kernel():
    global cuda, _KERNEL
    if _KERNEL is None:
        from numba import cuda as _c
        cuda = _c

        def render(out, fpixels, spixels, roi, g, opt, incident, wavelengths, weights,
                   stol_of, F_of):
            i = cuda.grid(1)
            if i >= fpixels * spixels:
                return
            spixel = i // fpixels
            fpixel = i - spixel * fpixels
            if fpixel < roi[0] or fpixel > roi[1] or spixel < roi[2] or spixel > roi[3]:
                out[i] = 0.0
                return
            out[i] = amorphous_pixel(fpixel, spixel, g, opt, incident, wavelengths, weights,
                                     stol_of, F_of)

        _KERNEL = cuda.jit(render)
    return _KERNEL


def render_amorphous_cuda(shape, roi, g, opt, incident, wavelengths, weights, stol_of, F_of,
                          threads_per_block: int = 128) -> np.ndarray:
    """Render on the GPU (or the simulator); returns float64 (spixels, fpixels)."""
    k = _get_kernel()
    spixels, fpixels = shape
    n = spixels * fpixels
    d_out = cuda.device_array(n, dtype=np.float64)
    args = [cuda.to_device(np.ascontiguousarray(a)) for a in
            (roi, g, opt, incident, wavelengths, weights, stol_of, F_of)]
    blocks = max(1, math.ceil(n / threads_per_block))
    k[blocks, threads_per_block](d_out, fpixels, spixels, *args)
    return d_out.copy_to_host().reshape(spixels, fpixels)

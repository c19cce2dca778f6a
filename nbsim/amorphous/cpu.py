"""CPU kernel: amorphous scattering over the detector, parallel over rows (prange)."""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .pixel import amorphous_pixel


@numba.njit(cache=True, parallel=True)
def render_amorphous_cpu(out, roi, g, opt, incident, wavelengths, weights, stol_of, F_of):
    """Fill ``out`` (float32 (spixels, fpixels)); pixels outside the inclusive ``roi``
    (xmin, xmax, ymin, ymax) are 0, as nonBragg.c leaves them."""
    spixels, fpixels = out.shape
    for spixel in prange(spixels):
        for fpixel in range(fpixels):
            if fpixel < roi[0] or fpixel > roi[1] or spixel < roi[2] or spixel > roi[3]:
                out[spixel, fpixel] = 0.0
                continue
            out[spixel, fpixel] = np.float32(amorphous_pixel(
                fpixel, spixel, g, opt, incident, wavelengths, weights, stol_of, F_of))

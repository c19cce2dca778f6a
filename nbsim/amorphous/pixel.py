"""One pixel of amorphous scattering, nonBragg.c's inner loops (ll. 1420-1520).

Written once as ``register_jitable`` functions, compiled for the CPU kernel
(:mod:`.cpu`) and the CUDA kernel (:mod:`.cuda`).  Units: metres, radians; the
sin(theta)/lambda table is in 1/m.

For every sub-pixel (``oversample``^2, centred) and every source::

    stol   = |(diffracted - incident)/lambda| / 2
    F      = 4-point cubic (polint) through the table points nearest-1 .. nearest+2,
             nearest = the last point with stol_table <= stol
    I     += sign(F) F^2 * polarization * omega * source weight

and the pixel value is ``I * r_e^2 * fluence * molecules / steps`` (photons/pixel),
``steps = sources * oversample^2``; ``Fmap`` mode returns the last F instead.  The solid
angle uses the whole pixel's size even when oversampled, as in C.
"""
from __future__ import annotations

import math

from numba.extending import register_jitable

from ..physics import (curved_detector_point, polarization_factor, polint4, solid_angle,
                       subpixel_position, unit_direction)

# packed geometry (float64 array ``g``) -- indices
G_PIXEL, G_SUBPIXEL, G_DISTANCE, G_CLOSE = 0, 1, 2, 3
G_F, G_S, G_O, G_PIX0, G_BEAM, G_POLAR = 4, 7, 10, 13, 16, 19
G_KAHN, G_RE2, G_FLUENCE, G_MOLECULES = 22, 23, 24, 25
G_SIZE = 26
# packed options (int64 array ``opt``)
O_OVERSAMPLE, O_CURVED, O_POINT, O_NOPOLAR, O_FMAP = 0, 1, 2, 3, 4
O_SIZE = 5


@register_jitable
def nearest_point(table, x):
    """Largest i with table[i] <= x (table increasing, table[1] = -1e98), at least 1."""
    lo = 1
    hi = table.shape[0] - 1
    if x >= table[hi]:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if table[mid] <= x:
            lo = mid
        else:
            hi = mid
    return lo


@register_jitable
def amorphous_pixel(fpixel, spixel, g, opt, incident, wavelengths, weights, stol_of, F_of):
    """Photons/pixel of amorphous scattering at (fpixel, spixel) (float64)."""
    oversample = opt[O_OVERSAMPLE]
    sub = g[G_SUBPIXEL]
    half = sub / 2.0
    nsrc = wavelengths.shape[0]
    nstol = stol_of.shape[0]
    Ibg = 0.0
    Fbg = 0.0
    for subS in range(oversample):
        for subF in range(oversample):
            Fdet, Sdet, px, py, pz = subpixel_position(
                sub, fpixel * oversample + subF, spixel * oversample + subS, half, 0.0,
                g[G_F], g[G_F + 1], g[G_F + 2], g[G_S], g[G_S + 1], g[G_S + 2],
                g[G_O], g[G_O + 1], g[G_O + 2], g[G_PIX0], g[G_PIX0 + 1], g[G_PIX0 + 2])
            if opt[O_CURVED] != 0:
                px, py, pz = curved_detector_point(
                    py, pz, g[G_DISTANCE], g[G_BEAM], g[G_BEAM + 1], g[G_BEAM + 2],
                    g[G_S], g[G_S + 1], g[G_S + 2], g[G_F], g[G_F + 1], g[G_F + 2])
            dx, dy, dz, airpath = unit_direction(px, py, pz)
            omega = solid_angle(g[G_PIXEL], airpath, g[G_CLOSE], opt[O_POINT] != 0)
            for s in range(nsrc):
                ix = incident[s, 0]
                iy = incident[s, 1]
                iz = incident[s, 2]
                lam = wavelengths[s]
                qx = (dx - ix) / lam
                qy = (dy - iy) / lam
                qz = (dz - iz) / lam
                stol = 0.5 * math.sqrt(qx * qx + qy * qy + qz * qz)
                n = nearest_point(stol_of, stol)
                if n > nstol - 3:
                    n = nstol - 3
                Fbg = polint4(stol_of[n - 1], stol_of[n], stol_of[n + 1], stol_of[n + 2],
                              F_of[n - 1], F_of[n], F_of[n + 1], F_of[n + 2], stol)
                sign = 1.0
                if Fbg < 0.0:
                    sign = -1.0
                polar = 1.0
                if opt[O_NOPOLAR] == 0:
                    polar = polarization_factor(g[G_KAHN], ix, iy, iz, dx, dy, dz,
                                                g[G_POLAR], g[G_POLAR + 1], g[G_POLAR + 2])
                Ibg += sign * Fbg * Fbg * polar * omega * weights[s]
    if opt[O_FMAP] != 0:
        return Fbg
    steps = nsrc * oversample * oversample
    return Ibg * g[G_RE2] * g[G_FLUENCE] * g[G_MOLECULES] / steps

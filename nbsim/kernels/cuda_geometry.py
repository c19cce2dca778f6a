"""The detector geometry of :mod:`nbsim.physics` for CUDA, rounded as nanoBragg.c rounds it.

NVVM contracts ``a * b + c`` into one fused multiply-add by default (even without
fast-math), whose single rounding differs from C's two.  Where C's arithmetic cancels
exactly -- a pixel centred on the direct beam gives a scattering vector of exactly 0, and
``-round_xtal``'s sinc3 is then 1 instead of the 0 it gives for any argument below ~1e-8
-- an FMA decides the pixel.  These functions are :func:`physics.subpixel_position`,
:func:`physics.unit_direction` and :func:`physics.curved_detector_point` with every product
and sum written as libdevice's ``__dmul_rn`` / ``__dadd_rn``, which the compiler may not
fuse: the same formulas, term for term (the CPU kernels get the same effect from the
"IEEE twins" in :mod:`nbsim.physics`).  float64 only; used when the detector geometry is
float64 (not under ``NBSIM_CUDA_PURE_F32``) and not in the CUDA simulator.
"""
from __future__ import annotations

import math

from numba.cuda import libdevice as ld
from numba.extending import register_jitable


@register_jitable
def subpixel_position(subpixel_size, xF, xS, half, Odet, fx, fy, fz, sx, sy, sz,
                      ox, oy, oz, p0x, p0y, p0z):
    """physics.subpixel_position without contraction."""
    Fdet = ld.dadd_rn(ld.dmul_rn(subpixel_size, xF), half)
    Sdet = ld.dadd_rn(ld.dmul_rn(subpixel_size, xS), half)
    x = ld.dadd_rn(ld.dadd_rn(ld.dadd_rn(ld.dmul_rn(Fdet, fx), ld.dmul_rn(Sdet, sx)),
                              ld.dmul_rn(Odet, ox)), p0x)
    y = ld.dadd_rn(ld.dadd_rn(ld.dadd_rn(ld.dmul_rn(Fdet, fy), ld.dmul_rn(Sdet, sy)),
                              ld.dmul_rn(Odet, oy)), p0y)
    z = ld.dadd_rn(ld.dadd_rn(ld.dadd_rn(ld.dmul_rn(Fdet, fz), ld.dmul_rn(Sdet, sz)),
                              ld.dmul_rn(Odet, oz)), p0z)
    return Fdet, Sdet, x, y, z


@register_jitable
def unit_direction(x, y, z):
    """physics.unit_direction without contraction (division and sqrt are IEEE on CUDA
    without fast-math)."""
    r = math.sqrt(ld.dadd_rn(ld.dadd_rn(ld.dmul_rn(x, x), ld.dmul_rn(y, y)),
                             ld.dmul_rn(z, z)))
    return x / r, y / r, z / r, r


@register_jitable
def _rotate_about(vx, vy, vz, ax, ay, az, ang):
    """physics.rotate_about without contraction."""
    cs = math.cos(ang)
    sn = math.sin(ang)
    d = ld.dadd_rn(ld.dadd_rn(ld.dmul_rn(ax, vx), ld.dmul_rn(ay, vy)), ld.dmul_rn(az, vz))
    dt = d - ld.dmul_rn(d, cs)
    rx = ld.dadd_rn(ld.dadd_rn(ld.dmul_rn(ax, dt), ld.dmul_rn(vx, cs)),
                    ld.dmul_rn(ld.dadd_rn(ld.dmul_rn(-az, vy), ld.dmul_rn(ay, vz)), sn))
    ry = ld.dadd_rn(ld.dadd_rn(ld.dmul_rn(ay, dt), ld.dmul_rn(vy, cs)),
                    ld.dmul_rn(ld.dadd_rn(ld.dmul_rn(az, vx), -ld.dmul_rn(ax, vz)), sn))
    rz = ld.dadd_rn(ld.dadd_rn(ld.dmul_rn(az, dt), ld.dmul_rn(vz, cs)),
                    ld.dmul_rn(ld.dadd_rn(ld.dmul_rn(-ay, vx), ld.dmul_rn(ax, vy)), sn))
    return rx, ry, rz


@register_jitable
def curved_detector_point(posy, posz, distance, bx, by, bz, sx, sy, sz, fx, fy, fz):
    """physics.curved_detector_point without contraction."""
    nx, ny, nz = _rotate_about(ld.dmul_rn(distance, bx), ld.dmul_rn(distance, by),
                               ld.dmul_rn(distance, bz), sx, sy, sz, posy / distance)
    return _rotate_about(nx, ny, nz, fx, fy, fz, posz / distance)

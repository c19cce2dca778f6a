"""Pixels that receive nothing from the sample: the beamstop's shadow and bad pixels.

**Beamstop** (``-beamstop R_MM [-beamstop_arm WIDTH_MM ANGLE_DEG]``): an opaque disk of
radius R centred on the direct beam, in the plane perpendicular to the (first source's)
beam direction ``b`` at the distance ``D`` along it where the direct beam meets the
detector (nanoBragg's ``distance``: the stop sits just in front of the detector).  Its
arm is a straight strip of full width W from the disk's centre outwards (to infinity)
in direction ``cos(A) e1 + sin(A) e2`` of that plane, where ``e1`` is the detector's
fast axis made perpendicular to the beam and ``e2 = b x e1`` (the slow axis for an
untilted detector: A = 90 deg points the arm along +slow).  A pixel is in the shadow
when the ray from the sample (the origin) to its centre crosses the plane inside the
disk or the arm::

    X = P D / (P.b)  (P.b > 0),   u = (X - D b).e1,   v = (X - D b).e2
    disk: u^2 + v^2 <= R^2;   arm: u cos A + v sin A >= 0 and |-u sin A + v cos A| <= W/2

For a detector perpendicular to the beam the shadow is the disk of radius R (and the
strip) on the detector around the beam centre; for a tilted one its projection.  A
curved detector's pixel positions are the kernel's (``-curved_det``).

**Bad pixels** (``-bad_pixels FRACTION [-bad_pixel_seed N]``): ``round(FRACTION x
pixels)`` pixels of the whole detector (every panel, in the flat index), drawn without
replacement by NumPy's PCG64 generator seeded with N (default 123456789: a property of
the detector, the same for every frame and run); the first half of the draw (rounded
down) are *dead*, the rest *hot*.

Both join the detector mask: shadowed, dead and hot pixels are not rendered (nanoBragg's
``-mask``: no Bragg photons, no truth label), the backgrounds (-stol, -ice) are 0 there,
and NeXus ``pixel_mask`` marks them (docs/formats.md).  What the pixels then hold is the
suite's (:mod:`nbsim.suite`): shadowed and dead pixels hold no photons (their counts are
the noise model's for 0 photons: 0, or the ADC offset / readout noise), hot pixels hold
:data:`HOT_PIXEL_PHOTONS` photons (with their Poisson noise), which saturates the 16-bit
SMV products.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numba
import numpy as np
from numba import prange
from numba.extending import register_jitable

from ..physics import curved_detector_point

__all__ = ["DetectorDefects", "detector_defects", "beamstop_shadow", "bad_pixel_map",
           "HOT_PIXEL_PHOTONS"]

#: photons per frame a hot pixel holds (the 16-bit SMV products' top count)
HOT_PIXEL_PHOTONS = 65535.0

# per-panel geometry rows of the shadow kernel
_P0, _F, _S, _PIX = 0, 3, 6, 9
_ROW = 10


@register_jitable
def in_beamstop_shadow(x, y, z, bx, by, bz, D, e1x, e1y, e1z, e2x, e2y, e2z, R, W, ca, sa):
    """True where the ray from the origin to (x, y, z) (m) crosses the beamstop plane
    (normal b, distance D, m) inside the disk of radius R or the arm of full width W
    (direction ca e1 + sa e2)."""
    along = x * bx + y * by + z * bz
    if along <= 0.0:
        return False
    t = D / along
    rx = x * t - D * bx
    ry = y * t - D * by
    rz = z * t - D * bz
    u = rx * e1x + ry * e1y + rz * e1z
    v = rx * e2x + ry * e2y + rz * e2z
    if u * u + v * v <= R * R:
        return True
    if W > 0.0:
        if u * ca + v * sa >= 0.0 and abs(-u * sa + v * ca) <= 0.5 * W:
            return True
    return False


@numba.njit(cache=True, parallel=True)
def _shadow_kernel(out, rows, stop, curved, distance, beam):
    """out (panels, slow, fast) uint8: 1 in the shadow; rows (panels, 10) pix0, fdet,
    sdet, pixel size; stop: D, e1 (3), e2 (3), R, W, cos A, sin A."""
    npan, sp, fp = out.shape
    for ps in prange(npan * sp):
        k = ps // sp
        s = ps - k * sp
        r = rows[k]
        for f in range(fp):
            F = (f + 0.5) * r[_PIX]
            S = (s + 0.5) * r[_PIX]
            x = r[_P0] + F * r[_F] + S * r[_S]
            y = r[_P0 + 1] + F * r[_F + 1] + S * r[_S + 1]
            z = r[_P0 + 2] + F * r[_F + 2] + S * r[_S + 2]
            if curved:
                x, y, z = curved_detector_point(y, z, distance, beam[0], beam[1], beam[2],
                                                r[_S], r[_S + 1], r[_S + 2],
                                                r[_F], r[_F + 1], r[_F + 2])
            out[k, s, f] = in_beamstop_shadow(
                x, y, z, beam[0], beam[1], beam[2], stop[0], stop[1], stop[2], stop[3],
                stop[4], stop[5], stop[6], stop[7], stop[8], stop[9], stop[10])


def _panel_rows(det, pset) -> np.ndarray:
    if pset is None:
        rows = np.zeros((1, _ROW))
        rows[0, 0:3] = det.pix0
        rows[0, 3:6] = det.fdet
        rows[0, 6:9] = det.sdet
        rows[0, 9] = det.pixel_size
        return rows
    rows = np.zeros((pset.count, _ROW))
    for k, p in enumerate(pset.panels):
        rows[k, 0:3] = p.origin
        rows[k, 3:6] = p.fast
        rows[k, 6:9] = p.slow
        rows[k, 9] = p.pixel_size
    return rows


def beamstop_shadow(det, pset, shape, radius: float, arm_width: float = 0.0,
                    arm_angle: float = 0.0) -> np.ndarray:
    """bool ``shape`` = (panels, slow, fast): True in the shadow of the beamstop (module
    doc) of the detector ``det`` (a resolved :class:`~nbsim.geometry.detector.
    DetectorGeometry`: the frame detector of a panel set ``pset``).  Lengths in m,
    angle in rad."""
    b = np.asarray(det.beam, dtype=np.float64)
    b = b / np.linalg.norm(b)
    f = np.asarray(det.fdet, dtype=np.float64)
    e1 = f - (f @ b) * b
    n1 = np.linalg.norm(e1)
    if n1 < 1e-12:                  # fast axis along the beam: use the slow axis
        s_ = np.asarray(det.sdet, dtype=np.float64)
        e1 = np.cross(b, s_ - (s_ @ b) * b)
        n1 = np.linalg.norm(e1)
    e1 = e1 / n1
    e2 = np.cross(b, e1)
    stop = np.array([float(det.distance), *e1, *e2, float(radius), float(arm_width),
                     math.cos(arm_angle), math.sin(arm_angle)])
    out = np.zeros(shape, dtype=np.uint8)
    _shadow_kernel(out, _panel_rows(det, pset), stop, bool(det.curved),
                   float(det.distance), b)
    return out.view(bool)


def bad_pixel_map(shape, fraction: float, seed: int):
    """``(dead, hot)`` bool ``shape`` arrays (module doc)."""
    n = int(np.prod(shape))
    k = int(round(float(fraction) * n))
    dead = np.zeros(n, dtype=bool)
    hot = np.zeros(n, dtype=bool)
    if k > 0:
        pick = np.random.Generator(np.random.PCG64(int(seed))).choice(n, size=k,
                                                                       replace=False)
        dead[pick[:k // 2]] = True
        hot[pick[k // 2:]] = True
    return dead.reshape(shape), hot.reshape(shape)


@dataclass
class DetectorDefects:
    """bool (panels, slow, fast) arrays: ``shadow`` (beamstop), ``dead``, ``hot``."""

    shadow: np.ndarray
    dead: np.ndarray
    hot: np.ndarray

    @property
    def blocked(self) -> np.ndarray:
        """True where no photon from the sample is counted."""
        return self.shadow | self.dead | self.hot


def detector_defects(dcfg, det, pset, shape) -> Optional[DetectorDefects]:
    """The defects the detector config ``dcfg`` asks for (None: none), on the resolved
    detector ``det`` (the frame detector of ``pset``), frames of ``shape``."""
    if dcfg.beamstop_radius <= 0 and dcfg.bad_pixel_fraction <= 0:
        return None
    if dcfg.beamstop_radius > 0:
        shadow = beamstop_shadow(det, pset, shape, dcfg.beamstop_radius,
                                 dcfg.beamstop_arm_width, dcfg.beamstop_arm_angle)
    else:
        shadow = np.zeros(shape, dtype=bool)
    dead, hot = bad_pixel_map(shape, dcfg.bad_pixel_fraction, dcfg.bad_pixel_seed)
    return DetectorDefects(shadow=shadow, dead=dead, hot=hot)

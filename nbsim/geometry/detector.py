"""Detector geometry: conventions, beam centres, pivots, rotations (nanoBragg.c l.1118-1785).

One canonical description comes out: ``pix0`` (lab position of the corner of the
first pixel), the unit vectors ``fdet``, ``sdet``, ``odet``, and the derived beam
centre and distances.  Conventions are translated here and nowhere else.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from ..config import Config
from .rotations import cross, dot, rotate_axis, rotate_xyz, unitize

DBL_MIN = sys.float_info.min

# beam, fdet, sdet, odet, twotheta_axis, polar, spindle  (lab frame of nanoBragg)
_CONVENTION_VECTORS = {
    "ADXV": ((0, 0, 1), (1, 0, 0), (0, -1, 0), (0, 0, 1), (-1, 0, 0), (1, 0, 0), (1, 0, 0)),
    "MOSFLM": ((1, 0, 0), (0, 0, 1), (0, -1, 0), (1, 0, 0), (0, 0, -1), (0, 0, 1), (0, 0, 1)),
    "DENZO": ((1, 0, 0), (0, 0, 1), (0, -1, 0), (1, 0, 0), (0, 0, -1), (0, 0, 1), (0, 0, 1)),
    "XDS": ((0, 0, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 0), (1, 0, 0), (1, 0, 0)),
    "DIALS": ((0, 0, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 0), (0, 1, 0), (0, 1, 0)),
}
# C's initial values (its declarations, l.191-306), kept by CUSTOM for any vector the user
# did not give: MOSFLM's, except the two-theta axis, declared {0,0,1,0} i.e. +y
_CUSTOM_DEFAULTS = _CONVENTION_VECTORS["MOSFLM"][:4] + ((0, 1, 0),) + \
    _CONVENTION_VECTORS["MOSFLM"][5:]


@dataclass
class DetectorGeometry:
    """Resolved detector. Lengths in metres; vectors are unit 3-vectors in the lab frame."""
    fpixels: int
    spixels: int
    pixel_size: float
    detsize_f: float
    detsize_s: float
    pix0: np.ndarray
    fdet: np.ndarray
    sdet: np.ndarray
    odet: np.ndarray
    beam: np.ndarray
    polar: np.ndarray
    spindle: np.ndarray
    twotheta_axis: np.ndarray
    distance: float
    close_distance: float
    Xbeam: float
    Ybeam: float
    Fbeam: float
    Sbeam: float
    Xclose: float
    Yclose: float
    Fclose: float
    Sclose: float
    ORGX: float
    ORGY: float
    dials_origin: np.ndarray          # mm
    convention: str
    pivot: str
    roi: Tuple[int, int, int, int]    # inclusive xmin, xmax, ymin, ymax
    curved: bool
    point_pixel: bool
    twotheta: float
    thick: float
    thickstep: float
    thicksteps: int
    mu: float
    notes: List[str]


def _isnone(v):
    return v is None


def resolve_detector(cfg: Config) -> DetectorGeometry:
    """Apply nanoBragg.c's geometry rules to ``cfg`` (both modes; pix0 per mode)."""
    d, b, c = cfg.detector, cfg.beam, cfg.crystal
    notes: List[str] = []
    pixel_size = float(d.pixel_size)
    detsize_f, detsize_s = float(d.detsize_f), float(d.detsize_s)
    if d.fpixels:
        detsize_f = pixel_size * d.fpixels
    if d.spixels:
        detsize_s = pixel_size * d.spixels
    fpixels = int(math.ceil(detsize_f / pixel_size - 0.5))
    spixels = int(math.ceil(detsize_s / pixel_size - 0.5))

    Xbeam, Ybeam = d.beam_center_x, d.beam_center_y
    Xclose, Yclose = d.xclose, d.yclose
    Fclose = (d.orgx - 0.5) * pixel_size if d.orgx is not None else None
    Sclose = (d.orgy - 0.5) * pixel_size if d.orgy is not None else None
    if Fclose is None:
        Fclose = detsize_f / 2.0
    if Sclose is None:
        Sclose = detsize_s / 2.0
    if Xclose is None:
        Xclose = Fclose
    if Yclose is None:
        Yclose = Sclose
    Fbeam, Sbeam = Fclose, Sclose

    if d.roi is None:
        roi = (0, fpixels, 0, spixels)
    else:
        xmin, xmax, ymin, ymax = (int(v) for v in d.roi)
        roi = (xmin if xmin >= 0 else 0, xmax if xmax >= 0 else fpixels,
               ymin if ymin >= 0 else 0, ymax if ymax >= 0 else spixels)

    conv = d.convention
    pivot = d.pivot or "BEAM"
    if conv != "CUSTOM":
        beam, fdet, sdet, odet, tt_axis, polar, spindle = (
            np.array(v, dtype=np.float64) for v in _CONVENTION_VECTORS[conv])
        user_pivot = d.pivot
        if conv == "ADXV":
            if Xbeam is None:
                Xbeam = (detsize_f + pixel_size) / 2.0
            if Ybeam is None:
                Ybeam = (detsize_s - pixel_size) / 2.0
            Fbeam, Sbeam = Xbeam, detsize_s - Ybeam
            pivot = "BEAM"
        elif conv in ("MOSFLM", "DENZO"):
            if Xbeam is None:
                Xbeam = (detsize_s + pixel_size) / 2.0
            if Ybeam is None:
                Ybeam = (detsize_f + pixel_size) / 2.0
            half = 0.5 * pixel_size if conv == "MOSFLM" else 0.0
            Fbeam, Sbeam = Ybeam + half, Xbeam + half
            pivot = "BEAM"
        else:  # XDS, DIALS
            if Xbeam is None:
                Xbeam = Xclose
            if Ybeam is None:
                Ybeam = Yclose
            Fbeam, Sbeam = Xbeam, Ybeam
            pivot = "SAMPLE"
        if user_pivot is not None and user_pivot != pivot:
            notes.append(f"{conv} convention pivots about the "
                         f"{'sample' if pivot == 'SAMPLE' else 'beam'}; "
                         f"requested {user_pivot.lower()} pivot ignored")
        # user vectors are ignored by the named conventions, as in C
    else:
        def pick(v, default):
            return np.array(v if v is not None else default, dtype=np.float64)
        beam = pick(b.beam_vector, _CUSTOM_DEFAULTS[0])
        fdet = pick(d.fdet_vector, _CUSTOM_DEFAULTS[1])
        sdet = pick(d.sdet_vector, _CUSTOM_DEFAULTS[2])
        odet = pick(d.odet_vector, _CUSTOM_DEFAULTS[3])
        tt_axis = pick(d.twotheta_axis, _CUSTOM_DEFAULTS[4])
        polar = pick(b.polar_vector, _CUSTOM_DEFAULTS[5])
        spindle = pick(c.spindle_axis, _CUSTOM_DEFAULTS[6])
        if Xbeam is None:
            Xbeam = Xclose
        if Ybeam is None:
            Ybeam = Yclose
        Fbeam, Sbeam = Xbeam, Ybeam
        Fclose, Sclose = Xbeam, Ybeam

    beam, _ = unitize(beam)
    fdet, _ = unitize(fdet)
    sdet, _ = unitize(sdet)
    odet_u, odet_mag = unitize(odet)
    if odet_mag != 1.0:
        notes.append("odet_vector is not a unit vector: replaced by fdet x sdet")
        odet_u, _ = unitize(cross(fdet, sdet))
    odet = odet_u
    polar, _ = unitize(polar)
    spindle, _ = unitize(spindle)
    # rotate_axis in C assumes a unit axis but twotheta_axis is never unitized there
    tt_axis = np.asarray(tt_axis, dtype=np.float64)

    rotx, roty, rotz, twotheta = float(d.rotx), float(d.roty), float(d.rotz), float(d.twotheta)
    distance = float(d.distance)
    close_distance = d.close_distance
    ratio = dot(beam, rotate_xyz(odet, rotx, roty, rotz))
    if ratio == 0.0:
        ratio = DBL_MIN
    if close_distance is None:
        close_distance = abs(ratio * distance)
    distance = close_distance / ratio

    use_pix0 = d.pix0_vector is not None and cfg.mode == "spec"
    if d.pix0_vector is not None and not use_pix0:
        notes.append("c-parity: -pix0_vector is overwritten by the pivot geometry, as in nanoBragg.c")

    pix0 = np.zeros(3)
    if pivot == "SAMPLE" and not use_pix0:
        pix0 = np.array([-Fclose * fdet[i] - Sclose * sdet[i] + close_distance * odet[i]
                         for i in range(3)])
        pix0 = rotate_xyz(pix0, rotx, roty, rotz)
        pix0 = rotate_axis(pix0, tt_axis, twotheta)
    fdet = rotate_axis(rotate_xyz(fdet, rotx, roty, rotz), tt_axis, twotheta)
    sdet = rotate_axis(rotate_xyz(sdet, rotx, roty, rotz), tt_axis, twotheta)
    odet = rotate_axis(rotate_xyz(odet, rotx, roty, rotz), tt_axis, twotheta)
    if use_pix0:
        # spec: the given origin is that of the unrotated detector; it swings with it
        pix0 = rotate_axis(rotate_xyz(np.asarray(d.pix0_vector, dtype=np.float64),
                                      rotx, roty, rotz), tt_axis, twotheta)
        notes.append("using the detector origin given by -pix0_vector")
    elif pivot == "BEAM":
        pix0 = np.array([-Fbeam * fdet[i] - Sbeam * sdet[i] + distance * beam[i]
                         for i in range(3)])

    Fclose = -dot(pix0, fdet)
    Sclose = -dot(pix0, sdet)
    close_distance = dot(pix0, odet)
    newv = np.array([close_distance / ratio * beam[i] - pix0[i] for i in range(3)])
    Fbeam = dot(fdet, newv)
    Sbeam = dot(sdet, newv)
    distance = close_distance / ratio

    ORGX = Fclose / pixel_size + 0.5
    ORGY = Sclose / pixel_size + 0.5
    # C's dot products with (0,0,1), (0,1,0), (-1,0,0), term by term: the zero terms
    # decide the sign of a zero component (printed in the SMV header)
    p0x, p0y, p0z = (float(v) for v in pix0)
    dials_origin = np.array([1000.0 * (p0x * 0.0 + p0y * 0.0 + p0z * 1.0),
                             1000.0 * (p0x * 0.0 + p0y * 1.0 + p0z * 0.0),
                             1000.0 * (p0x * -1.0 + p0y * 0.0 + p0z * 0.0)])

    # detector sensor layers (C l.1596-1633)
    thick = float(d.thick or 0.0)
    thickstep = -1.0 if d.thickstep is None else float(d.thickstep)
    thicksteps = -1 if d.thicksteps is None else int(d.thicksteps)
    mu = -1.0 if d.mu is None else float(d.mu)
    if thicksteps <= 0:
        if thick < 0.0:
            if thickstep <= 0.0:
                thicksteps, thick, thickstep = 1, 0.0, 0.0
            else:
                thick, thicksteps = thickstep, 2
        else:
            if thickstep <= 0.0:
                thicksteps = 2
                thickstep = thick / thicksteps
            else:
                thicksteps = int(math.ceil(thick / thickstep))
    else:
        if thick < 0.0:
            if thickstep <= 0.0:
                thick = 0.5e-6
                thickstep = thick / thicksteps
            else:
                thick, thicksteps = thickstep, 2
        else:
            if thickstep <= 0.0:
                if thicksteps <= 1:
                    thicksteps = 2
                thickstep = thick / (thicksteps - 1)
    if thick > 0.0 and mu < 0.0:
        mu = 1.0 / thick
    if thick <= 0.0 or thickstep <= 0.0 or thicksteps <= 0:
        thicksteps, thick, thickstep = 1, 0.0, 0.0

    return DetectorGeometry(
        fpixels=fpixels, spixels=spixels, pixel_size=pixel_size, detsize_f=detsize_f,
        detsize_s=detsize_s, pix0=pix0, fdet=fdet, sdet=sdet, odet=odet, beam=beam,
        polar=polar, spindle=spindle, twotheta_axis=tt_axis, distance=distance,
        close_distance=close_distance, Xbeam=Xbeam, Ybeam=Ybeam, Fbeam=Fbeam, Sbeam=Sbeam,
        Xclose=Xclose, Yclose=Yclose, Fclose=Fclose, Sclose=Sclose, ORGX=ORGX, ORGY=ORGY,
        dials_origin=dials_origin, convention=conv, pivot=pivot, roi=roi, curved=bool(d.curved),
        point_pixel=bool(d.point_pixel), twotheta=twotheta, thick=thick, thickstep=thickstep,
        thicksteps=thicksteps, mu=mu, notes=notes)

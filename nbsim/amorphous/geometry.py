"""nonBragg.c's detector and source geometry, in nbsim's resolved form.

nonBragg.c shares nanoBragg.c's vectors, rotations and pivots but resolves them with its
own, older rules (nonBragg.c ll. 880-1240); :func:`resolve_nonbragg_geometry` applies
them and returns the same kind of description the kernels take from nanoBragg's
geometry (:class:`AmorphousGeometry`).  Where nonBragg.c differs from
:func:`nbsim.geometry.detector.resolve_detector`:

* pixel counts are ``ceil(detsize/pixel)`` (nanoBragg: ``ceil(detsize/pixel - 0.5)``);
* there are no conventions: the vectors start as MOSFLM's (beam +x, fdet +z, sdet -y,
  two-theta axis +y) and the flags change them; the beam centre is used as given
  (``pix0 = -Xbeam fdet - Ybeam sdet + distance beam``, no MOSFLM half pixel), and
  defaults to ``Xclose = (detsize_x - pixel)/2``, ``Yclose = (detsize_y + pixel)/2``;
  ``-ORGX/-ORGY`` give ``Xclose = ORGX*pixel`` (no half pixel);
* the pivot is the last flag's: ``-Xbeam -Ybeam -distance`` pivot about the beam,
  ``-Xclose -Yclose -ORGX -ORGY -close_distance -twotheta`` about the sample,
  ``-pivot beam|sample`` either;
* ``odet`` is always ``fdet x sdet`` (a given ``-odet_vector`` is ignored) and
  ``-pix0_vector`` is ignored (both pivots overwrite it);
* ``close_distance`` defaults to ``ratio*distance`` (nanoBragg: its absolute value);
* there is no detector sensor thickness (one layer, capture fraction 1);
* generated sources weigh 1 each (nanoBragg lists 1/n); file sources use their weight
  column, which nonBragg.c does apply.

Lengths in metres, angles in radians.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Optional, Tuple

import numpy as np

from ..geometry.rotations import cross, dot, rotate_axis, rotate_xyz, unitize
from ..geometry.sources import resolve_sources

__all__ = ["NonBraggDetector", "AmorphousGeometry", "resolve_nonbragg_geometry",
           "geometry_from_nbsim"]

DBL_MIN = sys.float_info.min


@dataclass
class NonBraggDetector:
    """nonBragg.c's geometry inputs, its defaults (SI units)."""

    pixel_size: float = 0.1e-3
    fpixels: int = 0
    spixels: int = 0
    detsize_x: float = 102.4e-3
    detsize_y: float = 102.4e-3
    distance: float = 100.0e-3
    close_distance: Optional[float] = None
    Xbeam: Optional[float] = None
    Ybeam: Optional[float] = None
    Xclose: Optional[float] = None
    Yclose: Optional[float] = None
    ORGX: Optional[float] = None
    ORGY: Optional[float] = None
    pivot: str = "BEAM"
    fdet: Tuple[float, float, float] = (0.0, 0.0, 1.0)
    sdet: Tuple[float, float, float] = (0.0, -1.0, 0.0)
    beam: Tuple[float, float, float] = (1.0, 0.0, 0.0)
    polar: Tuple[float, float, float] = (0.0, 0.0, 1.0)
    twotheta_axis: Tuple[float, float, float] = (0.0, 1.0, 0.0)
    rotx: float = 0.0
    roty: float = 0.0
    rotz: float = 0.0
    twotheta: float = 0.0
    roi: Optional[Tuple[int, int, int, int]] = None
    curved: bool = False
    point_pixel: bool = False
    oversample: int = -1
    # beam
    wavelength: float = 1.0e-10
    dispersion: float = 0.0
    dispsteps: Optional[int] = None
    hdivrange: Optional[float] = None
    hdivstep: Optional[float] = None
    hdivsteps: Optional[int] = None
    vdivrange: Optional[float] = None
    vdivstep: Optional[float] = None
    vdivsteps: Optional[int] = None
    round_div: bool = True
    sources: Optional[np.ndarray] = None      # (n, 5) X Y Z weight lambda, NaN = default


@dataclass
class AmorphousGeometry:
    """What the amorphous-scattering kernels need (metres, unit vectors, radians)."""

    fpixels: int
    spixels: int
    pixel_size: float
    oversample: int
    pix0: np.ndarray
    fdet: np.ndarray
    sdet: np.ndarray
    odet: np.ndarray
    beam: np.ndarray
    polar: np.ndarray
    distance: float
    close_distance: float
    roi: Tuple[int, int, int, int]            # inclusive xmin, xmax, ymin, ymax
    curved: bool
    point_pixel: bool
    incident: np.ndarray                      # (n, 3) unit vectors, source -> sample
    wavelengths: np.ndarray                   # (n,) m
    weights: np.ndarray                       # (n,)
    # for headers and printing
    detsize_x: float = 0.0
    detsize_y: float = 0.0
    Xbeam: float = 0.0
    Ybeam: float = 0.0
    Xclose: float = 0.0
    Yclose: float = 0.0
    twotheta: float = 0.0
    source_positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    divsteps: int = 1
    dispsteps: int = 1


def _incident(positions):
    """C: incident = -source position, unitized (per source)."""
    out = np.zeros((len(positions), 3))
    for i, p in enumerate(positions):
        out[i], _ = unitize(-np.asarray(p, dtype=np.float64))
    return out


def resolve_nonbragg_geometry(d: NonBraggDetector) -> AmorphousGeometry:
    """Apply nonBragg.c's rules (module doc) to ``d``."""
    pixel = float(d.pixel_size)
    detsize_x, detsize_y = float(d.detsize_x), float(d.detsize_y)
    if d.fpixels:
        detsize_x = pixel * d.fpixels
    if d.spixels:
        detsize_y = pixel * d.spixels
    fpixels = int(math.ceil(detsize_x / pixel))
    spixels = int(math.ceil(detsize_y / pixel))
    Xclose, Yclose = d.Xclose, d.Yclose
    if d.ORGX is not None:
        Xclose = d.ORGX * pixel
    if d.ORGY is not None:
        Yclose = d.ORGY * pixel
    if Xclose is None:
        Xclose = (detsize_x - pixel) / 2.0
    if Yclose is None:
        Yclose = (detsize_y + pixel) / 2.0
    Xbeam = Xclose if d.Xbeam is None else d.Xbeam
    Ybeam = Yclose if d.Ybeam is None else d.Ybeam
    if d.roi is None:
        roi = (0, fpixels, 0, spixels)
    else:
        x0, x1, y0, y1 = (int(v) for v in d.roi)
        roi = (x0 if x0 >= 0 else 0, x1 if x1 >= 0 else fpixels,
               y0 if y0 >= 0 else 0, y1 if y1 >= 0 else spixels)

    beam, _ = unitize(np.asarray(d.beam, dtype=np.float64))
    fdet, _ = unitize(np.asarray(d.fdet, dtype=np.float64))
    sdet, _ = unitize(np.asarray(d.sdet, dtype=np.float64))
    odet, _ = unitize(cross(fdet, sdet))
    polar, _ = unitize(np.asarray(d.polar, dtype=np.float64))
    tt_axis = np.asarray(d.twotheta_axis, dtype=np.float64)

    rotx, roty, rotz, twotheta = float(d.rotx), float(d.roty), float(d.rotz), float(d.twotheta)
    ratio = dot(beam, rotate_xyz(odet, rotx, roty, rotz))
    if ratio == 0.0:
        ratio = DBL_MIN
    close_distance = d.close_distance
    if close_distance is None:
        close_distance = ratio * float(d.distance)
    distance = close_distance / ratio

    pix0 = np.zeros(3)
    if d.pivot == "SAMPLE":
        pix0 = np.array([-Xclose * fdet[i] - Yclose * sdet[i] + close_distance * odet[i]
                         for i in range(3)])
        pix0 = rotate_xyz(pix0, rotx, roty, rotz)
        pix0 = rotate_axis(pix0, tt_axis, twotheta)
    fdet = rotate_axis(rotate_xyz(fdet, rotx, roty, rotz), tt_axis, twotheta)
    sdet = rotate_axis(rotate_xyz(sdet, rotx, roty, rotz), tt_axis, twotheta)
    odet = rotate_axis(rotate_xyz(odet, rotx, roty, rotz), tt_axis, twotheta)
    if d.pivot == "BEAM":
        pix0 = np.array([-Xbeam * fdet[i] - Ybeam * sdet[i] + distance * beam[i]
                         for i in range(3)])
    Xclose = -dot(pix0, fdet)
    Yclose = -dot(pix0, sdet)
    close_distance = dot(pix0, odet)
    newv = np.array([close_distance / ratio * beam[i] - pix0[i] for i in range(3)])
    Xbeam = dot(fdet, newv)
    Ybeam = dot(sdet, newv)
    distance = close_distance / ratio

    beamcfg = SimpleNamespace(
        wavelength=d.wavelength, dispersion=d.dispersion, dispstep=None, dispsteps=d.dispsteps,
        hdivrange=d.hdivrange, hdivstep=d.hdivstep, hdivsteps=d.hdivsteps,
        vdivrange=d.vdivrange, vdivstep=d.vdivstep, vdivsteps=d.vdivsteps,
        round_div=d.round_div, sources=d.sources)
    src = resolve_sources(SimpleNamespace(beam=beamcfg), beam, polar)
    have_file = d.sources is not None and len(d.sources) > 0
    weights = np.asarray(src.weights, dtype=np.float64) if have_file else np.ones(src.count)
    oversample = int(d.oversample) if d.oversample and d.oversample > 0 else 1
    return AmorphousGeometry(
        fpixels=fpixels, spixels=spixels, pixel_size=pixel, oversample=oversample, pix0=pix0,
        fdet=fdet, sdet=sdet, odet=odet, beam=beam, polar=polar, distance=distance,
        close_distance=close_distance, roi=roi, curved=bool(d.curved),
        point_pixel=bool(d.point_pixel), incident=_incident(src.positions),
        wavelengths=np.asarray(src.wavelengths, dtype=np.float64), weights=weights,
        detsize_x=detsize_x, detsize_y=detsize_y, Xbeam=Xbeam, Ybeam=Ybeam, Xclose=Xclose,
        Yclose=Yclose, twotheta=twotheta, source_positions=np.asarray(src.positions),
        divsteps=src.divsteps, dispsteps=src.dispsteps)


def geometry_from_nbsim(det, sources, oversample: int) -> AmorphousGeometry:
    """The amorphous background on nbsim's own (nanoBragg) detector: ``det`` a
    :class:`nbsim.geometry.detector.DetectorGeometry`, ``sources`` a
    :class:`nbsim.geometry.sources.SourceSet` (every source weighs 1, as nonBragg.c's
    generated ones); the sensor layers are not modelled (nonBragg.c has none)."""
    return AmorphousGeometry(
        fpixels=int(det.fpixels), spixels=int(det.spixels), pixel_size=float(det.pixel_size),
        oversample=max(1, int(oversample)), pix0=np.asarray(det.pix0, dtype=np.float64),
        fdet=np.asarray(det.fdet, dtype=np.float64), sdet=np.asarray(det.sdet, dtype=np.float64),
        odet=np.asarray(det.odet, dtype=np.float64), beam=np.asarray(det.beam, dtype=np.float64),
        polar=np.asarray(det.polar, dtype=np.float64), distance=float(det.distance),
        close_distance=float(det.close_distance), roi=tuple(int(v) for v in det.roi),
        curved=bool(det.curved), point_pixel=bool(det.point_pixel),
        incident=_incident(sources.positions),
        wavelengths=np.asarray(sources.wavelengths, dtype=np.float64),
        weights=np.ones(sources.count), detsize_x=float(det.detsize_f),
        detsize_y=float(det.detsize_s), Xbeam=float(det.Fbeam), Ybeam=float(det.Sbeam),
        Xclose=float(det.Fclose), Yclose=float(det.Sclose), twotheta=float(det.twotheta),
        source_positions=np.asarray(sources.positions))

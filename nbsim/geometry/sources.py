"""X-ray sources: divergence grid x dispersion, or a source file (nanoBragg.c l.2339-2443)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..steps import source_steps
from .rotations import cross, rotate_axis, unitize

SOURCE_DISTANCE = 10.0  # m, C's source_distance


@dataclass
class SourceSet:
    directions: np.ndarray   # (n, 3) unit vectors from the sample towards each source
    wavelengths: np.ndarray  # (n,) m
    weights: np.ndarray      # (n,) as C lists them (C does not use them)
    positions: np.ndarray    # (n, 3) as given / generated, before unitizing (for printing)
    divsteps: int
    dispsteps: int
    hdivrange: float
    hdivstep: float
    vdivrange: float
    vdivstep: float
    dispersion: float
    dispstep: float
    divergence_points: tuple = ()   # (hdiv, vdiv) radians of the generated grid, C's order

    @property
    def count(self) -> int:
        return self.directions.shape[0]



def resolve_sources(cfg: Config, beam_vector, polar_vector) -> SourceSet:
    b = cfg.beam
    lambda0 = float(b.wavelength)
    hdivsteps, hdivrange, hdivstep = source_steps(b.hdivsteps, b.hdivrange, b.hdivstep, 1.0)
    vdivsteps, vdivrange, vdivstep = source_steps(b.vdivsteps, b.vdivrange, b.vdivstep, 1.0)
    dispsteps, dispersion, dispstep = source_steps(b.dispsteps, b.dispersion, b.dispstep, 1.0)
    beam_vector = np.asarray(beam_vector, dtype=np.float64)
    divsteps = 0
    if b.sources is not None and len(b.sources) > 0:
        src = np.array(b.sources, dtype=np.float64).reshape(-1, 5).copy()
        for i in range(3):
            col = src[:, i]
            col[np.isnan(col)] = -SOURCE_DISTANCE * beam_vector[i]
        src[np.isnan(src[:, 3]), 3] = 1.0
        src[np.isnan(src[:, 4]), 4] = lambda0
        positions = src[:, :3].copy()
        weights = src[:, 3].copy()
        wavelengths = src[:, 4].copy()
    else:
        vert = unitize(cross(beam_vector, polar_vector))[0]
        pos, lam, div_points = [], [], []
        for ht in range(hdivsteps):
            for vt in range(vdivsteps):
                hdiv = hdivstep * ht - hdivrange / 2.0
                vdiv = vdivstep * vt - vdivrange / 2.0
                if b.round_div:
                    # C divides by the ranges even when they are zero (giving NaN, which
                    # then fails the test): reproduce the outcome without the NaN
                    if hdivrange != 0.0 and vdivrange != 0.0:
                        test = (hdiv * hdiv - hdivstep * hdivstep / 4.0 * (1 - hdivsteps % 2)) / hdivrange / hdivrange
                        test += (vdiv * vdiv - vdivstep * vdivstep / 4.0 * (1 - vdivsteps % 2)) / vdivrange / vdivrange
                        if test * 4.0 > 1.1:
                            continue
                    else:
                        test = _c_round_test(hdiv, vdiv, hdivstep, vdivstep, hdivsteps, vdivsteps,
                                             hdivrange, vdivrange)
                        if test:
                            continue
                divsteps += 1
                div_points.append((hdiv, vdiv))
                v = -SOURCE_DISTANCE * beam_vector
                v = rotate_axis(v, polar_vector, vdiv)
                v = rotate_axis(v, vert, hdiv)
                for dt in range(dispsteps):
                    pos.append(v)
                    lam.append(lambda0 * (1.0 + dispstep * dt - dispersion / 2.0))
        positions = np.array(pos, dtype=np.float64).reshape(-1, 3)
        wavelengths = np.array(lam, dtype=np.float64)
        n = len(lam)
        weights = np.full(n, 1.0 / n if n else 0.0)
    if b.sources is not None and len(b.sources) > 0:
        div_points = []
    directions = np.array([unitize(p)[0] for p in positions]).reshape(-1, 3)
    return SourceSet(divergence_points=tuple(div_points), directions=directions, wavelengths=wavelengths, weights=weights,
                     positions=positions, divsteps=divsteps, dispsteps=dispsteps,
                     hdivrange=hdivrange, hdivstep=hdivstep, vdivrange=vdivrange,
                     vdivstep=vdivstep, dispersion=dispersion, dispstep=dispstep)


def _c_round_test(hdiv, vdiv, hdivstep, vdivstep, hdivsteps, vdivsteps, hdivrange, vdivrange):
    """C's elliptical cut with IEEE semantics for a zero range (0/0 = NaN never exceeds 1.1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (np.float64(hdiv * hdiv - hdivstep * hdivstep / 4.0 * (1 - hdivsteps % 2))
             / np.float64(hdivrange) / np.float64(hdivrange))
        t += (np.float64(vdiv * vdiv - vdivstep * vdivstep / 4.0 * (1 - vdivsteps % 2))
              / np.float64(vdivrange) / np.float64(vdivrange))
        return bool(t * 4.0 > 1.1)

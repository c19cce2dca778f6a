"""Crystal: unit cell, orientation, size, mosaic domains and the phi sweep
(nanoBragg.c l.1380-1430, 1660-1690, 1786-2085, 2446-2463).

Real-space vectors come out in metres and reciprocal vectors in 1/Angstrom
(C keeps a_star in 1/A; the round, Gaussian and top-hat lattice shapes use them
as they are).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from ..config import Config
from ..errors import ConfigError
from ..steps import resolve_mosaic, resolve_phi  # noqa: F401  (re-exported)
from .rotations import cross, dot, magnitude, rotate_axis, rotate_umat, rotate_xyz

DBL_MIN = sys.float_info.min
RTD = 180.0 * (1.0 / math.pi)


@dataclass
class CrystalGeometry:
    a0: np.ndarray          # real-space cell vectors at phi=0, no mosaic (m)
    b0: np.ndarray
    c0: np.ndarray
    a_star: np.ndarray      # reciprocal vectors (1/A), after misset
    b_star: np.ndarray
    c_star: np.ndarray
    cell: tuple             # a b c (A) alpha beta gamma (deg), as C prints
    cell_star: tuple
    V_cell: float           # A^3
    Na: float
    Nb: float
    Nc: float
    xtalsize_max: float     # m
    misset_deg: Optional[tuple]
    mosaic_spread: float    # rad
    mosaic_umats: np.ndarray  # (domains, 9) row-major
    phi0: float
    phistep: float
    phisteps: int
    osc: float
    notes: List[str] = field(default_factory=list)

    @property
    def mosaic_domains(self) -> int:
        return self.mosaic_umats.shape[0]

    def phi_values(self) -> np.ndarray:
        """The phi angle of each step (rad), computed as C does: phi0 + phistep*tic."""
        return np.array([self.phi0 + self.phistep * t for t in range(self.phisteps)])


def _clip(v):
    return min(max(v, -1.0), 1.0)


def resolve_crystal(cfg: Config, wavelength: float, beamsize: float) -> CrystalGeometry:
    """Build the cell exactly as nanoBragg.c; ``wavelength`` in m rescales an A matrix."""
    from .._numba_setup import prepare_cpu
    from ..rng import idum_from_seed_flag, mosaic_umats, new_state, random_misset_umat

    c = cfg.crystal
    notes: List[str] = []
    a = np.zeros(4)
    b = np.zeros(4)
    cc = np.zeros(4)
    a_star = np.zeros(4)
    b_star = np.zeros(4)
    c_star = np.zeros(4)
    user_cell = c.cell is not None
    alpha = beta = gamma = 0.0
    V_cell = 0.0
    if user_cell:
        a[0] = c.cell[0] * 1e10
        b[0] = c.cell[1] * 1e10
        cc[0] = c.cell[2] * 1e10
        alpha, beta, gamma = c.cell[3], c.cell[4], c.cell[5]
        if b[0] <= 0.0:
            b[0] = a[0]
        if cc[0] <= 0.0:
            cc[0] = a[0]
        if alpha <= 0.0:
            alpha = math.pi / 2
        if beta <= 0.0:
            beta = math.pi / 2
        if gamma <= 0.0:
            gamma = math.pi / 2
        aavg = (alpha + beta + gamma) / 2
        skew = math.sin(aavg) * math.sin(aavg - alpha) * math.sin(aavg - beta) * math.sin(aavg - gamma)
        if skew <= 0.0:
            # C takes |skew| and carries on with a cell that cannot exist
            raise ConfigError("crystal.cell", tuple(c.cell),
                              "impossible cell angles (each must be less than the sum of "
                              "the other two, and their sum less than 360 deg)")
        V_cell = 2.0 * a[0] * b[0] * cc[0] * math.sqrt(skew)
        if V_cell <= 0.0:
            raise ConfigError("crystal.cell", c.cell, "impossible unit cell (zero volume)")
        V_star = 1.0 / V_cell
        a_star[0] = b[0] * cc[0] * math.sin(alpha) * V_star
        b_star[0] = cc[0] * a[0] * math.sin(beta) * V_star
        c_star[0] = a[0] * b[0] * math.sin(gamma) * V_star
        if a_star[0] <= 0.0 or b_star[0] <= 0.0 or c_star[0] <= 0.0:
            a_star[0], b_star[0], c_star[0] = abs(a_star[0]), abs(b_star[0]), abs(c_star[0])
            for v in (a_star, b_star, c_star):
                if v[0] <= 0.0:
                    v[0] = DBL_MIN
        sin_gamma_star = cc[0] * V_star / a_star[0] / b_star[0]
        cos_alpha_star = (math.cos(beta) * math.cos(gamma) - math.cos(alpha)) / (math.sin(beta) * math.sin(gamma))
        cos_beta_star = (math.cos(gamma) * math.cos(alpha) - math.cos(beta)) / (math.sin(gamma) * math.sin(alpha))
        cos_gamma_star = (math.cos(alpha) * math.cos(beta) - math.cos(gamma)) / (math.sin(alpha) * math.sin(beta))
        sin_gamma_star = _clip(sin_gamma_star)
        if cos_alpha_star * cos_alpha_star > 1.0:
            cos_alpha_star = 1.0
        if cos_beta_star * cos_beta_star > 1.0:
            cos_beta_star = 1.0
        if cos_gamma_star * cos_gamma_star > 1.0:
            cos_gamma_star = 1.0
        a_star[1] = a_star[0]
        b_star[1] = b_star[0] * cos_gamma_star
        c_star[1] = c_star[0] * cos_beta_star
        a_star[2] = 0.0
        b_star[2] = b_star[0] * sin_gamma_star
        c_star[2] = c_star[0] * (cos_alpha_star - cos_beta_star * cos_gamma_star) / sin_gamma_star
        a_star[3] = 0.0
        b_star[3] = 0.0
        c_star[3] = c_star[0] * V_cell / (a[0] * b[0] * cc[0] * sin_gamma_star)

    if c.a_star_matrix is not None:
        m = np.asarray(c.a_star_matrix, dtype=np.float64)
        scale = 1e-10 / wavelength
        # rows of the file are x, y, z; columns a*, b*, c*
        for i in range(3):
            a_star[i + 1] = m[i, 0] * scale
            b_star[i + 1] = m[i, 1] * scale
            c_star[i + 1] = m[i, 2] * scale

    misset = None
    if c.misset_random:
        seed = c.misset_seed
        if seed is None:
            # nanoBragg.c initialises misset_seed from the clock before it parses -seed
            # (its usage text says "same as -seed", its code does not): follow the code
            import time
            seed = int(time.time())
        prepare_cpu()
        umat, angles, msg = random_misset_umat(idum_from_seed_flag(seed))
        notes.append(msg)
        misset = tuple(angles)
    elif c.misset is not None:
        misset = tuple(float(v) for v in c.misset)
    if misset is not None:
        for v in (a_star, b_star, c_star):
            v[1:] = rotate_xyz(v[1:], *misset)

    a_star_cross_b_star = cross(a_star[1:], b_star[1:])
    b_star_cross_c_star = cross(b_star[1:], c_star[1:])
    c_star_cross_a_star = cross(c_star[1:], a_star[1:])
    V_star = dot(a_star[1:], b_star_cross_c_star)
    if user_cell:
        def rescale(v, mag):
            old = magnitude(v)
            if old <= 0.0:
                old = 1.0
            return np.array([mag / old * v[0], mag / old * v[1], mag / old * v[2]])
        b_star_cross_c_star = rescale(b_star_cross_c_star, a[0] / V_cell)
        c_star_cross_a_star = rescale(c_star_cross_a_star, b[0] / V_cell)
        a_star_cross_b_star = rescale(a_star_cross_b_star, cc[0] / V_cell)
        V_star = 1.0 / V_cell
    if V_star == 0.0:
        raise ConfigError("crystal.a_star_matrix", None, "reciprocal cell has zero volume")
    V_cell = 1.0 / V_star
    av = b_star_cross_c_star * V_cell
    bv = c_star_cross_a_star * V_cell
    cv = a_star_cross_b_star * V_cell
    a_star_v = cross(bv, cv) * V_star
    b_star_v = cross(cv, av) * V_star
    c_star_v = cross(av, bv) * V_star
    la, lb, lc = magnitude(av), magnitude(bv), magnitude(cv)
    las, lbs, lcs = magnitude(a_star_v), magnitude(b_star_v), magnitude(c_star_v)

    def angle(sinv, cosv):
        sinv = _clip(sinv)
        if cosv * cosv > 1.0:
            cosv = 1.0
        return math.atan2(sinv, cosv) * RTD

    cell = (la, lb, lc,
            angle(las * V_cell / lb / lc, dot(bv, cv) / lb / lc),
            angle(lbs * V_cell / la / lc, dot(av, cv) / la / lc),
            angle(lcs * V_cell / la / lb, dot(av, bv) / la / lb))
    cell_star = (las, lbs, lcs,
                 angle(la * V_star / lbs / lcs, dot(b_star_v, c_star_v) / lbs / lcs),
                 angle(lb * V_star / las / lcs, dot(a_star_v, c_star_v) / las / lcs),
                 angle(lc * V_star / las / lbs, dot(a_star_v, b_star_v) / las / lbs))

    a0, b0, c0 = av * 1e-10, bv * 1e-10, cv * 1e-10
    Na, Nb, Nc = float(c.Na), float(c.Nb), float(c.Nc)
    sample_x, sample_y, sample_z = float(c.sample_x), float(c.sample_y), float(c.sample_z)
    if beamsize >= 0:
        if beamsize < sample_y:
            notes.append(f"clipping sample ({sample_y:g} m high) with beam ({beamsize:g} m)")
            sample_y = beamsize
        if beamsize < sample_z:
            notes.append(f"clipping sample ({sample_z:g} m wide) with beam ({beamsize:g} m)")
            sample_z = beamsize
    if sample_x > 0:
        Na = math.ceil(sample_x / magnitude(a0))
    if sample_y > 0:
        Nb = math.ceil(sample_y / magnitude(b0))
    if sample_z > 0:
        Nc = math.ceil(sample_z / magnitude(c0))
    Na, Nb, Nc = max(Na, 1.0), max(Nb, 1.0), max(Nc, 1.0)
    xtalsize_max = max(magnitude(a0) * Na, magnitude(b0) * Nb, magnitude(c0) * Nc)

    spread, domains = resolve_mosaic(c.mosaic_spread, c.mosaic_domains)
    if spread > 0.0:
        state = new_state(idum_from_seed_flag(c.mosaic_seed))
        prepare_cpu()
        umats = np.asarray(mosaic_umats(spread, domains, state),
                           dtype=np.float64).reshape(domains, 9).copy()
    else:
        umats = np.zeros((domains, 9))
    umats[0] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    phistep, phisteps, osc = resolve_phi(c.phi0, c.osc, c.phistep, c.phisteps)
    return CrystalGeometry(
        a0=a0, b0=b0, c0=c0, a_star=a_star_v, b_star=b_star_v, c_star=c_star_v,
        cell=cell, cell_star=cell_star, V_cell=V_cell, Na=Na, Nb=Nb, Nc=Nc,
        xtalsize_max=xtalsize_max,
        misset_deg=None if misset is None else tuple(m * RTD for m in misset),
        mosaic_spread=spread, mosaic_umats=umats, phi0=float(c.phi0), phistep=phistep,
        phisteps=phisteps, osc=osc, notes=notes)


def rotated_cells(cryst: CrystalGeometry, spindle: np.ndarray, phis: np.ndarray,
                  entering=None) -> np.ndarray:
    """Cell vectors per (phi step, domain): array (nphi, ndom, 3, 3) = [a, b, c] rows, metres.

    ``entering`` selects the c-parity carryover: None means the default mode (every
    step rotates from the reference cell).  Otherwise it is the (3, 3) cell in ``ap,bp,cp``
    when the sub-path starts; a step with phi == 0.0 exactly keeps whatever the previous
    step left (C's skipped rotation)."""
    nphi = len(phis)
    ndom = cryst.mosaic_domains
    out = np.empty((nphi, ndom, 3, 3))
    ref = (cryst.a0, cryst.b0, cryst.c0)
    current = None if entering is None else [np.asarray(v, dtype=np.float64) for v in entering]
    for t, phi in enumerate(phis):
        if entering is None or phi != 0.0:
            current = [rotate_axis(v, spindle, phi) if phi != 0.0 or entering is not None
                       else np.array(v, dtype=np.float64) for v in ref]
        for m in range(ndom):
            if cryst.mosaic_spread > 0.0:
                u = cryst.mosaic_umats[m]
                out[t, m] = [rotate_umat(v, u) for v in current]
            else:
                out[t, m] = current
    return out

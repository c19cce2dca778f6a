"""Radiation damage per frame: the dose, a global B-factor increase and MLFSOM-style
specific damage, applied to the structure-factor table (docs/datasets.md, "Radiation
damage").

**Dose.**  Frame i (0-based) is rendered at the dose accumulated at the middle of its
exposure, ``D_i = (i + 1/2) D_frame`` (MGy), ``D_frame`` from ``-dose`` or, RADDOSE
style, from the beam (Murray, Garman & Ravelli 2004, J. Appl. Cryst. 37, 513: the
average dose of a crystal bathed in a top-hat beam, absorbed energy per mass, no
photo-electron escape): ``D_frame = Phi E mu_en / rho`` with Phi the frame's photons per
area (nanoBragg's fluence: ``-fluence`` or ``-flux * -exposure / -beamsize^2``), E = hc /
lambda the photon energy, ``mu_en`` the crystal's linear energy-absorption coefficient
(``-mu_en``, 1/mm; RADDOSE computes it from the composition) and rho its density
(``-crystal_density``, g/cm^3).

**Global damage.**  ``B(D) = b_per_mgy * D`` (A^2) on top of the structure factors'
own: every F of the table is multiplied by ``exp(-B s^2)``, s = sin(theta)/lambda =
1/(2d), so intensities by ``exp(-2 B s^2) = exp(-B / (2 d^2))`` -- the convention of
nbsim's bulk-solvent term (docs/inputs.md) and of crystallographic B factors.  Default
1.0 A^2/MGy: Kmetko et al. 2006 (Acta Cryst. D62, 1030) measured B rising linearly with
dose, ``dB/dD = 8 pi^2 s_AD`` with sensitivities s_AD ~ 0.012 A^2/MGy for cryo-cooled
protein crystals, about 1 A^2 per MGy (the round figure of Holton 2009, J. Synchrotron
Rad. 16, 133).

**Specific damage** (MLFSOM, Holton & Frankel 2010, Acta Cryst. D66, 393): a damaged
structure-factor set (``-damaged_mtz``) and a half dose.  A fraction ``f(D) = 1 -
2^(-D / D_half)`` of the unit cells is damaged (first-order kinetics: the undamaged
fraction decays exponentially with dose; half of it is gone at D_half), and the Bragg
intensities are the mixture of the two sets' *intensities*: ``I(D) = (1 - f) F_p^2 + f
F_d^2``, i.e. ``F = sign(F_p) sqrt(I(D)) exp(-B(D) s^2)``.  At D = D_half the
intensities are halfway between the sets.

The table is changed per frame on the host (no kernel change, no recompile): the table
covers every reflection the detector can record (the run's table, extended with
``-default_F`` where needed), and its 1/d^2 comes from the run's reciprocal cell.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["DEFAULT_B_PER_MGY", "Damage", "DamageSpec", "raddose_dose", "extend_table",
           "inverse_d2", "place_table"]

#: A^2 per MGy (see the module doc)
DEFAULT_B_PER_MGY = 1.0
#: the largest dose per frame (MGy): 100 GGy, beyond XFEL "diffraction before
#: destruction" doses; nanoBragg's default fluence with -mu_en gives ~1e8
MAX_DOSE = 1e5
#: J per eV (exact SI)
EV = 1.602176634e-19


def raddose_dose(fluence: float, wavelength: float, mu_en_per_mm: float,
                 density_g_cm3: float) -> float:
    """MGy absorbed from ``fluence`` photons/m^2 of ``wavelength`` (m) by a crystal of
    linear energy-absorption coefficient ``mu_en_per_mm`` (1/mm) and density (g/cm^3)."""
    from ..geometry.spectrum import HC_EV_M
    energy = HC_EV_M / wavelength * EV                        # J per photon
    gray = fluence * energy * (mu_en_per_mm * 1e3) / (density_g_cm3 * 1e3)
    return gray * 1e-6


@dataclass(frozen=True, eq=False)
class Damage:
    """``dose_per_frame`` MGy; ``b_per_mgy`` A^2/MGy; ``damaged``: the damaged F table on
    the run's grid (or None); ``half_dose`` MGy (with ``damaged``)."""
    dose_per_frame: float
    b_per_mgy: float = DEFAULT_B_PER_MGY
    damaged: Optional[np.ndarray] = None
    half_dose: Optional[float] = None

    def __post_init__(self):
        if not (math.isfinite(self.dose_per_frame) and 0 <= self.dose_per_frame
                <= MAX_DOSE):
            raise ValueError(f"-dose: the dose per frame must be in [0, {MAX_DOSE:g}] MGy, "
                             f"got {self.dose_per_frame:g}")
        if not (math.isfinite(self.b_per_mgy) and 0 <= self.b_per_mgy <= 1e3):
            raise ValueError(f"-b_per_mgy: must be in [0, 1000] A^2/MGy, got "
                             f"{self.b_per_mgy:g}")
        if (self.damaged is None) != (self.half_dose is None):
            raise ValueError("-damaged_mtz and -half_dose: give both or neither")
        if self.half_dose is not None and not (math.isfinite(self.half_dose)
                                               and self.half_dose > 0):
            raise ValueError(f"-half_dose: must be > 0 MGy, got {self.half_dose:g}")

    def dose(self, i: int) -> float:
        """MGy at the middle of frame ``i``'s exposure."""
        return (int(i) + 0.5) * self.dose_per_frame

    def b_factor(self, dose: float) -> float:
        """A^2 added at ``dose``."""
        return self.b_per_mgy * dose

    def damaged_fraction(self, dose: float) -> float:
        """f(D) = 1 - 2^(-D / D_half); 0 without a damaged set."""
        if self.half_dose is None:
            return 0.0
        return -math.expm1(-math.log(2.0) * dose / self.half_dose)

    def frame_table(self, pristine: np.ndarray, inv_d2: np.ndarray, dose: float):
        """The F table of a frame at ``dose``: ``pristine`` (the run's table) with the
        specific damage mixed in and the B factor applied; ``inv_d2`` 1/d^2 (1/A^2) of
        every entry."""
        f = self.damaged_fraction(dose)
        if f > 0.0:
            intensity = (1.0 - f) * pristine * pristine + f * self.damaged * self.damaged
            table = np.copysign(np.sqrt(intensity), pristine)
        else:
            table = np.array(pristine, dtype=np.float64, copy=True)
        b = self.b_factor(dose)
        if b != 0.0:
            table *= np.exp(-0.25 * b * inv_d2)        # exp(-B s^2), s^2 = 1/(4 d^2)
        return table


def inverse_d2(meta: np.ndarray, ast: np.ndarray) -> np.ndarray:
    """1/d^2 (1/A^2) of every entry of a table with ``meta`` (h_min k_min l_min ...
    ranges) for the reciprocal cell ``ast`` (a*, b*, c*, 1/A)."""
    h0, k0, l0 = (int(v) for v in meta[:3])
    nh, nk, nl = (int(v) for v in meta[6:9])
    astar = np.asarray(ast, dtype=np.float64).reshape(3, 3)
    h = np.arange(h0, h0 + nh, dtype=np.float64)[:, None, None, None]
    k = np.arange(k0, k0 + nk, dtype=np.float64)[None, :, None, None]
    l = np.arange(l0, l0 + nl, dtype=np.float64)[None, None, :, None]
    s = h * astar[0] + k * astar[1] + l * astar[2]
    return np.einsum("...i,...i->...", s, s)


def extend_table(structure, ast: np.ndarray, d_min_A: float):
    """``(F, h_min, k_min, l_min)``: the run's table (``structure``:
    :class:`nbsim.config.StructureConfig`) extended with ``default_F`` to every (h, k, l)
    with d >= ``d_min_A`` (so that every recorded reflection is in the table and gets
    the frame's B factor); unchanged when it already covers them or default_F is 0 and
    a table exists."""
    astar = np.asarray(ast, dtype=np.float64).reshape(3, 3)
    real = np.linalg.inv(astar).T           # rows a, b, c (A): h = a . s
    reach = [int(math.ceil(np.linalg.norm(v) / d_min_A)) + 2 for v in real]
    has = structure.grid is not None and structure.hkls
    if has:
        lo = (structure.h_min, structure.k_min, structure.l_min)
        rng = (structure.h_range, structure.k_range, structure.l_range)
        grid = np.asarray(structure.grid, dtype=np.float64)
        if structure.default_F == 0.0:
            return grid, lo
    else:
        lo, rng, grid = (0, 0, 0), (0, 0, 0), None
    new_lo = [min(-r, lo[j]) if has else -r for j, r in enumerate(reach)]
    new_hi = [max(r, lo[j] + rng[j] - 1) if has else r for j, r in enumerate(reach)]
    shape = tuple(hi - l0 + 1 for l0, hi in zip(new_lo, new_hi))
    if has and tuple(new_lo) == tuple(lo) and shape == tuple(rng):
        return grid, lo
    out = np.full(shape, float(structure.default_F))
    if has:
        o = [lo[j] - new_lo[j] for j in range(3)]
        out[o[0]:o[0] + rng[0], o[1]:o[1] + rng[1], o[2]:o[2] + rng[2]] = grid
    return out, tuple(new_lo)


def place_table(values, lo_src, target_shape, lo_dst, fill: np.ndarray) -> np.ndarray:
    """``values`` (a table starting at ``lo_src``) on the grid of ``fill`` (starting at
    ``lo_dst``): entries outside ``values``' range keep ``fill``'s."""
    out = np.array(fill, dtype=np.float64, copy=True)
    src = [slice(max(0, lo_dst[j] - lo_src[j]),
                 min(values.shape[j], lo_dst[j] + target_shape[j] - lo_src[j]))
           for j in range(3)]
    dst = [slice(s.start + lo_src[j] - lo_dst[j], s.stop + lo_src[j] - lo_dst[j])
           for j, s in enumerate(src)]
    if all(s.stop > s.start for s in src):
        out[tuple(dst)] = values[tuple(src)]
    return out


#: the largest table the damage model builds (entries; 400 MB of float64)
MAX_TABLE = 50_000_000
#: the table reaches d_min / DMIN_MARGIN: room for spectra (jitter, bandwidth) and
#: the tails of spots beyond the detector's corners
DMIN_MARGIN = 1.2


@dataclass(frozen=True, eq=False)
class DamageSpec:
    """The damage flags, resolved against a run's Config by :meth:`prepare`:
    ``dose_per_frame`` MGy (``-dose``) or ``mu_en`` 1/mm (``-mu_en``, the dose from the
    beam with ``density`` g/cm^3); ``b_per_mgy`` A^2/MGy; ``damaged`` a table read from
    ``-damaged_mtz`` (:class:`nbsim.io.hkl.HKLData`) with ``half_dose`` MGy."""
    dose_per_frame: Optional[float] = None
    mu_en: Optional[float] = None
    density: float = 1.2
    b_per_mgy: float = DEFAULT_B_PER_MGY
    damaged: Optional[object] = None
    half_dose: Optional[float] = None

    def __post_init__(self):
        if (self.dose_per_frame is None) == (self.mu_en is None):
            raise ValueError("-dose: give the dose per frame (-dose MGy) or the crystal's "
                             "absorption (-mu_en 1/mm), one of them")
        if self.mu_en is not None and not (math.isfinite(self.mu_en) and self.mu_en > 0):
            raise ValueError(f"-mu_en: must be > 0 per mm, got {self.mu_en:g}")
        if not (math.isfinite(self.density) and 0.1 <= self.density <= 30):
            raise ValueError(f"-crystal_density: must be in [0.1, 30] g/cm^3, got "
                             f"{self.density:g}")

    def prepare(self, cfg):
        """``(cfg', Damage)``: ``cfg`` with its F table extended to the detector's reach
        (see :func:`extend_table`), and the damage model on that table."""
        import copy
        import dataclasses
        from ..geometry.crystal import resolve_crystal
        from ..inputs.resolution import detector_dmin
        if self.dose_per_frame is not None:
            dose = float(self.dose_per_frame)
        else:
            fluence = cfg.beam.photon_fluence()
            dose = raddose_dose(fluence, cfg.beam.wavelength, self.mu_en, self.density)
            if not dose <= MAX_DOSE:
                raise ValueError(f"-mu_en: the dose per frame from a fluence of "
                                 f"{fluence:.3g} photons/m^2 is {dose:.3g} MGy (at most "
                                 f"{MAX_DOSE:g}); give the beam: -flux, -exposure and "
                                 f"-beamsize, or -fluence")
        Damage(dose, self.b_per_mgy, None, None)            # checks the numbers
        cryst = resolve_crystal(cfg, cfg.beam.wavelength, cfg.beam.beamsize)
        ast = np.concatenate([cryst.a_star, cryst.b_star, cryst.c_star])
        d_min = detector_dmin(cfg) / DMIN_MARGIN
        st = cfg.structure
        real = np.linalg.inv(ast.reshape(3, 3)).T
        size = np.prod([2 * (math.ceil(np.linalg.norm(v) / d_min) + 3) for v in real])
        if size > MAX_TABLE and (st.grid is None or not st.hkls or st.default_F != 0.0):
            raise ValueError(f"radiation damage: a structure-factor table to {d_min:.2f} A "
                             f"would hold {size:.3g} entries (at most {MAX_TABLE:.3g}); "
                             f"give a table covering the detector (-hkl, -mtz) with "
                             f"-default_F 0")
        grid, lo = extend_table(st, ast, d_min)
        out = copy.copy(cfg)
        had_grid = st.grid is not None and bool(st.hkls)
        out.structure = dataclasses.replace(
            st, grid=grid, h_min=int(lo[0]), k_min=int(lo[1]), l_min=int(lo[2]),
            h_range=grid.shape[0], k_range=grid.shape[1], l_range=grid.shape[2],
            hkls=int(st.hkls) if had_grid else int(grid.size),
            # a run without a table did not interpolate: the table must not change that
            interpolate=st.interpolate if had_grid else False)
        damaged = None
        if self.damaged is not None:
            d = self.damaged
            damaged = place_table(np.asarray(d.F, dtype=np.float64),
                                  (d.h_min, d.k_min, d.l_min), grid.shape, lo, grid)
        return out, Damage(dose, self.b_per_mgy, damaged, self.half_dose)

"""Hexagonal ice (Ih) powder rings on nanoBragg's absolute scale (``-ice UM``).

A layer of polycrystalline ice Ih ``thickness`` thick across the beam (its illuminated
volume ``V = thickness x beamsize^2``, the beam's cross-section clipping it as
nonBragg.c clips its sample) is a powder of ``N_c = V / V_c`` unit cells.  Its rings are
rendered by the amorphous-scattering kernel (:mod:`.pixel`, CPU and CUDA) from an
*effective* structure-factor table ``F_eff(sin(theta)/lambda)`` (:func:`ice_table`), so
every pixel gets nanoBragg's per-pixel factors (solid angle, Kahn polarisation, sources,
sub-pixels, per panel) exactly as the -stol background does::

    photons/pixel = r_e^2 * fluence * N_c * F_eff^2(s) * polarisation * Omega_pixel

Structure (P6_3/mmc, a = 4.497 A, c = 7.322 A, ~100 K; O at (1/3, 2/3, 0.0625), Wyckoff
4f; Röttger et al. 1994, Acta Cryst. B50, 644): gemmi expands the oxygen over the space
group (4 per cell).  Each water scatters as ``f_O(s) + 2 f_H(s)`` (International Tables
Vol. C form factors through gemmi) at the oxygen position: the disordered, half-occupied
hydrogens sit within 1 A of it, so their electrons are put on the oxygen; no
Debye-Waller factor.  ``F(hkl) = sum_j f(s) exp(2 pi i h.x_j)`` over the cell's 4
molecules.

Scale (the powder average of nanoBragg's ``|F|^2 |S(q)|^2``): for a crystal of ``N_c``
cells ``|S(q)|^2 -> (N_c / V_c) sum_G delta^3(q - G)`` (q = (s - s0)/lambda, 1/m);
averaged over orientations ``delta^3(q - G) -> delta(|q| - |G|) / (4 pi |G|^2)``.  Per
cell and steradian, therefore::

    F_eff^2(|q|) = sum_G |F_G|^2 / (4 pi |G|^2 V_c) * g(|q| - |G|)

summed over every reciprocal-lattice point G (the multiplicity of a ring is its
number of points), where ``g`` is the normalised ring profile (``delta`` for an ideal
powder).  Integrated over a whole ring this is Warren's powder formula (X-ray
Diffraction, 1969, eq. 4.21), ``P = r_e^2 fluence lambda^3 V m |F|^2 P(2 theta) /
(4 V_c^2 sin theta)``: the Lorentz factor of a powder, ``1/(4 sin theta)`` per ring (or
``1/(sin theta sin 2 theta)`` per unit of 2 theta), comes out of the orientation
average; the polarisation and the pixel's solid angle are the kernel's.

Ring profile: a Gaussian in ``|q|`` of full width at half maximum ``K / L`` (Scherrer,
K = 0.9, crystallite size ``L``, default 100 nm): the same width in ``|q|`` for every
ring, ``Delta(2 theta) = K lambda / (L cos theta)`` on the detector.  The table samples
it every ``sigma / 4`` (in sin(theta)/lambda), and the kernel's cubic interpolation of
``F_eff`` (the square root of a sum of Gaussians is smooth) errs by < 1e-3 of a ring's
peak; its overshoot below 0 far from rings is clipped to 0.  Rings narrower than a
pixel are point-sampled at the pixel centre: use ``-oversample`` (the kernel's
sub-pixels) to integrate them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import AVOGADRO, AmorphousSample, StolTable, stol_table

__all__ = ["ICE_CELL", "ICE_O_SITE", "ICE_SPACE_GROUP", "SCHERRER_K", "IceRings",
           "ice_rings", "ice_table", "ice_sample", "ICE_MW_CELL"]

#: Ice Ih at ~100 K: a, b, c (Angstrom), alpha, beta, gamma (deg)
ICE_CELL = (4.497, 4.497, 7.322, 90.0, 90.0, 120.0)
ICE_SPACE_GROUP = "P 63/m m c"
ICE_O_SITE = (1.0 / 3.0, 2.0 / 3.0, 0.0625)
#: Scherrer constant (spherical crystallites, FWHM)
SCHERRER_K = 0.9
#: g/mol of one unit cell (4 H2O)
ICE_MW_CELL = 4 * 18.015
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass
class IceRings:
    """The distinct rings of ice Ih: ``d`` (Angstrom, decreasing), ``multiplicity`` (number
    of reciprocal-lattice points), ``F2`` (|F|^2 of one point, electrons^2) and ``hkl``
    (one representative each); ``cell_volume`` in Angstrom^3."""

    d: np.ndarray
    multiplicity: np.ndarray
    F2: np.ndarray
    hkl: np.ndarray
    cell_volume: float


def _structure():
    import gemmi
    a, b, c, al, be, ga = ICE_CELL
    x, y, z = ICE_O_SITE
    cif = (f"data_ice_Ih\n_cell_length_a {a}\n_cell_length_b {b}\n_cell_length_c {c}\n"
           f"_cell_angle_alpha {al}\n_cell_angle_beta {be}\n_cell_angle_gamma {ga}\n"
           f"_symmetry_space_group_name_H-M '{ICE_SPACE_GROUP}'\n"
           "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n"
           f"_atom_site_fract_y\n_atom_site_fract_z\nO1 O {x!r} {y!r} {z!r}\n")
    return gemmi.make_small_structure_from_block(gemmi.cif.read_string(cif).sole_block())


def ice_rings(d_min: float) -> IceRings:
    """The rings of ice Ih with d >= ``d_min`` (Angstrom), strongest contributions with
    |F|^2 > 1e-6 of the largest (systematic absences drop out)."""
    import gemmi
    if not d_min > 0:
        raise ValueError(f"d_min must be > 0, got {d_min}")
    st = _structure()
    sites = np.array([[s.fract.x, s.fract.y, s.fract.z]
                      for s in st.get_all_unit_cell_sites()])
    cell = st.cell
    hmax, kmax, lmax = (int(math.ceil(v / d_min)) for v in (cell.a, cell.b, cell.c))
    # a hexagonal cell: |h|, |k| <= a / d_min / sin(gamma) bounds the sphere
    hmax = int(math.ceil(hmax / math.sin(math.radians(cell.gamma))))
    kmax = hmax
    h, k, l_ = np.meshgrid(np.arange(-hmax, hmax + 1), np.arange(-kmax, kmax + 1),
                           np.arange(-lmax, lmax + 1), indexing="ij")
    hkl = np.stack([h.ravel(), k.ravel(), l_.ravel()], axis=1)
    hkl = hkl[np.any(hkl != 0, axis=1)]
    inv_d2 = np.asarray(cell.calculate_1_d2_array(hkl.astype(np.int32)), dtype=np.float64)
    keep = inv_d2 <= 1.0 / d_min ** 2
    hkl, inv_d2 = hkl[keep], inv_d2[keep]
    stol2 = inv_d2 / 4.0
    f_mol = (np.array([gemmi.Element("O").it92.calculate_sf(float(v)) for v in stol2])
             + 2.0 * np.array([gemmi.Element("H").it92.calculate_sf(float(v)) for v in stol2]))
    phase = 2.0 * np.pi * (hkl.astype(np.float64) @ sites.T)          # (n, 4)
    F = f_mol * np.exp(1j * phase).sum(axis=1)
    F2 = np.abs(F) ** 2
    if F2.size == 0:                    # no ring beyond d_min
        return IceRings(d=np.zeros(0), multiplicity=np.zeros(0, np.int64), F2=np.zeros(0),
                        hkl=np.zeros((0, 3), np.int64), cell_volume=float(cell.volume))
    strong = F2 > 1e-6 * F2.max()
    hkl, inv_d2, F2 = hkl[strong], inv_d2[strong], F2[strong]
    # rings: points of the same d (to 1e-9 relative) and |F|^2 of one point
    key = np.round(inv_d2 * 1e9).astype(np.int64)
    uniq, first, inv, counts = np.unique(key, return_index=True, return_inverse=True,
                                         return_counts=True)
    F2_sum = np.bincount(inv.ravel(), weights=F2)
    d = 1.0 / np.sqrt(inv_d2[first])
    order = np.argsort(-d)
    return IceRings(d=d[order], multiplicity=counts[order],
                    F2=(F2_sum / counts)[order], hkl=hkl[first][order],
                    cell_volume=float(cell.volume))


#: the most points an ice table may have (two float64 arrays)
MAX_TABLE_POINTS = 5_000_000


def ice_table(wavelength_min: float, crystallite: float = 100e-9,
              stol_max: float = None) -> StolTable:
    """The effective structure-factor table of ice Ih powder (module doc): sin(theta)/
    lambda in 1/m from 0 to ``stol_max`` (default 1/``wavelength_min``: backscattering
    of the shortest wavelength, m) and ``F_eff`` (dimensionless, per unit cell);
    ``crystallite``: the crystallite size L (m) setting the ring width.  ValueError when
    the table would exceed :data:`MAX_TABLE_POINTS`."""
    if not (wavelength_min > 0 and crystallite > 0):
        raise ValueError("wavelength and crystallite size must be > 0")
    if stol_max is None or not 0 < stol_max <= 1.0 / wavelength_min:
        stol_max = 1.0 / wavelength_min                   # 1/m
    sigma_q = SCHERRER_K / crystallite / _FWHM_PER_SIGMA  # |q| in 1/m
    sigma_s = sigma_q / 2.0                               # in sin(theta)/lambda
    step = sigma_s / 4.0
    stol_max += 8.0 * sigma_s                             # a ring's tail at the edge
    npts = int(math.ceil(stol_max / step)) + 8
    if npts > MAX_TABLE_POINTS:
        raise ValueError(f"the ice rings' table would need {npts} points: crystallites of "
                         f"{crystallite * 1e9:g} nm give rings too sharp to sample to "
                         f"sin(theta)/lambda = {stol_max * 1e-10:.3g}/A")
    stol = np.arange(npts) * step                         # 1/m
    rings = ice_rings(1e10 / (2.0 * stol_max))
    v_cell = rings.cell_volume * 1e-30                    # m^3
    q = 2.0 * stol
    F2 = np.zeros(npts)
    norm = 1.0 / (sigma_q * math.sqrt(2.0 * math.pi))     # g's peak, m
    reach = 8.0 * sigma_q
    for d_A, m, f2 in zip(rings.d, rings.multiplicity, rings.F2):
        G = 1e10 / d_A                                    # |G|, 1/m
        lo = max(0, int((G - reach) / (2 * step)))
        hi = min(npts, int((G + reach) / (2 * step)) + 2)
        x = (q[lo:hi] - G) / sigma_q
        F2[lo:hi] += (m * f2 / (4.0 * math.pi * G * G * v_cell)) * norm * np.exp(-0.5 * x * x)
    return stol_table(stol, np.sqrt(F2), f"ice Ih powder, crystallite {crystallite * 1e9:g} nm")


def ice_sample(thickness: float, beamsize: float, fluence: float, polarization: float,
               nopolar: bool) -> AmorphousSample:
    """The amorphous-kernel sample of an ice layer ``thickness`` (m) across a beam
    ``beamsize`` (m) wide and high: unit cells as its 'molecules' (density and molecular
    weight of one cell, so that molecules = V / V_c)."""
    a, _, c, _, _, gamma = ICE_CELL
    v_cell = a * a * c * math.sin(math.radians(gamma)) * 1e-30   # hexagonal cell, m^3
    density = ICE_MW_CELL / (AVOGADRO * v_cell)           # g/m^3 (0.93 g/cm^3)
    return AmorphousSample(thickness=thickness, width=beamsize, height=beamsize, density=density,
                           molecular_weight=ICE_MW_CELL, fluence=fluence, beamsize=beamsize,
                           polarization=polarization, nopolar=nopolar)

"""The kernel argument bundle: the plan's arrays and constants every render kernel reads,
as one argument.

Built by the Plan (:meth:`nbsim.plan.Plan.kernel_arrays`), passed as is to the CPU
kernels (general, lanes float64 and float32, carryover pre-pass) and, with device arrays in
place of the host arrays, to the CUDA kernel.  A ``NamedTuple`` is a Numba tuple type: its
fields are typed one by one (no boxing, no indirection; reading ``ka.geom`` inside a kernel
costs what reading a separate argument costs), and a kernel compiled for it is cached on
disk like any other (the field types are part of the signature).

Adding a plan quantity means adding one field here and filling it in ``Plan.kernel_arrays``;
no kernel signature changes.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class KernelArrays(NamedTuple):
    """Plan quantities the kernels read.  Lengths in metres, wavelengths in metres,
    cell vectors in metres (real space), reciprocal cell in 1/Angstrom."""
    geom: np.ndarray          # (25,) float64: pix0(3) fdet(3) sdet(3) odet(3) beam(3)
    #                           polar_axis(3) distance close_distance pixel_size thickstep
    #                           mu kahn dmin
    subpixel_size: float      # m
    oversample: int           # sub-pixels per pixel edge
    thicksteps: int           # sensor layers
    fpixels: int              # detector row length (pixels)
    mask: np.ndarray          # flat uint8, 1 = render (length 1 without a mask)
    src_dir: np.ndarray       # (nsrc, 3) unit vectors sample -> source
    src_lambda: np.ndarray    # (nsrc,) m
    cells: np.ndarray         # (2, ncell, 9): a, b, c per (phi, domain); table 0 = the run's
    #                           first sub-path (c-parity carryover), table 1 = all others
    ncell: int                # phisteps * mosaic domains
    ast: np.ndarray           # (9,) a*, b*, c* (1/A)
    Fgrid: np.ndarray         # (h_range, k_range, l_range) structure factors
    fgrid_meta: np.ndarray    # (9,) int64: h_min k_min l_min h_max k_max l_max ranges(3)
    default_F: float
    hkls: int                 # 0: no grid (default_F everywhere)
    lattice: np.ndarray       # (4,) Na Nb Nc fudge
    scalars: np.ndarray       # (3,) float64: I_bg, scale (= r_e^2 fluence / steps), steps
    panel_geom: np.ndarray    # (panels, 26): per panel geom's 25 numbers with the panel's
    #                           pix0, fdet, sdet, odet, distances, pixel size, thickstep,
    #                           then the sub-pixel size (nbsim.geometry.panels); one row
    #                           (= geom, subpixel_size) for a single flat detector
    panel_rows: int           # slow pixels per panel: the kernels' raster is the panels
    #                           stacked along slow, row r is panel r // panel_rows


def crystal_in(ka: KernelArrays, dtype) -> KernelArrays:
    """``ka`` with the crystal quantities (cell tables, reciprocal cell, structure factors,
    lattice constants) in ``dtype``; the geometry and the scalars stay float64."""
    if ka.cells.dtype == dtype:
        return ka
    c = lambda a: np.ascontiguousarray(a, dtype=dtype)  # noqa: E731
    return ka._replace(cells=c(ka.cells), ast=c(ka.ast), Fgrid=c(ka.Fgrid),
                       lattice=c(ka.lattice), default_F=float(ka.default_F))


#: the offset and width of one Miller index in a packed slot key (21 bits each, signed
#: indices -2^20 <= h < 2^20): key = (h + OFF) << 42 | (k + OFF) << 21 | (l + OFF)
HKL_BITS = 21
HKL_OFFSET = 1 << 20
EMPTY_KEY = -1


class TruthSlots(NamedTuple):
    """Per rendered pixel (row n = position in the kernel's pixel index), up to K
    reflections' shares of the pixel's photons, written by the per-pixel body when
    ``KernelOptions.truth`` is set (docs/truth.md).  A dummy of one row is passed
    otherwise (never touched)."""
    key: np.ndarray           # (n, K) int64 packed nearest lattice point (h0, k0, l0);
    #                           EMPTY_KEY = unused slot
    photons: np.ndarray       # (n, K) float64 photons of the pixel from that hkl (every
    #                           factor of the pixel's value applied)
    phase: np.ndarray         # (n, K) float64 the same photons times the rotation
    #                           fraction of their phi step within the frame (0..1)
    overflow: np.ndarray      # (n,) uint8: 1 = more than K reflections contributed
    cell_phase: np.ndarray    # (ncell,) float64 rotation fraction of each (phi, domain)
    #                           cell: phi step index * phistep / osc (0 for stills)


def truth_slots(npix: int, nslots: int, cell_phase: np.ndarray) -> TruthSlots:
    """Empty slots for ``npix`` pixels, ``nslots`` each."""
    return TruthSlots(key=np.full((npix, nslots), EMPTY_KEY, dtype=np.int64),
                      photons=np.zeros((npix, nslots)), phase=np.zeros((npix, nslots)),
                      overflow=np.zeros(npix, dtype=np.uint8),
                      cell_phase=np.ascontiguousarray(cell_phase, dtype=np.float64))


def no_truth_slots() -> TruthSlots:
    """The placeholder passed when ``opts.truth`` is off (one row, one slot)."""
    return truth_slots(1, 1, np.zeros(1))

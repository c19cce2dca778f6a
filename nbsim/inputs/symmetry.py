"""P1 expansion: every reflection the crystal diffracts gets its amplitude.

nanoBragg looks structure factors up in a P1 grid and never applies symmetry, so a file
holding an asymmetric unit must be expanded before the engine sees it.  For a space-group
operator (R, t) acting on fractional coordinates, x' = R x + t, the reflection h (a row
vector) maps to h' = h R with |F(h')| = |F(h)| (the translation only changes the phase;
centring operators have R = 1 and add nothing).  Unless the data are anomalous, Friedel's
law adds -h' with the same amplitude.

Anomalous data (F(+) at h, F(-) at -h): a proper rotation (det R = +1) keeps the hand,
so F(+) goes to h R and F(-) to -h R; an improper operator (det R = -1, only in
non-chiral groups) exchanges them: F(-) goes to h R and F(+) to -h R.  Where two
placements land on the same index (a reflection on a symmetry element, a centric
reflection whose two measurements differ) the first wins, in this order: F(+) under
each operator in gemmi's order (identity first), then F(-) -- so the value the file
gives for (h, k, l) itself is always kept.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..io.hkl import HKLData, hkl_from_entries
from .reflections import Reflections

__all__ = ["rotations_of", "expand_with_rotations", "expand_to_p1", "p1_hkl_data"]


def rotations_of(space_group: str) -> np.ndarray:
    """The rotation parts (n, 3, 3) int64 of a space group's operators (centring left
    out), from gemmi's tables.  ``space_group``: an H-M name (gemmi's extended form,
    ``SpaceGroup.xhm()``, names every setting unambiguously); a Hall symbol is tried
    when no name matches."""
    from ._gemmi import import_gemmi
    gemmi = import_gemmi("space-group symmetry")
    sg = gemmi.find_spacegroup_by_name(space_group)
    if sg is None:
        try:
            sg = gemmi.find_spacegroup_by_ops(gemmi.symops_from_hall(space_group))
        except (RuntimeError, ValueError):
            sg = None
    if sg is None:
        raise ValueError(f"unknown space group {space_group!r}")
    ops = sg.operations()
    den = 24          # gemmi's Op.DEN: rotations are stored as integers x 24
    rots = np.array([op.rot for op in ops.sym_ops], dtype=np.int64)
    if np.any(rots % den):
        raise ValueError(f"space group {space_group!r}: non-integral rotation matrix")
    return rots // den


def _unique_first(h, k, l, F) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Drop repeated indices, keeping the first occurrence (order of first appearance)."""
    # one int64 key per index (a 1-D unique is ~10x faster than unique(axis=0))
    lo = [int(x.min()) for x in (h, k, l)]
    nk, nl = int(k.max()) - lo[1] + 1, int(l.max()) - lo[2] + 1
    key = ((h - lo[0]) * nk + (k - lo[1])) * nl + (l - lo[2])
    _, first = np.unique(key, return_index=True)
    first.sort()
    return h[first], k[first], l[first], F[first]


def expand_with_rotations(h, k, l, F, rotations, *, friedel: bool = True,
                          F_minus: Optional[np.ndarray] = None):
    """P1 list ``(h, k, l, F)`` from an asymmetric list and the rotation matrices.

    ``rotations``: (n, 3, 3) integer matrices R of x' = R x + t.  ``friedel``: add -h
    for every generated h (ignored for anomalous data, given by ``F_minus``, which
    already carries the mates; NaN entries of ``F_minus`` fall back to F).
    """
    hkl = np.stack([np.asarray(h, np.int64), np.asarray(k, np.int64),
                    np.asarray(l, np.int64)], axis=1)
    F = np.asarray(F, dtype=np.float64)
    R = np.asarray(rotations, dtype=np.int64)
    # h' = h R for every operator: (n_ops, n_refl, 3)
    images = np.einsum("ri,nij->nrj", hkl, R)
    det = np.rint(np.linalg.det(R.astype(np.float64))).astype(np.int64)
    parts_hkl, parts_F = [], []
    if F_minus is not None:
        Fm = np.asarray(F_minus, dtype=np.float64)
        Fm = np.where(np.isnan(Fm), F, Fm)
        Fp = np.where(np.isnan(F), Fm, F)
        for n in range(R.shape[0]):             # F(+) placements, operator order
            parts_hkl.append(images[n] if det[n] > 0 else -images[n])
            parts_F.append(Fp)
        for n in range(R.shape[0]):             # then F(-)
            parts_hkl.append(-images[n] if det[n] > 0 else images[n])
            parts_F.append(Fm)
    else:
        parts_hkl.append(images.reshape(-1, 3))
        parts_F.append(np.tile(F, R.shape[0]))
        if friedel:
            parts_hkl.append(-images.reshape(-1, 3))
            parts_F.append(np.tile(F, R.shape[0]))
    allhkl = np.concatenate(parts_hkl)
    allF = np.concatenate(parts_F)
    keep = ~np.isnan(allF)
    allhkl, allF = allhkl[keep], allF[keep]
    if allF.size == 0:
        return allhkl[:, 0], allhkl[:, 1], allhkl[:, 2], allF
    return _unique_first(allhkl[:, 0].copy(), allhkl[:, 1].copy(), allhkl[:, 2].copy(), allF)


def expand_to_p1(refl: Reflections, *, anomalous: bool = False):
    """P1 list ``(h, k, l, F)`` of a :class:`Reflections` (see the module doc).

    ``anomalous``: no Friedel mates are generated for a mean-amplitude column (data with
    ``F_minus`` always use their own mates)."""
    if refl.space_group is None:
        raise ValueError(f"{refl.source}: no space group")
    rots = rotations_of(refl.space_group)
    return expand_with_rotations(refl.h, refl.k, refl.l, refl.F, rots,
                                 friedel=not anomalous, F_minus=refl.F_minus)


def p1_hkl_data(refl: Reflections, *, anomalous: bool = False,
                default_F: float = 0.0) -> Tuple[HKLData, tuple]:
    """The engine's grid (:class:`HKLData`) and the P1 list ``(h, k, l, F)`` behind it.

    Reflections absent from the expanded list hold ``default_F`` (nanoBragg's rule).
    ``HKLData.hkls`` counts the distinct P1 reflections."""
    p1 = expand_to_p1(refl, anomalous=anomalous)
    if p1[0].size == 0:
        raise ValueError(f"{refl.source}: no reflections with a value")
    return hkl_from_entries(*p1, default_F=default_F), p1

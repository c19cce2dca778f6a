"""Python API: the structure-factor grid from each source, ready for a Config.

>>> from nbsim.inputs import mtz_structure_factors
>>> sf = mtz_structure_factors("data.mtz")            # FP (or F, I, ...), expanded to P1
>>> cfg = nbsim.Config(); sf.apply_to(cfg)            # grid, and the cell if cfg has none
>>> img = nbsim.Simulator(cfg).run()

The same expansion as the command line (:mod:`nbsim.inputs.symmetry`), so the images
are the same.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

from ..io.hkl import HKLData
from .reflections import Reflections

__all__ = ["StructureFactors", "mtz_structure_factors", "sfcif_structure_factors",
           "model_structure_factors", "structure_factors_from_reflections"]


@dataclass
class StructureFactors:
    """An expanded P1 grid with the cell and space group it came with."""
    grid: HKLData
    p1: tuple                     # (h, k, l, F): the distinct P1 reflections
    cell: Tuple[float, float, float, float, float, float]   # A, deg
    space_group: Optional[str]    # extended Hermann-Mauguin name (gemmi)
    source: str

    def apply_to(self, cfg, *, set_cell: bool = True):
        """Put the grid into ``cfg.structure``; with ``set_cell`` also the file's cell
        into ``cfg.crystal.cell`` when neither a cell nor an A matrix is set."""
        s = cfg.structure
        g = self.grid
        s.grid = g.F
        s.h_min, s.k_min, s.l_min = g.h_min, g.k_min, g.l_min
        s.h_range, s.k_range, s.l_range = g.h_range, g.k_range, g.l_range
        s.hkls = g.hkls
        s.default_F = g.default_F
        c = cfg.crystal
        if set_cell and c.cell is None and c.a_star_matrix is None:
            a, b, cc, al, be, ga = self.cell
            c.cell = (a * 1e-10, b * 1e-10, cc * 1e-10, math.radians(al), math.radians(be),
                      math.radians(ga))
        return cfg


def structure_factors_from_reflections(refl: Reflections, *, anomalous: bool = False,
                                       default_F: float = 0.0) -> StructureFactors:
    """Expand a :class:`Reflections` to P1 (Friedel mates unless ``anomalous``)."""
    from .symmetry import p1_hkl_data
    grid, p1 = p1_hkl_data(refl, anomalous=anomalous, default_F=default_F)
    return StructureFactors(grid, p1, refl.cell, refl.space_group, refl.source)


def mtz_structure_factors(path, *, label: Optional[str] = None, anomalous: bool = False,
                          default_F: float = 0.0) -> StructureFactors:
    """An MTZ file's amplitudes in P1 (column rule: :mod:`nbsim.inputs.mtz`)."""
    from .mtz import read_mtz
    return structure_factors_from_reflections(
        read_mtz(path, label=label, anomalous=anomalous), anomalous=anomalous,
        default_F=default_F)


def sfcif_structure_factors(path, *, label: Optional[str] = None, anomalous: bool = False,
                            default_F: float = 0.0) -> StructureFactors:
    """An SF-mmCIF file's amplitudes (first block) in P1."""
    from .sfcif import read_sfcif
    return structure_factors_from_reflections(
        read_sfcif(path, label=label, anomalous=anomalous), anomalous=anomalous,
        default_F=default_F)


def model_structure_factors(path, d_min: float, *, solvent=None, method: str = "auto",
                            default_F: float = 0.0) -> StructureFactors:
    """|Fcalc| of a PDB / mmCIF model to ``d_min`` A, in P1 (:mod:`nbsim.inputs.model`)."""
    from .model import fcalc_from_file
    return structure_factors_from_reflections(
        fcalc_from_file(path, d_min, solvent=solvent, method=method), default_F=default_F)

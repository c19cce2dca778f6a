"""SF-mmCIF files (``-sfcif FILE``) -> :class:`Reflections`.

The first data block is read.  Its ``_refln`` (or ``_diffrn_refln``) columns are mapped
to MTZ column names by gemmi's own mmCIF -> MTZ conversion (the table of
``gemmi cif2mtz``: F_meas_au -> FP, intensity_meas -> IMEAN, F_calc -> FC,
pdbx_F_plus / pdbx_F_minus -> F(+) / F(-), pdbx_I_plus / pdbx_I_minus -> I(+) / I(-),
...), and the MTZ rule of :mod:`nbsim.inputs.mtz` chooses the column.
``-mtz_label`` may name the MTZ name or the mmCIF tag (``F_meas_au`` or
``_refln.F_meas_au``).  Cell and space group come from the block (``_cell``,
``_symmetry`` / ``_space_group``).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..io.errors import FormatError
from ._gemmi import import_gemmi
from .mtz import reflections_from_mtz
from .reflections import Reflections

__all__ = ["read_sfcif"]


def read_sfcif(path, *, label: Optional[str] = None, anomalous: bool = False) -> Reflections:
    """Read the first block of an SF-mmCIF file (see the module doc)."""
    gemmi = import_gemmi("-sfcif (SF-mmCIF files)")
    path = str(path)
    with open(path, "rb") as fh:          # FileNotFoundError / OSError for the caller
        head = fh.read(4096)
    if b"data_" not in head:
        raise FormatError(f"{path}: not an mmCIF file (no data_ block)")
    try:
        doc = gemmi.cif.read(path)
    except (RuntimeError, ValueError) as e:
        raise FormatError(f"{path}: not a readable mmCIF file ({e})") from None
    try:
        blocks = gemmi.as_refln_blocks(doc)
    except (RuntimeError, ValueError) as e:
        raise FormatError(f"{path}: {e}") from None
    if len(blocks) == 0 or blocks[0].default_loop is None:
        raise FormatError(f"{path}: the first data block has no _refln loop "
                          f"(not an SF-mmCIF file)")
    rblock = blocks[0]
    if rblock.spacegroup is None:
        raise FormatError(f"{path}: block {rblock.block.name}: no space group "
                          f"(_symmetry.space_group_name_H-M or _space_group.name_H-M_full)")
    if rblock.cell.a <= 1.0:
        raise FormatError(f"{path}: block {rblock.block.name}: no unit cell (_cell)")
    try:
        mtz = gemmi.CifToMtz().convert_block_to_mtz(rblock)
    except (RuntimeError, ValueError) as e:
        raise FormatError(f"{path}: {e}") from None
    if label is not None and label not in mtz.column_labels():
        tag = label.split(".", 1)[1] if label.startswith("_") and "." in label else label
        tags = list(rblock.column_labels())
        if tag in tags:
            # the mmCIF tag of a column: the MTZ column gemmi made from it holds the
            # same numbers in the same rows
            values = rblock.make_float_array(tag)
            for mc in mtz.columns:
                arr = np.asarray(mc.array, dtype=np.float64)
                if mc.type not in ("H",) and arr.shape == values.shape and \
                        np.array_equal(np.isnan(arr), np.isnan(values)) and \
                        np.allclose(arr[~np.isnan(arr)], values[~np.isnan(values)],
                                    rtol=1e-6, atol=0):
                    label = mc.label
                    break
            else:
                raise FormatError(f"{path}: mmCIF column {tag!r} has no MTZ counterpart "
                                  f"in gemmi's mapping (columns: {' '.join(tags)})")
        else:
            raise FormatError(f"{path}: no column {label!r} (mmCIF columns: "
                              f"{' '.join(tags)}; as MTZ: {' '.join(mtz.column_labels())})")
    return reflections_from_mtz(mtz, label=label, anomalous=anomalous, source=path)

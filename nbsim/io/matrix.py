"""MOSFLM orientation matrix files (``-mat``), read as nanoBragg.c does (ll. 1878-1895).

C reads the first nine numbers with three ``fscanf("%lg%lg%lg", ...)`` calls::

    line 1 -> a_star[x], b_star[x], c_star[x]
    line 2 -> a_star[y], b_star[y], c_star[y]
    line 3 -> a_star[z], b_star[z], c_star[z]

i.e. the *columns* of the 3x3 matrix in the file are a*, b*, c* and its rows are the
x, y, z components (whitespace, not line breaks, separates numbers; everything after
the ninth number -- the U matrix and cell of a real MOSFLM file -- is ignored).  A
MOSFLM A matrix is wavelength-scaled (dimensionless, lambda*a*); C then rescales each
vector by ``1e-10/lambda0`` (lambda0 in metres) giving Angstrom^-1:
``a_star = a_star_file * 1e-10 / lambda0``.  :func:`read_mosflm_matrix` returns the
values *before* that rescaling.  C silently keeps zeros for missing numbers; we raise.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .cformat import float_prefix
from .errors import FormatError

__all__ = ["read_mosflm_matrix"]


def read_mosflm_matrix(path):
    """``(a_star, b_star, c_star)``: float64 3-vectors exactly as C assigns them, unscaled."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise FormatError(f"{path}: unable to open: {e.strerror}") from None
    vals = []
    pos = 0
    while len(vals) < 9:
        v, pos = float_prefix(raw, pos)
        if v is None:
            break
        vals.append(v)
    if len(vals) < 9:
        line = raw[:pos].count(b"\n") + 1
        raise FormatError(f"{path}:{line}: expected 9 numbers (3x3 A matrix), found "
                          f"{len(vals)}")
    m = np.array(vals, dtype=np.float64).reshape(3, 3)     # m[row=x/y/z, col=a*/b*/c*]
    return m[:, 0].copy(), m[:, 1].copy(), m[:, 2].copy()

"""Structure-factor tables of amorphous material vs sin(theta)/lambda (nonBragg.c ``-stol``).

File: text, one point per line, ``stol F`` (sin(theta)/lambda in 1/Angstrom and the
structure factor in electrons), columns separated by any of `` \\t,;:!``, blank lines
skipped, extra columns ignored -- nonBragg.c's ``read_text_file``.  ``-4stol`` files give
4 sin(theta)/lambda, ``-Q`` files Q = 4 pi sin(theta)/lambda, both in 1/Angstrom.

The table nonBragg.c interpolates is padded for its four-point cubic: two sentinels below
(-1e99, -1e98, with the first F) and two above (1e98, 1e99, with the last F); a missing
(NaN) F counts as 0.  Where C reads garbage (a word parsed by ``atof`` as 0, a line with
one number) this reader stops with :class:`~nbsim.io.errors.FormatError` naming the
line; the sin(theta)/lambda values must increase (nonBragg.c's nearest-point search
assumes it).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io.errors import FormatError

__all__ = ["StolTable", "read_stol", "stol_table", "STOL_UNITS"]

#: file flavour -> multiplier to sin(theta)/lambda in 1/m (nonBragg.c's stol_file_mult)
STOL_UNITS = {"stol": 1e10, "4stol": 1e10 / 4, "Q": 1e10 / math.pi / 4}

_SPLIT = re.compile(r"[ \t,;:!]+")
_NUM = re.compile(r"^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|nan|NaN|NAN)$")


@dataclass
class StolTable:
    """Padded table: ``stol`` in 1/m (sin(theta)/lambda), ``F`` in electrons."""

    stol: np.ndarray
    F: np.ndarray
    points: int          # lines read from the file
    source: str = ""


def stol_table(stol_per_m, F, source: str = "") -> StolTable:
    """Pad raw points (stol in 1/m, F) as nonBragg.c does."""
    s = np.asarray(stol_per_m, dtype=np.float64).ravel()
    f = np.asarray(F, dtype=np.float64).ravel().copy()
    if s.size == 0 or s.size != f.size:
        raise FormatError(f"{source or 'stol table'}: needs matching, non-empty stol and F")
    good = ~np.isnan(f)
    if not good.any():
        raise FormatError(f"{source or 'stol table'}: no structure factor values")
    f_low = f[good][0]
    f_high = f[good][-1]
    f[~good] = 0.0
    stol = np.concatenate(([-1e99, -1e98], s, [1e98, 1e99]))
    F = np.concatenate(([f_low, f_low], f, [f_high, f_high]))
    return StolTable(stol, F, int(s.size), source)


def read_stol(path, flavour: str = "stol") -> StolTable:
    """Read a ``.stol`` file (``flavour`` 'stol', '4stol' or 'Q') into a padded table."""
    if flavour not in STOL_UNITS:
        raise ValueError(f"stol flavour must be one of {sorted(STOL_UNITS)}, got {flavour!r}")
    path = Path(path)
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as e:
        raise FormatError(f"{path}: {e.strerror or e}") from None
    xs, fs = [], []
    for n, line in enumerate(text.splitlines(), 1):
        toks = [t for t in _SPLIT.split(line.strip()) if t]
        if not toks:
            continue
        if len(toks) < 2 or not (_NUM.match(toks[0]) and _NUM.match(toks[1])):
            raise FormatError(f"{path} line {n}: expected two numbers (sin(theta)/lambda and F), "
                              f"got {line.strip()[:60]!r}")
        x, f = float(toks[0]), float(toks[1])
        if math.isnan(x):
            raise FormatError(f"{path} line {n}: sin(theta)/lambda is not a number")
        if xs and not x > xs[-1]:
            raise FormatError(f"{path} line {n}: sin(theta)/lambda values must increase "
                              f"({x!r} after {xs[-1]!r})")
        xs.append(x)
        fs.append(f)
    if not xs:
        raise FormatError(f"{path}: no data")
    mult = STOL_UNITS[flavour]
    return stol_table(np.array(xs) * mult, np.array(fs), str(path))

"""``Fdump.bin``: nanoBragg's cache of the structure-factor grid.

Writer (C ll. 2226-2240), after reading an ``-hkl`` file::

    fprintf("%d %d %d %d %d %d\\n\\f", h_min, h_max, k_min, k_max, l_min, l_max)
    for h0 in 0..h_range (inclusive), k0 in 0..k_range (inclusive):
        fwrite(Fhkl[h0][k0], sizeof(double), l_range+1)

i.e. ``(h_range+1)*(k_range+1)*(l_range+1)`` native (little-endian) float64 values in
C order, where the last plane of each axis is C's zero padding.

Reader (C ll. 2105-2126), used when no ``-hkl`` is given and the dump file opens:
``fscanf("%d%d%d%d%d%d\\n\\f")`` then the same ``fread`` loop; ``hkls`` becomes
``h_range*k_range*l_range``.  Quirk: the ``\\n`` in that format skips *all* whitespace,
so when the first data bytes happen to be whitespace characters (0x09-0x0d, 0x20) C eats
them and reads shifted values.  :func:`read_fdump` reads the format as written (skips
exactly the ``\\n\\f``); ``c_whitespace_quirk=True`` reproduces C's reading.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ._atomic import atomic_open
from .errors import FormatError
from .hkl import HKLData

__all__ = ["write_fdump", "read_fdump", "fdump_bytes"]

_HEAD_RE = re.compile(rb"\s*([+-]?\d+)\s+([+-]?\d+)\s+([+-]?\d+)\s+([+-]?\d+)\s+([+-]?\d+)"
                      rb"\s+([+-]?\d+)")
_C_SPACE = b" \t\n\v\f\r"


def fdump_bytes(hkl: HKLData) -> bytes:
    """The exact bytes C writes for this grid (zero padding planes included)."""
    hr, kr, lr = hkl.h_range, hkl.k_range, hkl.l_range
    grid = np.zeros((hr + 1, kr + 1, lr + 1), dtype="<f8")
    grid[:hr, :kr, :lr] = hkl.F
    head = ("%d %d %d %d %d %d\n\f" % (hkl.h_min, hkl.h_max, hkl.k_min, hkl.k_max,
                                        hkl.l_min, hkl.l_max)).encode()
    return head + grid.tobytes()


def write_fdump(path, hkl: HKLData) -> None:
    """Write ``Fdump.bin`` in C's format (atomically)."""
    with atomic_open(path, "wb") as fh:
        fh.write(fdump_bytes(hkl))


def read_fdump(path, *, default_F: float = 0.0, c_whitespace_quirk: bool = False) -> HKLData:
    """Read an ``Fdump.bin`` file into :class:`HKLData` (padding planes dropped).

    ``default_F`` is only recorded (C uses it for lookups outside the box).  A short file
    raises :class:`FormatError` (C would report ``fscanf`` and keep zeros).
    """
    path = Path(path)
    raw = path.read_bytes()
    m = _HEAD_RE.match(raw)
    if not m:
        raise FormatError(f"{path}: not an Fdump file (no 6-integer header)")
    hmin, hmax, kmin, kmax, lmin, lmax = (int(x) for x in m.groups())
    pos = m.end()
    if c_whitespace_quirk:
        while pos < len(raw) and raw[pos] in _C_SPACE:
            pos += 1
    else:
        if raw[pos:pos + 2] != b"\n\f":
            raise FormatError(f"{path}: Fdump header does not end with '\\n\\f'")
        pos += 2
    hr, kr, lr = hmax - hmin + 1, kmax - kmin + 1, lmax - lmin + 1
    if hr <= 0 or kr <= 0 or lr <= 0:
        raise FormatError(f"{path}: bad index ranges in Fdump header")
    from ..limits import check_hkl_grid
    check_hkl_grid((hr + 1, kr + 1, lr + 1), "Fdump header index ranges")
    n = (hr + 1) * (kr + 1) * (lr + 1)
    if len(raw) - pos < 8 * n:
        raise FormatError(f"{path}: Fdump data truncated ({len(raw) - pos} of {8 * n} bytes)")
    grid = np.frombuffer(raw, dtype="<f8", count=n, offset=pos).reshape(hr + 1, kr + 1, lr + 1)
    F = np.ascontiguousarray(grid[:hr, :kr, :lr], dtype=np.float64)
    return HKLData(F, hmin, hmax, kmin, kmax, lmin, lmax, hr * kr * lr, float(default_F))

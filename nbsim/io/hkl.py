"""Structure-factor text files (``-hkl``), read the way nanoBragg.c does (ll. 2103-2224).

C reads the file twice with ``fscanf``, ignoring line structure:

1. ``while (4 == fscanf("%lg%lg%lg%lg", &h,&k,&l,&F))``: counts entries (``hkls``) and
   tracks ``h_min..l_max`` (ints, assigned from doubles by truncation; warns for
   non-integer indices);
2. allocates ``Fhkl[h_range+1][k_range+1][l_range+1]`` zeros with
   ``h_range = h_max - h_min + 1`` etc.; if ``default_F != 0`` fills indices
   ``0..range-1`` (not the extra +1 plane) with default_F;
3. ``while (4 == fscanf("%d%d%d%lg", ...)) Fhkl[h-h_min][k-k_min][l-l_min] = F``
   (later duplicates win).

Consequences: missing entries inside the box get ``default_F`` (0 by default); reading
stops silently at the first token that is not a number (a ``#`` comment truncates the
file) -- and pass 2 stops at the first non-integer index.  An empty file is an error
("not enough HKL indices").  The extra zero plane C allocates is never read by the
lookups (nearest neighbour needs ``h_min <= h0 <= h_max``; tricubic interpolation needs
``h-h_min+3 <= h_range``), so :class:`HKLData` keeps only the ``h_range x k_range x
l_range`` box.

``read_hkl(strict=True)`` (default) parses line by line and raises
:class:`~nbsim.io.FormatError` (file and line named) for anything C would misread: a line
that is not exactly ``h k l F`` with integer h, k, l (comments included).  Blank lines
are allowed.  For every file C reads completely the result is identical.
``strict=False`` emulates C's two fscanf passes verbatim (silent truncation).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cformat import float_prefix, int_prefix
from .errors import FormatError

__all__ = ["HKLData", "read_hkl", "hkl_from_entries"]

_INT_RE = re.compile(r"^[+-]?[0-9]+$")


@dataclass
class HKLData:
    """Structure-factor grid.

    ``F[h - h_min, k - k_min, l - l_min]`` (float64, electrons) for
    ``h_min <= h <= h_max`` etc.; entries absent from the file hold ``default_F``.
    ``hkls`` is C's count (entries read; for an Fdump it is ``h_range*k_range*l_range``).
    """

    F: np.ndarray
    h_min: int
    h_max: int
    k_min: int
    k_max: int
    l_min: int
    l_max: int
    hkls: int
    default_F: float = 0.0

    @property
    def h_range(self) -> int:
        return self.h_max - self.h_min + 1

    @property
    def k_range(self) -> int:
        return self.k_max - self.k_min + 1

    @property
    def l_range(self) -> int:
        return self.l_max - self.l_min + 1


def hkl_from_entries(h, k, l, F, default_F: float = 0.0) -> HKLData:
    """Build the grid from integer index arrays and F values (later duplicates win)."""
    h = np.asarray(h, dtype=np.int64)
    k = np.asarray(k, dtype=np.int64)
    l = np.asarray(l, dtype=np.int64)
    F = np.asarray(F, dtype=np.float64)
    if h.size == 0:
        raise FormatError("no HKL entries")
    hmin, hmax = int(h.min()), int(h.max())
    kmin, kmax = int(k.min()), int(k.max())
    lmin, lmax = int(l.min()), int(l.max())
    from ..limits import check_hkl_grid
    check_hkl_grid((hmax - hmin + 1, kmax - kmin + 1, lmax - lmin + 1))
    grid = np.full((hmax - hmin + 1, kmax - kmin + 1, lmax - lmin + 1), float(default_F))
    # fancy assignment applies entries in order, so the last duplicate wins like C
    grid[h - hmin, k - kmin, l - lmin] = F
    return HKLData(grid, hmin, hmax, kmin, kmax, lmin, lmax, int(h.size), float(default_F))


def _read_strict(path: Path, text: str, default_F: float) -> HKLData:
    hs, ks, ls, fs = [], [], [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        tok = line.split()
        if not tok:
            continue
        if len(tok) != 4:
            raise FormatError(
                f"{path}:{lineno}: expected 'h k l F' (4 numbers), got {len(tok)} fields: "
                f"{line.strip()[:60]!r}")
        for t in tok[:3]:
            if not _INT_RE.match(t):
                raise FormatError(f"{path}:{lineno}: Miller index {t!r} is not an integer")
        try:
            f = float(tok[3])
        except ValueError:
            raise FormatError(f"{path}:{lineno}: structure factor {tok[3]!r} is not a number") \
                from None
        hs.append(int(tok[0]))
        ks.append(int(tok[1]))
        ls.append(int(tok[2]))
        fs.append(f)
    if not hs:
        raise FormatError(f"{path}: no HKL entries (not enough HKL indices)")
    return hkl_from_entries(hs, ks, ls, fs, default_F)


_FAST_BYTES = np.zeros(256, dtype=np.bool_)
_FAST_BYTES[list(b"0123456789+-.eE \t\r\n")] = True
_SEP_BYTES = np.zeros(256, dtype=np.bool_)
_SEP_BYTES[list(b" \t\r\n")] = True
_NONINT_BYTES = np.zeros(256, dtype=np.bool_)
_NONINT_BYTES[list(b".eE")] = True


def _read_fast(raw: bytes, default_F: float):
    """:func:`_read_strict` for the plain files it accepts, with NumPy instead of a
    Python loop over lines (the HKL read was the largest part of a run's start-up with a
    60,000-reflection file); None when the file has anything else (then the line-by-line
    reader decides, and names the line of an error).

    Accepted here: only digits, ``+-.eE``, blanks, tabs and (CR)LF line ends; every line
    blank or exactly four fields; the first three without ``.eE`` (so, once they convert,
    they are the integers ``_INT_RE`` accepts) and below 2**31 in size; the fourth a
    number.  Values convert exactly as ``int()`` / ``float()`` do (correct rounding)."""
    b = np.frombuffer(raw, dtype=np.uint8)
    if b.size == 0 or not _FAST_BYTES[b].all() or raw.count(b"\r") != raw.count(b"\r\n"):
        return None
    sep = _SEP_BYTES[b]
    start = ~sep
    start[1:] &= sep[:-1]                       # first byte of each field
    fields_before = np.cumsum(start, dtype=np.int32)
    at_line_ends = np.concatenate(([0], fields_before[np.flatnonzero(b == 10)],
                                   fields_before[-1:]))
    fields_per_line = np.diff(at_line_ends)
    if not np.all((fields_per_line == 0) | (fields_per_line == 4)):
        return None
    tokens = raw.split()
    if not tokens:
        return None
    for col in (tokens[0::4], tokens[1::4], tokens[2::4]):
        joined = b" ".join(col)
        if b"." in joined or b"e" in joined or b"E" in joined:
            return None
    try:
        vals = np.fromiter(map(float, tokens), np.float64, len(tokens)).reshape(-1, 4)
    except (ValueError, OverflowError):
        return None
    hkl = vals[:, :3]
    if not np.all(np.abs(hkl) < 2.0 ** 31):
        return None
    hkl = hkl.astype(np.int64)
    return hkl_from_entries(hkl[:, 0], hkl[:, 1], hkl[:, 2], vals[:, 3], default_F)


def _c_to_int(x: float) -> int:
    # (int) of a double: truncation toward zero
    return int(x) if math.isfinite(x) else -2147483648


def _read_c(path: Path, raw: bytes, default_F: float) -> HKLData:
    # pass 1: "%lg%lg%lg%lg"
    pos = 0
    hkls = 0
    hmin = kmin = lmin = 10 ** 9
    hmax = kmax = lmax = -10 ** 9
    while True:
        vals = []
        p = pos
        for _ in range(4):
            v, p = float_prefix(raw, p)
            if v is None:
                break
            vals.append(v)
        if len(vals) < 4:
            break
        pos = p
        h, k, l, _F = vals
        if hmin > h:
            hmin = _c_to_int(h)
        if kmin > k:
            kmin = _c_to_int(k)
        if lmin > l:
            lmin = _c_to_int(l)
        if hmax < h:
            hmax = _c_to_int(h)
        if kmax < k:
            kmax = _c_to_int(k)
        if lmax < l:
            lmax = _c_to_int(l)
        hkls += 1
    hr, kr, lr = hmax - hmin + 1, kmax - kmin + 1, lmax - lmin + 1
    if hr < 0 or kr < 0 or lr < 0 or hkls == 0:
        raise FormatError(f"{path}: not enough HKL indices")
    from ..limits import check_hkl_grid
    check_hkl_grid((hr + 1, kr + 1, lr + 1))
    grid = np.zeros((hr + 1, kr + 1, lr + 1))
    if default_F != 0.0:
        grid[:hr, :kr, :lr] = default_F
    # pass 2: "%d%d%d%lg"
    pos = 0
    while True:
        p = pos
        h0, p = int_prefix(raw, p)
        k0 = l0 = F = None
        if h0 is not None:
            k0, p = int_prefix(raw, p)
        if k0 is not None:
            l0, p = int_prefix(raw, p)
        if l0 is not None:
            F, p = float_prefix(raw, p)
        if F is None:
            break
        pos = p
        i, j, m = h0 - hmin, k0 - kmin, l0 - lmin
        if not (0 <= i <= hr and 0 <= j <= kr and 0 <= m <= lr):
            # C would write outside its arrays here
            raise FormatError(f"{path}: entry {h0} {k0} {l0} outside the index box C allocated")
        grid[i, j, m] = F
    return HKLData(np.ascontiguousarray(grid[:hr, :kr, :lr]), hmin, hmax, kmin, kmax,
                   lmin, lmax, hkls, float(default_F))


def read_hkl(path, default_F: float = 0.0, *, strict: bool = True) -> HKLData:
    """Read an ``h k l F`` text file into an :class:`HKLData` grid (see module doc)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise FormatError(f"{path}: unable to open: {e.strerror}") from None
    if strict:
        fast = _read_fast(raw, default_F)
        if fast is not None:
            return fast
        return _read_strict(path, raw.decode("latin-1"), default_F)
    return _read_c(path, raw, default_F)

"""Structure factors as nanoBragg's ``-hkl`` text (``h k l F`` per line).

The amplitudes are written with 17 significant digits, so nanoBragg (``%lg``) and
:func:`nbsim.io.hkl.read_hkl` read back exactly the same float64 values.
"""
from __future__ import annotations

import numpy as np

from ._atomic import atomic_open

__all__ = ["hkl_text", "write_hkl_text"]


def hkl_text(h, k, l, F) -> str:
    """The text of an HKL file, one ``h k l F`` line per reflection, in the given order."""
    h, k, l = (np.asarray(x, dtype=np.int64) for x in (h, k, l))
    F = np.asarray(F, dtype=np.float64)
    return "".join(f"{a} {b} {c} {f:.17g}\n" for a, b, c, f in
                   zip(h.tolist(), k.tolist(), l.tolist(), F.tolist()))


def write_hkl_text(path, h, k, l, F) -> None:
    """Write an HKL text file atomically."""
    text = hkl_text(h, k, l, F)
    with atomic_open(path, "w") as fh:
        fh.write(text)

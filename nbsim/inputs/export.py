"""``-write_hkl FILE``: the expanded P1 list, for other programs (or a later -hkl).

A name ending in ``.bin`` gets nanoBragg's Fdump format (the whole grid, missing
reflections as -default_F, exactly the bytes nanoBragg.c writes for the same grid);
any other name gets ``h k l F`` text, one line per distinct P1 reflection, sorted by
h, k, l, read back exactly by nanoBragg's ``-hkl``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["write_p1", "p1_writer"]


def write_p1(path: str, hkl_data, p1, *, fdump: bool = None) -> None:
    """Write the P1 structure factors to ``path``; ``fdump`` None: decided by the name
    (see above)."""
    if fdump is None:
        fdump = str(path).endswith(".bin")
    if fdump:
        from ..io.fdump import write_fdump
        write_fdump(path, hkl_data)
        return
    from ..io.hkl_writer import write_hkl_text
    h, k, l, F = p1
    order = np.lexsort((l, k, h))
    write_hkl_text(path, h[order], k[order], l[order], F[order])


def p1_writer(inputs) -> Callable[[str], None]:
    """A one-argument writer (the CLI's commit step passes a temporary path)."""
    fdump = str(inputs.write_hkl).endswith(".bin")      # the final name, not the temporary
    return lambda path: write_p1(path, inputs.hkl_data, inputs.p1, fdump=fdump)

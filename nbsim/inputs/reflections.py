"""Structure factors as a file gives them: an asymmetric unit, a cell, a space group."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

__all__ = ["Reflections"]


@dataclass
class Reflections:
    """Amplitudes of the reflections a file lists (before any symmetry expansion).

    ``h``, ``k``, ``l``: int64 Miller indices; ``F``: float64 amplitudes (electrons) of
    (h, k, l).  ``F_minus``: for anomalous data, the amplitude of (-h, -k, -l) for the
    same row (NaN where the file has none), else None.  ``cell``: a, b, c (Angstrom),
    alpha, beta, gamma (degrees).  ``space_group``: gemmi's extended Hermann-Mauguin name, or
    None when the file has none.  ``source``: what the values came from, for messages.
    ``notes``: lines for stderr (e.g. how many negative intensities were set to 0).
    """

    h: np.ndarray
    k: np.ndarray
    l: np.ndarray
    F: np.ndarray
    cell: Tuple[float, float, float, float, float, float]
    space_group: Optional[str]
    source: str
    F_minus: Optional[np.ndarray] = None
    notes: List[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.h.size)

    @property
    def anomalous(self) -> bool:
        return self.F_minus is not None

"""What one adjoint launch returns (CPU or CUDA): its own module so that the host side
(:mod:`nbsim.gradients.host`) and the CUDA launcher (:mod:`nbsim.gradients.adjoint_cuda`)
both import it and neither imports the other's caller."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["AdjointResult"]


@dataclass
class AdjointResult:
    acc: np.ndarray              # (NACC,) plan-quantity cotangents, summed over chunks
    gF: Optional[np.ndarray]     # structure-factor grid gradient, or None
    image: Optional[np.ndarray]  # (spixels, fpixels) photons, None when not asked for (GPU)
    extra: object = None         # what ``during`` returned

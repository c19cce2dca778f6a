"""Static options a kernel is specialised on (compile-time constants, one cached variant each)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

_PKG = Path(__file__).resolve().parent.parent
_SHARED_SOURCES = ("physics.py", "kernels/options.py", "kernels/pixel.py", "kernels/cpu.py",
                   "kernels/cpu_lanes.py", "kernels/cpu_lanes32.py",
                   "gradients/dphysics.py", "gradients/core.py", "_numba_setup.py")


def _source_stamp() -> int:
    """A hash of the sources the compiled kernels inline.  Numba's disk cache notices edits
    to a kernel's own file only; kernel factories keep this number as a closure constant,
    and Numba keys its cache on closure values, so editing shared physics recompiles.
    ``_numba_setup.py`` is in the list and whether its patches are on in the hash: its
    ``cpu_local_linkage`` patch changes how a compiled kernel's calls bind (a kernel
    cached without it is not reused with it, nor the other way round)."""
    from .._numba_setup import patches_enabled
    h = hashlib.sha1()
    h.update(b"patches on" if patches_enabled() else b"patches off")
    for rel in _SHARED_SOURCES:
        p = _PKG / rel
        if p.exists():
            h.update(p.read_bytes())
    return int.from_bytes(h.digest()[:7], "little")


SOURCE_STAMP = _source_stamp()


class KernelOptions(NamedTuple):
    shape: int = 0            # physics.SHAPE_*
    interp: int = 0           # 0 nearest, 1 tricubic (spec), 2 tricubic with C's global switch
    os_thick: bool = False
    os_polar: bool = False
    os_omega: bool = False
    os_running: bool = False  # c-parity: oversample factors multiply the running sum
    curved: bool = False
    point_pixel: bool = False
    nopolar: bool = False
    has_mask: bool = False
    use_dmin: bool = False
    carry: bool = False       # c-parity phi=0 carryover tables differ
    has_water: bool = False
    kahn: bool = False        # nonzero Kahn factor
    thick: bool = False       # sensor thickness modelled
    trace: bool = False       # record the pixel trace
    record_oor: bool = False  # record out-of-range tricubic evaluations per pixel
    float32: bool = False
    has_grid: bool = False    # an HKL grid is loaded (else every F is default_F)
    truth: bool = False       # record per-pixel reflection slots (docs/truth.md)

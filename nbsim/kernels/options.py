"""Static options a kernel is specialised on (compile-time constants, one cached variant each)."""
from __future__ import annotations

from typing import NamedTuple


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
    fast_sincg: bool = False  # delta-reduced sincg (float32 path)
    float32: bool = False
    has_grid: bool = False    # an HKL grid is loaded (else every F is default_F)

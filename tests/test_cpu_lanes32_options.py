"""The float32 lanes kernel (nbsim.kernels.cpu_lanes32) on option sets the golden cases do
not combine, against the float64 render (the reference precision): within the float32
bound (1e-4 of the image maximum) and not a copy of it.

A detector of 300 x 40 pixels: runs of 256 lanes end inside a row (lanes past the run's
end are computed and never stored) and rows hold one full and one partial run.
"""
import numpy as np
import pytest

import nbsim
from conftest import INPUTS
from nbsim.kernels import cpu_lanes32

TOL_F32 = 1e-4

BASE = ("-cell 70 80 90 75 85 95 -misset 10 20 30 -N 7 -lambda 1.5 -distance 100 "
        "-detpixels_x 300 -detpixels_y 40 -pixel 0.1").split()

# -nopolar drops the polarization factor except under -oversample_polar (as the other
# kernels); the fast geometry with per-sub-path factors; the grid gather; an inactive
# axis (N = 1); a ROI cutting runs.  Slow (compile time): the IEEE geometry of
# -round_xtal with a grid, sensor thickness, the other shapes, sources x mosaic, a
# rotated detector
FAST = [
    "-default_F 100 -nopolar -oversample_polar -oversample 2",
    "-default_F 100 -polar 0.9 -oversample 2 -oversample_polar -oversample_omega",
    "-hkl {in}/scaled.hkl -default_F 3 -oversample 2",
    "-default_F 100 -Na 1 -Nb 12 -Nc 3 -roi 17 283 3 33",
]
SLOW = [
    "-hkl {in}/grid10.hkl -default_F 7 -round_xtal -nopolar -oversample_polar",
    "-default_F 100 -nopolar",
    "-default_F 100 -nopolar -polar 0.9",
    "-default_F 100 -detector_abs 500 -detector_thick 450 -thicksteps 3 -oversample 2 "
    "-oversample_thick",
    "-default_F 100 -detector_abs 500 -detector_thick 450 -thicksteps 2",
    "-default_F 100 -point_pixel -oversample 3",
    "-hkl {in}/grid10.hkl -default_F 7 -gauss_xtal",
    "-default_F 100 -tophat_spots -fudge 2",
    "-default_F 100 -dispersion 10 -dispsteps 3 -divergence 0.1 -divsteps 3 -mosaic 0.3 "
    "-mosaic_dom 4",
    "-default_F 100 -twotheta 20 -detector_rotx 5",
]


def _check(flags):
    args = BASE + flags.replace("{in}", str(INPUTS)).split()
    s32 = nbsim.Simulator.from_args(args + ["-dtype", "float32"])
    assert cpu_lanes32.supports(s32.plan.options)
    img32 = s32.run()
    img64 = nbsim.Simulator.from_args(args).run()
    peak = np.max(np.abs(img64))
    assert peak > 0 and np.all(np.isfinite(img32))
    err = np.max(np.abs(img32 - img64)) / peak
    assert err <= TOL_F32, f"{flags}: float32 vs float64 {err:.2e}"
    assert err > 0.0
    # pixels outside the ROI stay 0 in both
    assert np.array_equal(img32 == 0, img64 == 0)


@pytest.mark.parametrize("flags", FAST)
def test_float32_lanes_options(flags):
    _check(flags)


@pytest.mark.slow
@pytest.mark.parametrize("flags", SLOW)
def test_float32_lanes_more_options(flags):
    _check(flags)


def test_float32_roi_pixels_match_the_full_render():
    """A pixel's value does not depend on where its run of lanes starts: the ROI's pixels
    (runs starting at x = 17) are bit-identical to those of the full render (runs starting
    at 0, 256)."""
    args = BASE + "-default_F 100 -Na 1 -Nb 12 -Nc 3 -dtype float32".split()
    full = nbsim.Simulator.from_args(args).run()
    roi = nbsim.Simulator.from_args(args + "-roi 17 283 3 33".split()).run()
    inside = (slice(3, 34), slice(17, 284))
    assert np.any(full[inside] != 0)
    assert np.array_equal(full[inside].view(np.uint64), roi[inside].view(np.uint64))
    assert np.all(np.delete(roi, np.s_[3:34], axis=0) == 0)

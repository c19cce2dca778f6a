"""The float32 CPU path (nbsim.kernels.cpu_lanes32) and the CPU kernels' reproducibility.

Bound (docs/architecture.md "Precision"): dtype="float32" stays within 1e-4 of the image
maximum against float64 and against nanoBragg.c, both modes, on the golden cases.
"""
import copy
import math

import numba
import numpy as np
import pytest

import nbsim
from conftest import golden_args, reference_for
from nbsim import physics as ph
from nbsim.kernels import cpu_lanes, cpu_lanes32

TOL_F32 = 1e-4

# cases the float32 lanes kernel renders, covering its options: every lattice shape,
# structure-factor grid, several sources, mosaic x phi, sensor thickness with the
# oversample flags, Kahn polarization, point pixel, mask, water, c-parity carryover
FAST_CASES = ["simple_cubic", "mosaic", "hkl_mat_nointerp"]
SLOW_CASES = ["pix0_custom_roi", "shape_round", "shape_gauss", "shape_tophat_fudge",
              "absorption_oversample_thick", "oversample_flags", "polar_kahn", "point_pixel",
              "mask_file", "water_background", "dispersion", "phi_from_zero", "xtalsize",
              "energy", "triclinic_misset"]


def _sim(case, mode, dtype):
    cfg = copy.deepcopy(nbsim.Simulator.from_args(golden_args(case), mode=mode).config)
    cfg.dtype = dtype
    return nbsim.Simulator(cfg)


def _check_case(case, mode):
    s32 = _sim(case, mode, "float32")
    if s32.plan.options.os_running:
        # c-parity's running-sum oversample factors: the general kernel renders (as float64)
        assert not cpu_lanes32.supports(s32.plan.options)
    else:
        assert cpu_lanes32.supports(s32.plan.options), f"{case}: not the float32 lanes kernel"
    img32 = s32.run().ravel()
    img64 = _sim(case, mode, "float64").run().ravel()
    ref = reference_for(case, mode).astype(np.float64)
    scale = np.max(np.abs(ref))
    assert scale > 0 and np.all(np.isfinite(img32))
    err_c = np.max(np.abs(img32 - ref)) / scale
    err_64 = np.max(np.abs(img32 - img64)) / np.max(np.abs(img64))
    assert err_c <= TOL_F32, f"{case} {mode}: float32 vs nanoBragg.c {err_c:.2e}"
    assert err_64 <= TOL_F32, f"{case} {mode}: float32 vs float64 {err_64:.2e}"
    # float32 is an approximation, not a copy of the float64 image
    assert err_64 > 0.0


@pytest.mark.parametrize("mode", ["spec", "c-parity"])
@pytest.mark.parametrize("case", FAST_CASES)
def test_float32_lanes_bound(case, mode):
    _check_case(case, mode)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["spec", "c-parity"])
@pytest.mark.parametrize("case", SLOW_CASES)
def test_float32_lanes_bound_more_cases(case, mode):
    _check_case(case, mode)


def test_sincg_ratio32_against_float64():
    """|float32 ratio| against |physics.sincg_delta| (the image needs F_latt^2 only),
    relative to its maximum N, over fractional parts from nodes to half-integers."""
    rng = np.random.default_rng(7)

    @numba.njit
    def ratio32(d, N):
        num, den = cpu_lanes32.sincg_ratio32(np.float32(d), np.float32(N))
        return np.float64(num) / np.float64(den)

    @numba.njit
    def ref64(h, N):
        return ph.sincg_delta(h, N)

    ds = np.concatenate([rng.uniform(-0.5, 0.5, 4000), [0.0, 1e-9, -1e-8, 0.5, -0.5, 0.25],
                         rng.uniform(-1e-5, 1e-5, 200)])
    for N in (2.0, 5.0, 10.0, 47.0, 200.0):
        for h0 in (0.0, 3.0, -8.0):
            for d in ds:
                h = h0 + d
                got = abs(ratio32(h - math.floor(h + 0.5), N))
                want = abs(ref64(h, N))
                assert abs(got - want) <= 4e-6 * N, (N, h, got, want)
    # an inactive axis (N <= 1) contributes a factor 1, as in C
    assert ratio32(0.3, 1.0) == 1.0


def test_newton_direction_accuracy():
    rng = np.random.default_rng(3)

    @numba.njit
    def both(x, y, z):
        return cpu_lanes32.unit_direction_newton(x, y, z), ph.unit_direction(x, y, z)

    for _ in range(2000):
        v = rng.normal(size=3) * 10.0 ** rng.uniform(-4, 0)
        (dx, dy, dz, r, rinv), (ex, ey, ez, er) = both(*v)
        assert abs(r - er) <= 4e-14 * er
        assert abs(rinv * er - 1.0) <= 4e-14
        assert max(abs(dx - ex), abs(dy - ey), abs(dz - ez)) <= 4e-14


def _reference_chunks(idx, fpixels, lanes):
    row = idx // fpixels
    brk = np.flatnonzero((np.diff(idx) != 1) | (np.diff(row) != 0)) + 1
    starts = np.concatenate(([0], brk))
    lens = np.concatenate((brk, [idx.size])) - starts
    npieces = (lens + lanes - 1) // lanes
    run = np.repeat(np.arange(starts.size), npieces)
    piece = np.arange(run.size) - np.repeat(np.cumsum(npieces) - npieces, npieces)
    return idx[starts[run] + piece * lanes], np.minimum(lanes, lens[run] - piece * lanes)


def test_runs_of_pixels():
    rng = np.random.default_rng(11)
    for t in range(60):
        fp = int(rng.integers(1, 40))
        if t % 2:
            idx = np.unique(rng.integers(0, fp * 50, int(rng.integers(1, 1500))))
        else:
            idx = np.arange(int(rng.integers(0, fp * 5)), int(rng.integers(fp * 5, fp * 30)))
        for lanes in (1, 5, cpu_lanes.LANES, cpu_lanes32.LANES):
            s, n = cpu_lanes.chunks(idx, fp, lanes)
            rs, rn = _reference_chunks(idx, fp, lanes)
            assert np.array_equal(s, rs) and np.array_equal(n, rn)
            assert n.sum() == idx.size and n.max() <= lanes
    s, n = cpu_lanes.chunks(np.zeros(0, np.int64), 7)
    assert s.size == 0 and n.size == 0


# one case per kernel: float64 lanes, float32 lanes, the general kernel (-dmin, tricubic)
THREAD_CASES = [("mosaic", "float64"), ("mosaic", "float32"), ("dmin_cut", "float64"),
                ("hkl_interp_auto", "float32")]


@pytest.mark.parametrize("case,dtype", THREAD_CASES)
def test_bit_identical_across_thread_counts(case, dtype):
    """Every pixel is computed on its own: 1 or 2 threads give the same bits."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    cfg = copy.deepcopy(nbsim.Simulator.from_args(golden_args(case)).config)
    cfg.dtype = dtype
    one = nbsim.Simulator(cfg, threads=1).run()
    two = nbsim.Simulator(cfg, threads=2).run()
    assert np.any(one != 0)
    assert np.array_equal(one.view(np.uint64), two.view(np.uint64))

"""CPU SIMD kernel for ``dtype="float32"`` (mixed precision), vectorised across pixels.

The float64 lanes kernel (:mod:`.cpu_lanes`) walks the loop nest once for a run of
pixels of one row with the pixel loop innermost.  This kernel does the same with the
arithmetic split by what the error bound (1e-4 of the image maximum) needs:

* float64: the detector geometry and the scattering vector q, h = a.q (Miller index,
  up to |a|/lambda ~ 100) and its nearest integer h0.  A float32 q would err by ~6e-8
  absolute in the unit vector, i.e. |a|/lambda * 6e-8 in h, which a sharp lattice factor
  turns into up to 3e-4 of the maximum (docs/gpu.md); in float64 h is exact to 1e-14.
* float32: the lattice factor of the square (parallelepiped) shape, evaluated on the
  fractional part d = h - h0 (exact in float64, |d| <= 1/2, rounded once to float32):
  sin(N pi d) / sin(pi d) by float32 polynomials, sixteen pixels per 512-bit vector.
  Relative error of F_latt ~ 1e-6 (a few float32 roundings of a quantity of modulus
  <= N), independent of h.
* float64 again: the pixel sum (contributions added in float64, as C's double sum).

The other lattice shapes (round, Gaussian, top-hat) keep the float64 lattice factor
(sinc3 cancels badly in float32 near its centre); their speed-up comes from the geometry
only.

The detector geometry is computed with fast-math (FMA contraction) and 1/|v| from a
float32 square root refined by one float64 Newton step (:func:`unit_direction_newton`),
except under ``-round_xtal``: there a pixel centred on the direct beam must
get q == 0 exactly, as in C (sinc3 is 1 at 0 and 0 just beside it), so that shape keeps
C's IEEE geometry (nbsim.physics "IEEE twins").  The float64 kernel always does.

Handles the options :func:`supports` says (those of the float64 lanes kernel, with
``float32``); the simulator sends the rest to the general kernel.  Bound, tested on the
golden cases in both modes (tests/test_cpu_float32.py): max |float32 - float64| <= 1e-4
of the image maximum (observed <= 1e-5, pix0_custom_roi), and likewise against nanoBragg.c.
"""
from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba.extending import register_jitable

from .. import physics as ph
from .cpu import FASTMATH
from .options import SOURCE_STAMP, KernelOptions

# float32 runs twice the pixels of the float64 kernel: the float32 pass fills 16-wide
# vectors, the float64 ones 8-wide
LANES = 64

# scratch rows of a run (float64)
(_S_I, _S_POLAR, _S_OMEGA, _S_CAP, _S_DX, _S_DY, _S_DZ, _S_QX, _S_QY, _S_QZ, _S_FPIX, _S_FL,
 _S_IN) = range(13)
_NSCRATCH = 13
# runs rendered one after the other by one prange iteration (one scratch allocation)
RUNS_PER_BLOCK = 8
# scratch rows of a run (float32): fractional Miller indices, lattice factor
(_T_DH, _T_DK, _T_DL, _T_FL) = range(4)
_NSCRATCH32 = 4

_F32 = np.float32
_ONE = _F32(1.0)
_HALF = _F32(0.5)
_PI = _F32(math.pi)
# below this |d| the ratio equals N to float32 precision for N <= 1000
# ((N pi d)^2 / 6 < 2e-8); it also keeps the three sines' product far from underflow
_NODE = _F32(1e-7)
# Taylor coefficients of sin(y)/y in y^2 to y^10: relative error < 6e-8 (one float32
# rounding) on |y| <= pi/2
_C1 = _F32(-1.0 / 6.0)
_C2 = _F32(1.0 / 120.0)
_C3 = _F32(-1.0 / 5040.0)
_C4 = _F32(1.0 / 362880.0)
_C5 = _F32(-1.0 / 39916800.0)


def supports(opts: KernelOptions) -> bool:
    """Whether this kernel renders ``opts`` (float32 with the float64 lanes kernel's
    options); with ``opts.carry`` the caller re-renders the carry pixel with the general
    kernel."""
    return (bool(opts.float32) and opts.interp == 0 and not opts.use_dmin
            and not opts.curved and not opts.os_running and not opts.trace
            and not opts.record_oor)


@register_jitable
def sin_pi_small32(x):
    """sin(pi x) for |x| <= 1/2 in float32 (relative error ~1e-7: truncation 6e-8 plus
    the roundings)."""
    y = _PI * x
    z = y * y
    return y * (_ONE + z * (_C1 + z * (_C2 + z * (_C3 + z * (_C4 + z * _C5)))))


@register_jitable
def sincg_ratio32(d, N):
    """(num, den) with |num / den| = |sin(N pi d) / sin(pi d)| = |sincg(pi h, N)| for the
    float32 fractional Miller index d = h - rint(h) (|d| <= 1/2) and the float32 integer N.
    Up to sign: the image needs F_latt^2 only, so the signs (-1)^m of the reduction
    N d - m and (-1)^((N-1) h0) of the shift by h0 are not computed.  (N, 1) at a node;
    (1, 1) when N <= 1 (the axis does not contribute, as in C)."""
    nd = N * d
    m = np.floor(nd + _HALF)
    num = sin_pi_small32(nd - m)
    den = sin_pi_small32(d)
    node = abs(d) < _NODE
    num = N if node else num
    den = _ONE if node else den
    active = N > _ONE
    return (num if active else _ONE), (den if active else _ONE)


@register_jitable
def unit_direction_newton(x, y, z):
    """(x, y, z) / |v|, |v| and 1/|v| without a float64 square root or division: 1/|v|
    from a float32 square root and division (relative error <= 1.2e-7), refined by one
    float64 Newton step (the error squares: <= 1.5 e^2 ~ 2.2e-14), so the diffracted
    direction keeps ~2e-14 and h = a.q ~1e-12 absolute.  Sixteen-wide float32 sqrt/div cost a fraction
    of the eight-wide float64 ones."""
    r2 = x * x + y * y + z * z
    inv = np.float64(_ONE / np.sqrt(_F32(r2)))
    inv = inv * (1.5 - 0.5 * r2 * inv * inv)
    return x * inv, y * inv, z * inv, r2 * inv, inv


@functools.lru_cache(maxsize=None)
def get_kernel(opts: KernelOptions):
    """The compiled kernel for ``opts`` (one per option set, built once per process)."""
    SHAPE = int(opts.shape)
    OS_THICK = bool(opts.os_thick)
    OS_POLAR = bool(opts.os_polar)
    OS_OMEGA = bool(opts.os_omega)
    POINT = bool(opts.point_pixel)
    NOPOLAR = bool(opts.nopolar)
    HAS_MASK = bool(opts.has_mask)
    KAHN = bool(opts.kahn)
    THICK = bool(opts.thick)
    HAS_GRID = bool(opts.has_grid)
    SQUARE = SHAPE == ph.SHAPE_SQUARE
    EXACT_GEOMETRY = SHAPE == ph.SHAPE_ROUND
    if EXACT_GEOMETRY:
        subpixel_position = ph.subpixel_position_ieee
    else:
        # fast-math position (inherits the kernel's flags), Newton-refined directions
        subpixel_position = ph.subpixel_position
    unit_direction = ph.unit_direction_ieee
    scattering_vector = ph.scattering_vector_ieee
    W = LANES
    STAMP = SOURCE_STAMP      # closure constant: a change of the shared sources recompiles

    @numba.njit(parallel=True, cache=True, fastmath=FASTMATH, nogil=True, error_model="numpy")
    def render(image, chunk_start, chunk_len, ka):
        """Render runs of pixels: run c starts at raster index chunk_start[c] and covers
        chunk_len[c] (<= LANES) consecutive pixels of one row.  ka: the plan's argument
        bundle (``bundle.KernelArrays``, crystal quantities in float32, geometry float64);
        every run uses the steady-state cell table."""
        if STAMP < 0:         # never: only ties the cache entry to the sources
            return
        fpixels = ka.fpixels
        mask = ka.mask
        oversample = ka.oversample
        thicksteps = ka.thicksteps
        src_dir = ka.src_dir
        src_lambda = ka.src_lambda
        # h = a.q in float64: the (exactly representable) float32 cell, widened once
        cells = ka.cells[1].astype(np.float64)
        ncell = ka.ncell
        ast = ka.ast.astype(np.float64)
        Fgrid = ka.Fgrid
        fgrid_meta = ka.fgrid_meta
        default_F = float(ka.default_F)
        lat = ka.lattice
        Na = float(lat[0]); Nb = float(lat[1]); Nc = float(lat[2]); fudge = float(lat[3])
        Na32 = _F32(Na); Nb32 = _F32(Nb); Nc32 = _F32(Nc)
        I_bg = ka.scalars[0]
        scale = ka.scalars[1]
        h_min = fgrid_meta[0]; k_min = fgrid_meta[1]; l_min = fgrid_meta[2]
        h_max = fgrid_meta[3]; k_max = fgrid_meta[4]; l_max = fgrid_meta[5]
        kstride = Fgrid.shape[2]
        hstride = Fgrid.shape[1] * kstride
        Fflat = Fgrid.ravel()
        hminf = float(h_min); hmaxf = float(h_max)
        kminf = float(k_min); kmaxf = float(k_max)
        lminf = float(l_min); lmaxf = float(l_max)
        nsrc = src_lambda.shape[0]
        nruns = chunk_start.shape[0]
        nblocks = (nruns + RUNS_PER_BLOCK - 1) // RUNS_PER_BLOCK
        for g in numba.prange(nblocks):
            # scratch rows, one allocation per block of runs: every run writes each
            # row before reading it, so a run's result does not depend on the runs
            # before it, nor on thread scheduling (bit-reproducible)
            s = np.empty((_NSCRATCH, W))
            s32 = np.empty((_NSCRATCH32, W), dtype=np.float32)
            I = s[_S_I]; polar = s[_S_POLAR]; omega = s[_S_OMEGA]; cap = s[_S_CAP]
            dxs = s[_S_DX]; dys = s[_S_DY]; dzs = s[_S_DZ]
            qxs = s[_S_QX]; qys = s[_S_QY]; qzs = s[_S_QZ]
            fpix = s[_S_FPIX]
            fls = s[_S_FL]
            ins = s[_S_IN]
            dhs = s32[_T_DH]; dks = s32[_T_DK]; dls = s32[_T_DL]
            fl32 = s32[_T_FL]
            gis = np.empty(W, dtype=np.int64)
            for c in range(g * RUNS_PER_BLOCK, min(nruns, (g + 1) * RUNS_PER_BLOCK)):
                idx0 = chunk_start[c]
                n = chunk_len[c]
                spixel = idx0 // fpixels
                fpixel0 = idx0 - spixel * fpixels
                # the run's panel (a run lies in one row; rows are the panels stacked along
                # slow, nbsim.geometry.panels) and that panel's geometry
                panel = spixel // ka.panel_rows
                spixel = spixel - panel * ka.panel_rows
                geom = ka.panel_geom[panel]
                subpixel_size = geom[25]
                half = subpixel_size / 2.0
                p0x = geom[0]; p0y = geom[1]; p0z = geom[2]
                fx = geom[3]; fy = geom[4]; fz = geom[5]
                sx = geom[6]; sy = geom[7]; sz = geom[8]
                ox = geom[9]; oy = geom[10]; oz = geom[11]
                pax = geom[15]; pay = geom[16]; paz = geom[17]
                close_distance = geom[19]
                pixel_size = geom[20]
                pix2_close = pixel_size * pixel_size * close_distance
                thickstep = geom[21]
                mu = geom[22]
                kahn = geom[23]
                for j in range(n):
                    I[j] = I_bg
                    fpix[j] = fpixel0 + j
                polar_done = False
                omega_done = False
                for t in range(thicksteps):
                    Odet = t * thickstep
                    cap_done = False
                    for subS in range(oversample):
                        for subF in range(oversample):
                            for j in range(n):
                                _, _, px, py, pz = subpixel_position(
                                    subpixel_size, fpix[j] * oversample + subF,
                                    spixel * oversample + subS, half, Odet,
                                    fx, fy, fz, sx, sy, sz, ox, oy, oz, p0x, p0y, p0z)
                                if EXACT_GEOMETRY:
                                    dxs[j], dys[j], dzs[j], r = unit_direction(px, py, pz)
                                    if OS_OMEGA or not omega_done:
                                        omega[j] = ph.solid_angle(pixel_size, r, close_distance,
                                                                  POINT)
                                else:
                                    dxs[j], dys[j], dzs[j], r, rinv = unit_direction_newton(
                                        px, py, pz)
                                    if OS_OMEGA or not omega_done:
                                        # ph.solid_angle by the reciprocal distance
                                        if POINT:
                                            omega[j] = rinv * rinv
                                        else:
                                            omega[j] = pix2_close * (rinv * rinv * rinv)
                            omega_done = True
                            if THICK or OS_THICK:
                                if OS_THICK or not cap_done:
                                    for j in range(n):
                                        parallax = dxs[j] * ox + dys[j] * oy + dzs[j] * oz
                                        cap[j] = ph.capture_fraction(t, thickstep, mu, parallax)
                                    cap_done = True
                            for src in range(nsrc):
                                ix = -src_dir[src, 0]
                                iy = -src_dir[src, 1]
                                iz = -src_dir[src, 2]
                                lam = src_lambda[src]
                                if EXACT_GEOMETRY:
                                    for j in range(n):
                                        qxs[j], qys[j], qzs[j] = scattering_vector(
                                            dxs[j], dys[j], dzs[j], ix, iy, iz, lam)
                                else:
                                    lam_inv = 1.0 / lam
                                    for j in range(n):
                                        qxs[j] = (dxs[j] - ix) * lam_inv
                                        qys[j] = (dys[j] - iy) * lam_inv
                                        qzs[j] = (dzs[j] - iz) * lam_inv
                                if OS_POLAR or not polar_done:
                                    for j in range(n):
                                        if KAHN:
                                            polar[j] = ph.polarization_factor(
                                                kahn, ix, iy, iz, dxs[j], dys[j], dzs[j], pax, pay, paz)
                                        else:
                                            c2 = ix * dxs[j] + iy * dys[j] + iz * dzs[j]
                                            polar[j] = 0.5 * (1.0 + c2 * c2)
                                    polar_done = True
                                for cidx in range(ncell):
                                    cl = cells[cidx]
                                    a0 = cl[0]; a1 = cl[1]; a2 = cl[2]
                                    b0 = cl[3]; b1 = cl[4]; b2 = cl[5]
                                    c0 = cl[6]; c1 = cl[7]; c2_ = cl[8]
                                    # pass 1 (float64, vectorised): Miller indices, their
                                    # fractional parts, grid index per lane
                                    for j in range(n):
                                        qx = qxs[j]; qy = qys[j]; qz = qzs[j]
                                        h = a0 * qx + a1 * qy + a2 * qz
                                        k = b0 * qx + b1 * qy + b2 * qz
                                        l = c0 * qx + c1 * qy + c2_ * qz
                                        if SQUARE:
                                            h0 = np.floor(h + 0.5)
                                            k0 = np.floor(k + 0.5)
                                            l0 = np.floor(l + 0.5)
                                            dhs[j] = _F32(h - h0)
                                            dks[j] = _F32(k - k0)
                                            dls[j] = _F32(l - l0)
                                        else:
                                            fls[j] = ph.lattice_factor(SHAPE, h, k, l, Na, Nb, Nc,
                                                                       fudge, ast)
                                        if HAS_GRID:
                                            hr = np.ceil(h - 0.5)
                                            kr = np.ceil(k - 0.5)
                                            lr = np.ceil(l - 0.5)
                                            inside = (hr >= hminf) & (hr <= hmaxf) & (kr >= kminf) \
                                                & (kr <= kmaxf) & (lr >= lminf) & (lr <= lmaxf)
                                            hi = min(max(hr, hminf), hmaxf)
                                            ki = min(max(kr, kminf), kmaxf)
                                            li = min(max(lr, lminf), lmaxf)
                                            gis[j] = (int(hi) - h_min) * hstride \
                                                + (int(ki) - k_min) * kstride + (int(li) - l_min)
                                            ins[j] = 1.0 * inside
                                    if SQUARE:
                                        # pass 2 (float32, 16 lanes a vector): the lattice factor
                                        for j in range(n):
                                            nh, dh = sincg_ratio32(dhs[j], Na32)
                                            nk, dk = sincg_ratio32(dks[j], Nb32)
                                            nl, dl = sincg_ratio32(dls[j], Nc32)
                                            fl32[j] = (nh * nk * nl) / (dh * dk * dl)
                                    # pass 3: structure factor (a gather: the clamped index is
                                    # always valid, so the load is unconditional) and the
                                    # float64 accumulation
                                    for j in range(n):
                                        if HAS_GRID:
                                            fg = float(Fflat[gis[j]])
                                            fc = fg if ins[j] != 0.0 else default_F
                                        else:
                                            fc = default_F
                                        if SQUARE:
                                            fl = float(fl32[j])
                                        else:
                                            fl = fls[j]
                                        contrib = fc * fc * fl * fl
                                        if OS_THICK:
                                            contrib *= cap[j]
                                        if OS_POLAR:
                                            contrib *= polar[j]
                                        if OS_OMEGA:
                                            contrib *= omega[j]
                                        I[j] += contrib
                for j in range(n):
                    val = scale * I[j]
                    if not OS_THICK:
                        val *= cap[j] if (THICK or OS_THICK) else 1.0
                    if not OS_POLAR:
                        val *= polar[j] if not NOPOLAR else 1.0
                    if not OS_OMEGA:
                        val *= omega[j]
                    idx = idx0 + j
                    if HAS_MASK:
                        if mask[idx] != 0:
                            image[idx] = val
                    else:
                        image[idx] = val
    return render

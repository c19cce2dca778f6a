"""CPU SIMD kernel for ``dtype="float32"`` (mixed precision), vectorised across pixels.

The float64 lanes kernel (:mod:`.cpu_lanes`) walks the loop nest once for a run of
pixels of one row with the pixel loop innermost.  This kernel does the same for runs of
``LANES`` pixels, with the arithmetic split by what the error bound (1e-4 of the image
maximum) needs, and every pass a branch-free loop over the run's lanes rounded up to whole
16-lane vectors (lanes past the run's end compute pixels beyond the row that are never
stored):

1. geometry (float64, per sub-pixel): all pixels of a run lie on one detector row, so a
   lane's position is Fdet f + P with P = Sdet s + Odet o + pix0 the row's origin (per
   run, not per lane); |position|^2 = |P|^2 + Fdet (2 f.P + Fdet |f|^2) (two FMAs; every
   term is at most ~|position|^2 for any detector short of grazing, so the relative error
   stays a few 1e-16); 1/|position| from a float32 reciprocal square root refined by one
   float64 Newton step (:func:`inv_length_newton`, 2e-14).  The solid angle and the
   polarization factor (cos 2theta = i.(Fdet f + P) / |position|) follow per lane.
2. Miller indices (float64, per cell): h = a.q = (a.position / |position| - a.i) / lambda
   = rinv (Fdet alpha_f + alpha_P) - alpha_i, the alphas (a.f, a.P, a.i over lambda) per
   run and cell: two FMAs an axis instead of forming q.  Absolute error of h ~ |a|/lambda
   x 3e-14 ~ 1e-11 (|a|/lambda <= 300), the float64 kernel's to within that: a float32 q
   would err by ~6e-8 absolute in the unit vector, i.e. |a|/lambda * 6e-8 in h, which a
   sharp lattice factor turns into up to 3e-4 of the maximum (docs/gpu.md).  Nearest
   index h0 (C's ceil(h - 1/2) with a structure-factor grid) and d = h - h0 exactly in
   float64 (|d| <= 1/2), rounded once to float32 (|error| <= 3e-8); the grid index (or
   "outside": default_F) per lane.
3. structure factor gather (scalar loads, unsigned indices) on its own, so that the
   other passes vectorise.
4. lattice factor (float32, sixteen lanes a 512-bit vector) of the square shape:
   |sin(N pi d) / sin(pi d)| by :func:`sincg_ratio_active32` (a degree-4 polynomial, no
   branch, no node special case), times F_cell (one float32 rounding).  Error: x = N d - m
   carries ~N * 3e-8 absolute (the rounding of d times N, and of N d), which moves
   sin(pi x) / sin(pi d) by <= pi N * 3e-8 of its maximum N (|sin(pi d)| >= 1/N away from
   the node), plus ~2e-7 relative from the polynomials: F_latt^2 errs by <= ~6e-7 N_max of
   its maximum over the three axes, <= 1e-4 for N <= 150 (observed 1.1e-5 at N = 47,
   pix0_custom_roi).  The other lattice shapes (round, Gaussian, top-hat) keep the
   float64 lattice factor in pass 2 (sinc3 cancels badly in float32 near its centre).
5. accumulation (float64): (F_cell F_latt)^2 squared in float64 (no float32 overflow) and
   added in float64, as C's double sum; the per-pixel factors at the end.

Under ``-round_xtal`` a pixel centred on the direct beam must get q == 0 exactly, as in C
(sinc3 is 1 at 0 and 0 just beside it), so that shape keeps C's IEEE geometry and q
(nbsim.physics "IEEE twins") and h = a.q; the float64 kernel always does.

Handles the options :func:`supports` says (those of the float64 lanes kernel, with
``float32``); the simulator sends the rest to the general kernel.  Bound, tested on the
golden cases in both modes (tests/test_cpu_float32.py): max |float32 - float64| <= 1e-4
of the image maximum (observed <= 1.1e-5, pix0_custom_roi), and likewise against
nanoBragg.c.  Every lane is computed on its own: bit-identical for any thread count.
"""
from __future__ import annotations

import functools

import numba
import numpy as np
from numba.extending import register_jitable

from .. import physics as ph
from .cpu import FASTMATH
from .lanes_truth import (flush_changed, lanes_end, lanes_start, lanes_sum,
                          pack_float)
from .options import SOURCE_STAMP, KernelOptions

# pixels a run: the per-run set-up (panel geometry, the alphas of every cell) is
# amortised over 256 lanes; the scratch rows (13 x 256 float64, 6 x 256 float32 and two
# index rows, 37 KiB)
# stay in L1
LANES = 256

# scratch rows of a run (float64)
(_S_I, _S_POLAR, _S_OMEGA, _S_CAP, _S_DX, _S_DY, _S_DZ, _S_QX, _S_QY, _S_QZ, _S_FL, _S_FD,
 _S_RINV) = range(13)
_NSCRATCH = 13
# runs rendered one after the other by one prange iteration (one scratch allocation)
RUNS_PER_BLOCK = 8
# scratch rows of a run (float32): fractional Miller indices, F_cell F_latt, the gathered
# F_cell and the inside-the-grid flag
(_T_DH, _T_DK, _T_DL, _T_AMP, _T_F, _T_IN) = range(6)
_NSCRATCH32 = 6

_F32 = np.float32
_ZERO = _F32(0.0)
_ONE = _F32(1.0)
_HALF = _F32(0.5)
# sin(pi x) / (pi x) ~ S(x^2) on |x| <= 1/2: degree-4 polynomial in x^2, weighted
# least-squares fit to the relative error (6e-9; Taylor coefficients would need degree 5)
_S0 = _F32(1.0)
_S1 = _F32(-1.6449333429336548)
_S2 = _F32(0.8117163181304932)
_S3 = _F32(-0.19044677913188934)
_S4 = _F32(0.02472374029457569)


def supports(opts: KernelOptions) -> bool:
    """Whether this kernel renders ``opts`` (float32 with the float64 lanes kernel's
    options); with ``opts.carry`` the caller re-renders the carry pixel with the general
    kernel."""
    return (bool(opts.float32) and opts.interp == 0 and not opts.use_dmin
            and not opts.curved and not opts.os_running and not opts.trace
            and not opts.record_oor)


@register_jitable
def sinc_pi_poly32(z):
    """S(z) ~ sin(pi x) / (pi x) for z = x^2, |x| <= 1/2, in float32 (relative error 6e-9
    of the fit, ~1.1e-7 with the float32 roundings)."""
    return _S0 + z * (_S1 + z * (_S2 + z * (_S3 + z * _S4)))


@register_jitable
def sincg_ratio_active32(d, N):
    """(num, den) with |num / den| = |sin(N pi d) / sin(pi d)| for the float32 fractional
    Miller index d = h - round(h) (|d| <= 1/2) and the float32 N >= 1 (N == 1: the ratio
    is exactly 1).  Up to sign: the image needs F_latt^2 only, so the signs (-1)^m of the
    reduction x = N d - m (|x| <= 1/2) and (-1)^((N-1) h0) of the shift by h0 are not
    computed.  Near the node (m == 0) the ratio is N S(x^2) / S(d^2), with no 0/0 at
    d == 0; elsewhere it is x S(x^2) / (d S(d^2)) = sin(pi x) / sin(pi d) (the factors
    1/pi cancel), with |d| >= 1/(2N) away from 0.  No branch: one code path for every
    lane and every N."""
    x = N * d
    m = np.floor(x + _HALF)
    x = x - m
    node = m == _ZERO
    num = (N if node else x) * sinc_pi_poly32(x * x)
    den = (_ONE if node else d) * sinc_pi_poly32(d * d)
    return num, den


@register_jitable
def sincg_ratio32(d, N):
    """:func:`sincg_ratio_active32` for any float32 N: (1, 1) when N <= 1 (the axis does
    not contribute, as in C)."""
    return sincg_ratio_active32(d, N if N > _ONE else _ONE)


@register_jitable
def inv_length_newton(r2):
    """1/sqrt(r2) without a float64 square root or division: a float32 estimate
    (relative error <= 1.2e-7) refined by one float64 Newton step (the error squares:
    <= 1.5 e^2 ~ 2.2e-14).  Sixteen-wide float32 sqrt/div (or the fast-math reciprocal
    square root) cost a fraction of the eight-wide float64 ones."""
    inv = np.float64(_ONE / np.sqrt(_F32(r2)))
    return inv * (1.5 - 0.5 * r2 * inv * inv)


@register_jitable
def unit_direction_newton(x, y, z):
    """(x, y, z) / |v|, |v| and 1/|v| by :func:`inv_length_newton`: the direction keeps
    ~2e-14."""
    r2 = x * x + y * y + z * z
    inv = inv_length_newton(r2)
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
    TRUTH = bool(opts.truth)
    # the nearest lattice point ceil(h - 1/2): for the structure-factor lookup and for the
    # truth (else the lattice factor's reference point rint(h), the same but at exact
    # half-integers, where the even lattice factor is the same)
    NEAREST = HAS_GRID or TRUTH
    SQUARE = SHAPE == ph.SHAPE_SQUARE
    EXACT_GEOMETRY = SHAPE == ph.SHAPE_ROUND
    # the (once per pixel) polarization factor in the geometry pass, from the position;
    # else in a pass per source where it is used: -nopolar drops the factor except under
    # -oversample_polar, which applies it per sub-path all the same (as the other kernels)
    FUSED_POLAR = not (OS_POLAR or KAHN or EXACT_GEOMETRY or NOPOLAR)
    SEPARATE_POLAR = not FUSED_POLAR and (OS_POLAR or not NOPOLAR)
    W = LANES
    STAMP = SOURCE_STAMP      # closure constant: a change of the shared sources recompiles

    @numba.njit(parallel=True, cache=True, fastmath=FASTMATH, nogil=True, error_model="numpy")
    def render(image, chunk_start, chunk_len, ka, truth, run_row):
        """Render runs of pixels: run c starts at raster index chunk_start[c] and covers
        chunk_len[c] (<= LANES) consecutive pixels of one row.  ka: the plan's argument
        bundle (``bundle.KernelArrays``, crystal quantities in float32, geometry float64);
        every run uses the steady-state cell table.  With opts.truth, pixel j of run c
        fills row run_row[c] + j of ``truth`` (``bundle.TruthSlots``) as the float64
        lanes kernel does (emptying the rows it fills)."""
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
        default_F32 = _F32(default_F)
        lat = ka.lattice
        Na = float(lat[0]); Nb = float(lat[1]); Nc = float(lat[2]); fudge = float(lat[3])
        # an axis with N <= 1 does not contribute (C): N = 1 gives the ratio 1 exactly
        Na32 = _F32(max(Na, 1.0)); Nb32 = _F32(max(Nb, 1.0)); Nc32 = _F32(max(Nc, 1.0))
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
        hstridef = float(hstride); kstridef = float(kstride)
        nsrc = src_lambda.shape[0]
        nruns = chunk_start.shape[0]
        nblocks = (nruns + RUNS_PER_BLOCK - 1) // RUNS_PER_BLOCK
        # the slot arrays out of their tuple (Numba's parfor loses stores made through a
        # tuple's field inside the prange body)
        t_key = truth.key
        t_photons = truth.photons
        t_phase = truth.phase
        t_overflow = truth.overflow
        t_cell_phase = truth.cell_phase
        for g in numba.prange(nblocks):
            # scratch rows, one allocation per block of runs: every run writes each
            # row before reading it, so a run's result does not depend on the runs
            # before it, nor on thread scheduling (bit-reproducible).  The compute
            # passes run over the run's n lanes rounded up to whole vectors (lanes past
            # the run's end compute pixels beyond the row, which are never stored); the
            # accumulation and the store over its n pixels.
            s = np.empty((_NSCRATCH, W))
            s32 = np.empty((_NSCRATCH32, W), dtype=np.float32)
            I = s[_S_I]; polar = s[_S_POLAR]; omega = s[_S_OMEGA]; cap = s[_S_CAP]
            dxs = s[_S_DX]; dys = s[_S_DY]; dzs = s[_S_DZ]
            qxs = s[_S_QX]; qys = s[_S_QY]; qzs = s[_S_QZ]
            fls = s[_S_FL]
            fds = s[_S_FD]; rinvs = s[_S_RINV]
            dhs = s32[_T_DH]; dks = s32[_T_DK]; dls = s32[_T_DL]
            amp32 = s32[_T_AMP]
            fgs = s32[_T_F]; ins = s32[_T_IN]
            # truth: per lane the cell's nearest lattice point, the sub-path's photons, the
            # two points being summed and their sums (lanes_truth.lanes_sum)
            st = np.empty((8 if TRUTH else 1, W))
            pks = st[0]
            con = st[1 if TRUTH else 0]
            cur0 = st[2 if TRUTH else 0]
            acc0 = st[3 if TRUTH else 0]
            fz0 = st[4 if TRUTH else 0]
            cur1 = st[5 if TRUTH else 0]
            acc1 = st[6 if TRUTH else 0]
            fz1 = st[7 if TRUTH else 0]
            # unsigned: the gather's index needs no wraparound for negative values
            gis = np.empty(W, dtype=np.uint64)
            jf = np.empty(W)
            for j in range(W):
                jf[j] = j
            for c in range(g * RUNS_PER_BLOCK, min(nruns, (g + 1) * RUNS_PER_BLOCK)):
                idx0 = chunk_start[c]
                n = chunk_len[c]
                # lanes the compute passes cover: n rounded up to whole 16-lane vectors
                # (a short run, at a row's end, does not pay for W lanes)
                nw = (n + 15) // 16 * 16
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
                if TRUTH:
                    lanes_start(n, cur0, acc0, fz0, cur1, acc1, fz1, t_key, t_photons,
                                t_phase, t_overflow, run_row[c])
                osf = float(oversample)
                # source 0's incident direction: the polarization factor is computed once,
                # at the first sub-path (unless oversample_polar)
                ix0 = -src_dir[0, 0]; iy0 = -src_dir[0, 1]; iz0 = -src_dir[0, 2]
                polar_done = False
                omega_done = False
                for t in range(thicksteps):
                    Odet = t * thickstep
                    cap_done = False
                    for subS in range(oversample):
                        Sdet = subpixel_size * (spixel * oversample + subS) + half
                        # the sub-pixel row's origin: position = Fdet fdet + P
                        Px = Sdet * sx + Odet * ox + p0x
                        Py = Sdet * sy + Odet * oy + p0y
                        Pz = Sdet * sz + Odet * oz + p0z
                        # |position|^2 = |P|^2 + Fdet (2 f.P + Fdet |f|^2)
                        PP = Px * Px + Py * Py + Pz * Pz
                        fP2 = 2.0 * (fx * Px + fy * Py + fz * Pz)
                        ff = fx * fx + fy * fy + fz * fz
                        i_f0 = ix0 * fx + iy0 * fy + iz0 * fz
                        i_P0 = ix0 * Px + iy0 * Py + iz0 * Pz
                        for subF in range(oversample):
                            # lane j: fast sub-pixel index xF0 + j oversample (exact, so
                            # a pixel's Fdet does not depend on where its run starts)
                            xF0 = float(fpixel0 * oversample + subF)
                            first = not omega_done
                            for j in range(nw):
                                if EXACT_GEOMETRY:
                                    # C's IEEE arithmetic (nbsim.physics "IEEE twins")
                                    _, _, px, py, pz = ph.subpixel_position_ieee(
                                        subpixel_size, xF0 + jf[j] * osf,
                                        spixel * oversample + subS, half, Odet,
                                        fx, fy, fz, sx, sy, sz, ox, oy, oz, p0x, p0y, p0z)
                                    dxs[j], dys[j], dzs[j], r = ph.unit_direction_ieee(px, py, pz)
                                    if OS_OMEGA or not omega_done:
                                        omega[j] = ph.solid_angle(pixel_size, r, close_distance,
                                                                  POINT)
                                else:
                                    fd = subpixel_size * (xF0 + jf[j] * osf) + half
                                    rinv = inv_length_newton(PP + fd * (fP2 + fd * ff))
                                    fds[j] = fd
                                    rinvs[j] = rinv
                                    if OS_OMEGA or first:
                                        # ph.solid_angle by the reciprocal distance
                                        if POINT:
                                            omega[j] = rinv * rinv
                                        else:
                                            omega[j] = pix2_close * (rinv * rinv * rinv)
                                    if FUSED_POLAR and first:
                                        # cos 2theta = i.d, d = (Fdet f + P) / |position|
                                        c2 = rinv * (fd * i_f0 + i_P0)
                                        polar[j] = 0.5 * (1.0 + c2 * c2)
                            omega_done = True
                            if THICK or OS_THICK:
                                if OS_THICK or not cap_done:
                                    fo = fx * ox + fy * oy + fz * oz
                                    Po = Px * ox + Py * oy + Pz * oz
                                    for j in range(nw):
                                        if EXACT_GEOMETRY:
                                            parallax = dxs[j] * ox + dys[j] * oy + dzs[j] * oz
                                        else:
                                            parallax = rinvs[j] * (fds[j] * fo + Po)
                                        cap[j] = ph.capture_fraction(t, thickstep, mu, parallax)
                                    cap_done = True
                            for src in range(nsrc):
                                ix = -src_dir[src, 0]
                                iy = -src_dir[src, 1]
                                iz = -src_dir[src, 2]
                                lam = src_lambda[src]
                                lam_inv = 1.0 / lam
                                if EXACT_GEOMETRY:
                                    for j in range(nw):
                                        qxs[j], qys[j], qzs[j] = ph.scattering_vector_ieee(
                                            dxs[j], dys[j], dzs[j], ix, iy, iz, lam)
                                if SEPARATE_POLAR and (OS_POLAR or not polar_done):
                                    i_f = ix * fx + iy * fy + iz * fz
                                    i_P = ix * Px + iy * Py + iz * Pz
                                    for j in range(nw):
                                        if EXACT_GEOMETRY or KAHN:
                                            if EXACT_GEOMETRY:
                                                dx = dxs[j]; dy = dys[j]; dz = dzs[j]
                                            else:
                                                rv = rinvs[j]; fd = fds[j]
                                                dx = (fd * fx + Px) * rv
                                                dy = (fd * fy + Py) * rv
                                                dz = (fd * fz + Pz) * rv
                                            polar[j] = ph.polarization_factor(
                                                kahn, ix, iy, iz, dx, dy, dz, pax, pay, paz)
                                        else:
                                            c2 = rinvs[j] * (fds[j] * i_f + i_P)
                                            polar[j] = 0.5 * (1.0 + c2 * c2)
                                    polar_done = True
                                for cidx in range(ncell):
                                    cl = cells[cidx]
                                    a0 = cl[0]; a1 = cl[1]; a2 = cl[2]
                                    b0 = cl[3]; b1 = cl[4]; b2 = cl[5]
                                    c0 = cl[6]; c1 = cl[7]; c2_ = cl[8]
                                    # h = a.q = (a.position / |position| - a.i) / lambda with
                                    # a.position = Fdet a.fdet + a.P: per lane two FMAs an axis
                                    haf = (a0 * fx + a1 * fy + a2 * fz) * lam_inv
                                    haP = (a0 * Px + a1 * Py + a2 * Pz) * lam_inv
                                    hai = (a0 * ix + a1 * iy + a2 * iz) * lam_inv
                                    kaf = (b0 * fx + b1 * fy + b2 * fz) * lam_inv
                                    kaP = (b0 * Px + b1 * Py + b2 * Pz) * lam_inv
                                    kai = (b0 * ix + b1 * iy + b2 * iz) * lam_inv
                                    laf = (c0 * fx + c1 * fy + c2_ * fz) * lam_inv
                                    laP = (c0 * Px + c1 * Py + c2_ * Pz) * lam_inv
                                    lai = (c0 * ix + c1 * iy + c2_ * iz) * lam_inv
                                    # pass 1 (float64): Miller indices, their fractional
                                    # parts, the grid index
                                    for j in range(nw):
                                        if EXACT_GEOMETRY:
                                            qx = qxs[j]; qy = qys[j]; qz = qzs[j]
                                            h = a0 * qx + a1 * qy + a2 * qz
                                            k = b0 * qx + b1 * qy + b2 * qz
                                            l = c0 * qx + c1 * qy + c2_ * qz
                                        else:
                                            rv = rinvs[j]; fd = fds[j]
                                            h = rv * (fd * haf + haP) - hai
                                            k = rv * (fd * kaf + kaP) - kai
                                            l = rv * (fd * laf + laP) - lai
                                        if NEAREST:
                                            # C's nearest index ceil(h - 1/2); also the
                                            # reference for the fraction (|d| <= 1/2)
                                            hr = np.ceil(h - 0.5)
                                            kr = np.ceil(k - 0.5)
                                            lr = np.ceil(l - 0.5)
                                        else:
                                            hr = np.rint(h)
                                            kr = np.rint(k)
                                            lr = np.rint(l)
                                        if TRUTH:
                                            # the kernel's nearest lattice point
                                            pks[j] = pack_float(hr, kr, lr)
                                        if SQUARE:
                                            dhs[j] = _F32(h - hr)
                                            dks[j] = _F32(k - kr)
                                            dls[j] = _F32(l - lr)
                                        else:
                                            fls[j] = ph.lattice_factor(SHAPE, h, k, l, Na, Nb, Nc,
                                                                       fudge, ast)
                                        if HAS_GRID:
                                            inside = (hr >= hminf) & (hr <= hmaxf) & (kr >= kminf) \
                                                & (kr <= kmaxf) & (lr >= lminf) & (lr <= lmaxf)
                                            gi = (hr - hminf) * hstridef + (kr - kminf) * kstridef \
                                                + (lr - lminf)
                                            # always a valid index; outside: default_F
                                            gis[j] = np.uint64(gi if inside else 0.0)
                                            ins[j] = _ONE if inside else _ZERO
                                    if HAS_GRID:
                                        # the structure-factor gather on its own (scalar
                                        # loads), so that the other passes vectorise
                                        for j in range(nw):
                                            fgs[j] = Fflat[gis[j]]
                                    if SQUARE:
                                        # pass 2 (float32, 16 lanes a vector): the lattice factor
                                        for j in range(nw):
                                            nh, dh = sincg_ratio_active32(dhs[j], Na32)
                                            nk, dk = sincg_ratio_active32(dks[j], Nb32)
                                            nl, dl = sincg_ratio_active32(dls[j], Nc32)
                                            fl = (nh * nk * nl) / (dh * dk * dl)
                                            if HAS_GRID:
                                                fc32 = fgs[j] if ins[j] != _ZERO else default_F32
                                            else:
                                                fc32 = default_F32
                                            # squared in float64 (pass 3): no float32
                                            # overflow short of |F_cell F_latt| ~ 3e38
                                            amp32[j] = fl * fc32
                                    # pass 3: structure factor (a gather; outside the grid
                                    # default_F) and the float64 accumulation
                                    for j in range(n):
                                        if SQUARE:
                                            amp = float(amp32[j])
                                            contrib = amp * amp
                                        else:
                                            if HAS_GRID:
                                                fg = float(fgs[j])
                                                fc = fg if ins[j] != _ZERO else default_F
                                            else:
                                                fc = default_F
                                            contrib = fc * fc * (fls[j] * fls[j])
                                        if OS_THICK:
                                            contrib *= cap[j]
                                        if OS_POLAR:
                                            contrib *= polar[j]
                                        if OS_OMEGA:
                                            contrib *= omega[j]
                                        I[j] += contrib
                                        if TRUTH:
                                            con[j] = contrib
                                    if TRUTH:
                                        cp = t_cell_phase[cidx]
                                        if lanes_sum(n, pks, con, cp, cur0, acc0, fz0,
                                                     cur1, acc1, fz1) != 0.0:
                                            flush_changed(n, pks, con, cp, cur0, acc0, fz0,
                                                          cur1, acc1, fz1, t_key, t_photons,
                                                          t_phase, t_overflow, run_row[c])
                out = image[idx0:idx0 + n]
                if HAS_MASK:
                    run_mask = mask[idx0:idx0 + n]
                for j in range(n):
                    val = scale * I[j]
                    if not OS_THICK:
                        val *= cap[j] if (THICK or OS_THICK) else 1.0
                    if not OS_POLAR:
                        val *= polar[j] if not NOPOLAR else 1.0
                    if not OS_OMEGA:
                        val *= omega[j]
                    if TRUTH:
                        # the pixel's final factors on its slots, as on its value
                        f = scale
                        if not OS_THICK:
                            f *= cap[j] if (THICK or OS_THICK) else 1.0
                        if not OS_POLAR:
                            f *= polar[j] if not NOPOLAR else 1.0
                        if not OS_OMEGA:
                            f *= omega[j]
                        lanes_end(j, cur0, acc0, fz0, cur1, acc1, fz1, t_key, t_photons,
                                  t_phase, t_overflow, run_row[c] + j, f)
                    if HAS_MASK:
                        if run_mask[j] != 0:
                            out[j] = val
                    else:
                        out[j] = val
    return render

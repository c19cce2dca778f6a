"""CPU adjoint kernel vectorised across pixels ("lanes"), the companion of
:mod:`nbsim.kernels.cpu_lanes`.

A thread takes a run of up to ``LANES`` consecutive pixels of one detector row and walks
the loop nest once for all of them.  The innermost loop (over the lanes, for one cell-table
entry) is branch-free and call-free: the lattice factor and its derivatives use the
delta-reduced form with polynomial sines and cosines (:func:`sq_axis`), the structure
factor a gather, and the cell / N / eta gradients are reductions, so LLVM emits SIMD code
for it as it does for the forward.  Everything per sub-pixel or per pixel (positions,
solid angle, polarization, capture fraction and their gradients) is ordinary code per
lane.

It handles the SQUARE shape with nearest-neighbour structure factors, any oversampling
(including the per-contribution ``-oversample_*`` factors of the default mode), sources,
phi x mosaic tables, sensor layers, polarization and masks; the other cases (other shapes,
tricubic interpolation, ``-dmin``, curved detector, c-parity carry-over or running sums)
run in the scalar adjoint (:mod:`.adjoint_cpu`).  Both give the same result to rounding.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba.extending import register_jitable

from .. import physics as ph
from ..kernels.cpu import FASTMATH
from . import core
from . import dphysics as dp
from ..kernels.cpu_lanes import LANES, chunks  # same pixel runs as the forward

_KERNELS = {}

(_G, _W, _I, _FPIX, _FDET, _DX, _DY, _DZ, _R, _OM, _OMX, _OMY, _OMZ, _OMC, _CF, _CFP,
 _QX, _QY, _QZ, _POL, _POLX, _POLY, _POLZ, _FLOC, _QBX, _QBY, _QBZ, _FBAR, _GDX, _GDY,
 _GDZ, _GPX, _GPY, _GPZ, _WF, _GI, _OMPIX, _CAPPIX, _POLPIX,
 _P0X, _P0Y, _P0Z, _P0R, _PLX, _PLY, _PLZ, _PLR, _PAX, _PAY, _PAZ, _PCF, _PCX, _PCY, _PCZ,
 _PCC, _F0) = range(56)
NSCRATCH = 56


@register_jitable(inline="always")
def cos_pi_small(x):
    """cos(pi x) for |x| <= 1/2, as sin(pi (1/2 - |x|)) by the forward's polynomial."""
    return ph.sin_pi_small(0.5 - abs(x))


@register_jitable(inline="always")
def sq_axis(h, N, act, actN, c2, c4, c6):
    """Branch-free SQUARE factor and derivatives (see :func:`dphysics.d_square_axis`):
    value, d/dh, d/dN.  ``act`` = 1 when N > 1 (else the factor is 1), ``actN`` = 1 when
    N >= 1; c2, c4, c6 are the series coefficients of sin(Nx)/sin(x)."""
    d = h - np.floor(h + 0.5)
    nd = N * d
    m = np.floor(nd + 0.5)
    y = nd - m
    sg = 1.0 - 2.0 * (m - 2.0 * np.floor(0.5 * m))
    sN = sg * ph.sin_pi_small(y)
    cN = sg * cos_pi_small(y)
    s = ph.sin_pi_small(d)
    c = cos_pi_small(d)
    # arithmetic selects (no branches, so the caller's loop vectorises)
    node = 1.0 * (d == 0.0)
    inv = 1.0 / (s + node * (1.0 - s))
    f = sN * inv + node * N
    x = math.pi * d
    dclosed = (N * cN - f * c) * inv
    x2 = x * x
    dser = x * (2.0 * c2 + x2 * (4.0 * c4 + x2 * 6.0 * c6))
    small = 1.0 * (abs(N * x) < 0.05)
    dfx = dclosed + small * (dser - dclosed)
    dN = x * cN * inv + node
    return act * f + (1.0 - act), act * math.pi * dfx, actN * dN


def supports(opts) -> bool:
    """Whether the lanes adjoint handles these options (else the scalar adjoint)."""
    return (opts.shape == 0 and opts.interp == 0 and not opts.use_dmin and not opts.curved
            and not opts.carry and not opts.os_running)


def get_kernel(has_grid: bool, want_eta: bool):
    key = (bool(has_grid), bool(want_eta))
    k = _KERNELS.get(key)
    if k is None:
        k = _build(*key)
        _KERNELS[key] = k
    return k


def _series(N):
    n2 = N * N
    base = N * (n2 - 1.0)
    return (-base / 6.0, base * (3.0 * n2 - 7.0) / 360.0,
            -base * (3.0 * n2 * n2 - 18.0 * n2 + 31.0) / 15120.0)


def _build(HAS_GRID, WANT_ETA):
    A_HKL, A_N, A_LAM, A_SCALE = core.A_HKL, core.A_N, core.A_LAM, core.A_SCALE
    A_IBG, A_ETA, A_DEFF, A_PIX0 = core.A_IBG, core.A_ETA, core.A_DEFF, core.A_PIX0
    A_FDET, A_SDET, A_ODET, A_CLOSE = core.A_FDET, core.A_SDET, core.A_ODET, core.A_CLOSE

    @numba.njit(parallel=True, cache=True, fastmath=FASTMATH, nogil=True, error_model="numpy")
    def adjoint(cot, image, chunk_start, chunk_len, ka, has_mask, src_dlam, dcells, iopt,
                series, acc, gF, scratch):
        # ka: the plan's argument bundle (kernels.bundle.KernelArrays); every run uses the
        # steady-state cell table
        fpixels = ka.fpixels
        mask = ka.mask
        geom = ka.geom
        subpixel_size = ka.subpixel_size
        oversample = ka.oversample
        thicksteps = ka.thicksteps
        src_dir = ka.src_dir
        src_lambda = ka.src_lambda
        cells = ka.cells[1]
        ncell = ka.ncell
        ast = ka.ast
        Fgrid = ka.Fgrid
        fgrid_meta = ka.fgrid_meta
        default_F = ka.default_F
        hkls = ka.hkls
        lattice = ka.lattice
        scalars = ka.scalars
        OS_THICK = iopt[core.O_OS_THICK] != 0
        OS_POLAR = iopt[core.O_OS_POLAR] != 0
        OS_OMEGA = iopt[core.O_OS_OMEGA] != 0
        POINT = iopt[core.O_POINT] != 0
        KAHN = iopt[core.O_KAHN] != 0
        NOPOLAR = iopt[core.O_NOPOLAR] != 0
        THICK = iopt[core.O_THICK] != 0
        WANT_F = iopt[core.O_WANT_F] != 0
        p0x = geom[0]; p0y = geom[1]; p0z = geom[2]
        fx = geom[3]; fy = geom[4]; fz = geom[5]
        sx = geom[6]; sy = geom[7]; sz = geom[8]
        ox = geom[9]; oy = geom[10]; oz = geom[11]
        pax = geom[15]; pay = geom[16]; paz = geom[17]
        close_distance = geom[19]
        pixel_size = geom[20]
        thickstep = geom[21]
        mu = geom[22]
        kahn = geom[23]
        Na = lattice[0]; Nb = lattice[1]; Nc = lattice[2]
        act_a = 1.0 if Na > 1.0 else 0.0
        act_b = 1.0 if Nb > 1.0 else 0.0
        act_c = 1.0 if Nc > 1.0 else 0.0
        actN_a = 1.0 if Na >= 1.0 else 0.0
        actN_b = 1.0 if Nb >= 1.0 else 0.0
        actN_c = 1.0 if Nc >= 1.0 else 0.0
        a2 = series[0]; a4 = series[1]; a6 = series[2]
        b2 = series[3]; b4 = series[4]; b6 = series[5]
        e2 = series[6]; e4 = series[7]; e6 = series[8]
        I_bg = scalars[0]
        scale = scalars[1]
        h_min = fgrid_meta[0]; k_min = fgrid_meta[1]; l_min = fgrid_meta[2]
        h_max = fgrid_meta[3]; k_max = fgrid_meta[4]; l_max = fgrid_meta[5]
        kstride = Fgrid.shape[2]
        hstride = Fgrid.shape[1] * kstride
        Fflat = Fgrid.ravel()
        nsrc = src_lambda.shape[0]
        half = subpixel_size / 2.0
        for cnk in numba.prange(chunk_start.shape[0]):
            tid = numba.get_thread_id()
            s = scratch[tid]
            a = acc[tid]
            gFt = gF[tid if WANT_F else 0].ravel()
            Gs = s[_G]; Ws = s[_W]; I = s[_I]; fpix = s[_FPIX]; Fds = s[_FDET]
            dxs = s[_DX]; dys = s[_DY]; dzs = s[_DZ]; Rs = s[_R]
            om = s[_OM]; omx = s[_OMX]; omy = s[_OMY]; omz = s[_OMZ]; omc = s[_OMC]
            cf = s[_CF]; cfp = s[_CFP]
            qxs = s[_QX]; qys = s[_QY]; qzs = s[_QZ]
            pol = s[_POL]; polx = s[_POLX]; poly = s[_POLY]; polz = s[_POLZ]
            floc = s[_FLOC]
            qbx = s[_QBX]; qby = s[_QBY]; qbz = s[_QBZ]; fbar = s[_FBAR]
            gdx = s[_GDX]; gdy = s[_GDY]; gdz = s[_GDZ]
            gpx = s[_GPX]; gpy = s[_GPY]; gpz = s[_GPZ]
            wfs = s[_WF]; gis = s[_GI]
            ompix = s[_OMPIX]; cappix = s[_CAPPIX]; polpix = s[_POLPIX]
            idx0 = chunk_start[cnk]
            n = chunk_len[cnk]
            spixel = idx0 // fpixels
            fpixel0 = idx0 - spixel * fpixels
            F0s = s[_F0]
            p0xs = s[_P0X]; p0ys = s[_P0Y]; p0zs = s[_P0Z]; p0rs = s[_P0R]
            plxs = s[_PLX]; plys = s[_PLY]; plzs = s[_PLZ]; plrs = s[_PLR]
            pgx = s[_PAX]; pgy = s[_PAY]; pgz = s[_PAZ]
            pcf = s[_PCF]; ogx = s[_PCX]; ogy = s[_PCY]; ogz = s[_PCZ]; ogc = s[_PCC]
            S0 = subpixel_size * (spixel * oversample) + half
            tl = thicksteps - 1
            Ol = tl * thickstep
            # the factors applied once per pixel: omega and polarization at the first
            # sub-pixel (first source), the capture fraction at the first sub-pixel of the
            # last layer -- where the forward computes them
            for j in range(n):
                idx = idx0 + j
                fpix[j] = fpixel0 + j
                I[j] = I_bg
                G = cot[idx]
                if has_mask:
                    if mask[idx] == 0:
                        G = 0.0
                Gs[j] = G
                F0 = subpixel_size * (fpix[j] * oversample) + half
                F0s[j] = F0
                px = F0 * fx + S0 * sx + p0x
                py = F0 * fy + S0 * sy + p0y
                pz = F0 * fz + S0 * sz + p0z
                r = math.sqrt(px * px + py * py + pz * pz)
                p0xs[j] = px / r; p0ys[j] = py / r; p0zs[j] = pz / r; p0rs[j] = r
                if OS_OMEGA:
                    ompix[j] = 1.0
                else:
                    o1, o2, o3, o4, o5 = dp.d_solid_angle(pixel_size, px, py, pz, r,
                                                          close_distance, POINT)
                    ompix[j] = o1; ogx[j] = o2; ogy[j] = o3; ogz[j] = o4; ogc[j] = o5
                if OS_POLAR or NOPOLAR:
                    polpix[j] = 1.0
                else:
                    p1, p2, p3, p4 = dp.d_polarization(
                        kahn, KAHN, -src_dir[0, 0], -src_dir[0, 1], -src_dir[0, 2],
                        p0xs[j], p0ys[j], p0zs[j], pax, pay, paz)
                    polpix[j] = p1; pgx[j] = p2; pgy[j] = p3; pgz[j] = p4
                if THICK and not OS_THICK:
                    px = F0 * fx + S0 * sx + Ol * ox + p0x
                    py = F0 * fy + S0 * sy + Ol * oy + p0y
                    pz = F0 * fz + S0 * sz + Ol * oz + p0z
                    r = math.sqrt(px * px + py * py + pz * pz)
                    plxs[j] = px / r; plys[j] = py / r; plzs[j] = pz / r; plrs[j] = r
                    c1, c2 = dp.d_capture_fraction(
                        tl, thickstep, mu, plxs[j] * ox + plys[j] * oy + plzs[j] * oz)
                    cappix[j] = c1; pcf[j] = c2
                else:
                    cappix[j] = 1.0
                Ws[j] = G * scale * (cappix[j] * polpix[j] * ompix[j])
            A00 = 0.0; A01 = 0.0; A02 = 0.0
            A10 = 0.0; A11 = 0.0; A12 = 0.0
            A20 = 0.0; A21 = 0.0; A22 = 0.0
            gNa = 0.0; gNb = 0.0; gNc = 0.0
            geta = 0.0
            gdef = 0.0
            glam = 0.0
            gclose = 0.0
            g0x = 0.0; g0y = 0.0; g0z = 0.0
            gfx = 0.0; gfy = 0.0; gfz = 0.0
            gsx = 0.0; gsy = 0.0; gsz = 0.0
            gox = 0.0; goy = 0.0; goz = 0.0
            for t in range(thicksteps):
                Odet = t * thickstep
                for subS in range(oversample):
                    Sdet = subpixel_size * (spixel * oversample + subS) + half
                    for subF in range(oversample):
                        for j in range(n):
                            Fdet = subpixel_size * (fpix[j] * oversample + subF) + half
                            Fds[j] = Fdet
                            px = Fdet * fx + Sdet * sx + Odet * ox + p0x
                            py = Fdet * fy + Sdet * sy + Odet * oy + p0y
                            pz = Fdet * fz + Sdet * sz + Odet * oz + p0z
                            r = math.sqrt(px * px + py * py + pz * pz)
                            Rs[j] = r
                            dxs[j] = px / r
                            dys[j] = py / r
                            dzs[j] = pz / r
                            gdx[j] = 0.0; gdy[j] = 0.0; gdz[j] = 0.0
                            gpx[j] = 0.0; gpy[j] = 0.0; gpz[j] = 0.0
                            om[j] = 1.0
                            cf[j] = 1.0
                        if OS_OMEGA:
                            for j in range(n):
                                r = Rs[j]
                                o1, o2, o3, o4, o5 = dp.d_solid_angle(
                                    pixel_size, dxs[j] * r, dys[j] * r, dzs[j] * r, r,
                                    close_distance, POINT)
                                om[j] = o1; omx[j] = o2; omy[j] = o3; omz[j] = o4; omc[j] = o5
                        if OS_THICK:
                            for j in range(n):
                                c1, c2 = dp.d_capture_fraction(
                                    t, thickstep, mu, dxs[j] * ox + dys[j] * oy + dzs[j] * oz)
                                cf[j] = c1; cfp[j] = c2
                        for src in range(nsrc):
                            ix = -src_dir[src, 0]
                            iy = -src_dir[src, 1]
                            iz = -src_dir[src, 2]
                            lam = src_lambda[src]
                            inv_lam = 1.0 / lam
                            for j in range(n):
                                qxs[j] = (dxs[j] - ix) * inv_lam
                                qys[j] = (dys[j] - iy) * inv_lam
                                qzs[j] = (dzs[j] - iz) * inv_lam
                                qbx[j] = 0.0; qby[j] = 0.0; qbz[j] = 0.0; fbar[j] = 0.0
                                pol[j] = 1.0
                                floc[j] = cf[j] * om[j]
                            if OS_POLAR:
                                for j in range(n):
                                    p1, p2, p3, p4 = dp.d_polarization(
                                        kahn, KAHN, ix, iy, iz, dxs[j], dys[j], dzs[j],
                                        pax, pay, paz)
                                    pol[j] = p1; polx[j] = p2; poly[j] = p3; polz[j] = p4
                                    floc[j] *= p1
                            for cidx in range(ncell):
                                ca0 = cells[cidx, 0]; ca1 = cells[cidx, 1]; ca2 = cells[cidx, 2]
                                cb0 = cells[cidx, 3]; cb1 = cells[cidx, 4]; cb2 = cells[cidx, 5]
                                cc0 = cells[cidx, 6]; cc1 = cells[cidx, 7]; cc2 = cells[cidx, 8]
                                if WANT_ETA:
                                    ea0 = dcells[cidx, 0]; ea1 = dcells[cidx, 1]
                                    ea2 = dcells[cidx, 2]; eb0 = dcells[cidx, 3]
                                    eb1 = dcells[cidx, 4]; eb2 = dcells[cidx, 5]
                                    ec0 = dcells[cidx, 6]; ec1 = dcells[cidx, 7]
                                    ec2 = dcells[cidx, 8]
                                for j in range(n):
                                    qx = qxs[j]; qy = qys[j]; qz = qzs[j]
                                    h = ca0 * qx + ca1 * qy + ca2 * qz
                                    k = cb0 * qx + cb1 * qy + cb2 * qz
                                    l = cc0 * qx + cc1 * qy + cc2 * qz
                                    fa, fa_h, fa_N = sq_axis(h, Na, act_a, actN_a, a2, a4, a6)
                                    fb, fb_k, fb_N = sq_axis(k, Nb, act_b, actN_b, b2, b4, b6)
                                    fc, fc_l, fc_N = sq_axis(l, Nc, act_c, actN_c, e2, e4, e6)
                                    fbc = fb * fc
                                    fl = fa * fbc
                                    if HAS_GRID:
                                        h0 = np.ceil(h - 0.5)
                                        k0 = np.ceil(k - 0.5)
                                        l0 = np.ceil(l - 0.5)
                                        inside = (h0 >= h_min) & (h0 <= h_max) & (k0 >= k_min) \
                                            & (k0 <= k_max) & (l0 >= l_min) & (l0 <= l_max)
                                        gi = 0
                                        if inside:
                                            gi = ((int(h0) - h_min) * hstride
                                                  + (int(k0) - k_min) * kstride
                                                  + (int(l0) - l_min))
                                        Fc = Fflat[gi] if inside else default_F
                                    else:
                                        Fc = default_F
                                    c = Fc * Fc * fl * fl
                                    fo = floc[j]
                                    I[j] += c * fo
                                    fbar[j] += c
                                    ww = Ws[j] * fo
                                    tF = 2.0 * Fc * fl
                                    t2 = ww * tF * Fc
                                    wh = t2 * fa_h * fbc
                                    wk = t2 * fa * fb_k * fc
                                    wl = t2 * fa * fb * fc_l
                                    A00 += wh * h; A01 += wh * k; A02 += wh * l
                                    A10 += wk * h; A11 += wk * k; A12 += wk * l
                                    A20 += wl * h; A21 += wl * k; A22 += wl * l
                                    qbx[j] += wh * ca0 + wk * cb0 + wl * cc0
                                    qby[j] += wh * ca1 + wk * cb1 + wl * cc1
                                    qbz[j] += wh * ca2 + wk * cb2 + wl * cc2
                                    gNa += t2 * fa_N * fbc
                                    gNb += t2 * fa * fb_N * fc
                                    gNc += t2 * fa * fb * fc_N
                                    if WANT_ETA:
                                        geta += (wh * (ea0 * qx + ea1 * qy + ea2 * qz)
                                                 + wk * (eb0 * qx + eb1 * qy + eb2 * qz)
                                                 + wl * (ec0 * qx + ec1 * qy + ec2 * qz))
                                    wF = ww * tF * fl
                                    if HAS_GRID:
                                        wfs[j] = wF if inside else 0.0
                                        gis[j] = gi
                                        gdef += 0.0 if inside else wF
                                    else:
                                        gdef += wF
                                if HAS_GRID:
                                    if WANT_F:
                                        for j in range(n):
                                            if wfs[j] != 0.0:
                                                gFt[int(gis[j])] += wfs[j]
                            for j in range(n):
                                gdx[j] += qbx[j] * inv_lam
                                gdy[j] += qby[j] * inv_lam
                                gdz[j] += qbz[j] * inv_lam
                                glam -= ((qbx[j] * qxs[j] + qby[j] * qys[j] + qbz[j] * qzs[j])
                                         * inv_lam * src_dlam[src])
                            if OS_THICK or OS_POLAR or OS_OMEGA:
                                for j in range(n):
                                    fb_ = Ws[j] * fbar[j]
                                    if OS_POLAR:
                                        k_ = fb_ * cf[j] * om[j]
                                        gdx[j] += k_ * polx[j]
                                        gdy[j] += k_ * poly[j]
                                        gdz[j] += k_ * polz[j]
                                    if OS_THICK:
                                        k_ = fb_ * pol[j] * om[j] * cfp[j]
                                        gdx[j] += k_ * ox; gdy[j] += k_ * oy; gdz[j] += k_ * oz
                                        gox += k_ * dxs[j]
                                        goy += k_ * dys[j]
                                        goz += k_ * dzs[j]
                                    if OS_OMEGA:
                                        k_ = fb_ * cf[j] * pol[j]
                                        gpx[j] += k_ * omx[j]
                                        gpy[j] += k_ * omy[j]
                                        gpz[j] += k_ * omz[j]
                                        gclose += k_ * omc[j]
                        # d = pos / |pos|, pos = pix0 + Fdet f + Sdet s + Odet o
                        for j in range(n):
                            dx = dxs[j]; dy = dys[j]; dz = dzs[j]; r = Rs[j]
                            dgd = dx * gdx[j] + dy * gdy[j] + dz * gdz[j]
                            ux = gpx[j] + (gdx[j] - dx * dgd) / r
                            uy = gpy[j] + (gdy[j] - dy * dgd) / r
                            uz = gpz[j] + (gdz[j] - dz * dgd) / r
                            Fd = Fds[j]
                            g0x += ux; g0y += uy; g0z += uz
                            gfx += Fd * ux; gfy += Fd * uy; gfz += Fd * uz
                            gsx += Sdet * ux; gsy += Sdet * uy; gsz += Sdet * uz
                            gox += Odet * ux; goy += Odet * uy; goz += Odet * uz
            for j in range(n):
                idx = idx0 + j
                val = scale * I[j]
                if not OS_THICK:
                    val *= cappix[j]
                if not OS_POLAR:
                    val *= polpix[j]
                if not OS_OMEGA:
                    val *= ompix[j]
                if has_mask:
                    if mask[idx] != 0:
                        image[idx] = val
                else:
                    image[idx] = val
                G = Gs[j]
                Gsi = G * scale * I[j]
                F0 = F0s[j]
                ux = 0.0; uy = 0.0; uz = 0.0
                if not OS_OMEGA:
                    k_ = Gsi * cappix[j] * polpix[j]
                    ux += k_ * ogx[j]; uy += k_ * ogy[j]; uz += k_ * ogz[j]
                    gclose += k_ * ogc[j]
                if not (OS_POLAR or NOPOLAR):
                    k_ = Gsi * cappix[j] * ompix[j]
                    dx = p0xs[j]; dy = p0ys[j]; dz = p0zs[j]; r = p0rs[j]
                    vx = k_ * pgx[j]; vy = k_ * pgy[j]; vz = k_ * pgz[j]
                    dgd = dx * vx + dy * vy + dz * vz
                    ux += (vx - dx * dgd) / r; uy += (vy - dy * dgd) / r
                    uz += (vz - dz * dgd) / r
                g0x += ux; g0y += uy; g0z += uz
                gfx += F0 * ux; gfy += F0 * uy; gfz += F0 * uz
                gsx += S0 * ux; gsy += S0 * uy; gsz += S0 * uz
                if THICK and not OS_THICK:
                    k_ = Gsi * polpix[j] * ompix[j] * pcf[j]
                    dx = plxs[j]; dy = plys[j]; dz = plzs[j]; r = plrs[j]
                    gox += k_ * dx; goy += k_ * dy; goz += k_ * dz
                    dgd = dx * ox + dy * oy + dz * oz
                    ux = k_ * (ox - dx * dgd) / r
                    uy = k_ * (oy - dy * dgd) / r
                    uz = k_ * (oz - dz * dgd) / r
                    g0x += ux; g0y += uy; g0z += uz
                    gfx += F0 * ux; gfy += F0 * uy; gfz += F0 * uz
                    gsx += S0 * ux; gsy += S0 * uy; gsz += S0 * uz
                    gox += Ol * ux; goy += Ol * uy; goz += Ol * uz
                a[A_SCALE] += G * cappix[j] * polpix[j] * ompix[j] * I[j]
                a[A_IBG] += Ws[j]
            a[A_HKL] += A00; a[A_HKL + 1] += A01; a[A_HKL + 2] += A02
            a[A_HKL + 3] += A10; a[A_HKL + 4] += A11; a[A_HKL + 5] += A12
            a[A_HKL + 6] += A20; a[A_HKL + 7] += A21; a[A_HKL + 8] += A22
            a[A_N] += gNa; a[A_N + 1] += gNb; a[A_N + 2] += gNc
            a[A_ETA] += geta
            a[A_DEFF] += gdef
            a[A_LAM] += glam
            a[A_CLOSE] += gclose
            a[A_PIX0] += g0x; a[A_PIX0 + 1] += g0y; a[A_PIX0 + 2] += g0z
            a[A_FDET] += gfx; a[A_FDET + 1] += gfy; a[A_FDET + 2] += gfz
            a[A_SDET] += gsx; a[A_SDET + 1] += gsy; a[A_SDET + 2] += gsz
            a[A_ODET] += gox; a[A_ODET + 1] += goy; a[A_ODET + 2] += goz
    return adjoint


def run(sim, cot, kin, nthreads):
    """Launch; returns (acc summed, gF summed or None, flat image)."""
    p = sim.plan
    sp, fp = p.detector.spixels, p.detector.fpixels
    want_F = kin["iopt"][core.O_WANT_F] != 0
    want_eta = kin["iopt"][core.O_WANT_ETA] != 0
    has_grid = p.hkls != 0
    starts, lens = chunks(p.pixel_index, fp)
    lat = p.lattice
    series = np.array(_series(lat[0]) + _series(lat[1]) + _series(lat[2]))
    acc = np.zeros((nthreads, core.NACC))
    gF = np.zeros((nthreads,) + p.Fgrid.shape) if want_F else np.zeros((1, 1, 1, 1))
    scratch = np.zeros((nthreads, NSCRATCH, LANES))
    image = np.zeros(sp * fp)
    dcells = kin["dcells"][1] if want_eta else np.zeros((1, 9))
    kern = get_kernel(has_grid, want_eta)
    kern(cot, image, starts, lens, p.kernel_arrays(), bool(p.options.has_mask),
         kin["src_dlam"], np.ascontiguousarray(dcells), kin["iopt"], series, acc, gF, scratch)
    return acc.sum(axis=0), (gF.sum(axis=0) if want_F else None), image

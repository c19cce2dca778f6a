"""The per-pixel adjoint, shared by the CPU and CUDA kernels.

For one pixel and its cotangent ``G`` this re-runs the forward loop nest of
:mod:`nbsim.kernels.cpu` (layers x sub-pixels x sources x cell table entries) and adds
``G * d(pixel)/d(q)`` for every *plan quantity* q into ``acc`` (layout below) and,
when asked, ``G * d(pixel)/d(F)`` into the structure-factor grid gradient.  It returns
the pixel value, which equals the forward kernel's to rounding.

Plan quantities (what the kernel sees, not the user's parameters):

==========  ====  ===================================================================
``PIX0``      3   detector origin (m)
``FDET``      3   fast axis (unit vector, used as given)
``SDET``      3   slow axis
``ODET``      3   normal
``DIST``      1   distance (curved detector only)
``CLOSE``     1   close distance (solid angle)
``HKL``       9   A[i, j] = sum G dI/dh_i * h_j  over every contribution (i, j = h, k, l);
                  the gradient w.r.t. the reference cell R0 (rows a0, b0, c0) is
                  A @ inv(R0).T, whatever the phi / mosaic / carry-over tables did
                  (each table entry is a fixed linear map of R0)
``AST``       9   a*, b*, c* (1/A) as the GAUSS shape uses them
``N``         3   Na, Nb, Nc
``LAM``       1   sum over sources of dL/dlambda_s * src_dlam[s]
``SCALE``     1   dL/dscale (scale = r_e^2 fluence / steps)
``IBG``       1   dL/dI_bg (water background)
``ETA``       1   sum over contributions of dL/dh . (dcells . q): the derivative along the
                  direction ``dcells`` of the cell tables (mosaic spread)
``DEFF``      1   dL/d default_F
==========  ====  ===================================================================

Multiplicative factors (solid angle, polarization, capture fraction) follow the forward
exactly: a factor that is not oversampled is the value C computed last (omega at the
pixel's first sub-pixel, polarization at its first sub-path that passes the dmin cut,
capture fraction at the first sub-pixel of the last layer), and its derivative is taken
there.  In c-parity with ``-oversample_*`` (factors multiplying the running sum) a
pre-pass sums the logs of the factors, so that the weight of each contribution, the
product of all later factors, is ``exp(L_all - L_prefix)`` (no underflow, no division).
"""
from __future__ import annotations

import math

from numba.extending import register_jitable

from .. import physics as ph
from . import dphysics as dp

# accumulator layout
A_PIX0 = 0
A_FDET = 3
A_SDET = 6
A_ODET = 9
A_DIST = 12
A_CLOSE = 13
A_HKL = 14
A_AST = 23
A_N = 32
A_LAM = 35
A_SCALE = 36
A_IBG = 37
A_ETA = 38
A_DEFF = 39
NACC = 40

# option vector layout (int64)
O_SHAPE = 0
O_INTERP = 1          # 0 nearest, 1 tricubic with per-evaluation fallback, 2 C's global switch
O_OS_THICK = 2
O_OS_POLAR = 3
O_OS_OMEGA = 4
O_RUNNING = 5
O_CURVED = 6
O_POINT = 7
O_NOPOLAR = 8
O_DMIN = 9
O_CARRY = 10
O_WATER = 11
O_KAHN = 12
O_THICK = 13
O_WANT_F = 14
O_WANT_ETA = 15
O_HAS_MASK = 16
NOPT = 17


@register_jitable
def subpixel_pos(geom, fpixel, spixel, subS, subF, t, subpixel_size, oversample, curved):
    """Lab position of a sub-pixel exactly as the forward computes it.

    Returns (posx, posy, posz, Fdet, Sdet, Odet, flat_y, flat_z); flat_* are the flat
    detector's y and z, which the curved detector maps to arc lengths."""
    Odet = t * geom[21]
    Fdet = subpixel_size * (fpixel * oversample + subF) + subpixel_size / 2.0
    Sdet = subpixel_size * (spixel * oversample + subS) + subpixel_size / 2.0
    posx = Fdet * geom[3] + Sdet * geom[6] + Odet * geom[9] + geom[0]
    posy = Fdet * geom[4] + Sdet * geom[7] + Odet * geom[10] + geom[1]
    posz = Fdet * geom[5] + Sdet * geom[8] + Odet * geom[11] + geom[2]
    flat_y = posy
    flat_z = posz
    if curved:
        distance = geom[18]
        sx = geom[6]; sy = geom[7]; sz = geom[8]
        fx = geom[3]; fy = geom[4]; fz = geom[5]
        vx = distance * geom[12]
        vy = distance * geom[13]
        vz = distance * geom[14]
        ang = posy / distance
        cs = math.cos(ang); sn = math.sin(ang)
        dt = (sx * vx + sy * vy + sz * vz) * (1.0 - cs)
        nx = sx * dt + vx * cs + (-sz * vy + sy * vz) * sn
        ny = sy * dt + vy * cs + (sz * vx - sx * vz) * sn
        nz = sz * dt + vz * cs + (-sy * vx + sx * vy) * sn
        ang = posz / distance
        cs = math.cos(ang); sn = math.sin(ang)
        dt = (fx * nx + fy * ny + fz * nz) * (1.0 - cs)
        posx = fx * dt + nx * cs + (-fz * ny + fy * nz) * sn
        posy = fy * dt + ny * cs + (fz * nx - fx * nz) * sn
        posz = fz * dt + nz * cs + (-fy * nx + fx * ny) * sn
    return posx, posy, posz, Fdet, Sdet, Odet, flat_y, flat_z


@register_jitable
def pos_vjp(geom, Fdet, Sdet, Odet, flat_y, flat_z, curved, gx, gy, gz, acc):
    """Add the gradient of a sub-pixel position (cotangent g) to the detector quantities."""
    if curved:
        distance = geom[18]
        bx = geom[12]; by = geom[13]; bz = geom[14]
        sx = geom[6]; sy = geom[7]; sz = geom[8]
        fx = geom[3]; fy = geom[4]; fz = geom[5]
        vx = distance * bx
        vy = distance * by
        vz = distance * bz
        ang1 = flat_y / distance
        cs = math.cos(ang1); sn = math.sin(ang1)
        dt = (sx * vx + sy * vy + sz * vz) * (1.0 - cs)
        nx = sx * dt + vx * cs + (-sz * vy + sy * vz) * sn
        ny = sy * dt + vy * cs + (sz * vx - sx * vz) * sn
        nz = sz * dt + vz * cs + (-sy * vx + sx * vy) * sn
        ang2 = flat_z / distance
        nbx, nby, nbz, fbx, fby, fbz, tb2 = dp.rodrigues_vjp(nx, ny, nz, fx, fy, fz, ang2,
                                                             gx, gy, gz)
        vbx, vby, vbz, sbx, sby, sbz, tb1 = dp.rodrigues_vjp(vx, vy, vz, sx, sy, sz, ang1,
                                                             nbx, nby, nbz)
        acc[A_FDET] += fbx
        acc[A_FDET + 1] += fby
        acc[A_FDET + 2] += fbz
        acc[A_SDET] += sbx
        acc[A_SDET + 1] += sby
        acc[A_SDET + 2] += sbz
        acc[A_DIST] += (bx * vbx + by * vby + bz * vbz
                        - (tb1 * flat_y + tb2 * flat_z) / (distance * distance))
        gx = 0.0
        gy = tb1 / distance
        gz = tb2 / distance
    acc[A_PIX0] += gx
    acc[A_PIX0 + 1] += gy
    acc[A_PIX0 + 2] += gz
    acc[A_FDET] += Fdet * gx
    acc[A_FDET + 1] += Fdet * gy
    acc[A_FDET + 2] += Fdet * gz
    acc[A_SDET] += Sdet * gx
    acc[A_SDET + 1] += Sdet * gy
    acc[A_SDET + 2] += Sdet * gz
    acc[A_ODET] += Odet * gx
    acc[A_ODET + 1] += Odet * gy
    acc[A_ODET + 2] += Odet * gz


@register_jitable
def lattice_grad(shape, h, k, l, Na, Nb, Nc, fudge, ast):
    """F_latt and its derivatives.

    Returns (f, df/dh, df/dk, df/dl, df/dNa, df/dNb, df/dNc, gcoef, Dx, Dy, Dz, dh, dk, dl):
    for GAUSS, df/d(a*_j) = gcoef * D_j * dh (b*: dk, c*: dl); gcoef is 0 otherwise.
    TOPHAT's edges are steps: the derivative inside is that of Na Nb Nc, 0 elsewhere."""
    if shape == 0:
        fa, fa_h, fa_N = dp.d_square_axis(h, Na)
        fb, fb_k, fb_N = dp.d_square_axis(k, Nb)
        fc, fc_l, fc_N = dp.d_square_axis(l, Nc)
        f = fa * fb * fc
        return (f, fa_h * fb * fc, fa * fb_k * fc, fa * fb * fc_l,
                fa_N * fb * fc, fa * fb_N * fc, fa * fb * fc_N,
                0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    h0 = math.ceil(h - 0.5)
    k0 = math.ceil(k - 0.5)
    l0 = math.ceil(l - 0.5)
    dh = h - h0
    dk = k - k0
    dl = l - l0
    if shape == 1:
        f, fh, fk, fl, fNa, fNb, fNc = dp.d_round(dh, dk, dl, Na, Nb, Nc, fudge)
        return f, fh, fk, fl, fNa, fNb, fNc, 0.0, 0.0, 0.0, 0.0, dh, dk, dl
    Dx = dh * ast[0] + dk * ast[3] + dl * ast[6]
    Dy = dh * ast[1] + dk * ast[4] + dl * ast[7]
    Dz = dh * ast[2] + dk * ast[5] + dl * ast[8]
    NNN2 = Na * Na * Nb * Nb * Nc * Nc
    rad = (Dx * Dx + Dy * Dy + Dz * Dz) * Na * Na * Nb * Nb * Nc * Nc
    if shape == 2:
        E = math.exp(-(rad / 0.63 * fudge))
        f = Na * Nb * Nc * E
        dfdrad = -f * fudge / 0.63
        g = dfdrad * 2.0 * NNN2
        fh = g * (Dx * ast[0] + Dy * ast[1] + Dz * ast[2])
        fk = g * (Dx * ast[3] + Dy * ast[4] + Dz * ast[5])
        fl = g * (Dx * ast[6] + Dy * ast[7] + Dz * ast[8])
        fNa = Nb * Nc * E + dfdrad * 2.0 * rad / Na
        fNb = Na * Nc * E + dfdrad * 2.0 * rad / Nb
        fNc = Na * Nb * E + dfdrad * 2.0 * rad / Nc
        return f, fh, fk, fl, fNa, fNb, fNc, g, Dx, Dy, Dz, dh, dk, dl
    if rad * fudge < 0.3969:
        return (Na * Nb * Nc, 0.0, 0.0, 0.0, Nb * Nc, Na * Nc, Na * Nb,
                0.0, 0.0, 0.0, 0.0, dh, dk, dl)
    return 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, dh, dk, dl


@register_jitable
def pixel_factors(idx, fpixels, geom, subpixel_size, oversample, thicksteps, src_dir,
                  src_lambda, iopt):
    """The factors applied once per pixel (those not oversampled), where the forward
    computes them: (omega, capfrac, cap_subS, cap_subF, polar, pol_t, pol_subS, pol_subF,
    pol_src); pol_t = -1 when the polarization is not a per-pixel factor."""
    OS_THICK = iopt[O_OS_THICK] != 0
    OS_POLAR = iopt[O_OS_POLAR] != 0
    OS_OMEGA = iopt[O_OS_OMEGA] != 0
    CURVED = iopt[O_CURVED] != 0
    POINT = iopt[O_POINT] != 0
    NOPOLAR = iopt[O_NOPOLAR] != 0
    USE_DMIN = iopt[O_DMIN] != 0
    KAHN = iopt[O_KAHN] != 0
    THICK = iopt[O_THICK] != 0
    ox = geom[9]; oy = geom[10]; oz = geom[11]
    pax = geom[15]; pay = geom[16]; paz = geom[17]
    close_distance = geom[19]
    pixel_size = geom[20]
    thickstep = geom[21]
    mu = geom[22]
    kahn = geom[23]
    dmin = geom[24]
    nsrc = src_lambda.shape[0]
    fpixel = idx % fpixels
    spixel = idx // fpixels
    om_pix = 1.0
    cap_pix = 1.0
    pol_pix = 1.0
    if not OS_OMEGA:
        px, py, pz, _, _, _, _, _ = subpixel_pos(geom, fpixel, spixel, 0, 0, 0,
                                                 subpixel_size, oversample, CURVED)
        R = math.sqrt(px * px + py * py + pz * pz)
        om_pix = ph.solid_angle(pixel_size, R, close_distance, POINT)
    cap_S = 0
    cap_F = 0
    if THICK and not OS_THICK:
        cap_pix = 0.0
        tl = thicksteps - 1
        for subS in range(oversample):
            for subF in range(oversample):
                if cap_pix == 0.0:
                    px, py, pz, _, _, _, _, _ = subpixel_pos(
                        geom, fpixel, spixel, subS, subF, tl, subpixel_size, oversample,
                        CURVED)
                    R = math.sqrt(px * px + py * py + pz * pz)
                    par = (px * ox + py * oy + pz * oz) / R
                    cap_pix = ph.capture_fraction(tl, thickstep, mu, par)
                    cap_S = subS
                    cap_F = subF
    pol_t = -1
    pol_S = 0
    pol_F = 0
    pol_src = 0
    if not NOPOLAR and not OS_POLAR:
        pol_pix = 0.0
        for t in range(thicksteps):
            for subS in range(oversample):
                for subF in range(oversample):
                    if pol_pix != 0.0:
                        continue
                    px, py, pz, _, _, _, _, _ = subpixel_pos(
                        geom, fpixel, spixel, subS, subF, t, subpixel_size, oversample,
                        CURVED)
                    R = math.sqrt(px * px + py * py + pz * pz)
                    dx = px / R; dy = py / R; dz = pz / R
                    for src in range(nsrc):
                        if pol_pix != 0.0:
                            continue
                        ix = -src_dir[src, 0]
                        iy = -src_dir[src, 1]
                        iz = -src_dir[src, 2]
                        if USE_DMIN:
                            lam = src_lambda[src]
                            qx = (dx - ix) / lam
                            qy = (dy - iy) / lam
                            qz = (dz - iz) / lam
                            stol = 0.5 * math.sqrt(qx * qx + qy * qy + qz * qz)
                            if stol > 0.0:
                                if dmin > 0.5 / stol:
                                    continue
                        if KAHN:
                            pol_pix = ph.polarization_factor(kahn, ix, iy, iz, dx, dy, dz,
                                                             pax, pay, paz)
                        else:
                            c2 = ix * dx + iy * dy + iz * dz
                            pol_pix = 0.5 * (1.0 + c2 * c2)
                        pol_t = t
                        pol_S = subS
                        pol_F = subF
                        pol_src = src
    return om_pix, cap_pix, cap_S, cap_F, pol_pix, pol_t, pol_S, pol_F, pol_src


@register_jitable
def running_prepass(idx, fpixels, geom, subpixel_size, oversample, thicksteps, src_dir,
                    src_lambda, cells, ncell, ast, lattice, carry_pixel, iopt):
    """c-parity running sum: (sum of log factor over every executed contribution, number
    of zero factors)."""
    SHAPE = iopt[O_SHAPE]
    OS_THICK = iopt[O_OS_THICK] != 0
    OS_POLAR = iopt[O_OS_POLAR] != 0
    OS_OMEGA = iopt[O_OS_OMEGA] != 0
    CURVED = iopt[O_CURVED] != 0
    POINT = iopt[O_POINT] != 0
    USE_DMIN = iopt[O_DMIN] != 0
    CARRY = iopt[O_CARRY] != 0
    HAS_WATER = iopt[O_WATER] != 0
    KAHN = iopt[O_KAHN] != 0
    ox = geom[9]; oy = geom[10]; oz = geom[11]
    pax = geom[15]; pay = geom[16]; paz = geom[17]
    close_distance = geom[19]
    pixel_size = geom[20]
    thickstep = geom[21]
    mu = geom[22]
    kahn = geom[23]
    dmin = geom[24]
    Na = lattice[0]; Nb = lattice[1]; Nc = lattice[2]; fudge = lattice[3]
    nsrc = src_lambda.shape[0]
    fpixel = idx % fpixels
    spixel = idx // fpixels
    L_all = 0.0
    nz_all = 0
    fresh = CARRY and idx == carry_pixel
    polar = 0.0
    for t in range(thicksteps):
        for subS in range(oversample):
            for subF in range(oversample):
                px, py, pz, _, _, _, _, _ = subpixel_pos(
                    geom, fpixel, spixel, subS, subF, t, subpixel_size, oversample, CURVED)
                R = math.sqrt(px * px + py * py + pz * pz)
                dx = px / R; dy = py / R; dz = pz / R
                om = 1.0
                cf = 1.0
                if OS_OMEGA:
                    om = ph.solid_angle(pixel_size, R, close_distance, POINT)
                if OS_THICK:
                    cf = ph.capture_fraction(t, thickstep, mu, dx * ox + dy * oy + dz * oz)
                for src in range(nsrc):
                    ix = -src_dir[src, 0]
                    iy = -src_dir[src, 1]
                    iz = -src_dir[src, 2]
                    lam = src_lambda[src]
                    qx = (dx - ix) / lam
                    qy = (dy - iy) / lam
                    qz = (dz - iz) / lam
                    if USE_DMIN:
                        stol = 0.5 * math.sqrt(qx * qx + qy * qy + qz * qz)
                        if stol > 0.0:
                            if dmin > 0.5 / stol:
                                continue
                    floc = 1.0
                    if OS_THICK:
                        floc *= cf
                    if OS_POLAR:
                        if KAHN:
                            polar = ph.polarization_factor(kahn, ix, iy, iz, dx, dy, dz,
                                                           pax, pay, paz)
                        else:
                            c2 = ix * dx + iy * dy + iz * dz
                            polar = 0.5 * (1.0 + c2 * c2)
                        floc *= polar
                    if OS_OMEGA:
                        floc *= om
                    tab = 1
                    if CARRY:
                        if fresh:
                            tab = 0
                        fresh = False
                    lf = 0.0
                    if floc > 0.0:
                        lf = math.log(floc)
                    for cidx in range(ncell):
                        if not HAS_WATER:
                            h = (cells[tab, cidx, 0] * qx + cells[tab, cidx, 1] * qy
                                 + cells[tab, cidx, 2] * qz)
                            k = (cells[tab, cidx, 3] * qx + cells[tab, cidx, 4] * qy
                                 + cells[tab, cidx, 5] * qz)
                            l = (cells[tab, cidx, 6] * qx + cells[tab, cidx, 7] * qy
                                 + cells[tab, cidx, 8] * qz)
                            fl, _, _, _, _, _, _, _, _, _, _, _, _, _ = lattice_grad(
                                SHAPE, h, k, l, Na, Nb, Nc, fudge, ast)
                            if fl == 0.0:
                                continue
                        if floc > 0.0:
                            L_all += lf
                        else:
                            nz_all += 1
    return L_all, nz_all


@register_jitable
def pixel_factor_grads(idx, fpixels, geom, subpixel_size, oversample, thicksteps, src_dir,
                       Gs, om_pix, cap_pix, cap_S, cap_F, pol_pix, pol_t, pol_S, pol_F,
                       pol_src, iopt, acc):
    """Gradient of the factors applied once per pixel (solid angle, capture fraction,
    polarization, where :func:`pixel_factors` located them); ``Gs`` = G * scale * I."""
    OS_THICK = iopt[O_OS_THICK] != 0
    OS_OMEGA = iopt[O_OS_OMEGA] != 0
    CURVED = iopt[O_CURVED] != 0
    POINT = iopt[O_POINT] != 0
    KAHN = iopt[O_KAHN] != 0
    THICK = iopt[O_THICK] != 0
    ox = geom[9]; oy = geom[10]; oz = geom[11]
    pax = geom[15]; pay = geom[16]; paz = geom[17]
    close_distance = geom[19]
    pixel_size = geom[20]
    thickstep = geom[21]
    mu = geom[22]
    kahn = geom[23]
    fpixel = idx % fpixels
    spixel = idx // fpixels
    if not OS_OMEGA:
        k_ = Gs * cap_pix * pol_pix
        px, py, pz, Fdet, Sdet, Odet, fly, flz = subpixel_pos(
            geom, fpixel, spixel, 0, 0, 0, subpixel_size, oversample, CURVED)
        R = math.sqrt(px * px + py * py + pz * pz)
        _, om_x, om_y, om_z, om_c = dp.d_solid_angle(pixel_size, px, py, pz, R,
                                                     close_distance, POINT)
        acc[A_CLOSE] += k_ * om_c
        pos_vjp(geom, Fdet, Sdet, Odet, fly, flz, CURVED, k_ * om_x, k_ * om_y, k_ * om_z, acc)
    if THICK and not OS_THICK:
        tl = thicksteps - 1
        px, py, pz, Fdet, Sdet, Odet, fly, flz = subpixel_pos(
            geom, fpixel, spixel, cap_S, cap_F, tl, subpixel_size, oversample, CURVED)
        R = math.sqrt(px * px + py * py + pz * pz)
        dx = px / R; dy = py / R; dz = pz / R
        _, cf_p = dp.d_capture_fraction(tl, thickstep, mu, dx * ox + dy * oy + dz * oz)
        k_ = Gs * pol_pix * om_pix * cf_p
        acc[A_ODET] += k_ * dx
        acc[A_ODET + 1] += k_ * dy
        acc[A_ODET + 2] += k_ * dz
        dgd = dx * ox + dy * oy + dz * oz
        pos_vjp(geom, Fdet, Sdet, Odet, fly, flz, CURVED, k_ * (ox - dx * dgd) / R,
                k_ * (oy - dy * dgd) / R, k_ * (oz - dz * dgd) / R, acc)
    if pol_t >= 0:
        k_ = Gs * cap_pix * om_pix
        px, py, pz, Fdet, Sdet, Odet, fly, flz = subpixel_pos(
            geom, fpixel, spixel, pol_S, pol_F, pol_t, subpixel_size, oversample, CURVED)
        R = math.sqrt(px * px + py * py + pz * pz)
        dx = px / R; dy = py / R; dz = pz / R
        _, gdx, gdy, gdz = dp.d_polarization(kahn, KAHN, -src_dir[pol_src, 0],
                                             -src_dir[pol_src, 1], -src_dir[pol_src, 2],
                                             dx, dy, dz, pax, pay, paz)
        gdx *= k_; gdy *= k_; gdz *= k_
        dgd = dx * gdx + dy * gdy + dz * gdz
        pos_vjp(geom, Fdet, Sdet, Odet, fly, flz, CURVED, (gdx - dx * dgd) / R,
                (gdy - dy * dgd) / R, (gdz - dz * dgd) / R, acc)


def make_pixel_adjoint(scatter):
    """Build the per-pixel adjoint around ``scatter(gF, slot, i, j, k, value)`` (adds
    ``value`` to the F-grid gradient: a plain add per thread slot on the CPU, an atomic
    add on the GPU)."""

    @register_jitable
    def scatter_tricubic(gF, slot, h, k, l, fgrid_meta, coef):
        ih = int(math.floor(h)) - 1 - fgrid_meta[0]
        ik = int(math.floor(k)) - 1 - fgrid_meta[1]
        il = int(math.floor(l)) - 1 - fgrid_meta[2]
        a0, a1, a2, a3, _, _, _, _ = dp.lagrange4(h - math.floor(h))
        b0, b1, b2, b3, _, _, _, _ = dp.lagrange4(k - math.floor(k))
        c0, c1, c2, c3, _, _, _, _ = dp.lagrange4(l - math.floor(l))
        for i in range(4):
            wa = coef * dp.pick4(i, a0, a1, a2, a3)
            for j in range(4):
                wab = wa * dp.pick4(j, b0, b1, b2, b3)
                scatter(gF, slot, ih + i, ik + j, il, wab * c0)
                scatter(gF, slot, ih + i, ik + j, il + 1, wab * c1)
                scatter(gF, slot, ih + i, ik + j, il + 2, wab * c2)
                scatter(gF, slot, ih + i, ik + j, il + 3, wab * c3)

    @register_jitable
    def cells_adjoint(tab, qx, qy, qz, floc, lf, W, I, Lpre, nzpre, L_all, nz_all, interp_on,
                      cells, dcells, ncell, ast, Fgrid, fgrid_meta, default_F, hkls, lattice,
                      iopt, acc, gF, slot):
        """All cell-table entries of one sub-path (sub-pixel, source): adds the lattice,
        structure-factor and cell gradients into ``acc`` / ``gF`` and returns
        (I, fbar, Lpre, nzpre, interp_on, dL/dq (3)); fbar is the adjoint of the sub-path's
        oversampled factor product, divided by W."""
        SHAPE = iopt[O_SHAPE]
        INTERP = iopt[O_INTERP]
        RUNNING = iopt[O_RUNNING] != 0
        HAS_WATER = iopt[O_WATER] != 0
        WANT_F = iopt[O_WANT_F] != 0
        WANT_ETA = iopt[O_WANT_ETA] != 0
        Na = lattice[0]; Nb = lattice[1]; Nc = lattice[2]; fudge = lattice[3]
        h_min = fgrid_meta[0]; k_min = fgrid_meta[1]; l_min = fgrid_meta[2]
        h_max = fgrid_meta[3]; k_max = fgrid_meta[4]; l_max = fgrid_meta[5]
        h_range = fgrid_meta[6]; k_range = fgrid_meta[7]; l_range = fgrid_meta[8]
        A00 = 0.0; A01 = 0.0; A02 = 0.0
        A10 = 0.0; A11 = 0.0; A12 = 0.0
        A20 = 0.0; A21 = 0.0; A22 = 0.0
        gNa = 0.0; gNb = 0.0; gNc = 0.0
        gS0 = 0.0; gS1 = 0.0; gS2 = 0.0; gS3 = 0.0; gS4 = 0.0
        gS5 = 0.0; gS6 = 0.0; gS7 = 0.0; gS8 = 0.0
        geta = 0.0
        gdef = 0.0
        qbx = 0.0; qby = 0.0; qbz = 0.0
        fbar = 0.0
        for cidx in range(ncell):
            c0x = cells[tab, cidx, 0]; c0y = cells[tab, cidx, 1]; c0z = cells[tab, cidx, 2]
            c1x = cells[tab, cidx, 3]; c1y = cells[tab, cidx, 4]; c1z = cells[tab, cidx, 5]
            c2x = cells[tab, cidx, 6]; c2y = cells[tab, cidx, 7]; c2z = cells[tab, cidx, 8]
            h = c0x * qx + c0y * qy + c0z * qz
            k = c1x * qx + c1y * qy + c1z * qz
            l = c2x * qx + c2y * qy + c2z * qz
            (fl, fl_h, fl_k, fl_l, fl_Na, fl_Nb, fl_Nc, gco, Dx, Dy, Dz,
             ddh, ddk, ddl) = lattice_grad(SHAPE, h, k, l, Na, Nb, Nc, fudge, ast)
            if not HAS_WATER:
                if fl == 0.0:
                    continue
            h0 = int(math.ceil(h - 0.5))
            k0 = int(math.ceil(k - 0.5))
            l0 = int(math.ceil(l - 0.5))
            use_interp = False
            if INTERP != 0:
                if interp_on:
                    if ph.interp_in_range(h, k, l, h_min, k_min, l_min,
                                          h_range, k_range, l_range):
                        use_interp = True
                    elif INTERP == 2:
                        interp_on = False
            F_h = 0.0; F_k = 0.0; F_l = 0.0
            on_grid = False
            if use_interp:
                Fc, F_h, F_k, F_l = dp.d_tricubic(
                    Fgrid, int(math.floor(h)) - 1 - h_min, int(math.floor(k)) - 1 - k_min,
                    int(math.floor(l)) - 1 - l_min, h, k, l)
            else:
                on_grid = (hkls != 0 and h0 <= h_max and h0 >= h_min and k0 <= k_max
                           and k0 >= k_min and l0 <= l_max and l0 >= l_min)
                if on_grid:
                    Fc = Fgrid[h0 - h_min, k0 - k_min, l0 - l_min]
                else:
                    Fc = default_F
            c = Fc * Fc * fl * fl
            if RUNNING:
                wc = 0.0
                if nz_all - nzpre == 0:
                    wc = math.exp(L_all - Lpre)
                Ic = I + c
                I = Ic * floc
                if floc > 0.0:
                    Lpre += lf
                else:
                    nzpre += 1
                if nz_all - nzpre == 0:
                    fbar += Ic * math.exp(L_all - Lpre)
            else:
                wc = floc
                fbar += c
                I += c * floc
            ww = W * wc
            # dc = 2 F fl (fl dF + F dfl)
            tF = 2.0 * Fc * fl
            wh = ww * tF * (fl * F_h + Fc * fl_h)
            wk = ww * tF * (fl * F_k + Fc * fl_k)
            wl = ww * tF * (fl * F_l + Fc * fl_l)
            A00 += wh * h; A01 += wh * k; A02 += wh * l
            A10 += wk * h; A11 += wk * k; A12 += wk * l
            A20 += wl * h; A21 += wl * k; A22 += wl * l
            qbx += wh * c0x + wk * c1x + wl * c2x
            qby += wh * c0y + wk * c1y + wl * c2y
            qbz += wh * c0z + wk * c1z + wl * c2z
            wN = ww * tF * Fc
            gNa += wN * fl_Na
            gNb += wN * fl_Nb
            gNc += wN * fl_Nc
            if SHAPE == 2:
                wg = wN * gco
                gS0 += wg * Dx * ddh; gS1 += wg * Dy * ddh; gS2 += wg * Dz * ddh
                gS3 += wg * Dx * ddk; gS4 += wg * Dy * ddk; gS5 += wg * Dz * ddk
                gS6 += wg * Dx * ddl; gS7 += wg * Dy * ddl; gS8 += wg * Dz * ddl
            if WANT_ETA:
                eh = (dcells[tab, cidx, 0] * qx + dcells[tab, cidx, 1] * qy
                      + dcells[tab, cidx, 2] * qz)
                ek = (dcells[tab, cidx, 3] * qx + dcells[tab, cidx, 4] * qy
                      + dcells[tab, cidx, 5] * qz)
                el = (dcells[tab, cidx, 6] * qx + dcells[tab, cidx, 7] * qy
                      + dcells[tab, cidx, 8] * qz)
                geta += wh * eh + wk * ek + wl * el
            # dc/dF = 2 F fl^2
            wF = ww * tF * fl
            if use_interp:
                if WANT_F:
                    scatter_tricubic(gF, slot, h, k, l, fgrid_meta, wF)
            elif on_grid:
                if WANT_F:
                    scatter(gF, slot, h0 - h_min, k0 - k_min, l0 - l_min, wF)
            else:
                gdef += wF
        acc[A_HKL] += A00; acc[A_HKL + 1] += A01; acc[A_HKL + 2] += A02
        acc[A_HKL + 3] += A10; acc[A_HKL + 4] += A11; acc[A_HKL + 5] += A12
        acc[A_HKL + 6] += A20; acc[A_HKL + 7] += A21; acc[A_HKL + 8] += A22
        if SHAPE == 2:
            acc[A_AST] += gS0; acc[A_AST + 1] += gS1; acc[A_AST + 2] += gS2
            acc[A_AST + 3] += gS3; acc[A_AST + 4] += gS4; acc[A_AST + 5] += gS5
            acc[A_AST + 6] += gS6; acc[A_AST + 7] += gS7; acc[A_AST + 8] += gS8
        acc[A_N] += gNa
        acc[A_N + 1] += gNb
        acc[A_N + 2] += gNc
        acc[A_ETA] += geta
        acc[A_DEFF] += gdef
        return I, fbar, Lpre, nzpre, interp_on, qbx, qby, qbz

    @register_jitable
    def pixel_adjoint(idx, G, ka, src_dlam, dcells, carry_pixel, switch_pixel, iopt, acc, gF,
                      slot):
        """One pixel: adds G * d(pixel)/d(plan quantities) into ``acc`` (and ``gF``) and
        returns the pixel's value.  ka: the plan's argument bundle
        (``kernels.bundle.KernelArrays``); src_dlam, dcells: the gradient's own inputs."""
        fpixels = ka.fpixels
        geom = ka.geom
        subpixel_size = ka.subpixel_size
        oversample = ka.oversample
        thicksteps = ka.thicksteps
        src_dir = ka.src_dir
        src_lambda = ka.src_lambda
        cells = ka.cells
        ncell = ka.ncell
        ast = ka.ast
        Fgrid = ka.Fgrid
        fgrid_meta = ka.fgrid_meta
        default_F = ka.default_F
        hkls = ka.hkls
        lattice = ka.lattice
        scalars = ka.scalars
        INTERP = iopt[O_INTERP]
        OS_THICK = iopt[O_OS_THICK] != 0
        OS_POLAR = iopt[O_OS_POLAR] != 0
        OS_OMEGA = iopt[O_OS_OMEGA] != 0
        RUNNING = iopt[O_RUNNING] != 0
        CURVED = iopt[O_CURVED] != 0
        POINT = iopt[O_POINT] != 0
        USE_DMIN = iopt[O_DMIN] != 0
        CARRY = iopt[O_CARRY] != 0
        KAHN = iopt[O_KAHN] != 0
        THICK = iopt[O_THICK] != 0
        OS_ANY = OS_THICK or OS_POLAR or OS_OMEGA
        ox = geom[9]; oy = geom[10]; oz = geom[11]
        pax = geom[15]; pay = geom[16]; paz = geom[17]
        close_distance = geom[19]
        pixel_size = geom[20]
        thickstep = geom[21]
        mu = geom[22]
        kahn = geom[23]
        dmin = geom[24]
        I_bg = scalars[0]
        scale = scalars[1]
        nsrc = src_lambda.shape[0]
        fpixel = idx % fpixels
        spixel = idx // fpixels

        (om_pix, cap_pix, cap_S, cap_F, pol_pix, pol_t, pol_S, pol_F,
         pol_src) = pixel_factors(idx, fpixels, geom, subpixel_size, oversample, thicksteps,
                                  src_dir, src_lambda, iopt)
        f_pix = cap_pix * pol_pix * om_pix
        W = G * scale * f_pix
        L_all = 0.0
        nz_all = 0
        if RUNNING:
            L_all, nz_all = running_prepass(idx, fpixels, geom, subpixel_size, oversample,
                                            thicksteps, src_dir, src_lambda, cells, ncell,
                                            ast, lattice, carry_pixel, iopt)

        I = I_bg
        Lpre = 0.0
        nzpre = 0
        fresh = CARRY and idx == carry_pixel
        interp_on = INTERP != 0
        if INTERP == 2:
            interp_on = idx <= switch_pixel
        glam = 0.0
        gclose = 0.0
        for t in range(thicksteps):
            for subS in range(oversample):
                for subF in range(oversample):
                    px, py, pz, Fdet, Sdet, Odet, fly, flz = subpixel_pos(
                        geom, fpixel, spixel, subS, subF, t, subpixel_size, oversample, CURVED)
                    R = math.sqrt(px * px + py * py + pz * pz)
                    dx = px / R; dy = py / R; dz = pz / R
                    om = 1.0
                    om_x = 0.0; om_y = 0.0; om_z = 0.0; om_c = 0.0
                    cf = 1.0
                    cf_p = 0.0
                    if OS_OMEGA:
                        om, om_x, om_y, om_z, om_c = dp.d_solid_angle(
                            pixel_size, px, py, pz, R, close_distance, POINT)
                    if OS_THICK:
                        cf, cf_p = dp.d_capture_fraction(t, thickstep, mu,
                                                         dx * ox + dy * oy + dz * oz)
                    # gradients w.r.t. the unit direction d and the position, this sub-pixel
                    gdx = 0.0; gdy = 0.0; gdz = 0.0
                    gpx = 0.0; gpy = 0.0; gpz = 0.0
                    for src in range(nsrc):
                        ix = -src_dir[src, 0]
                        iy = -src_dir[src, 1]
                        iz = -src_dir[src, 2]
                        lam = src_lambda[src]
                        qx = (dx - ix) / lam
                        qy = (dy - iy) / lam
                        qz = (dz - iz) / lam
                        if USE_DMIN:
                            stol = 0.5 * math.sqrt(qx * qx + qy * qy + qz * qz)
                            if stol > 0.0:
                                if dmin > 0.5 / stol:
                                    continue
                        polar = 1.0
                        pol_x = 0.0; pol_y = 0.0; pol_z = 0.0
                        floc = 1.0
                        if OS_THICK:
                            floc *= cf
                        if OS_POLAR:
                            polar, pol_x, pol_y, pol_z = dp.d_polarization(
                                kahn, KAHN, ix, iy, iz, dx, dy, dz, pax, pay, paz)
                            floc *= polar
                        if OS_OMEGA:
                            floc *= om
                        tab = 1
                        if CARRY:
                            if fresh:
                                tab = 0
                            fresh = False
                        lf = 0.0
                        if RUNNING and floc > 0.0:
                            lf = math.log(floc)
                        I, fbar, Lpre, nzpre, interp_on, qbx, qby, qbz = cells_adjoint(
                            tab, qx, qy, qz, floc, lf, W, I, Lpre, nzpre, L_all, nz_all,
                            interp_on, cells, dcells, ncell, ast, Fgrid, fgrid_meta,
                            default_F, hkls, lattice, iopt, acc, gF, slot)
                        # q = (d - i) / lambda
                        gdx += qbx / lam
                        gdy += qby / lam
                        gdz += qbz / lam
                        glam -= (qbx * qx + qby * qy + qbz * qz) / lam * src_dlam[src]
                        # the oversampled factors of this sub-path (product floc)
                        if OS_ANY:
                            fb = W * fbar
                            if OS_POLAR:
                                k_ = fb * cf * om
                                gdx += k_ * pol_x; gdy += k_ * pol_y; gdz += k_ * pol_z
                            if OS_THICK:
                                k_ = fb * polar * om * cf_p
                                gdx += k_ * ox; gdy += k_ * oy; gdz += k_ * oz
                                acc[A_ODET] += k_ * dx
                                acc[A_ODET + 1] += k_ * dy
                                acc[A_ODET + 2] += k_ * dz
                            if OS_OMEGA:
                                k_ = fb * cf * polar
                                gpx += k_ * om_x; gpy += k_ * om_y; gpz += k_ * om_z
                                gclose += k_ * om_c
                    # d = pos / |pos|
                    dgd = dx * gdx + dy * gdy + dz * gdz
                    gpx += (gdx - dx * dgd) / R
                    gpy += (gdy - dy * dgd) / R
                    gpz += (gdz - dz * dgd) / R
                    pos_vjp(geom, Fdet, Sdet, Odet, fly, flz, CURVED, gpx, gpy, gpz, acc)

        val = scale * I
        if not OS_THICK:
            val *= cap_pix
        if not OS_POLAR:
            val *= pol_pix
        if not OS_OMEGA:
            val *= om_pix

        # ------------------------------------------------ the once-per-pixel factors
        pixel_factor_grads(idx, fpixels, geom, subpixel_size, oversample, thicksteps, src_dir,
                           G * scale * I, om_pix, cap_pix, cap_S, cap_F, pol_pix, pol_t,
                           pol_S, pol_F, pol_src, iopt, acc)
        acc[A_CLOSE] += gclose
        acc[A_LAM] += glam
        acc[A_SCALE] += G * f_pix * I
        if RUNNING:
            if nz_all == 0:
                acc[A_IBG] += W * math.exp(L_all)
        else:
            acc[A_IBG] += W
        return val

    return pixel_adjoint

"""CPU kernel: one ``prange`` over pixels; per pixel the loops over sensor layers,
sub-pixels, sources, phi steps and mosaic domains run inside this compiled function.

A kernel is built per :class:`KernelOptions`: the options are closure constants, so
Numba prunes the branches not in use, and ``cache=True`` stores each variant on disk
(Numba keys the cache on the closure values).
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .. import physics as ph
from .options import KernelOptions

_KERNELS = {}

# fast-math without the no-NaN/no-Inf assumptions (C tests isnan; we keep NaN out anyway)
FASTMATH = {"contract", "arcp", "nsz", "afn", "reassoc"}

TRACE_LEN = 32


def get_kernel(opts: KernelOptions):
    k = _KERNELS.get(opts)
    if k is None:
        k = _build(opts)
        _KERNELS[opts] = k
    return k


def _build(opts: KernelOptions):
    SHAPE = int(opts.shape)
    INTERP = int(opts.interp)
    OS_THICK = bool(opts.os_thick)
    OS_POLAR = bool(opts.os_polar)
    OS_OMEGA = bool(opts.os_omega)
    OS_RUNNING = bool(opts.os_running)
    CURVED = bool(opts.curved)
    POINT = bool(opts.point_pixel)
    NOPOLAR = bool(opts.nopolar)
    HAS_MASK = bool(opts.has_mask)
    USE_DMIN = bool(opts.use_dmin)
    CARRY = bool(opts.carry)
    HAS_WATER = bool(opts.has_water)
    KAHN = bool(opts.kahn)
    THICK = bool(opts.thick)
    TRACE = bool(opts.trace)
    RECORD_OOR = bool(opts.record_oor)
    FAST_SINCG = bool(opts.fast_sincg)
    F32 = bool(opts.float32)

    @numba.njit(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)
    def render(image, pixel_index, fpixels, mask,
               geom, subpixel_size, oversample, thicksteps,
               src_dir, src_lambda, cells, nphi, ndom, ast,
               Fgrid, fgrid_meta, default_F, hkls,
               lattice, scalars, carry_pixel, interp_switch_pixel,
               oor_flags, trace):
        """Render pixels ``pixel_index`` (flat raster indices) into ``image`` (flat).

        geom: pix0(3) fdet(3) sdet(3) odet(3) beam(3) polar_axis(3) distance close_distance
              pixel_size thickstep mu kahn dmin
        lattice: Na Nb Nc fudge
        scalars: I_bg, scale (= r_e^2 fluence / steps), steps
        fgrid_meta: h_min k_min l_min h_max k_max l_max h_range k_range l_range
        cells: (2, nphi*ndom, 9) cell vectors a,b,c per (phi, domain); table 0 is the
               sub-path that starts the run (c-parity), table 1 all others
        """
        p0x = geom[0]; p0y = geom[1]; p0z = geom[2]
        fx = geom[3]; fy = geom[4]; fz = geom[5]
        sx = geom[6]; sy = geom[7]; sz = geom[8]
        ox = geom[9]; oy = geom[10]; oz = geom[11]
        bx = geom[12]; by = geom[13]; bz = geom[14]
        pax = geom[15]; pay = geom[16]; paz = geom[17]
        distance = geom[18]
        close_distance = geom[19]
        pixel_size = geom[20]
        thickstep = geom[21]
        mu = geom[22]
        kahn = geom[23]
        dmin = geom[24]
        Na = lattice[0]; Nb = lattice[1]; Nc = lattice[2]; fudge = lattice[3]
        I_bg = scalars[0]
        scale = scalars[1]
        h_min = fgrid_meta[0]; k_min = fgrid_meta[1]; l_min = fgrid_meta[2]
        h_max = fgrid_meta[3]; k_max = fgrid_meta[4]; l_max = fgrid_meta[5]
        h_range = fgrid_meta[6]; k_range = fgrid_meta[7]; l_range = fgrid_meta[8]
        nsrc = src_lambda.shape[0]
        ncell = nphi * ndom
        npix = pixel_index.shape[0]
        for n in numba.prange(npix):
            idx = pixel_index[n]
            if HAS_MASK:
                if mask[idx] == 0:
                    continue
            fpixel = idx % fpixels
            spixel = idx // fpixels
            I = I_bg
            polar = 0.0
            if NOPOLAR:
                polar = 1.0
            omega = 0.0
            capfrac = 1.0
            fresh = CARRY and idx == carry_pixel
            interp_on = INTERP != 0
            if INTERP == 2:
                interp_on = idx <= interp_switch_pixel
            oor = False
            F_cell = 0.0
            F_latt = 0.0
            last_tab = 1
            last_cell = 0
            hh = 0.0
            kk = 0.0
            ll = 0.0
            Fdet = 0.0
            Sdet = 0.0
            posx = 0.0
            posy = 0.0
            posz = 0.0
            for t in range(thicksteps):
                Odet = t * thickstep
                # C resets the layer's capture fraction: 0 = "not yet computed", or 1 when
                # no sensor thickness is modelled
                capfrac = 0.0 if THICK else 1.0
                for subS in range(oversample):
                    for subF in range(oversample):
                        Fdet = subpixel_size * (fpixel * oversample + subF) + subpixel_size / 2.0
                        Sdet = subpixel_size * (spixel * oversample + subS) + subpixel_size / 2.0
                        posx = Fdet * fx + Sdet * sx + Odet * ox + p0x
                        posy = Fdet * fy + Sdet * sy + Odet * oy + p0y
                        posz = Fdet * fz + Sdet * sz + Odet * oz + p0z
                        if CURVED:
                            # pixel coordinates taken as arc lengths on a sphere of radius
                            # distance: rotate the beam point about sdet, then about fdet
                            vx = distance * bx
                            vy = distance * by
                            vz = distance * bz
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
                        airpath = math.sqrt(posx * posx + posy * posy + posz * posz)
                        dx = posx / airpath
                        dy = posy / airpath
                        dz = posz / airpath
                        if omega == 0.0 or OS_OMEGA:
                            omega = ph.solid_angle(pixel_size, airpath, close_distance, POINT)
                        if capfrac == 0.0 or OS_THICK:
                            # with no sensor modelled and -oversample_thick C still evaluates
                            # the layer fraction (and gets zero); kept for parity
                            parallax = dx * ox + dy * oy + dz * oz
                            capfrac = ph.capture_fraction(t, thickstep, mu, parallax)
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
                            if polar == 0.0 or OS_POLAR:
                                if KAHN:
                                    polar = ph.polarization_factor(kahn, ix, iy, iz, dx, dy, dz,
                                                                   pax, pay, paz)
                                else:
                                    c2 = ix * dx + iy * dy + iz * dz
                                    polar = 0.5 * (1.0 + c2 * c2)
                            tab = 1
                            if CARRY:
                                if fresh:
                                    tab = 0
                                fresh = False
                            for cidx in range(ncell):
                                cell = cells[tab, cidx]
                                h = cell[0] * qx + cell[1] * qy + cell[2] * qz
                                k = cell[3] * qx + cell[4] * qy + cell[5] * qz
                                l = cell[6] * qx + cell[7] * qy + cell[8] * qz
                                if SHAPE == 0 and FAST_SINCG:
                                    fl = 1.0
                                    if Na > 1.0:
                                        fl *= ph.sincg_delta(h, Na)
                                    if Nb > 1.0:
                                        fl *= ph.sincg_delta(k, Nb)
                                    if Nc > 1.0:
                                        fl *= ph.sincg_delta(l, Nc)
                                else:
                                    fl = ph.lattice_factor(SHAPE, h, k, l, Na, Nb, Nc, fudge, ast)
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
                                        else:
                                            oor = True
                                            if INTERP == 2:
                                                interp_on = False
                                if use_interp:
                                    fc = ph.tricubic(Fgrid, int(math.floor(h)) - 1 - h_min,
                                                     int(math.floor(k)) - 1 - k_min,
                                                     int(math.floor(l)) - 1 - l_min, h, k, l)
                                else:
                                    fc = ph.nearest_F(Fgrid, hkls, h0, k0, l0, h_min, k_min,
                                                      l_min, h_max, k_max, l_max, default_F)
                                contrib = fc * fc * fl * fl
                                if OS_RUNNING:
                                    I += contrib
                                    if OS_THICK:
                                        I *= capfrac
                                    if OS_POLAR:
                                        I *= polar
                                    if OS_OMEGA:
                                        I *= omega
                                else:
                                    if OS_THICK:
                                        contrib *= capfrac
                                    if OS_POLAR:
                                        contrib *= polar
                                    if OS_OMEGA:
                                        contrib *= omega
                                    I += contrib
                                if TRACE:
                                    F_cell = fc
                                    F_latt = fl
                                    last_tab = tab
                                    last_cell = cidx
                                    hh = h
                                    kk = k
                                    ll = l
            val = scale * I
            if not OS_THICK:
                val *= capfrac
            if not OS_POLAR:
                val *= polar
            if not OS_OMEGA:
                val *= omega
            image[idx] = val
            if RECORD_OOR:
                if oor:
                    oor_flags[idx] = 1
            if TRACE:
                tr = trace[n]
                tr[0] = I
                tr[1] = I / scalars[2]
                tr[2] = polar
                tr[3] = omega
                tr[4] = capfrac
                tr[5] = val
                tr[6] = F_cell
                tr[7] = F_latt
                tr[8] = hh
                tr[9] = kk
                tr[10] = ll
                tr[11] = posx
                tr[12] = posy
                tr[13] = posz
                tr[14] = Fdet
                tr[15] = Sdet
                for j in range(9):
                    tr[16 + j] = cells[last_tab, last_cell, j]
                tr[25] = last_tab
                tr[26] = last_cell
    return render

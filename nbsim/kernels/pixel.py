"""The per-pixel body shared by the CPU and the CUDA kernels.

:func:`get_pixel_fn` builds, per :class:`KernelOptions`, one ``register_jitable``
function ``render_pixel(...) -> (value, out_of_range)`` that runs the whole loop nest
of one pixel (sensor layers, sub-pixels, sources, phi x mosaic cells).  The options
are closure constants, so Numba prunes the branches not in use; the same function is
called by the ``@njit(parallel=True)`` CPU kernel (``cpu.py``) and compiled as a device
function of the ``@cuda.jit`` kernel (``cuda.py``).  All physics comes from
:mod:`nbsim.physics`.

Arithmetic types follow the arrays the caller passes.  With ``opts.float32`` the
constants of the body are float32 too, so float32 arrays give float32 arithmetic (the
CUDA float32 path passes float32 cell tables and structure factors and float64
geometry); the pixel sum ``I`` starts from the float64 ``scalars[0]`` and stays float64.
Without it everything is float64, in nanoBragg.c's order of operations.
"""
from __future__ import annotations

import math

import numpy as np
from numba.extending import register_jitable

from .. import physics as ph
from .bundle import EMPTY_KEY, HKL_BITS, HKL_OFFSET
from .options import KernelOptions

TRACE_LEN = 32

_PIXEL_FNS = {}


def get_pixel_fn(opts: KernelOptions, fastmath=False, error_model=None, geometry=None):
    """The pixel body for ``opts``.  ``fastmath`` and ``error_model`` are the jit options
    it is compiled with: a callee does not inherit its caller's, so the CPU kernel passes
    its own (fast-math flag subset, NumPy error model: a division by zero gives inf/NaN
    as in C instead of raising); the CUDA kernel passes neither (CUDA's fastmath would
    swap in approximate sin/cos; CUDA always uses the NumPy error model outside debug).
    ``geometry="cuda_rn"`` takes the detector geometry from :mod:`.cuda_geometry` (no FMA
    contraction on the device); by default it is physics' IEEE twins under fast-math and
    the plain physics functions otherwise."""
    fm = frozenset(fastmath) if isinstance(fastmath, (set, frozenset)) else bool(fastmath)
    key = (opts, fm, error_model, geometry)
    fn = _PIXEL_FNS.get(key)
    if fn is None:
        jit_options = {"fastmath": fastmath}
        if error_model is not None:
            jit_options["error_model"] = error_model
        fn = _build(opts, jit_options, geometry)
        _PIXEL_FNS[key] = fn
    return fn


def _build(opts: KernelOptions, jit_options, geometry=None):
    SHAPE = int(opts.shape)
    INTERP = int(opts.interp)
    OS_THICK = bool(opts.os_thick)
    OS_POLAR = bool(opts.os_polar)
    OS_OMEGA = bool(opts.os_omega)
    OS_RUNNING = bool(opts.os_running)
    CURVED = bool(opts.curved)
    POINT = bool(opts.point_pixel)
    NOPOLAR = bool(opts.nopolar)
    USE_DMIN = bool(opts.use_dmin)
    CARRY = bool(opts.carry)
    HAS_WATER = bool(opts.has_water)
    KAHN = bool(opts.kahn)
    THICK = bool(opts.thick)
    TRACE = bool(opts.trace)
    TRUTH = bool(opts.truth)
    FT = np.float32 if opts.float32 else np.float64
    # the detector geometry in C's exact IEEE arithmetic when the body is compiled with
    # fast-math (the CPU): see nbsim.physics, "IEEE twins"
    if geometry == "cuda_rn":
        from . import cuda_geometry as cg
        subpixel_position = cg.subpixel_position
        unit_direction = cg.unit_direction
        scattering_vector = ph.scattering_vector      # no products: nothing to contract
        curved_detector_point = cg.curved_detector_point
    elif jit_options.get("fastmath"):
        subpixel_position = ph.subpixel_position_ieee
        unit_direction = ph.unit_direction_ieee
        scattering_vector = ph.scattering_vector_ieee
        curved_detector_point = ph.curved_detector_point_ieee
    else:
        subpixel_position = ph.subpixel_position
        unit_direction = ph.unit_direction
        scattering_vector = ph.scattering_vector
        curved_detector_point = ph.curved_detector_point
    ZERO = FT(0.0)
    ONE = FT(1.0)
    HALF = FT(0.5)
    TWO = FT(2.0)
    HKL_OFF = np.int64(HKL_OFFSET)
    SH_H = np.int64(2 * HKL_BITS)
    SH_K = np.int64(HKL_BITS)
    NO_KEY = np.int64(EMPTY_KEY)

    @register_jitable(**jit_options)
    def render_pixel(idx, fpixel, spixel, ka, oversample, thicksteps, nsrc, ncell, hkls,
                     carry_pixel, interp_switch_pixel, trace, tn, truth, tr_row):
        """One pixel (flat raster index ``idx`` = spixel * fpixels + fpixel, not masked):
        returns (value, oor) where oor says whether a tricubic evaluation fell off the grid.

        ka: the plan's argument bundle (:class:`nbsim.kernels.bundle.KernelArrays`, the
            meaning of every array there)
        nsrc, ncell, oversample, thicksteps, hkls: loop counts and the grid flag, plain
              arguments so a caller may pass compile-time constants (the CUDA kernel
              does for the common value 1, which removes those loops)
        trace, tn: with opts.trace, row tn of trace receives the scaling chain
        truth, tr_row: with opts.truth, row tr_row of the slot arrays
              (:class:`nbsim.kernels.bundle.TruthSlots`, zeroed / EMPTY_KEY by the
              caller) receives, per nearest lattice point (h0, k0, l0), its photons in
              this pixel with every factor of the pixel's value applied (so the slots
              sum to the value less the water term) and the same photons weighted by
              the rotation fraction of their phi step; overflow[tr_row] = 1 when more
              than K points contributed (the caller re-renders with more slots)
        """
        # the pixel's panel: spixel counts the rows of the panels stacked along slow
        # (nbsim.geometry.panels); the panel's row of the geometry table
        panel = spixel // ka.panel_rows
        spixel = spixel - panel * ka.panel_rows
        geom = ka.panel_geom[panel]
        subpixel_size = geom[25]
        src_dir = ka.src_dir
        src_lambda = ka.src_lambda
        cells = ka.cells
        ast = ka.ast
        Fgrid = ka.Fgrid
        fgrid_meta = ka.fgrid_meta
        default_F = ka.default_F
        lattice = ka.lattice
        scalars = ka.scalars
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
        h_min = fgrid_meta[0]; k_min = fgrid_meta[1]; l_min = fgrid_meta[2]
        h_max = fgrid_meta[3]; k_max = fgrid_meta[4]; l_max = fgrid_meta[5]
        h_range = fgrid_meta[6]; k_range = fgrid_meta[7]; l_range = fgrid_meta[8]

        I = scalars[0]
        polar = ZERO
        if NOPOLAR:
            polar = ONE
        omega = ZERO
        capfrac = ONE
        fresh = CARRY and idx == carry_pixel
        interp_on = INTERP != 0
        if INTERP == 2:
            interp_on = idx <= interp_switch_pixel
        oor = False
        F_cell = ZERO
        F_latt = ZERO
        last_tab = 1
        last_cell = 0
        hh = ZERO
        kk = ZERO
        ll = ZERO
        Fdet = ZERO
        Sdet = ZERO
        posx = ZERO
        posy = ZERO
        posz = ZERO
        # truth: slots in use, and the slot of the last key (most sub-paths repeat it)
        t_used = 0
        t_key = NO_KEY
        t_slot = -1
        t_nslots = 0
        if TRUTH:
            t_nslots = truth.key.shape[1]
        for t in range(thicksteps):
            Odet = FT(t) * thickstep
            # C resets the layer's capture fraction: 0 = "not yet computed", or 1 when
            # no sensor thickness is modelled
            capfrac = ZERO if THICK else ONE
            for subS in range(oversample):
                for subF in range(oversample):
                    Fdet, Sdet, posx, posy, posz = subpixel_position(
                        subpixel_size, FT(fpixel * oversample + subF),
                        FT(spixel * oversample + subS), subpixel_size / TWO, Odet,
                        fx, fy, fz, sx, sy, sz, ox, oy, oz, p0x, p0y, p0z)
                    if CURVED:
                        posx, posy, posz = curved_detector_point(
                            posy, posz, distance, bx, by, bz, sx, sy, sz, fx, fy, fz)
                    dx, dy, dz, airpath = unit_direction(posx, posy, posz)
                    if omega == ZERO or OS_OMEGA:
                        omega = ph.solid_angle(pixel_size, airpath, close_distance, POINT)
                    if capfrac == ZERO or OS_THICK:
                        # with no sensor modelled and -oversample_thick C still evaluates
                        # the layer fraction (and gets zero); kept for parity
                        parallax = dx * ox + dy * oy + dz * oz
                        capfrac = ph.capture_fraction(t, thickstep, mu, parallax)
                    for src in range(nsrc):
                        ix = -src_dir[src, 0]
                        iy = -src_dir[src, 1]
                        iz = -src_dir[src, 2]
                        lam = src_lambda[src]
                        qx, qy, qz = scattering_vector(dx, dy, dz, ix, iy, iz, lam)
                        if USE_DMIN:
                            stol = HALF * math.sqrt(qx * qx + qy * qy + qz * qz)
                            if stol > ZERO:
                                if dmin > HALF / stol:
                                    continue
                        if polar == ZERO or OS_POLAR:
                            if KAHN:
                                polar = ph.polarization_factor(kahn, ix, iy, iz, dx, dy, dz,
                                                               pax, pay, paz)
                            else:
                                c2 = ix * dx + iy * dy + iz * dz
                                polar = HALF * (ONE + c2 * c2)
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
                            fl = ph.lattice_factor(SHAPE, h, k, l, Na, Nb, Nc, fudge, ast)
                            if not HAS_WATER:
                                if fl == ZERO:
                                    continue
                            h0 = int(math.ceil(h - HALF))
                            k0 = int(math.ceil(k - HALF))
                            l0 = int(math.ceil(l - HALF))
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
                            if not OS_RUNNING:
                                if OS_THICK:
                                    contrib *= capfrac
                                if OS_POLAR:
                                    contrib *= polar
                                if OS_OMEGA:
                                    contrib *= omega
                            if TRUTH:
                                if contrib != ZERO:
                                    key = (((np.int64(h0) + HKL_OFF) << SH_H)
                                           | ((np.int64(k0) + HKL_OFF) << SH_K)
                                           | (np.int64(l0) + HKL_OFF))
                                    if key != t_key:
                                        t_key = key
                                        t_slot = -1
                                        for j in range(t_used):
                                            if truth.key[tr_row, j] == key:
                                                t_slot = j
                                                break
                                        if t_slot < 0:
                                            if t_used < t_nslots:
                                                t_slot = t_used
                                                truth.key[tr_row, t_slot] = key
                                                t_used += 1
                                            else:
                                                truth.overflow[tr_row] = 1
                                    if t_slot >= 0:
                                        truth.photons[tr_row, t_slot] += contrib
                                        truth.phase[tr_row, t_slot] += (
                                            contrib * truth.cell_phase[cidx])
                            if OS_RUNNING:
                                I += contrib
                                if OS_THICK:
                                    I *= capfrac
                                if OS_POLAR:
                                    I *= polar
                                if OS_OMEGA:
                                    I *= omega
                                if TRUTH:
                                    # C multiplies the running sum: every slot with it
                                    for j in range(t_used):
                                        if OS_THICK:
                                            truth.photons[tr_row, j] *= capfrac
                                            truth.phase[tr_row, j] *= capfrac
                                        if OS_POLAR:
                                            truth.photons[tr_row, j] *= polar
                                            truth.phase[tr_row, j] *= polar
                                        if OS_OMEGA:
                                            truth.photons[tr_row, j] *= omega
                                            truth.phase[tr_row, j] *= omega
                            else:
                                I += contrib
                            if TRACE:
                                F_cell = fc
                                F_latt = fl
                                last_tab = tab
                                last_cell = cidx
                                hh = h
                                kk = k
                                ll = l
        val = scalars[1] * I
        if not OS_THICK:
            val *= capfrac
        if not OS_POLAR:
            val *= polar
        if not OS_OMEGA:
            val *= omega
        if TRUTH:
            # the pixel's final factors, in the order the value gets them
            for j in range(t_used):
                v = scalars[1] * truth.photons[tr_row, j]
                w = scalars[1] * truth.phase[tr_row, j]
                if not OS_THICK:
                    v *= capfrac
                    w *= capfrac
                if not OS_POLAR:
                    v *= polar
                    w *= polar
                if not OS_OMEGA:
                    v *= omega
                    w *= omega
                truth.photons[tr_row, j] = v
                truth.phase[tr_row, j] = w
        if TRACE:
            trace[tn, 0] = I
            trace[tn, 1] = I / scalars[2]
            trace[tn, 2] = polar
            trace[tn, 3] = omega
            trace[tn, 4] = capfrac
            trace[tn, 5] = val
            trace[tn, 6] = F_cell
            trace[tn, 7] = F_latt
            trace[tn, 8] = hh
            trace[tn, 9] = kk
            trace[tn, 10] = ll
            trace[tn, 11] = posx
            trace[tn, 12] = posy
            trace[tn, 13] = posz
            trace[tn, 14] = Fdet
            trace[tn, 15] = Sdet
            for j in range(9):
                trace[tn, 16 + j] = cells[last_tab, last_cell, j]
            trace[tn, 25] = last_tab
            trace[tn, 26] = last_cell
        return val, oor

    return render_pixel

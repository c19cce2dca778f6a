"""CPU kernel vectorised across pixels ("lanes").

The scalar kernel (:mod:`nbsim.kernels.cpu`) runs the whole loop nest per pixel, which is
general but leaves the SIMD units idle.  Here a thread takes a run of up to ``LANES``
pixels of one detector row and walks the loop nest once for all of them: the innermost
loops run over the pixels, contain no branches and no calls, and LLVM turns them into
AVX2/AVX-512 code.  A block of ``RUNS_PER_BLOCK`` runs shares one scratch allocation.

It handles the common options (every lattice shape, nearest-neighbour structure
factors, per-contribution oversample factors, polarization, sensor thickness, masks).
Sub-paths that can be skipped per pixel (``-dmin``), tricubic interpolation, curved
detectors and the c-parity running-sum oversampling go to the scalar kernel, which is the
reference; float32 goes to :mod:`.cpu_lanes32`; results agree with it to rounding.  Under the c-parity phi=0
carryover this kernel renders every pixel with the steady-state cell table and the
simulator re-renders the one pixel holding the run's first sub-path with the scalar
kernel.
"""
from __future__ import annotations

import functools

import math

import numba
import numpy as np

from .. import physics as ph
from .cpu import FASTMATH
from .lanes_truth import (flush_changed, lanes_end, lanes_start, lanes_sum,
                          lanes_truth_fits, pack_float)  # noqa: F401 (lanes_truth_fits)
from .options import SOURCE_STAMP, KernelOptions

LANES = 32

# scratch rows of a run
(_S_I, _S_POLAR, _S_OMEGA, _S_CAP, _S_DX, _S_DY, _S_DZ, _S_QX, _S_QY, _S_QZ, _S_FPIX, _S_FL,
 _S_IN) = range(13)
_NSCRATCH = 13
# runs rendered one after the other by one prange iteration (one scratch allocation)
RUNS_PER_BLOCK = 8


def supports(opts: KernelOptions) -> bool:
    """Whether this kernel renders ``opts`` (else use the scalar kernel).  With
    ``opts.carry`` the caller re-renders the carry pixel with the scalar kernel."""
    return (opts.interp == 0 and not opts.use_dmin and not opts.curved
            and not opts.os_running and not opts.trace and not opts.record_oor
            and not opts.float32)


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
    # the nearest lattice point: for the structure-factor lookup and for the truth
    NEAREST = HAS_GRID or TRUTH
    W = LANES
    STAMP = SOURCE_STAMP      # closure constant: a change of the shared sources recompiles

    @numba.njit(parallel=True, cache=True, fastmath=FASTMATH, nogil=True, error_model="numpy")
    def render(image, chunk_start, chunk_len, ka, scratch_all, gis_all, Fflat, truth,
               run_row):
        """Render runs of pixels: run c starts at raster index chunk_start[c] and covers
        chunk_len[c] (<= LANES) consecutive pixels of one row.  ka: the plan's argument
        bundle (``bundle.KernelArrays``); every run uses the steady-state cell table.
        ``scratch_all``, ``gis_all``, ``Fflat``: :func:`workspace` (per-thread scratch,
        the flat structure factors).  With opts.truth, pixel j of run c fills row
        run_row[c] + j of ``truth`` (``bundle.TruthSlots``, as ``pixel.render_pixel``
        does; masked pixels too: the caller empties their rows).  The kernel empties
        the rows it fills (``truth`` may be reused arrays)."""
        if STAMP < 0:         # never: only ties the cache entry to the sources
            return
        fpixels = ka.fpixels
        mask = ka.mask
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
        lattice = ka.lattice
        scalars = ka.scalars
        Na = lattice[0]; Nb = lattice[1]; Nc = lattice[2]; fudge = lattice[3]
        I_bg = scalars[0]
        scale = scalars[1]
        h_min = fgrid_meta[0]; k_min = fgrid_meta[1]; l_min = fgrid_meta[2]
        h_max = fgrid_meta[3]; k_max = fgrid_meta[4]; l_max = fgrid_meta[5]
        kstride = Fgrid.shape[2]
        hstride = Fgrid.shape[1] * kstride
        hminf = float(h_min); hmaxf = float(h_max)
        kminf = float(k_min); kmaxf = float(k_max)
        lminf = float(l_min); lmaxf = float(l_max)
        nsrc = src_lambda.shape[0]
        nruns = chunk_start.shape[0]
        # the slot arrays taken out of their tuple here: Numba's parfor loses stores made
        # through a tuple's field inside the prange body
        t_key = truth.key
        t_photons = truth.photons
        t_phase = truth.phase
        t_overflow = truth.overflow
        t_cell_phase = truth.cell_phase
        nblocks = (nruns + RUNS_PER_BLOCK - 1) // RUNS_PER_BLOCK
        for g in numba.prange(nblocks):
            # the thread's scratch rows: every run writes each row before reading it, so
            # a run's result does not depend on the runs before it, nor on thread
            # scheduling (bit-reproducible)
            tid = numba.get_thread_id()
            s = scratch_all[tid]
            I = s[_S_I]; polar = s[_S_POLAR]; omega = s[_S_OMEGA]; cap = s[_S_CAP]
            dxs = s[_S_DX]; dys = s[_S_DY]; dzs = s[_S_DZ]
            qxs = s[_S_QX]; qys = s[_S_QY]; qzs = s[_S_QZ]
            fpix = s[_S_FPIX]
            fls = s[_S_FL]
            ins = s[_S_IN]
            gis = gis_all[tid]
            # truth: every lane's nearest lattice point (pass 1, floating point, so the
            # pass still vectorises), packed in pass 2 (truth_workspace's extra rows)
            pks = scratch_all[tid, _NSCRATCH] if TRUTH else fls
            # the sub-path's photons; per lane the two lattice points being summed, their
            # photons and rotation-weighted photons so far (lanes_truth.lanes_sum)
            con = scratch_all[tid, _NSCRATCH + 1] if TRUTH else fls
            cur0 = scratch_all[tid, _NSCRATCH + 2] if TRUTH else fls
            acc0 = scratch_all[tid, _NSCRATCH + 3] if TRUTH else fls
            fz0 = scratch_all[tid, _NSCRATCH + 4] if TRUTH else fls
            cur1 = scratch_all[tid, _NSCRATCH + 5] if TRUTH else fls
            acc1 = scratch_all[tid, _NSCRATCH + 6] if TRUTH else fls
            fz1 = scratch_all[tid, _NSCRATCH + 7] if TRUTH else fls
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
                thickstep = geom[21]
                mu = geom[22]
                kahn = geom[23]
                for j in range(n):
                    I[j] = I_bg
                    fpix[j] = fpixel0 + j
                if TRUTH:
                    lanes_start(n, cur0, acc0, fz0, cur1, acc1, fz1, t_key, t_photons,
                                t_phase, t_overflow, run_row[c])
                polar_done = False
                omega_done = False
                for t in range(thicksteps):
                    Odet = t * thickstep
                    cap_done = False
                    for subS in range(oversample):
                        for subF in range(oversample):
                            # diffracted directions of this sub-pixel in every lane
                            for j in range(n):
                                # C's exact arithmetic (physics "IEEE twins")
                                _, _, px, py, pz = ph.subpixel_position_ieee(
                                    subpixel_size, fpix[j] * oversample + subF,
                                    spixel * oversample + subS, half, Odet,
                                    fx, fy, fz, sx, sy, sz, ox, oy, oz, p0x, p0y, p0z)
                                dxs[j], dys[j], dzs[j], r = ph.unit_direction_ieee(px, py, pz)
                                if OS_OMEGA or not omega_done:
                                    omega[j] = ph.solid_angle(pixel_size, r, close_distance, POINT)
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
                                for j in range(n):
                                    qxs[j], qys[j], qzs[j] = ph.scattering_vector_ieee(
                                        dxs[j], dys[j], dzs[j], ix, iy, iz, lam)
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
                                    # pass 1 (vectorised): lattice factor and grid index per lane
                                    for j in range(n):
                                        qx = qxs[j]; qy = qys[j]; qz = qzs[j]
                                        h = a0 * qx + a1 * qy + a2 * qz
                                        k = b0 * qx + b1 * qy + b2 * qz
                                        l = c0 * qx + c1 * qy + c2_ * qz
                                        fls[j] = ph.lattice_factor(SHAPE, h, k, l, Na, Nb, Nc, fudge, ast)
                                        if NEAREST:
                                            h0 = np.ceil(h - 0.5)
                                            k0 = np.ceil(k - 0.5)
                                            l0 = np.ceil(l - 0.5)
                                        if HAS_GRID:
                                            inside = (h0 >= hminf) & (h0 <= hmaxf) & (k0 >= kminf) \
                                                & (k0 <= kmaxf) & (l0 >= lminf) & (l0 <= lmaxf)
                                            hi = min(max(h0, hminf), hmaxf)
                                            ki = min(max(k0, kminf), kmaxf)
                                            li = min(max(l0, lminf), lmaxf)
                                            gis[j] = (int(hi) - h_min) * hstride \
                                                + (int(ki) - k_min) * kstride + (int(li) - l_min)
                                            ins[j] = 1.0 * inside
                                        if TRUTH:
                                            pks[j] = pack_float(h0, k0, l0)
                                    # pass 2 (scalar loads): structure factor and accumulation
                                    for j in range(n):
                                        if HAS_GRID:
                                            fc = Fflat[gis[j]] if ins[j] != 0.0 else default_F
                                        else:
                                            fc = default_F
                                        fl = fls[j]
                                        contrib = fc * fc * fl * fl
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
                    idx = idx0 + j
                    if HAS_MASK:
                        if mask[idx] != 0:
                            image[idx] = val
                    else:
                        image[idx] = val
    return render


def workspace(ka):
    """The render kernel's work arrays: scratch rows and grid indices for every thread of
    Numba's pool (indexed by ``numba.get_thread_id()``), and the structure factors as a
    flat view.  Allocated here rather than in the kernel, so that loading the cached
    kernel does not import Numba's array-allocation module (~15 ms of a process)."""
    slots = max(int(numba.config.NUMBA_NUM_THREADS), int(numba.get_num_threads()))
    return (np.empty((slots, _NSCRATCH, LANES)), np.empty((slots, LANES), dtype=np.int64),
            np.ravel(ka.Fgrid))


def truth_workspace(ka):
    """:func:`workspace` with eight more scratch rows a thread: with opts.truth they
    hold every lane's nearest lattice point of the cell (:func:`.lanes_truth.pack_float`),
    the sub-path's photons, and the two points being summed with their sums
    (:func:`.lanes_truth.lanes_sum`)."""
    scratch, gis, Fflat = workspace(ka)
    return (np.empty((scratch.shape[0], _NSCRATCH + 8, LANES)), gis, Fflat)


@numba.njit(cache=True, nogil=True)
def _chunks(idx, fpixels, lanes, starts, lens):
    # called twice: with empty `starts` it counts the runs, then it fills them (no
    # temporaries the size of the image; the caller allocates, so the cached code
    # allocates nothing); a run ends at `lanes` pixels, at a gap or at the end of its row
    # (`row_end`, found by one division per run, not per pixel)
    n = idx.shape[0]
    count = 0
    length = 0
    row_end = 0
    if starts.shape[0] == 0:
        for i in range(n):
            if length == 0 or length == lanes or idx[i] != idx[i - 1] + 1 \
                    or idx[i] >= row_end:
                count += 1
                length = 0
                row_end = (idx[i] // fpixels + 1) * fpixels
            length += 1
        return count
    c = -1
    length = 0
    row_end = 0
    for i in range(n):
        if length == 0 or length == lanes or idx[i] != idx[i - 1] + 1 or idx[i] >= row_end:
            if c >= 0:
                lens[c] = length
            c += 1
            starts[c] = idx[i]
            length = 0
            row_end = (idx[i] // fpixels + 1) * fpixels
        length += 1
    if c >= 0:
        lens[c] = length
    return c + 1


def chunks(pixel_index: np.ndarray, fpixels: int, lanes: int = LANES):
    """Split raster-ordered pixel indices into runs of <= ``lanes`` consecutive pixels of
    one row: (start raster index, length) per run."""
    idx = np.ascontiguousarray(pixel_index, dtype=np.int64)
    if idx.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    none = np.zeros(0, np.int64)
    count = _chunks(idx, int(fpixels), int(lanes), none, none)
    starts = np.empty(count, dtype=np.int64)
    lens = np.empty(count, dtype=np.int64)
    _chunks(idx, int(fpixels), int(lanes), starts, lens)
    return starts, lens

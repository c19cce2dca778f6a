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
from .bundle import EMPTY_KEY, HKL_BITS, HKL_OFFSET
from .cpu import FASTMATH
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
    HKL_OFF = np.int64(HKL_OFFSET)
    SH_H = np.int64(2 * HKL_BITS)
    SH_K = np.int64(HKL_BITS)
    NO_KEY = np.int64(EMPTY_KEY)
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
        does; masked pixels too: the caller empties their rows)."""
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
        t_nslots = t_key.shape[1]
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
            # per lane the lattice point being summed and its photons so far (flushed to
            # the pixel's slots when the point changes and at the end of the run)
            cur = scratch_all[tid, _NSCRATCH + 1] if TRUTH else fls
            acc = scratch_all[tid, _NSCRATCH + 2] if TRUTH else fls
            acc_fz = scratch_all[tid, _NSCRATCH + 3] if TRUTH else fls
            con = scratch_all[tid, _NSCRATCH + 4] if TRUTH else fls
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
                    for j in range(n):
                        acc[j] = 0.0
                        acc_fz[j] = 0.0
                        cur[j] = np.nan        # no point yet: compares unequal
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
                                        if HAS_GRID:
                                            h0 = np.ceil(h - 0.5)
                                            k0 = np.ceil(k - 0.5)
                                            l0 = np.ceil(l - 0.5)
                                            inside = (h0 >= hminf) & (h0 <= hmaxf) & (k0 >= kminf) \
                                                & (k0 <= kmaxf) & (l0 >= lminf) & (l0 <= lmaxf)
                                            hi = min(max(h0, hminf), hmaxf)
                                            ki = min(max(k0, kminf), kmaxf)
                                            li = min(max(l0, lminf), lmaxf)
                                            gis[j] = (int(hi) - h_min) * hstride \
                                                + (int(ki) - k_min) * kstride + (int(li) - l_min)
                                            ins[j] = 1.0 * inside
                                        if TRUTH:
                                            pks[j] = _pack_float(np.ceil(h - 0.5),
                                                                 np.ceil(k - 0.5),
                                                                 np.ceil(l - 0.5))
                                    # pass 2 (scalar loads): structure factor and accumulation
                                    changed = 0
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
                                            # branch-free (vectorises): the lane's point
                                            # is the one being summed, or it changed
                                            same = pks[j] == cur[j]
                                            cp = t_cell_phase[cidx]
                                            acc[j] += contrib if same else 0.0
                                            acc_fz[j] += contrib * cp if same else 0.0
                                            con[j] = 0.0 if same else contrib
                                            changed += 0 if same else 1
                                    if TRUTH:
                                        if changed:
                                            # pass 3 (rare): lanes whose point changed
                                            # flush the sum to their slots and restart
                                            cp = t_cell_phase[cidx]
                                            for j in range(n):
                                                if con[j] != 0.0:
                                                    if acc[j] != 0.0:
                                                        _slot_add_packed(
                                                            t_key, t_photons, t_phase,
                                                            t_overflow, run_row[c] + j,
                                                            cur[j], acc[j], acc_fz[j])
                                                    cur[j] = pks[j]
                                                    acc[j] = con[j]
                                                    acc_fz[j] = con[j] * cp
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
                        row = run_row[c] + j
                        if acc[j] != 0.0:
                            _slot_add_packed(t_key, t_photons, t_phase, t_overflow, row,
                                             cur[j], acc[j], acc_fz[j])
                        for q in range(t_nslots):
                            if t_key[row, q] == NO_KEY:
                                break
                            v = scale * t_photons[row, q]
                            w = scale * t_phase[row, q]
                            if not OS_THICK:
                                f = cap[j] if (THICK or OS_THICK) else 1.0
                                v *= f
                                w *= f
                            if not OS_POLAR:
                                f = polar[j] if not NOPOLAR else 1.0
                                v *= f
                                w *= f
                            if not OS_OMEGA:
                                v *= omega[j]
                                w *= omega[j]
                            t_photons[row, q] = v
                            t_phase[row, q] = w
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
    """:func:`workspace` with five more scratch rows a thread: with opts.truth they
    hold every lane's nearest lattice point of the cell (:func:`_pack_float`), the point
    being summed, its photons (and phase-weighted photons) so far, and the photons of
    lanes whose point changed."""
    scratch, gis, Fflat = workspace(ka)
    return (np.empty((scratch.shape[0], _NSCRATCH + 5, LANES)), gis, Fflat)


#: the lanes kernels compare lattice points as one float64: (h0, k0, l0) packed with 17
#: bits each (|h0| < 2^16), exact (< 2^51); used when the plan's indices fit
#: (:func:`lanes_truth_fits`), else the general kernel fills the slots
LANE_HKL_OFFSET = 65536.0
LANE_HKL_BASE = 131072.0


def lanes_truth_fits(plan) -> bool:
    """Whether every Miller index the plan can reach, |h| <= 2 |a| / lambda_min, fits
    the lanes kernels' packed lattice point."""
    cells = np.abs(plan.cells).reshape(-1, 3, 3)
    longest = float(np.sqrt((cells ** 2).sum(axis=2)).max()) if cells.size else 0.0
    lam = float(np.min(plan.src_lambda)) if plan.src_lambda.size else 0.0
    return lam > 0.0 and 2.0 * longest / lam + 2.0 < LANE_HKL_OFFSET


@numba.njit(cache=True, nogil=True, inline="always")
def _pack_float(h0, k0, l0):
    return ((h0 + LANE_HKL_OFFSET) * LANE_HKL_BASE + (k0 + LANE_HKL_OFFSET)) \
        * LANE_HKL_BASE + (l0 + LANE_HKL_OFFSET)


@numba.njit(cache=True, nogil=True, inline="always")
def _slot_add_packed(t_key, t_photons, t_phase, t_overflow, row, packed, photons, phase):
    """:func:`_slot_add` of a lattice point packed by :func:`_pack_float`."""
    p = np.int64(packed)
    base = np.int64(LANE_HKL_BASE)
    off = np.int64(LANE_HKL_OFFSET)
    l0 = p % base - off
    p //= base
    k0 = p % base - off
    h0 = p // base - off
    _slot_add(t_key, t_photons, t_phase, t_overflow, row, h0, k0, l0, photons, phase)


@numba.njit(cache=True, nogil=True, inline="always")
def _slot_add(t_key, t_photons, t_phase, t_overflow, row, h0, k0, l0, photons, phase):
    """Add ``photons`` (and ``phase``) of lattice point (h0, k0, l0) (floats holding
    integers) to pixel row ``row``'s slots: its slot, else the first empty one, else
    flag the row as overflowed."""
    off = np.int64(HKL_OFFSET)
    key = (((np.int64(h0) + off) << np.int64(2 * HKL_BITS))
           | ((np.int64(k0) + off) << np.int64(HKL_BITS)) | (np.int64(l0) + off))
    for q in range(t_key.shape[1]):
        kq = t_key[row, q]
        if kq == key:
            t_photons[row, q] += photons
            t_phase[row, q] += phase
            return
        if kq == EMPTY_KEY:
            t_key[row, q] = key
            t_photons[row, q] = photons
            t_phase[row, q] = phase
            return
    t_overflow[row] = 1


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

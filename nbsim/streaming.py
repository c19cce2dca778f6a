"""Detectors too large for memory: render in blocks of rows, stream them to the outputs.

The CLI's CPU render always goes in blocks of rows, each rounded to float32 as it
completes (:func:`render_float32`: the float64 image is never held whole).  When even the
one-piece outputs (the float32 image and the int / noise / PGM images;
:func:`one_piece_bytes`, 9 bytes per pixel with every output) would need more than
``min(NBSIM_MEMORY_LIMIT, half the available memory)`` (default limit 1 GiB, about 120 M
pixels), the CLI writes every output as the blocks complete instead, with the same bytes
as the one-piece path:

* pass 1 -- render a block (CPU kernels, the same calls as
  :meth:`nbsim.Simulator.run_chunked`), round it to float32, append it to the
  ``-floatfile`` (a temporary name until the end) and add it to C's first statistics pass
  (max, sequential sum and sum of squares, count: :class:`nbsim.stats.StreamingStats`);
* pass 2 -- C's int image needs the maximum (``intfile_scale``), ``rmsd`` needs the mean:
  read the float file back block by block for the int image, the noise image (C's ran1
  stream in raster order, carried from block to block) and the ``rmsd`` sum;
* pass 3 (only with a PGM) -- ``pgm_scale`` needs ``rmsd``: read the float file again.

Per output type: ``-floatfile``, ``-intfile``, ``-noisefile``, ``-pgmfile``, the dump
file and every printed statistic are streamed (identical bytes, identical lines).
Refused before anything is allocated, with the size in the message: ``-printout`` /
``-printout_pixel`` (the trace needs the whole image) and ``-device cuda`` (the GPU
renders the whole image at once; ``-device auto`` renders on the CPU instead).

The rendered block lives in an anonymous private memory map the size of the float64
image, of which only the block's pages are ever touched; they are handed back to the
system (``madvise(MADV_DONTNEED)``) once the block is written.  The kernels index the
image by raster index, so they run unchanged.  Peak memory: about 40 bytes per pixel of
one block (``NBSIM_STREAM_ROWS`` rows, default about 4 M pixels) plus the inputs (a
-mask file is read whole).  ``NBSIM_STREAM_ROWS=N`` forces streaming with N-row blocks
(tests).
"""
from __future__ import annotations

import mmap
import os
import time
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from .outputs import OutputError, smv_header, solid_angle_and_float_lines

__all__ = ["StreamPlan", "choose_streaming", "one_piece_bytes", "render_row_blocks",
           "render_float32", "render_streamed", "DEFAULT_MEMORY_LIMIT"]

DEFAULT_MEMORY_LIMIT = 1 << 30      # bytes: above this a run streams
BLOCK_PIXELS = 1 << 22              # pixels per streamed block (about 4 M)
_NO_SWITCH = np.iinfo(np.int64).max


@dataclass
class StreamPlan:
    """How a streamed run goes: rows per block, and the estimate that made it stream."""
    rows_per_block: int
    estimate: int               # bytes the one-piece run would need
    limit: int                  # bytes it was allowed
    render_seconds: float = 0.0


def _size(n: int) -> str:
    """Bytes as GiB (or MiB / KiB / bytes for smaller amounts)."""
    for unit, k in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << k:
            return f"{n / (1 << k):.2f} {unit}"
    return f"{n} bytes"


def one_piece_bytes(plan, outs, device: str = "cpu") -> int:
    """Peak bytes the one-piece run adds for its images (estimate, upper side).

    Held together on the CPU: the float32 image (4/pixel; rendered in row blocks of at
    most 1 M pixels, about 40 MiB for the block), the int image (2), PGM (1), noise
    image (2).  A GPU run adds the float64 image (8), the int64 pixel index (8/ROI
    pixel) and the NumPy conversions' largest temporary (the int image's float64 /
    float32 / uint16 steps: 14/ROI pixel)."""
    det = plan.detector
    npix = int(det.fpixels) * int(det.spixels)
    per_pixel = 4 + 2 + (1 if outs.write_pgm else 0) + (2 if outs.calculate_noise else 0)
    if device == "cpu":
        return npix * per_pixel + (40 << 20)
    x0, x1, y0, y1 = plan.roi_bounds
    nroi = max(x1 - x0 + 1, 0) * max(y1 - y0 + 1, 0)
    return npix * (per_pixel + 8) + nroi * (8 + 14)


def available_bytes() -> int:
    """MemAvailable (Linux), else physical memory; a large number if neither is known."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _env_bytes(name: str) -> Optional[int]:
    v = os.environ.get(name, "").strip()
    if not v:
        return None
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(v[-1].upper())
    try:
        n = float(v[:-1]) * mult if mult else float(v)
    except ValueError:
        raise OutputError(f"{name}={v}: not a size in bytes (e.g. 2000000000 or 2G)") \
            from None
    if not n > 0:
        raise OutputError(f"{name}={v}: must be positive")
    return int(n)


def choose_streaming(plan, outs, device: str) -> Optional[StreamPlan]:
    """None (hold the image whole) or how to stream; raises :class:`OutputError` (before
    anything image-sized is allocated) when an output needs the whole image."""
    det = plan.detector
    fp, sp = int(det.fpixels), int(det.spixels)
    estimate = one_piece_bytes(plan, outs, device)
    forced = os.environ.get("NBSIM_STREAM_ROWS", "").strip()
    if forced:
        try:
            rows = int(forced)
        except ValueError:
            rows = 0
        if rows <= 0:
            raise OutputError(f"NBSIM_STREAM_ROWS={forced}: must be a positive whole number")
        limit = 0
    else:
        limit = _env_bytes("NBSIM_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT
        limit = min(limit, available_bytes() // 2)
        if estimate <= limit:
            return None
        rows = max(1, BLOCK_PIXELS // max(fp, 1))
    why = (f"a {fp}x{sp} detector needs about {_size(estimate)} held whole "
           f"(limit {_size(limit)}; set NBSIM_MEMORY_LIMIT, or use -roi)")
    if outs.printout or outs.printout_pixel is not None:
        flag = "-printout" if outs.printout else "-printout_pixel"
        raise OutputError(f"{flag}: {why}, and the pixel trace needs the whole image")
    if device == "cuda":
        raise OutputError(f"-device cuda: {why}, and the GPU renders the whole image at "
                          f"once (use -device cpu, which streams it in row blocks)")
    return StreamPlan(rows_per_block=min(rows, max(sp, 1)), estimate=estimate, limit=limit)


# ----------------------------------------------------------------------- rendering
def _anonymous_map(nbytes: int) -> mmap.mmap:
    """Private anonymous memory: pages cost memory only once touched."""
    flags = mmap.MAP_PRIVATE | getattr(mmap, "MAP_ANONYMOUS", getattr(mmap, "MAP_ANON", 0))
    flags |= getattr(mmap, "MAP_NORESERVE", 0)
    return mmap.mmap(-1, max(nbytes, 1), flags=flags)


def _release(mm: mmap.mmap, start: int, stop: int):
    """Give back the whole pages of bytes [start, stop) (they read as zeros again)."""
    page = mmap.PAGESIZE
    a0 = (start // page) * page
    a1 = (stop // page) * page
    if a1 > a0 and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED, a0, a1 - a0)


from .limits import check_image  # noqa: E402


def render_float32(sim, progress=None, block_pixels: int = 1 << 20) -> np.ndarray:
    """The image as C stores it (float32 (slow, fast)), rendered on the CPU in blocks of
    rows (:func:`render_row_blocks`): bit-identical to ``sim.run()`` rounded to float32,
    without ever holding the float64 image (one block of at most ``block_pixels``: its
    float64 values, pixel index and the lanes kernel's run table, about 40 bytes a
    pixel)."""
    det = sim.plan.detector
    fp, sp = int(det.fpixels), int(det.spixels)
    img32 = np.empty((sp, fp), dtype=np.float32)
    for r0, r1, block in render_row_blocks(sim, max(1, block_pixels // max(fp, 1)),
                                           progress):
        img32[r0:r1] = block
    return img32


def _rendered_rows_index(plan, row0, row1):
    idx = plan.roi_rows_index(row0, row1)
    if plan.options.has_mask:
        idx = idx[plan.mask[idx] != 0]
    return idx


def _first_executing_pixel(plan, rows: int) -> int:
    """kernels.carryover.first_executing_pixel, one block of rows at a time."""
    from .kernels.carryover import executed_flags
    sp = plan.detector.spixels
    for r0 in range(0, sp, rows):
        idx = _rendered_rows_index(plan, r0, min(sp, r0 + rows))
        if not idx.size:
            continue
        if not plan.options.use_dmin:
            return int(idx[0])
        flags = np.zeros(idx.shape[0], dtype=np.uint8)
        executed_flags(idx, plan.kernel_arrays(), plan.options.has_mask,
                       plan.options.curved, flags)
        nz = np.flatnonzero(flags)
        if nz.size:
            return int(idx[nz[0]])
    return -1


def render_row_blocks(sim, rows: int, progress=None, target_seconds: float = 0.25):
    """Yield ``(row0, row1, block)`` for consecutive blocks of at most ``rows`` detector
    rows, every row of the detector in order; ``block`` is a float64 (row1-row0, fpixels)
    view, valid until the next block is asked for.  Pixel for pixel the values of
    :meth:`nbsim.Simulator.run` (the same kernel calls on the same pixels; the c-parity
    carry pixel and tricubic switch are found in raster order on the way).  CPU only.
    Blocks start at about 2**25 sub-path evaluations and grow (at most 4x a step) to take
    about ``target_seconds`` each, so a signal or the progress bar is never far away.
    ``progress``: ``update(rows_done, rows_total)`` after each block."""
    import numba

    from ._numba_setup import prepare_cpu
    from .kernels import cpu_lanes, cpu_lanes32
    prepare_cpu()
    p = sim.plan
    fp, sp = int(p.detector.fpixels), int(p.detector.spixels)
    npix = fp * sp
    opts = p.options
    c_switch = sim.config.mode == "c-parity" and opts.interp == 1
    lanes = cpu_lanes.supports(opts) or cpu_lanes32.supports(opts)
    prev_threads = numba.get_num_threads()
    if sim.threads:
        numba.set_num_threads(min(int(sim.threads), numba.config.NUMBA_NUM_THREADS))
    image_map = _anonymous_map(8 * npix)
    image = np.frombuffer(image_map, dtype=np.float64, count=npix)
    oor_map = _anonymous_map(npix) if (c_switch and not lanes) else None
    oor = (np.frombuffer(oor_map, dtype=np.uint8, count=npix) if oor_map is not None
           else np.zeros(1, dtype=np.uint8))
    dummy_trace = np.zeros((1, 32))
    try:
        carry = _first_executing_pixel(p, rows) if p.carry_needed else -1
        sim._carry_pixel = carry
        switch = _NO_SWITCH
        # the first block: about 2**25 sub-path evaluations (a fraction of a second; its
        # time includes loading the kernel, so it only quadruples the next), then about
        # target_seconds a block.  Few blocks: each parallel kernel call waits for every
        # worker thread, which costs a scheduler time slice on a loaded machine
        per_row = max(1, int(p.steps) * int(p.detector.thicksteps) * fp)
        step = max(1, min(rows, (1 << 25) // per_row))
        first = True
        r0 = 0
        while r0 < sp:
            r1 = min(sp, r0 + step)
            t0 = time.perf_counter()
            idx = p.roi_rows_index(r0, r1)
            if idx.size:
                if lanes:
                    sim._launch_lanes(opts, idx, image)
                    if opts.carry and r0 * fp <= carry < r1 * fp:
                        sim._launch(opts, np.array([carry], dtype=np.int64), image, carry,
                                    _NO_SWITCH, oor, dummy_trace)
                elif switch == _NO_SWITCH:
                    sim._launch(opts._replace(record_oor=c_switch), idx, image, carry,
                                _NO_SWITCH, oor, dummy_trace)
                    if c_switch:
                        nz = np.flatnonzero(oor[idx])
                        if nz.size:
                            # C turns interpolation off at the first out-of-range pixel
                            switch = int(idx[nz[0]])
                            sim._launch(opts._replace(interp=2), idx[nz[0]:], image, carry,
                                        switch, oor, dummy_trace)
                else:
                    sim._launch(opts._replace(interp=2), idx, image, carry, switch, oor,
                                dummy_trace)
            n_rendered = idx.size
            del idx
            per_row = (time.perf_counter() - t0) / (r1 - r0)
            block = image[r0 * fp:r1 * fp].reshape(r1 - r0, fp)
            check_image(block, sim.config)      # finite, fits the float32 files
            yield r0, r1, block
            _release(image_map, 8 * r0 * fp, 8 * r1 * fp)
            if oor_map is not None:
                _release(oor_map, r0 * fp, r1 * fp)
            if progress is not None:
                progress.update(r1, sp)
            want = int(target_seconds / per_row) if (per_row > 0 and n_rendered) else 4 * step
            if first and n_rendered:
                want, first = 4 * step, False
            step = max(1, min(want, 4 * step, rows))
            r0 = r1
        sim._switch_pixel = switch
    finally:
        numba.set_num_threads(prev_threads)
        del image, oor


# ----------------------------------------------------------------------- outputs
def _read_blocks(path: str, fp: int, sp: int, rows: int):
    """(row0, float32 (rows, fp)) blocks of a raw little-endian float32 image file."""
    with open(path, "rb") as fh:
        for r0 in range(0, sp, rows):
            r1 = min(sp, r0 + rows)
            a = np.fromfile(fh, dtype="<f4", count=(r1 - r0) * fp)
            if a.size != (r1 - r0) * fp:
                raise OSError(f"{path}: short read")
            yield r0, a.reshape(r1 - r0, fp).astype(np.float32, copy=False)


def _le(a: np.ndarray, dt: str) -> np.ndarray:
    """The bytes of ``a`` as type ``dt`` (no copy when it already is)."""
    return np.ascontiguousarray(a, dtype=np.dtype(dt)).reshape(-1).view(np.uint8)


def render_streamed(sim, stream: StreamPlan, outs, outputs, *, progress=None,
                    noise_idum: Optional[int] = None,
                    previous_state: Optional[np.ndarray] = None) -> List[str]:
    """Render ``sim`` in row blocks and write every output (module doc) into temporary
    files of ``outputs`` (:class:`nbsim.outputs.OutputSet`; the caller commits).  Returns
    the lines C prints after the render (the same as :func:`nbsim.outputs.image_outputs`).
    """
    from . import postrender, report, rng
    from .io.pgm import pgm_header
    from .io.smv import format_smv_header
    from .io._roi import roi_tuple
    from .stats import StreamingStats, intfile_scale_rule, pgm_scale_rule

    plan = sim.plan
    det = plan.detector
    fp, sp = int(det.fpixels), int(det.spixels)
    rows = stream.rows_per_block
    roi = roi_tuple(det.roi, fp, sp)
    stats = StreamingStats(det.roi, fp, sp,
                           plan.mask if plan.options.has_mask else None)

    def opened(flag, path):
        tmp = outputs.temp_for(flag, path)
        try:
            return tmp, open(tmp, "wb")
        except OSError as e:
            raise OutputError(f"{flag}: cannot write {path}: {e.strerror or e}") from None

    def guarded(flag, path, fn):
        try:
            return fn()
        except OSError as e:
            raise OutputError(f"{flag}: cannot write {path}: {e.strerror or e}") from None

    # pass 1: render, float file, first statistics pass
    t0 = time.perf_counter()
    float_tmp, fh = opened("-floatfile", outs.floatfile)
    with fh:
        for r0, r1, block in render_row_blocks(sim, rows, progress):
            rows32 = block.astype(np.float32)
            guarded("-floatfile", outs.floatfile, lambda: fh.write(_le(rows32, "<f4")))
            stats.add_rows(rows32, r0)
            del rows32, block
    if progress is not None:
        progress.finish()
    stream.render_seconds = time.perf_counter() - t0

    lines = solid_angle_and_float_lines(plan, outs.floatfile, compiled=True)
    intfile_scale = intfile_scale_rule(stats.max_I, outs.intfile_scale)

    # pass 2: int image, noise image, rmsd
    header = smv_header(plan)
    order = "<u2" if header.byte_order.startswith("little") else ">u2"
    _, ih = opened("-intfile", outs.intfile)
    nh = None
    state = None
    photons, overloads = 0.0, 0
    if outs.calculate_noise:
        from ._numba_setup import prepare_cpu
        from .noise import noise_rows_into
        prepare_cpu()
        _, nh = opened("-noisefile", outs.noisefile)
        state = rng.new_state(int(noise_idum))
        if previous_state is not None and int(noise_idum) > 0:
            rng.share_table(state, previous_state)
    try:
        guarded("-intfile", outs.intfile, lambda: ih.write(format_smv_header(header)))
        if nh is not None:
            guarded("-noisefile", outs.noisefile,
                    lambda: nh.write(format_smv_header(header, noise=True)))
        for r0, rows32 in _read_blocks(float_tmp, fp, sp, rows):
            n = rows32.shape[0]
            ints = np.zeros((n, fp), dtype=np.uint16)
            postrender.int_rows(rows32, r0, roi, float(intfile_scale),
                                float(outs.adc_offset), ints)
            guarded("-intfile", outs.intfile, lambda: ih.write(_le(ints, order)))
            del ints
            stats.add_deviation_rows(rows32, r0)
            if nh is not None:
                noisy = np.zeros((n, fp), dtype=np.uint16)
                # the ROI test is per pixel there: the block's rows shifted, unclipped
                shifted = np.array([roi[0], roi[1], roi[2] - r0, roi[3] - r0],
                                   dtype=np.int64)
                photons, over = noise_rows_into(rows32, float(outs.adc_offset), shifted,
                                                state, noisy, photons)
                overloads += int(over)
                guarded("-noisefile", outs.noisefile, lambda: nh.write(_le(noisy, order)))
                del noisy
    finally:
        ih.close()
        if nh is not None:
            nh.close()
    st = stats.result(det.pixel_size, plan.oversample)
    lines += report.stats_lines(st, intfile_scale)
    lines += report.int_lines(outs.intfile)

    # pass 3: the PGM (its scale needs rmsd)
    if outs.write_pgm:
        pgm_scale = pgm_scale_rule(st.rmsd, intfile_scale, outs.pgm_scale)
        _, ph = opened("-pgmfile", outs.pgmfile)
        with ph:
            guarded("-pgmfile", outs.pgmfile, lambda: ph.write(pgm_header(fp, sp, pgm_scale)))
            for r0, rows32 in _read_blocks(float_tmp, fp, sp, rows):
                n = rows32.shape[0]
                pix = np.zeros((n, fp), dtype=np.uint8)
                postrender.pgm_rows(rows32, r0, roi, float(pgm_scale), pix)
                guarded("-pgmfile", outs.pgmfile, lambda: ph.write(memoryview(pix)))
        lines += report.pgm_lines(outs.pgmfile, pgm_scale)
    if outs.calculate_noise:
        from .io.cformat import c_g
        from .noise import NoiseResult
        msg = "%s photons on noise image (%d overloads)" % (c_g(photons, ".0f"), overloads)
        lines += report.noise_lines(NoiseResult(None, overloads, photons, msg),
                                    outs.noisefile)
    return lines

"""The public API: build a :class:`Simulator` from a :class:`Config` (or nanoBragg flags),
render, and read back the image, statistics and per-pixel traces."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numba
import numpy as np

from ._numba_setup import prepare_cpu
from .config import Config
from .plan import Plan, make_plan

_NO_SWITCH = np.iinfo(np.int64).max
_NO_TRUTH = {}       # the one-row placeholder TruthSlots (opts.truth off), made once


@dataclass
class PixelTrace:
    """The scaling chain of one pixel, as nanoBragg's -printout_pixel shows it."""
    fpixel: int
    spixel: int
    I: float                 # sum over sub-paths before scaling (photons/sr/electron^2 units)
    I_over_steps: float
    polar: float
    omega: float
    capture_fraction: float
    pixel: float             # final value (photons)
    F_cell: float            # of the last sub-path
    F_latt: float
    hkl: tuple
    position: tuple          # lab position of the last sub-pixel (m)
    rotated_cell: np.ndarray  # (3, 3) rows a, b, c in Angstrom, last sub-path


class Simulator:
    """Render nanoBragg images.

    >>> sim = Simulator.from_args(["-cell", "100", "100", "100", "90", "90", "90",
    ...                            "-default_F", "100", "-N", "5", "-detpixels", "64"])
    >>> image = sim.run()           # (spixels, fpixels) float64, photons per pixel
    """

    def __init__(self, config: Config, threads: Optional[int] = None):
        self.config = config
        self.threads = threads
        if config.device in ("cuda", "auto"):
            # the GPU's driver start overlaps the plan and the compiler set-up
            from .kernels import cuda_warmup
            cuda_warmup.start()
        self.plan: Plan = make_plan(config)
        self._carry_pixel = -1
        self._switch_pixel = _NO_SWITCH
        self.image: Optional[np.ndarray] = None
        self._want_truth = False
        #: how the truth rows are labelled (nbsim.truth.collect's keywords; datasets set
        #: the experiment id and the frame's image number)
        self._truth_frame = {}
        #: the last render's reflection truth (:class:`nbsim.truth.FrameTruth`), when
        #: rendered with ``run(truth=True)``
        self.frame_truth = None

    @classmethod
    def from_args(cls, args: Sequence[str], mode: Optional[str] = None, **kw) -> "Simulator":
        """Build from nanoBragg command-line flags (e.g. ``["-cell", "100", ...]``)."""
        from .args import parse_args
        parsed = parse_args(list(args))
        cfg = parsed.config
        if mode is not None:
            cfg.mode = mode
        return cls(cfg, threads=kw.get("threads", parsed.threads))

    @classmethod
    def from_plan(cls, plan: Plan, threads: Optional[int] = None) -> "Simulator":
        """A simulator over an existing plan (a dataset's per-frame plan, built from
        shared frame-independent parts); no re-planning."""
        sim = cls.__new__(cls)
        sim.config = plan.config
        sim.threads = threads
        sim.plan = plan
        sim._carry_pixel = -1
        sim._switch_pixel = _NO_SWITCH
        sim.image = None
        sim._want_truth = False
        sim._truth_frame = {}
        sim.frame_truth = None
        return sim

    # --------------------------------------------------------------- rendering
    def _launch(self, opts, pixel_index, image, carry_pixel, switch_pixel, oor, trace,
                truth=None):
        from .kernels.cpu import get_kernel
        prepare_cpu()
        if truth is None:
            truth = _no_truth()
        kern = get_kernel(opts)
        kern(image, pixel_index, self.plan.kernel_arrays(opts.float32), carry_pixel,
             switch_pixel, oor, trace, truth)

    def _launch_lanes(self, opts, pixel_index, image, truth=None):
        from .kernels import cpu_lanes, cpu_lanes32
        p = self.plan
        prepare_cpu()
        mod = cpu_lanes32 if opts.float32 else cpu_lanes
        if pixel_index is p.__dict__.get("pixel_index"):   # (never builds the index)
            # the whole ROI (no progress blocks): its runs are the same every render
            runs = p.__dict__.setdefault("_lane_runs", {})
            if mod.LANES not in runs:
                runs[mod.LANES] = cpu_lanes.chunks(pixel_index, p.detector.fpixels, mod.LANES)
            starts, lens = runs[mod.LANES]
        else:
            starts, lens = cpu_lanes.chunks(pixel_index, p.detector.fpixels, mod.LANES)
        kern = mod.get_kernel(opts)
        ka = p.kernel_arrays(opts.float32)
        if mod is cpu_lanes:
            if truth is None:
                kern(image, starts, lens, ka, *cpu_lanes.workspace(ka), _no_truth(), lens)
            else:
                # the runs are consecutive entries of pixel_index: run c's first pixel is
                # row (sum of the lengths before c) of the block's slots
                run_row = np.cumsum(lens) - lens
                kern(image, starts, lens, ka, *cpu_lanes.truth_workspace(ka), truth,
                     run_row)
        elif truth is None:
            kern(image, starts, lens, ka, _no_truth(), lens)
        else:
            kern(image, starts, lens, ka, truth, np.cumsum(lens) - lens)

    def run(self, truth: bool = False) -> np.ndarray:
        """Render the image: (spixels, fpixels) float64 in photons per pixel; with a
        multi-panel detector (nbsim.geometry.panels) (panels, slow, fast), all panels in
        one kernel launch.

        ``truth=True`` also records, in the same pass, the reflections the image holds
        (docs/truth.md): afterwards :attr:`truth` (the table: column -> array),
        :attr:`labels` and :attr:`bragg_fraction` ((panels, slow, fast)) describe it.
        On the CPU the float64 lanes kernel (or the general kernel for the options it
        does not take, and float32) fills the slots; on the GPU the CUDA kernel does
        (pixels with more than K lattice points are completed on the CPU)."""
        from .limits import check_image
        self._want_truth = bool(truth)
        self.frame_truth = None
        try:
            return check_image(self._render(None), self.config)
        finally:
            self._want_truth = False

    @property
    def truth(self):
        """The reflection table of the last ``run(truth=True)`` (column -> NumPy array,
        DIALS names; docs/truth.md)."""
        if self.frame_truth is None:
            raise RuntimeError("no truth: render with run(truth=True)")
        return self.frame_truth.table

    @property
    def labels(self) -> np.ndarray:
        """(panels, slow, fast) int32: per pixel the truth row of the reflection giving
        most photons, -1 for none (last ``run(truth=True)``)."""
        if self.frame_truth is None:
            raise RuntimeError("no truth: render with run(truth=True)")
        return self.frame_truth.labels

    @property
    def bragg_fraction(self) -> np.ndarray:
        """(panels, slow, fast) float64: the Bragg share of each pixel's photons (the
        water term of -water is the rest; a -stol background added later is not in
        this image: use ``frame_truth.bragg_fraction(image + background)``)."""
        if self.frame_truth is None:
            raise RuntimeError("no truth: render with run(truth=True)")
        return self.frame_truth.bragg_fraction(self.image)

    def run_chunked(self, callback=None, chunk_rows: Optional[int] = None,
                    target_seconds: float = 0.25) -> np.ndarray:
        """Render exactly as :meth:`run` (bit-identical), on the CPU in blocks of whole ROI
        rows, calling ``callback(rows_done, rows_total)`` after each block (the CLI's
        progress bar).  ``chunk_rows`` fixes the block size; by default blocks grow to take
        about ``target_seconds`` each.  Every pixel is computed independently of the others
        (the c-parity carryover and interpolation switch are global indices fixed before or
        after the blocks), so blocking changes no bit.  Other devices render in one call and
        report once at the end."""
        from .limits import check_image
        return check_image(
            self._render(callback if callback is not None else (lambda done, total: None),
                         chunk_rows, target_seconds), self.config)

    def _render(self, callback, chunk_rows=None, target_seconds=0.25):
        device = self.config.device
        if device in ("cuda", "auto"):
            from .kernels import cuda as kcuda
            from .kernels import cuda_warmup
            if device == "cuda" or (not cuda_warmup.found_no_gpu() and kcuda.available()):
                image = kcuda.run(self)
                if callback is not None:
                    callback(1, 1)
                return image
        prev = numba.get_num_threads()
        if self.threads:
            numba.set_num_threads(min(int(self.threads), numba.config.NUMBA_NUM_THREADS))
        try:
            return self._render_cpu(callback, chunk_rows, target_seconds)
        finally:
            numba.set_num_threads(prev)

    def _prepare_carry(self):
        from .kernels.carryover import first_executing_pixel
        p = self.plan
        self._carry_pixel = first_executing_pixel(p) if p.carry_needed else -1

    def _row_blocks(self, callback, chunk_rows, target_seconds):
        """Yield blocks of whole ROI rows of ``plan.pixel_index`` (all at once without a
        callback), growing them to about ``target_seconds`` each; report progress."""
        import time
        p = self.plan
        if callback is None:
            yield p.pixel_index
            return
        # the ROI rows, each block built on its own (the whole index is never made)
        x0, x1, y0, y1 = p.roi_bounds
        nrows = (y1 - y0 + 1) if (x1 >= x0 and y1 >= y0) else 0
        step = int(chunk_rows) if chunk_rows else 1
        r = 0
        while r < nrows:
            r1 = min(nrows, r + step)
            t0 = time.perf_counter()
            yield p.roi_rows_index(y0 + r, y0 + r1)
            dt = time.perf_counter() - t0
            if not chunk_rows:
                per_row = dt / (r1 - r)
                want = int(target_seconds / per_row) if per_row > 0 else 4 * step
                step = max(1, min(want, 4 * step))
            r = r1
            callback(r, nrows)

    def _render_cpu(self, callback, chunk_rows, target_seconds) -> np.ndarray:
        from .kernels import cpu_lanes, cpu_lanes32
        p = self.plan
        npix = p.detector.fpixels * p.detector.spixels
        image = np.zeros(npix, dtype=np.float64)
        self._prepare_carry()
        dummy_trace = np.zeros((1, 32))
        opts = p.options
        c_switch = self.config.mode == "c-parity" and opts.interp == 1
        # the carryover touches one pixel only (the run's first sub-path): the SIMD kernel
        # renders everything with the steady-state cell table and that pixel is redone below
        want_truth = self._want_truth
        # truth: the lanes kernels fill the slots too (the options they do not take go
        # to the general kernel, as without truth)
        lanes = cpu_lanes.supports(opts) or cpu_lanes32.supports(opts)
        if want_truth and lanes and not cpu_lanes.lanes_truth_fits(p):
            lanes = False          # Miller indices beyond the lanes kernels' packing
        oor = np.zeros(npix if (c_switch and not lanes) else 1, dtype=np.uint8)
        slots = None
        if want_truth:
            # reflection truth: the general kernel, slots per pixel of the ROI index
            from .kernels.bundle import TruthSlots, truth_slots
            from .truth import NSLOTS, cell_phase
            opts = opts._replace(truth=True)
            npix_roi = int(p.pixel_index.shape[0])
            if lanes:
                # the lanes kernels empty the rows they fill: the arrays of the last
                # render are reused as they are (no fill, no fresh pages)
                buf = getattr(self, "_truth_buffer", None)
                if buf is None or buf.key.shape != (npix_roi, NSLOTS):
                    buf = TruthSlots(key=np.empty((npix_roi, NSLOTS), dtype=np.int64),
                                     photons=np.empty((npix_roi, NSLOTS)),
                                     phase=np.empty((npix_roi, NSLOTS)),
                                     overflow=np.empty(npix_roi, dtype=np.uint8),
                                     cell_phase=np.zeros(1))
                    self._truth_buffer = buf
                slots = buf._replace(cell_phase=np.ascontiguousarray(cell_phase(p),
                                                                     dtype=np.float64))
            else:
                slots = truth_slots(npix_roi, NSLOTS, cell_phase(p))
        offset = 0
        for block in self._row_blocks(callback, chunk_rows, target_seconds):
            if lanes:
                self._launch_lanes(opts, block, image,
                                   _slot_rows(slots, offset, block.shape[0]))
            else:
                self._launch(opts._replace(record_oor=c_switch), block, image,
                             self._carry_pixel, _NO_SWITCH, oor, dummy_trace,
                             _slot_rows(slots, offset, block.shape[0]))
            offset += block.shape[0]
        if lanes and slots is not None and opts.has_mask:
            # the lanes kernel renders masked pixels of a run too (not into the image)
            off = np.flatnonzero(p.mask[p.pixel_index] == 0)
            slots.key[off] = -1
            slots.photons[off] = 0.0
            slots.phase[off] = 0.0
            slots.overflow[off] = 0
        if lanes and opts.carry and self._carry_pixel >= 0:
            carry_slots = None
            if slots is not None:
                # the carry pixel's first sub-path: its slots again, by the general kernel
                at = int(np.searchsorted(p.pixel_index, self._carry_pixel))
                slots.key[at] = -1
                slots.photons[at] = 0.0
                slots.phase[at] = 0.0
                slots.overflow[at] = 0
                carry_slots = _slot_rows(slots, at, 1)
            self._launch(opts, np.array([self._carry_pixel], dtype=np.int64), image,
                         self._carry_pixel, _NO_SWITCH, oor, dummy_trace, carry_slots)
        self._switch_pixel = _NO_SWITCH
        if c_switch and not lanes:
            nz = np.flatnonzero(oor[p.pixel_index])
            if nz.size:
                # C switches interpolation off for good at the first out-of-range
                # evaluation (raster order): re-render from that pixel on
                first = int(nz[0])
                self._switch_pixel = int(p.pixel_index[first])
                if slots is not None:
                    slots.key[first:] = -1
                    slots.photons[first:] = 0.0
                    slots.phase[first:] = 0.0
                    slots.overflow[first:] = 0
                self._launch(opts._replace(interp=2), p.pixel_index[first:], image,
                             self._carry_pixel, self._switch_pixel, oor, dummy_trace,
                             _slot_rows(slots, first, p.pixel_index.shape[0] - first))
        if slots is not None:
            from . import truth as tr
            blocks = tr.complete_slots(self, opts, slots, self._carry_pixel,
                                       self._switch_pixel, _NO_SWITCH)
            self.frame_truth = tr.collect(p, blocks, **self._truth_frame)
        self.image = image.reshape(p.shape)     # (panels, slow, fast) with panels
        return self.image

    def trace_pixel(self, fpixel: int, spixel: int) -> PixelTrace:
        """The scaling chain of one pixel (renders the image first if needed)."""
        return self.trace_pixels([(fpixel, spixel)])[0]

    def trace_pixels(self, pixels) -> list:
        """The scaling chains of ``pixels`` ((fpixel, spixel) pairs), in one kernel call
        (one trace row per pixel); renders the image first if needed."""
        p = self.plan
        if self.image is None:
            self.run()
        fp = p.detector.fpixels
        idx = np.array([int(s) * fp + int(f) for f, s in pixels], dtype=np.int64)
        if idx.size == 0:
            return []
        opts = p.options._replace(trace=True, record_oor=False)
        if opts.interp == 1 and self.config.mode == "c-parity":
            opts = opts._replace(interp=2)
        image = np.zeros(fp * p.detector.spixels)
        trace = np.zeros((idx.size, 32))
        self._launch(opts, idx, image, self._carry_pixel, self._switch_pixel,
                     np.zeros(1, dtype=np.uint8), trace)
        return [PixelTrace(fpixel=int(i % fp), spixel=int(i // fp), I=t[0], I_over_steps=t[1],
                           polar=t[2], omega=t[3], capture_fraction=t[4], pixel=t[5],
                           F_cell=t[6], F_latt=t[7], hkl=(t[8], t[9], t[10]),
                           position=(t[11], t[12], t[13]),
                           rotated_cell=t[16:25].reshape(3, 3) * 1e10)
                for i, t in zip(idx, trace)]


def _no_truth():
    """The one-row placeholder TruthSlots passed when opts.truth is off (made once)."""
    t = _NO_TRUTH.get("slots")
    if t is None:
        from .kernels.bundle import no_truth_slots
        t = _NO_TRUTH["slots"] = no_truth_slots()
    return t


def _slot_rows(slots, start: int, count: int):
    """Rows start..start+count of the truth slots (views), or None without truth."""
    if slots is None:
        return None
    from .kernels.bundle import TruthSlots
    sl = slice(start, start + count)
    return TruthSlots(key=slots.key[sl], photons=slots.photons[sl], phase=slots.phase[sl],
                      overflow=slots.overflow[sl], cell_phase=slots.cell_phase)


def simulate(config: Config, threads: Optional[int] = None) -> np.ndarray:
    """Render ``config`` and return the (spixels, fpixels) float64 image."""
    return Simulator(config, threads=threads).run()

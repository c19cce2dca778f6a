"""CUDA backend: one ``@cuda.jit`` kernel launch per image, one thread per ROI pixel.

The per-pixel body is :func:`nbsim.kernels.pixel.get_pixel_fn` -- the same function the
CPU kernel runs, compiled as a CUDA device function -- so the physics is written once
(:mod:`nbsim.physics`).  Kernels are built per :class:`KernelOptions` (closure
constants, dead branches pruned) and cached on disk by numba-cuda.

Device memory per run: the output (one float64 per ROI pixel), the structure-factor
grid, the two cell tables (phi x domain rotations, built on the host once), sources,
geometry, the mask (one byte per detector pixel, only when a mask is given) and one
int64 for the c-parity tricubic switch.  The c-parity phi=0 carryover needs a single
pixel index (``carryover.first_executing_pixel``), passed as a kernel argument.

Works in the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), which the tests use when no
GPU is present.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
from numba import int64, uint32

from .options import KernelOptions
from .bundle import KernelArrays, TruthSlots, no_truth_slots
from .pixel import TRACE_LEN, get_pixel_fn

NO_SWITCH = np.iinfo(np.int64).max
THREADS_PER_BLOCK = int(os.environ.get("NBSIM_CUDA_TPB", "128"))

_KERNELS = {}

# numba.cuda, imported on first use (the kernels must see it as a module global: the
# CUDA simulator swaps that global for its own fake module)
cuda = None


def _cuda():
    global cuda
    if cuda is None:
        from .._numba_setup import require_numba_cuda
        require_numba_cuda()
        from numba import cuda as _c
        cuda = _c
    return cuda


def simulator_enabled() -> bool:
    try:
        from numba.cuda import config as ccfg
        return bool(getattr(ccfg, "ENABLE_CUDASIM", False))
    except Exception:  # pragma: no cover - older numba
        import numba
        return bool(getattr(numba.config, "ENABLE_CUDASIM", False))


def available() -> bool:
    """True when numba.cuda imports and a GPU (or the CUDA simulator) is usable."""
    try:
        _cuda()
    except Exception:
        return False
    try:
        return bool(cuda.is_available())
    except Exception:
        return False


# ---------------------------------------------------------------- numba-cuda quirks
# The physics is written once as numba.extending.register_jitable functions.  Two things
# that work for the CPU target do not compile for CUDA with numba-cuda 0.30:
#  * NumPy rounding ufuncs on scalars (np.floor, np.ceil, np.trunc, np.rint): typed,
#    but numba-cuda's ufunc table has no entry, so lowering fails (KeyError).  We add
#    the entries (they lower to the LLVM intrinsics, cvt.rmi/rpi/rzi/rni in PTX).
#  * register_jitable(inline="always"): core Numba's IR inliner types the inlinee with
#    core passes; under the CUDA target lowering then fails ("No implementation of
#    function add(omitted, omitted)").  While a CUDA kernel compiles, nbsim's own
#    always-inline overloads are switched to "never" (a plain device-function call,
#    which NVVM inlines anyway); the CPU target is untouched.
# Both touch numba-cuda / Numba internals, so both are guarded
# (nbsim._numba_setup.patch_status): applied only for the verified versions and when the
# objects they change have the expected form; otherwise numba-cuda runs unpatched (the
# simulator never needs them).  PATCHES records what was done, for the tests.
_PATCHED = False
_NBSIM_INLINE_TEMPLATES = None
PATCHES = {}


def _patch_numba_cuda():
    global _PATCHED
    if _PATCHED or simulator_enabled():
        return
    _PATCHED = True
    from .._numba_setup import patch_status
    ok, why = patch_status("cuda_ufuncs")
    if not ok:
        PATCHES["cuda_ufuncs"] = f"skipped: {why}"
        return
    try:
        from numba.cuda import ufuncs as cu_ufuncs
        from numba.cuda.np import npyfuncs
        db = cu_ufuncs.ufunc_db()
        if not isinstance(db, dict):
            PATCHES["cuda_ufuncs"] = "skipped: ufunc_db() is not a dict"
            return
        added = []
        for uf, name in ((np.floor, "np_real_floor_impl"), (np.ceil, "np_real_ceil_impl"),
                         (np.trunc, "np_real_trunc_impl"), (np.rint, "np_real_rint_impl")):
            impl = getattr(npyfuncs, name, None)
            if callable(impl) and uf not in db:
                db[uf] = {"f->f": impl, "d->d": impl}
                added.append(uf.__name__)
        PATCHES["cuda_ufuncs"] = "added " + (", ".join(added) or "nothing (present)")
    except Exception as e:  # pragma: no cover - other numba-cuda layouts
        PATCHES["cuda_ufuncs"] = f"skipped: {type(e).__name__}: {e}"


def _inline_switch_applies() -> bool:
    from .._numba_setup import patch_status
    if not patch_status("cuda_inline")[0]:
        return False
    try:
        from numba.core.typing.templates import InlineOptions
        return hasattr(InlineOptions("never"), "is_never_inline")
    except Exception:  # pragma: no cover
        return False


def _nbsim_inline_templates():
    """Overload templates of nbsim's register_jitable functions with inline='always'
    (rescanned when more overloads have been registered since the last call)."""
    global _NBSIM_INLINE_TEMPLATES
    try:
        from numba.core.typing.templates import builtin_registry
        n = len(builtin_registry.globals)
    except Exception:  # pragma: no cover
        return []
    if _NBSIM_INLINE_TEMPLATES is None or _NBSIM_INLINE_TEMPLATES[0] != n:
        found = []
        try:
            from numba.core import types as nbtypes
            for fn, ty in list(builtin_registry.globals):
                mod = getattr(fn, "__module__", "") or ""
                if not mod.startswith("nbsim") or not isinstance(ty, nbtypes.Function):
                    continue
                tmpl = ty.templates[0] if getattr(ty, "templates", None) else None
                inl = getattr(tmpl, "_inline", None)
                if inl is not None and hasattr(inl, "is_never_inline") \
                        and not inl.is_never_inline:
                    found.append(tmpl)
        except Exception:  # pragma: no cover
            found = []
        _NBSIM_INLINE_TEMPLATES = (n, found)
    return _NBSIM_INLINE_TEMPLATES[1]


class _NoInline:
    """Context manager: nbsim's always-inline overloads are 'never' inside (guarded:
    a no-op outside the verified numba / numba-cuda versions and in the simulator)."""

    def __enter__(self):
        self.saved = []
        if simulator_enabled() or not _inline_switch_applies():
            return self
        from numba.core.typing.templates import InlineOptions
        for t in _nbsim_inline_templates():
            self.saved.append((t, t.__dict__.get("_inline")))
            t._inline = staticmethod(InlineOptions("never"))
        PATCHES["cuda_inline"] = f"{len(self.saved)} templates switched"
        return self

    def __exit__(self, *exc):
        for t, v in self.saved:
            if v is None:
                try:
                    del t._inline
                except AttributeError:
                    pass
            else:
                t._inline = v
        return False


class Spec(NamedTuple):
    """Launch constants a CUDA kernel is specialised on besides KernelOptions: loop
    counts equal to 1 (the common case) become compile-time constants, which removes
    those loops and the registers they hold."""
    indexed: bool = False      # pixel indices from an array, not the ROI rectangle
    one_oversample: bool = False
    one_thickstep: bool = False
    one_source: bool = False
    one_cell: bool = False     # one phi step and one mosaic domain
    no_hkl: bool = False       # no structure-factor grid (default_F everywhere)
    rn_geometry: bool = False  # float64 geometry without FMA contraction (cuda_geometry)


def spec_of(plan, indexed=False, rn_geometry=False) -> Spec:
    return Spec(indexed=bool(indexed), rn_geometry=bool(rn_geometry),
                one_oversample=int(plan.oversample) == 1,
                one_thickstep=int(plan.detector.thicksteps) == 1,
                one_source=int(plan.src_lambda.shape[0]) == 1,
                one_cell=int(plan.crystal.phisteps * plan.crystal.mosaic_domains) == 1,
                no_hkl=int(plan.hkls) == 0)


def get_kernel(opts: KernelOptions, spec: Spec = Spec()):
    """The CUDA kernel (a numba-cuda dispatcher) for ``opts`` and ``spec``."""
    maxreg = int(os.environ.get("NBSIM_CUDA_MAXREG", "0") or 0)
    key = (opts, spec, maxreg)
    k = _KERNELS.get(key)
    if k is None:
        _cuda()
        _patch_numba_cuda()
        kw = {"cache": not simulator_enabled()}
        if maxreg > 0 and not simulator_enabled():
            kw["max_registers"] = maxreg
        k = cuda.jit(**kw)(kernel_source(opts, spec))
        _KERNELS[key] = k
    return k


def kernel_source(opts: KernelOptions, spec: Spec = Spec()):
    """The Python function of the kernel (before ``cuda.jit``), e.g. for compile_ptx."""
    _cuda()
    HAS_MASK = bool(opts.has_mask)
    RECORD_OOR = bool(opts.record_oor)
    INDEXED = bool(spec.indexed)
    ONE_OS = bool(spec.one_oversample)
    ONE_TS = bool(spec.one_thickstep)
    ONE_SRC = bool(spec.one_source)
    ONE_CELL = bool(spec.one_cell)
    NO_HKL = bool(spec.no_hkl)
    pixel = get_pixel_fn(opts, fastmath=False,
                         geometry="cuda_rn" if spec.rn_geometry else None)

    def render(out, n0, npix, pixel_index, x0, nx, y0, ka, carry_pixel, interp_switch_pixel,
               first_oor, trace, truth):
        """Thread t renders ROI pixel n = n0 + t into out[n] (t < npix).  Pixel n is
        pixel_index[n] (INDEXED) or the n-th pixel of the x0, y0, nx-wide rectangle in
        raster order.  ka: the plan's argument bundle (``bundle.KernelArrays``) with
        device arrays.  first_oor[0] receives the smallest raster index with an
        out-of-range tricubic evaluation (RECORD_OOR)."""
        t = cuda.grid(1)
        if t >= npix:
            return
        n = n0 + t
        fpixels = ka.fpixels
        if INDEXED:
            idx = pixel_index[n]
            fpixel = idx % fpixels
            spixel = idx // fpixels
        else:
            # unsigned 32-bit division (ROI < 2^32 pixels): no sign fix-ups, short sequence
            r = uint32(n) // uint32(nx)
            spixel = y0 + int64(r)
            fpixel = x0 + (n - int64(r) * nx)
            idx = spixel * fpixels + fpixel
        if HAS_MASK:
            if ka.mask[idx] == 0:
                out[n] = 0.0
                return
        if ONE_OS:
            os_ = 1
        else:
            os_ = ka.oversample
        if ONE_TS:
            ts_ = 1
        else:
            ts_ = ka.thicksteps
        if ONE_SRC:
            ns_ = 1
        else:
            ns_ = ka.src_lambda.shape[0]
        if ONE_CELL:
            nc_ = 1
        else:
            nc_ = ka.ncell
        if NO_HKL:
            hk_ = 0
        else:
            hk_ = ka.hkls
        val, oor = pixel(idx, fpixel, spixel, ka, os_, ts_, ns_, nc_, hk_,
                         carry_pixel, interp_switch_pixel, trace, 0, truth, n)
        out[n] = val
        if RECORD_OOR:
            if oor:
                if idx < first_oor[0]:
                    cuda.atomic.min(first_oor, 0, idx)

    return render


def _roi_rect(plan):
    """(x0, y0, nx, ny) when plan.pixel_index is the ROI rectangle in raster order
    (as make_plan builds it), else None."""
    pix = plan.pixel_index
    n = int(pix.shape[0])
    if n == 0:
        return None
    fp = plan.detector.fpixels
    first = int(pix[0])
    last = int(pix[-1])
    x0, y0 = first % fp, first // fp
    x1, y1 = last % fp, last // fp
    nx, ny = x1 - x0 + 1, y1 - y0 + 1
    if nx <= 0 or ny <= 0 or nx * ny != n:
        return None
    if n > 1 and int(pix[1]) != (first + 1 if nx > 1 else first + fp):
        return None
    return x0, y0, nx, ny


class GpuRender:
    """Device-side state of one render of ``sim.plan``: arrays uploaded once, kernels
    built for the plan's options.  ``render()`` reproduces ``Simulator._run_cpu``."""

    def __init__(self, sim, threads_per_block: int = None, pure_float32: bool = False,
                 upload: bool = True, truth: bool = False):
        """upload=False keeps the arrays on the host (to type the kernel, e.g. for
        ``cuda.compile_ptx`` where no GPU is present)."""
        if upload:
            _cuda()
        self.sim = sim
        p = sim.plan
        self.plan = p
        self.tpb = int(threads_per_block or THREADS_PER_BLOCK)
        self.float32 = getattr(p.config, "dtype", "float64") == "float32"
        # float32: the cell tables, structure factors and crystal constants are float32;
        # the detector geometry (pixel position, diffracted direction, q) stays float64
        # unless pure_float32: in float32, the unit vector's absolute error (6e-8) makes
        # h = a.q err by |a|/lambda * 6e-8, which a sharp lattice factor (large N)
        # turns into up to 3e-4 * max|C| on the golden cases (see docs/gpu.md)
        ft = np.float32 if self.float32 else np.float64
        gt = np.float32 if (self.float32 and pure_float32) else np.float64
        self.ft = ft
        self.gt = gt
        self.opts = p.options._replace(float32=self.float32, trace=False, record_oor=False)
        self.npix = int(p.pixel_index.shape[0])
        self.rect = _roi_rect(p)
        self.indexed = self.rect is None
        dev = cuda.to_device if upload else np.ascontiguousarray
        if self.indexed:
            self.d_pixel_index = dev(np.ascontiguousarray(p.pixel_index, dtype=np.int64))
            self.x0 = self.y0 = 0
            self.nx = 1
        else:
            self.d_pixel_index = dev(np.zeros(1, dtype=np.int64))
            self.x0, self.y0, self.nx, _ = self.rect
        self.d_mask = dev(np.ascontiguousarray(p.mask, dtype=np.uint8))
        self.d_geom = dev(np.ascontiguousarray(p.geom, dtype=gt))
        self.d_panel_geom = dev(np.ascontiguousarray(p.panel_table(), dtype=gt))
        self.d_src_dir = dev(np.ascontiguousarray(p.src_dir, dtype=gt))
        self.d_src_lambda = dev(np.ascontiguousarray(p.src_lambda, dtype=gt))
        self.d_cells = dev(np.ascontiguousarray(p.cells, dtype=ft))
        self.d_ast = dev(np.ascontiguousarray(p.ast, dtype=ft))
        self.d_Fgrid = dev(np.ascontiguousarray(p.Fgrid, dtype=ft))
        self.d_fgrid_meta = dev(np.ascontiguousarray(p.fgrid_meta, dtype=np.int64))
        self.d_lattice = dev(np.ascontiguousarray(p.lattice, dtype=ft))
        self.d_scalars = dev(np.ascontiguousarray(p.scalars, dtype=np.float64))
        self.d_first_oor = dev(np.array([NO_SWITCH], dtype=np.int64))
        self.d_trace = dev(np.zeros((1, TRACE_LEN)))
        # reflection truth (docs/truth.md): the slots of every ROI pixel (row n = thread's
        # pixel n), else a one-row placeholder the kernel never touches
        self.truth = bool(truth)
        if self.truth:
            from ..truth import NSLOTS, cell_phase
            from .bundle import truth_slots
            self.opts = self.opts._replace(truth=True)
            host = truth_slots(max(self.npix, 1), NSLOTS, cell_phase(p))
        else:
            host = no_truth_slots()
        self._truth_host = host
        self.truth_dev = TruthSlots(*(dev(a) for a in host))
        if upload:
            self.d_out = cuda.device_array(max(self.npix, 1), dtype=np.float64)
        else:
            self.d_out = np.zeros(max(self.npix, 1))
        self.subpixel_size = gt(p.subpixel_size)
        self.default_F = ft(p.default_F)
        self.ncell = int(p.crystal.phisteps * p.crystal.mosaic_domains)
        self.c_switch = (p.config.mode == "c-parity") and self.opts.interp == 1
        # C's rounding of the detector geometry (no FMA) when it is float64 on a real GPU
        self.spec = spec_of(p, self.indexed,
                            rn_geometry=(gt is np.float64) and not simulator_enabled())

    def device_bytes(self) -> int:
        """Bytes of device memory this render holds."""
        return int(sum(getattr(self, k).nbytes for k in vars(self) if k.startswith("d_")))

    # ------------------------------------------------------------------ launches
    def kernel(self, opts):
        return get_kernel(opts, self.spec)

    def launch_args(self, n0, count, carry_pixel=-1, switch_pixel=NO_SWITCH):
        """The kernel's argument tuple (also used to type it for compile_ptx)."""
        p = self.plan
        ka = KernelArrays(
            geom=self.d_geom, subpixel_size=self.subpixel_size, oversample=int(p.oversample),
            thicksteps=int(p.detector.thicksteps), fpixels=int(p.detector.fpixels),
            mask=self.d_mask, src_dir=self.d_src_dir, src_lambda=self.d_src_lambda,
            cells=self.d_cells, ncell=self.ncell, ast=self.d_ast, Fgrid=self.d_Fgrid,
            fgrid_meta=self.d_fgrid_meta, default_F=self.default_F, hkls=int(p.hkls),
            lattice=self.d_lattice, scalars=self.d_scalars, panel_geom=self.d_panel_geom,
            panel_rows=int(p.panel_rows))
        return (self.d_out, int(n0), int(count), self.d_pixel_index, int(self.x0),
                int(self.nx), int(self.y0), ka, int(carry_pixel), int(switch_pixel),
                self.d_first_oor, self.d_trace, self.truth_dev)

    def launch(self, opts, n0=0, carry_pixel=-1, switch_pixel=NO_SWITCH, stream=0):
        """Launch the kernel for ROI pixels n0.. (asynchronous)."""
        count = self.npix - int(n0)
        if count <= 0:
            return
        blocks = (count + self.tpb - 1) // self.tpb
        k = self.kernel(opts)
        cfg = k[blocks, self.tpb, stream] if stream else k[blocks, self.tpb]
        args = self.launch_args(n0, count, carry_pixel, switch_pixel)
        with _NoInline():          # a call may compile (new options or argument types)
            cfg(*args)

    def first_pass_opts(self):
        return self.opts._replace(record_oor=self.c_switch)

    def _roi_position(self, idx):
        """Position n in the ROI order of raster index idx."""
        if self.indexed:
            pix = self.plan.pixel_index
            n = int(np.searchsorted(pix, idx))
            if n < pix.shape[0] and int(pix[n]) == idx:
                return n
            return int(np.flatnonzero(pix == idx)[0])
        fp = self.plan.detector.fpixels
        return (idx // fp - self.y0) * self.nx + (idx % fp - self.x0)

    def render_device(self):
        """Both passes on the device; returns (carry_pixel, switch_pixel)."""
        sim = self.sim
        sim._prepare_carry()
        carry = int(sim._carry_pixel)
        if self.c_switch:
            self.d_first_oor.copy_to_device(np.array([NO_SWITCH], dtype=np.int64))
        self.launch(self.first_pass_opts(), 0, carry, NO_SWITCH)
        switch = NO_SWITCH
        if self.c_switch:
            first = int(self.d_first_oor.copy_to_host()[0])
            if first != NO_SWITCH:
                # C switches interpolation off for good at the first out-of-range
                # evaluation (raster order): re-render from that pixel on
                switch = first
                if self.truth:
                    # those pixels' slots start again
                    n0 = self._roi_position(first)
                    for d, h in zip(self.truth_dev[:4], self._truth_host[:4]):
                        d[n0:].copy_to_device(np.ascontiguousarray(h[n0:]))
                self.launch(self.opts._replace(interp=2), self._roi_position(first),
                            carry, switch)
        return carry, switch

    def fetch(self):
        """Copy the rendered ROI back into a full (spixels, fpixels) float64 image."""
        p = self.plan
        sp, fp = p.detector.spixels, p.detector.fpixels
        out = self.d_out.copy_to_host()[:self.npix]
        if not self.indexed and self.nx == fp and self.npix == sp * fp:
            return out.reshape(sp, fp)
        image = np.zeros(sp * fp, dtype=np.float64)
        if self.indexed:
            image[p.pixel_index] = out
            return image.reshape(sp, fp)
        img2 = image.reshape(sp, fp)
        ny = self.npix // self.nx
        img2[self.y0:self.y0 + ny, self.x0:self.x0 + self.nx] = out.reshape(ny, self.nx)
        return img2

    def render(self):
        carry, switch = self.render_device()
        image = self.fetch().reshape(self.plan.shape)     # (panels, slow, fast) with panels
        sim = self.sim
        sim._carry_pixel = carry
        sim._switch_pixel = switch
        sim.image = image
        if self.truth:
            from .. import truth as tr
            slots = TruthSlots(*(a.copy_to_host() for a in self.truth_dev))
            slots = slots._replace(key=slots.key[:self.npix], photons=slots.photons[:self.npix],
                                   phase=slots.phase[:self.npix],
                                   overflow=slots.overflow[:self.npix])
            # pixels with more than K lattice points: again on the CPU with more slots
            blocks = tr.complete_slots(sim, self.plan.options._replace(truth=True),
                                       slots, carry, switch, NO_SWITCH)
            sim.frame_truth = tr.collect(self.plan, blocks, **sim._truth_frame)
        return image


def run(sim) -> np.ndarray:
    """Render ``sim.plan`` on the GPU: (spixels, fpixels) float64, like _run_cpu.
    Also sets sim.image, sim._carry_pixel and sim._switch_pixel."""
    if not available():
        raise RuntimeError("device 'cuda': numba.cuda finds no GPU (install nbsim[cuda] on a "
                           "machine with an NVIDIA driver, or set NUMBA_ENABLE_CUDASIM=1 "
                           "for the simulator)")
    p = sim.plan
    if p.pixel_index.shape[0] == 0:
        sim._prepare_carry()
        sim._switch_pixel = NO_SWITCH
        sim.image = np.zeros(p.shape)
        return sim.image
    pure = os.environ.get("NBSIM_CUDA_PURE_F32", "") not in ("", "0")
    prepare_compiler()
    return GpuRender(sim, pure_float32=pure,
                     truth=bool(getattr(sim, "_want_truth", False))).render()


def prepare_compiler():
    """Set up numba-cuda's typing and target contexts now (0.15-0.3 s of Python the first
    time), which loading a cached kernel would do anyway, so that the work overlaps the
    GPU context's creation by :mod:`nbsim.kernels.cuda_warmup` (the first upload then
    waits for the context).  SciPy is not imported (:mod:`nbsim._numba_setup`)."""
    if simulator_enabled():
        return
    from .._numba_setup import prepare_cuda
    prepare_cuda()

"""CUDA adjoint kernel (numba.cuda): the per-pixel adjoint of :mod:`nbsim.gradients.core`,
the same ``register_jitable`` code the CPU kernel runs, compiled as device code.

Each thread walks a grid-stride sequence of ROI pixels, accumulating the plan-quantity
gradients in a thread-local array; at the end a block-level tree reduction in shared
memory leaves one partial per block, added atomically into a global (NACC,) array.  The
structure-factor gradient is scattered with ``cuda.atomic.add`` into one global grid.
Nothing is sized pixels x parameters.  Runs in the CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1`` set before numba.cuda is imported).
"""
from __future__ import annotations

import math
import os

import numpy as np
from numba.extending import register_jitable

from . import core

THREADS_PER_BLOCK = int(os.environ.get("NBSIM_ADJ_CUDA_TPB", "128"))
MAX_BLOCKS = int(os.environ.get("NBSIM_ADJ_CUDA_BLOCKS", "4096"))

# numba.cuda, imported on first use; a module global so that the CUDA simulator's
# replacement module is the one the kernels see
cuda = None
_KERNEL = None


def _cuda():
    global cuda
    if cuda is None:
        from .._numba_setup import require_numba_cuda
        require_numba_cuda()
        from numba import cuda as _c
        cuda = _c
    return cuda


def _simulator() -> bool:
    try:
        from numba.cuda import config as ccfg
        return bool(getattr(ccfg, "ENABLE_CUDASIM", False))
    except Exception:  # pragma: no cover
        import numba
        return bool(getattr(numba.config, "ENABLE_CUDASIM", False))


@register_jitable
def _scatter_cuda(gF, slot, i, j, k, v):
    cuda.atomic.add(gF, (slot, i, j, k), v)


def _kernel_source():
    _cuda()
    import numba
    pixel = core.make_pixel_adjoint(_scatter_cuda)
    NACC = core.NACC
    TPB = THREADS_PER_BLOCK
    f64 = numba.float64

    def adjoint(cot, image, write_image, pixel_index, ka, has_mask, src_dlam, dcells,
                carry_pixel, switch_pixel, iopt, acc_out, gF):
        """ka: the plan's argument bundle (``kernels.bundle.KernelArrays``), device arrays."""
        mask = ka.mask
        tid = cuda.threadIdx.x
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        acc = cuda.local.array(NACC, f64)
        for k in range(NACC):
            acc[k] = 0.0
        npix = pixel_index.shape[0]
        for n in range(start, npix, stride):
            idx = pixel_index[n]
            if has_mask:
                if mask[idx] == 0:
                    continue
            v = pixel(idx, cot[idx], ka, src_dlam, dcells, carry_pixel, switch_pixel, iopt,
                      acc, gF, 0)
            if write_image:
                image[idx] = v
        sh = cuda.shared.array(TPB, f64)
        for k in range(NACC):
            sh[tid] = acc[k]
            cuda.syncthreads()
            s = TPB // 2
            while s > 0:
                if tid < s:
                    sh[tid] += sh[tid + s]
                cuda.syncthreads()
                s //= 2
            if tid == 0:
                cuda.atomic.add(acc_out, k, sh[0])
            cuda.syncthreads()
    return adjoint


def get_kernel():
    global _KERNEL
    if _KERNEL is None:
        c = _cuda()
        from ..kernels.cuda import _patch_numba_cuda
        _patch_numba_cuda()      # np.floor/np.ceil lowering for numba-cuda (see kernels/cuda.py)
        _KERNEL = c.jit(cache=not _simulator())(_kernel_source())
    return _KERNEL


def available() -> bool:
    try:
        return bool(_cuda().is_available())
    except Exception:
        return False


def _plan_arrays(plan, c):
    """Device copies of the plan's arrays, made once per plan (kept on the plan object)."""
    dev = getattr(plan, "_nbsim_adjoint_dev", None)
    if dev is None:
        d = c.to_device
        dev = {"pixel_index": d(plan.pixel_index), "mask": d(plan.mask), "geom": d(plan.geom),
               "src_dir": d(plan.src_dir), "src_lambda": d(plan.src_lambda),
               "cells": d(plan.cells), "ast": d(plan.ast), "Fgrid": d(plan.Fgrid),
               "fgrid_meta": d(plan.fgrid_meta), "lattice": d(plan.lattice),
               "scalars": d(plan.scalars)}
        try:
            plan._nbsim_adjoint_dev = dev
        except AttributeError:  # pragma: no cover - slotted plan
            pass
    return dev


def run_adjoint_cuda(sim, cot, kin, timing=None, want_image=True, during=None):
    """Launch the adjoint on the GPU; ``kin`` from :func:`host.kernel_inputs`.

    ``during()``, if given, runs on the host while the kernel runs (its result is returned
    as ``AdjointResult.extra``); ``want_image=False`` skips writing and fetching the image.
    """
    from .result import AdjointResult
    c = _cuda()
    if THREADS_PER_BLOCK & (THREADS_PER_BLOCK - 1):
        raise ValueError("NBSIM_ADJ_CUDA_TPB must be a power of two")
    p = sim.plan
    sp, fp = p.detector.spixels, p.detector.fpixels
    want = kin["iopt"][core.O_WANT_F] != 0
    npix = p.pixel_index.shape[0]
    kern = get_kernel()
    d = c.to_device
    dev = _plan_arrays(p, c)
    d_image = d(np.zeros(sp * fp)) if want_image else c.device_array(1)
    d_acc = d(np.zeros(core.NACC))
    d_gF = d(np.zeros((1,) + p.Fgrid.shape) if want else np.zeros((1, 1, 1, 1)))
    ka = p.kernel_arrays()._replace(
        geom=dev["geom"], mask=dev["mask"], src_dir=dev["src_dir"],
        src_lambda=dev["src_lambda"], cells=dev["cells"], ast=dev["ast"], Fgrid=dev["Fgrid"],
        fgrid_meta=dev["fgrid_meta"], lattice=dev["lattice"], scalars=dev["scalars"])
    args = [d(np.ascontiguousarray(cot)), d_image, bool(want_image), dev["pixel_index"], ka,
            bool(p.options.has_mask), d(kin["src_dlam"]), d(kin["dcells"]),
            kin["carry_pixel"], kin["switch_pixel"], d(kin["iopt"]), d_acc, d_gF]
    blocks = max(1, min(MAX_BLOCKS, math.ceil(npix / THREADS_PER_BLOCK)))
    if timing is not None:
        c.synchronize()
        import time
        t0 = time.perf_counter()
    from ..kernels.cuda import _NoInline
    with _NoInline():            # the physics' always-inline functions: plain calls on CUDA
        kern[blocks, THREADS_PER_BLOCK](*args)
    if timing is not None:
        c.synchronize()
        timing.append(time.perf_counter() - t0)
    extra = during() if during is not None else None
    acc = d_acc.copy_to_host()
    gF = d_gF.copy_to_host()[0] if want else None
    image = d_image.copy_to_host().reshape(sp, fp) if want_image else None
    res = AdjointResult(acc=acc, gF=gF, image=image)
    res.extra = extra
    return res

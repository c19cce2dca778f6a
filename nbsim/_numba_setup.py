"""Numba target set-up without SciPy's import on the start-up path.

The first compile or cache load of a Numba kernel sets up its target (registries of
implementations).  Numba's ``np.arraymath`` (and numba-cuda's copy of it) then imports
``scipy.linalg.cython_blas`` only to decide whether ``np.dot``-like calls may use BLAS:
0.15-0.25 s, the largest part of the set-up, in every process, although nbsim's kernels
make no such call.  :func:`prepare_cpu` / :func:`prepare_cuda` set the target up with
that check answered from the file system instead (is SciPy's ``cython_blas`` installed?)
without importing SciPy.  Behaviour is unchanged: a kernel that does call ``np.dot``
still imports SciPy then, through Numba's own ``ensure_blas`` at typing time.

Both are idempotent and never raise; if Numba's layout differs they do nothing and the
target sets itself up the usual way on first use.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading

__all__ = ["prepare_cpu", "prepare_cuda", "scipy_blas_installed"]

_DONE = set()
_LOCK = threading.Lock()


def scipy_blas_installed() -> bool:
    """True when SciPy's ``linalg/cython_blas`` extension is present (no import)."""
    try:
        spec = importlib.util.find_spec("scipy")
    except (ImportError, ValueError):
        return False
    for loc in (getattr(spec, "submodule_search_locations", None) or []) if spec else []:
        d = os.path.join(loc, "linalg")
        try:
            if any(n.startswith("cython_blas.") for n in os.listdir(d)):
                return True
        except OSError:
            continue
    return False


def _deferred_blas_setup(linalg_name: str, arraymath_name: str, refresh) -> None:
    if arraymath_name in sys.modules or "scipy.linalg" in sys.modules:
        refresh()                 # nothing to save: SciPy's linalg is loaded already
        return
    linalg = importlib.import_module(linalg_name)
    real = linalg.ensure_blas

    def deferred():
        raise ImportError("BLAS check deferred (nbsim._numba_setup)")

    linalg.ensure_blas = deferred
    try:
        refresh()
    finally:
        linalg.ensure_blas = real
        am = sys.modules.get(arraymath_name)
        if am is not None and getattr(am, "ensure_blas", None) is deferred:
            am.ensure_blas = real
            am._HAVE_BLAS = scipy_blas_installed()


def _once(key: str, fn) -> None:
    if key in _DONE:
        return
    with _LOCK:
        if key in _DONE:
            return
        try:
            fn()
        except Exception:  # noqa: BLE001 - the target sets itself up on first use
            pass
        _DONE.add(key)


def prepare_cpu() -> None:
    """Set up Numba's CPU target (before the first CPU kernel call)."""
    def go():
        from numba.core.registry import cpu_target

        def refresh():
            cpu_target.typing_context.refresh()
            cpu_target.target_context.refresh()
        _deferred_blas_setup("numba.np.linalg", "numba.np.arraymath", refresh)
    _once("cpu", go)


def prepare_cuda() -> None:
    """Set up numba-cuda's target (before the first kernel load)."""
    def go():
        from numba.cuda.descriptor import cuda_target

        def refresh():
            cuda_target.typing_context.refresh()
            cuda_target.target_context.refresh()
        _deferred_blas_setup("numba.cuda.np.linalg", "numba.cuda.np.arraymath", refresh)
    _once("cuda", go)

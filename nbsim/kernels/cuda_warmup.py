"""Start the CUDA driver in the background while the host prepares a render.

Creating the GPU's primary context (``cuInit`` + ``cuDevicePrimaryCtxRetain``) takes a
large part of a short process's wall time (0.7-0.8 s measured on an H200 machine), and
none of it needs Python: it is driver work.  :func:`start` runs it on a thread through
``ctypes`` (which releases the GIL), so it overlaps the imports of Numba and numba-cuda,
the flag parsing, the plan and the compiler's typing-context set-up, which all run on the
main thread meanwhile.  numba-cuda later calls ``cuInit`` and retains the same primary
context of device 0, which then returns at once (the driver API is thread-safe; a call
made while the thread is still inside the driver waits for it).

Nothing here imports Numba or NumPy.  Failure of any kind (no driver library, no device)
is recorded, never raised: the render path then reports "no usable GPU" as before.
The thread is not a daemon, so the interpreter waits for it at exit rather than tearing
the driver down while a call is in flight.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
from typing import Callable, Optional

__all__ = ["start", "wait_initialized", "wait_ready", "state", "found_no_gpu"]


class _State:
    def __init__(self):
        self.thread: Optional[threading.Thread] = None
        self.initialized = threading.Event()   # cuInit and the device count are known
        self.ready = threading.Event()         # the primary context exists (or failed)
        self.device_count = 0
        self.error: Optional[str] = None
        self.seconds = {}                      # phase -> seconds, for NBSIM_TIMING


_STATE = _State()
_LOCK = threading.Lock()


def _load_driver():
    """The CUDA driver library through ctypes (CDLL: calls release the GIL)."""
    names = ("nvcuda.dll",) if sys.platform == "win32" else ("libcuda.so.1", "libcuda.so")
    last = None
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            last = e
    raise OSError(f"CUDA driver library not found ({last})")


def _work(state: _State, load: Callable):
    import time
    t0 = time.perf_counter()
    try:
        try:
            lib = load()
            if lib.cuInit(ctypes.c_uint(0)) != 0:
                raise RuntimeError("cuInit failed")
            count = ctypes.c_int(0)
            if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
                raise RuntimeError("cuDeviceGetCount failed")
            state.device_count = int(count.value)
        finally:
            state.seconds["init"] = time.perf_counter() - t0
            state.initialized.set()
        if state.device_count < 1:
            raise RuntimeError("no CUDA device")
        dev = ctypes.c_int(0)
        if lib.cuDeviceGet(ctypes.byref(dev), 0) != 0:
            raise RuntimeError("cuDeviceGet failed")
        ctx = ctypes.c_void_p(0)
        # numba-cuda uses device 0's primary context (the one retained here); this
        # reference is never released, the context lives as long as the process
        if lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) != 0:
            raise RuntimeError("cuDevicePrimaryCtxRetain failed")
    except Exception as e:  # noqa: BLE001 - recorded, the render path reports it
        state.error = f"{type(e).__name__}: {e}"
    finally:
        state.seconds["context"] = time.perf_counter() - t0
        state.initialized.set()
        state.ready.set()


def start(load: Optional[Callable] = None) -> bool:
    """Start the driver initialisation once per process (later calls do nothing).

    Returns True when a thread was started by this call.  Skipped under the CUDA
    simulator (``NUMBA_ENABLE_CUDASIM``) and when ``NBSIM_CUDA_WARMUP=0``.  ``load``
    replaces the driver loader (tests)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "") not in ("", "0"):
        return False
    if os.environ.get("NBSIM_CUDA_WARMUP", "1") in ("0", ""):
        return False
    with _LOCK:
        if _STATE.thread is not None:
            return False
        _STATE.thread = threading.Thread(target=_work, args=(_STATE, load or _load_driver),
                                         name="nbsim-cuda-warmup", daemon=False)
        _STATE.thread.start()
    return True


def wait_initialized(timeout: Optional[float] = None) -> bool:
    """Wait until ``cuInit`` has returned (if :func:`start` ran); True if it did."""
    if _STATE.thread is None:
        return False
    return _STATE.initialized.wait(timeout)


def wait_ready(timeout: Optional[float] = None) -> bool:
    """Wait until the primary context exists or the attempt failed (if started)."""
    if _STATE.thread is None:
        return False
    return _STATE.ready.wait(timeout)


def state() -> _State:
    return _STATE


def found_no_gpu() -> bool:
    """True when the driver thread has finished and found no driver or no device (so
    ``-device auto`` can choose the CPU without importing numba.cuda)."""
    return _STATE.ready.is_set() and _STATE.device_count == 0


def _reset_for_tests():
    """Forget a finished warm-up (tests only)."""
    global _STATE
    if _STATE.thread is not None:
        _STATE.thread.join()
    _STATE = _State()

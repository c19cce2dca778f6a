"""How the console scripts end: once the command has returned, with every output written,
closed and renamed, the process exits at once instead of tearing the interpreter down.

Tearing down a process that loaded Numba's compiled kernels (module and object clean-up,
LLVM's and the thread pool's finalisers) takes ~0.1 s, a quarter of a small render's
whole run, and does nothing a finished command needs.  Standard output and error are
flushed first.  The ordinary exit is kept where something may still need the tear-down:
other non-daemon threads, live child processes, Dask/distributed loaded (a dataset's
cluster), a coverage or profiling tool, or ``NBSIM_FAST_EXIT=0``.
"""
from __future__ import annotations

import os
import sys
import threading


def _tear_down_needed() -> bool:
    if os.environ.get("NBSIM_FAST_EXIT", "1").strip() in ("0", "no", "off"):
        return True
    if any(m in sys.modules for m in ("distributed", "coverage", "cProfile", "profile")):
        return True
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return True
    if any(t is not threading.current_thread() and not t.daemon and t.is_alive()
           for t in threading.enumerate()):
        return True
    mp = sys.modules.get("multiprocessing")
    if mp is not None and mp.active_children():
        return True
    return False


def exit_now(status) -> None:
    """End the process with ``status`` (an int, or None for 0), skipping the
    interpreter's tear-down when nothing needs it (see the module docstring)."""
    code = 0 if status is None else int(status)
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    if _tear_down_needed():
        sys.exit(code)
    os._exit(code)

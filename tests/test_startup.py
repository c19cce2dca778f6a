"""Start-up path: Numba's CPU target is set up without importing SciPy, and nothing else
changes (nbsim._numba_setup)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_CHECK = r"""
import sys, importlib
from nbsim import _numba_setup
import nbsim
sim = nbsim.Simulator.from_args("-cell 100 100 100 90 90 90 -default_F 100 -N 2 "
                                "-detpixels 8 -mosaic 1 -mosaic_dom 3".split())
img = sim.run()
assert img.max() > 0
assert "scipy.linalg" not in sys.modules, "scipy.linalg imported on the render path"
am = sys.modules["numba.np.arraymath"]
la = importlib.import_module("numba.np.linalg")
assert am._HAVE_BLAS is _numba_setup.scipy_blas_installed()
assert am.ensure_blas is la.ensure_blas and la.ensure_blas.__module__ == "numba.np.linalg"
# user code that needs BLAS still gets it (SciPy imported on demand, as Numba does)
if _numba_setup.scipy_blas_installed():
    import numba, numpy as np
    @numba.njit
    def mm(a, b):
        return np.dot(a, b)
    assert mm(np.eye(2), np.full((2, 2), 3.0)).sum() == 12.0
    assert "scipy.linalg" in sys.modules
print("ok")
"""


def test_cpu_target_set_up_without_scipy_and_blas_still_works():
    r = subprocess.run([sys.executable, "-c", _CHECK], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


def test_prepare_is_idempotent_and_harmless_after_scipy():
    code = ("import scipy.linalg, sys\n"
            "from nbsim import _numba_setup as s\n"
            "s.prepare_cpu(); s.prepare_cpu()\n"
            "assert sys.modules['numba.np.arraymath']._HAVE_BLAS is True\n"
            "print('ok')")
    pytest.importorskip("scipy.linalg")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]

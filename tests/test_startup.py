"""Start-up path (nbsim._numba_setup, nbsim.cli._exit): cached kernels load without Numba's
full target set-up, the set-up that a compile needs still happens (without importing SciPy
for nbsim's kernels), Numba's runtime is cached, the console scripts exit at once -- and
nothing else changes: the same images, the same BLAS answer for user code."""
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from nbsim.cli import _exit

ROOT = Path(__file__).resolve().parent.parent

_ARGS = ("-cell 100 100 100 90 90 90 -default_F 100 -N 2 -detpixels 8 "
         "-mosaic 1 -mosaic_dom 3")


def _py(code, env=None, timeout=600):
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")])
    e.update(env or {})
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                       text=True, timeout=timeout, env=e)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip().splitlines()


_RENDER = r"""
import sys
import nbsim
img = nbsim.Simulator.from_args(%r.split()).run()
print(repr(float(img.sum())), repr(float(img.max())))
print("arraymath" if "numba.np.arraymath" in sys.modules else "lazy")
print("scipy.linalg" if "scipy.linalg" in sys.modules else "no-scipy")
# user code compiled afterwards gets Numba's full set-up, BLAS included
import numba, numpy as np
from nbsim import _numba_setup
@numba.njit
def mm(a, b):
    return np.dot(a, b)
if _numba_setup.scipy_blas_installed():
    assert mm(np.eye(2), np.full((2, 2), 3.0)).sum() == 12.0
    assert sys.modules["numba.np.arraymath"]._HAVE_BLAS is True
print("ok")
""" % _ARGS


def test_warm_cache_loads_without_the_full_target_set_up():
    """Second process, kernels cached: no registry set-up (numba.np.arraymath is what it
    imports), no SciPy, the same image as with the lazy load switched off; user code
    compiled later in the same process still works, np.dot by BLAS included."""
    first = _py(_RENDER)                                  # warms the cache
    lazy = _py(_RENDER)
    eager = _py(_RENDER, {"NBSIM_LAZY_CACHE_LOAD": "0"})
    assert lazy[0] == first[0] == eager[0]
    assert float(lazy[0].split()[0]) > 0
    assert lazy[1:3] == ["lazy", "no-scipy"] and lazy[-1] == "ok"
    assert eager[1:3] == ["arraymath", "no-scipy"] and eager[-1] == "ok"


_MISS = r"""
import sys, importlib
import numpy as np
from nbsim import _numba_setup
from nbsim.kernels import cpu_lanes
_numba_setup.prepare_cpu()
idx = np.array([0, 1, 2, 5, 6, 9], dtype=np.int64)
s, n = cpu_lanes.chunks(idx, 4, 2)                  # a cache miss: compiled here
assert s.tolist() == [0, 2, 5, 9] and n.tolist() == [2, 1, 2, 1], (s, n)
assert "scipy.linalg" not in sys.modules, "scipy.linalg imported on the render path"
am = sys.modules["numba.np.arraymath"]               # the full set-up ran first
la = importlib.import_module("numba.np.linalg")
assert am._HAVE_BLAS is _numba_setup.scipy_blas_installed()
assert am.ensure_blas is la.ensure_blas and la.ensure_blas.__module__ == "numba.np.linalg"
print("ok")
"""


def test_cache_miss_does_the_full_set_up_without_scipy(tmp_path):
    """An empty cache: the kernel is compiled after Numba's full set-up, done with the
    BLAS check answered from the file system (no SciPy import), and Numba's own check
    put back."""
    assert _py(_MISS, {"NUMBA_CACHE_DIR": str(tmp_path)}) == ["ok"]


_NRT = r"""
import sys
from numba.core.runtime import nrtdynmod
if sys.argv[-1] == "forbid":
    def no(*a, **k):
        raise AssertionError("the runtime was compiled, not loaded from the cache")
    nrtdynmod.create_nrt_module = no
import numpy as np
from nbsim import _numba_setup
from nbsim.kernels import cpu_lanes
_numba_setup.prepare_cpu()
s, n = cpu_lanes.chunks(np.arange(10, dtype=np.int64), 5, 3)
assert s.tolist() == [0, 3, 5, 8] and n.tolist() == [3, 2, 3, 2]
print("ok")
"""


def test_numba_runtime_object_code_is_cached(tmp_path):
    """The first process compiles Numba's runtime module and keeps its object code in
    the cache directory; the next one loads it (compiling it would fail here) and runs."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path)}
    assert _py(_NRT + "\n", env) == ["ok"]
    assert len(list(tmp_path.glob("nbsim_nrt.*.bin"))) == 1
    e = dict(os.environ, **env)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-c", _NRT, "forbid"], cwd=ROOT, env=e,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]
    # a damaged entry is recompiled, not trusted
    for p in tmp_path.glob("nbsim_nrt.*.bin"):
        p.write_bytes(b"garbage")
    assert _py(_NRT + "\n", env) == ["ok"]


def test_lazy_load_guard(monkeypatch):
    from nbsim import _numba_setup as ns
    ok, why = ns.patch_status("cpu_lazy_load")
    assert ok, why
    monkeypatch.setenv("NBSIM_LAZY_CACHE_LOAD", "0")
    assert ns.patch_status("cpu_lazy_load") == (False, "NBSIM_LAZY_CACHE_LOAD=0")
    monkeypatch.delenv("NBSIM_LAZY_CACHE_LOAD")
    monkeypatch.setitem(ns.VERIFIED, "numba", ((0, 1), (0, 1)))
    ok, why = ns.patch_status("cpu_lazy_load")
    assert not ok and "outside the verified range" in why


def test_prepare_is_idempotent_and_harmless_after_scipy():
    pytest.importorskip("scipy.linalg")
    code = ("import scipy.linalg, sys\n"
            "from nbsim import _numba_setup as s\n"
            "s.prepare_cpu(); s.prepare_cpu()\n"
            "import nbsim\n"
            "img = nbsim.Simulator.from_args('-cell 50 50 50 90 90 90 -default_F 1 "
            "-detpixels 4'.split()).run()\n"
            "assert img.max() > 0\n"
            "print('ok')")
    assert _py(code) == ["ok"]


# ------------------------------------------------------------------ the quick exit
def _nbsim(args, cwd, env=None):
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")])
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "nbsim", *args], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=600)


def test_quick_exit_leaves_complete_outputs_and_exit_status(tmp_path):
    """The console command ends without the interpreter's tear-down: the printout is
    complete (it goes to a pipe here, so it is buffered until the flush), the files are
    whole, the same as with the ordinary exit, and the exit status is kept."""
    args = _ARGS.split() + ["-floatfile", "f.bin", "-intfile", "i.img", "-nonoise"]
    runs = {}
    for mode, env in (("quick", {}), ("ordinary", {"NBSIM_FAST_EXIT": "0"})):
        d = tmp_path / mode
        d.mkdir()
        r = _nbsim(args, d, env)
        assert r.returncode == 0, r.stderr[-2000:]
        runs[mode] = (r.stdout, (d / "f.bin").read_bytes(), (d / "i.img").read_bytes())
        assert r.stdout.rstrip().splitlines()[-1].startswith("writing image.pgm")
    assert runs["quick"] == runs["ordinary"]
    img = np.frombuffer(runs["quick"][1], dtype="<f4")
    assert img.size == 64 and img.max() > 0
    bad = _nbsim(["-cell", "1", "2"], tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "-cell" in bad.stderr


def test_ordinary_exit_kept_when_something_needs_the_tear_down(monkeypatch):
    monkeypatch.delenv("NBSIM_FAST_EXIT", raising=False)
    monkeypatch.setattr(sys, "gettrace", lambda: None)
    monkeypatch.setattr(sys, "getprofile", lambda: None)
    for m in ("distributed", "coverage", "cProfile", "profile"):
        monkeypatch.delitem(sys.modules, m, raising=False)
    mp = sys.modules.get("multiprocessing")
    if mp is not None:
        monkeypatch.setattr(mp, "active_children", lambda: [])
    busy = [t for t in threading.enumerate()
            if t is not threading.current_thread() and not t.daemon and t.is_alive()]
    if busy:
        pytest.skip(f"non-daemon threads in this test process: {busy}")
    assert not _exit._tear_down_needed()
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert _exit._tear_down_needed()      # a thread that may still be working
    finally:
        stop.set()
        t.join()
    monkeypatch.setenv("NBSIM_FAST_EXIT", "0")
    assert _exit._tear_down_needed()

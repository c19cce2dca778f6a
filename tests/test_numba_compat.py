"""The private-API patches of Numba / numba-cuda are guarded (nbsim._numba_setup.patch_status):
applied on the pinned versions, skipped (unpatched behaviour) elsewhere or when disabled."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nbsim import _numba_setup as ns

ROOT = Path(__file__).resolve().parent.parent


def _pins():
    """{dist: (lo, hi_exclusive)} from pyproject.toml's dependencies and the cuda extra."""
    text = (ROOT / "pyproject.toml").read_text()
    pins = {}
    for dist in ("numba", "llvmlite", "numba-cuda"):
        m = re.search(r'"%s>=([0-9.]+),<([0-9.]+)"' % re.escape(dist), text)
        assert m, f"{dist} has no >=,< range in pyproject.toml"
        pins[dist] = (m.group(1), m.group(2))
    return pins


def _vt(v):
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def test_pins_are_the_verified_ranges():
    pins = _pins()
    for dist in ("numba", "numba-cuda"):
        (lo_major, lo_minor), (hi_major, hi_minor) = ns.VERIFIED[dist]
        lo, hi = pins[dist]
        assert _vt(lo)[:2] == (lo_major, lo_minor)
        assert _vt(hi)[:2] == (hi_major, hi_minor + 1)


def test_installed_versions_are_inside_the_pins():
    from importlib.metadata import version
    pins = _pins()
    for dist in ("numba", "llvmlite"):
        v = _vt(version(dist))
        lo, hi = pins[dist]
        assert _vt(lo) <= v < _vt(hi), (dist, v)
    cv = ns.numba_cuda_version()
    if cv is not None:
        lo, hi = pins["numba-cuda"]
        assert _vt(lo) <= _vt(cv) < _vt(hi)


def test_patches_apply_on_the_pinned_versions():
    for name in ("cpu_blas", "cpu_local_linkage"):
        ok, why = ns.patch_status(name)
        assert ok, why
    for name in ("cuda_blas", "cuda_ufuncs", "cuda_inline"):
        ok, why = ns.patch_status(name)
        if ns.numba_cuda_version() is None:
            assert not ok and "numba-cuda" in why
        elif ns.cuda_unavailable_reason() is not None and name != "cuda_inline":
            assert not ok and "not found" in why      # numba.cuda does not import
        else:
            assert ok, why


def test_patches_skipped_outside_the_verified_versions(monkeypatch):
    monkeypatch.setitem(ns.VERIFIED, "numba", ((0, 1), (0, 1)))
    for name in ("cpu_blas", "cpu_local_linkage"):
        ok, why = ns.patch_status(name)
        assert not ok and "outside the verified range" in why
    monkeypatch.setitem(ns.VERIFIED, "numba-cuda", ((0, 1), (0, 1)))
    if ns.numba_cuda_version() is not None:
        for name in ("cuda_blas", "cuda_ufuncs", "cuda_inline"):
            ok, why = ns.patch_status(name)
            assert not ok and "outside the verified range" in why
    monkeypatch.setenv("NBSIM_NUMBA_PATCHES", "0")
    assert ns.patch_status("cpu_blas") == (False, "NBSIM_NUMBA_PATCHES=0")
    assert ns.patch_status("cpu_local_linkage") == (False, "NBSIM_NUMBA_PATCHES=0")
    with pytest.raises(ValueError):
        ns.patch_status("nonsense")


def test_version_parsing():
    assert ns._minor("0.68.1") == (0, 68)
    assert ns._minor("0.30.4rc1") == (0, 30)
    assert ns._minor("1.0") == (1, 0)
    assert ns._minor("garbage") is None
    assert ns._in_verified("numba", "0.68.1")
    assert not ns._in_verified("numba", "0.69.0")
    assert not ns._in_verified("numba", None)


_UNPATCHED = r"""
import sys, importlib
from nbsim import _numba_setup
assert not _numba_setup.patch_status("cpu_blas")[0]
import nbsim
img = nbsim.Simulator.from_args("-cell 100 100 100 90 90 90 -default_F 100 -N 2 "
                                "-detpixels 6 -oversample 1".split()).run()
am = sys.modules["numba.np.arraymath"]
la = importlib.import_module("numba.np.linalg")
# Numba's own set-up ran: its ensure_blas, its answer
assert am.ensure_blas is la.ensure_blas
assert am._HAVE_BLAS is _numba_setup.scipy_blas_installed()
if _numba_setup.scipy_blas_installed():
    assert "scipy.linalg" in sys.modules      # the import the patch avoids
print(repr(float(img.sum())))
"""

def test_unpatched_numba_renders_the_same_image():
    """With the patches off (what an unverified version gets) the render is unchanged."""
    import nbsim
    env = dict(os.environ, NBSIM_NUMBA_PATCHES="0")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    r0 = subprocess.run([sys.executable, "-c", _UNPATCHED], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)
    assert r0.returncode == 0, r0.stderr[-2000:]
    img = nbsim.Simulator.from_args("-cell 100 100 100 90 90 90 -default_F 100 -N 2 "
                                    "-detpixels 6 -oversample 1".split()).run()
    s0 = float(r0.stdout.split()[-1])
    assert s0 > 0 and s0 == float(img.sum())


def test_cuda_patches_are_noops_when_disabled(monkeypatch):
    """_patch_numba_cuda and _NoInline change nothing when their guard says no."""
    if ns.cuda_unavailable_reason() is not None:
        pytest.skip(f"no CUDA backend: {ns.cuda_unavailable_reason()}")
    from nbsim.kernels import cuda as kc
    if kc.simulator_enabled():
        pytest.skip("the simulator never patches")
    monkeypatch.setenv("NBSIM_NUMBA_PATCHES", "0")
    monkeypatch.setattr(kc, "_PATCHED", False)
    monkeypatch.setattr(kc, "PATCHES", {})
    kc._patch_numba_cuda()
    assert kc.PATCHES["cuda_ufuncs"].startswith("skipped: NBSIM_NUMBA_PATCHES=0")
    with kc._NoInline() as ni:
        assert ni.saved == []


def test_no_inline_switch_restores_templates():
    """On the pinned versions _NoInline switches nbsim's always-inline templates to
    'never' and puts every one back as it was."""
    if ns.cuda_unavailable_reason() is not None:
        pytest.skip(f"no CUDA backend: {ns.cuda_unavailable_reason()}")
    from nbsim.kernels import cuda as kc
    if kc.simulator_enabled():
        pytest.skip("the simulator never patches")
    import nbsim.physics  # noqa: F401 - registers the overloads
    before = [(t, t.__dict__.get("_inline")) for t in kc._nbsim_inline_templates()]
    assert before, "no always-inline nbsim templates found"
    with kc._NoInline() as ni:
        assert len(ni.saved) == len(before)
        assert all(t._inline.is_never_inline for t, _ in before)
    assert all(t.__dict__.get("_inline") is v for t, v in before)


def test_cuda_backend_requires_numba_cuda(monkeypatch):
    from nbsim.kernels import cuda as kc
    monkeypatch.setattr(ns, "numba_cuda_version", lambda: None)
    monkeypatch.setattr(kc, "cuda", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[cuda\]"'):
        kc._cuda()
    assert kc.available() is False


def test_device_cuda_without_numba_cuda_says_how_to_install(monkeypatch, tmp_path):
    import io
    from nbsim.cli.main import main
    from nbsim.kernels import cuda as kc
    monkeypatch.setattr(ns, "numba_cuda_version", lambda: None)
    monkeypatch.setattr(kc, "cuda", None)
    err = io.StringIO()
    rc = main(["-cell", "50", "50", "50", "90", "90", "90", "-default_F", "1",
               "-detpixels", "2", "-device", "cuda", "-floatfile", str(tmp_path / "f.bin")],
              stdout=io.StringIO(), stderr=err)
    assert rc == 2
    assert err.getvalue().count("\n") == 1
    assert "-device cuda: no usable CUDA GPU" in err.getvalue()
    assert 'pip install -e ".[cuda]"' in err.getvalue()
    assert not list(tmp_path.iterdir())

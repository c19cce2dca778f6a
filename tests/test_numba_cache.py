"""An unprivileged user with a read-only package and no NUMBA_CACHE_DIR can still run nbsim
(nbsim._numba_setup.ensure_cache_dir).

Emulation: the package is copied to a fresh directory and made read-only (``chmod -R a-w``);
as root (who ignores permission bits) the subprocess runs as user ``nobody`` through
``setpriv`` (home /nonexistent, so Numba's own user-wide cache is not writable either),
with a clean environment (no NUMBA_CACHE_DIR).  Not root: the copy alone is read-only.
"""
import io
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from nbsim import _numba_setup as ns

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534


def _setpriv():
    return shutil.which("setpriv")


def _as_user_prefix():
    if os.geteuid() != 0:
        return []
    sp = _setpriv()
    if sp is None:
        pytest.skip("running as root without setpriv: cannot drop privileges")
    return [sp, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def _clean_env(**extra):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent",
           "LANG": "C.UTF-8"}
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
              "NUMBA_NUM_THREADS"):
        if k in os.environ:
            env[k] = os.environ[k]
    env.update(extra)
    return env


@pytest.fixture
def readonly_package():
    """A directory (world-readable, like an installed site-packages) holding a read-only
    copy of the nbsim package; yields its path; removed afterwards."""
    base = tempfile.mkdtemp(prefix="nbsim-ro-", dir="/tmp")
    os.chmod(base, 0o755)
    dst = os.path.join(base, "nbsim")
    shutil.copytree(ROOT / "nbsim", dst, ignore=shutil.ignore_patterns("__pycache__"))
    for d, dirs, files in os.walk(dst):
        for f in files:
            os.chmod(os.path.join(d, f), 0o444)
        os.chmod(d, 0o555)
    try:
        yield base
    finally:
        for d, dirs, files in os.walk(base):
            os.chmod(d, 0o755)
        shutil.rmtree(base, ignore_errors=True)


def _run(prefix, env, args, cwd):
    return subprocess.run(prefix + [sys.executable] + args, env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def _probe(prefix, env, cwd):
    r = _run(prefix, env, ["-c", "import numpy, numba"], cwd)
    if r.returncode != 0:
        pytest.skip("this Python's packages are not readable by an unprivileged user "
                    f"({r.stderr.strip().splitlines()[-1:]})")


def test_read_only_package_and_no_home_imports_with_a_note(readonly_package):
    """The issue's reproducer, fast: before the fix importing nbsim.rng (every run) failed
    with "cannot cache function 'ran1': no locator available"."""
    prefix = _as_user_prefix()
    env = _clean_env(PYTHONPATH=readonly_package)
    _probe(prefix, env, "/")
    code = ("import nbsim.rng as r\n"
            "s = r.new_state(-7); v = r.ran1(s)\n"
            "assert 0.0 < v < 1.0\n"
            "print('ok')\n")
    r = _run(prefix, env, ["-c", code], "/")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
    notes = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(notes) == 1 and notes[0].startswith("nbsim: note: no writable Numba cache")
    assert not any("__pycache__" in d for d, _, _ in os.walk(readonly_package))


@pytest.mark.slow
def test_read_only_package_and_no_home_runs_uncached_with_a_note(readonly_package):
    """The issue's reproducer through the command (a full cold compile, ~10-25 s): before
    the fix every run exited 1 with "cannot cache function 'ran1': no locator available"."""
    prefix = _as_user_prefix()
    env = _clean_env(PYTHONPATH=readonly_package)
    out = tempfile.mkdtemp(prefix="nbsim-out-", dir="/tmp")
    os.chmod(out, 0o777)
    try:
        _probe(prefix, env, out)
        # the copy really is unwritable for that user
        r = _run(prefix, env, ["-c", "import os,sys; os.mkdir(os.path.join(sys.argv[1], "
                                     "'nbsim', 'x'))", readonly_package], out)
        assert r.returncode != 0 and "Permission denied" in r.stderr
        fl = os.path.join(out, "f.bin")
        r = _run(prefix, env, ["-m", "nbsim", "-cell", "50", "50", "50", "90", "90", "90",
                               "-default_F", "100", "-detpixels", "4", "-oversample", "1",
                               "-floatfile", fl, "-intfile", os.path.join(out, "i.img"),
                               "-noprogress"], out)
        assert r.returncode == 0, r.stderr[-2000:]
        assert "no locator" not in r.stderr
        notes = [ln for ln in r.stderr.splitlines() if "Numba cache" in ln]
        assert len(notes) == 1 and notes[0].startswith("nbsim: note: ")
        img = np.fromfile(fl, dtype=np.float32)
        assert img.size == 16 and np.all(np.isfinite(img)) and img.max() > 0
        # nothing was written into the package
        assert not any("__pycache__" in d for d, _, _ in os.walk(readonly_package))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_read_only_package_caches_in_xdg_cache_home(readonly_package):
    prefix = _as_user_prefix()
    cache = tempfile.mkdtemp(prefix="nbsim-xdg-", dir="/tmp")
    try:
        if prefix:
            os.chown(cache, NOBODY, NOBODY)
        env = _clean_env(PYTHONPATH=readonly_package, XDG_CACHE_HOME=cache)
        _probe(prefix, env, cache)
        code = ("import sys, nbsim, nbsim.rng as r, os\n"
                "assert nbsim._numba_setup.CACHE_NOTE is None\n"
                "s = r.new_state(-7); v = r.ran1(s)\n"
                "assert 0.0 < v < 1.0\n"
                "print(os.environ['NUMBA_CACHE_DIR'])\n")
        r = _run(prefix, env, ["-c", code], cache)
        assert r.returncode == 0, r.stderr[-2000:]
        chosen = r.stdout.strip().splitlines()[-1]
        assert chosen == os.path.join(cache, "nbsim", "numba")
        cached = [f for _, _, fs in os.walk(chosen) for f in fs]
        assert any(f.endswith(".nbi") for f in cached), cached     # ran1's cache index
        assert "Numba cache" not in r.stderr
    finally:
        shutil.rmtree(cache, ignore_errors=True)


# in-process checks of the choice itself (no privilege change needed)
def test_choice_respects_numba_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(ns, "_dir_writable", lambda d: False)
    assert ns.ensure_cache_dir() is None


def test_choice_writable_package_changes_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    (tmp_path / "kernels").mkdir()
    assert ns.ensure_cache_dir(str(tmp_path)) is None
    assert "NUMBA_CACHE_DIR" not in os.environ
    assert (tmp_path / "kernels" / "__pycache__").is_dir()


def test_choice_falls_back_to_xdg_then_private_temp(monkeypatch, tmp_path):
    import numba.core.config as ncfg
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(ncfg, "CACHE_DIR", ncfg.CACHE_DIR)
    monkeypatch.setattr(ns, "_dir_writable", lambda d: False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    got = ns.ensure_cache_dir(str(tmp_path))
    assert got == str(tmp_path / "xdg" / "nbsim" / "numba") and os.path.isdir(got)
    assert os.environ["NUMBA_CACHE_DIR"] == got and ncfg.CACHE_DIR == got
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    # an XDG_CACHE_HOME that cannot be a directory (even for root): a private temp dir
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    err = io.StringIO()
    got = ns.ensure_cache_dir(str(tmp_path), stream=err)
    try:
        assert got and os.path.isdir(got) and not got.startswith(str(tmp_path))
        assert stat.S_IMODE(os.stat(got).st_mode) == 0o700
        assert err.getvalue().startswith("nbsim: note: no writable Numba cache directory")
        assert err.getvalue().count("\n") == 1
    finally:
        shutil.rmtree(got, ignore_errors=True)
        monkeypatch.setattr(ns, "CACHE_NOTE", None)

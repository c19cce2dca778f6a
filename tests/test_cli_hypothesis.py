"""Random flag sequences never give a traceback (issue 3, acceptance 3).

Valid and invalid values, unknown flags and missing values: the command exits 0, or 2 with
exactly one stderr line and no file left behind.  The render itself is replaced by a
zero image of the planned shape (the parser, the plan, the checks and the writers are the
subject here; rendering is tested elsewhere), so extreme sampling values stay cheap.
"""
import io
import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import nbsim
from nbsim.args import FLAG_INDEX
from nbsim.cli.main import main
from nbsim.simulator import PixelTrace

BASE = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100",
        "-detpixels", "12", "-noprogress"]
# -printout (every pixel) is left out: it traces pixels one by one with the real kernel
FLAG_NAMES = sorted(n for n in FLAG_INDEX if n not in ("-printout", "-device"))
VALUES = ["0", "1", "2", "3", "-1", "0.5", "7.5", "10", "1e-3", "abc", "", "1e400", "nan",
          "inf", "-", "--", "out.bin", "random", "beam", "sample", "cpu", "float32",
          "float64", "12abc", "0x10", "1_0", " 5", "é"]
token = st.one_of(st.sampled_from(FLAG_NAMES), st.sampled_from(VALUES),
                  st.sampled_from(["-bogus", "-N5", "-seedx", "--cell", "-h5"]),
                  st.text(alphabet="-abcN0.1 ", max_size=4))


NUMS = ["0", "1", "2", "3", "-1", "0.5", "10", "-2.5"]
INTS = ["0", "1", "2", "3", "5", "-1"]
WORDS = ["out.bin", "beam", "sample", "random", "cpu", "float32", "float64", "inf", "x"]


@st.composite
def flag_group(draw):
    """A flag with the right number of values, each number-like or word-like."""
    name = draw(st.sampled_from(FLAG_NAMES))
    f = FLAG_INDEX[name]
    n = 3 if f.nargs == -1 else f.nargs
    pool = WORDS if f.kind == "str" else (INTS if f.kind == "int" else NUMS)
    vals = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
    return [name] + vals


groups = st.lists(flag_group(), max_size=6).map(lambda gs: [t for g in gs for t in g])


def _fake_render(self, *a, **k):
    p = self.plan
    self.image = np.zeros(p.shape)
    return self.image


def _fake_trace(self, f, s):
    return PixelTrace(fpixel=f, spixel=s, I=0.0, I_over_steps=0.0, polar=1.0, omega=0.0,
                      capture_fraction=1.0, pixel=0.0, F_cell=0.0, F_latt=0.0,
                      hkl=(0.0, 0.0, 0.0), position=(0.1, 0.0, 0.0),
                      rotated_cell=np.eye(3))


@pytest.fixture
def fake_render(monkeypatch):
    monkeypatch.setattr(nbsim.Simulator, "run", _fake_render)
    monkeypatch.setattr(nbsim.Simulator, "run_chunked", _fake_render)
    monkeypatch.setattr(nbsim.Simulator, "trace_pixel", _fake_trace)
    # the CLI's CPU render (row blocks rounded to float32 as they complete)
    from nbsim import streaming
    monkeypatch.setattr(streaming, "render_float32",
                        lambda sim, progress=None: np.zeros(sim.plan.shape, np.float32))


def _run_in_fresh_dir(argv):
    old = os.getcwd()
    with tempfile.TemporaryDirectory() as d:
        os.chdir(d)
        try:
            out, err = io.StringIO(), io.StringIO()
            rc = main(argv, stdout=out, stderr=err)
            files = sorted(os.listdir(d))
        finally:
            os.chdir(old)
    return rc, out.getvalue(), err.getvalue(), files


@settings(max_examples=500, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(base=st.sampled_from([[], BASE]), tail=st.one_of(st.lists(token, max_size=10), groups),
       noise=st.lists(token, max_size=1), at=st.integers(0, 20))
def test_random_flag_sequences(fake_render, base, tail, noise, at):
    argv = base + tail
    argv[at:at] = noise
    rc, out, err, files = _run_in_fresh_dir(argv)
    event(f"exit {rc}")
    assert "Traceback" not in err
    assert rc in (0, 2), (argv, rc, err)
    if rc == 2:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("nbsim: error: "), (argv, err)
        assert files == [], (argv, files)
        assert out == ""
    else:
        assert all(ln.startswith(("nbsim: note: ", "nbsim: rendering", "nbsim: rendered"))
                   for ln in err.splitlines()), (argv, err)
        assert not any(f.endswith(".tmp") for f in files), files
        if any(a in ("-h", "-help", "--help") for a in argv):
            assert out.startswith("usage: nbsim")
        else:
            assert out.startswith("nbsim ")


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(sorted(f for f in FLAG_INDEX if FLAG_INDEX[f].nargs != 0)),
       value=st.sampled_from(VALUES + ["-N", "-cell"]))
def test_one_flag_any_value(fake_render, flag, value):
    rc, out, err, files = _run_in_fresh_dir(BASE + [flag, value])
    event(f"exit {rc}")
    assert rc in (0, 2) and "Traceback" not in err
    if rc == 2:
        assert err.count("\n") == 1 and files == []


@pytest.mark.parametrize("extra", [["-pix0_vector", "0", "0", "0"],
                                   ["-beam_vector", "0", "0", "1"]])
def test_degenerate_geometry_is_a_clean_error(fake_render, extra):
    # the detector origin at the sample, the beam parallel to the detector plane
    rc, out, err, files = _run_in_fresh_dir(BASE + extra)
    assert rc == 2 and err.count("\n") == 1 and files == [] and "degenerate" in err

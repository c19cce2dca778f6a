"""nbsim-noisify against noisify.c: identical files (headers and every integer).

References: tests/fixtures/noisify/<case>/ made by make_noisify_fixtures.py from /work/cbin/noisify
(noisify.c of bl831/nanoBragg, cc -O2).  Inputs are crops of golden nanoBragg.c float
images.  When the C binary is present (NB_NOISIFY_BIN or /work/cbin/noisify) the
comparison is also made live against it on one more case.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
FIX = HERE / "fixtures" / "noisify"
sys.path.insert(0, str(FIX))
from make_noisify_fixtures import CASES, case_input, expand, output_flags  # noqa: E402

from nbsim.cli import noisify as cli  # noqa: E402


def _run_nbsim(tmp_path, golden_case, crop, flags, extra=()):
    inp = tmp_path / "in.bin"
    case_input(golden_case, crop).tofile(inp)
    rc = cli.main(["-floatfile", str(inp)] + expand(flags) + output_flags(tmp_path) + list(extra))
    assert rc == 0


@pytest.mark.parametrize("name", sorted(CASES))
def test_files_identical_to_noisify_c(name, tmp_path, capsys):
    golden_case, crop, flags = CASES[name]
    _run_nbsim(tmp_path, golden_case, crop, flags, ["-psf_method", "exact"])
    ref_dir = FIX / name
    compared = 0
    for f in ("int.img", "image.pgm", "noise.img"):
        ref = ref_dir / (f + ".gz")
        ours = tmp_path / f
        assert ref.exists() == ours.exists(), f
        if not ref.exists():
            continue
        want = gzip.decompress(ref.read_bytes())
        got = ours.read_bytes()
        if f.endswith(".img"):
            assert got[:512] == want[:512], f"{f} header differs"
            bits = 32 if "-bits" in flags and flags[flags.index("-bits") + 1] == "32" else 16
            dt = "<u2" if bits == 16 else "<u4"
            g = np.frombuffer(got[512:], dt)
            w = np.frombuffer(want[512:], dt)
            assert g.size == w.size
            bad = np.flatnonzero(g != w)
            assert bad.size == 0, f"{f}: {bad.size} pixels differ, first {bad[:5]}: {g[bad[:5]]} vs {w[bad[:5]]}"
            # the case exercises something: noise images are not all equal to the ADC
            assert np.unique(w).size > 3
        assert got == want, f
        compared += 1
    assert compared >= 2


def test_printed_photon_sums_match_c(tmp_path, capsys):
    """The photon totals noisify.c prints (before/after PSF, overloads) are ours too."""
    for name in ("fiber_psf_r6_gain", "bits16_overload_adc0_readout", "gauss_psf_auto_32bit"):
        golden_case, crop, flags = CASES[name]
        _run_nbsim(tmp_path, golden_case, crop, flags, ["-psf_method", "exact"])
        ours = capsys.readouterr().out.splitlines()
        ref = (FIX / name / "stdout.txt").read_text().splitlines()
        keys = ("photons on noise image", "adding back", "auto-selected psf_radius")
        want = [l for l in ref if any(k in l for k in keys)]
        got = [l for l in ours if any(k in l for k in keys)]
        assert want and got == want


def test_fft_psf_equals_exact_within_float_rounding():
    from nbsim.effects import apply_psf_exact, apply_psf_fft
    img = case_input("curved_det", (0, 0, 96, 128)).astype(np.float32)
    img[5, 5] = -3.0           # negative sources do not spread (C skips them)
    for kind, fwhm, r in (("fiber", 1.0, 10), ("gauss", 2.5, 7)):
        e = apply_psf_exact(img, kind, fwhm, r).image.astype(np.float64)
        f = apply_psf_fft(img, kind, fwhm, r).image.astype(np.float64)
        # light only leaves through the edges (C drops it there)
        assert e.sum() < img[img > 0].sum() and e.sum() > 0.95 * img[img > 0].sum()
        assert np.max(np.abs(e - f)) <= 2e-6 * e.max()
        assert np.max(np.abs(e - f) / np.maximum(e, 1e-3)) < 1e-4


def _c_binary():
    exe = os.environ.get("NB_NOISIFY_BIN", "/work/cbin/noisify")
    return exe if Path(exe).is_file() and os.access(exe, os.X_OK) else None


@pytest.mark.skipif(_c_binary() is None, reason="noisify.c binary not available")
def test_live_against_c_binary(tmp_path):
    golden_case, crop = "mosaic", (20, 30, 90, 70)
    flags = ["-seed", "31", "-calib_seed", "4", "-flicker", "0.03", "-readout", "1.5",
             "-psf", "fiber", "-psf_fwhm", "90", "-psf_radius", "5", "-bits", "32", "-gain", "3"]
    cdir = tmp_path / "c"
    ndir = tmp_path / "n"
    cdir.mkdir()
    ndir.mkdir()
    case_input(golden_case, crop).tofile(cdir / "in.bin")
    subprocess.run([_c_binary(), "-floatfile", str(cdir / "in.bin")] + flags + output_flags(cdir),
                   check=True, capture_output=True)
    _run_nbsim(ndir, golden_case, crop, flags)       # default PSF method for nbsim-noisify
    for f in ("int.img", "image.pgm", "noise.img"):
        assert (ndir / f).read_bytes() == (cdir / f).read_bytes(), f

"""Bad input to nbsim-noisify / nbsim-nonbragg: one line on stderr, exit 2, no file."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nbsim.cli import noisify, nonbragg

HERE = Path(__file__).resolve().parent
WATER = str(HERE / "fixtures" / "nonbragg" / "water.stol")


@pytest.fixture
def floatfile(tmp_path):
    p = tmp_path / "in.bin"
    np.full((16, 16), 5.0, dtype="<f4").tofile(p)
    return p


def _noisify_out(tmp_path):
    return ["-intfile", str(tmp_path / "int.img"), "-pgmfile", str(tmp_path / "img.pgm"),
            "-noisefile", str(tmp_path / "noise.img")]


def _check(capsys, rc, tmp_path, *words, prog="nbsim-noisify"):
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith(f"{prog}: error: "), err
    for w in words:
        assert w in err[0], (w, err[0])
    written = [p.name for p in tmp_path.iterdir() if p.suffix in (".img", ".pgm") or
               p.name.endswith("out.bin")]
    assert written == []


@pytest.mark.parametrize("flags,words", [
    (["-psf", "lorentz"], ("-psf", "lorentz")),
    (["-psf", "gauss", "-psf_fwhm", "0"], ("-psf_fwhm", "positive")),
    (["-psf", "fiber", "-psf_fwhm", "-20"], ("-psf_fwhm", "positive")),
    (["-psf_radius", "-2"], ("-psf_radius",)),
    (["-bits", "8"], ("-bits", "16 or 32")),
    (["-readout", "three"], ("-readout", "number")),
    (["-flicker"], ("-flicker", "number")),
    (["-no_such_flag", "1"], ("-no_such_flag", "unknown")),
    (["-detpixels", "20"], ("256 floats", "20x20")),
    (["-detpixels_x", "10", "-detpixels_y", "16"], ("10x16",)),
])
def test_noisify_bad_input(flags, words, floatfile, tmp_path, capsys):
    rc = noisify.main(["-floatfile", str(floatfile)] + flags + _noisify_out(tmp_path))
    _check(capsys, rc, tmp_path, *words)


def test_noisify_missing_and_ragged_files(tmp_path, capsys):
    rc = noisify.main(["-floatfile", str(tmp_path / "nope.bin")] + _noisify_out(tmp_path))
    _check(capsys, rc, tmp_path, "nope.bin")
    p = tmp_path / "ragged.bin"
    p.write_bytes(b"\0" * 1030)
    rc = noisify.main(["-floatfile", str(p)] + _noisify_out(tmp_path))
    _check(capsys, rc, tmp_path, "ragged.bin", "whole number of floats")
    rc = noisify.main(["-floatfile", str(p), "-header", str(tmp_path / "ragged.bin")]
                      + _noisify_out(tmp_path))
    _check(capsys, rc, tmp_path, "-header")


@pytest.mark.parametrize("content,words", [
    ("0 2.5\n0.1 abc\n", ("line 2", "two numbers")),
    ("0 2.5\n0.1\n", ("line 2",)),
    ("# water\n0 2.5\n", ("line 1",)),
    ("0 2.5\n0.2 2.4\n0.1 2.3\n", ("line 3", "increase")),
    ("\n\n", ("no data",)),
])
def test_nonbragg_bad_stol(content, words, tmp_path, capsys):
    stol = tmp_path / "bad.stol"
    stol.write_text(content)
    rc = nonbragg.main(["-stol", str(stol), "-detpixels", "4", "-floatfile",
                        str(tmp_path / "out.bin"), "-intfile", str(tmp_path / "i.img"),
                        "-pgmfile", str(tmp_path / "p.pgm"), "-noisefile",
                        str(tmp_path / "n.img")])
    _check(capsys, rc, tmp_path, "bad.stol", *words, prog="nbsim-nonbragg")


@pytest.mark.parametrize("flags,words", [
    (["-thickness", "0"], ("-thickness",)),
    (["-MW", "0"], ("-MW",)),
    (["-img", "x.img"], ("-img", "not implemented")),
    (["-pivot", "middle"], ("-pivot",)),
    (["-roi", "1", "2"], ("-roi", "4 values")),
    (["-lambda", "-1"], ("-lambda",)),
    (["-bogus"], ("-bogus", "unknown")),
])
def test_nonbragg_bad_flags(flags, words, tmp_path, capsys):
    rc = nonbragg.main(["-stol", WATER, "-detpixels", "4", "-floatfile",
                        str(tmp_path / "out.bin"), "-intfile", str(tmp_path / "i.img")] + flags)
    _check(capsys, rc, tmp_path, *words, prog="nbsim-nonbragg")


def test_console_entry_point_exit_status(floatfile, tmp_path):
    """Through the interpreter: exit status 2, one line, no traceback."""
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    r = subprocess.run([sys.executable, "-m", "nbsim.cli.noisify", "-floatfile", str(floatfile),
                        "-psf", "airy"] + _noisify_out(tmp_path), capture_output=True, text=True,
                       env=env, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not list(tmp_path.glob("*.img"))

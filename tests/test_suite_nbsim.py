"""The noisify / nonBragg suite inside ``nbsim`` (nbsim.suite)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from nbsim.cli import main as nbsim_main
from nbsim.cli import noisify as noisify_cli

HERE = Path(__file__).resolve().parent
NB = HERE / "fixtures" / "nonbragg"
WATER = str(NB / "water.stol")

# nanoBragg flags with the geometry of the nonBragg fixture 'water_nbsim_chain'
GEOM = ["-fdet_vector", "0", "0", "1", "-sdet_vector", "0", "-1", "0", "-beam_vector",
        "1", "0", "0", "-Xbeam", "3.2", "-Ybeam", "2.9", "-distance", "90", "-detpixels", "24",
        "-pixel", "0.25", "-polar", "1", "-oversample", "1"]
XTAL = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "1", "-N", "2",
        "-lambda", "1"]


def _nbsim(tmp_path, flags, tag, capsys=None):
    f = tmp_path / f"{tag}.bin"
    rc = nbsim_main.main(XTAL + GEOM + flags + ["-floatfile", str(f), "-intfile",
                         str(tmp_path / f"{tag}_int.img"), "-nopgm", "-noprogress"])
    assert rc == 0
    return np.fromfile(f, dtype="<f4").reshape(24, 24)


def test_stol_background_is_nonbragg_c_on_the_same_geometry(tmp_path):
    bragg = _nbsim(tmp_path, ["-nonoise"], "bragg")
    both = _nbsim(tmp_path, ["-nonoise", "-stol", WATER, "-thickness", "0.3"], "both")
    c = np.frombuffer(gzip.decompress((NB / "water_nbsim_chain" / "c_float.bin.gz")
                                      .read_bytes()), "<f4").reshape(24, 24).astype(np.float64)
    bg = both.astype(np.float64) - bragg
    assert c.max() > 0 and bragg.max() > 0
    # float32 sums: the difference carries the rounding of the larger (Bragg+bg) values
    tol = 1e-6 * c.max() + 1.2e-7 * np.max(both)
    assert np.max(np.abs(bg - c)) <= tol


def test_stol_changes_nothing_under_c_parity(tmp_path, capsys):
    a = _nbsim(tmp_path, ["-nonoise", "-c_parity"], "a")
    b = _nbsim(tmp_path, ["-nonoise", "-c_parity", "-stol", WATER, "-MW", "20"], "b")
    assert np.array_equal(a, b)
    err = capsys.readouterr().err
    assert "-stol" in err and "changes nothing" in err


@pytest.mark.parametrize("effects", [
    ["-psf", "fiber", "-psf_fwhm", "400", "-psf_radius", "3", "-readout", "2"],
    ["-flicker", "0.05", "-calibration", "0.1", "-calib_seed", "9", "-gain", "2", "-bits", "32"],
])
def test_noise_image_is_noisify_of_the_float_image(effects, tmp_path):
    noise = tmp_path / "nb_noise.img"
    f = tmp_path / "nb.bin"
    # the water background gives every pixel ~80 photons
    rc = nbsim_main.main(XTAL + GEOM + ["-stol", WATER, "-fluence", "2e18",
                                        "-seed", "11", "-adc", "15", "-floatfile", str(f),
                                        "-intfile", str(tmp_path / "i.img"), "-noisefile",
                                        str(noise), "-nopgm", "-noprogress"] + effects)
    assert rc == 0
    rc = noisify_cli.main(["-floatfile", str(f), "-seed", "11", "-adc", "15", "-pixel", "0.25",
                           "-intfile", str(tmp_path / "n_int.img"), "-noisefile",
                           str(tmp_path / "n_noise.img"), "-nopgm", "-psf_method", "exact"]
                          + effects)
    assert rc == 0
    a = noise.read_bytes()
    b = (tmp_path / "n_noise.img").read_bytes()
    assert a[512:] == b[512:]
    bits = 32 if "32" in effects else 16
    assert (b"TYPE=long_integer;" in a[:512]) == (bits == 32)
    assert len(a) == 512 + 24 * 24 * bits // 8
    vals = np.frombuffer(a[512:], "<u2" if bits == 16 else "<u4")
    assert np.unique(vals).size > 5


def test_bad_suite_flags_stop_before_render(tmp_path, capsys):
    bad = tmp_path / "bad.stol"
    bad.write_text("0 1\n0.1 x\n")
    for flags, word in ((["-stol", str(bad)], "bad.stol"), (["-psf", "airy"], "-psf"),
                        (["-bits", "12"], "-bits")):
        rc = nbsim_main.main(XTAL + GEOM + flags + ["-floatfile", str(tmp_path / "x.bin"),
                                                    "-noprogress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and word in err[0], err
        assert not (tmp_path / "x.bin").exists()

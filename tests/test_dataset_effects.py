"""Datasets apply the detector suite per frame (nbsim.dataset.effects): frame i of a
rotation scan with -stol / noisify flags is the single ``nbsim -phi ... -seed <frame
seed>`` run's files, byte for byte."""
import io
from pathlib import Path

import numpy as np
import pytest

from nbsim.cli.main import main
from nbsim.dataset import Dataset, RotationScan, frame_seed

WATER = str(Path(__file__).resolve().parent / "fixtures" / "nonbragg" / "water.stol")
FLAGS = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "3",
         "-lambda", "1", "-distance", "60", "-detpixels", "24", "-pixel", "0.5",
         "-oversample", "1", "-osc", "0.5", "-phisteps", "2", "-flux", "1e12",
         "-exposure", "1", "-beamsize", "0.1"]
OSC, N, SEED = 0.5, 3, 2026


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    rc = main([str(a) for a in argv], stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def _scan_and_singles(tmp_path, suite, noise=True):
    """Run the 3-frame scan, then each frame alone; yield (frame files, single files)."""
    nz = [] if noise else ["-nonoise"]
    files = ["-floatfile", tmp_path / "f_#.bin"] + (
        ["-noisefile", tmp_path / "n_#.img"] if noise else [])
    rc, out, err = run_cli(FLAGS + suite + nz + ["-nimages", N, "-seed", SEED,
                                                 "-noprogress"] + files)
    assert rc == 0, err
    for i in range(N):
        one = tmp_path / f"one{i}"
        rc, _o, err1 = run_cli(FLAGS + suite + nz + [
            "-phi", repr(i * OSC), "-seed", frame_seed(SEED, i, "noise"), "-noprogress",
            "-nopgm", "-floatfile", f"{one}.bin", "-intfile", f"{one}_int.img",
            "-noisefile", f"{one}_noise.img"])
        assert rc == 0, err1
        yield i, (tmp_path / f"f_{i + 1}.bin", tmp_path / f"n_{i + 1}.img"), \
            (Path(f"{one}.bin"), Path(f"{one}_noise.img")), out, err


def test_stol_background_on_every_frame_equals_single_runs(tmp_path):
    plain = []
    for i, fr, one, out, _err in _scan_and_singles(tmp_path, ["-stol", WATER,
                                                               "-thickness", "0.2"],
                                                     noise=False):
        assert fr[0].read_bytes() == one[0].read_bytes()
        plain.append(np.fromfile(fr[0], dtype="<f4"))
    assert "amorphous background from" in out
    # the background is really there: the frames exceed the scan without -stol by a
    # smooth positive image, the same on every frame (it does not turn with the crystal)
    rc, _o, err = run_cli(FLAGS + ["-nonoise", "-nimages", N, "-noprogress",
                                   "-floatfile", tmp_path / "g_#.bin"])
    assert rc == 0, err
    diffs = [p - np.fromfile(tmp_path / f"g_{i + 1}.bin", dtype="<f4")
             for i, p in enumerate(plain)]
    assert diffs[0].min() > 0
    for d in diffs[1:]:
        np.testing.assert_allclose(d, diffs[0], rtol=1e-3, atol=1e-3 * diffs[0].max())


def test_psf_and_readout_noise_frames_equal_single_runs(tmp_path):
    noises = []
    for i, fr, one, _out, _err in _scan_and_singles(
            tmp_path, ["-stol", WATER, "-thickness", "0.005", "-psf", "gauss", "-psf_fwhm", "500", "-readout", "2"]):
        assert fr[0].read_bytes() == one[0].read_bytes()
        assert fr[1].read_bytes() == one[1].read_bytes()
        noises.append(fr[1].read_bytes()[512:])
    # each frame has its own noise seed: the noise images differ
    assert len(set(noises)) == N


def test_noisify_32_bit_frames_and_api_counts(tmp_path):
    suite = ["-stol", WATER, "-thickness", "0.005", "-bits", "32", "-calib_seed", "77",
             "-gain", "3"]
    for i, fr, one, _out, _err in _scan_and_singles(tmp_path, suite):
        assert fr[1].read_bytes() == one[1].read_bytes()
        assert b"TYPE=long_integer;" in fr[1].read_bytes()[:512]
    # the API: counts are the noise-file integers (adc, gain and readout included)
    ds = Dataset.from_args(FLAGS + suite, RotationScan(N), seed=SEED)
    f = ds.render(1)
    pixels = np.frombuffer((tmp_path / "n_2.img").read_bytes()[512:], dtype="<u4")
    np.testing.assert_array_equal(f.counts.ravel(), pixels.astype(np.int32))
    assert f.noise_pixels.dtype == np.uint32
    # ~700 photons/pixel of background at gain 3 plus the adc offset 40: beyond 16 bits
    # on no pixel, but far above the offset on all
    assert 40 + 3 * 300 < f.counts.min() and f.counts.max() < 65535


def test_background_is_computed_once_per_dataset(monkeypatch):
    import nbsim.amorphous as amorphous
    calls = []
    real = amorphous.amorphous_image

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(amorphous, "amorphous_image", counting)
    ds = Dataset.from_args(FLAGS + ["-stol", WATER, "-nonoise"], RotationScan(N), seed=1)
    frames = list(ds.frames())
    assert len(calls) == 1
    bare = Dataset.from_args(FLAGS + ["-nonoise"], RotationScan(N), seed=1)
    for f, g in zip(frames, bare.frames()):
        # float64 API image: the render plus the background exactly
        np.testing.assert_allclose(f.image - g.image, ds.effects.background, rtol=1e-12,
                                   atol=1e-12 * ds.effects.background.max())


def test_c_parity_stol_changes_nothing_with_a_note(tmp_path):
    rc, _o, err = run_cli(FLAGS + ["-c_parity", "-nonoise", "-nimages", 2, "-noprogress",
                                   "-stol", WATER, "-floatfile", tmp_path / "a_#.bin"])
    assert rc == 0, err
    assert "-stol is accepted for compatibility" in err and "c-parity" in err
    rc, _o, err = run_cli(FLAGS + ["-c_parity", "-nonoise", "-nimages", 2, "-noprogress",
                                   "-floatfile", tmp_path / "b_#.bin"])
    assert rc == 0, err
    for i in (1, 2):
        assert (tmp_path / f"a_{i}.bin").read_bytes() == (tmp_path / f"b_{i}.bin").read_bytes()


def test_bad_suite_value_in_a_dataset_is_one_line_and_nothing_written(tmp_path):
    rc, out, err = run_cli(FLAGS + ["-nimages", N, "-noprogress", "-psf", "square",
                                    "-noisefile", tmp_path / "n_#.img"])
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "-psf" in lines[0] and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_nexus_frames_hold_the_noisify_integers_in_process_and_on_dask(tmp_path):
    pytest.importorskip("distributed")
    h5py = pytest.importorskip("h5py")
    pytest.importorskip("hdf5plugin")
    import hdf5plugin  # noqa: F401
    suite = ["-stol", WATER, "-thickness", "0.005", "-psf", "gauss", "-psf_fwhm", "500",
             "-readout", "2"]
    runs = {}
    for tag, extra in (("a", []), ("b", ["-workers", "2"])):
        d = tmp_path / tag
        d.mkdir()
        rc, _o, err = run_cli(FLAGS + suite + extra + [
            "-nimages", N, "-seed", SEED, "-noprogress", "-nexus", d / "s.h5",
            "-noisefile", d / "n_#.img", "-floatfile", d / "f_#.bin"])
        assert rc == 0, err
        with h5py.File(d / "s.h5", "r") as f:
            runs[tag] = f["entry/data/data"][()]
        for i in range(N):
            pixels = np.frombuffer((d / f"n_{i + 1}.img").read_bytes()[512:], dtype="<u2")
            np.testing.assert_array_equal(runs[tag][i].ravel(), pixels.astype(np.int32))
    assert np.array_equal(runs["a"], runs["b"])
    for i in range(1, N + 1):
        for name in (f"n_{i}.img", f"f_{i}.bin"):
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()

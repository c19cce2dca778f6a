"""One image model for multi-panel detectors (nbsim.image_model): a frame is (panels,
slow, fast) from the renderer through the effects to the sinks, and a dataset frame's
files are the single-image ``nbsim`` run's files, byte for byte (regression tests of the
all-pairs crashes: multi-panel datasets with noise, noisify flags, -stol, -nonoise int /
PGM, -png, a CBF without '#', and a preset's float frames)."""
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from nbsim.cli.main import main
from nbsim.dataset import Dataset, Stills, frame_seed

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from test_panels import _expt_doc, _json_panels  # noqa: E402

WATER = str(HERE / "fixtures" / "nonbragg" / "water.stol")
XTAL = ["-cell", "40", "50", "60", "90", "90", "90", "-default_F", "100", "-N", "3",
        "-oversample", "1", "-noprogress"]
SEED = 77


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    rc = main([str(a) for a in argv], stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def two_panel(tmp_path):
    """A two-panel DIALS experiment (12 x 8 pixels each; the second panel tilted)."""
    doc = _json_panels()
    doc["panels"] = doc["panels"][:2]
    p = tmp_path / "two_panel.expt"
    p.write_text(json.dumps(_expt_doc(doc)))
    return p


def _render_api(argv):
    from nbsim.simulator import Simulator
    sim = Simulator.from_args([str(a) for a in argv if a != "-noprogress"])
    return sim, sim.run()


# ------------------------------------------------------------------ API shape
def test_frame_image_is_panels_slow_fast(two_panel):
    ds = Dataset.from_args(XTAL + ["-expt", str(two_panel)], Stills(1, None), seed=SEED)
    f = ds.render(0)
    assert f.image.shape == f.counts.shape == (2, 8, 12)
    _sim, ref = _render_api(XTAL + ["-expt", two_panel])
    assert ref.shape == (2, 8, 12)            # Simulator.run keeps its shape
    assert np.array_equal(f.image, ref)
    one = Dataset.from_args(XTAL + ["-detpixels", "10"], Stills(1, None), seed=SEED).render(0)
    assert one.image.shape == one.counts.shape == (1, 10, 10)


# ------------------------------------------------ 1, 4: noise, -nonoise int / PGM
@pytest.mark.parametrize("mode", [["-c_parity"], ["-nonoise"]])
def test_multi_panel_frames_equal_single_runs(tmp_path, two_panel, mode):
    """Every per-frame file of a two-panel dataset (stacked panels) is the single run's
    file with the frame's seed; c-parity noise: one ran1 stream over panel, slow, fast."""
    noise = mode != ["-nonoise"]
    files = ["-floatfile", tmp_path / "f_#.bin", "-intfile", tmp_path / "i_#.img",
             "-pgmfile", tmp_path / "p_#.pgm"]
    if noise:
        files += ["-noisefile", tmp_path / "n_#.img"]
    flags = XTAL + mode + ["-expt", two_panel]
    rc, _out, err = run_cli(flags + ["-stills", 2, "-seed", SEED] + files)
    assert rc == 0, err
    _sim, ref = _render_api(flags)
    for i in range(2):
        one = tmp_path / f"one{i}"
        rc, out1, err1 = run_cli(flags + ["-seed", frame_seed(SEED, i, "noise"),
                                          "-floatfile", f"{one}.bin", "-intfile",
                                          f"{one}.img", "-pgmfile", f"{one}.pgm"]
                                 + (["-noisefile", f"{one}_n.img"] if noise else []))
        assert rc == 0, err1
        pairs = [("f", ".bin", ".bin"), ("i", ".img", ".img"), ("p", ".pgm", ".pgm")] + (
            [("n", ".img", "_n.img")] if noise else [])
        for stem, ext, one_ext in pairs:
            a = (tmp_path / f"{stem}_{i + 1}{ext}").read_bytes()
            assert a == Path(f"{one}{one_ext}").read_bytes(), (stem, i)
        # the float file is the stacked panels: panel k is the API's panel k
        fl = np.fromfile(tmp_path / f"f_{i + 1}.bin", dtype="<f4").reshape(2, 8, 12)
        assert np.array_equal(fl, ref.astype(np.float32))
    if noise:
        # the noise file: 40 ADU + Poisson counts of each panel's photons
        from nbsim.io.smv import read_smv
        n = np.asarray(read_smv(tmp_path / "n_1.img")[1], dtype=np.float64)
        counts = (n - 40.0).reshape(2, 8, 12)
        for k in range(2):
            lam = ref[k].astype(np.float32).astype(np.float64)
            assert abs(counts[k].sum() - lam.sum()) < 5 * np.sqrt(lam.sum()) + 5


def test_spec_noise_per_panel_statistics():
    """Default-mode counts of a multi-panel frame: Poisson per panel (mean and variance
    of each panel against its own constant photon level)."""
    from nbsim.dataset.noise import counter_counts, c_parity_counts
    img = np.empty((3, 64, 64), dtype=np.float32)
    img[0], img[1], img[2] = 0.5, 7.0, 300.0
    for fn in (counter_counts, c_parity_counts):
        c = fn(img, 1234).astype(np.float64)
        assert c.shape == img.shape
        for k, lam in enumerate((0.5, 7.0, 300.0)):
            m, v = c[k].mean(), c[k].var()
            tol = 5 * np.sqrt(lam / c[k].size)
            assert abs(m - lam) < tol, (fn.__name__, k, m)
            assert abs(v / lam - 1.0) < 0.15, (fn.__name__, k, v)
    # one panel of the 3-D counter stream is that panel's 2-D stream of the same pixels
    one = counter_counts(img[:1], 99)
    assert np.array_equal(one[0], counter_counts(img[0], 99))
    # c-parity: panel order, then slow, then fast (one ran1 stream)
    flat = c_parity_counts(img.reshape(3 * 64, 64), 5)
    assert np.array_equal(c_parity_counts(img, 5).reshape(3 * 64, 64), flat)


# ------------------------------------------------------------ 2: noisify's chain
def _mtz(path):
    gemmi = pytest.importorskip("gemmi")
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup("P 1")
    mtz.set_cell_for_all(gemmi.UnitCell(40, 50, 60, 90, 90, 90))
    mtz.add_dataset("sim")
    mtz.add_column("F", "F")
    mtz.add_column("SIGF", "Q")
    hkl = gemmi.make_miller_array(mtz.cell, mtz.spacegroup, 4.0)
    f = np.random.default_rng(3).uniform(10.0, 500.0, len(hkl))
    data = np.column_stack([hkl, f, np.ones_like(f)]).astype(np.float32)
    mtz.set_data(data)
    mtz.write_to_file(str(path))
    return path


def test_psf_dataset_cbf_and_noise_equal_single_run(tmp_path, two_panel):
    mtz = _mtz(tmp_path / "x.mtz")
    flags = ["-cell", "40", "50", "60", "90", "90", "90", "-mtz", mtz, "-N", "3",
             "-oversample", "1", "-noprogress", "-expt", two_panel, "-psf", "fiber",
             "-psf_radius", "2", "-flux", "1e14"]
    rc, _o, err = run_cli(flags + ["-seed", SEED, "-cbf", tmp_path / "c_#####.cbf",
                                   "-noisefile", tmp_path / "n_#.img"])
    assert rc == 0, err
    one = tmp_path / "one"
    rc, _o, err = run_cli(flags + ["-seed", frame_seed(SEED, 0, "noise"),
                                   "-noisefile", f"{one}_n.img", "-floatfile",
                                   f"{one}.bin"])
    assert rc == 0, err
    assert (tmp_path / "n_1.img").read_bytes() == Path(f"{one}_n.img").read_bytes()
    fabio = pytest.importorskip("fabio")
    from nbsim.io.smv import read_smv
    noise = np.asarray(read_smv(tmp_path / "n_1.img")[1]).reshape(2, 8, 12)
    for k in range(2):
        data = fabio.open(str(tmp_path / f"c_00001_p0{k}.cbf")).data
        assert np.array_equal(data, noise[k].astype(np.int32))


def test_psf_stays_inside_its_panel():
    """A bright pixel at panel 0's edge (last row, last column: C's wrap column would be
    the next panel's first row in the stacked raster) leaves panel 1 unchanged; every
    panel is blurred exactly as the panel alone."""
    from nbsim.effects.psf import apply_psf_exact, apply_psf_fft
    img = np.zeros((2, 16, 20), dtype=np.float32)
    img[0, -1, -1] = 1.0e4
    img[0, -1, 0] = 5.0e3
    img[0, 7, 19] = 2.0e3
    for radius in (3, 0):
        r = apply_psf_exact(img, "fiber", 1.5, radius)
        assert r.image.shape == img.shape
        assert not np.any(r.image[1]), radius            # panel 1 untouched
        assert np.array_equal(r.image[0], apply_psf_exact(img[0], "fiber", 1.5, radius).image)
    img[1, 3, 4] = 700.0
    r = apply_psf_exact(img, "gauss", 2.0, 4)
    for k in range(2):
        alone = apply_psf_exact(img[k], "gauss", 2.0, 4)
        assert np.array_equal(r.image[k], alone.image)
    f = apply_psf_fft(img, "gauss", 2.0, 4)
    for k in range(2):
        np.testing.assert_allclose(f.image[k], r.image[k], rtol=1e-5,
                                   atol=1e-6 * float(r.image.max()))
    z = img.copy()
    z[1] = 0.0
    f = apply_psf_fft(z, "fiber", 1.5, 5)
    assert np.max(np.abs(f.image[1])) < 1e-9 * float(f.image.max())
    assert f.lost_photons == pytest.approx(apply_psf_fft(z[0], "fiber", 1.5, 5).lost_photons)


# -------------------------------------------------------- 3: -stol per panel
def test_stol_preset_dataset_frames_and_background_per_panel(tmp_path):
    preset = ["-detector_preset", "jungfrau_4m", "-roi", 0, 7, 0, 7, "-distance", 80]
    flags = XTAL + preset + ["-stol", WATER, "-nonoise"]
    rc, _o, err = run_cli(flags + ["-stills", 3, "-floatfile", tmp_path / "f_#.bin"])
    assert rc == 0, err
    rc, _o, err = run_cli(flags + ["-floatfile", tmp_path / "one.bin", "-nopgm",
                                   "-intfile", tmp_path / "one.img"])
    assert rc == 0, err
    single = (tmp_path / "one.bin").read_bytes()
    assert len(single) == 2056 * 2156 * 4
    for i in range(3):
        assert (tmp_path / f"f_{i + 1}.bin").read_bytes() == single
    # the background of each panel is that of its own pixels: module (1, 1) equals the
    # flat frame detector's background at the same frame pixels (the modules are
    # coplanar with the frame)
    from nbsim import suite as sf
    from nbsim.amorphous import read_stol
    from nbsim.args import parse_args
    from nbsim.plan import make_plan
    table = read_stol(WATER, "stol")
    pp = parse_args([str(a) for a in flags if a != "-noprogress"])
    bg, _ = sf.amorphous_background(pp, make_plan(pp.config), table)
    assert bg.shape == (8, 512, 1024)
    f0, s0 = 1024 + 8, 512 + 36                  # module 3 = (i=1, j=1)
    flat = XTAL + ["-detpixels_f", 2056, "-detpixels_s", 2156, "-pixel", 0.075,
                   "-distance", 80, "-roi", f0, f0 + 7, s0, s0 + 7, "-stol", WATER,
                   "-nonoise"]
    pf = parse_args([str(a) for a in flat if a != "-noprogress"])
    ref, _ = sf.amorphous_background(pf, make_plan(pf.config), table)
    np.testing.assert_allclose(bg[3, :8, :8], ref[s0:s0 + 8, f0:f0 + 8], rtol=1e-6)
    assert not np.any(bg[:, 8:, :]) and not np.any(bg[:, :, 8:])     # outside the ROI
    assert np.max(np.abs(bg[0, :8, :8] - bg[3, :8, :8])) > 1e-3 * bg[3].max()


# ----------------------------------------------------- 5, 7: -png, -cbf file.cbf
def test_png_and_single_cbf_of_a_panel_set(tmp_path, two_panel):
    Image = pytest.importorskip("PIL.Image")
    pytest.importorskip("matplotlib")
    fabio = pytest.importorskip("fabio")
    rc, _o, err = run_cli(XTAL + ["-expt", two_panel, "-seed", SEED, "-png",
                                  tmp_path / "a.png", "-cbf", tmp_path / "c.cbf"])
    assert rc == 0, err
    with Image.open(tmp_path / "a.png") as im:
        assert im.size == (12, 16)                  # the stacked panels, 2 x 8 rows
    ds = Dataset.from_args(XTAL + ["-expt", str(two_panel)], Stills(1, None), seed=SEED)
    counts = ds.render(0).counts
    for k in range(2):
        data = fabio.open(str(tmp_path / f"c_p0{k}.cbf")).data
        assert np.array_equal(data, counts[k])
    assert not (tmp_path / "c.cbf").exists()


# ------------------------------------------------------ 9: a preset's float frames
def test_eiger2_float_and_int_frames_are_the_single_runs_tiled_frame(tmp_path):
    flags = XTAL + ["-detector_preset", "eiger2_16m", "-roi", 0, 3, 0, 3, "-nonoise"]
    rc, _o, err = run_cli(flags + ["-stills", 1, "-floatfile", tmp_path / "f_#.bin",
                                   "-intfile", tmp_path / "i_#.img"])
    assert rc == 0, err
    rc, _o, err = run_cli(flags + ["-floatfile", tmp_path / "one.bin", "-intfile",
                                   tmp_path / "one.img", "-nopgm"])
    assert rc == 0, err
    fl = (tmp_path / "f_1.bin").read_bytes()
    assert len(fl) == 72_374_304 == 4148 * 4362 * 4
    assert fl == (tmp_path / "one.bin").read_bytes()
    assert (tmp_path / "i_1.img").read_bytes() == (tmp_path / "one.img").read_bytes()
    frame = np.frombuffer(fl, dtype="<f4").reshape(4362, 4148)
    _sim, ref = _render_api(flags)
    # module (i, j) at frame pixel (i * 1040, j * 550); zero gaps and zero outside -roi
    for k in (0, 5, 31):
        i, j = k % 4, k // 4
        tile = frame[j * 550:j * 550 + 512, i * 1040:i * 1040 + 1028]
        assert np.array_equal(tile, ref[k].astype(np.float32))
    assert np.count_nonzero(frame) == np.count_nonzero(ref)
    del frame


def test_named_cbf_for_a_series_of_panel_frames_is_refused(tmp_path, two_panel):
    """Bad input: one line naming the flag, exit 2, nothing written."""
    rc, out, err = run_cli(XTAL + ["-expt", two_panel, "-stills", 2, "-cbf",
                                   tmp_path / "c.cbf"])
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "-cbf" in lines[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two_panel.expt"]

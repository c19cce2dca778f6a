"""XFEL spectra and radiation damage per frame (issue 19 B): the SASE model's statistics,
a shot's spectrum from (seed, frame) only, the render equal to -sourcefile's, the NeXus
spectra read back; the damage laws on the reflection truth; bad input."""
import io
import math

import numpy as np
import pytest

from nbsim.cli.main import main
from nbsim.dataset import Dataset, Stills, frame_seed
from nbsim.dataset.damage import DamageSpec
from nbsim.geometry.spectrum import (FileSpectrum, SaseSpectrum, quantile_channels,
                                     read_spectrum)
from nbsim.io.hkl import read_hkl

# a small still: 32x32 pixels, one orientation for every frame (repeated orientation)
STILL = ["-cell", "60", "60", "60", "90", "90", "90", "-N", "3", "-detpixels", "32",
         "-pixel", "0.2", "-distance", "50", "-lambda", "1.0", "-oversample", "1",
         "-misset", "10", "20", "30"]
HC = 12398.419843320026          # eV A (CODATA 2018)


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    rc = main([str(a) for a in argv], stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------- the spectrum model
def test_quantile_channels_invert_the_cumulative():
    # uniform density: evenly spaced; a ramp 0 -> 1 on [0, 1]: C(x) = x^2
    assert np.allclose(quantile_channels(np.linspace(1, 2, 11), np.ones(11), 4),
                       [1.125, 1.375, 1.625, 1.875], rtol=0, atol=1e-15)
    q = (np.arange(7) + 0.5) / 7
    assert np.allclose(quantile_channels(np.array([0.0, 1.0]), np.array([0.0, 1.0]), 7),
                       np.sqrt(q), rtol=0, atol=1e-15)


def test_sase_statistics_follow_chaotic_light():
    """Mean spectrum: the envelope convolved with one spike (variances add: sigma_E^2 +
    sigma_spike^2, sigma_spike = hbar sqrt(2 ln 2)... from the pulse's Gaussian); at one
    energy the intensity over shots is negative-exponential (variance = mean^2, Saldin
    et al. 2000: one mode per spectral point)."""
    m = SaseSpectrum(bandwidth=1e-3, jitter=0.0, duration=5.0, channels=10)
    lam0 = 1e-10
    e0 = HC / 1.0
    shots = [m.spectrum(lam0, s) for s in range(300)]
    e = shots[0][0]
    s = np.array([p * e for _, p in shots])              # energy spectra (photons x E)
    mean = s.mean(axis=0)
    c = (mean * e).sum() / mean.sum()
    var = (mean * (e - c) ** 2).sum() / mean.sum()
    sigma_e = 1e-3 * e0 / (2 * math.sqrt(2 * math.log(2)))
    # the field's temporal envelope exp(-t^2/(4 s_t^2)) -> spectral amplitude of the spike
    # exp(-s_t^2 w^2): intensity sigma_w = 1/(2 s_t), in energy hbar/(2 s_t)
    s_t = 5.0 / (2 * math.sqrt(2 * math.log(2)))
    hbar = 4.135667696923859 / (2 * math.pi)             # eV fs
    sigma_spike = hbar / (2 * s_t)
    assert abs(c - e0) < 0.02 * sigma_e
    assert var == pytest.approx(sigma_e ** 2 + sigma_spike ** 2, rel=0.03)
    # points near the centre, several spike widths apart
    centre = np.argmin(abs(e - e0))
    step = max(1, int(round(4 * sigma_spike * 2.355 / (e[1] - e[0]))))
    pts = centre + step * np.arange(-5, 6)
    x = s[:, pts] / mean[pts]
    assert np.mean(x.var(axis=0)) == pytest.approx(1.0, rel=0.12)


def test_sase_shot_depends_on_seed_and_frame_only():
    sp = SaseSpectrum(3e-3, jitter=2e-3, duration=20.0, channels=16)
    a = Dataset.from_args(STILL + ["-default_F", "100"], Stills(3, None), seed=7,
                          spectrum=sp, noise=False)
    b = Dataset.from_args(STILL + ["-default_F", "100"], Stills(6, None), seed=7,
                          spectrum=sp, noise=False)
    for i in range(3):
        wa, wb = a.frame(i).wavelengths, b.frame(i).wavelengths
        assert np.array_equal(wa, wb)
        assert np.array_equal(wa, sp.wavelengths(1e-10, frame_seed(7, i, "spectrum")))
        assert wa.shape == (16,) and np.all(np.diff(wa) >= 0)
    assert not np.array_equal(a.frame(0).wavelengths, a.frame(1).wavelengths)
    # the jitter: shot means spread by ~ jitter x lambda (16 of 6 shots: loose bound)
    means = [np.mean(b.frame(i).wavelengths) for i in range(6)]
    assert 0 < np.std(means) < 10 * 2e-3 * 1e-10


def test_sase_stills_equal_sourcefile_renders_and_nexus_spectra(tmp_path):
    """Acceptance 3: frame i's image is, byte for byte, the render of -sourcefile with
    frame i's channels; the NeXus file holds the spectra (nxmx reads the beam)."""
    h5py = pytest.importorskip("h5py")
    nxmx = pytest.importorskip("nxmx")
    flags = STILL + ["-default_F", "100", "-seed", "5"]
    sase = ["-sase_bandwidth", "0.004", "-sase_jitter", "0.001", "-sase_duration", "10",
            "-spectrum_channels", "12"]
    rc, _o, err = run_cli(flags + sase + ["-stills", "2", "-nonoise", "-noprogress",
                                          "-floatfile", tmp_path / "f_#.bin",
                                          "-nexus", tmp_path / "s.h5",
                                          "-cbf", tmp_path / "c_#.cbf"])
    assert rc == 0, err
    sp = SaseSpectrum(0.004, 0.001, 10.0, 12)
    spectra = []
    for i in range(2):
        lam = sp.wavelengths(1e-10, frame_seed(5, i, "spectrum"))
        spectra.append(lam)
        src = tmp_path / f"src{i}.txt"
        src.write_text("".join(f"nan nan nan 1 {float(v)!r}\n" for v in lam))
        rc, _o, err = run_cli(flags + ["-sourcefile", src, "-nonoise", "-nopgm",
                                       "-noprogress", "-floatfile", tmp_path / "one.bin",
                                       "-intfile", tmp_path / "one.img"])
        assert rc == 0, err
        assert (tmp_path / f"f_{i + 1}.bin").read_bytes() == \
            (tmp_path / "one.bin").read_bytes()
        # the frame's CBF header: its spectrum's mean wavelength
        head = (tmp_path / f"c_{i + 1}.cbf").read_bytes()[:4000].decode("latin-1")
        wl = float(head.split("# Wavelength ")[1].split()[0])
        assert wl == pytest.approx(np.mean(lam) * 1e10, rel=1e-9)
    with h5py.File(tmp_path / "s.h5", "r") as f:
        beam = nxmx.NXmx(f).entries[0].instruments[0].beams[0]
        mean = beam.incident_wavelength.to("angstrom").magnitude
        spec = f["entry/instrument/beam/incident_wavelength_spectrum"]
        weights = f["entry/instrument/beam/incident_wavelength_spectrum_weights"][()]
        assert f["entry/instrument/beam/incident_wavelength"].attrs["variant"] == \
            "incident_wavelength_spectrum"
        assert spec.attrs["units"] == "angstrom"
        assert np.array_equal(spec[()], np.array(spectra) * 1e10)
        assert np.allclose(weights, 1 / 12, rtol=0, atol=1e-15)
        assert np.allclose(mean, (spec[()] * weights).sum(axis=1), rtol=1e-15)


def test_spectrum_file_channels_and_single_render(tmp_path):
    """A pink-beam file: its channels are the linear density's quantiles (a flat band:
    evenly spaced), the same for every frame, and the render is -sourcefile's."""
    f = tmp_path / "pink.txt"
    f.write_text("# wavelength_A weight\n0.98 1\n1.00 1\n1.02 1\n")
    spec = read_spectrum(str(f), channels=8)
    lam = spec.wavelengths(1e-10, 1)
    assert np.allclose(lam * 1e10, 0.98 + 0.04 * (np.arange(8) + 0.5) / 8, rtol=0,
                       atol=1e-15)
    assert isinstance(spec, FileSpectrum)
    ds = Dataset.from_args(STILL + ["-default_F", "100"], Stills(2, None), spectrum=spec,
                           noise=False, seed=3)
    assert np.array_equal(ds.frame(0).wavelengths, ds.frame(1).wavelengths)


# ------------------------------------------------------------------------ damage
def _hkl_files(tmp_path):
    rng = np.random.default_rng(19)
    p, d = [], []
    for h in range(-10, 11):
        for k in range(-10, 11):
            for l in range(-10, 11):
                F = rng.uniform(50, 150)
                p.append(f"{h} {k} {l} {F!r}\n")
                d.append(f"{h} {k} {l} {F * rng.uniform(0.3, 1.7)!r}\n")
    (tmp_path / "p.hkl").write_text("".join(p))
    (tmp_path / "d.hkl").write_text("".join(d))
    return tmp_path / "p.hkl", tmp_path / "d.hkl"


def _truth(frame):
    t = frame.truth
    return {tuple(int(v) for v in m): x for m, x in zip(t["miller_index"],
                                                        t["intensity.true.value"])}


def test_damage_b_factor_and_half_dose_on_the_truth(tmp_path):
    """Acceptance 4: stills of one orientation; the truth of frame j over frame i is
    exp(-(B_j - B_i)/(2 d^2)) (B = b_per_mgy x (k + 1/2) x dose); with a damaged set at
    half dose the truth is halfway between the two sets' truths."""
    p, d = _hkl_files(tmp_path)
    flags = STILL + ["-hkl", p]
    ds = Dataset.from_args(flags, Stills(3, None), noise=False, truth=True, seed=1,
                           damage=DamageSpec(dose_per_frame=2.0, b_per_mgy=5.0))
    t0, t2 = _truth(ds.render(0)), _truth(ds.render(2))
    common = [k for k in t0 if k in t2 and t0[k] > 0]
    assert len(common) > 10
    dB = 5.0 * (2.5 - 0.5) * 2.0
    for k in common:
        inv_d2 = (k[0] ** 2 + k[1] ** 2 + k[2] ** 2) / 60.0 ** 2
        assert t2[k] / t0[k] == pytest.approx(math.exp(-dB * inv_d2 / 2), rel=1e-9)
    # specific damage: frame 1 sits at 1.5 MGy = the half dose; no B factor
    half = Dataset.from_args(flags, Stills(2, None), noise=False, truth=True, seed=1,
                             damage=DamageSpec(dose_per_frame=1.0, b_per_mgy=0.0,
                                               damaged=read_hkl(str(d)), half_dose=1.5))
    fr = half.render(1)
    assert np.all(fr.truth["dose"] == 1.5)
    th = _truth(fr)
    tp = _truth(Dataset.from_args(flags, Stills(1, None), noise=False, truth=True,
                                  seed=1).render(0))
    td = _truth(Dataset.from_args(STILL + ["-hkl", d], Stills(1, None), noise=False,
                                  truth=True, seed=1).render(0))
    common = [k for k in th if k in tp and k in td]
    assert len(common) > 10
    for k in common:
        assert th[k] == pytest.approx(0.5 * (tp[k] + td[k]), rel=1e-9)


def test_raddose_dose_from_the_fluence():
    """-mu_en: dose per frame = fluence x photon energy x mu_en / density (Gy = J/kg)."""
    flags = STILL + ["-default_F", "100", "-flux", "1e12", "-exposure", "0.1",
                     "-beamsize", "0.05"]
    ds = Dataset.from_args(flags, Stills(2, None), noise=False,
                           damage=DamageSpec(mu_en=0.4, density=1.35))
    fluence = 1e12 * 0.1 / (0.05e-3) ** 2                      # photons / m^2
    joule = HC / 1.0 * 1.602176634e-19
    gray = fluence * joule * 0.4e3 / 1.35e3
    dmg = ds.frame_damage()
    assert dmg["dose"] == pytest.approx(np.array([0.5, 1.5]) * gray * 1e-6, rel=1e-12)
    assert dmg["b_factor_increase"] == pytest.approx(1.0 * dmg["dose"], rel=1e-15)


@pytest.mark.parametrize("extra,words", [
    (["-sase_jitter", "0.001"], "-sase_jitter: needs -sase_bandwidth"),
    (["-sase_bandwidth", "0"], "-sase_bandwidth: the relative FWHM"),
    (["-sase_bandwidth", "0.001", "-sourcefile", "@SRC"], "cannot be combined"),
    (["-spectrum", "nope.txt"], "-spectrum: cannot open nope.txt"),
    (["-spectrum", "@BAD"], "line 1: the wavelength must be > 0"),
    (["-half_dose", "2"], "-half_dose: needs -dose"),
    (["-dose", "1", "-half_dose", "2"], "give both"),
    (["-dose", "-1"], "-dose: the dose per frame must be in [0, 100000] MGy"),
    (["-mu_en", "0.3"], "-mu_en: the dose per frame from a fluence of 1.26e+29"),
    (["-dose", "1", "-mu_en", "0.3"], "-mu_en: cannot be combined with -dose"),
    (["-dose", "1", "-damaged_mtz", "missing.mtz", "-half_dose", "1"],
     "-damaged_mtz: cannot open missing.mtz"),
], ids=["jitter-alone", "zero-bw", "sourcefile", "no-file", "bad-file", "half-alone",
        "half-without-set", "neg-dose", "default-fluence", "dose-and-mu",
        "no-damaged"])
def test_bad_spectrum_and_damage_flags(extra, words, tmp_path):
    (tmp_path / "src.txt").write_text("nan nan nan 1 1e-10\n")
    (tmp_path / "bad.txt").write_text("-1 1\n1 1\n")
    extra = [str(tmp_path / "src.txt") if v == "@SRC" else
             str(tmp_path / "bad.txt") if v == "@BAD" else v for v in extra]
    rc, _o, err = run_cli(STILL + ["-default_F", "100", "-stills", "1", "-noprogress",
                                   "-floatfile", tmp_path / "x.bin"] + extra)
    assert rc == 2
    assert words in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.bin").exists()


def test_damaged_mtz_is_read_like_mtz(tmp_path):
    """-damaged_mtz FILE.mtz: P1-expanded as -mtz is; a damaged set of F/2 at the half
    dose (frame 0 of -dose 1 -half_dose 0.5) scales every intensity by (1 + 1/4)/2."""
    gemmi = pytest.importorskip("gemmi")
    rng = np.random.default_rng(2)
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup("P 21 21 21")
    mtz.set_cell_for_all(gemmi.UnitCell(60, 60, 60, 90, 90, 90))
    mtz.add_dataset("sim")
    mtz.add_column("FP", "F")
    mtz.add_column("SIGFP", "Q")
    hkl = gemmi.make_miller_array(mtz.cell, mtz.spacegroup, 3.0)
    F = rng.uniform(10, 100, len(hkl))
    mtz.set_data(np.column_stack([hkl, F, np.ones(len(hkl))]))
    mtz.write_to_file(str(tmp_path / "f.mtz"))
    mtz.set_data(np.column_stack([hkl, F / 2, np.ones(len(hkl))]))
    mtz.write_to_file(str(tmp_path / "half.mtz"))
    flags = STILL + ["-mtz", tmp_path / "f.mtz", "-stills", "1", "-nonoise", "-noprogress"]
    rc, _o, err = run_cli(flags + ["-floatfile", tmp_path / "a.bin"])
    assert rc == 0, err
    rc, _o, err = run_cli(flags + ["-floatfile", tmp_path / "b.bin", "-dose", "1",
                                   "-b_per_mgy", "0", "-damaged_mtz",
                                   tmp_path / "half.mtz", "-half_dose", "0.5"])
    assert rc == 0, err
    a = np.fromfile(tmp_path / "a.bin", "<f4")
    b = np.fromfile(tmp_path / "b.bin", "<f4")
    assert a.max() > 0 and np.allclose(b, 0.625 * a, rtol=1e-6, atol=0)

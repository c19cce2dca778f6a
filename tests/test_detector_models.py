"""Photon-counting and JUNGFRAU detector models (docs/effects.md, "Detector models"):
dead time, counter depth, charge sharing, gain switching -- against analytic values
computed here, and the plain Poisson image bit for bit where the model reduces to it."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from nbsim.counter_rng import counter_key, stream_key
from nbsim.dataset.noise import counter_counts
from nbsim.effects.counting import CountingParams, charge_sharing_kernel, photon_counting
from nbsim.effects.jungfrau import JungfrauParams, jungfrau, jungfrau_calibration

SEED = 11
KP, KD = counter_key(SEED), stream_key(SEED, "counting")
RATES = np.array([1e3, 1e4, 1e5, 1e6, 1e7])            # photons / pixel / s
TAU = 100e-9


def _flat(rates, T, n=96):
    """One panel per rate, every pixel expecting rate * T photons."""
    return np.stack([np.full((n, n), r * T, np.float32) for r in rates])


@pytest.mark.parametrize("paralyzable", [False, True])
def test_dead_time_mean_follows_the_analytic_curve(paralyzable):
    """m = n/(1 + n tau) (non-paralyzable), n exp(-n tau) (paralyzable), to 1 %, on flat
    images of 1e3 .. 1e7 photons/s/pixel (T = 10 ms: 10 .. 1e5 photons, so both the
    event-by-event draw and the renewal CLT are used); Poisson statistics at low rate;
    the variance of the renewal count (Mueller 1973) at high rate."""
    T = 0.01
    p = CountingParams(count_time=T, deadtime=TAU, paralyzable=paralyzable, counter_bits=31)
    c = photon_counting(_flat(RATES, T), p, KP, KD).astype(np.float64)
    for k, n in enumerate(RATES):
        x = n * TAU
        want = n * T * (math.exp(-x) if paralyzable else 1.0 / (1.0 + x))
        assert c[k].mean() == pytest.approx(want, rel=0.01), (n, c[k].mean(), want)
        var = want * ((1 - 2 * x * math.exp(-x)) if paralyzable else 1 / (1 + x) ** 2)
        assert c[k].var() == pytest.approx(var, rel=0.1), (n, c[k].var(), var)
    # low rate: Poisson (variance = mean; P(k) = the Poisson probabilities)
    low = photon_counting(_flat([1e2], 0.01, 128), p, KP, KD).ravel()   # mean 1
    for k in range(4):
        assert np.mean(low == k) == pytest.approx(math.exp(-1) / math.factorial(k), abs=0.01)


def test_counter_depth_saturates_or_rolls_over():
    """Counts never exceed 2**bits - 1: saturation clips the same underlying count,
    rollover keeps it modulo 2**bits."""
    T = 1e-3
    img = _flat([1e5, 3e5, 1e6], T, 32)
    full = photon_counting(img, CountingParams(count_time=T, deadtime=TAU, counter_bits=31),
                           KP, KD)
    sat = photon_counting(img, CountingParams(count_time=T, deadtime=TAU, counter_bits=8),
                          KP, KD)
    rol = photon_counting(img, CountingParams(count_time=T, deadtime=TAU, counter_bits=8,
                                              overflow="rollover"), KP, KD)
    assert full.max() > 255 and sat.max() == 255 and rol.max() <= 255
    assert np.array_equal(sat, np.minimum(full, 255))
    assert np.array_equal(rol, full % 256)


def _counts_per_photon_mc(sigma, t, n=600_000):
    """Expected counts per photon, independently: photon positions uniform in the
    pixel (Monte Carlo), the Gaussian cloud's share of every pixel within 2 pixels by
    the error function (a cloud of <= 0.3 pixel rms puts < 1e-10 beyond), a pixel
    counts when its share >= t."""
    from scipy.special import erf
    rng = np.random.default_rng(3)
    x, y = rng.random(n), rng.random(n)
    d = np.arange(-2, 3)

    def share(u):   # (offsets, n)
        return 0.5 * (erf((d[:, None] + 1 - u) / (sigma * math.sqrt(2)))
                      - erf((d[:, None] - u) / (sigma * math.sqrt(2))))
    sx, sy = share(x), share(y)
    total = 0
    for i in range(len(d)):
        total += np.count_nonzero(sy[i][None, :] * sx >= t)
    return total / n


@pytest.mark.parametrize("sigma_um,thr", [(20.0, 0.3), (15.0, 0.7)])
def test_charge_sharing_total_counts_of_an_isolated_spot(sigma_um, thr):
    """The counts of one bright pixel (no dead time) summed over its neighbours: the
    photons times the expected counts per photon of the cloud and threshold (below half
    the energy a photon near an edge counts twice, above it a photon near a corner
    counts nowhere)."""
    pix = 75e-6
    lam = 2e5
    img = np.zeros((1, 15, 15), np.float32)
    img[0, 7, 7] = lam
    p = CountingParams(count_time=1.0, deadtime=0.0, counter_bits=31,
                       charge_cloud=sigma_um * 1e-6, pixel_size=pix, threshold_fraction=thr)
    per_photon = _counts_per_photon_mc(sigma_um * 1e-6 / pix, thr)
    assert (per_photon > 1.0) if thr < 0.5 else (per_photon < 1.0)
    kernel = charge_sharing_kernel(sigma_um * 1e-6 / pix, thr)
    assert kernel.sum() == pytest.approx(per_photon, abs=3e-3)
    total = photon_counting(img, p, KP, KD).sum()
    sd = math.sqrt(lam * per_photon) + lam * 1e-3        # Poisson + Monte Carlo error
    assert abs(total - lam * per_photon) < 5 * sd


def test_zero_cloud_and_no_dead_time_is_the_plain_poisson_image():
    rng = np.random.default_rng(5)
    img = (rng.random((2, 40, 50)) * 30).astype(np.float32)
    img[0, 3, 4] = 5e3
    p = CountingParams(count_time=1.0, deadtime=0.0, counter_bits=31, charge_cloud=0.0)
    assert np.array_equal(photon_counting(img, p, KP, KD), counter_counts(img, SEED))
    roi = (5, 30, 2, 20)
    assert np.array_equal(photon_counting(img, p, KP, KD, roi=roi),
                          counter_counts(img, SEED, roi=roi))


def test_jungfrau_ramp_through_the_three_gain_stages():
    """A ramp of 0.5 .. 1e4 photons of 12.4 keV: the photons are the plain Poisson
    image's; the gain bits switch where the deposited energy crosses the switching
    thresholds; the raw ADC values are the pixel's pedestal + gain * energy within the
    stage's noise; the converted photons equal the photons within 5 sigma of the
    stage's documented photon noise plus the ADC's and the output's rounding."""
    p = JungfrauParams(photon_kev=12.4)
    lam = np.geomspace(0.5, 1e4, 48 * 48).astype(np.float32).reshape(1, 48, 48)
    kn, kc = stream_key(SEED, "jungfrau"), stream_key(99, "jungfrau_calibration")
    raw = jungfrau(lam, dataclasses.replace(p, output="adu"), KP, kn, kc)
    photons = jungfrau(lam, p, KP, kn, kc)
    n = counter_counts(lam, SEED).astype(np.float64)
    energy = n * 12.4
    stage = np.where(energy < 300.0, 0, np.where(energy < 9000.0, 1, 2))
    assert set(np.unique(stage)) == {0, 1, 2}
    assert np.array_equal(raw >> 14, np.array([0, 1, 3])[stage])
    gains, peds = jungfrau_calibration(lam.shape, p, kc)
    adc = (raw & 16383).astype(np.float64)
    sel = np.indices(lam.shape)
    g = gains[stage, sel[0], sel[1], sel[2]]
    ped = peds[stage, sel[0], sel[1], sel[2]]
    noise_adu = np.array(p.noise)[stage]
    assert np.all(np.abs(adc - (ped + g * energy)) <= 5 * noise_adu + 0.5)
    for s in range(3):
        d = (photons - n)[stage == s]
        quant = 0.5 / (p.gains[s] * 0.9 * 12.4) + 0.5
        assert np.abs(d).max() <= 5 * p.photon_noise(s) * 1.1 + quant, s
    d2 = (photons - n)[stage == 2]
    assert d2.std() == pytest.approx(p.photon_noise(2), rel=0.25)


def test_detector_model_flags(tmp_path):
    """The presets choose their model; flags choose or refuse one; c-parity and -nonoise
    switch the models off with a note."""
    from nbsim.args import parse_args
    from nbsim.detector_model import SuiteError, model_notes, resolve_detector_model
    base = "-cell 100 100 100 90 90 90 -default_F 1 -distance 100 -lambda 1".split()
    eiger = resolve_detector_model(parse_args(base + ["-detector_preset", "eiger2_16m"]))
    assert eiger.kind == "counting" and eiger.params.counter_max == 65535
    assert eiger.params.threshold_kev == pytest.approx(12.398419843320026 / 2)
    assert eiger.nexus_fields()["threshold_energy"] == pytest.approx(6199.21, abs=0.01)
    jf = resolve_detector_model(parse_args(base + ["-detector_preset", "jungfrau_4m"]))
    assert jf.kind == "jungfrau"
    assert resolve_detector_model(parse_args(base + ["-detpixels", "8"])) is None
    assert resolve_detector_model(parse_args(base + ["-detector_preset", "eiger2_16m",
                                                     "-readout", "2"])) is None
    cp = parse_args(base + ["-deadtime", "50", "-c_parity"])
    assert resolve_detector_model(cp) is None and "c_parity" in model_notes(cp)[0]
    for bad, word in [(["-deadtime", "-1"], "-deadtime"),
                      (["-counter_bits", "40"], "-counter_bits"),
                      (["-threshold", "20"], "-threshold"),
                      (["-charge_cloud", "1000"], "-charge_cloud"),
                      (["-detector_model", "ccd"], "-detector_model"),
                      (["-deadtime_model", "x"], "-deadtime_model"),
                      (["-frame_time", "0"], "-frame_time"),
                      (["-detector_model", "jungfrau", "-deadtime", "3"], "-deadtime"),
                      (["-jungfrau_output", "volts"], "-jungfrau_output")]:
        with pytest.raises(SuiteError, match=word):
            resolve_detector_model(parse_args(base + bad))


def test_bad_detector_model_flag_is_one_line_exit_2(tmp_path):
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-m", "nbsim", "-cell", "100", "100", "100", "90",
                        "90", "90", "-default_F", "1", "-detpixels", "8", "-counter_bits",
                        "0", "-noisefile", str(tmp_path / "n.img")],
                       capture_output=True, text=True, cwd=tmp_path)
    err = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(err) == 1 and "-counter_bits" in err[0], err
    assert not list(tmp_path.iterdir())


def test_counting_dataset_nexus_fields(tmp_path):
    """A counting dataset's NXdetector: count_time = frame_time = -frame_time, the
    counter's saturation_value, the threshold in eV; the frames are the counts."""
    import subprocess
    import sys
    h5py = pytest.importorskip("h5py")
    pytest.importorskip("hdf5plugin")
    rc = subprocess.run([sys.executable, "-m", "nbsim", "-cell", "70", "80", "90", "90", "90",
                         "90", "-default_F", "100", "-N", "5", "-lambda", "1", "-distance",
                         "200", "-detector_preset", "eiger2_16m", "-roi", "0", "7", "0", "7",
                         "-seed", "5", "-nimages", "1", "-nexus", "x.h5", "-frame_time", "0.01",
                         "-counter_bits", "12", "-threshold", "7.5"], cwd=tmp_path,
                        capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr
    with h5py.File(tmp_path / "x.h5", "r") as f:
        det = f["/entry/instrument/detector"]
        assert det["count_time"][()] == det["frame_time"][()] == pytest.approx(0.01)
        assert det["saturation_value"][()] == 4095
        assert det["threshold_energy"][()] == pytest.approx(7500.0)
        assert det["threshold_energy"].attrs["units"] == "eV"
        data = f["/entry/data/data"][0]
        assert data.dtype == np.int32 and 0 <= data.min() and data.max() <= 4095


@pytest.mark.slow
def test_dials_imports_a_counting_nexus_file(tmp_path):
    """dials.import reads a counting dataset's NeXus file with defaults: the counter's
    saturation is the trusted range's top, frame_time the exposure."""
    import os
    import shutil
    import subprocess
    import sys
    if shutil.which("dials.import") is None:
        pytest.skip("DIALS is not installed")
    hdf5plugin = pytest.importorskip("hdf5plugin")
    rc = subprocess.run([sys.executable, "-m", "nbsim", "-cell", "70", "80", "90", "90", "90",
                         "90", "-default_F", "100", "-N", "5", "-lambda", "1", "-distance",
                         "200", "-detector_preset", "eiger2_16m", "-roi", "0", "31", "0", "31",
                         "-seed", "5", "-nimages", "2", "-osc", "0.5", "-nexus", "x.h5",
                         "-frame_time", "0.01", "-counter_bits", "12"], cwd=tmp_path,
                        capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr
    env = dict(os.environ, HDF5_PLUGIN_PATH=hdf5plugin.PLUGIN_PATH)
    env.pop("PYTHONPATH", None)
    p = subprocess.run(["dials.import", "x.h5", "output.experiments=i.expt"], cwd=tmp_path,
                       env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    import json
    doc = json.loads((tmp_path / "i.expt").read_text())
    assert len(doc["detector"][0]["panels"]) == 32
    assert doc["detector"][0]["panels"][0]["trusted_range"][1] == 4095
    assert doc["scan"][0]["exposure_time"][0] == pytest.approx(0.01)

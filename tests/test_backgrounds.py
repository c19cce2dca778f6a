"""Ice rings, the beamstop's shadow and bad pixels (issue 20, part B; docs/effects.md).

Independent checks: the ring positions against the ice Ih d-spacings of the literature
(3.90, 3.67, 3.44, 2.67, 2.25, 2.07, 1.92 A at ~100 K), one ring's integrated photons
against Warren's powder formula evaluated here from the form factors, the shadow against
the disk and strip drawn in the test from the pixel coordinates, and the products of a
run (float image, truth labels, NeXus pixel_mask) against those masks.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

gemmi = pytest.importorskip("gemmi")

from nbsim.amorphous import (NonBraggDetector, R_E_SQR, amorphous_image,  # noqa: E402
                             resolve_nonbragg_geometry)
from nbsim.amorphous.ice import ice_sample, ice_table  # noqa: E402

#: ice Ih d-spacings at ~100 K (Angstrom): (100) (002) (101) (102) (110) (103) (112)
ICE_D = (3.90, 3.67, 3.44, 2.67, 2.25, 2.07, 1.92)
FLUENCE = 1e20


def _ice_image(n, beam_mm, distance_mm, crystallite, thickness=1e-6, oversample=1):
    det = NonBraggDetector(pixel_size=1e-4, fpixels=n, spixels=n, distance=distance_mm * 1e-3,
                           Xbeam=beam_mm * 1e-3, Ybeam=beam_mm * 1e-3, oversample=oversample)
    geom = resolve_nonbragg_geometry(det)
    sample = ice_sample(thickness, 1e-4, FLUENCE, 0.0, False)
    img = amorphous_image(geom, ice_table(1e-10, crystallite), sample).astype(np.float64)
    # pixel centres, MOSFLM: beam +x, fast +z, slow -y; radius from the direct beam
    c = (np.arange(n) + 0.5) * 1e-4 - beam_mm * 1e-3
    r = np.hypot(c[None, :], c[:, None])
    two_theta = np.arctan2(r, distance_mm * 1e-3)
    return img, two_theta, sample


def test_ice_ring_positions_are_ih_d_spacings():
    img, tth, _ = _ice_image(400, 0.0, 50.0, 200e-9)
    d = 1.0 / (2.0 * np.sin(tth / 2.0))            # Angstrom at 1 A
    # profile against d in bins of 0.05 % (mean photons per pixel)
    edges = np.exp(np.arange(np.log(1.5), np.log(5.0), 5e-4))
    idx = np.digitize(d.ravel(), edges)
    ok = (idx > 0) & (idx < len(edges))
    s = np.bincount(idx[ok], weights=img.ravel()[ok], minlength=len(edges) + 1)
    cnt = np.bincount(idx[ok], minlength=len(edges) + 1)
    prof = np.where(cnt > 0, s / np.maximum(cnt, 1), 0.0)[1:len(edges)]
    centres = np.sqrt(edges[1:] * edges[:-1])
    peak = (prof[1:-1] > prof[:-2]) & (prof[1:-1] >= prof[2:]) & (prof[1:-1] > 0.02 * prof.max())
    peaks = centres[1:-1][peak]
    for dd in ICE_D:
        nearest = peaks[np.argmin(abs(peaks - dd))]
        assert abs(nearest / dd - 1) < 0.005, (dd, nearest)
    # nothing beyond the first ring (the (100) at 3.89 A) but its tail
    assert prof[centres > 4.2].max() < 1e-3 * prof.max()


def test_ice_ring_integrated_photons_match_warren():
    """The (110) ring summed over the detector: r_e^2 F0 lambda^3 V m |F|^2 P /
    (4 V_c^2 sin theta), with F(110) = 4 (f_O + 2 f_H) (every molecule in phase:
    h x + k y = 1 for the 4f sites) and m = 6."""
    n, dist = 512, 40.0
    img, tth, sample = _ice_image(n, 25.6, dist, 20e-9, thickness=2e-6)
    a, c = 4.497, 7.322
    d110 = a / 2.0                                   # hexagonal: d(110) = a/2
    theta = math.asin(1.0 / (2.0 * d110))
    s2 = (1.0 / (2.0 * d110)) ** 2
    f = gemmi.Element("O").it92.calculate_sf(s2) + 2 * gemmi.Element("H").it92.calculate_sf(s2)
    F2 = (4.0 * f) ** 2
    v_cell = a * a * c * math.sqrt(3.0) / 2.0 * 1e-30
    volume = 2e-6 * 1e-4 * 1e-4
    polar = (1.0 + math.cos(2 * theta) ** 2) / 2.0
    expected = (R_E_SQR * FLUENCE * 1e-30 * volume * 6 * F2 * polar
                / (4.0 * v_cell ** 2 * math.sin(theta)))
    # the annulus half-way to the neighbouring rings (102) and (103)
    def tth_of(dd):
        return 2.0 * math.asin(1.0 / (2.0 * dd))
    lo = 0.5 * (tth_of(2.6675) + tth_of(d110))
    hi = 0.5 * (tth_of(2.0681) + tth_of(d110))
    got = img[(tth > lo) & (tth < hi)].sum()
    assert got == pytest.approx(expected, rel=0.01)
    assert sample.resolved()[1] == pytest.approx(volume / v_cell, rel=1e-6)


def _plan(extra, n=64):
    from nbsim.args import parse_args
    from nbsim.plan import make_plan
    parsed = parse_args(["-cell", "40", "40", "40", "90", "90", "90", "-default_F", "10",
                         "-lambda", "1", "-distance", "50", "-detpixels", str(n),
                         "-pixel", "0.1"] + extra)
    return make_plan(parsed.config)


def test_beamstop_shadow_is_the_disk_and_arm_around_the_beam():
    # the stop plane is the detector's (perpendicular detector): the shadow is the disk
    # of R around the beam centre and the strip along +slow (A = 90 deg)
    p = _plan(["-beamstop", "1.0", "-beamstop_arm", "0.4", "90", "-Xbeam", "3.2",
               "-Ybeam", "2.9"])
    det = p.detector
    # pixel centres from the beam spot, in the detector plane (mm)
    fb = float(np.dot(np.asarray(det.beam) * det.distance - det.pix0, det.fdet)) * 1e3
    sb = float(np.dot(np.asarray(det.beam) * det.distance - det.pix0, det.sdet)) * 1e3
    u = (np.arange(64) + 0.5) * 0.1 - fb
    v = (np.arange(64) + 0.5) * 0.1 - sb
    U, V = np.meshgrid(u, v)
    want = (U ** 2 + V ** 2 <= 1.0) | ((V >= 0) & (abs(U) <= 0.2))
    # pixel centres exactly on the edge are ambiguous in floating point: away from it
    edge = (abs(np.hypot(U, V) - 1.0) < 1e-9) | (abs(abs(U) - 0.2) < 1e-9)
    got = p.defects.shadow[0]
    assert np.array_equal(got[~edge], want[~edge]) and want.sum() > 50
    # not rendered: the shadow is in the kernel's mask
    assert np.all(p.mask.reshape(64, 64)[got] == 0) and p.options.has_mask


def test_bad_pixels_drawn_from_their_seed():
    p = _plan(["-bad_pixels", "0.01"])
    d = p.defects
    assert d.dead.sum() + d.hot.sum() == round(0.01 * 64 * 64)
    assert d.dead.sum() == round(0.01 * 64 * 64) // 2 and not (d.dead & d.hot).any()
    assert np.array_equal(_plan(["-bad_pixels", "0.01"]).defects.hot, d.hot)
    assert not np.array_equal(_plan(["-bad_pixels", "0.01", "-bad_pixel_seed", "5"]).defects.hot,
                              d.hot)


@pytest.mark.parametrize("flags, message", [
    (["-beamstop", "-1"], "-beamstop -1"),
    (["-beamstop_arm", "0.5", "0"], "an arm needs a beamstop"),
    (["-bad_pixels", "0.9"], "-bad_pixels 0.9"),
    (["-ice", "0"], "-ice: the ice thickness must be > 0"),
    (["-ice", "1", "-ice_crystallite", "nan"], "-ice_crystallite"),
    (["-beamstop", "nan"], "-beamstop: expected a number"),
    (["-ice", "1e308"], "-ice: an ice layer"),
])
def test_bad_values_are_one_line(tmp_path, flags, message):
    import io

    from nbsim.cli.main import main
    out, err = io.StringIO(), io.StringIO()
    rc = main(["-cell", "40", "40", "40", "90", "90", "90", "-default_F", "10", "-detpixels",
               "16", "-floatfile", str(tmp_path / "f.bin")] + flags, stdout=out, stderr=err)
    assert rc == 2, err.getvalue()
    assert message in err.getvalue() and len(err.getvalue().strip().splitlines()) == 1
    assert not (tmp_path / "f.bin").exists()


def test_shadow_of_a_tilted_detector_is_the_stop_projected(tmp_path):
    """A rotated detector: the shadow is where the ray to the pixel centre crosses the
    stop's plane (perpendicular to the beam at the direct beam's distance) inside the
    disk or the arm (A = 30 deg from the fast axis made perpendicular to the beam)."""
    p = _plan(["-beamstop", "1.2", "-beamstop_arm", "0.5", "30", "-detector_rotx", "8",
               "-detector_roty", "15"])
    det = p.detector
    b = np.asarray(det.beam) / np.linalg.norm(det.beam)
    f0, s0 = np.meshgrid((np.arange(64) + 0.5) * 1e-4, (np.arange(64) + 0.5) * 1e-4)
    P = (np.asarray(det.pix0)[None, None, :] + f0[..., None] * np.asarray(det.fdet)
         + s0[..., None] * np.asarray(det.sdet))
    D = float(det.distance)
    X = P * (D / (P @ b))[..., None] - D * b
    e1 = np.asarray(det.fdet) - (np.asarray(det.fdet) @ b) * b
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(b, e1)
    u, v = X @ e1 * 1e3, X @ e2 * 1e3                     # mm in the stop's plane
    a = math.radians(30.0)
    along, across = u * math.cos(a) + v * math.sin(a), -u * math.sin(a) + v * math.cos(a)
    want = (u ** 2 + v ** 2 <= 1.2 ** 2) | ((along >= 0) & (abs(across) <= 0.25))
    edge = (abs(np.hypot(u, v) - 1.2) < 1e-9) | (abs(abs(across) - 0.25) < 1e-9)
    assert np.array_equal(p.defects.shadow[0][~edge], want[~edge]) and want.sum() > 100
    # the disk is foreshortened on the tilted detector: not the pixels within R of the
    # beam spot on the detector
    assert int(want.sum()) != int(_plan(["-beamstop", "1.2", "-beamstop_arm", "0.5", "30"])
                                  .defects.shadow.sum())


def test_truth_of_a_run_with_ice_beamstop_and_bad_pixels(tmp_path):
    """A single image with -truth: the blocked pixels hold no Bragg photons and no label,
    and the Bragg fraction counts the ice rings as non-Bragg: sum(fraction x float
    image) = the reflections' photons."""
    import io

    import h5py

    from nbsim.cli.main import main
    from nbsim.io.refl import read_refl
    flags = ["-cell", "30", "30", "30", "90", "90", "90", "-default_F", "100", "-N", "3",
             "-lambda", "1", "-distance", "30", "-detpixels", "64", "-pixel", "0.5",
             "-oversample", "1", "-fluence", "1e24", "-ice", "0.2", "-ice_crystallite", "20",
             "-beamstop", "3", "-beamstop_arm", "1", "90", "-bad_pixels", "0.02",
             "-nonoise", "-noprogress", "-floatfile", str(tmp_path / "f.bin"),
             "-truth", str(tmp_path / "t.refl")]
    err = io.StringIO()
    assert main(flags, stdout=io.StringIO(), stderr=err) == 0, err.getvalue()
    img = np.fromfile(tmp_path / "f.bin", dtype=np.float32).reshape(64, 64).astype(np.float64)
    t, _ids = read_refl(str(tmp_path / "t.refl"))
    with h5py.File(tmp_path / "t_labels.h5", "r") as f:
        labels = f["labels"][0]
        frac = f["bragg_fraction"][0].astype(np.float64)
    d = _plan(flags[:flags.index("-nonoise")]).defects
    blocked = d.blocked[0]
    assert np.all(labels[blocked] == -1) and np.all(frac[blocked] == 0)
    # a hot pixel reads its photons even in the shadow
    assert np.all(img[(d.shadow[0] | d.dead[0]) & ~d.hot[0]] == 0)
    assert np.all(img[d.hot[0]] == 65535)
    assert (labels[~blocked] >= 0).sum() > 100
    ice = (frac < 0.5) & (img > 0) & ~blocked
    assert ice.sum() > 100                                 # ring pixels: mostly not Bragg
    assert (frac * img).sum() == pytest.approx(t["intensity.true.value"].sum(), rel=1e-5)

"""Invariants of the engine (acceptance 3, 4, 7): hypothesis draws small geometries."""
import copy

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbsim
from nbsim.args import parse_args

SETTINGS = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def base_args(npix=24, extra=()):
    return ["-cell", "70", "80", "90", "75", "85", "95", "-misset", "10", "20", "30",
            "-default_F", "100", "-N", "5", "-lambda", "1.5", "-distance", "60",
            "-detpixels", str(npix), "-pixel", "0.5", "-oversample", "1", *extra]


geometry = st.fixed_dictionaries({
    "distance": st.floats(40, 200),
    "lam": st.floats(0.8, 3.0),
    "N": st.integers(2, 8),
    "rotx": st.floats(-5, 5),
    "phi0": st.sampled_from([0.0, 2.0, -1.0]),
    "phisteps": st.integers(1, 3),
    "mosaic": st.sampled_from([0.0, 0.3]),
    "oversample": st.integers(1, 2),
})


def args_of(g, npix=20):
    a = ["-cell", "70", "80", "90", "75", "85", "95", "-misset", "10", "20", "30",
         "-default_F", "100", "-N", str(g["N"]), "-lambda", f"{g['lam']:.4f}",
         "-distance", f"{g['distance']:.3f}", "-detpixels", str(npix), "-pixel", "0.5",
         "-detector_rotx", f"{g['rotx']:.3f}", "-phi", str(g["phi0"]), "-osc", "1",
         "-phisteps", str(g["phisteps"]), "-oversample", str(g["oversample"])]
    if g["mosaic"]:
        a += ["-mosaic", str(g["mosaic"]), "-mosaic_dom", "3"]
    return a


@SETTINGS
@given(g=geometry, roi=st.tuples(st.integers(0, 19), st.integers(0, 19),
                                 st.integers(0, 19), st.integers(0, 19)))
def test_roi_render_is_crop_of_full(g, roi):
    x0, x1 = sorted(roi[:2])
    y0, y1 = sorted(roi[2:])
    full = nbsim.Simulator.from_args(args_of(g)).run()
    part = nbsim.Simulator.from_args(args_of(g) + ["-roi", str(x0), str(x1), str(y0), str(y1)]).run()
    np.testing.assert_array_equal(part[y0:y1 + 1, x0:x1 + 1], full[y0:y1 + 1, x0:x1 + 1])
    outside = np.ones_like(part, dtype=bool)
    outside[y0:y1 + 1, x0:x1 + 1] = False
    assert np.all(part[outside] == 0)


@SETTINGS
@given(g=geometry)
def test_c_parity_equals_spec_without_zero_phi(g):
    g = dict(g, phi0=2.0)       # no phi step is exactly zero
    spec = nbsim.Simulator.from_args(args_of(g)).run()
    cpar = nbsim.Simulator.from_args(args_of(g), mode="c-parity").run()
    np.testing.assert_array_equal(spec, cpar)


@SETTINGS
@given(g=geometry, factor=st.floats(0.1, 10.0))
def test_linear_in_fluence_quadratic_in_F(g, factor):
    cfg = parse_args(args_of(g)).config
    base = nbsim.simulate(cfg)
    c2 = copy.deepcopy(cfg)
    c2.beam.fluence *= factor
    np.testing.assert_allclose(nbsim.simulate(c2), factor * base, rtol=1e-12, atol=0)
    c3 = copy.deepcopy(cfg)
    c3.structure.default_F *= factor
    np.testing.assert_allclose(nbsim.simulate(c3), factor ** 2 * base, rtol=1e-12, atol=0)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
@pytest.mark.parametrize("mode", ["spec", "c-parity"])
def test_bit_identical_with_one_and_two_threads(mode):
    a = base_args(48, ["-phi", "0", "-osc", "1", "-phisteps", "3", "-mosaic", "0.3",
                       "-mosaic_dom", "3"])
    one = nbsim.Simulator.from_args(a, mode=mode, threads=1).run()
    two = nbsim.Simulator.from_args(a, mode=mode, threads=2).run()
    assert np.array_equal(one, two)


def test_symmetric_detector_gives_symmetric_image():
    # cubic cell, beam along the detector normal through the centre (MOSFLM adds half a
    # pixel to Xbeam/Ybeam): mirror symmetry about both centre lines
    a = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5",
         "-lambda", "6.2", "-distance", "100", "-detpixels", "64", "-pixel", "0.4",
         "-oversample", "1", "-nopolar", "-Xbeam", "12.6", "-Ybeam", "12.6"]
    img = nbsim.Simulator.from_args(a).run()
    np.testing.assert_allclose(img, img[::-1, :], rtol=1e-9, atol=1e-12 * img.max())
    np.testing.assert_allclose(img, img[:, ::-1], rtol=1e-9, atol=1e-12 * img.max())


def test_carryover_cache_is_one_index():
    """c-parity keeps one pixel index (plus one byte per pixel only under -dmin)."""
    from nbsim.kernels.carryover import first_executing_pixel
    a = base_args(32, ["-phi", "0", "-osc", "1", "-phisteps", "4"])
    sim = nbsim.Simulator.from_args(a, mode="c-parity")
    assert sim.plan.carry_needed
    sim.run()
    assert isinstance(sim._carry_pixel, int) and sim._carry_pixel == 0
    sim2 = nbsim.Simulator.from_args(a + ["-roi", "5", "9", "3", "7"], mode="c-parity")
    assert first_executing_pixel(sim2.plan) == 3 * 32 + 5
    # spec mode never builds the carry tables
    assert not nbsim.Simulator.from_args(a).plan.carry_needed


def test_dmin_carryover_prepass_matches_golden_rule():
    # with -dmin, the first executing pixel is found by the one-byte-per-pixel pre-pass
    from nbsim.kernels.carryover import first_executing_pixel
    a = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5",
         "-lambda", "1", "-distance", "60", "-detpixels", "64", "-pixel", "0.2",
         "-dmin", "40", "-phi", "0", "-osc", "1", "-phisteps", "2", "-oversample", "1"]
    sim = nbsim.Simulator.from_args(a, mode="c-parity")
    first = first_executing_pixel(sim.plan)
    img = sim.run()
    spec = nbsim.Simulator.from_args(a).run()
    # pixels cut by dmin stay zero; the first pixel that renders is the first nonzero one
    assert first == int(np.flatnonzero(spec.ravel())[0])
    assert np.all(img.ravel()[:first] == 0)


BAD = [
    (lambda c: setattr(c.detector, "pixel_size", -1.0), "detector.pixel_size"),
    (lambda c: setattr(c.beam, "wavelength", float("nan")), "beam.wavelength"),
    (lambda c: setattr(c.beam, "wavelength", 0.0), "beam.wavelength"),
    (lambda c: setattr(c.detector, "distance", 0.0), "detector.distance"),
    (lambda c: setattr(c.crystal, "cell", None), "crystal.cell"),
    (lambda c: setattr(c.crystal, "cell", (1e-8, 1e-8, 1e-8, 0.1, 0.1, 3.0)), "crystal.cell"),
    (lambda c: setattr(c.structure, "default_F", 0.0), "structure.default_F"),
    (lambda c: setattr(c.crystal, "shape", "CUBE"), "crystal.shape"),
    (lambda c: setattr(c, "mode", "fast"), "mode"),
    (lambda c: setattr(c.detector, "convention", "ADSC"), "detector.convention"),
    (lambda c: setattr(c.beam, "beam_vector", (0, 0, 0)), "beam.beam_vector"),
    (lambda c: setattr(c.detector, "mask", np.ones((3, 3))), "detector.mask"),
    (lambda c: setattr(c.crystal, "Na", -2), "crystal.Na"),
    (lambda c: setattr(c.sampling, "oversample", 2.5), "sampling.oversample"),
    (lambda c: setattr(c.detector, "pix0_vector", (0.0, 0.0, 0.0)), "detector.pix0_vector"),
]


@pytest.mark.parametrize("mutate,param", BAD)
def test_bad_config_raises_clear_value_error(mutate, param):
    cfg = parse_args(base_args(16)).config
    mutate(cfg)
    with pytest.raises(ValueError) as ei:
        nbsim.simulate(cfg)
    assert isinstance(ei.value, nbsim.ConfigError)
    assert ei.value.param == param
    assert param in str(ei.value)


@pytest.mark.parametrize("flags, axis", [
    ([], (0.0, 0.0, -1.0)),                                   # MOSFLM's two-theta axis
    (["-spindle_axis", "0", "0", "1"], (0.0, 1.0, 0.0)),      # CUSTOM: C's declared +y
    (["-denzo", "-polar_vector", "0", "0", "1"], (0.0, 1.0, 0.0)),
    (["-twotheta_axis", "0", "0", "1"], (0.0, 0.0, 1.0)),
])
def test_twotheta_swings_about_the_conventions_axis(flags, axis):
    """Any vector flag selects CUSTOM, which keeps nanoBragg.c's declared initial vectors:
    MOSFLM's, except twotheta_axis = {0,0,1,0} (+y).  The detector normal (1,0,0) swung by
    2theta about axis u is cos(2th) o + sin(2th) (u x o) (+ 0, as u . o = 0)."""
    from nbsim.args import parse_args
    from nbsim.geometry.detector import resolve_detector
    tt = 12.0
    cfg = parse_args(("-cell 50 50 50 90 90 90 -default_F 1 -detpixels 16 "
                      f"-twotheta {tt}").split() + flags).config
    det = resolve_detector(cfg)
    o = np.array([1.0, 0.0, 0.0])
    th = np.radians(tt)
    want = np.cos(th) * o + np.sin(th) * np.cross(axis, o)
    assert np.allclose(det.odet, want, atol=1e-12)


@pytest.mark.parametrize("extra", [[], ["-detector_roty", "9.72"],
                                   ["-detector_rotx", "-6.85", "-detector_roty", "9.72",
                                    "-curved_det"]])
def test_direct_beam_pixel_exact_like_c(extra):
    """-denzo puts the default beam centre on the centre of pixel (32, 32): nanoBragg.c's
    arithmetic then gives a scattering vector of exactly 0 there, so -round_xtal's sinc3 is
    1 (any x below ~1e-8 would give 0).  The kernels compute the geometry with C's exact
    IEEE operations (no FMA, no reciprocal), so h = k = l = 0 exactly and F_latt is
    N^3 * 0.7236; the rendered pixel (SIMD or scalar kernel) carries that value."""
    sim = nbsim.Simulator.from_args(
        ("-cell 117.85 85.195 92.374 77.512 103.205 103.797 -default_F 10 -Nb 10 "
         "-round_xtal -lambda 1.5 -detpixels 64 -distance 172.77 -denzo "
         "-oversample 1").split() + extra)
    image = sim.run()
    t = sim.trace_pixel(32, 32)
    assert tuple(float(x) for x in t.hkl) == (0.0, 0.0, 0.0)
    assert t.F_latt == 10 * 0.723601254558268
    assert image[32, 32] == pytest.approx(t.pixel, rel=1e-12) and t.pixel > 0.0
    # the neighbour is not on the beam: a normal, smaller lattice factor
    assert sim.trace_pixel(31, 32).F_latt < t.F_latt


@pytest.mark.parametrize("mode", ["spec", "c-parity"])
def test_batched_traces_match_single_traces_and_image(mode):
    sim = nbsim.Simulator.from_args(
        "-cell 70 80 90 75 85 95 -default_F 100 -N 4 -detpixels 24 -phi 0 -osc 1 "
        "-phisteps 3 -mosaic 0.5 -mosaic_dom 2 -oversample 2".split(), mode=mode)
    image = sim.run()
    pixels = [(0, 0), (5, 7), (23, 23), (12, 3), (0, 0)]
    batch = sim.trace_pixels(pixels)
    for (f, s), t in zip(pixels, batch):
        one = sim.trace_pixel(f, s)
        assert (t.fpixel, t.spixel) == (f, s)
        assert t.pixel == one.pixel                  # the same kernel, bit for bit
        assert t.pixel == pytest.approx(image[s, f], rel=1e-12)   # SIMD kernel's order
        assert t.I == one.I and t.hkl == one.hkl and t.F_latt == one.F_latt
    assert sim.trace_pixels([]) == []

"""nbsim.gradients: analytic VJPs against finite differences (float64), on small detectors.

The default run covers the common path (SIMD lanes kernel), the scalar kernel (c-parity
tricubic switch, F_hkl), the loss functions and a few hypothesis draws; every feature in
both modes is in ``test_gradients_features.py`` (marked slow).
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbsim import Simulator
from nbsim import gradients as gr
from nbsim.gradients import host
from test_gradients_helpers import (BASE, CPAR_CASES, IN, SPEC_CASES, TOL, compare, cotangent,
                                    scalar_params)


def sim_of(flags, mode="spec"):
    return gr.as_simulator(flags.split(), mode=mode)


# ------------------------------------------------------------------ API
def test_parameter_names():
    expected = {"cell_a", "cell_b", "cell_c", "cell_alpha", "cell_beta", "cell_gamma",
                "misset_x", "misset_y", "misset_z", "Na", "Nb", "Nc", "distance_mm",
                "xbeam_mm", "ybeam_mm", "detector_rotx", "detector_roty", "detector_rotz",
                "twotheta", "lambda_A", "fluence", "F_hkl"}
    assert expected <= set(gr.PARAMETERS)
    assert "F_hkl" not in gr.SCALAR_PARAMETERS


def test_inapplicable_parameters_are_refused():
    sim = sim_of(BASE)
    with pytest.raises(ValueError, match="F_hkl"):
        gr.vjp(sim, np.ones(sim.plan.shape), ["F_hkl"])
    with pytest.raises(ValueError, match="mosaic"):
        gr.vjp(sim, np.ones(sim.plan.shape), ["mosaic_spread"])
    with pytest.raises(ValueError, match="unknown"):
        gr.vjp(sim, np.ones(sim.plan.shape), ["cell_d"])
    mat = sim_of(SPEC_CASES["mat"])
    with pytest.raises(ValueError, match="-mat"):
        gr.vjp(mat, np.ones(mat.plan.shape), ["cell_a"])
    with pytest.raises(ValueError, match="cotangent"):
        gr.vjp(sim, np.ones(5), ["cell_a"])


def test_default_params_and_flags_input():
    flags = BASE.split()
    G = cotangent((24, 24))
    g = gr.vjp(flags, G)
    assert set(g) == set(scalar_params(sim_of(BASE)))
    g2 = gr.vjp(sim_of(BASE), G, ["cell_b"])
    assert g2["cell_b"] == pytest.approx(g["cell_b"], rel=1e-12)


def test_parameter_round_trip():
    sim = sim_of(SPEC_CASES["rot_twotheta"])
    vals = gr.get_parameters(sim)
    assert vals["cell_a"] == pytest.approx(100.0)
    assert vals["detector_roty"] == pytest.approx(3.0)
    assert vals["twotheta"] == pytest.approx(10.0)
    assert vals["distance_mm"] == pytest.approx(100.0)
    cfg = gr.with_parameters(sim, {"cell_a": 101.0, "xbeam_mm": 5.0})
    v2 = gr.get_parameters(cfg)
    assert v2["cell_a"] == pytest.approx(101.0) and v2["xbeam_mm"] == pytest.approx(5.0)


# ------------------------------------------------------------------ forward value
@pytest.mark.parametrize("name", ["base", "mosaic", "interp"])
def test_adjoint_renders_the_forward_image(name):
    sim = sim_of(SPEC_CASES[name])
    img = sim.run()
    for lanes in (True, False):
        res = host.run_adjoint(sim, cotangent(img.shape), False, False, lanes=lanes)
        assert np.max(np.abs(res.image - img)) <= 1e-12 * np.max(np.abs(img))


def test_lanes_and_scalar_kernels_agree():
    flags = (f"-hkl {IN}/grid3.hkl -default_F 7 -cell 70 80 90 75 85 95 -N 5 -lambda 1.5 "
             "-distance 100 -detpixels 24 -pixel 0.4 -mosaic_dom 4 -mosaic 0.5 "
             "-mosaic_seed 1234 -nointerpolate -oversample 2 -polar 0.8")
    sim = sim_of(flags)
    G = cotangent(sim.plan.shape, 3)
    cfg = gr.effective_config(sim)
    s2 = Simulator(cfg)
    dlam = host.source_dlam(cfg)
    a = host.run_adjoint(s2, G, True, True, dlam, lanes=True)
    b = host.run_adjoint(s2, G, True, True, dlam, lanes=False)
    scale = np.abs(b.acc) + 1e-12 * np.max(np.abs(b.acc))
    assert np.all(np.abs(a.acc - b.acc) <= 1e-10 * scale)
    assert np.max(np.abs(a.gF - b.gF)) <= 1e-10 * np.max(np.abs(b.gF))


# ------------------------------------------------------------------ vjp vs finite differences
@pytest.mark.parametrize("name", ["base", "triclinic_misset", "mosaic"])
def test_vjp_matches_finite_differences(name):
    sim = sim_of(SPEC_CASES[name])
    G = cotangent(sim.plan.shape)
    params = scalar_params(sim, exclude=("mosaic_spread",))
    assert compare(sim, G, params) == []


@pytest.mark.slow          # its own adjoint variant (~18 s cold on CI's 2 cores)
def test_mosaic_spread():
    # the float32 narrowing of C's mosaic angle makes small FD steps noisy: the step is
    # 20 % of the spread (Richardson-extrapolated), agreement 1e-5
    sim = sim_of(SPEC_CASES["mosaic"])
    G = cotangent(sim.plan.shape, 1)
    assert compare(sim, G, ["mosaic_spread"], tol=1e-5) == []


@pytest.mark.parametrize("name", ["cpar_phi0", "cpar_interp_switch", "cpar_running"])
def test_vjp_matches_finite_differences_c_parity(name):
    sim = sim_of(CPAR_CASES[name], mode="c-parity")
    G = cotangent(sim.plan.shape, 2)
    params = ["cell_a", "cell_gamma", "misset_y", "Nb", "distance_mm", "ybeam_mm",
              "detector_rotx", "lambda_A", "fluence"]
    assert compare(sim, G, params) == []


@pytest.mark.parametrize("mode", ["spec", "c-parity"])
@pytest.mark.parametrize("interp", ["-nointerpolate", "-interpolate"])
def test_F_hkl(mode, interp):
    flags = (f"-hkl {IN}/grid3.hkl -default_F 7 -cell 100 100 100 90 90 90 -N 2 -lambda 3 "
             f"-distance 100 -detpixels 24 -pixel 0.8 -oversample 1 {interp}")
    sim = sim_of(flags, mode)
    G = cotangent(sim.plan.shape, 4)
    g = gr.vjp(sim, G, ["F_hkl", "default_F"])
    assert g["F_hkl"].shape == sim.plan.Fgrid.shape
    # differences for every entry the image depends on, and a few it does not
    idx = _some_indices(g["F_hkl"])
    fd = gr.finite_difference(sim, G, ["F_hkl", "default_F"], f_hkl_indices=idx)
    a = np.array([g["F_hkl"][i] for i in idx])
    b = np.array([fd["F_hkl"][i] for i in idx])
    assert np.count_nonzero(a) > 0
    assert np.max(np.abs(a - b)) <= TOL * np.max(np.abs(b))
    assert abs(g["default_F"] - fd["default_F"]) <= TOL * abs(fd["default_F"]) + 1e-9


def _some_indices(gF, extra=8, seed=0):
    nz = [tuple(int(v) for v in i) for i in np.argwhere(gF != 0)]
    rng = np.random.default_rng(seed)
    zs = [tuple(int(v) for v in i) for i in np.argwhere(gF == 0)]
    pick = []
    if zs:
        pick = [zs[i] for i in rng.choice(len(zs), size=min(extra, len(zs)), replace=False)]
    return nz[:64] + pick


def test_F_hkl_sparse_grid_and_default_F():
    flags = (f"-hkl {IN}/sparse.hkl -default_F 10 -cell 100 100 100 90 90 90 -N 5 -lambda 6.2 "
             "-distance 100 -detpixels 24 -pixel 0.4 -oversample 1")
    sim = sim_of(flags)
    G = cotangent(sim.plan.shape, 5)
    g = gr.vjp(sim, G, ["F_hkl", "default_F", "fluence"])
    fd = gr.finite_difference(sim, G, ["F_hkl", "default_F", "fluence"])
    assert np.count_nonzero(g["F_hkl"]) > 0
    assert np.max(np.abs(g["F_hkl"] - fd["F_hkl"])) <= TOL * np.max(np.abs(fd["F_hkl"]))
    for n in ("default_F", "fluence"):
        assert g[n] == pytest.approx(fd[n], rel=TOL)


def test_tophat_where_smooth():
    # TOPHAT's spot edges are steps (derivative 0 returned there): only the parameters
    # that do not move an edge are compared
    sim = sim_of(BASE + " -tophat_spots -fudge 1.5")
    G = cotangent(sim.plan.shape, 6)
    assert compare(sim, G, ["fluence", "default_F"]) == []


def test_dmin_away_from_the_cut():
    # the dmin cut is a step; with the cotangent zero on pixels near the cut circle the
    # derivative is that of the pixels inside
    flags = ("-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 1.0 -distance 60 "
             "-detpixels 24 -pixel 1.0 -dmin 5 -oversample 1")
    sim = sim_of(flags)
    p = sim.plan
    det = p.detector
    fs = (np.arange(det.fpixels) + 0.5) * det.pixel_size
    ss = (np.arange(det.spixels) + 0.5) * det.pixel_size
    pos = (det.pix0[None, None, :] + fs[None, :, None] * det.fdet[None, None, :]
           + ss[:, None, None] * det.sdet[None, None, :])
    d = pos / np.linalg.norm(pos, axis=2)[..., None]
    stol = 0.5 * np.linalg.norm(d - det.beam[None, None, :], axis=2) / p.src_lambda[0]
    res = 0.5 / stol
    G = cotangent(p.shape, 7) * (np.abs(res - p.geom[24]) > 0.03 * p.geom[24])
    assert np.count_nonzero(res < p.geom[24]) > 0      # the cut is on the detector
    params = ["cell_a", "cell_b", "misset_z", "distance_mm", "xbeam_mm", "lambda_A", "Na"]
    assert compare(sim, G, params) == []


# ------------------------------------------------------------------ losses
@pytest.mark.parametrize("loss", ["l2", "poisson"])
def test_loss_and_grad(loss):
    sim = sim_of(SPEC_CASES["triclinic_misset"])
    truth = sim.run()
    obs = np.random.default_rng(0).poisson(truth * 1.1 + 1.0).astype(float)
    # the Poisson likelihood of a pixel whose model is ~1e-9 photons is violently curved;
    # keep to pixels with a few photons so that finite differences converge
    use = truth > 1.0
    params = ["cell_b", "misset_x", "distance_mm", "Nc"]
    L, g = gr.loss_and_grad(sim, obs, loss, params, mask=use)
    # the loss and its cotangent
    img = gr.render(sim)
    if loss == "l2":
        assert L == pytest.approx(np.sum(((img - obs) ** 2)[use]), rel=1e-12)
        G = np.where(use, 2 * (img - obs), 0.0)
    else:
        assert L == pytest.approx(np.sum((img - obs * np.log(img))[use]), rel=1e-12)
        G = np.where(use, 1 - obs / img, 0.0)
    gv = gr.vjp(sim, G, params)
    for n in params:
        assert g[n] == pytest.approx(gv[n], rel=1e-12)
    # and against differences of the loss itself
    from nbsim.gradients.params import PARAMS
    cfg = gr.effective_config(sim)
    for n, v in g.items():
        p = PARAMS[n]
        x0, h = p.get(cfg), p.fd_step(p.get(cfg))

        def Lf(x):
            return gr.loss_and_grad(p.set(cfg, x), obs, loss, [n], mask=use)[0]
        fd = (4 * (Lf(x0 + h / 2) - Lf(x0 - h / 2)) / h - (Lf(x0 + h) - Lf(x0 - h)) / (2 * h)) / 3
        assert v == pytest.approx(fd, rel=1e-5, abs=1e-10 * abs(L) / h)


# ------------------------------------------------------------------ properties
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=st.floats(60, 120), b=st.floats(60, 120), c=st.floats(60, 120),
       alpha=st.floats(80, 100), beta=st.floats(80, 100), gamma=st.floats(80, 100),
       mx=st.floats(-30, 30), my=st.floats(-30, 30), mz=st.floats(-30, 30),
       N=st.integers(3, 6), lam=st.floats(1.0, 6.2), dist=st.floats(80, 150),
       xb=st.floats(-1.0, 1.0), yb=st.floats(-1.0, 1.0), rot=st.floats(-3, 3),
       tt=st.floats(-5, 5), oversample=st.integers(1, 2), seed=st.integers(0, 2 ** 16),
       mode=st.sampled_from(["spec", "c-parity"]),
       params=st.lists(st.sampled_from(gr.params.CORE_PARAMETERS), min_size=3, max_size=5,
                       unique=True))
def test_vjp_matches_fd_hypothesis(a, b, c, alpha, beta, gamma, mx, my, mz, N, lam, dist, xb,
                                   yb, rot, tt, oversample, seed, mode, params):
    flags = (f"-cell {a} {b} {c} {alpha} {beta} {gamma} -misset {mx} {my} {mz} -default_F 100 "
             f"-N {N} -lambda {lam} -distance {dist} -detpixels 16 -pixel 0.5 "
             f"-Xbeam {4.0 + xb} -Ybeam {4.0 + yb} -detector_rotz {rot} -twotheta {tt} "
             f"-oversample {oversample}")
    sim = sim_of(flags, mode)
    G = cotangent(sim.plan.shape, seed)
    assert compare(sim, G, params) == []


def test_forward_is_continuous_in_N():
    """The N derivative is that of the delta-reduced lattice factor; finite differences in
    N need the forward to be continuous in N, i.e. physics.sincg_delta to take the sign's
    parity from the nearest integer N (see docs/gradients.md)."""
    from nbsim import physics as ph
    for h in (0.3, 1.3, 2.7, -1.6, 3.45):
        for N in (5.0, 2.0):
            a, b = ph.sincg_delta(h, N - 1e-7), ph.sincg_delta(h, N + 1e-7)
            assert abs(a - b) <= 1e-5 * max(abs(a), 1.0), (
                f"sincg_delta({h}, N) jumps at N = {N}: {a} vs {b} (sign parity from "
                "(N - 1) h0 instead of (rint(N) - 1) h0)")

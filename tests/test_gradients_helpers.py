"""Shared cases and checks for the gradient tests (no tests here).

Every case is a small detector (24 x 24 pixels of 0.4 mm unless said) so a render takes a
millisecond; the feature it exercises is in its name.
"""
from pathlib import Path

import numpy as np

INPUTS = Path(__file__).resolve().parent / "golden" / "inputs"
IN = str(INPUTS)

BASE = ("-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 6.2 -distance 100 "
        "-detpixels 24 -pixel 0.4 -oversample 1")
OS2 = BASE.replace("-oversample 1", "-oversample 2")
TRI = ("-cell 70 80 90 75 85 95 -default_F 100 -N 5 -lambda 1.5 -distance 100 "
       "-detpixels 24 -pixel 0.4 -oversample 1")

# features whose model is continuous (FD converges to the analytic derivative).  With
# tricubic interpolation the beam centre is kept off pixel centres: a sub-path exactly at
# integer h, k or l sits on a kink of the interpolant (the 4-point block changes), where
# the derivative returned is that of the block in use and rounding picks the block.
SPEC_CASES = {
    "base": BASE,
    "triclinic_misset": TRI + " -misset 10 20 30",
    "oversample2": OS2,
    "divergence": BASE + " -hdivrange 0.5 -hdivsteps 3 -vdivrange 0.5 -vdivsteps 3",
    "dispersion": BASE + " -dispersion 5 -dispsteps 3",
    "sourcefile": BASE + f" -sourcefile {IN}/sources.txt",
    "mosaic": TRI + " -mosaic_dom 4 -mosaic 0.5 -mosaic_seed 1234",
    "phi": BASE + " -phi 10 -osc 3 -phisteps 3",
    "thick": BASE + " -detector_abs 500 -detector_thick 450 -thicksteps 3",
    "thick_os": OS2 + " -detector_abs 500 -detector_thick 450 -thicksteps 3 -oversample_thick",
    "kahn": BASE + " -polar 0.9",
    "os_polar_omega": OS2 + " -oversample_omega -oversample_polar -polar 0.9",
    "nopolar": BASE + " -nopolar",
    "round": BASE + " -round_xtal",
    "gauss": BASE + " -gauss_xtal",
    "curved": BASE + " -curved_det",
    "point": BASE + " -point_pixel",
    "water": BASE + " -water 0.05",
    "interp": (f"-hkl {IN}/grid10.hkl -cell 100 100 100 90 90 90 -N 2 -lambda 6.2 "
               "-distance 100 -detpixels 24 -pixel 0.4 -oversample 1 -interpolate "
               "-Xbeam 4.93 -Ybeam 5.07"),
    "xds": BASE + " -xds -ORGX 10 -ORGY 13",
    "dials": BASE + " -dials -Xbeam 4 -Ybeam 5",
    "adxv": BASE + " -adxv -Xbeam 5 -Ybeam 4",
    "denzo": BASE + " -denzo",
    "rot_twotheta": BASE + " -detector_rotx 5 -detector_roty 3 -detector_rotz 2 -twotheta 10",
    "custom_pix0": (BASE + " -fdet_vector 0 0 1 -sdet_vector 0 -1 0 -odet_vector 1 0 0 "
                    "-beam_vector 1 0 0 -pix0_vector_mm 100 5 -5 -detector_rotx 2"),
    "close": BASE + " -fdet_vector 0 0 1 -close_distance 95 -Xclose 4 -Yclose 5 "
                    "-detector_rotx 3 -twotheta 5",
    "mat": (f"-mat {IN}/hex_A.mat -default_F 100 -lambda 6.2 -N 5 -distance 150 "
            "-detpixels 24 -pixel 0.4 -oversample 1"),
    "flux": BASE + " -flux 1e12 -exposure 0.1 -beamsize 0.05",
    "roi": BASE + " -roi 3 20 2 18",
    "misset_random": TRI + " -misset random -misset_seed 777",
    "xtalsize": BASE.replace("-N 5", "-xtalsize 0.0005"),
    "spindle": BASE + " -spindle_axis 0 1 0 -phi 5 -osc 2 -phisteps 2",
}
# c-parity: the phi=0 carry-over, the running-sum oversample factors, the tricubic switch
CPAR_CASES = {
    "cpar_phi0": BASE + " -phi 0 -osc 1 -phisteps 3",
    "cpar_running": OS2 + " -oversample_omega -oversample_polar -polar 0.9",
    "cpar_running_thick": OS2 + (" -detector_abs 500 -detector_thick 450 -thicksteps 3 "
                                 "-oversample_thick"),
    "cpar_interp_switch": (f"-hkl {IN}/grid3.hkl -default_F 7 -cell 100 100 100 90 90 90 -N 2 "
                           "-lambda 3 -distance 100 -detpixels 24 -pixel 0.8 -oversample 1 "
                           "-interpolate -Xbeam 9.93 -Ybeam 10.17"),
    "cpar_pix0": (BASE + " -fdet_vector 0 0 1 -sdet_vector 0 -1 0 -odet_vector 1 0 0 "
                  "-beam_vector 1 0 0 -pix0_vector_mm 100 5 -5 -detector_rotx 2"),
}

TOL = 1e-6


def cotangent(shape, seed=0):
    """A random smooth cotangent: a constant plus four random low-frequency waves."""
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:shape[0], 0:shape[1]] / max(shape)
    G = r.normal() * np.ones(shape)
    for _ in range(4):
        kx, ky, ph = r.normal(0, 3), r.normal(0, 3), r.uniform(0, 2 * np.pi)
        G += r.normal() * np.cos(2 * np.pi * (kx * x + ky * y) + ph)
    return G


def noise_floor(sim, G, name, S=None):
    """What central differences of sum(G * image) can resolve for ``name``: rounding of
    the sum (~eps sum|G I|) over the step, with margin.  Gradients below it (e.g. an exact
    zero such as lambda with an -mat cell) are compared in absolute terms."""
    from nbsim import gradients as gr
    from nbsim.gradients.params import PARAMS
    if S is None:
        S = float(np.sum(np.abs(G * gr.render(sim))))
    p = PARAMS[name]
    h = p.fd_step(p.get(gr.effective_config(sim)))
    return 200.0 * np.finfo(float).eps * S / h


def compare(sim, G, params, tol=TOL, fd_kwargs=None, **vjp_kwargs):
    """vjp vs finite differences for ``params``; returns the failures as text."""
    from nbsim import gradients as gr
    g, img = gr.vjp(sim, G, params, return_image=True, **vjp_kwargs)
    fd = gr.finite_difference(sim, G, params, **(fd_kwargs or {}))
    S = float(np.sum(np.abs(G * img)))
    bad = []
    for n in params:
        a, b = g[n], fd[n]
        floor = noise_floor(sim, G, n, S)
        if not abs(a - b) <= tol * abs(b) + floor:
            bad.append(f"{n}: vjp {a:.10e} fd {b:.10e} rel {abs(a - b) / max(abs(b), 1e-300):.1e}"
                       f" floor {floor:.1e}")
    return bad


def scalar_params(sim, exclude=()):
    from nbsim import gradients as gr
    return [p for p in gr.SCALAR_PARAMETERS
            if gr.host.applicable(sim, p) is None and p not in exclude]

"""Refine a crystal and detector model against a noisy image with L-BFGS and nbsim's
analytic gradients.

A "true" model renders an image; Poisson noise makes it the observation.  The model is
then perturbed -- cell lengths by 0.5 %, misset angles by 0.2 deg, distance by 1 mm and
the beam centre by 0.2 mm -- and ``scipy.optimize.minimize(method="L-BFGS-B")`` minimises
the Poisson negative log-likelihood, with the gradient from
:func:`nbsim.gradients.loss_and_grad` (one forward render and one adjoint pass per
evaluation, whatever the number of parameters).

Run it::

    python docs/examples/refine_lbfgs.py

It prints the start, the result and the truth for every parameter, and exits non-zero
unless every parameter ends within a tenth of its initial error (the test suite runs it).
"""
from __future__ import annotations

import sys
import time

import numpy as np

from nbsim import gradients as gr

FLAGS = ("-cell 50 60 70 90 90 90 -misset 5 10 15 -default_F 1000 -N 5 -lambda 1.5 "
         "-distance 80 -detpixels 96 -pixel 0.2 -Xbeam 1 -Ybeam 1 -oversample 2").split()

# parameter -> perturbation (CLI units): cell +-0.5 %, misset +-0.2 deg, distance 1 mm,
# beam centre 0.2 mm
PERTURB = {
    "cell_a": +0.005 * 50, "cell_b": -0.005 * 60, "cell_c": +0.005 * 70,
    "misset_x": +0.2, "misset_y": -0.2, "misset_z": +0.2,
    "distance_mm": +1.0,
    "xbeam_mm": +0.2, "ybeam_mm": -0.2,
}


def refine(seed: int = 0, verbose: bool = True):
    from scipy.optimize import minimize

    names = list(PERTURB)
    truth_sim = gr.as_simulator(FLAGS)
    base = gr.effective_config(truth_sim)
    truth = gr.get_parameters(base, names)
    rng = np.random.default_rng(seed)
    observed = rng.poisson(gr.render(base)).astype(np.float64)

    start = {n: truth[n] + PERTURB[n] for n in names}
    scale = np.array([abs(PERTURB[n]) for n in names])
    x_start = np.array([start[n] for n in names])

    def values(x):
        return {n: float(v) for n, v in zip(names, x_start + x * scale)}

    # the likelihood of the observation under itself: subtracting it leaves the Poisson
    # deviance / 2, about one per pixel at the optimum, so L-BFGS's relative tolerance on
    # the objective means something
    pos = observed > 0
    L_sat = float(np.sum(observed - np.where(pos, observed * np.log(np.where(pos, observed, 1.0)),
                                             0.0)))
    calls = [0]

    def objective(x):
        calls[0] += 1
        cfg = gr.with_parameters(base, values(x))
        L, g = gr.loss_and_grad(cfg, observed, "poisson", names)
        return L - L_sat, np.array([g[n] for n in names]) * scale

    t0 = time.perf_counter()
    res = minimize(objective, np.zeros(len(names)), jac=True, method="L-BFGS-B",
                   options={"maxiter": 200, "ftol": 1e-15, "gtol": 1e-9})
    elapsed = time.perf_counter() - t0
    final = values(res.x)
    ok = True
    rows = []
    for n in names:
        e0 = abs(start[n] - truth[n])
        e1 = abs(final[n] - truth[n])
        good = e1 <= 0.1 * e0
        ok &= good
        rows.append((n, start[n], final[n], truth[n], e1 / e0, good))
    if verbose:
        print(f"L-BFGS-B: {res.nit} iterations, {calls[0]} evaluations, {elapsed:.1f} s, "
              f"{res.message}")
        print(f"{'parameter':14s} {'start':>12s} {'refined':>12s} {'truth':>12s} "
              f"{'err/err0':>9s}")
        for n, s0, f, t, r, good in rows:
            print(f"{n:14s} {s0:12.5f} {f:12.5f} {t:12.5f} {r:9.4f} {'ok' if good else 'FAIL'}")
    return {"ok": bool(ok), "rows": rows, "result": res, "evaluations": calls[0],
            "seconds": elapsed}


if __name__ == "__main__":
    sys.exit(0 if refine()["ok"] else 1)

"""Analytic gradients of nbsim images (vector-Jacobian products).

>>> from nbsim import gradients
>>> flags = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100",
...          "-N", "5", "-lambda", "6.2", "-detpixels", "24", "-oversample", "1"]
>>> import numpy as np
>>> G = np.ones((24, 24))
>>> g = gradients.vjp(flags, G, params=["cell_a", "distance_mm"])
>>> sorted(g)
['cell_a', 'distance_mm']

``vjp(sim, G)[name]`` is ``sum_pixels G * d(image)/d(name)``, computed in one pass of a
compiled adjoint kernel over the pixels (CPU ``prange`` or CUDA), for any set of
parameters at once.  See ``docs/gradients.md`` for the model's non-differentiable
points and the derivative returned there.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence

import numpy as np

from . import host
from .host import as_simulator, effective_config
from .params import CORE_PARAMETERS, PARAMETERS, PARAMS, SCALAR_PARAMETERS

__all__ = ["PARAMETERS", "SCALAR_PARAMETERS", "CORE_PARAMETERS", "vjp", "finite_difference", "loss_and_grad",
           "get_parameters", "with_parameters", "effective_config", "render"]


def _prepare(args_or_simulator, mode, threads=None):
    """(Simulator of the effective configuration, that configuration).  The effective
    configuration only pins what the plan already resolved, so a float64 plan is reused."""
    import copy
    from .._numba_setup import prepare_cpu
    from ..simulator import Simulator
    prepare_cpu()
    sim0 = as_simulator(args_or_simulator, mode, threads)
    if sim0.plan.panels is not None:
        from ..errors import ConfigError
        raise ConfigError("detector.panels", sim0.plan.panels.source,
                          "gradients of multi-panel detectors are not implemented")
    cfg = effective_config(sim0)
    if sim0.config.dtype == "float64" and not getattr(sim0, "_nbsim_effective", False):
        sim = copy.copy(sim0)
        sim.config = cfg
        sim.image = None
        sim._nbsim_effective = True
        return sim, cfg
    if getattr(sim0, "_nbsim_effective", False):
        return sim0, sim0.config
    return Simulator(cfg, threads=sim0.threads), cfg


def vjp(args_or_simulator, cotangent, params: Optional[Sequence[str]] = None,
        mode: Optional[str] = None, device: str = "cpu", *, threads: Optional[int] = None,
        return_image: bool = False):
    """Gradient of ``L = sum(cotangent * image)`` with respect to ``params``.

    ``args_or_simulator``: nanoBragg flags (list or string), a :class:`~nbsim.Config` or
    a :class:`~nbsim.Simulator`.  ``cotangent``: array shaped like the image
    (spixels, fpixels).  ``params``: names from :data:`PARAMETERS` (default: every one
    that applies).  ``mode``: "spec" or "c-parity" (default: "spec" for flags, the
    Simulator's own mode otherwise).  ``device``: "cpu" or "cuda".

    Returns a dict name -> float (``F_hkl`` -> array shaped like the loaded grid,
    indexed [h - h_min, k - k_min, l - l_min]).  With ``return_image`` also the image the
    adjoint pass rendered: ``(grads, image)``.
    """
    sim, cfg = _prepare(args_or_simulator, mode, threads)
    names = host.resolve_params(sim, params)
    want_F = "F_hkl" in names
    want_eta = "mosaic_spread" in names
    dlam = host.source_dlam(cfg) if "lambda_A" in names else None
    # on a GPU the host-geometry Jacobian is computed while the kernel runs
    res = host.run_adjoint(sim, cotangent, want_F, want_eta, dlam, device,
                           want_image=return_image,
                           during=lambda: host.jacobians(sim, cfg, names))
    grads = host.assemble(sim, cfg, res, names, res.extra)
    if return_image:
        return grads, res.image
    return grads


def render(args_or_simulator, mode: Optional[str] = None, device: str = "cpu",
           threads: Optional[int] = None) -> np.ndarray:
    """The image of the effective (pinned) configuration the gradients describe."""
    sim, cfg = _prepare(args_or_simulator, mode, threads)
    if device == "cuda":
        sim.config.device = "cuda"
    return sim.run()


def get_parameters(args_or_simulator, names: Optional[Iterable[str]] = None,
                   mode: Optional[str] = None) -> Dict[str, float]:
    """Current values (CLI units) of scalar parameters of the effective configuration."""
    _, cfg = _prepare(args_or_simulator, mode)
    names = SCALAR_PARAMETERS if names is None else names
    return {n: PARAMS[n].get(cfg) for n in names}


def with_parameters(config_or_simulator, values: Dict[str, object], mode=None):
    """A new (effective) :class:`~nbsim.Config` with parameters set (CLI units);
    ``F_hkl`` takes a grid array."""
    from dataclasses import replace
    _, cfg = _prepare(config_or_simulator, mode)
    for n, v in values.items():
        if n == "F_hkl":
            cfg = replace(cfg, structure=replace(cfg.structure,
                                                 grid=np.asarray(v, dtype=np.float64)))
        else:
            cfg = PARAMS[n].set(cfg, v)
    return cfg


def _total(cfg, G, threads):
    from ..simulator import Simulator
    img = Simulator(cfg, threads=threads).run()
    return float(np.sum(G * img))


def finite_difference(args_or_simulator, cotangent, params: Optional[Sequence[str]] = None,
                      mode: Optional[str] = None, device: str = "cpu", *,
                      threads: Optional[int] = None, steps: Optional[Dict[str, float]] = None,
                      richardson: bool = True, f_hkl_indices=None):
    """The same quantity as :func:`vjp`, by re-rendering with each parameter moved.

    Central differences ``(L(x+h) - L(x-h)) / 2h`` with the step ``h`` of the parameter
    table (``docs/gradients.md``; override with ``steps={name: h}``), and, with
    ``richardson`` (default), one Richardson step ``(4 D(h/2) - D(h)) / 3``.  Where the
    model has a kink at the current value (N == 1) a one-sided difference is used.
    ``F_hkl``: every grid entry (or the (i, j, k) grid indices in ``f_hkl_indices``;
    entries not listed are NaN) with step 1e-3 max(|F|, 1), exact for the quadratic
    dependence.  Renders on the CPU in float64 whatever ``device`` says.
    """
    sim, cfg = _prepare(args_or_simulator, mode, threads)
    names = host.resolve_params(sim, params)
    G = np.asarray(cotangent, dtype=np.float64).reshape(sim.plan.shape)
    thr = sim.threads
    out = {}
    for n in names:
        if n == "F_hkl":
            out[n] = _fd_fhkl(cfg, G, thr, f_hkl_indices)
            continue
        p = PARAMS[n]
        x0 = p.get(cfg)
        h = (steps or {}).get(n, p.fd_step(x0))

        def L(x):
            return _total(p.set(cfg, x), G, thr)
        if p.group == "N" and x0 - h <= 1.0:
            # one-sided (the factor is constant 1 below N = 1)
            def D(s):
                return (L(x0 + s) - L(x0)) / s
            out[n] = 2.0 * D(h / 2.0) - D(h) if richardson else D(h)
            continue

        def C(s):
            return (L(x0 + s) - L(x0 - s)) / (2.0 * s)
        out[n] = (4.0 * C(h / 2.0) - C(h)) / 3.0 if richardson else C(h)
    return out


def _fd_fhkl(cfg, G, threads, indices):
    from dataclasses import replace
    grid0 = np.asarray(cfg.structure.grid, dtype=np.float64)
    out = np.full(grid0.shape, np.nan)
    if indices is None:
        indices = list(np.ndindex(grid0.shape))
    for ijk in indices:
        ijk = tuple(int(v) for v in ijk)
        f0 = grid0[ijk]
        h = 1e-3 * max(abs(f0), 1.0)
        vals = []
        for s in (h, -h):
            g = grid0.copy()
            g[ijk] = f0 + s
            vals.append(_total(replace(cfg, structure=replace(cfg.structure, grid=g)), G,
                               threads))
        out[ijk] = (vals[0] - vals[1]) / (2.0 * h)
    return out


def loss_and_grad(args_or_simulator, observed, loss: str = "l2",
                  params: Optional[Sequence[str]] = None, mode: Optional[str] = None,
                  device: str = "cpu", *, mask=None, threads: Optional[int] = None):
    """Loss against an observed image and its gradient: ``(L, {name: dL/dname})``.

    ``loss="l2"``: ``L = sum (I - obs)^2``.  ``loss="poisson"``: the negative
    log-likelihood ``L = sum (I - obs log I)`` (the constant ``log obs!`` left out);
    pixels where the model is not positive are left out of both.  ``mask``: optional
    boolean image, pixels to use.
    """
    sim, cfg = _prepare(args_or_simulator, mode, threads)
    if device == "cuda":
        sim.config.device = "cuda"
    img = sim.run()
    sim.config.device = "cpu"
    obs = np.asarray(observed, dtype=np.float64).reshape(img.shape)
    use = np.ones(img.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if loss == "l2":
        r = np.where(use, img - obs, 0.0)
        L = float(np.sum(r * r))
        G = 2.0 * r
    elif loss == "poisson":
        use = use & (img > 0.0)
        safe = np.where(use, img, 1.0)
        L = float(np.sum(np.where(use, img - obs * np.log(safe), 0.0)))
        G = np.where(use, 1.0 - obs / safe, 0.0)
    else:
        raise ValueError(f"loss must be 'l2' or 'poisson', got {loss!r}")
    return L, vjp(sim, G, params, device=device)

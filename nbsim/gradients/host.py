"""Host side of the gradients: the effective configuration, the Jacobian of the plan
quantities with respect to the user's parameters, the kernel launch and the final
contraction.

The chain rule is split in two:

* the adjoint kernel gives dL/dq for the plan quantities q the kernel reads (detector
  origin and axes, close distance, the reference cell through the ``HKL`` accumulator,
  a*, b*, c*, the source wavelengths, N, the scale, the background);
* this module gives dq/dtheta by differencing the host geometry (``resolve_detector``,
  ``resolve_crystal``, ``resolve_sources`` -- never a render) with central differences at
  h, h/2, h/4 and two Richardson steps (error O(h^6); the geometry is a composition of
  rotations and rational functions, so this is accurate to ~1e-12 relative).  Everything
  the forward does to turn a parameter into geometry (conventions, pivots, beam-centre
  rules, -mat rescaling by the wavelength, misset, the phi/mosaic/carry-over tables) is
  therefore differentiated exactly as it is executed.
"""
from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Dict, Optional, Sequence

import numba
import numpy as np

from ..config import Config
from ..geometry.crystal import resolve_crystal
from ..geometry.detector import resolve_detector
from ..geometry.sources import resolve_sources
from ..plan import WATER_F, WATER_MW
from ..units import AVOGADRO, R_E_SQR, RTD
from . import core
from .params import PARAMS, PARAMETERS
from .result import AdjointResult

NO_SWITCH = np.iinfo(np.int64).max


# ------------------------------------------------------------------ inputs
def as_simulator(args_or_simulator, mode: Optional[str] = None, threads=None):
    """A :class:`~nbsim.Simulator` from flags or an existing one (``mode`` overrides)."""
    from ..simulator import Simulator
    if isinstance(args_or_simulator, Simulator):
        sim = args_or_simulator
        if mode is not None and sim.config.mode != mode:
            cfg = copy.copy(sim.config)
            cfg.mode = mode
            sim = Simulator(cfg, threads=threads or sim.threads)
        return sim
    if isinstance(args_or_simulator, Config):
        cfg = copy.copy(args_or_simulator)
        if mode is not None:
            cfg.mode = mode
        return Simulator(cfg, threads=threads)
    if isinstance(args_or_simulator, str):
        args_or_simulator = args_or_simulator.split()
    return Simulator.from_args(list(args_or_simulator), mode=mode or "spec",
                               threads=threads)


def effective_config(sim) -> Config:
    """The Simulator's configuration with every automatic or discrete choice pinned to
    what its plan resolved, so that nearby parameter values give the same model.

    Pinned: oversample, interpolation, Na/Nb/Nc (crystal size set to 0), the beam centre
    (filled in when defaulted), a random misset (replaced by its angles), mosaic domains
    and spread, the fluence (flux set to 0), float64, CPU."""
    plan = sim.plan
    cfg = sim.config
    det = plan.detector
    cr = plan.crystal
    d = replace(cfg.detector,
                beam_center_x=det.Xbeam if cfg.detector.beam_center_x is None
                else cfg.detector.beam_center_x,
                beam_center_y=det.Ybeam if cfg.detector.beam_center_y is None
                else cfg.detector.beam_center_y)
    misset = cfg.crystal.misset
    if cfg.crystal.misset_random:
        misset = tuple(m / RTD for m in cr.misset_deg)
    c = replace(cfg.crystal, Na=float(cr.Na), Nb=float(cr.Nb), Nc=float(cr.Nc),
                sample_x=0.0, sample_y=0.0, sample_z=0.0, misset=misset,
                misset_random=False, mosaic_spread=float(cr.mosaic_spread),
                mosaic_domains=int(cr.mosaic_domains))
    b = replace(cfg.beam, fluence=float(plan.fluence), flux=0.0)
    s = replace(cfg.sampling, oversample=int(plan.oversample))
    st = replace(cfg.structure, interpolate=bool(plan.interpolate))
    return replace(cfg, detector=d, crystal=c, beam=b, sampling=s, structure=st,
                   dtype="float64", device="cpu")


def applicable(sim, name: str) -> Optional[str]:
    """None when ``name`` can be differentiated for this configuration, else why not."""
    cfg = sim.config
    plan = sim.plan
    if name not in PARAMETERS:
        return f"unknown parameter {name!r} (see nbsim.gradients.PARAMETERS)"
    if name.startswith("cell_") and cfg.crystal.cell is None:
        return f"{name}: no -cell (the cell comes from -mat)"
    if name == "mosaic_spread" and not (plan.crystal.mosaic_spread > 0.0
                                        and plan.crystal.mosaic_domains > 1):
        return "mosaic_spread: no mosaic spread in this configuration (domains change at 0)"
    if name == "F_hkl" and plan.hkls == 0:
        return "F_hkl: no structure-factor grid loaded (only default_F)"
    return None


def resolve_params(sim, params) -> list:
    if params is None:
        return [n for n in PARAMETERS if applicable(sim, n) is None]
    if isinstance(params, str):
        params = [params]
    names = list(params)
    for n in names:
        why = applicable(sim, n)
        if why is not None:
            raise ValueError(why)
    return names


# ------------------------------------------------------------------ host geometry
def _det_q(cfg):
    det = resolve_detector(cfg)
    return np.concatenate([det.pix0, det.fdet, det.sdet, det.odet,
                           [det.distance, det.close_distance]])


def _cryst_q(cfg):
    # the reference cell and a*, b*, c* do not depend on the mosaic domains: skip drawing them
    if cfg.crystal.mosaic_spread:
        cfg = replace(cfg, crystal=replace(cfg.crystal, mosaic_spread=0.0, mosaic_domains=1))
    cr = resolve_crystal(cfg, cfg.beam.wavelength, cfg.beam.beamsize)
    return np.concatenate([cr.a0, cr.b0, cr.c0, cr.a_star, cr.b_star, cr.c_star])


def _src_lam(cfg):
    det = resolve_detector(cfg)
    return np.array(resolve_sources(cfg, det.beam, det.polar).wavelengths, dtype=np.float64)


def richardson(f, x0: float, h: float, levels: int = 2):
    """df/dx at x0 from central differences at h, h/2 (, h/4) and Richardson steps
    (error O(h^4), O(h^6) with three levels)."""
    def D(s):
        return (np.asarray(f(x0 + s)) - np.asarray(f(x0 - s))) / (2.0 * s)
    d = [D(h / 2.0 ** i) for i in range(levels)]
    k = 4.0
    while len(d) > 1:
        d = [(k * d[i + 1] - d[i]) / (k - 1.0) for i in range(len(d) - 1)]
        k *= 4.0
    return d[0]


def geometry_jacobian(cfg: Config, name: str, qfun) -> np.ndarray:
    """d qfun(cfg) / d(parameter ``name``): one central difference where the geometry is
    linear in the parameter (distance, beam centre), else central differences at h and h/2
    with a Richardson step."""
    p = PARAMS[name]
    x0 = p.get(cfg)
    h = p.jac_step(x0)
    return richardson(lambda x: qfun(p.set(cfg, x)), x0, h, 1 if p.linear else 2)


def eta_table(plan) -> np.ndarray:
    """d cells / d mosaic_spread (per radian), same shape as ``plan.cells``.

    Domain m's matrix is a rotation by theta_m = eta p_m about a fixed axis v_m (C draws
    p_m and v_m; the float32 narrowing of the angle is a step, ignored), so
    dU_m/d eta = (theta_m / eta) [v_m]x U_m and each rotated cell row r gets
    (theta_m / eta) v_m x r."""
    cr = plan.crystal
    eta = cr.mosaic_spread
    ndom = cr.mosaic_domains
    out = np.zeros_like(plan.cells)
    if not (eta > 0.0):
        return out
    for m in range(ndom):
        U = cr.mosaic_umats[m].reshape(3, 3)
        w = 0.5 * np.array([U[2, 1] - U[1, 2], U[0, 2] - U[2, 0], U[1, 0] - U[0, 1]])
        s = float(np.linalg.norm(w))
        if s == 0.0:
            continue
        theta = math.atan2(s, 0.5 * (np.trace(U) - 1.0))
        k = (theta / eta) / s * w          # (theta/eta) v
        for tab in range(out.shape[0]):
            for e in range(m, out.shape[1], ndom):
                rows = plan.cells[tab, e].reshape(3, 3)
                out[tab, e] = np.cross(k[None, :], rows).reshape(9)
    return out


# ------------------------------------------------------------------ kernel launch
def kernel_inputs(sim, want_F: bool, want_eta: bool, src_dlam=None):
    """Everything the adjoint kernel takes besides the cotangent and the outputs."""
    p = sim.plan
    opts = p.options
    cfg = sim.config
    carry_pixel = -1
    if p.carry_needed:
        from ..kernels.carryover import first_executing_pixel
        carry_pixel = first_executing_pixel(p)
    interp = int(opts.interp)
    switch = NO_SWITCH
    if cfg.mode == "c-parity" and interp == 1:
        # C switches interpolation off for the rest of the run at the first out-of-range
        # evaluation: find where (the forward records it) and use C's switch semantics
        sim.run()
        switch = int(sim._switch_pixel)
        interp = 2
    iopt = np.zeros(core.NOPT, dtype=np.int64)
    iopt[core.O_SHAPE] = opts.shape
    iopt[core.O_INTERP] = interp
    iopt[core.O_OS_THICK] = opts.os_thick
    iopt[core.O_OS_POLAR] = opts.os_polar
    iopt[core.O_OS_OMEGA] = opts.os_omega
    iopt[core.O_RUNNING] = opts.os_running
    iopt[core.O_CURVED] = opts.curved
    iopt[core.O_POINT] = opts.point_pixel
    iopt[core.O_NOPOLAR] = opts.nopolar
    iopt[core.O_DMIN] = opts.use_dmin
    iopt[core.O_CARRY] = opts.carry
    iopt[core.O_WATER] = opts.has_water
    iopt[core.O_KAHN] = opts.kahn
    iopt[core.O_THICK] = opts.thick
    iopt[core.O_WANT_F] = bool(want_F) and p.hkls > 0
    iopt[core.O_WANT_ETA] = bool(want_eta)
    iopt[core.O_HAS_MASK] = opts.has_mask
    if src_dlam is None:
        src_dlam = np.zeros_like(p.src_lambda)
    dcells = eta_table(p) if want_eta else np.zeros((1, 1, 9))
    return dict(iopt=iopt, carry_pixel=int(carry_pixel), switch_pixel=int(switch),
                src_dlam=np.ascontiguousarray(src_dlam, dtype=np.float64),
                dcells=np.ascontiguousarray(dcells))


def run_adjoint(sim, cotangent, want_F: bool, want_eta: bool, src_dlam=None,
                device: str = "cpu", lanes: bool = True, want_image: bool = True,
                during=None) -> AdjointResult:
    """One adjoint pass.  ``during()`` runs on the host while a GPU kernel runs (on the
    CPU after the kernel); its result comes back as ``.extra``."""
    p = sim.plan
    sp, fp = p.detector.spixels, p.detector.fpixels
    cot = np.ascontiguousarray(np.asarray(cotangent, dtype=np.float64).reshape(-1))
    if cot.size != sp * fp:
        raise ValueError(f"cotangent has {cot.size} values; the image has {sp}x{fp}")
    kin = kernel_inputs(sim, want_F, want_eta, src_dlam)
    if device == "cuda":
        from .adjoint_cuda import run_adjoint_cuda
        return run_adjoint_cuda(sim, cot, kin, want_image=want_image, during=during)
    if device != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    res = _run_adjoint_cpu(sim, cot, kin, lanes)
    if during is not None:
        res.extra = during()
    return res


def _run_adjoint_cpu(sim, cot, kin, lanes) -> AdjointResult:
    p = sim.plan
    sp, fp = p.detector.spixels, p.detector.fpixels
    from . import adjoint_lanes
    from .adjoint_cpu import adjoint_kernel
    prev = numba.get_num_threads()
    if sim.threads:
        numba.set_num_threads(min(int(sim.threads), numba.config.NUMBA_NUM_THREADS))
    try:
        if lanes and adjoint_lanes.supports(p.options):
            acc, gF, image = adjoint_lanes.run(sim, cot, kin, numba.config.NUMBA_NUM_THREADS)
            return AdjointResult(acc=acc, gF=gF, image=image.reshape(sp, fp))
        nchunks = numba.get_num_threads()
        acc = np.zeros((nchunks, core.NACC))
        want = kin["iopt"][core.O_WANT_F] != 0
        gF = (np.zeros((nchunks,) + p.Fgrid.shape) if want else np.zeros((1, 1, 1, 1)))
        image = np.zeros(sp * fp)
        adjoint_kernel(cot, image, p.pixel_index, p.kernel_arrays(),
                       bool(p.options.has_mask), kin["src_dlam"], kin["dcells"],
                       kin["carry_pixel"], kin["switch_pixel"], kin["iopt"], nchunks, acc, gF)
    finally:
        numba.set_num_threads(prev)
    return AdjointResult(acc=acc.sum(axis=0), gF=gF.sum(axis=0) if want else None,
                         image=image.reshape(sp, fp))


# ------------------------------------------------------------------ contraction
def jacobians(sim, cfg: Config, names: Sequence[str]) -> Dict[str, np.ndarray]:
    """The host-geometry Jacobian columns the contraction needs (by parameter name)."""
    jac: Dict[str, np.ndarray] = {}
    for n in names:
        p = PARAMS.get(n)
        if p is None:
            continue
        if p.group == "det":
            jac[n] = geometry_jacobian(cfg, n, _det_q)
        elif p.group == "cell":
            jac[n] = geometry_jacobian(cfg, n, _cryst_q)
        elif p.group == "lambda" and cfg.crystal.a_star_matrix is not None:
            # an A matrix is in units of the wavelength: the cell follows lambda
            jac[n] = geometry_jacobian(cfg, n, _cryst_q)
    return jac


def assemble(sim, cfg: Config, res: AdjointResult, names: Sequence[str],
             jac: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, object]:
    """dL/dtheta for ``names`` from the kernel's plan-quantity gradients."""
    p = sim.plan
    acc = res.acc
    if jac is None:
        jac = jacobians(sim, cfg, names)
    out: Dict[str, object] = {}
    g_det = acc[0:14]
    cr = p.crystal
    R0 = np.array([cr.a0, cr.b0, cr.c0])
    A = acc[core.A_HKL:core.A_HKL + 9].reshape(3, 3)
    g_R0 = A @ np.linalg.inv(R0).T
    g_ast = acc[core.A_AST:core.A_AST + 9]
    g_cryst = np.concatenate([g_R0.reshape(9), g_ast])
    for n in names:
        P = PARAMS.get(n)
        if P is None:
            continue
        if P.group == "det":
            out[n] = float(g_det @ jac[n])
        elif P.group == "cell":
            out[n] = float(g_cryst @ jac[n])
        elif P.group == "misset":
            out[n] = misset_gradient(cfg, n, R0, g_R0, p.ast.reshape(3, 3), g_ast.reshape(3, 3))
        elif P.group == "lambda":
            out[n] = float(acc[core.A_LAM]) + (float(g_cryst @ jac[n]) if n in jac else 0.0)
    for i, ax in enumerate("abc"):
        if f"N{ax}" in names:
            out[f"N{ax}"] = float(acc[core.A_N + i])
    if "fluence" in names:
        s = cfg.sampling
        dIbg = WATER_F * WATER_F * R_E_SQR * s.water_size ** 3 * 1e6 * AVOGADRO / WATER_MW
        out["fluence"] = float(acc[core.A_SCALE] * R_E_SQR / p.steps + acc[core.A_IBG] * dIbg)
    if "mosaic_spread" in names:
        out["mosaic_spread"] = float(acc[core.A_ETA] / RTD)
    if "default_F" in names:
        out["default_F"] = float(acc[core.A_DEFF])
    if "F_hkl" in names:
        out["F_hkl"] = res.gF
    return {n: out[n] for n in names}


def misset_gradient(cfg: Config, name: str, R0, g_R0, ast, g_ast) -> float:
    """dL/d misset angle (deg), analytically.  C applies the misset as v' = Rz Ry Rx v to
    a*, b*, c*, and the real-space cell built from them turns with them, so every vector
    v' of R0 and of a*, b*, c* moves as (axis x v') per radian, the axis being Rz Ry x for
    the x angle, Rz y for y and z for z."""
    from ..geometry.rotations import rotate_xyz
    mx, my, mz = cfg.crystal.misset if cfg.crystal.misset is not None else (0.0, 0.0, 0.0)
    if name == "misset_x":
        axis = rotate_xyz((1.0, 0.0, 0.0), 0.0, my, mz)
    elif name == "misset_y":
        axis = rotate_xyz((0.0, 1.0, 0.0), 0.0, 0.0, mz)
    else:
        axis = np.array([0.0, 0.0, 1.0])
    # g . (axis x v) = axis . (v x g)
    t = np.cross(R0, g_R0).sum(axis=0) + np.cross(ast, g_ast).sum(axis=0)
    return float(axis @ t) / RTD


def source_dlam(cfg: Config) -> np.ndarray:
    """d lambda_s / d lambda_A for every source (m per A)."""
    p = PARAMS["lambda_A"]
    x0 = p.get(cfg)
    # the generated (or file) wavelengths are linear in lambda: one central difference
    return richardson(lambda x: _src_lam(p.set(cfg, x)), x0, p.jac_step(x0), 1)

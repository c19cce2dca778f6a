"""The differentiable parameters: names, units, how each maps onto :class:`nbsim.Config`,
and the steps used for differencing.

Values are in the units of nanoBragg's command line (Angstrom, degrees, millimetres, ...);
a derivative is with respect to that value.  Every setter returns a *new* Config built
with :func:`dataclasses.replace` (arrays such as the F grid are shared, not copied).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Dict, Tuple

from ..units import RTD


@dataclass(frozen=True)
class Param:
    name: str
    units: str
    group: str            # cell | misset | N | det | lambda | fluence | eta | default_F
    get: Callable         # Config -> float (CLI units)
    set: Callable         # (Config, float) -> Config
    fd_step: Callable     # value -> finite-difference step (CLI units)
    jac_step: Callable    # value -> step for the host-geometry Jacobian (CLI units)
    doc: str
    linear: bool = False  # the host geometry is (piecewise) linear in it: one central difference


def _field(sub, name, div, index=None, default=None):
    def get(cfg):
        v = getattr(getattr(cfg, sub), name)
        if v is None:
            v = default
        if index is not None:
            v = v[index]
        return float(v) * div

    def set_(cfg, value):
        obj = getattr(cfg, sub)
        si = float(value) / div
        if index is not None:
            cur = getattr(obj, name)
            cur = list(default if cur is None else cur)
            cur[index] = si
            si = tuple(cur)
        return replace(cfg, **{sub: replace(obj, **{name: si})})
    return get, set_


def _rel(f, floor=0.0):
    return lambda v: f * max(abs(v), floor)


def _abs(s):
    return lambda v: s


def _make():
    out = []
    for i, ax in enumerate("abc"):
        g, s = _field("crystal", "cell", 1e10, i)
        out.append(Param(f"cell_{ax}", "A", "cell", g, s, _rel(1e-4), _rel(1e-3),
                         f"unit-cell length {ax} (-cell)"))
    for i, ang in enumerate(("alpha", "beta", "gamma")):
        g, s = _field("crystal", "cell", RTD, 3 + i)
        out.append(Param(f"cell_{ang}", "deg", "cell", g, s, _abs(1e-3), _abs(0.05),
                         f"unit-cell angle {ang} (-cell)"))
    for i, ax in enumerate("xyz"):
        g, s = _field("crystal", "misset", RTD, i, default=(0.0, 0.0, 0.0))
        out.append(Param(f"misset_{ax}", "deg", "misset", g, s, _abs(1e-3), _abs(0.05),
                         f"crystal misset rotation about {ax} (-misset; applied x, y, z)"))
    for ax in "abc":
        g, s = _field("crystal", "N" + ax, 1.0)
        out.append(Param(f"N{ax}", "cells", "N", g, s, _abs(1e-4), _abs(1e-4),
                         f"number of cells along {ax} (-N{ax}), continuous"))
    g, s = _field("detector", "distance", 1e3)
    out.append(Param("distance_mm", "mm", "det", g, s, _rel(1e-4), _rel(1e-3),
                     "-distance (where the geometry uses it; 0 when -close_distance rules)",
                     linear=True))
    g, s = _field("detector", "beam_center_x", 1e3)
    out.append(Param("xbeam_mm", "mm", "det", g, s, _abs(2e-3), _abs(0.1), "-Xbeam",
                     linear=True))
    g, s = _field("detector", "beam_center_y", 1e3)
    out.append(Param("ybeam_mm", "mm", "det", g, s, _abs(2e-3), _abs(0.1), "-Ybeam",
                     linear=True))
    for ax in "xyz":
        g, s = _field("detector", "rot" + ax, RTD)
        out.append(Param(f"detector_rot{ax}", "deg", "det", g, s, _abs(1e-3), _abs(0.05),
                         f"-detector_rot{ax}"))
    g, s = _field("detector", "twotheta", RTD)
    out.append(Param("twotheta", "deg", "det", g, s, _abs(1e-3), _abs(0.05), "-twotheta"))
    g, s = _field("beam", "wavelength", 1e10)
    out.append(Param("lambda_A", "A", "lambda", g, s, _rel(1e-5), _rel(1e-3),
                     "-lambda (sources generated from it, and an -mat cell, follow)"))
    g, s = _field("beam", "fluence", 1.0)
    out.append(Param("fluence", "photons/m^2", "fluence", g, s, _rel(1e-3), _rel(1e-3),
                     "effective fluence (-fluence, or -flux x -exposure / -beamsize^2)"))
    g, s = _field("crystal", "mosaic_spread", RTD)
    out.append(Param("mosaic_spread", "deg", "eta", g, s, _rel(0.2), _rel(1e-2),
                     "isotropic mosaic spread (-mosaic), diffBragg's eta"))
    g, s = _field("structure", "default_F", 1.0)
    out.append(Param("default_F", "electrons", "default_F", g, s, _rel(1e-3, 1.0),
                     _rel(1e-3, 1.0), "-default_F"))
    return {p.name: p for p in out}


PARAMS: Dict[str, Param] = _make()

#: every name :func:`nbsim.gradients.vjp` knows (``F_hkl`` is the grid, an array)
PARAMETERS: Tuple[str, ...] = tuple(PARAMS) + ("F_hkl",)

SCALAR_PARAMETERS: Tuple[str, ...] = tuple(PARAMS)

# the parameters the acceptance criteria name (mosaic_spread and default_F are extras)
CORE_PARAMETERS: Tuple[str, ...] = tuple(n for n in PARAMS
                                         if n not in ("mosaic_spread", "default_F"))

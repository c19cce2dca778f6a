"""nanoBragg's step-count rules: how C completes a partly given sampling (phi steps, mosaic
domains, divergence and dispersion sweeps) from the flags.

Pure functions of the flag values, kept below the Config and the geometry in the import
graph so that the validation (:mod:`nbsim.limits`) can predict the counts the geometry will
build without importing it.  Angles in radians.
"""
from __future__ import annotations

import math

from .units import RTD

__all__ = ["resolve_phi", "resolve_mosaic", "source_steps"]


def resolve_phi(phi0, osc, phistep, phisteps):
    """C's phi sampling rules (l.1381-1429): returns (phistep, phisteps, osc) in rad."""
    osc = -1.0 if osc is None else float(osc)
    phistep = -1.0 if phistep is None else float(phistep)
    phisteps = -1 if phisteps is None else int(phisteps)
    if phisteps < 0:
        if osc < 0.0:
            if phistep <= 0.0:
                phisteps, osc, phistep = 1, 0.0, 0.0
            else:
                osc, phisteps = phistep, 2
        else:
            if phistep <= 0.0:
                phisteps, phistep = 2, osc / 2.0
            else:
                phisteps = int(math.ceil(osc / phistep))
    else:
        if phisteps == 0:
            phisteps = 1
        if osc < 0.0:
            if phistep <= 0.0:
                osc = 1.0 / RTD
                phistep = osc / phisteps
            else:
                osc, phisteps = phistep, 2
        else:
            if phistep < 0.0:
                phistep = osc / phisteps
    return phistep, phisteps, osc


def resolve_mosaic(spread, domains):
    """C's mosaic-domain rules (l.1640-1667): returns (spread rad, domains)."""
    spread = -1.0 if spread is None else float(spread)
    domains = -1 if domains is None else int(domains)
    if domains <= 0:
        if spread < 0.0:
            domains, spread = 1, 0.0
        else:
            domains = 1 if spread == 0.0 else 10
    else:
        if spread < 0.0:
            spread, domains = 0.0, 1
        elif spread == 0.0:
            domains = 1
    return spread, domains


def source_steps(steps, rng, step, nothing_range, zero_when_two=True):
    """C's shared auto-selection rule for hdiv/vdiv/dispersion sweeps."""
    steps = -1 if steps is None else int(steps)
    rng = -1.0 if rng is None else float(rng)
    step = -1.0 if step is None else float(step)
    if steps <= 0:
        if rng < 0.0:
            if step <= 0.0:
                steps, rng, step = 1, 0.0, 0.0
            else:
                rng, steps = step, 2
        else:
            if step <= 0.0:
                step, steps = rng, 2
            else:
                steps = int(math.ceil(rng / step))
    else:
        if rng < 0.0:
            if step <= 0.0:
                rng = nothing_range
                step = rng / steps
            else:
                rng, steps = step, 2
        else:
            if step <= 0.0:
                if steps <= 1:
                    steps = 2
                step = rng / (steps - 1)
    if rng <= 0.0 or step <= 0.0 or steps <= 0:
        steps, rng, step = 1, 0.0, 0.0
    return steps, rng, step

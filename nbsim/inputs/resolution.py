"""The resolution a detector reaches: what an atomic model's Fcalc must cover.

For a flat detector the scattering angle is largest at a corner of the pixel area (the
set of directions within an angle of the beam is a convex cone, so the angle, over a
convex polygon in front of the sample, peaks at a vertex); a multi-panel detector
(a preset, a panel file, a DIALS ``.expt``) takes every panel's corners (a preset's
modules lie inside its frame).  The smallest d spacing is
``1 / max |s_out/lambda - s_in/lambda|`` over the four corners and every source (its
direction and wavelength: divergence and dispersion included).  The result is shrunk
by :data:`MARGIN` so the spot tails of reflections just beyond the corners are there
too, and never taken below ``-dmin`` (the engine renders nothing beyond it).
"""
from __future__ import annotations

import math

import numpy as np

from ..config import Config

__all__ = ["MARGIN", "detector_dmin"]

MARGIN = 1.03      # d_min used = corner d_min / MARGIN


def detector_dmin(cfg: Config) -> float:
    """Smallest d spacing (Angstrom) the detector of ``cfg`` records, with the margin."""
    from .. import physics as ph
    from ..geometry.detector import resolve_detector
    from ..geometry.sources import resolve_sources

    from ..geometry import panels as pnl

    # a preset's frame (its pixel counts and size), or a panel file's panels
    frame_cfg, layout = pnl.frame_config(cfg)
    det = resolve_detector(frame_cfg)
    src = resolve_sources(frame_cfg, det.beam, det.polar)
    panels = pnl.resolve_panels(layout, det)
    corners = []
    if panels is not None:              # every panel's corners (each panel is flat)
        for panel in panels.panels:
            corners.extend(c / np.linalg.norm(c) for c in panel.corners())
    else:
        for F in (0.0, det.detsize_f):
            for S in (0.0, det.detsize_s):
                p = det.pix0 + F * det.fdet + S * det.sdet
                if det.curved:
                    p = np.array(ph.curved_detector_point(
                        float(p[1]), float(p[2]), det.distance, *det.beam, *det.sdet,
                        *det.fdet))
                corners.append(p / np.linalg.norm(p))
    q_max = 0.0
    for direction, lam in zip(src.directions, src.wavelengths):
        incident = -np.asarray(direction, dtype=np.float64)     # sample -> away from source
        incident /= np.linalg.norm(incident)
        lam_A = float(lam) * 1e10
        for out in corners:
            q_max = max(q_max, float(np.linalg.norm(out - incident)) / lam_A)
    if q_max <= 0.0:
        raise ValueError("the detector records no scattering (zero scattering angle)")
    d = 1.0 / q_max / MARGIN
    if cfg.sampling.dmin and cfg.sampling.dmin > 0:
        d = max(d, float(cfg.sampling.dmin) * 1e10)
    return d if math.isfinite(d) else 0.0

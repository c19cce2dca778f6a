"""What a dataset's frames are: a rotation scan or a set of stills (nothing rendered).

A frame is a small change of the run's :class:`nbsim.config.Config`:

* rotation scan (:class:`RotationScan`): frame ``i`` starts at ``phi0 + i*osc`` and keeps
  the run's ``osc``/``phistep``/``phisteps`` -- exactly what ``nanoBragg -phi phi0+i*osc
  -osc osc -phisteps n`` renders;
* stills (:class:`Stills`): every frame at the run's phi range, with its own crystal
  orientation: ``"random"`` (C's ``-misset random`` drawn from the frame's misset seed,
  :func:`nbsim.dataset.seeds.frame_seed`), a list of misset triples (degrees, C's
  ``-misset x y z``), a list of A matrices (MOSFLM form, as the first three lines of a
  ``-mat`` file: rows x, y, z; columns a*, b*, c*, times lambda), or ``None`` (the run's
  own orientation for every frame).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ..steps import resolve_phi
from ..units import RTD

__all__ = ["RotationScan", "Stills", "FrameSpec"]


@dataclass(frozen=True)
class FrameSpec:
    """One frame's changes to the run's Config (SI units: radians) and its seeds."""
    index: int                                   # 0-based
    phi0: float                                  # rad, start of the frame's phi range
    misset: Optional[Tuple[float, float, float]] = None   # rad; None = the run's
    a_matrix: Optional[np.ndarray] = None        # (3, 3) MOSFLM A matrix; None = the run's
    noise_seed: int = 0                          # C -seed value of the frame's noise
    misset_seed: Optional[int] = None            # C -misset_seed of a random still
    #: the frame's spectrum: equal-weight channel wavelengths (m), None = the run's
    #: sources (nbsim.geometry.spectrum)
    wavelengths: Optional[np.ndarray] = None
    #: the frame's dose (MGy, nbsim.dataset.damage); None = no radiation damage
    dose: Optional[float] = None
    #: -vary values of this render (flag units, nbsim.dataset.vary): the frame's
    #: detector / beam keys and this lattice's crystal keys; None: nothing varied
    parameters: Optional[dict] = None
    lattice: int = 0                             # -lattices: which crystal of the still
    #: lattice 0 of a still with -lattices K: the FrameSpecs of lattices 1 .. K-1
    lattices: Tuple["FrameSpec", ...] = ()

    @property
    def all_lattices(self) -> Tuple["FrameSpec", ...]:
        """Every crystal in the beam of this frame, lattice 0 first."""
        return (self,) + tuple(self.lattices)


@dataclass(frozen=True)
class RotationScan:
    """``nframes`` consecutive rotation frames of the run's ``osc`` each."""
    nframes: int

    kind = "rotation"

    def phi_ranges(self, crystal_cfg) -> list:
        """(start, width) of every frame in rad, from the run's crystal config."""
        c = crystal_cfg
        _phistep, _phisteps, osc = resolve_phi(c.phi0, c.osc, c.phistep, c.phisteps)
        return [(c.phi0 + i * osc, osc) for i in range(self.nframes)]

    def frame(self, i: int, crystal_cfg, seeds) -> FrameSpec:
        c = crystal_cfg
        _phistep, _phisteps, osc = resolve_phi(c.phi0, c.osc, c.phistep, c.phisteps)
        return FrameSpec(index=i, phi0=c.phi0 + i * osc, noise_seed=seeds.noise(i))


Orientation = Union[str, None, Sequence]


@dataclass(frozen=True)
class Stills:
    """``nframes`` stills; ``orientations``: "random", None (the run's orientation), or a
    sequence of ``nframes`` misset triples (deg) or (3, 3) A matrices; ``vary``: a
    :class:`nbsim.dataset.vary.VarySpec` (per-frame random flag values); ``lattices``:
    crystals in the beam per still (each its own random orientation and crystal
    draws; needs "random" orientations when > 1)."""
    nframes: int
    orientations: Orientation = "random"
    vary: Optional[object] = None
    lattices: int = 1

    kind = "stills"

    def __post_init__(self):
        if int(self.lattices) < 1:
            raise ValueError(f"stills: lattices must be >= 1, got {self.lattices}")
        if int(self.lattices) > 1 and self.orientations != "random":
            raise ValueError("stills: several lattices need random orientations "
                             "(-misset random)")
        o = self.orientations
        if o is None or isinstance(o, str):
            if o not in (None, "random"):
                raise ValueError(f"stills orientations: expected 'random', None or a list, "
                                 f"got {o!r}")
            return
        if len(o) != self.nframes:
            raise ValueError(f"stills: {len(o)} orientations for {self.nframes} frames")
        for k, v in enumerate(o):
            a = np.asarray(v, dtype=float)
            if a.shape not in ((3,), (3, 3)) or not np.all(np.isfinite(a)):
                raise ValueError(f"stills orientation {k + 1}: expected 3 misset angles "
                                 f"or a 3x3 A matrix of finite numbers")

    def frame(self, i: int, crystal_cfg, seeds, vary_base=None) -> FrameSpec:
        """Frame ``i``; ``vary_base``: the run's values of the -vary keys
        (:func:`nbsim.dataset.vary.base_values` without the misset), needed with
        ``vary``."""
        o = self.orientations
        base = dict(index=i, phi0=crystal_cfg.phi0, noise_seed=seeds.noise(i))
        specs = []
        for k in range(int(self.lattices)):
            if o is None:
                spec = FrameSpec(**base)
            elif isinstance(o, str):     # "random": C's -misset random, per-frame seed
                from .. import rng
                from .._numba_setup import prepare_cpu
                from .seeds import frame_seed
                prepare_cpu()
                mseed = seeds.misset(i)
                if k > 0:
                    mseed = frame_seed(mseed, k, "lattice")
                _u, angles, _msg = rng.random_misset_umat(rng.idum_from_seed_flag(mseed))
                spec = FrameSpec(misset=tuple(float(a) for a in angles), misset_seed=mseed,
                                 lattice=k, **base)
            else:
                a = np.asarray(o[i], dtype=np.float64)
                if a.shape == (3,):
                    spec = FrameSpec(misset=tuple(float(v) / RTD for v in a), **base)
                else:
                    spec = FrameSpec(a_matrix=a.copy(), **base)
            if self.vary is not None:
                spec = self._varied(spec, i, k, seeds, vary_base, crystal_cfg)
            specs.append(spec)
        if len(specs) == 1:
            return specs[0]
        return dataclasses.replace(specs[0], lattices=tuple(specs[1:]))

    def _varied(self, spec: FrameSpec, i: int, k: int, seeds, vary_base, crystal_cfg):
        if vary_base is None:
            raise ValueError("stills with vary: frame() needs vary_base")
        base = dict(vary_base)
        if spec.misset is not None:
            base["misset"] = [float(m) * RTD for m in spec.misset]
        elif crystal_cfg.misset is not None:
            base["misset"] = [float(m) * RTD for m in crystal_cfg.misset]
        else:
            base["misset"] = [0.0, 0.0, 0.0]
        fseed = seeds.vary(i)
        params = dict(self.vary.draw(fseed, 0, base, "frame"))
        params.update(self.vary.draw(fseed, k, base, "crystal"))
        return dataclasses.replace(spec, parameters=params)


def read_orientations(path) -> list:
    """A text file of orientations, one per line: 3 numbers (misset x y z, deg) or 9
    numbers (an A matrix row by row, as the first three lines of a MOSFLM -mat file).
    Blank lines and lines starting with '#' are skipped."""
    out = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            t = line.split("#", 1)[0].split()
            if not t:
                continue
            try:
                vals = [float(x) for x in t]
            except ValueError:
                raise ValueError(f"line {n}: not numbers: {line.strip()!r}") from None
            if len(vals) == 3:
                out.append(tuple(vals))
            elif len(vals) == 9:
                out.append(np.array(vals).reshape(3, 3))
            else:
                raise ValueError(f"line {n}: expected 3 misset angles or 9 A-matrix "
                                 f"numbers, got {len(vals)}")
            if not all(math.isfinite(v) for v in vals):
                raise ValueError(f"line {n}: numbers must be finite")
    return out

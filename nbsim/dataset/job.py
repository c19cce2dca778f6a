"""A dataset: the run's Config, its frames and its seeds (nothing rendered until asked).

>>> from nbsim.dataset import Dataset, RotationScan
>>> ds = Dataset.from_args(["-cell", "100", "100", "100", "90", "90", "90",
...                         "-default_F", "100", "-N", "5", "-detpixels", "64",
...                         "-osc", "0.5", "-phisteps", "3"], RotationScan(12), seed=7)
>>> for frame in ds.frames():          # a stream: one frame in memory at a time
...     pass                           # frame.image (float64), frame.counts (int32)

``seed`` is the run's noise seed (C's ``-seed``); ``misset_seed`` the run's seed of random
orientations (``-misset_seed``; default: ``seed``).  Frame ``i`` uses
``frame_seed(seed, i, "noise")`` and ``frame_seed(misset_seed, i, "misset")``
(:mod:`nbsim.dataset.seeds`).  A Dataset pickles without its renderer, so it can be sent
to Dask workers; each worker builds the frame-independent plan once.  ``effects``
(:class:`~nbsim.dataset.effects.FrameEffects`; ``from_args`` reads the suite flags) adds
the -stol background to every frame and makes the noise by noisify.c's chain.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from typing import Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from ..config import Config
from .effects import FrameEffects
from .frames import FrameSpec, RotationScan, Stills
from .noise import poisson_counts
from .render import FrameImage, FrameRenderer
from .seeds import frame_seed
from ..geometry.spectrum import source_rows as _source_rows

__all__ = ["Dataset"]


class _Seeds:
    def __init__(self, seed: int, misset_seed: int):
        self.seed = int(seed)
        self.misset_seed = int(misset_seed)

    def noise(self, i: int) -> int:
        return frame_seed(self.seed, i, "noise")

    def misset(self, i: int) -> int:
        return frame_seed(self.misset_seed, i, "misset")

    def spectrum(self, i: int) -> int:
        return frame_seed(self.seed, i, "spectrum")
    def vary(self, i: int) -> int:
        return frame_seed(self.seed, i, "vary")


class Dataset:
    """``config`` (the run's single-image Config), ``frames`` (:class:`RotationScan` or
    :class:`Stills`), ``noise`` (draw Poisson counts per frame), ``threads`` (CPU threads
    per frame; None = all); ``spectrum`` (:class:`nbsim.geometry.spectrum.SaseSpectrum`
    or ``FileSpectrum``: the sources of each frame) and ``damage``
    (:class:`nbsim.dataset.damage.DamageSpec`: the F table of each frame's dose), see
    docs/datasets.md."""

    def __init__(self, config: Config, frames: Union[RotationScan, Stills], *,
                 seed: Optional[int] = None, misset_seed: Optional[int] = None,
                 noise: bool = True, threads: Optional[int] = None,
                 effects: Optional[FrameEffects] = None, truth: bool = False,
                 spectrum=None, damage=None):
        if frames.nframes < 1:
            raise ValueError("a dataset needs at least one frame")
        if seed is None:
            seed = config.seed if config.seed is not None else int(time.time())
        if misset_seed is None:
            misset_seed = (config.crystal.misset_seed
                           if config.crystal.misset_seed is not None else seed)
        cfg = copy.copy(config)
        cfg.seed = int(seed)
        if cfg.crystal.misset_random:
            # one orientation for the whole run (a rotation scan, or stills that are not
            # re-oriented): resolved now, so every frame and worker uses the same
            cfg.crystal = dataclasses.replace(cfg.crystal, misset_seed=int(misset_seed))
        if isinstance(frames, Stills) and frames.orientations == "random":
            cfg.crystal = dataclasses.replace(cfg.crystal, misset_random=False, misset=None)
        self.frameset = frames
        self.seeds = _Seeds(seed, misset_seed)
        #: the X-ray spectrum per frame (nbsim.geometry.spectrum: SaseSpectrum or
        #: FileSpectrum), None = the Config's sources for every frame
        self.spectrum = spectrum
        if spectrum is not None:
            if cfg.beam.sources is not None and len(cfg.beam.sources):
                raise ValueError("a spectrum replaces the sources: no -sourcefile with it")
            # frame 0's channels plan the run (every frame has as many)
            cfg.beam = dataclasses.replace(cfg.beam, sources=_source_rows(
                spectrum.wavelengths(cfg.beam.wavelength, self.seeds.spectrum(0))))
        #: radiation damage per frame (nbsim.dataset.damage.DamageSpec -> Damage)
        self.damage = None
        if damage is not None:
            cfg, self.damage = damage.prepare(cfg)
        self.config = cfg
        self.noise = bool(noise)
        self.threads = threads
        self.effects = effects          # the detector suite per frame (.effects)
        #: render every frame with its reflection truth (docs/truth.md): frame.truth,
        #: frame.labels, frame.bragg_fraction; ids: 0 for a sweep, the frame for stills
        self.truth = bool(truth)
        self._renderer = None
        self._vary_base = None

    @classmethod
    def from_args(cls, args: Sequence[str], frames, **kw) -> "Dataset":
        from ..args import parse_args
        parsed = parse_args(list(args))
        kw.setdefault("threads", parsed.threads)
        kw.setdefault("noise", parsed.outputs.calculate_noise)
        ds = cls(parsed.config, frames, **kw)
        if "effects" not in kw:
            ds.effects = FrameEffects.from_parsed(parsed, lambda: ds.renderer.base)
        return ds

    # pickling (Dask): the renderer holds compiled-kernel state; rebuild it per process
    def __getstate__(self):
        d = dict(self.__dict__)
        d["_renderer"] = None
        d.pop("_spectra", None)         # workers draw their frames' spectra again
        return d

    @property
    def lattices(self) -> int:
        """Crystals in the beam per frame (-lattices; 1 for a rotation scan)."""
        return int(getattr(self.frameset, "lattices", 1))

    @property
    def vary(self):
        """The -vary distributions (:class:`nbsim.dataset.vary.VarySpec`) or None."""
        return getattr(self.frameset, "vary", None)

    def experiment_id(self, i: int, lattice: int = 0) -> int:
        """The experiment of lattice ``lattice`` of frame ``i``: 0 for a sweep, else
        ``i * lattices + lattice`` (one experiment per lattice per still)."""
        return 0 if self.is_rotation else int(i) * self.lattices + int(lattice)

    def vary_base(self) -> dict:
        """The run's value of every -vary key (flag units; from the run's plan)."""
        if self._vary_base is None:
            from .vary import base_values
            self._vary_base = base_values(self.config, self.renderer.base)
            if self.vary is not None:
                self.vary.check_base(self._vary_base)
        return self._vary_base

    def frame_parameters(self, i: int) -> dict:
        """The -vary values frame ``i`` is rendered with (flag units): its detector and
        beam keys, and each crystal key as a value (one lattice) or a list over the
        lattices; {} without -vary.  Drawn, not rendered (cheap)."""
        return parameters_of(self.frame(i), self.vary)

    @property
    def nframes(self) -> int:
        return self.frameset.nframes

    @property
    def is_rotation(self) -> bool:
        return isinstance(self.frameset, RotationScan)

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def renderer(self) -> FrameRenderer:
        if self._renderer is None:
            self._renderer = FrameRenderer(self.config, threads=self.threads,
                                           damage=self.damage)
        return self._renderer

    def frame(self, i: int) -> FrameSpec:
        if not 0 <= i < self.nframes:
            raise IndexError(f"frame {i} of {self.nframes}")
        if self.vary is not None:
            spec = self.frameset.frame(int(i), self.config.crystal, self.seeds,
                                       vary_base=self.vary_base())
        else:
            spec = self.frameset.frame(int(i), self.config.crystal, self.seeds)
        changes = {}
        if self.spectrum is not None:
            changes["wavelengths"] = self._wavelengths(int(i))
        if self.damage is not None:
            changes["dose"] = self.damage.dose(int(i))
        if changes:
            # every crystal of the still (-lattices) in the same beam, at the same dose
            lattices = tuple(dataclasses.replace(s, **changes) for s in spec.lattices)
            spec = dataclasses.replace(spec, lattices=lattices, **changes)
        return spec

    def _wavelengths(self, i: int) -> np.ndarray:
        """Frame i's channels (m); kept, as the sinks ask for every frame's first."""
        cache = self.__dict__.setdefault("_spectra", {})
        lam = cache.get(i)
        if lam is None:
            lam = cache[i] = self.spectrum.wavelengths(self.config.beam.wavelength,
                                                       self.seeds.spectrum(i))
        return lam.copy()

    def frame_spectra(self):
        """(nframes, channels) wavelengths (m) of every frame's spectrum, or None."""
        if self.spectrum is None:
            return None
        return np.stack([self._wavelengths(i) for i in range(self.nframes)])

    def frame_damage(self):
        """Per-frame dose (MGy), B-factor increase (A^2) and damaged fraction, with the
        model's constants (``attrs``), or None."""
        d = self.damage
        if d is None:
            return None
        dose = np.array([d.dose(i) for i in range(self.nframes)])
        attrs = {"dose_per_frame_MGy": d.dose_per_frame, "b_per_MGy": d.b_per_mgy,
                 "law": "dose_i = (i + 1/2) dose_per_frame; F *= exp(-B/(4 d^2)), B = "
                        "b_per_MGy dose; I = (1 - f) I_pristine + f I_damaged, f = 1 - "
                        "2^(-dose/half_dose) (docs/datasets.md)"}
        if d.half_dose is not None:
            attrs["half_dose_MGy"] = d.half_dose
        return {"dose": dose, "b_factor_increase": np.array([d.b_factor(x) for x in dose]),
                "damaged_fraction": np.array([d.damaged_fraction(x) for x in dose]),
                "attrs": attrs}

    def phi_ranges(self):
        """(start, width) in rad per frame (rotation scans), else None."""
        if not self.is_rotation:
            return None
        return self.frameset.phi_ranges(self.config.crystal)

    def plan(self, i: int = 0):
        """Frame ``i``'s plan (frame 0's describes the whole dataset to the sinks)."""
        return self.renderer.plan_for(self.frame(i))

    def render(self, i: int) -> FrameImage:
        """Render frame ``i`` (and its noise); depends on nothing but the frame index."""
        from ..image_model import as_frame, panel_roi
        spec = self.frame(i)
        base = self.renderer.base
        ftruth = None
        if self.truth:
            rot = self.is_rotation
            image, ftruth = self.renderer.render_truth(
                spec, experiment_id=self.experiment_id(i), frame_z0=float(i) if rot else 0.0,
                rotation=rot)
            image = as_frame(base, image)
        else:
            image = as_frame(base, self.renderer.render(spec))     # (panels, slow, fast)
        frame = FrameImage(index=int(i), image=image,
                           parameters=parameters_of(spec, self.vary))
        fx = self.effects
        if fx is not None and fx.background is not None:
            bg = fx.background
            if spec.wavelengths is not None and getattr(self.spectrum, "kind", "") == "sase":
                bg = fx.background_of(self.renderer.plan_for(spec))   # the shot's sources
            # the single run's float file: float32 image + float64 background, rounded once
            frame.image = image + bg
            frame.__dict__["_image32"] = fx.add_background(
                np.ascontiguousarray(image, dtype=np.float32), bg)
        if ftruth is not None:
            frame.truth = ftruth.table
            if spec.dose is not None:
                # the frame's dose on every row (MGy)
                frame.truth["dose"] = np.full(ftruth.table["id"].shape[0], spec.dose)
            frame.labels = ftruth.labels
            # the expected photons: the render plus the -stol background
            frame.bragg_fraction = ftruth.bragg_fraction(frame.image)
        if self.noise and fx is not None and fx.detector is not None:
            frame.counts, frame.noise_pixels = fx.detector_counts(
                frame.image32, spec.noise_seed, roi=panel_roi(base))
        elif self.noise and fx is not None and fx.noisify_params is not None:
            frame.counts, frame.noise_pixels = fx.noise(frame.image32, spec.noise_seed)
        elif self.noise:
            frame.counts = poisson_counts(frame.image32, spec.noise_seed, self.config.mode,
                                          roi=panel_roi(base))
        return frame

    def frames(self, indices: Optional[Iterable[int]] = None) -> Iterator[FrameImage]:
        """The frames (all, or ``indices``) in order, rendered one at a time."""
        for i in (range(self.nframes) if indices is None else indices):
            yield self.render(i)


def parameters_of(spec: FrameSpec, vary) -> dict:
    """``frame.parameters``: the -vary values of a frame (see Dataset.frame_parameters)."""
    if vary is None:
        return {}
    lat = spec.all_lattices
    out = {}
    for name in vary.names:
        vals = [s.parameters[name] for s in lat]
        from .vary import key_info
        if key_info(name).level == "frame" or len(lat) == 1:
            out[name] = vals[0]
        else:
            out[name] = vals
    return out

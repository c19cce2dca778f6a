"""Per-frame plans and renders: the frame-independent parts of the plan are built once.

:class:`FrameRenderer` plans the run's Config once (detector geometry, pixel index and
mask, sources, F grid, mosaic domains, kernel options) and per frame rebuilds only what
the frame changes: the crystal (orientation of a still; the phi start of a rotation
frame) and the rotated-cell tables (:func:`nbsim.plan.cell_tables`).  The result is the
plan ``make_plan`` builds for the frame's own Config, so a frame's image is the single
render of that Config (tests check it against ``nbsim -phi ...`` / ``-misset ...``).
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..config import Config
from ..geometry.crystal import resolve_crystal
from ..plan import Plan, cell_tables, make_plan, recommended_oversample
from .frames import FrameSpec

__all__ = ["FrameRenderer", "FrameImage", "frame_config"]


@dataclass
class FrameImage:
    """A rendered frame: ``image`` (panels, slow, fast) float64 photons (a single-panel
    detector is one panel: ``(1, slow, fast)``); ``counts`` int32 Poisson counts of the
    same shape (None without noise; with noisify flags the ADU integers, see
    :mod:`nbsim.dataset.effects`).  File layouts (a preset's tiled frame, stacked
    panels) are made by the sinks only (:class:`nbsim.image_model.FileLayout`)."""
    index: int
    image: np.ndarray
    counts: Optional[np.ndarray] = None
    #: the -noisefile pixels (uint16 / uint32) when noisify.c's chain made the noise
    noise_pixels: Optional[np.ndarray] = None
    #: reflection truth (Dataset(truth=True), docs/truth.md): the frame's table (column
    #: -> array), labels (panels, slow, fast) int32 and the Bragg fraction (float64)
    truth: Optional[dict] = None
    labels: Optional[np.ndarray] = None
    bragg_fraction: Optional[np.ndarray] = None
    #: the per-frame values the frame was made with (name -> number or list; flag
    #: units): the -vary draws (Dataset.frame_parameters); recorded per frame in NeXus
    #: (/entry/nbsim/frame_parameters)
    parameters: dict = dataclasses.field(default_factory=dict)

    @property
    def image32(self) -> np.ndarray:
        """The float32 image (what C's float file holds, and what noise is drawn from);
        converted once."""
        cached = self.__dict__.get("_image32")
        if cached is None:
            cached = np.ascontiguousarray(self.image, dtype=np.float32)
            self.__dict__["_image32"] = cached
        return cached


def frame_config(config: Config, frame: FrameSpec) -> Config:
    """The single-image Config of ``frame``: the run's with the frame's phi start and
    orientation (a shallow copy; the F grid and mask arrays are shared)."""
    c = config.crystal
    changes = {"phi0": frame.phi0}
    if frame.misset is not None:
        changes.update(misset=tuple(frame.misset), misset_random=False)
    if frame.a_matrix is not None:
        changes.update(a_star_matrix=np.asarray(frame.a_matrix, dtype=np.float64),
                       misset=None, misset_random=False)
    cfg = copy.copy(config)
    cfg.crystal = dataclasses.replace(c, **changes)
    if frame.wavelengths is not None:
        # the frame's spectrum as -sourcefile lines "nan nan nan 1 lambda"
        from ..geometry.spectrum import source_rows
        cfg.beam = dataclasses.replace(config.beam, sources=source_rows(frame.wavelengths))
    if frame.parameters:
        from .vary import apply_parameters
        cfg = apply_parameters(cfg, frame.parameters)
    return cfg


def _replace(plan: Plan, **changes) -> Plan:
    """``dataclasses.replace`` keeping the shared pixel index (a field, or a cached
    property built on first use)."""
    out = dataclasses.replace(plan, **changes)
    if "pixel_index" in plan.__dict__:
        out.__dict__["pixel_index"] = plan.__dict__["pixel_index"]
    return out


class FrameRenderer:
    """Render frames of one run; ``threads`` CPU threads per frame (None: all)."""

    def __init__(self, config: Config, threads: Optional[int] = None, damage=None):
        self.config = config
        self.threads = threads
        #: radiation damage (nbsim.dataset.damage.Damage) applied to the F table per frame
        self.damage = damage
        self.base: Plan = make_plan(config)
        self._inv_d2 = None
        #: the truth slot arrays of finished renders, handed to the next truth render (one
        #: per render in flight: a render takes one from the list and puts it back)
        self._truth_buffers = []

    def plan_for(self, frame: FrameSpec) -> Plan:
        plan = self._plan_geometry(frame)
        if frame.wavelengths is not None:
            plan = self._with_sources(plan)
        if frame.dose is not None and self.damage is not None:
            plan = self._with_damage(plan, frame.dose)
        return plan

    def _with_sources(self, plan: Plan) -> Plan:
        """``plan`` with its Config's sources (the frame's spectrum); the number of
        channels is the run's, so the step count and the scale stay."""
        from ..geometry.sources import resolve_sources
        det = plan.detector
        srcs = resolve_sources(plan.config, det.beam, det.polar)
        if srcs.count != plan.sources.count:
            return make_plan(plan.config)
        return _replace(plan, sources=srcs,
                        src_dir=np.ascontiguousarray(srcs.directions),
                        src_lambda=np.ascontiguousarray(srcs.wavelengths))

    def _with_damage(self, plan: Plan, dose: float) -> Plan:
        """``plan`` with the F table of ``dose`` (nbsim.dataset.damage)."""
        from .damage import inverse_d2
        if plan.hkls == 0:
            raise ValueError("radiation damage needs a structure-factor table")
        if self._inv_d2 is None:
            self._inv_d2 = inverse_d2(self.base.fgrid_meta, self.base.ast)
        table = self.damage.frame_table(self.base.Fgrid, self._inv_d2, dose)
        return _replace(plan, Fgrid=np.ascontiguousarray(table))

    def _plan_geometry(self, frame: FrameSpec) -> Plan:
        base = self.base
        cfg = frame_config(self.config, frame)
        if frame.parameters:
            # -vary: the detector, beam or crystal size may change; planning the frame's
            # own Config is cheap (~1 ms) and is by construction the single render's plan
            return make_plan(cfg)
        reorient = frame.misset is not None or frame.a_matrix is not None
        if reorient:
            # the cell without mosaic (the domains are the run's: same -mosaic_seed)
            plain = copy.copy(cfg)
            plain.crystal = dataclasses.replace(cfg.crystal, mosaic_spread=None,
                                                mosaic_domains=None)
            cryst = resolve_crystal(plain, cfg.beam.wavelength, cfg.beam.beamsize)
            cryst = dataclasses.replace(cryst, mosaic_umats=base.crystal.mosaic_umats,
                                        mosaic_spread=base.crystal.mosaic_spread)
            same_size = ((cryst.Na, cryst.Nb, cryst.Nc) ==
                         (base.crystal.Na, base.crystal.Nb, base.crystal.Nc) and
                         recommended_oversample(cfg, base.detector, cryst) ==
                         base.recommended_oversample)
            if not same_size:
                # a crystal size that rounds differently in this orientation changes
                # the sampling: plan the frame from scratch
                return make_plan(cfg)
        else:
            cryst = dataclasses.replace(base.crystal, phi0=float(frame.phi0))
        cells, carry = cell_tables(cfg, cryst, base.detector.spindle)
        ast = np.concatenate([cryst.a_star, cryst.b_star, cryst.c_star]).astype(np.float64)
        plan = dataclasses.replace(
            base, config=cfg, crystal=cryst, cells=cells, ast=ast,
            lattice=np.array([cryst.Na, cryst.Nb, cryst.Nc, cfg.crystal.fudge]),
            carry_needed=carry, options=base.options._replace(carry=carry),
            notes=list(base.detector.notes) + list(cryst.notes))
        # share the pixel index (a field, or a cached property built on first use)
        if "pixel_index" in base.__dict__:
            plan.__dict__["pixel_index"] = base.__dict__["pixel_index"]
            # and, with it, the lanes kernels' runs of that index (Simulator._launch_lanes)
            plan.__dict__["_lane_runs"] = base.__dict__.setdefault("_lane_runs", {})
        return plan

    def render(self, frame: FrameSpec) -> np.ndarray:
        """The frame's float64 image in photons per pixel, as ``Simulator.run`` returns it
        ((slow, fast), or (panels, slow, fast) for a panel set)."""
        from ..simulator import Simulator
        image = None
        for spec in frame.all_lattices:       # -lattices: the crystals' images summed
            one = Simulator.from_plan(self.plan_for(spec), threads=self.threads).run()
            image = one if image is None else image + one
        return image

    def render_truth(self, frame: FrameSpec, experiment_id: int, frame_z0: float,
                     rotation: bool):
        """``(image, FrameTruth)``: the frame rendered with its reflection truth
        (:mod:`nbsim.truth`), rows labelled with ``experiment_id`` and z counted from
        image ``frame_z0``."""
        from ..simulator import Simulator
        image, truths = None, []
        for k, spec in enumerate(frame.all_lattices):
            sim = Simulator.from_plan(self.plan_for(spec), threads=self.threads)
            sim._truth_frame = dict(experiment_id=experiment_id + k, frame_z0=frame_z0,
                                    rotation=rotation)
            if self._truth_buffers:
                try:
                    # the slot arrays of an earlier render (the lanes kernels empty the
                    # rows they fill: no 96 bytes a pixel of fresh arrays per frame)
                    sim._truth_buffer = self._truth_buffers.pop()
                except IndexError:      # taken by a concurrent render meanwhile
                    pass
            one = sim.run(truth=True)
            buf = getattr(sim, "_truth_buffer", None)
            if buf is not None:
                self._truth_buffers.append(buf)
            image = one if image is None else image + one
            truths.append(sim.frame_truth)
        return image, merge_lattice_truth(truths)


def merge_lattice_truth(truths):
    """One frame's truth from its lattices' (-lattices): the tables concatenated in
    lattice order (``id`` already the lattice's experiment), the Bragg photons summed,
    and a pixel labelled with the row of the lattice giving most Bragg photons there
    (the first lattice on a tie), that lattice's own label."""
    if len(truths) == 1:
        return truths[0]
    from ..truth import FrameTruth, concat_tables
    table = concat_tables([t.table for t in truths])
    bragg = np.stack([t.bragg for t in truths])
    best = np.argmax(bragg, axis=0)                      # first maximum: lower lattice
    offsets = np.cumsum([0] + [t.nrows for t in truths[:-1]])
    labels = np.full(truths[0].labels.shape, -1, dtype=np.int32)
    for k, t in enumerate(truths):
        pick = (best == k) & (t.labels >= 0)
        labels[pick] = t.labels[pick] + offsets[k]
    return FrameTruth(table=table, labels=labels, bragg=bragg.sum(axis=0))

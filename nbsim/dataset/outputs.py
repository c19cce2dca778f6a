"""What each output takes from a frame, and the per-frame file sinks of nanoBragg's formats.

A dataset output is an :class:`Output`: the flag that asked for it, a
:class:`nbsim.io.sinks.FrameSink`, and a ``product`` that turns a rendered
:class:`~nbsim.dataset.render.FrameImage` into what the sink writes.  Per frame:

======================  ====================================================================
``-floatfile T``        the float32 image (C's raw float file)
``-intfile T``          C's SMV int image: auto scale ``55000/max_I`` of *that* frame
                        unless ``-scale``, plus ``-adc``; OSC_START/OSC_RANGE of the frame
``-noisefile T``        C's SMV noise image: counts + ``-adc``, clipped at 65535
``-pgmfile T``          C's PGM (scale from the frame's statistics unless ``-pgmscale``)
``-nexus F``, ``-cbf``  the counts (int32) with noise, else the float32 photons (NeXus) /
                        photons rounded to int32 (CBF)
======================  ====================================================================

so every per-frame file is the file ``nbsim``/``nanoBragg`` writes for the frame's own
single render.  The per-frame sinks write each file atomically (``io._atomic``): a frame
file exists only once complete, which is what ``open(info, resume=True)`` checks.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Set

import numpy as np

from ..io.sinks import DatasetInfo, frame_path
from ..units import RTD
from .render import FrameImage

__all__ = ["Output", "TemplateSink", "smv_header", "frame_products"]


@dataclass
class Output:
    flag: str                  # e.g. "-noisefile"
    target: str                # file or '#' template
    sink: Any                  # a FrameSink
    product: Callable[[FrameImage], Any]
    needs_image: bool = True   # False: the product uses only the counts (when there are)


class TemplateSink:
    """One file per frame under a ``#`` template (1-based numbers), written by
    ``writer(path, index, data)`` (an atomic nbsim.io writer)."""

    def __init__(self, template: str, writer: Callable[[str, int, Any], None]):
        self.template = template
        self.writer = writer

    def path(self, index: int) -> str:
        return frame_path(self.template, index) if "#" in self.template else self.template

    def open(self, info: DatasetInfo, resume: bool = False) -> Set[int]:
        if not resume:
            return set()
        return {i for i in range(info.nframes) if os.path.isfile(self.path(i))}

    def write(self, index: int, data) -> None:
        self.writer(self.path(index), index, data)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def smv_header(plan, phi0: float, osc: float, det=None):
    """The SMV header nanoBragg writes for ``plan`` (``det``: the file's detector, e.g. a
    preset's frame), with the frame's phi range (rad)."""
    from ..io import SMVHeader
    det = plan.detector if det is None else det
    return SMVHeader(fpixels=det.fpixels, spixels=det.spixels, pixel_size=det.pixel_size,
                     distance=det.distance, lambda0=plan.config.beam.wavelength,
                     Xbeam=det.Xbeam, Ybeam=det.Ybeam, Fbeam=det.Fbeam, Sbeam=det.Sbeam,
                     detsize_s=det.detsize_s, dials_origin=tuple(det.dials_origin),
                     ORGX=det.ORGX, ORGY=det.ORGY, close_distance=det.close_distance,
                     phi0=phi0, osc=osc, detector_twotheta=det.twotheta)


class frame_products:
    """The per-frame products of one dataset (scales and statistics as C's single run).

    Every product is computed on the frame's ``(panels, slow, fast)`` arrays and laid
    out for its file by :class:`nbsim.image_model.FileLayout` (a preset's tiled frame
    with zero gaps, the stacked panels, or the one panel), exactly as the single-image
    ``nbsim`` run writes it; NeXus and CBF take the ``(panels, slow, fast)`` arrays."""

    def __init__(self, dataset, outs):
        from ..image_model import FileLayout, panel_roi
        self.ds = dataset
        self.outs = outs                 # nbsim.args.Outputs
        plan = dataset.plan(0)
        self.plan = plan
        self.layout = FileLayout(plan)
        self.roi = panel_roi(plan)
        ranges = dataset.phi_ranges()
        self.osc = plan.crystal.osc
        self._phi = (lambda i: ranges[i][0]) if ranges else (lambda i: plan.crystal.phi0)
        self._stats_for = None

    def header(self, index: int):
        vary = self.ds.vary
        if vary is not None and vary.varies_frame:
            # -vary: the frame's own detector and wavelength (its single run's header)
            from ..image_model import FileLayout
            plan = self.ds.plan(index)
            return smv_header(plan, self._phi(index), self.osc, FileLayout(plan).detector)
        return smv_header(self.plan, self._phi(index), self.osc, self.layout.detector)

    def _scales(self, f: FrameImage):
        from ..image_model import frame_stats
        from ..stats import intfile_scale_rule, pgm_scale_rule
        if self._stats_for is not None and self._stats_for[0] is f:
            return self._stats_for[1]
        st = frame_stats(self.plan, f.image32)
        iscale = intfile_scale_rule(st.max_I, self.outs.intfile_scale)
        pscale = pgm_scale_rule(st.rmsd, iscale, self.outs.pgm_scale)
        self._stats_for = (f, (iscale, pscale))
        return iscale, pscale

    # ---- products
    def float32(self, f: FrameImage):
        return self.layout.file(f.image32)

    def int_smv(self, f: FrameImage):
        from ..image_model import int_pixels
        iscale, _ = self._scales(f)
        return self.layout.file(int_pixels(self.plan, f.image32, iscale,
                                           self.outs.adc_offset))

    def pgm(self, f: FrameImage):
        from ..image_model import pgm_pixels
        _, pscale = self._scales(f)
        return self.layout.file(pgm_pixels(self.plan, f.image32, pscale)), pscale

    def noise_smv(self, f: FrameImage):
        if f.noise_pixels is not None:      # noisify.c's chain (adc already in)
            return self.layout.file(f.noise_pixels)
        from .noise import noise_smv_image
        return self.layout.file(noise_smv_image(f.counts, self.outs.adc_offset, self.roi))

    def detector_data(self, f: FrameImage):
        """What NeXus stores ((panels, slow, fast)): int32 counts with noise, float32
        photons without."""
        return f.counts if f.counts is not None else f.image32

    def detector_counts(self, f: FrameImage):
        """What CBF stores (int32 (panels, slow, fast)): counts, or photons rounded
        without noise."""
        if f.counts is not None:
            return f.counts
        return np.rint(np.clip(f.image32, -2.0**31, 2.0**31 - 128)).astype(np.int32)

    def preview(self, f: FrameImage):
        """The -png picture of a frame: its counts (photons without noise) in the file
        layout (a preset's tiled frame, else the stacked panels)."""
        return self.layout.file(self.detector_data(f))

    # ---- writers (atomic)
    def write_float(self, path, index, data):
        from ..io import write_float_image
        write_float_image(path, data)

    def write_int(self, path, index, data):
        from ..io import write_smv
        write_smv(path, data, self.header(index))

    def write_noise(self, path, index, data):
        if self.ds.effects is not None and self.ds.effects.noisify_params is not None:
            from ..suite import write_noise_smv
            write_noise_smv(path, data, self.header(index), 16 if data.dtype == np.uint16
                            else 32)
            return
        from ..io import write_smv
        write_smv(path, data, self.header(index), noise=True)

    def write_pgm(self, path, index, data):
        from ..io import write_pgm
        pixels, scale = data
        write_pgm(path, pixels, scale)


def dataset_info(dataset, command=()) -> DatasetInfo:
    """What the sinks are told before the first frame."""
    from ..io.sinks import FrameScan
    plan = dataset.plan(0)
    ranges = dataset.phi_ranges()
    scans = None if ranges is None else [FrameScan(a * RTD, w * RTD) for a, w in ranges]
    from ..image_model import rendered_mask
    det = plan.detector
    m = rendered_mask(plan)              # (panels, slow, fast); the data: stacked rows
    mask = None if m is None else ~m.reshape(det.spixels, det.fpixels)
    noise = dataset.noise
    model = getattr(dataset.effects, "detector", None) if noise else None
    saturation = float(2 ** 31 - 1) if noise else None
    if model is not None and model.saturation is not None:
        saturation = float(model.saturation)
    # the crystal per still costs a plan each (~0.5 ms), nothing beside a render
    params, units = frame_parameter_record(dataset)
    vary = dataset.vary
    return DatasetInfo(plan=plan, nframes=dataset.nframes, scans=scans,
                       crystals=rendered_crystals(dataset), lattices=dataset.lattices,
                       frame_parameters=params, frame_parameter_units=units,
                       frame_plan=dataset.plan if vary is not None and vary.varies_frame
                       else None,
                       dtype="int32" if noise else "float32", mask=mask,
                       saturation=saturation,
                       exposure_s=float(dataset.config.beam.exposure),
                       detector_fields={} if model is None else model.nexus_fields(),
                       command=tuple(str(a) for a in command),
                       spectra=dataset.frame_spectra(),
                       damage=dataset.frame_damage(),
                       extra={"seed": dataset.seeds.seed,
                              "misset_seed": dataset.seeds.misset_seed,
                              "mode": dataset.mode})


def job_experiments(dataset, info: DatasetInfo, images, adc_offset: float = 40.0,
                    space_group=None) -> dict:
    """The DIALS experiment list of a dataset (``-write_expt``; nbsim.io.dials_expt).

    ``images``: (flag, target) of the frames the imageset points at (-nexus, -cbf,
    -noisefile, -intfile, -floatfile), or None.  SMV frames carry nanoBragg's ADC offset:
    it is the panels' pedestal there (dxtbx subtracts it), so that ``dials.import
    reference_geometry=`` reads the counts back.  ``space_group``: the structure
    factors' space group (a gemmi name, from -mtz/-sfcif/-model; None: P 1): the crystal's
    symmetry, although nbsim renders its P1 expansion."""
    from ..io.dials_expt import experiment_list, hall_symbol
    plan = dataset.plan(0)
    crystals = info.crystals if info.crystals is not None else rendered_crystals(dataset)
    kind, target, pedestal = None, None, 0.0
    trusted = (-1.0, float(2 ** 31 - 1))
    if images is not None:
        flag, target = images
        kind = "nexus" if flag == "-nexus" else "template"
        if flag in ("-noisefile", "-intfile"):
            pedestal = float(adc_offset)
            trusted = (-1.0, 65535.0 - pedestal)
    doc = experiment_list(plan, dataset.nframes, info.scans, crystals,
                          images=None if kind is None else (kind, target),
                          exposure_s=info.exposure_s, trusted=trusted,
                          hall=hall_symbol(space_group), identifier_seed=str(dataset.seeds.seed),
                          frame_plans=info.frame_plan if info.scans is None else None,
                          lattices=info.lattices)
    for det in doc["detector"]:
        for p in det["panels"]:
            p["pedestal"] = pedestal
    return doc


def frame_parameter_record(dataset):
    """The per-frame parameter record of a dataset: (name -> array with the frame as
    first axis, name -> units).  Today the -vary values (``frame.parameters``; a crystal
    key of a still with several lattices has a lattice axis second); other per-frame
    values join here under their own names."""
    if dataset.vary is None:
        return {}, {}
    from .vary import frame_parameter_units
    rows = [dataset.frame_parameters(i) for i in range(dataset.nframes)]
    params = {name: np.asarray([r[name] for r in rows], dtype=np.float64)
              for name in dataset.vary.names}
    return params, frame_parameter_units(dataset.vary)


def rendered_crystals(dataset) -> list:
    """The crystal as rendered, rows (a, b, c) in m, nanoBragg lab: at the goniometer
    datum (phi = 0; DIALS rotates it by the scan) for a rotation series, else one per
    still at the still's phi (a still has no oscillation), after its misset."""
    import numpy as np
    from ..io.dials_expt import rotate_rows
    if dataset.is_rotation:
        c = dataset.plan(0).crystal
        return [np.array([c.a0, c.b0, c.c0], dtype=np.float64)]
    out = []
    for i in range(dataset.nframes):
        for spec in dataset.frame(i).all_lattices:      # -lattices: one per crystal
            plan = dataset.renderer.plan_for(spec)
            c = plan.crystal
            out.append(rotate_rows((c.a0, c.b0, c.c0), plan.detector.spindle,
                                   float(c.phi0)))
    return out

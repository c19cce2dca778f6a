"""DIALS experiment lists (``-write_expt FILE.expt``): the job's geometry as dxtbx writes it.

The JSON is what ``dxtbx.model.ExperimentList.as_json`` writes (dxtbx 3.x): top-level
lists ``beam``, ``detector``, ``goniometer``, ``scan``, ``crystal``, ``imageset`` and the
``experiment`` list whose entries name their models by index.  nbsim's reader
(:mod:`nbsim.inputs.expt`, ``-expt``) reads it back; ``dials.import IMAGES
reference_geometry=FILE.expt`` and ``dials.predict FILE.expt`` use it directly.

Frame.  dxtbx's laboratory frame is imgCIF's: ``D = diag(-1, 1, -1) @ R`` with ``R`` the
nanoBragg -> McStas rotation of :mod:`nbsim.io.labframe` (the one every NeXus file uses),
so an ``.expt`` and a NeXus file of the same job give dxtbx the same models.  The beam
then travels along -Z (``direction``, sample -> source, is +Z) and a spindle
perpendicular to the beam is +X.  For nanoBragg's MOSFLM convention ``D`` is the inverse
of :data:`nbsim.inputs.expt.DIALS_TO_NANOBRAGG`.

What is written (units as dxtbx: mm, angstrom, degrees):

* beam: ``wavelength`` (the mean of the sources), ``direction`` (+Z),
  ``polarization_normal`` = propagation x E-vector and ``polarization_fraction`` =
  (1 + K)/2 (K = nanoBragg's Kahn factor ``-polar``; dxtbx's fraction is the share of
  the intensity whose E-vector is normal to ``polarization_normal``), ``flux`` (photons/s:
  fluence x beamsize^2 / exposure);
* detector: one panel, or one panel per module of a multi-panel detector (a flat list
  under the root of the hierarchy); ``origin`` = the outer corner of pixel (0, 0) (dxtbx
  centres pixel (f, s) at origin + (f + 1/2) px fast + (s + 1/2) px slow, as nanoBragg);
  a sensor (``-detector_thick`` > 0) gets ``thickness``, ``mu`` (nanoBragg's, or a
  vanishing one for nanoBragg's uniform layers) and dxtbx's parallax strategy, none gets
  the plain ``SimplePxMmStrategy``;
* goniometer (rotation series): ``rotation_axis`` = D @ spindle, no fixed/setting
  rotation; scan: ``image_range`` [1, n], ``oscillation`` [phi0, osc] (deg);
* crystal: ``real_space_a/b/c`` (angstrom) at the goniometer datum (phi = 0: DIALS
  rotates it by the scan), or, for stills, as rendered (after the still's misset, at
  its phi); ``space_group_hall_symbol`` (the structure factors' space group, P 1 unless given);
* imageset: an ``ImageSequence`` over the frame template (SMV/CBF ``#`` template) or the
  NeXus file (``single_file_indices``); stills: one single-image ``ImageSet`` per
  experiment.

Not expressible in dxtbx's models (the file says nothing about them): mosaic spread and
domain size, beam divergence and spectra (one wavelength), ``-nopolar`` (no polarization
factor at all: written as unpolarized), a curved detector.
"""
from __future__ import annotations

import json
import os
import uuid
from typing import Callable, List, Optional, Sequence

import numpy as np

from .labframe import mcstas_rotation

__all__ = ["dials_rotation", "experiment_list", "write_expt", "imageset_for",
           "NO_SENSOR_THICKNESS_MM"]

#: McStas -> imgCIF (dxtbx's lab frame), as dxtbx.nexus.MCSTAS_TO_IMGCIF
MCSTAS_TO_IMGCIF = np.diag([-1.0, 1.0, -1.0])

#: The sensor thickness written to NeXus (and miniCBF) for a render without a sensor
#: model (-detector_thick 0): dxtbx's NeXus reader always builds a parallax-corrected
#: strategy, which asserts a thickness > 0.  Its parallax shift, for attenuation mu and
#: a ray at angle t to the normal, is o = 1/mu - (t0/cos t + 1/mu) exp(-mu t0/cos t) ~
#: mu t0^2 / (2 cos^2 t), along the panel o sin t: for t0 = 1 nm and Si at 1 A (mu =
#: 4.2 /mm) at 30 deg, 1.4e-12 mm = 1.4e-11 pixel of 0.1 mm; at 2.5 A (mu = 60 /mm) and
#: 70 deg, 2.4e-10 mm = 5e-9 pixel of 0.05 mm -- nothing (tests/test_dials_expt.py).
NO_SENSOR_THICKNESS_MM = 1e-6
_UNIFORM_MU_PER_MM = 1e-9      # nanoBragg's uniform layers (mu = 0): dxtbx needs mu > 0


def dials_rotation(det) -> np.ndarray:
    """The 3x3 rotation D with dxtbx lab = ``D @`` nanoBragg lab (see the module doc)."""
    return MCSTAS_TO_IMGCIF @ mcstas_rotation(det.beam, det.spindle, det.polar)


def _v(x) -> List[float]:
    return [float(c) for c in np.asarray(x, dtype=np.float64).ravel()]


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _beam(plan, D) -> dict:
    det, cfg = plan.detector, plan.config
    lam_A = float(np.mean(np.asarray(plan.sources.wavelengths, dtype=np.float64))) * 1e10
    prop = _unit(D @ det.beam)
    e_vec = D @ np.asarray(det.polar, dtype=np.float64)
    e_vec = e_vec - float(np.dot(e_vec, prop)) * prop
    if np.linalg.norm(e_vec) < 1e-9:          # E-vector along the beam: any normal will do
        e_vec = np.array([1.0, 0.0, 0.0]) - prop[0] * prop
    e_vec = _unit(e_vec)
    kahn = 0.0 if cfg.beam.nopolar else float(cfg.beam.polarization)
    b = cfg.beam
    flux = float(plan.fluence) * float(b.beamsize) ** 2 / float(b.exposure) \
        if b.exposure > 0 else 0.0
    return {"direction": _v(-prop), "wavelength": lam_A, "divergence": 0.0,
            "sigma_divergence": 0.0, "polarization_normal": _v(_unit(np.cross(prop, e_vec))),
            "polarization_fraction": 0.5 * (1.0 + kahn), "flux": flux,
            "transmission": 1.0}


def _panel(name, origin, fast, slow, fpixels, spixels, pixel_size, thick, mu,
           trusted, D) -> dict:
    """One dxtbx panel from nanoBragg's corner/axes (m, lab) and sensor (m, 1/m)."""
    if thick > 0:
        mu_mm = float(mu) * 1e-3 if mu and mu > 0 else _UNIFORM_MU_PER_MM
        sensor = {"thickness": float(thick) * 1e3, "material": "Si", "mu": mu_mm,
                  "px_mm_strategy": {"type": "ParallaxCorrectedPxMmStrategy"}}
    else:
        sensor = {"thickness": 0.0, "material": "", "mu": 0.0,
                  "px_mm_strategy": {"type": "SimplePxMmStrategy"}}
    p = {"name": name, "type": "SENSOR_PAD", "fast_axis": _v(D @ _unit(fast)),
         "slow_axis": _v(D @ _unit(slow)), "origin": _v(D @ np.asarray(origin) * 1e3),
         "raw_image_offset": [0, 0], "image_size": [int(fpixels), int(spixels)],
         "pixel_size": [float(pixel_size) * 1e3] * 2, "trusted_range": list(trusted),
         "identifier": "", "mask": [], "gain": 1.0, "pedestal": 0.0}
    p.update(sensor)
    return p


def _detector(plan, D, trusted) -> dict:
    det = plan.detector
    panels = getattr(plan, "panels", None)
    if panels is None:
        out = [_panel("panel", det.pix0, det.fdet, det.sdet, det.fpixels, det.spixels,
                      det.pixel_size, det.thick, det.mu, trusted, D)]
    else:
        out = [_panel(p.name or f"panel{k}", p.origin, p.fast, p.slow, p.fpixels,
                      p.spixels, p.pixel_size,
                      det.thick if p.thickness is None else p.thickness, det.mu,
                      trusted, D) for k, p in enumerate(panels.panels)]
    root = {"name": "", "type": "", "fast_axis": [1.0, 0.0, 0.0],
            "slow_axis": [0.0, 1.0, 0.0], "origin": [0.0, 0.0, 0.0],
            "raw_image_offset": [0, 0], "image_size": [0, 0], "pixel_size": [0.0, 0.0],
            "trusted_range": [0.0, 0.0], "thickness": 0.0, "material": "", "mu": 0.0,
            "identifier": "", "mask": [], "gain": 1.0, "pedestal": 0.0,
            "px_mm_strategy": {"type": "SimplePxMmStrategy"},
            "children": [{"panel": k} for k in range(len(out))]}
    return {"panels": out, "hierarchy": root}


def _crystal(real_m, D, hall: str) -> dict:
    """``real_m``: rows a, b, c (m, nanoBragg lab)."""
    a, b, c = (D @ np.asarray(v, dtype=np.float64) * 1e10 for v in real_m)
    return {"__id__": "crystal", "real_space_a": _v(a), "real_space_b": _v(b),
            "real_space_c": _v(c), "space_group_hall_symbol": hall}


def imageset_for(kind: str, target: str, nframes: int, still: Optional[int] = None) -> dict:
    """The dxtbx imageset JSON of the files written: ``kind`` "template" (a ``#`` frame
    template, or one file) or "nexus" (frames of one HDF5 file); ``still``: the 0-based
    frame of a single-image ``ImageSet`` (stills), None for a whole ``ImageSequence``."""
    path = os.path.abspath(target)
    extra = {"mask": None, "gain": None, "pedestal": None, "dx": None, "dy": None,
             "params": {"dynamic_shadowing": "Auto", "multi_panel": False}}
    if still is not None:
        if kind == "nexus":
            d = {"__id__": "ImageSet", "images": [path], "single_file_indices": [still]}
        else:
            from .sinks import frame_path
            d = {"__id__": "ImageSet",
                 "images": [os.path.abspath(frame_path(target, still))
                            if "#" in os.path.basename(target) else path]}
    elif kind == "nexus":
        d = {"__id__": "ImageSequence", "template": path,
             "single_file_indices": list(range(nframes))}
    elif "#" not in os.path.basename(target):     # one image file, no frame number
        d = {"__id__": "ImageSet", "images": [path]}
    else:
        d = {"__id__": "ImageSequence", "template": path}
    d.update(extra)
    return d


def experiment_list(plan, nframes: int, scans, crystals: Sequence, *,
                    images: Optional[tuple] = None, exposure_s: float = 1.0,
                    trusted=(-1.0, 65535.0), hall: str = " P 1",
                    identifier_seed: Optional[str] = None,
                    frame_plans: Optional[Callable[[int], object]] = None,
                    lattices: int = 1) -> dict:
    """The experiment list of a job, as a JSON-ready dict.

    ``plan``: frame 0's :class:`nbsim.plan.Plan` (beam, detector, spindle);
    ``scans``: one :class:`nbsim.io.sinks.FrameScan` per frame (degrees) for a rotation
    series, or None for stills; ``crystals``: rows (a, b, c) in metres, nanoBragg lab --
    one at phi = 0 for a rotation series, one per frame (as rendered) for stills;
    ``images``: (kind, target) for :func:`imageset_for`, or None (no imageset);
    ``trusted``: (underload, overload) counts; ``hall``: the space group's Hall symbol;
    stills only: ``frame_plans`` (frame index -> plan) gives every still its own beam and
    detector (-vary), ``lattices`` K crystals per still: ``crystals`` holds
    ``nframes * K`` (frame-major) and experiment ``i * K + k`` is lattice k of still i,
    the K experiments of a still sharing its imageset, beam and detector.
    """
    det = plan.detector
    if getattr(det, "curved", False):
        raise ValueError("a curved detector (-curved_det) cannot be described by dxtbx's "
                         "flat panels")
    D = dials_rotation(det)
    doc = {"__id__": "ExperimentList", "experiment": [], "imageset": [],
           "beam": [_beam(plan, D)], "detector": [_detector(plan, D, trusted)],
           "goniometer": [], "scan": [], "crystal": [], "profile": [],
           "scaling_model": []}
    def ident(k):
        return experiment_identifier(identifier_seed, k)

    if scans is not None:
        if len(scans) != nframes:
            raise ValueError(f"{len(scans)} scan ranges for {nframes} frames")
        widths = {round(s.osc_deg, 12) for s in scans}
        if len(widths) != 1:
            raise ValueError("a DIALS scan needs one oscillation width for every frame")
        doc["goniometer"].append({
            "rotation_axis": _v(_unit(D @ det.spindle)),
            "fixed_rotation": _v(np.eye(3)), "setting_rotation": _v(np.eye(3))})
        doc["scan"].append({
            "image_range": [1, int(nframes)], "batch_offset": 0,
            "oscillation": [float(scans[0].phi_start_deg), float(scans[0].osc_deg)],
            "exposure_time": [float(exposure_s)] * nframes,
            "epochs": [float(i) * float(exposure_s) for i in range(nframes)],
            "valid_image_ranges": {}})
        doc["crystal"].append(_crystal(crystals[0], D, hall))
        exp = {"__id__": "Experiment", "identifier": ident(0), "beam": 0, "detector": 0,
               "goniometer": 0, "scan": 0, "crystal": 0}
        if images is not None:
            doc["imageset"].append(imageset_for(images[0], images[1], nframes))
            exp["imageset"] = 0
        doc["experiment"].append(exp)
        return doc
    k_lat = int(lattices)
    if len(crystals) != nframes * k_lat:
        raise ValueError(f"{len(crystals)} crystals for {nframes} stills of {k_lat} "
                         f"lattice{'s' if k_lat > 1 else ''}")
    if frame_plans is not None:
        doc["beam"], doc["detector"] = [], []
    for i in range(nframes):
        model = 0
        if frame_plans is not None:          # -vary: the still's own beam and detector
            p_i = frame_plans(i)
            doc["beam"].append(_beam(p_i, D))
            doc["detector"].append(_detector(p_i, D, trusted))
            model = i
        if images is not None:
            doc["imageset"].append(imageset_for(images[0], images[1], nframes, still=i))
        for k in range(k_lat):
            e = i * k_lat + k
            doc["crystal"].append(_crystal(crystals[e], D, hall))
            exp = {"__id__": "Experiment", "identifier": ident(e), "beam": model,
                   "detector": model, "crystal": e}
            if images is not None:
                exp["imageset"] = i
            doc["experiment"].append(exp)
    return doc


def write_expt(path, doc: dict) -> None:
    """Write an experiment list (atomically: temporary file, then rename)."""
    from ._atomic import atomic_open
    with atomic_open(path, "w") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")


def rotate_rows(rows, axis, angle_rad: float) -> np.ndarray:
    """Rows (a, b, c) rotated right-handed by ``angle_rad`` about ``axis`` (as nanoBragg
    rotates the crystal by phi)."""
    from ..geometry.rotations import rotate_axis
    if angle_rad == 0.0:
        return np.array(rows, dtype=np.float64)
    return np.array([rotate_axis(np.asarray(v, dtype=np.float64), np.asarray(axis, float),
                                 angle_rad) for v in rows])


def experiment_identifier(tag: Optional[str], k: int) -> str:
    """The identifier of experiment ``k`` (a still's frame index -- ``i * K + lattice``
    with -lattices K --, 0 for a sweep or a single image) of the job tagged ``tag`` (the dataset's seed; None for a single image):
    deterministic, so that ``-write_expt`` and ``-truth``'s reflection file, written
    separately, name the same experiments (DIALS matches them by this string)."""
    return str(uuid.uuid5(uuid.UUID(int=0), f"nbsim:{tag or ''}:{int(k)}"))


def hall_symbol(space_group) -> str:
    """dxtbx's Hall symbol (leading space, as cctbx writes it) for a gemmi space group,
    a name, or None (P 1)."""
    if space_group is None:
        return " P 1"
    try:
        import gemmi
        sg = space_group if hasattr(space_group, "hall") else \
            gemmi.find_spacegroup_by_name(str(space_group))
        if sg is None:
            return " P 1"
        return " " + sg.hall.strip()
    except ImportError:                           # pragma: no cover - gemmi in CI
        return " P 1"

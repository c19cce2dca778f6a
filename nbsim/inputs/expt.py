"""DIALS experiment lists (``-expt FILE``, ``-expt_index i``) -> nanoBragg geometry.

The JSON written by dxtbx's ``ExperimentList`` (``dials.import``, ``dials.index``...):
top-level lists ``beam``, ``detector``, ``goniometer``, ``scan``, ``crystal`` and the
``experiment`` list whose entries name their models by index into those lists.  The
experiment ``-expt_index i`` (default 0) is used.  Only the standard library is needed.

Frames.  dxtbx's laboratory frame has X along the rotation axis, Y up, Z towards the
source (the beam travels along -Z); nanoBragg's (MOSFLM's) has x along the beam, z
along the spindle.  nanoBragg.c's own SMV header writes ``DIALS_ORIGIN = (pix0.z,
pix0.y, -pix0.x)``; the inverse, used here for every vector, is the proper rotation
``(X, Y, Z)_dials -> (x, y, z)_nanoBragg = (-Z, Y, X)``.

What is read and what it becomes (nanoBragg flags in brackets):

* beam: ``wavelength`` [-lambda]; ``direction`` (sample -> source) negated
  [-beam_vector]; ``polarization_normal`` n and ``polarization_fraction`` f (dxtbx's
  fraction of the intensity whose E-vector lies in the plane normal to n): E-vector
  n x beam [-polar_vector], Kahn factor 2f - 1 [-polar] (no polarization fields: f =
  0.5, unpolarized);
* detector: one panel as below, or several: a multi-panel detector
  (nbsim.geometry.panels, docs/panels.md: every panel's origin, axes, ``image_size``,
  ``pixel_size``, ``thickness``; all panels the same pixel counts); panel 0 also sets the
  single-panel fields below (the frame detector).  One panel: ``image_size``
  [-detpixels_f/-detpixels_s], square ``pixel_size`` [-pixel], ``fast_axis``,
  ``slow_axis`` [-fdet_vector, -sdet_vector, -odet_vector = unit(fast x slow)],
  ``origin`` (the corner of the first pixel, mm, as nanoBragg's pix0) given as the
  sample pivot: pix0 = -Xclose fdet - Yclose sdet + close_distance odet, solved for
  [-Xclose, -Yclose, -close_distance] (both modes place the detector the same way; a
  -pix0_vector would be ignored in c-parity mode); ``thickness`` (mm) and ``mu``
  (1/mm) when both are > 0 [-detector_thick, -detector_absorb];
* goniometer (single axis): lab = S R(axis, phi) F x, so the spindle is S axis
  [-spindle_axis] and the crystal at phi = 0 is S F A; a multi-axis goniometer is
  refused;
* scan: the first image: phi0 = its starting angle [-phi], osc = the oscillation width
  [-osc] (``oscillation`` = [start, width], or the per-image ``properties``);
* crystal: ``real_space_a/b/c`` (A, at the goniometer datum) -> the reciprocal
  vectors, times the wavelength, as a MOSFLM A matrix [-mat].

Not used (a note says so when set): beam divergence, the crystal's mosaicity fields,
profile and imageset.  The cell, space group and structure factors come from elsewhere
(-hkl, -mtz, ...).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from ..io.errors import FormatError

__all__ = ["DIALS_TO_NANOBRAGG", "ExperimentGeometry", "read_expt", "apply_to_config",
           "CONFIG_PARAMS", "params_set"]

# rows: nanoBragg x, y, z in terms of DIALS X, Y, Z
DIALS_TO_NANOBRAGG = np.array([[0.0, 0.0, -1.0],
                               [0.0, 1.0, 0.0],
                               [1.0, 0.0, 0.0]])

# Config parameters an experiment sets (a flag setting one of them too is a conflict)
_BEAM_DETECTOR_PARAMS = (
    "beam.wavelength", "beam.beam_vector", "beam.polar_vector", "beam.polarization",
    "detector.fpixels", "detector.spixels", "detector.detsize_f", "detector.detsize_s",
    "detector.pixel_size", "detector.fdet_vector", "detector.sdet_vector",
    "detector.odet_vector", "detector.pix0_vector", "detector.distance",
    "detector.close_distance", "detector.beam_center_x", "detector.beam_center_y",
    "detector.xclose", "detector.yclose", "detector.orgx", "detector.orgy",
    "detector.pivot", "detector.twotheta", "detector.twotheta_axis", "detector.rotx",
    "detector.roty", "detector.rotz")
_GONIOMETER_PARAMS = ("crystal.spindle_axis",)
_SCAN_PARAMS = ("crystal.phi0", "crystal.osc", "crystal.phistep")
_CRYSTAL_PARAMS = ("crystal.a_star_matrix", "crystal.cell", "crystal.misset")
CONFIG_PARAMS = _BEAM_DETECTOR_PARAMS + _GONIOMETER_PARAMS + _SCAN_PARAMS + _CRYSTAL_PARAMS


def params_set(geom: "ExperimentGeometry"):
    """The Config parameters this experiment sets (its beam and detector always; the
    spindle, phi and the crystal only when it has a goniometer, a scan, a crystal)."""
    out = list(_BEAM_DETECTOR_PARAMS)
    if geom.spindle_axis is not None:
        out += _GONIOMETER_PARAMS
    if geom.osc is not None:
        out += _SCAN_PARAMS
    if geom.a_star_matrix is not None:
        out += _CRYSTAL_PARAMS
    return tuple(out)


@dataclass
class ExperimentGeometry:
    """One experiment in nanoBragg's frame and nbsim's SI units (see the module doc)."""
    wavelength: float                 # m
    beam_vector: Tuple[float, float, float]
    polar_vector: Tuple[float, float, float]
    polarization: float               # Kahn factor
    fpixels: int
    spixels: int
    pixel_size: float                 # m
    fdet: Tuple[float, float, float]
    sdet: Tuple[float, float, float]
    odet: Tuple[float, float, float]
    xclose: float                     # m
    yclose: float                     # m
    close_distance: float             # m
    thick: float = 0.0                # m
    mu: Optional[float] = None        # 1/m
    spindle_axis: Optional[Tuple[float, float, float]] = None
    phi0: float = 0.0                 # rad
    osc: Optional[float] = None       # rad
    a_star_matrix: Optional[np.ndarray] = None   # MOSFLM layout, wavelength-scaled
    notes: List[str] = field(default_factory=list)
    # a multi-panel detector: every panel (nbsim.geometry.panels.PanelSet, nanoBragg's
    # frame, metres); None for one panel.  The fields above then describe panel 0.
    panels: Optional[object] = None


def _vec(d, key, where, n=3):
    try:
        v = np.array([float(x) for x in d[key]], dtype=np.float64)
    except KeyError:
        raise FormatError(f"{where}: no {key!r}") from None
    except (TypeError, ValueError):
        raise FormatError(f"{where}: {key!r} is not a list of numbers") from None
    if v.shape != (n,) or not np.all(np.isfinite(v)):
        raise FormatError(f"{where}: {key!r} needs {n} finite numbers")
    return v


def _model(doc, exp, kind, path, index, required):
    ref = exp.get(kind)
    if ref is None:
        if required:
            raise FormatError(f"{path}: experiment {index} has no {kind}")
        return None
    if not isinstance(ref, int) or isinstance(ref, bool):
        raise FormatError(f"{path}: experiment {index}: {kind} {ref!r} is not an index "
                          f"into the file's {kind} list (external models are not read)")
    models = doc.get(kind)
    if not isinstance(models, list) or not 0 <= ref < len(models):
        raise FormatError(f"{path}: experiment {index}: {kind} {ref} is not in the file")
    return models[ref]


def _unit(v, what):
    n = float(np.linalg.norm(v))
    if n == 0.0:
        raise FormatError(f"{what} is a zero vector")
    return v / n


def _matrix(d, key, where):
    if key not in d:
        return np.eye(3)
    return _vec(d, key, where, 9).reshape(3, 3)


def read_expt(path, index: int = 0) -> ExperimentGeometry:
    """Read experiment ``index`` of a DIALS ``.expt`` file (see the module doc)."""
    path = str(path)
    with open(path, "rb") as fh:          # FileNotFoundError / OSError for the caller
        raw = fh.read()
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{path}: not a DIALS experiment list (not JSON: {e})") from None
    if not isinstance(doc, dict) or doc.get("__id__") != "ExperimentList" or \
            not isinstance(doc.get("experiment"), list):
        raise FormatError(f"{path}: not a DIALS experiment list (no \"__id__\": "
                          f"\"ExperimentList\" with an \"experiment\" list)")
    exps = doc["experiment"]
    if not 0 <= index < len(exps):
        raise FormatError(f"{path}: -expt_index {index}: the file has {len(exps)} "
                          f"experiment{'s' if len(exps) != 1 else ''}")
    exp = exps[index]
    M = DIALS_TO_NANOBRAGG
    notes: List[str] = []
    where = f"{path}: experiment {index}"

    beam = _model(doc, exp, "beam", path, index, True)
    bw = f"{where}: beam"
    try:
        lam_A = float(beam["wavelength"])
    except (KeyError, TypeError, ValueError):
        raise FormatError(f"{bw}: no wavelength") from None
    if not (lam_A > 0 and math.isfinite(lam_A)):
        raise FormatError(f"{bw}: wavelength {lam_A!r} is not > 0")
    to_source = _unit(_vec(beam, "direction", bw), f"{bw}: direction")
    propagation = -to_source
    if "polarization_normal" in beam:
        normal = _unit(_vec(beam, "polarization_normal", bw), f"{bw}: polarization_normal")
        e_vec = np.cross(normal, propagation)
        e_vec = _unit(e_vec, f"{bw}: polarization_normal (parallel to the beam)")
        fraction = float(beam.get("polarization_fraction", 0.5))
    else:
        e_vec = None
        fraction = 0.5
    if not 0.0 <= fraction <= 1.0:
        raise FormatError(f"{bw}: polarization_fraction {fraction} is not in 0..1")
    for key in ("divergence", "sigma_divergence"):
        if float(beam.get(key, 0.0) or 0.0) != 0.0:
            notes.append(f"-expt {path}: beam {key} is not used (give -divergence)")

    det = _model(doc, exp, "detector", path, index, True)
    panels = det.get("panels") if isinstance(det, dict) else None
    if not isinstance(panels, list) or not panels:
        raise FormatError(f"{where}: detector has no panels")
    panel_set = _panel_set(panels, where, M) if len(panels) > 1 else None
    p = panels[0]
    pw = f"{where}: detector panel 0"
    fast = _unit(_vec(p, "fast_axis", pw), f"{pw}: fast_axis")
    slow = _unit(_vec(p, "slow_axis", pw), f"{pw}: slow_axis")
    origin_mm = _vec(p, "origin", pw)
    size = _vec(p, "image_size", pw, 2)
    px = _vec(p, "pixel_size", pw, 2)
    if np.any(size < 1) or np.any(size != np.rint(size)):
        raise FormatError(f"{pw}: image_size {size.tolist()} is not two whole numbers >= 1")
    if not (px[0] > 0 and abs(px[0] - px[1]) <= 1e-9 * px[0]):
        raise FormatError(f"{pw}: pixel_size {px.tolist()}: nanoBragg needs square pixels")
    normal = np.cross(fast, slow)
    if np.linalg.norm(normal) < 1e-6:
        raise FormatError(f"{pw}: fast_axis and slow_axis are parallel")
    fdet, sdet = M @ fast, M @ slow
    odet = M @ _unit(normal, pw)
    pix0 = M @ origin_mm * 1e-3
    # pix0 = -Xclose fdet - Yclose sdet + close_distance odet
    xclose, yclose, close_distance = np.linalg.solve(np.column_stack([-fdet, -sdet, odet]),
                                                     pix0)
    if not close_distance > 0:
        raise FormatError(f"{pw}: the sample is not in front of the detector "
                          f"(origin {origin_mm.tolist()} mm)")
    thick_mm = float(p.get("thickness", 0.0) or 0.0)
    mu_mm = float(p.get("mu", 0.0) or 0.0)
    thick, mu = (thick_mm * 1e-3, mu_mm * 1e3) if thick_mm > 0 and mu_mm > 0 else (0.0, None)

    gonio = _model(doc, exp, "goniometer", path, index, False)
    spindle = None
    S = np.eye(3)
    F = np.eye(3)
    if gonio is not None:
        gw = f"{where}: goniometer"
        if "axes" in gonio and len(gonio.get("axes") or []) > 1:
            raise FormatError(f"{gw}: multi-axis goniometers are not supported (one "
                              f"rotation axis only)")
        axis = _vec(gonio, "rotation_axis", gw) if "rotation_axis" in gonio else \
            _vec({"a": gonio["axes"][0]}, "a", gw)
        F = _matrix(gonio, "fixed_rotation", gw)
        S = _matrix(gonio, "setting_rotation", gw)
        spindle = tuple(M @ _unit(S @ axis, f"{gw}: rotation_axis"))

    scan = _model(doc, exp, "scan", path, index, False)
    phi0, osc = 0.0, None
    if scan is not None:
        sw = f"{where}: scan"
        props = scan.get("properties") or {}
        if "oscillation" in scan:
            start, width = _vec(scan, "oscillation", sw, 2)
        elif "oscillation" in props:
            starts = [float(v) for v in props["oscillation"]]
            if "oscillation_width" in props:
                w = props["oscillation_width"]
                width = float(w[0] if isinstance(w, list) else w)
            elif len(starts) > 1:
                width = starts[1] - starts[0]
            else:
                raise FormatError(f"{sw}: one image and no oscillation width")
            start = starts[0]
        else:
            raise FormatError(f"{sw}: no oscillation")
        phi0, osc = math.radians(start), math.radians(width)

    crystal = _model(doc, exp, "crystal", path, index, False)
    a_star = None
    if crystal is not None:
        cw = f"{where}: crystal"
        real = np.column_stack([_vec(crystal, f"real_space_{x}", cw) for x in "abc"])
        real = M @ S @ F @ real                      # at phi = 0, nanoBragg frame
        if abs(np.linalg.det(real)) < 1e-9:
            raise FormatError(f"{cw}: real_space_a, b, c have no volume")
        a_star = np.linalg.inv(real).T * lam_A       # columns a*, b*, c*, times lambda
        for key in ("ML_half_mosaicity_deg", "ML_domain_size_ang", "mosaicity"):
            if key in crystal:
                notes.append(f"-expt {path}: crystal {key} is not used "
                             f"(give -mosaic / -N)")
    return ExperimentGeometry(
        wavelength=lam_A * 1e-10, beam_vector=tuple(M @ propagation),
        polar_vector=tuple(M @ e_vec) if e_vec is not None else (0.0, 0.0, 1.0),
        polarization=2.0 * fraction - 1.0,
        fpixels=int(size[0]), spixels=int(size[1]), pixel_size=float(px[0]) * 1e-3,
        fdet=tuple(fdet), sdet=tuple(sdet), odet=tuple(odet), xclose=float(xclose),
        yclose=float(yclose), close_distance=float(close_distance), thick=thick, mu=mu,
        spindle_axis=spindle, phi0=phi0, osc=osc, a_star_matrix=a_star, notes=notes,
        panels=panel_set)


def _panel_set(panels, where, M):
    """Every panel of a multi-panel dxtbx detector as nbsim panels (nanoBragg frame,
    metres; panel order = the file's; ``thickness`` when given with ``mu``), validated
    (same pixel counts, no overlap, ...: nbsim.geometry.panels)."""
    from ..errors import ConfigError
    from ..geometry.panels import Panel, PanelSet, validate_panels
    out = []
    for k, p in enumerate(panels):
        pw = f"{where}: detector panel {k}"
        if not isinstance(p, dict):
            raise FormatError(f"{pw}: not an object")
        fast = _unit(_vec(p, "fast_axis", pw), f"{pw}: fast_axis")
        slow = _unit(_vec(p, "slow_axis", pw), f"{pw}: slow_axis")
        size = _vec(p, "image_size", pw, 2)
        px = _vec(p, "pixel_size", pw, 2)
        if np.any(size != np.rint(size)):
            raise FormatError(f"{pw}: image_size {size.tolist()} is not two whole numbers")
        if not abs(px[0] - px[1]) <= 1e-9 * abs(px[0]):
            raise FormatError(f"{pw}: pixel_size {px.tolist()}: nanoBragg needs square pixels")
        thick_mm = float(p.get("thickness", 0.0) or 0.0)
        mu_mm = float(p.get("mu", 0.0) or 0.0)
        out.append(Panel(origin=M @ _vec(p, "origin", pw) * 1e-3, fast=M @ fast,
                         slow=M @ slow, fpixels=int(size[0]), spixels=int(size[1]),
                         pixel_size=float(px[0]) * 1e-3,
                         thickness=thick_mm * 1e-3 if thick_mm > 0 and mu_mm > 0 else None,
                         name=str(p.get("name", f"panel{k}"))))
    ps = PanelSet(out, source=where)
    try:
        validate_panels(ps)
    except ConfigError as e:
        raise FormatError(f"{where}: detector {e.value}: {e.why}") from None
    return ps


def apply_to_config(geom: ExperimentGeometry, cfg) -> None:
    """Write the experiment's geometry into a :class:`nbsim.config.Config` (CUSTOM
    convention, sample pivot)."""
    b, d, c = cfg.beam, cfg.detector, cfg.crystal
    b.wavelength = geom.wavelength
    b.beam_vector = geom.beam_vector
    b.polar_vector = geom.polar_vector
    b.polarization = geom.polarization
    b.nopolar = False
    d.convention = "CUSTOM"
    d.pivot = "SAMPLE"
    d.fpixels, d.spixels = geom.fpixels, geom.spixels
    d.pixel_size = geom.pixel_size
    d.fdet_vector, d.sdet_vector, d.odet_vector = geom.fdet, geom.sdet, geom.odet
    d.xclose, d.yclose = geom.xclose, geom.yclose
    d.beam_center_x, d.beam_center_y = None, None
    d.close_distance = geom.close_distance
    d.pix0_vector = None
    if geom.thick > 0 and geom.mu is not None:
        d.thick, d.mu = geom.thick, geom.mu
    if geom.panels is not None:
        # a multi-panel detector: the panels replace the frame's origin and axes
        d.panels = geom.panels
    if geom.spindle_axis is not None:
        c.spindle_axis = geom.spindle_axis
    if geom.osc is not None:        # a scan: its start and width (else -phi/-osc stay)
        c.phi0 = geom.phi0
        c.osc = geom.osc
    if geom.a_star_matrix is not None:
        c.a_star_matrix = np.array(geom.a_star_matrix, dtype=np.float64)
        c.cell = None

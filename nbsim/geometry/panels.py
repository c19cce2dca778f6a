"""Multi-panel detectors: a detector as a list of flat panels.

A panel is a rectangle of pixels with its own origin (the lab position of the outer
corner of its pixel (0, 0), metres, nanoBragg's lab frame), unit fast and slow axes, pixel
counts, pixel size, sensor thickness and mask.  All panels of a detector have the same
pixel counts, so a render is one ``(panels, slow, fast)`` array and the flat pixel index
over all panels is

    flat = (panel * spixels + slow) * fpixels + fast

(panel-major: the panels stacked along the slow axis).  The kernels see this flat index
as the raster order of one tall detector of ``panels * spixels`` rows and look the pixel's
panel geometry up in a per-panel table (:func:`panel_geometry_table`), so one plan and one
kernel launch cover every panel.  The c-parity carryover's "first executed sub-path" and
the tricubic switch's "first out-of-range evaluation" are therefore the first in
(panel, slow, fast) order.

Panels come from a JSON file (:func:`load_panels_json`, schema in docs/panels.md), from a
DIALS experiment's detector, or from a built-in preset (:data:`PRESETS`): a preset is a
tiled layout of modules (with the module gaps) inside a frame that the ordinary detector
flags place in the lab (distance, beam centre, convention, rotations), so the preset's
modules sit exactly where the pixels of one big flat detector of the frame's size would.

Nothing here knows about files other than the panel JSON.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError

__all__ = ["Panel", "PanelSet", "TiledLayout", "PRESETS", "preset", "load_panels_json",
           "panels_from_dict", "panels_to_dict", "panel_geometry_table", "validate_panels",
           "PANEL_GEOM_LEN"]

#: per-panel geometry row: the plan's 25 geometry numbers (pix0, fdet, sdet, odet, beam,
#: polar axis, distance, close distance, pixel size, thickness step, mu, Kahn factor,
#: dmin) and the sub-pixel size
PANEL_GEOM_LEN = 26


@dataclass
class Panel:
    """One flat panel.  Lengths in metres; ``fast``/``slow`` unit vectors (lab frame)."""
    origin: np.ndarray                 # (3,) m: outer corner of pixel (0, 0)
    fast: np.ndarray                   # (3,) unit vector along increasing fast index
    slow: np.ndarray                   # (3,) unit vector along increasing slow index
    fpixels: int
    spixels: int
    pixel_size: float                  # m
    thickness: Optional[float] = None  # m; None: the detector's (-detector_thick)
    mask: Optional[np.ndarray] = None  # (spixels, fpixels) uint8, 0 = not rendered
    name: str = ""
    normal: Optional[np.ndarray] = None  # (3,) unit; None: fast x slow, away from the sample
    tile: Optional[Tuple[int, int]] = None   # (fast, slow) offset in a tiled frame

    def odet(self) -> np.ndarray:
        """The panel normal nanoBragg calls odet: ``normal`` if given, else fast x slow,
        flipped so that it points away from the sample (C's odet always does: the
        distance along it, pix0 . odet, is positive)."""
        if self.normal is not None:
            return np.asarray(self.normal, dtype=np.float64)
        n = np.cross(self.fast, self.slow)
        n = n / math.sqrt(float(n @ n))
        centre = self.origin + 0.5 * self.pixel_size * (self.fpixels * self.fast
                                                        + self.spixels * self.slow)
        if float(n @ centre) < 0.0:
            n = -n
        return n

    def corners(self) -> np.ndarray:
        """(4, 3) lab positions of the panel's corners, in order around the rectangle."""
        ef = self.fast * (self.fpixels * self.pixel_size)
        es = self.slow * (self.spixels * self.pixel_size)
        o = self.origin
        return np.array([o, o + ef, o + ef + es, o + es])


@dataclass
class PanelSet:
    """The panels of a detector, in panel order (the order of the flat index)."""
    panels: List[Panel]
    source: str = "panels"                    # file name or preset name (for messages)
    frame: Optional[Tuple[int, int]] = None   # (spixels, fpixels) of the tiled layout

    @property
    def count(self) -> int:
        return len(self.panels)

    @property
    def fpixels(self) -> int:
        return self.panels[0].fpixels

    @property
    def spixels(self) -> int:
        return self.panels[0].spixels

    @property
    def shape(self) -> Tuple[int, int, int]:
        """(panels, slow, fast)."""
        return (self.count, self.spixels, self.fpixels)

    @property
    def pixels(self) -> int:
        return self.count * self.spixels * self.fpixels

    def flat_index(self, panel, slow, fast):
        """Flat pixel index over all panels (panel-major)."""
        return (np.asarray(panel) * self.spixels + slow) * self.fpixels + fast

    def tiled(self, image: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """The (panels, slow, fast) ``image`` placed in the tiled frame (module gaps
        ``fill``); needs a layout (presets have one; a JSON file gives ``frame`` and
        every panel's ``tile``)."""
        if self.frame is None or any(p.tile is None for p in self.panels):
            raise ValueError(f"{self.source}: no tiled layout (one file per panel instead)")
        img = np.asarray(image).reshape(self.shape)
        out = np.full(self.frame, fill, dtype=img.dtype)
        for k, p in enumerate(self.panels):
            f0, s0 = p.tile
            out[s0:s0 + p.spixels, f0:f0 + p.fpixels] = img[k]
        return out

    def untiled(self, frame_image: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`tiled`: (panels, slow, fast) cut from a frame image."""
        fr = np.asarray(frame_image)
        return np.stack([fr[p.tile[1]:p.tile[1] + p.spixels, p.tile[0]:p.tile[0] + p.fpixels]
                         for p in self.panels])


# --------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class TiledLayout:
    """A detector of identical modules on a regular grid with gaps, inside a frame of
    ``frame_fpixels x frame_spixels`` pixels of ``pixel_size``.  The frame is placed by
    the ordinary detector flags (it is the flat detector nanoBragg would render with
    ``-detpixels_f frame_fpixels -detpixels_s frame_spixels -pixel pixel_size``); module
    (i, j) (i across, j down, panel number j * modules_f + i) starts at frame pixel
    (i * (module_f + gap_f), j * (module_s + gap_s))."""
    name: str
    modules_f: int
    modules_s: int
    module_f: int          # pixels
    module_s: int
    gap_f: int             # pixels between module columns
    gap_s: int             # pixels between module rows
    pixel_size: float      # m
    description: str = ""

    @property
    def frame_fpixels(self) -> int:
        return self.modules_f * self.module_f + (self.modules_f - 1) * self.gap_f

    @property
    def frame_spixels(self) -> int:
        return self.modules_s * self.module_s + (self.modules_s - 1) * self.gap_s

    def tiles(self) -> List[Tuple[int, int]]:
        """(fast, slow) frame pixel of every module's pixel (0, 0), in panel order."""
        return [(i * (self.module_f + self.gap_f), j * (self.module_s + self.gap_s))
                for j in range(self.modules_s) for i in range(self.modules_f)]

    def panels_in(self, det) -> PanelSet:
        """The modules as panels of the frame detector ``det`` (a resolved
        :class:`~nbsim.geometry.detector.DetectorGeometry` of the frame's size): module
        origin = pix0 + f0 * pixel * fdet + s0 * pixel * sdet, the frame's axes."""
        px = float(det.pixel_size)
        out = []
        for k, (f0, s0) in enumerate(self.tiles()):
            origin = np.array([det.pix0[i] + f0 * px * det.fdet[i] + s0 * px * det.sdet[i]
                               for i in range(3)])
            out.append(Panel(origin=origin, fast=np.array(det.fdet, dtype=np.float64),
                             slow=np.array(det.sdet, dtype=np.float64), fpixels=self.module_f,
                             spixels=self.module_s, pixel_size=px,
                             normal=np.array(det.odet, dtype=np.float64),
                             name=f"module{k:02d}", tile=(f0, s0)))
        return PanelSet(out, source=self.name, frame=(self.frame_spixels, self.frame_fpixels))


PRESETS = {
    # DECTRIS EIGER2 X 16M: 4 x 8 modules of 1028 x 512 pixels of 75 um; 12-pixel gaps
    # between module columns, 38 between rows: 4148 x 4362 pixels
    "eiger2_16m": TiledLayout("eiger2_16m", 4, 8, 1028, 512, 12, 38, 75e-6,
                              "DECTRIS EIGER2 X 16M (4 x 8 modules of 1028 x 512, "
                              "gaps 12 / 38 pixels, 75 um)"),
    # PSI JUNGFRAU 4M: 2 x 4 modules of 1024 x 512 pixels of 75 um (the raw module; the
    # double-size inter-chip pixels are not modelled), module gaps of 8 pixels between the
    # columns and 36 between the rows (PSI's JF4M layout): 2056 x 2156 pixels
    "jungfrau_4m": TiledLayout("jungfrau_4m", 2, 4, 1024, 512, 8, 36, 75e-6,
                               "PSI JUNGFRAU 4M (2 x 4 modules of 1024 x 512, "
                               "gaps 8 / 36 pixels, 75 um)"),
}


def preset(name: str) -> TiledLayout:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError("detector.panels", name,
                          f"unknown detector preset (one of {', '.join(sorted(PRESETS))})") \
            from None


# ----------------------------------------------------------------------- JSON files
_PANEL_KEYS = {"name", "origin", "fast", "slow", "fpixels", "spixels", "pixel_size",
               "thickness", "mask", "normal", "tile"}
_TOP_KEYS = {"format", "version", "panels", "frame", "description"}


def load_panels_json(path: str) -> PanelSet:
    """Read a panel file (schema: docs/panels.md).  Raises ConfigError naming the file,
    the panel and what is wrong."""
    try:
        with open(path, "r", encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as e:
        raise ConfigError(path, "", f"cannot read the panel file ({e.strerror})") from None
    except ValueError as e:
        raise ConfigError(path, "", f"not valid JSON ({e})") from None
    return panels_from_dict(doc, source=path)


def _vec(src, k, key, v):
    try:
        a = np.array([float(x) for x in v], dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(src, f"panel {k}", f"'{key}' must be a list of 3 numbers") from None
    if a.shape != (3,) or not np.all(np.isfinite(a)):
        raise ConfigError(src, f"panel {k}", f"'{key}' must be a list of 3 finite numbers")
    return a


def _int(src, k, key, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
        raise ConfigError(src, f"panel {k}", f"'{key}' must be an integer, got {v!r}")
    return int(v)


def _float(src, k, key, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(src, f"panel {k}", f"'{key}' must be a finite number, got {v!r}")
    return float(v)


def panels_from_dict(doc, source: str = "panels", default_pixel_size: Optional[float] = None
                     ) -> PanelSet:
    """A :class:`PanelSet` from the JSON document ``doc`` (already parsed), validated."""
    src = source
    if not isinstance(doc, dict) or not isinstance(doc.get("panels"), list):
        raise ConfigError(src, "", "expected an object with a 'panels' list")
    extra = set(doc) - _TOP_KEYS
    if extra:
        raise ConfigError(src, "", f"unknown key {sorted(extra)[0]!r}")
    if doc.get("format", "nbsim-panels") != "nbsim-panels":
        raise ConfigError(src, "", f"'format' must be 'nbsim-panels', got {doc['format']!r}")
    if doc.get("version", 1) != 1:
        raise ConfigError(src, "", f"unsupported version {doc['version']!r} (this reads 1)")
    if not doc["panels"]:
        raise ConfigError(src, "", "the 'panels' list is empty")
    out = []
    for k, d in enumerate(doc["panels"]):
        if not isinstance(d, dict):
            raise ConfigError(src, f"panel {k}", "must be an object")
        extra = set(d) - _PANEL_KEYS
        if extra:
            raise ConfigError(src, f"panel {k}", f"unknown key {sorted(extra)[0]!r}")
        for key in ("origin", "fast", "slow", "fpixels", "spixels"):
            if key not in d:
                raise ConfigError(src, f"panel {k}", f"missing '{key}'")
        px = d.get("pixel_size", default_pixel_size)
        if px is None:
            raise ConfigError(src, f"panel {k}", "missing 'pixel_size'")
        p = Panel(origin=_vec(src, k, "origin", d["origin"]),
                  fast=_vec(src, k, "fast", d["fast"]), slow=_vec(src, k, "slow", d["slow"]),
                  fpixels=_int(src, k, "fpixels", d["fpixels"]),
                  spixels=_int(src, k, "spixels", d["spixels"]),
                  pixel_size=_float(src, k, "pixel_size", px),
                  thickness=(None if d.get("thickness") is None
                             else _float(src, k, "thickness", d["thickness"])),
                  name=str(d.get("name", f"panel{k:02d}")),
                  normal=None if d.get("normal") is None else _vec(src, k, "normal", d["normal"]),
                  tile=None)
        if d.get("tile") is not None:
            t = d["tile"]
            if not isinstance(t, list) or len(t) != 2:
                raise ConfigError(src, f"panel {k}", "'tile' must be [fast, slow] pixels")
            p.tile = (_int(src, k, "tile", t[0]), _int(src, k, "tile", t[1]))
        if d.get("mask") is not None:
            p.mask = _mask_from_rects(src, k, d["mask"], p)
        out.append(p)
    frame = None
    if doc.get("frame") is not None:
        fr = doc["frame"]
        if not isinstance(fr, list) or len(fr) != 2:
            raise ConfigError(src, "frame", "must be [fpixels, spixels]")
        frame = (_int(src, "frame", "frame", fr[1]), _int(src, "frame", "frame", fr[0]))
    ps = PanelSet(out, source=src, frame=frame)
    validate_panels(ps)
    return ps


def panels_to_dict(ps: PanelSet) -> dict:
    """The JSON document (docs/panels.md) of ``ps``; ``panels_from_dict`` reads it back
    (masks are written as one rectangle per masked pixel run of a row)."""
    out = []
    for p in ps.panels:
        d = {"name": p.name, "origin": [float(v) for v in p.origin],
             "fast": [float(v) for v in p.fast], "slow": [float(v) for v in p.slow],
             "fpixels": int(p.fpixels), "spixels": int(p.spixels),
             "pixel_size": float(p.pixel_size)}
        if p.normal is not None:
            d["normal"] = [float(v) for v in p.normal]
        if p.thickness is not None:
            d["thickness"] = float(p.thickness)
        if p.tile is not None:
            d["tile"] = [int(p.tile[0]), int(p.tile[1])]
        if p.mask is not None:
            rects = []
            for s_ in range(p.spixels):
                row = np.flatnonzero(np.diff(np.concatenate(([1], p.mask[s_] != 0, [1]))))
                rects += [[int(a), int(b) - 1, s_, s_] for a, b in zip(row[::2], row[1::2])]
            d["mask"] = rects
        out.append(d)
    doc = {"format": "nbsim-panels", "version": 1, "panels": out}
    if ps.frame is not None:
        doc["frame"] = [int(ps.frame[1]), int(ps.frame[0])]
    return doc


def _mask_from_rects(src, k, rects, p: Panel) -> np.ndarray:
    """'mask': a list of [fmin, fmax, smin, smax] rectangles (inclusive panel pixels)
    that are not rendered."""
    if p.fpixels <= 0 or p.spixels <= 0:
        return None
    m = np.ones((p.spixels, p.fpixels), dtype=np.uint8)
    if not isinstance(rects, list):
        raise ConfigError(src, f"panel {k}", "'mask' must be a list of [fmin, fmax, smin, smax]")
    for r in rects:
        if not isinstance(r, list) or len(r) != 4:
            raise ConfigError(src, f"panel {k}",
                              "'mask' must be a list of [fmin, fmax, smin, smax]")
        f0, f1, s0, s1 = (_int(src, k, "mask", v) for v in r)
        if not (0 <= f0 <= f1 < p.fpixels and 0 <= s0 <= s1 < p.spixels):
            raise ConfigError(src, f"panel {k}",
                              f"mask rectangle {r} is outside the panel's "
                              f"{p.fpixels} x {p.spixels} pixels")
        m[s0:s1 + 1, f0:f1 + 1] = 0
    return m


# ------------------------------------------------------------------------ validation
def validate_panels(ps: PanelSet) -> None:
    """Refuse panel sets nbsim cannot render: zero-size panels, degenerate axes, unequal
    pixel counts, mixed zero / nonzero thickness, overlapping panels (two panels whose
    pixel areas overlap as seen from the sample)."""
    src = ps.source
    for k, p in enumerate(ps.panels):
        where = f"panel {k}" + (f" ({p.name})" if p.name else "")
        if p.fpixels <= 0 or p.spixels <= 0:
            raise ConfigError(src, where, f"zero-size panel ({p.fpixels} x {p.spixels} pixels)")
        if not p.pixel_size > 0.0:
            raise ConfigError(src, where, f"zero-size pixels (pixel_size {p.pixel_size!r})")
        if p.thickness is not None and p.thickness < 0.0:
            raise ConfigError(src, where, f"negative thickness {p.thickness!r}")
        for key in ("fast", "slow"):
            v = getattr(p, key)
            n = math.sqrt(float(v @ v))
            if n == 0.0:
                raise ConfigError(src, where, f"'{key}' is the zero vector")
            setattr(p, key, v / n)
        if abs(float(p.fast @ p.slow)) > 1e-9:
            raise ConfigError(src, where, "'fast' and 'slow' are not perpendicular")
        if p.normal is not None:
            n = math.sqrt(float(p.normal @ p.normal))
            if n == 0.0:
                raise ConfigError(src, where, "'normal' is the zero vector")
            p.normal = p.normal / n
            if abs(float(p.normal @ p.fast)) > 1e-9 or abs(float(p.normal @ p.slow)) > 1e-9:
                raise ConfigError(src, where, "'normal' is not perpendicular to fast and slow")
        if abs(float(p.odet() @ p.origin)) == 0.0:
            raise ConfigError(src, where, "the panel's plane passes through the sample")
        if p.normal is not None and float(p.normal @ p.origin) < 0.0:
            raise ConfigError(src, where, "'normal' points towards the sample (nanoBragg's "
                              "odet points away from it)")
        if p.mask is not None and p.mask.shape != (p.spixels, p.fpixels):
            raise ConfigError(src, where, f"mask must have {p.spixels} x {p.fpixels} pixels")
    p0 = ps.panels[0]
    for k, p in enumerate(ps.panels[1:], start=1):
        if (p.fpixels, p.spixels) != (p0.fpixels, p0.spixels):
            raise ConfigError(src, f"panel {k}",
                              f"{p.fpixels} x {p.spixels} pixels, panel 0 has "
                              f"{p0.fpixels} x {p0.spixels}: all panels must have the same "
                              "pixel counts")
    thick = [p.thickness for p in ps.panels if p.thickness is not None]
    if thick and (min(thick) == 0.0) != (max(thick) == 0.0):
        raise ConfigError(src, "thickness", "some panels have a sensor thickness and some "
                          "none: give all panels a thickness, or none")
    if ps.frame is not None:
        for k, p in enumerate(ps.panels):
            if p.tile is None:
                raise ConfigError(src, f"panel {k}", "'frame' is given but this panel has "
                                  "no 'tile'")
            f0, s0 = p.tile
            if f0 < 0 or s0 < 0 or f0 + p.fpixels > ps.frame[1] or s0 + p.spixels > ps.frame[0]:
                raise ConfigError(src, f"panel {k}", f"tile {list(p.tile)} does not fit in "
                                  f"the {ps.frame[1]} x {ps.frame[0]} frame")
    i, j = _first_overlap(ps.panels)
    if i >= 0:
        a, b = ps.panels[i], ps.panels[j]
        raise ConfigError(src, f"panels {i} and {j}",
                          f"overlapping panels ({a.name or i} and {b.name or j} cover the "
                          "same directions from the sample)")


def _first_overlap(panels: Sequence[Panel]):
    """(i, j) of the first pair of panels whose areas overlap as seen from the sample
    (central projection of j onto i's plane, then a separating-axis test in i's plane;
    shared edges do not count), else (-1, -1)."""
    n = len(panels)
    if n < 2:
        return -1, -1
    # a cheap screen on the direction cones first: centre directions and angular radii
    cen = np.array([p.corners().mean(axis=0) for p in panels])
    dist = np.linalg.norm(cen, axis=1)
    u = cen / dist[:, None]
    rad = np.array([np.max(np.linalg.norm(p.corners() - c, axis=1)) for p, c in zip(panels, cen)])
    ang = np.arcsin(np.minimum(1.0, rad / np.maximum(dist, 1e-300)))
    cosang = np.clip(u @ u.T, -1.0, 1.0)
    sep = np.arccos(cosang)
    for i in range(n):
        cand = np.flatnonzero(sep[i, i + 1:] < ang[i] + ang[i + 1:] + 1e-12) + i + 1
        for j in cand:
            if _overlap_pair(panels[i], panels[j]):
                return i, int(j)
    return -1, -1


def _overlap_pair(a: Panel, b: Panel) -> bool:
    na = a.odet()
    da = float(na @ a.origin)
    cb = b.corners()
    den = cb @ na
    if np.any(den * da <= 0.0):
        return False                  # b is not entirely in front of a's plane
    proj = cb * (da / den)[:, None]   # b's corners projected from the sample onto a's plane
    rel = proj - a.origin
    bx = rel @ a.fast
    by = rel @ a.slow
    wa = a.fpixels * a.pixel_size
    ha = a.spixels * a.pixel_size
    poly_a = np.array([[0.0, 0.0], [wa, 0.0], [wa, ha], [0.0, ha]])
    poly_b = np.stack([bx, by], axis=1)
    tol = 1e-6 * min(a.pixel_size, b.pixel_size)
    for poly in (poly_a, poly_b):
        for e in range(4):
            edge = poly[(e + 1) % 4] - poly[e]
            axis = np.array([-edge[1], edge[0]])
            nrm = math.hypot(axis[0], axis[1])
            if nrm == 0.0:
                continue
            axis /= nrm
            pa = poly_a @ axis
            pb = poly_b @ axis
            if pa.max() <= pb.min() + tol or pb.max() <= pa.min() + tol:
                return False
    return True


# ------------------------------------------------------------------- plan support
def frame_config(cfg):
    """The config whose detector the plan resolves: for a preset layout, the frame's
    pixel counts and pixel size replace the flags' (the other detector flags place the
    frame); for a panel file, the thickest panel's thickness (if any panel gives one)
    sets the sensor thickness.  Returns (config, layout) where layout is the TiledLayout,
    the PanelSet, or None."""
    layout = cfg.detector.panels
    if layout is None:
        return cfg, None
    if isinstance(layout, str):
        layout = preset(layout)
    d = cfg.detector
    if isinstance(layout, TiledLayout):
        d = replace(d, fpixels=layout.frame_fpixels, spixels=layout.frame_spixels,
                    pixel_size=layout.pixel_size)
    elif isinstance(layout, PanelSet):
        validate_panels(layout)
        thick = [p.thickness for p in layout.panels if p.thickness is not None]
        if thick:
            d = replace(d, thick=max(thick))
        # the frame detector gets the panels' pixel size and the frame's (else a panel's)
        # pixel counts (beam centre defaults, header values); the panels' own geometry
        # replaces its pix0 and axes
        sp, fp = layout.frame if layout.frame is not None else (layout.spixels,
                                                                 layout.fpixels)
        d = replace(d, fpixels=fp, spixels=sp, pixel_size=layout.panels[0].pixel_size)
    else:
        raise ConfigError("detector.panels", type(layout).__name__,
                          "must be a preset name, a TiledLayout or a PanelSet")
    return replace(cfg, detector=d), layout


def resolve_panels(layout, det) -> Optional[PanelSet]:
    """The PanelSet of ``layout`` (see :func:`frame_config`) for the resolved frame
    detector ``det``."""
    if layout is None:
        return None
    if isinstance(layout, TiledLayout):
        ps = layout.panels_in(det)
        validate_panels(ps)            # an API-made layout may overlap (negative gaps)
        return ps
    return layout


def panel_geometry_table(ps: PanelSet, geom: np.ndarray, det, oversample: int) -> np.ndarray:
    """(panels, PANEL_GEOM_LEN) float64: per panel the plan's geometry row ``geom`` with
    the panel's pix0 (origin), fdet, sdet, odet, close distance, pixel size, thickness
    step and sub-pixel size.  Sensor layers and mu are the detector's; a panel's
    thickness scales its layer step (thickstep * thickness / detector thickness)."""
    from ..errors import ConfigError as _CE
    out = np.zeros((ps.count, PANEL_GEOM_LEN))
    for k, p in enumerate(ps.panels):
        row = out[k]
        row[:25] = geom
        o = p.odet()
        row[0:3] = p.origin
        row[3:6] = p.fast
        row[6:9] = p.slow
        row[9:12] = o
        close = float(p.origin[0] * o[0] + p.origin[1] * o[1] + p.origin[2] * o[2])
        if not math.isfinite(close) or close == 0.0:
            raise _CE(ps.source, f"panel {k}", "degenerate geometry: the panel's plane "
                      "passes through the sample")
        row[19] = close
        ratio = float(det.beam @ o)
        row[18] = close / ratio if ratio != 0.0 else math.inf
        row[20] = p.pixel_size
        if p.thickness is not None and det.thick > 0.0:
            row[21] = det.thickstep * (p.thickness / det.thick)
        row[25] = p.pixel_size / oversample
    return out


def single_panel_row(geom: np.ndarray, subpixel_size: float) -> np.ndarray:
    """The one-row table of a single flat detector (the plan's geometry as is)."""
    row = np.zeros((1, PANEL_GEOM_LEN))
    row[0, :25] = geom
    row[0, 25] = subpixel_size
    return row


def pixel_index_and_mask(ps: PanelSet, roi, mask_cfg):
    """(pixel_index, mask, has_mask) over the flat index of ``ps``: the ROI (xmin, xmax,
    ymin, ymax, inclusive, in panel pixel coordinates) in every panel, in flat order; the
    mask combines the panels' masks and ``mask_cfg`` ((panels, slow, fast), or the tiled
    frame's (slow, fast) for a layout)."""
    n, sp, fp = ps.shape
    xmin, xmax, ymin, ymax = roi
    xs = np.arange(max(xmin, 0), min(xmax, fp - 1) + 1, dtype=np.int64)
    ys = np.arange(max(ymin, 0), min(ymax, sp - 1) + 1, dtype=np.int64)
    rows = (np.arange(n, dtype=np.int64)[:, None] * sp + ys[None, :]).ravel()
    pixel_index = (rows[:, None] * fp + xs[None, :]).ravel()
    has_mask = any(p.mask is not None for p in ps.panels) or mask_cfg is not None
    if not has_mask:
        return pixel_index, np.ones(1, dtype=np.uint8), False
    mask = np.ones(ps.shape, dtype=np.uint8)
    for k, p in enumerate(ps.panels):
        if p.mask is not None:
            mask[k] &= (p.mask != 0)
    if mask_cfg is not None:
        m = np.asarray(mask_cfg)
        if m.shape == ps.shape or m.shape == (n * sp, fp):
            mask &= (m.reshape(ps.shape) != 0)          # per panel, or the stacked rows
        elif ps.frame is not None and m.shape == tuple(ps.frame):
            mask &= (ps.untiled(m) != 0)                 # the tiled frame's image
        else:
            want = f"{n} x {sp} x {fp}"
            if ps.frame is not None:
                want += f" or the {ps.frame[1]} x {ps.frame[0]} frame"
            raise ConfigError("detector.mask", m.shape, f"must have {want} pixels")
    return pixel_index, np.ascontiguousarray(mask.reshape(-1)), True


def stacked_detector(det, ps: PanelSet):
    """The frame detector ``det`` as the kernels see a panel set: one raster of
    ``panels * spixels`` rows of ``fpixels`` (the flat index).  Its ``roi`` is the whole
    raster: the per-panel ROI lives in the plan's ``pixel_index`` (a rectangle of the
    stacked raster cannot hold it)."""
    return replace(det, fpixels=ps.fpixels, spixels=ps.count * ps.spixels,
                   roi=(0, ps.fpixels, 0, ps.count * ps.spixels))


def recommended_oversample(ps: PanelSet, beam, wavelength: float, xtalsize_max: float) -> int:
    """nanoBragg's automatic oversampling, ceil(3 * crystal size / (lambda * distance /
    pixel)), the largest over the panels (distance: along the beam to each panel's plane,
    as C's ``distance``); at least 1."""
    best = 1
    for p in ps.panels:
        o = p.odet()
        ratio = float(np.asarray(beam) @ o)
        dist = abs(float(o @ p.origin) / ratio) if ratio != 0.0 else math.inf
        rps = wavelength * dist / p.pixel_size
        r = 3.0 * xtalsize_max / rps if rps > 0.0 else math.inf
        if math.isfinite(r):
            best = max(best, int(math.ceil(r)))
    return best


def file_image(plan, image: np.ndarray):
    """(image, detector) of a multi-panel render as the single-image writers lay it out:
    the tiled frame with zero gaps and the frame detector when the panel set has a
    layout (presets; panel files with 'frame' and 'tile'), else the panels stacked along
    slow (the flat index raster, ``panels * spixels`` rows) and the stacked detector.
    :class:`nbsim.image_model.FileLayout` is the one place this is decided."""
    from ..image_model import FileLayout
    layout = FileLayout(plan)
    return layout.file(image), layout.detector


def panel_detector(plan, k: int):
    """Panel ``k`` of a multi-panel plan as a flat single-panel detector (the frame
    detector with the panel's pix0, axes, pixel counts, pixel size and distances): what a
    per-panel file header describes."""
    p = plan.panels.panels[k]
    det = plan.frame_detector
    o = p.odet()
    close = float(p.origin @ o)
    ratio = float(np.asarray(det.beam) @ o)
    return replace(det, fpixels=p.fpixels, spixels=p.spixels, pixel_size=p.pixel_size,
                   detsize_f=p.fpixels * p.pixel_size, detsize_s=p.spixels * p.pixel_size,
                   pix0=np.array(p.origin, dtype=np.float64), fdet=np.array(p.fast),
                   sdet=np.array(p.slow), odet=o, close_distance=close,
                   distance=close / ratio if ratio != 0.0 else math.inf,
                   roi=(0, p.fpixels, 0, p.spixels))


def panel_file_path(path: str, k: int, count: int) -> str:
    """``path`` with ``_p<k>`` before its extension (one file per panel)."""
    import os
    width = max(2, len(str(count - 1)))
    root, ext = os.path.splitext(str(path))
    return f"{root}_p{k:0{width}d}{ext}"

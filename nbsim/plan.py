"""Config -> Plan: everything the kernel needs as flat contiguous arrays, plus the static
options it is specialised on.  Rotations (phi x domain) are built here, once."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import List, Optional

import numpy as np

from . import physics as ph
from .config import Config
from .geometry.crystal import CrystalGeometry, resolve_crystal, rotated_cells
from .geometry.detector import DetectorGeometry, resolve_detector
from .geometry.sources import SourceSet, resolve_sources
from .kernels.options import KernelOptions
from .units import AVOGADRO, R_E_SQR

WATER_F = 2.57
WATER_MW = 18.0


@dataclass
class Plan:
    config: Config
    detector: DetectorGeometry
    crystal: CrystalGeometry
    sources: SourceSet
    fluence: float
    oversample: int
    recommended_oversample: int
    steps: int
    interpolate: bool
    I_bg: float
    mask: np.ndarray              # flat uint8 (1 = render), length 1 if no mask
    geom: np.ndarray
    subpixel_size: float
    src_dir: np.ndarray
    src_lambda: np.ndarray
    cells: np.ndarray             # (2, nphi*ndom, 9)
    ast: np.ndarray               # a*, b*, c* (1/A)
    Fgrid: np.ndarray
    fgrid_meta: np.ndarray
    default_F: float
    hkls: int
    lattice: np.ndarray
    scalars: np.ndarray
    options: KernelOptions
    carry_needed: bool            # c-parity and some phi step is exactly 0 with a rotation elsewhere
    notes: List[str] = field(default_factory=list)
    # multi-panel detectors (nbsim.geometry.panels): the panels, their geometry table and
    # the frame detector the flags describe; ``detector`` is then the stacked raster of
    # panels * spixels rows the kernels index (flat index, panel-major)
    panels: Optional[object] = None
    panel_geom: Optional[np.ndarray] = None   # (panels, PANEL_GEOM_LEN); None: single
    frame_detector: Optional[DetectorGeometry] = None
    # the beamstop's shadow and bad pixels (nbsim.geometry.defects), or None
    defects: Optional[object] = None

    @property
    def shape(self):
        """The image shape: (spixels, fpixels), or (panels, slow, fast) with panels."""
        if self.panels is not None:
            return self.panels.shape
        return (self.detector.spixels, self.detector.fpixels)

    def panel_table(self) -> np.ndarray:
        """(panels, PANEL_GEOM_LEN) per-panel geometry the kernels look each pixel's
        geometry up in (one row, the plan's own geometry, for a single panel)."""
        if self.panel_geom is not None:
            return self.panel_geom
        from .geometry.panels import single_panel_row
        t = self.__dict__.get("_single_panel_row")
        if t is None:
            t = self.__dict__["_single_panel_row"] = single_panel_row(
                self.geom, float(self.subpixel_size))
        return t

    @property
    def panel_rows(self) -> int:
        """Rows (slow pixels) of one panel of the stacked raster."""
        return int(self.panels.spixels) if self.panels is not None else int(self.detector.spixels)

    def kernel_arrays(self, float32: bool = False):
        """The kernels' argument bundle (:class:`nbsim.kernels.bundle.KernelArrays`), built
        once per precision.  ``float32``: cell tables, reciprocal cell, structure factors
        and lattice constants in float32; the geometry and the sums stay float64."""
        from .kernels.bundle import KernelArrays, crystal_in
        cache = self.__dict__.setdefault("_kernel_arrays", {})
        ka = cache.get(bool(float32))
        if ka is None:
            ka = KernelArrays(
                geom=self.geom, subpixel_size=float(self.subpixel_size),
                oversample=int(self.oversample), thicksteps=int(self.detector.thicksteps),
                fpixels=int(self.detector.fpixels), mask=self.mask, src_dir=self.src_dir,
                src_lambda=self.src_lambda, cells=self.cells,
                ncell=int(self.cells.shape[1]), ast=self.ast,
                Fgrid=self.Fgrid, fgrid_meta=self.fgrid_meta,
                default_F=float(self.default_F), hkls=int(self.hkls), lattice=self.lattice,
                scalars=self.scalars, panel_geom=self.panel_table(),
                panel_rows=self.panel_rows)
            if float32:
                ka = crystal_in(ka, np.float32)
            cache[bool(float32)] = ka
        return ka

    @property
    def roi_bounds(self):
        """(x0, x1, y0, y1): the ROI clipped to the detector, inclusive pixel bounds."""
        fp, sp = self.detector.fpixels, self.detector.spixels
        xmin, xmax, ymin, ymax = self.detector.roi
        return max(xmin, 0), min(xmax, fp - 1), max(ymin, 0), min(ymax, sp - 1)

    def roi_rows_index(self, row0: int, row1: int) -> np.ndarray:
        """Raster indices (int64) of the ROI pixels in detector rows ``row0 <= s < row1``."""
        if self.panels is not None:
            # the panel-major index built by the plan (sorted): the rows' slice of it
            idx, fp = self.pixel_index, self.detector.fpixels
            lo, hi = np.searchsorted(idx, (row0 * fp, row1 * fp))
            return idx[lo:hi]
        x0, x1, y0, y1 = self.roi_bounds
        xs = np.arange(x0, x1 + 1, dtype=np.int64)
        ys = np.arange(max(y0, row0), min(y1 + 1, row1), dtype=np.int64)
        return (ys[:, None] * self.detector.fpixels + xs[None, :]).ravel()

    @cached_property
    def pixel_index(self) -> np.ndarray:
        """Raster indices of the ROI pixels (int64), built on first use: a detector
        rendered in row blocks (:mod:`nbsim.streaming`) never holds the whole index."""
        return self.roi_rows_index(0, self.detector.spixels)

    @property
    def rendered_pixels(self) -> np.ndarray:
        """Raster indices C renders, in raster order: in the ROI and not masked."""
        if self.options.has_mask:
            return self.pixel_index[self.mask[self.pixel_index] != 0]
        return self.pixel_index


def _check_geometry(det: DetectorGeometry) -> None:
    """Refuse geometries nanoBragg would render as nonsense (NaN/inf or a detector through
    the sample)."""
    from .errors import ConfigError
    vals = np.concatenate([det.pix0, det.fdet, det.sdet, det.odet, det.beam,
                           [det.distance, det.close_distance]])
    if not np.all(np.isfinite(vals)):
        raise ConfigError("detector", "geometry",
                          "degenerate geometry (is the beam parallel to the detector plane?)")
    if det.close_distance == 0.0:
        raise ConfigError("detector.pix0_vector", tuple(float(v) for v in det.pix0),
                          "degenerate geometry: the detector plane passes through the sample")


def recommended_oversample(cfg: Config, det: DetectorGeometry, cryst: CrystalGeometry) -> int:
    """C's auto-selected sub-pixel count: ceil(3 x crystal size / reciprocal pixel size)."""
    reciprocal_pixel_size = cfg.beam.wavelength * det.distance / det.pixel_size
    ratio = 3.0 * cryst.xtalsize_max / reciprocal_pixel_size if reciprocal_pixel_size else math.inf
    # C casts ceil() of a non-finite ratio to int (undefined; in practice negative) and then
    # falls back to 1
    recommended = int(math.ceil(ratio)) if math.isfinite(ratio) else 1
    if recommended <= 0:
        recommended = 1
    return recommended


def cell_tables(cfg: Config, cryst: CrystalGeometry, spindle: np.ndarray):
    """The rotated cell of every (phi step, domain): ``(cells (2, nphi*ndom, 9), carry_needed)``.

    Table 0 serves the run's first executed sub-path and table 1 all others; they differ
    only under the c-parity phi=0 carryover (docs/architecture.md).  A dataset rebuilds
    just this (and the crystal) per frame."""
    phis = cryst.phi_values()
    carry_needed = False
    if cfg.mode == "c-parity" and np.any(phis == 0.0) and np.any(phis != 0.0):
        carry_needed = True
        ref = [cryst.a0, cryst.b0, cryst.c0]
        first = rotated_cells(cryst, spindle, phis, entering=ref)
        last_nz = phis[np.nonzero(phis != 0.0)[0][-1]]
        from .geometry.rotations import rotate_axis
        after = [rotate_axis(v, spindle, last_nz) for v in ref]
        rest = rotated_cells(cryst, spindle, phis, entering=after)
        cells = np.stack([first.reshape(-1, 9), rest.reshape(-1, 9)])
    else:
        flat = rotated_cells(cryst, spindle, phis, None).reshape(-1, 9)
        cells = np.stack([flat, flat])
    return np.ascontiguousarray(cells), carry_needed


def make_plan(cfg: Config) -> Plan:
    cfg.validate()
    from .geometry import panels as pnl
    cfg, layout = pnl.frame_config(cfg)
    det = resolve_detector(cfg)
    pset = pnl.resolve_panels(layout, det)
    cryst = resolve_crystal(cfg, cfg.beam.wavelength, cfg.beam.beamsize)
    srcs = resolve_sources(cfg, det.beam, det.polar)
    notes = list(det.notes) + list(cryst.notes)
    if srcs.count == 0:
        from .errors import ConfigError
        raise ConfigError("beam.sources", 0, "no X-ray sources")
    _check_geometry(det)
    fluence = cfg.beam.photon_fluence()
    s = cfg.sampling
    st = cfg.structure
    c = cfg.crystal

    # C decides interpolation from the N given on the command line, before crystal
    # size sets N (l.1779)
    interpolate = st.interpolate
    if interpolate is None:
        interpolate = c.Na <= 2 or c.Nb <= 2 or c.Nc <= 2
    if st.hkls == 0:
        interpolate = False

    recommended = recommended_oversample(cfg, det, cryst)
    if isinstance(layout, pnl.PanelSet):
        # a preset's modules share the frame's distance and pixel: the frame's value
        recommended = pnl.recommended_oversample(pset, det.beam, cfg.beam.wavelength,
                                                 cryst.xtalsize_max)
    oversample = s.oversample if (s.oversample is not None and s.oversample > 0) else recommended
    if oversample <= 0:
        oversample = 1
    steps = srcs.count * cryst.mosaic_domains * cryst.phisteps * oversample * oversample

    I_bg = (WATER_F * WATER_F * R_E_SQR * fluence * s.water_size ** 3 * 1e6 * AVOGADRO / WATER_MW)

    fp, sp = det.fpixels, det.spixels
    xmin, xmax, ymin, ymax = det.roi
    # work, crystal size, auto-oversampling and ROI bounds, before anything big is built
    from .limits import check_plan
    check_plan(cfg, cryst, srcs, det, oversample, recommended,
               not (s.oversample is not None and s.oversample > 0),
               max(0, min(xmax, fp - 1) - max(xmin, 0) + 1)
               * max(0, min(ymax, sp - 1) - max(ymin, 0) + 1))
    mask_cfg = cfg.detector.mask
    # the beamstop's shadow and bad pixels (nbsim extensions) join the mask: not rendered
    from .geometry.defects import detector_defects
    shape = pset.shape if pset is not None else (1, sp, fp)
    defects = detector_defects(cfg.detector, det, pset, shape)
    if defects is not None:
        keep = ~defects.blocked
        if mask_cfg is not None:
            m = np.asarray(mask_cfg)
            if pset is not None and m.size != keep.size:
                m = pset.untiled(m)                 # the tiled frame's image
            if m.size != keep.size:
                from .errors import ConfigError
                raise ConfigError("detector.mask", m.shape, f"must have {sp}x{fp} pixels")
            keep &= (m.reshape(shape) != 0)
        mask_cfg = keep.astype(np.uint8) if pset is not None else \
            keep.reshape(sp, fp).astype(np.uint8)
    has_mask = mask_cfg is not None
    if pset is not None:
        # the ROI applies to every panel's pixel coordinates; the flat index is panel-major
        pixel_index, mask, has_mask = pnl.pixel_index_and_mask(pset, det.roi, mask_cfg)
    elif mask_cfg is not None:
        m = np.asarray(mask_cfg)
        if m.size != fp * sp:
            from .errors import ConfigError
            raise ConfigError("detector.mask", m.shape, f"must have {sp}x{fp} pixels")
        mask = (m.reshape(-1) != 0).astype(np.uint8)
    else:
        mask = np.ones(1, dtype=np.uint8)

    geom = np.zeros(25)
    geom[0:3] = det.pix0
    geom[3:6] = det.fdet
    geom[6:9] = det.sdet
    geom[9:12] = det.odet
    geom[12:15] = det.beam
    geom[15:18] = det.polar
    geom[18] = det.distance
    geom[19] = det.close_distance
    geom[20] = det.pixel_size
    geom[21] = det.thickstep
    geom[22] = det.mu
    geom[23] = cfg.beam.polarization
    geom[24] = s.dmin
    panel_geom = None
    frame_det = None
    if pset is not None:
        if det.curved:
            from .errors import ConfigError
            raise ConfigError("detector.curved", True, "a curved detector cannot have panels")
        panel_geom = pnl.panel_geometry_table(pset, geom, det, oversample)
        frame_det = det
        det = pnl.stacked_detector(det, pset)

    cells, carry_needed = cell_tables(cfg, cryst, det.spindle)

    ast = np.concatenate([cryst.a_star, cryst.b_star, cryst.c_star]).astype(np.float64)
    if st.grid is not None and st.hkls:
        Fgrid = np.ascontiguousarray(st.grid, dtype=np.float64)
        h_range, k_range, l_range = st.h_range, st.k_range, st.l_range
        meta = np.array([st.h_min, st.k_min, st.l_min, st.h_min + h_range - 1,
                         st.k_min + k_range - 1, st.l_min + l_range - 1,
                         h_range, k_range, l_range], dtype=np.int64)
        hkls = int(st.hkls)
    else:
        Fgrid = np.zeros((1, 1, 1))
        meta = np.zeros(9, dtype=np.int64)
        hkls = 0

    lattice = np.array([cryst.Na, cryst.Nb, cryst.Nc, c.fudge], dtype=np.float64)
    scalars = np.array([I_bg, R_E_SQR * fluence / steps, float(steps)])

    interp_code = 0
    if interpolate:
        interp_code = 1
    opts = KernelOptions(
        shape=ph.SHAPE_CODES[c.shape], interp=interp_code,
        os_thick=bool(s.oversample_thick), os_polar=bool(s.oversample_polar),
        os_omega=bool(s.oversample_omega),
        os_running=(cfg.mode == "c-parity") and bool(
            s.oversample_thick or s.oversample_polar or s.oversample_omega),
        curved=det.curved, point_pixel=det.point_pixel, nopolar=bool(cfg.beam.nopolar),
        has_mask=has_mask, use_dmin=s.dmin > 0.0, carry=carry_needed,
        has_water=s.water_size != 0.0, kahn=cfg.beam.polarization != 0.0,
        thick=det.thick != 0.0, float32=cfg.dtype == "float32",
        has_grid=hkls != 0)
    plan = Plan(config=cfg, detector=det, crystal=cryst, sources=srcs, fluence=fluence,
                defects=defects,
                oversample=oversample, recommended_oversample=recommended, steps=steps,
                interpolate=interpolate, I_bg=I_bg, mask=mask,
                geom=geom, subpixel_size=det.pixel_size / oversample,
                src_dir=np.ascontiguousarray(srcs.directions),
                src_lambda=np.ascontiguousarray(srcs.wavelengths), cells=cells, ast=ast,
                Fgrid=Fgrid, fgrid_meta=meta, default_F=float(st.default_F), hkls=hkls,
                lattice=lattice, scalars=scalars, options=opts, carry_needed=carry_needed,
                notes=notes, panels=pset, panel_geom=panel_geom, frame_detector=frame_det)
    if pset is not None:
        # per-panel ROI and mask: the index is not a rectangle of the stacked rows
        plan.__dict__["pixel_index"] = pixel_index
    return plan

"""Configuration objects, in SI units (metres, radians, seconds, photons).

Every field mirrors a variable of nanoBragg.c; ``None`` means "not given"
(C's NaN or -1 sentinels), so the geometry and sampling rules can fill it in
exactly as C does.  Build them directly, or from nanoBragg flags with
:func:`nbsim.args.config_from_args`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from .errors import ConfigError

Vec3 = Tuple[float, float, float]

CONVENTIONS = ("MOSFLM", "XDS", "ADXV", "DENZO", "DIALS", "CUSTOM")
SHAPES = ("SQUARE", "ROUND", "GAUSS", "TOPHAT")
MODES = ("spec", "c-parity")


@dataclass
class DetectorConfig:
    """Pixel detector. Lengths in metres, angles in radians, ORGX/ORGY in pixels.

    ``fpixels``/``spixels`` override ``detsize_f``/``detsize_s`` (C's rule).
    ``pivot`` is "BEAM", "SAMPLE" or None (the convention's default); under a
    non-CUSTOM convention the convention decides regardless (as nanoBragg.c).
    Vectors left as None take the convention's values.
    """
    fpixels: Optional[int] = None
    spixels: Optional[int] = None
    pixel_size: float = 0.1e-3
    detsize_f: float = 102.4e-3
    detsize_s: float = 102.4e-3
    distance: float = 100.0e-3
    close_distance: Optional[float] = None
    convention: str = "MOSFLM"
    pivot: Optional[str] = None
    beam_center_x: Optional[float] = None   # Xbeam, m
    beam_center_y: Optional[float] = None   # Ybeam, m
    xclose: Optional[float] = None          # m
    yclose: Optional[float] = None          # m
    orgx: Optional[float] = None            # pixels
    orgy: Optional[float] = None            # pixels
    rotx: float = 0.0
    roty: float = 0.0
    rotz: float = 0.0
    twotheta: float = 0.0
    fdet_vector: Optional[Vec3] = None
    sdet_vector: Optional[Vec3] = None
    odet_vector: Optional[Vec3] = None
    twotheta_axis: Optional[Vec3] = None
    pix0_vector: Optional[Vec3] = None      # m; honoured in spec mode only
    curved: bool = False
    point_pixel: bool = False
    thick: float = 0.0                      # sensor thickness, m
    thickstep: Optional[float] = None       # m
    thicksteps: Optional[int] = None
    mu: Optional[float] = None              # attenuation coefficient, 1/m
    roi: Optional[Tuple[int, int, int, int]] = None   # xmin xmax ymin ymax, inclusive pixels
    mask: Optional[np.ndarray] = None       # (spixels, fpixels); zero = skip pixel
    # multi-panel detector: a preset name, a geometry.panels.TiledLayout or PanelSet
    # (None: one flat panel); see docs/panels.md
    panels: Optional[object] = None
    # nbsim extensions (docs/effects.md "Beamstop and bad pixels"): a beamstop disk of
    # radius beamstop_radius (m; 0 = none) centred on the direct beam, in the plane
    # perpendicular to the beam through the direct-beam spot, with an arm of full width
    # beamstop_arm_width (m; 0 = none) from its centre outwards at beamstop_arm_angle
    # (rad, from the fast axis towards the slow axis); a fraction of bad (dead or hot)
    # pixels drawn from bad_pixel_seed.  Shadowed and bad pixels join the mask.
    beamstop_radius: float = 0.0
    beamstop_arm_width: float = 0.0
    beamstop_arm_angle: float = 0.0
    bad_pixel_fraction: float = 0.0
    bad_pixel_seed: int = 123456789


@dataclass
class BeamConfig:
    """Incident beam. Wavelength in m, divergence in rad, dispersion as a fraction."""
    wavelength: float = 1.0e-10
    beam_vector: Optional[Vec3] = None
    polar_vector: Optional[Vec3] = None
    polarization: float = 0.0               # Kahn factor
    nopolar: bool = False
    dispersion: float = 0.0                 # delta lambda / lambda (fraction)
    dispstep: Optional[float] = None
    dispsteps: Optional[int] = None
    hdivrange: Optional[float] = None
    hdivstep: Optional[float] = None
    hdivsteps: Optional[int] = None
    vdivrange: Optional[float] = None
    vdivstep: Optional[float] = None
    vdivsteps: Optional[int] = None
    round_div: bool = True
    sources: Optional[np.ndarray] = None    # (n, 5): X Y Z weight lambda(m), NaN = default
    fluence: float = 125932015286227086360700780544.0   # photons/m^2
    flux: float = 0.0                       # photons/s
    exposure: float = 1.0                   # s
    beamsize: float = 1e-4                  # m

    def photon_fluence(self) -> float:
        """Photons per m^2 on the crystal: ``fluence``, or flux x exposure / beamsize^2 when
        a flux is given (C's rule)."""
        if self.flux != 0.0 and self.exposure > 0.0 and self.beamsize >= 0:
            return self.flux * self.exposure / self.beamsize / self.beamsize
        return float(self.fluence)


@dataclass
class CrystalConfig:
    """Crystal. Cell lengths in m, angles in rad; ``a_star_matrix`` in 1/Angstrom-scaled
    MOSFLM form (rows x, y, z; columns a*, b*, c*), rescaled by the wavelength as C does."""
    cell: Optional[Tuple[float, float, float, float, float, float]] = None
    a_star_matrix: Optional[np.ndarray] = None
    misset: Optional[Vec3] = None           # rad, about x then y then z
    misset_random: bool = False
    misset_seed: Optional[int] = None       # C's -misset_seed value (positive); default = seed
    Na: float = 1.0
    Nb: float = 1.0
    Nc: float = 1.0
    sample_x: float = 0.0                   # m (crystal size; overrides N when > 0)
    sample_y: float = 0.0
    sample_z: float = 0.0
    shape: str = "SQUARE"
    fudge: float = 1.0
    mosaic_spread: Optional[float] = None   # rad
    mosaic_domains: Optional[int] = None
    mosaic_seed: int = 12345678             # C's -mosaic_seed value (positive)
    phi0: float = 0.0
    osc: Optional[float] = None
    phistep: Optional[float] = None
    phisteps: Optional[int] = None
    spindle_axis: Optional[Vec3] = None


@dataclass
class StructureConfig:
    """Structure factors: a dense grid indexed [h-h_min, k-k_min, l-l_min] plus default_F."""
    grid: Optional[np.ndarray] = None       # float64, shape (h_range+1, k_range+1, l_range+1)
    h_min: int = 0
    k_min: int = 0
    l_min: int = 0
    h_range: int = 0
    k_range: int = 0
    l_range: int = 0
    hkls: int = 0                           # entries read (0 = no grid)
    default_F: float = 0.0
    interpolate: Optional[bool] = None      # None = auto (on if any N <= 2)


@dataclass
class SamplingConfig:
    oversample: Optional[int] = None        # None = C's auto-selection
    oversample_thick: bool = False
    oversample_polar: bool = False
    oversample_omega: bool = False
    dmin: float = 0.0                       # m
    water_size: float = 0.0                 # m


@dataclass
class Config:
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    beam: BeamConfig = field(default_factory=BeamConfig)
    crystal: CrystalConfig = field(default_factory=CrystalConfig)
    structure: StructureConfig = field(default_factory=StructureConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    mode: str = "spec"
    dtype: str = "float64"
    device: str = "cpu"
    seed: Optional[int] = None              # noise seed (positive, C's -seed value)

    def validate(self) -> "Config":
        """Raise :class:`ConfigError` naming the first bad parameter."""
        d, b, c, s, st = self.detector, self.beam, self.crystal, self.sampling, self.structure

        def finite(name, v, positive=False, nonneg=False):
            if v is None:
                return
            try:
                fv = float(v)
            except (TypeError, ValueError):
                raise ConfigError(name, v, "must be a number") from None
            if not math.isfinite(fv):
                raise ConfigError(name, v, "must be finite")
            if positive and fv <= 0:
                raise ConfigError(name, v, "must be > 0")
            if nonneg and fv < 0:
                raise ConfigError(name, v, "must be >= 0")

        if self.mode not in MODES:
            raise ConfigError("mode", self.mode, f"must be one of {MODES}")
        if self.dtype not in ("float64", "float32"):
            raise ConfigError("dtype", self.dtype, "must be 'float64' or 'float32'")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ConfigError("device", self.device, "must be 'cpu', 'cuda' or 'auto'")
        if d.convention not in CONVENTIONS:
            raise ConfigError("detector.convention", d.convention, f"must be one of {CONVENTIONS}")
        if d.pivot not in (None, "BEAM", "SAMPLE"):
            raise ConfigError("detector.pivot", d.pivot, "must be 'BEAM', 'SAMPLE' or None")
        if c.shape not in SHAPES:
            raise ConfigError("crystal.shape", c.shape, f"must be one of {SHAPES}")
        finite("detector.pixel_size", d.pixel_size, positive=True)
        finite("detector.distance", d.distance, positive=True)
        finite("detector.close_distance", d.close_distance, positive=True)
        finite("detector.detsize_f", d.detsize_f, positive=True)
        finite("detector.detsize_s", d.detsize_s, positive=True)
        for name in ("fpixels", "spixels"):
            v = getattr(d, name)
            if v is not None and (int(v) != v or v < 0 or v > 100000):
                raise ConfigError(f"detector.{name}", v, "must be a whole number of pixels (0-100000)")
        for name in ("beam_center_x", "beam_center_y", "xclose", "yclose", "orgx", "orgy",
                     "rotx", "roty", "rotz", "twotheta", "thick", "thickstep", "mu"):
            finite(f"detector.{name}", getattr(d, name))
        for name in ("fdet_vector", "sdet_vector", "odet_vector", "twotheta_axis", "pix0_vector"):
            v = getattr(d, name)
            if v is not None:
                arr = np.asarray(v, dtype=float)
                if arr.shape != (3,) or not np.all(np.isfinite(arr)):
                    raise ConfigError(f"detector.{name}", v, "must be three finite numbers")
        for name in ("beam_vector", "polar_vector"):
            v = getattr(b, name)
            if v is not None:
                arr = np.asarray(v, dtype=float)
                if arr.shape != (3,) or not np.all(np.isfinite(arr)) or not np.any(arr):
                    raise ConfigError(f"beam.{name}", v, "must be three finite numbers, not all zero")
        if c.spindle_axis is not None:
            arr = np.asarray(c.spindle_axis, dtype=float)
            if arr.shape != (3,) or not np.all(np.isfinite(arr)):
                raise ConfigError("crystal.spindle_axis", c.spindle_axis, "must be three finite numbers")
        finite("beam.wavelength", b.wavelength, positive=True)
        if b.wavelength > 1e-6:
            raise ConfigError("beam.wavelength", b.wavelength, "is in metres; > 1 micron is not an X-ray")
        for name in ("polarization", "dispersion", "dispstep", "hdivrange", "hdivstep",
                     "vdivrange", "vdivstep", "flux", "exposure", "beamsize"):
            finite(f"beam.{name}", getattr(b, name))
        finite("beam.fluence", b.fluence, nonneg=True)
        for name in ("dispsteps", "hdivsteps", "vdivsteps"):
            v = getattr(b, name)
            if v is not None and v > 100000:
                raise ConfigError(f"beam.{name}", v, "is unreasonably large (> 100000)")
        if c.cell is None and c.a_star_matrix is None:
            raise ConfigError("crystal.cell", None, "no unit cell: give a cell or an A matrix")
        if c.cell is not None:
            if len(c.cell) != 6:
                raise ConfigError("crystal.cell", c.cell, "needs a b c alpha beta gamma")
            for i, v in enumerate(c.cell):
                finite("crystal.cell", v)
            if c.cell[0] <= 0:
                raise ConfigError("crystal.cell", c.cell, "cell length a must be > 0")
        if c.a_star_matrix is not None:
            m = np.asarray(c.a_star_matrix, dtype=float)
            if m.shape != (3, 3) or not np.all(np.isfinite(m)):
                raise ConfigError("crystal.a_star_matrix", c.a_star_matrix, "must be 3x3 finite")
            if abs(np.linalg.det(m)) == 0.0:
                raise ConfigError("crystal.a_star_matrix", "singular", "A matrix has zero volume")
        for name in ("Na", "Nb", "Nc"):
            v = getattr(c, name)
            finite(f"crystal.{name}", v, nonneg=True)
            if v > 1e6:
                raise ConfigError(f"crystal.{name}", v, "is unreasonably large (> 1e6 cells)")
        for name in ("sample_x", "sample_y", "sample_z", "fudge", "mosaic_spread", "phi0", "osc",
                     "phistep"):
            finite(f"crystal.{name}", getattr(c, name))
        for name in ("mosaic_domains", "phisteps"):
            v = getattr(c, name)
            if v is not None and v > 1000000:
                raise ConfigError(f"crystal.{name}", v, "is unreasonably large")
        finite("sampling.dmin", s.dmin, nonneg=True)
        finite("sampling.water_size", s.water_size, nonneg=True)
        if s.oversample is not None and (int(s.oversample) != s.oversample or s.oversample > 1000):
            raise ConfigError("sampling.oversample", s.oversample, "must be a whole number <= 1000")
        finite("structure.default_F", st.default_F)
        if st.grid is not None:
            g = np.asarray(st.grid)
            if g.ndim != 3 or not np.all(np.isfinite(g)):
                raise ConfigError("structure.grid", g.shape, "must be a finite 3-D array")
        if st.hkls == 0 and st.default_F == 0.0:
            raise ConfigError("structure.default_F", 0.0,
                              "no structure factors: give an HKL grid or a nonzero default_F")
        if d.mask is not None:
            m = np.asarray(d.mask)
            if m.ndim != 2 and not (d.panels is not None and m.ndim == 3):
                # with panels also (panels, slow, fast): nbsim.geometry.panels
                raise ConfigError("detector.mask", m.shape, "must be a 2-D array")
        finite("detector.beamstop_radius", d.beamstop_radius, nonneg=True)
        finite("detector.beamstop_arm_width", d.beamstop_arm_width, nonneg=True)
        finite("detector.beamstop_arm_angle", d.beamstop_arm_angle)
        if d.beamstop_arm_width > 0 and d.beamstop_radius <= 0:
            raise ConfigError("detector.beamstop_arm_width", d.beamstop_arm_width,
                              "an arm needs a beamstop (a radius > 0)")
        finite("detector.bad_pixel_fraction", d.bad_pixel_fraction, nonneg=True)
        if d.bad_pixel_fraction > 0.5:
            raise ConfigError("detector.bad_pixel_fraction", d.bad_pixel_fraction,
                              "must be a fraction of the pixels <= 0.5")
        if not 0 < int(d.bad_pixel_seed) < 2 ** 63:
            raise ConfigError("detector.bad_pixel_seed", d.bad_pixel_seed, "must be positive")
        if d.roi is not None and len(d.roi) != 4:
            raise ConfigError("detector.roi", d.roi, "needs xmin xmax ymin ymax")
        # physical ranges, derived step counts and table sizes (nbsim/limits.py)
        from .limits import check_config
        check_config(self)
        return self

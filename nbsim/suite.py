"""The noisify / nonBragg suite inside ``nbsim``: its flags in an nbsim run (the CLI, the
file outputs and datasets call this).

* :func:`add_amorphous_background` -- with ``-stol FILE`` (``-4stol``, ``-Q``) in the
  default mode, nonBragg.c's amorphous scattering of a sample ``-thickness`` mm thick
  (default 0.1), ``-beamsize`` wide and high (nonBragg.c's default 0.1 mm cube, clipped by
  the beam), ``-density`` g/cm^3, ``-MW`` g/mol, under nbsim's fluence, is computed on
  nbsim's own detector and sources (:func:`nbsim.amorphous.geometry_from_nbsim`) and
  added to the float image, as users chain ``nanoBragg`` and ``nonBragg`` today (C adds
  the two float files).  Under ``-c_parity`` these flags change nothing, as in nanoBragg.c.
* :func:`effects_params` / :func:`noisify_noise_image` -- with any of noisify.c's flags
  (``-psf -psf_fwhm -psf_radius -psf_method -readout -flicker -calibration -calib_seed
  -gain -bits``) the noise image is made by noisify.c's chain (:mod:`nbsim.effects`) from
  the float image with nbsim's ``-seed`` and ``-adc``: the same integers as
  ``nbsim-noisify -floatfile floatimage.bin`` with the same flags (noisify's defaults,
  e.g. 3 % calibration error, apply once the chain is on; the whole image is processed,
  whatever the ROI).
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np

__all__ = ["prepare", "Suite", "SuiteError", "add_amorphous_background", "effects_params", "noisify_noise_image",
           "EFFECT_KEYS", "suite_notes"]

EFFECT_KEYS = ("psf", "psf_fwhm", "psf_radius", "psf_method", "readout", "flicker",
               "calibration", "calib_seed", "gain", "bits")
_AMORPHOUS_KEYS = ("thickness", "density", "MW")
#: the -ice crystallite size's default (m)
ICE_CRYSTALLITE = 100e-9


from .detector_model import SuiteError   # noqa: F401  (one error class for the suite flags)


class Suite:
    """What the suite flags ask of one ``nbsim`` run, checked before the render."""

    def __init__(self, parsed, adc_offset: float):
        self.parsed = parsed
        self.notes = suite_notes(parsed)
        self.table = None
        s = parsed.outputs.suite
        if "stol" in s and parsed.config.mode == "spec":
            from .amorphous import read_stol
            from .io.errors import FormatError
            try:
                self.table = read_stol(s["stol"][1], s.get("stol_flavour", "stol"))
            except FormatError as e:
                raise SuiteError(f"{s['stol'][0]} {e}") from None
            _amorphous_sample_values(s)
        self.ice = ice_values(s)        # (thickness m, crystallite m) or None
        self.effects = effects_params(parsed, adc_offset) if parsed.outputs.calculate_noise else None
        # the counting / JUNGFRAU detector (nbsim.detector_model), or None
        from .detector_model import model_notes, resolve_detector_model
        self.detector = resolve_detector_model(parsed)
        self.notes += model_notes(parsed)
        self.background_image = None    # float64 photons/pixel, once :meth:`background` ran
        self._prepared = None

    def prepare_background(self, plan):
        """Compute the backgrounds now (before the render: a bad -ice_crystallite for
        this detector stops the run before any work); :meth:`background` uses them."""
        if self._prepared is None:
            self._prepared = detector_background(self, plan)
        return self._prepared

    def background(self, plan, img32):
        """``(image, lines)``: the float image plus the backgrounds (-stol, -ice, hot
        pixels; kept as ``background_image`` for the run's other outputs, e.g. -truth's
        Bragg fraction)."""
        bg, lines = self.prepare_background(plan)
        if bg is None:
            return img32, []
        self.background_image = bg
        return add_background(img32, bg), lines

    def detector_noise(self, img32, noise_idum, roi=None):
        """``(file pixels uint16, lines)`` of the counting / JUNGFRAU detector (only when
        ``self.detector``): its counts for ``-seed`` = ``-noise_idum`` (C's idum of
        ``-seed S`` is ``-S``), clipped to 0..65535, no ADC offset."""
        counts = self.detector.counts(img32, -int(noise_idum), roi=roi)
        return detector_file_pixels(counts), list(self.detector.lines)

    def noise(self, img32, noise_idum):
        """``(integers, bits, lines)`` by noisify.c's chain (only when ``self.effects``)."""
        return noisify_noise_image(self.parsed, self.effects, img32, noise_idum)


def detector_file_pixels(counts: np.ndarray) -> np.ndarray:
    """The -noisefile pixels of a detector model's counts: clipped to 0..65535 (uint16)."""
    return np.clip(counts, 0, 65535).astype(np.uint16)


def prepare(parsed, adc_offset: float) -> Suite:
    return Suite(parsed, adc_offset)


def _val(suite, key, default=None, conv=float):
    if key not in suite:
        return default
    flag, v = suite[key]
    return conv(v)


def suite_notes(parsed) -> List[str]:
    """Notes for suite flags that change nothing in this run."""
    s = parsed.outputs.suite
    notes = []
    cparity = parsed.config.mode != "spec"
    if "stol" in s and cparity:
        notes.append(f"{s['stol'][0]} is accepted for compatibility with nanoBragg; "
                     f"it changes nothing in the outputs (c-parity)")
    if "stol" not in s or cparity:
        for k in _AMORPHOUS_KEYS:
            if k in s:
                notes.append(f"{s[k][0]} is accepted for compatibility with nanoBragg; "
                             f"it changes nothing in the outputs (no amorphous background in this run)")
    if "ice_crystallite" in s and "ice" not in s:
        notes.append(f"{s['ice_crystallite'][0]} changes nothing without -ice")
    if not parsed.outputs.calculate_noise:
        for k in EFFECT_KEYS:
            if k in s:
                notes.append(f"{s[k][0]} changes nothing without a noise image (-nonoise)")
    return notes


def _amorphous_sample_values(s):
    thickness = _val(s, "thickness", 0.1) / 1000.0
    density = _val(s, "density", 1.0) * 1e6
    mw = _val(s, "MW", 18.0)
    if thickness <= 0:
        raise SuiteError("-thickness: the amorphous sample must be thicker than 0 mm")
    if density <= 0 or mw <= 0:
        raise SuiteError(f"{s['density'][0] if density <= 0 else s['MW'][0]}: must be positive")
    return thickness, density, mw


def ice_values(s):
    """``(thickness m, crystallite m)`` of ``-ice UM [-ice_crystallite NM]``, or None."""
    if "ice" not in s:
        return None
    t = _val(s, "ice")
    L = _val(s, "ice_crystallite", ICE_CRYSTALLITE * 1e9)
    if not (np.isfinite(t) and t > 0):
        raise SuiteError(f"{s['ice'][0]}: the ice thickness must be > 0 um, got {s['ice'][1]}")
    if t > 1e5:
        raise SuiteError(f"{s['ice'][0]}: an ice layer of {t:g} um (> 10 cm) is not a sample")
    if not (np.isfinite(L) and 0.5 <= L <= 1e4):
        raise SuiteError(f"{s['ice_crystallite'][0]}: the crystallite size must be "
                         f"0.5 .. 1e4 nm, got {s['ice_crystallite'][1]}")
    return t * 1e-6, L * 1e-9


def wants_background(parsed, suite) -> bool:
    """Whether the run adds a background image: -stol (default mode), -ice, hot pixels."""
    return (suite.table is not None or suite.ice is not None
            or parsed.config.detector.bad_pixel_fraction > 0)


def detector_background(suite, plan) -> Tuple[Optional[np.ndarray], List[str]]:
    """The photons/pixel every frame adds to the render (float64, the plan's image shape:
    (slow, fast), or (panels, slow, fast) for a panel set), or None: the -stol amorphous
    background, the -ice rings, 0 where the beamstop's shadow or a bad pixel is, and
    :data:`~nbsim.geometry.defects.HOT_PIXEL_PHOTONS` on hot pixels
    (nbsim.geometry.defects); once per run / dataset.  Returns ``(background, lines)``."""
    parsed = suite.parsed
    bg, lines = None, []
    if suite.table is not None:
        bg, lines = amorphous_background(parsed, plan, suite.table)
    if suite.ice is not None:
        ice, ice_lines = ice_background(parsed, plan, *suite.ice)
        bg = ice if bg is None else bg + ice
        lines = lines + ice_lines
    defects = getattr(plan, "defects", None)
    if defects is not None and (bg is not None or defects.hot.any()):
        from .geometry.defects import HOT_PIXEL_PHOTONS
        shape = np.shape(bg) if bg is not None else \
            (defects.hot.shape if getattr(plan, "panels", None) is not None
             else defects.hot.shape[1:])
        out = np.zeros(shape) if bg is None else np.array(bg, dtype=np.float64)
        out[defects.blocked.reshape(shape)] = 0.0
        hot = defects.hot
        from .image_model import outside_roi
        outside = outside_roi(plan)
        if outside is not None:             # every product is 0 outside the -roi
            hot = hot & ~outside[None, :, :]
        out[hot.reshape(shape)] = HOT_PIXEL_PHOTONS
        bg = out
    return bg, lines


def _per_panel(plan, table, sample):
    """The amorphous kernel with ``table`` and ``sample`` on ``plan``'s detector:
    (slow, fast), or (panels, slow, fast) each panel from its own geometry."""
    from .amorphous import amorphous_image, geometry_from_nbsim
    cfg = plan.config
    device = "cuda" if cfg.device == "cuda" else "cpu"
    if getattr(plan, "panels", None) is None:
        geom = geometry_from_nbsim(plan.detector, plan.sources, plan.oversample)
        return amorphous_image(geom, table, sample, device=device)
    # (panels, slow, fast): each panel from its own geometry (origin, axes, pixel,
    # distance), not the stacked raster the kernels index, with the -roi in its own
    # pixel coordinates; once per run / dataset
    from dataclasses import replace

    from .geometry.panels import panel_detector
    x0, x1, y0, y1 = (int(v) for v in plan.frame_detector.roi)
    parts = []
    for k in range(plan.panels.count):
        det = panel_detector(plan, k)
        det = replace(det, roi=(max(0, x0), min(det.fpixels, x1),
                                max(0, y0), min(det.spixels, y1)))
        parts.append(np.asarray(amorphous_image(geometry_from_nbsim(
            det, plan.sources, plan.oversample), table, sample, device=device)))
    return np.stack(parts)


def _max_stol(plan, lam_min: float) -> Optional[float]:
    """The largest sin(theta)/lambda (1/m) on ``plan``'s detector: the largest scattering
    angle of a flat panel is at one of its corners (the angle to the beam is quasi-convex
    on a plane while it is < 90 deg); None (no bound) for a curved detector or a corner
    at or behind 90 deg."""
    det = plan.frame_detector if getattr(plan, "panels", None) is not None else plan.detector
    if det.curved:
        return None
    b = np.asarray(det.beam, dtype=np.float64)
    b = b / np.linalg.norm(b)
    if getattr(plan, "panels", None) is None:
        rows = [(det.pix0, det.fdet, det.sdet, det.fpixels * det.pixel_size,
                 det.spixels * det.pixel_size)]
    else:
        rows = [(p.origin, p.fast, p.slow, p.fpixels * p.pixel_size,
                 p.spixels * p.pixel_size) for p in plan.panels.panels]
    cos_min = 1.0
    for o, f, s_, wf, ws in rows:
        o, f, s_ = (np.asarray(v, dtype=np.float64) for v in (o, f, s_))
        for cf in (0.0, wf):
            for cs in (0.0, ws):
                c = o + cf * f + cs * s_
                cos_min = min(cos_min, float(c @ b) / float(np.linalg.norm(c)))
    if cos_min <= 0.0:
        return None
    two_theta = math.acos(min(1.0, cos_min))
    return 1.01 * math.sin(two_theta / 2.0) / lam_min


def ice_background(parsed, plan, thickness: float, crystallite: float):
    """The -ice rings (float64 photons/pixel, as :func:`amorphous_background`) of an ice
    Ih layer ``thickness`` (m) of crystallites ``crystallite`` (m) across the beam
    (nbsim.amorphous.ice), and the line to print."""
    from .amorphous.ice import ice_sample, ice_table
    cfg = parsed.config
    lam_min = float(np.min(plan.sources.wavelengths))
    try:
        table = ice_table(lam_min, crystallite, _max_stol(plan, lam_min))
    except ValueError as e:
        raise SuiteError(f"-ice_crystallite {crystallite * 1e9:g}: {e}") from None
    sample = ice_sample(thickness, float(cfg.beam.beamsize), float(plan.fluence),
                        float(cfg.beam.polarization), bool(getattr(cfg.beam, "nopolar", False)))
    # the cubic interpolation's overshoot far from the rings is clipped (ice.py)
    bg = np.maximum(np.asarray(_per_panel(plan, table, sample), dtype=np.float64), 0.0)
    _, cells, *_ = sample.resolved()
    return bg, ["ice Ih rings: %.6g um of ice, %.6g unit cells, crystallites %.6g nm, "
                "max %.6g photons/pixel" % (thickness * 1e6, cells, crystallite * 1e9,
                                             float(bg.max()))]


def add_amorphous_background(parsed, plan, img32: np.ndarray, table) -> Tuple[np.ndarray, List[str]]:
    """``img32`` plus the -stol background (a new array), and the lines to print."""
    bg, lines = amorphous_background(parsed, plan, table)
    return add_background(img32, bg), lines


def add_background(img32: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """The float32 image plus the float64 background, rounded once to float32."""
    return (img32.astype(np.float64) + bg).astype(np.float32)


def amorphous_background(parsed, plan, table) -> Tuple[np.ndarray, List[str]]:
    """The -stol background (float64 photons/pixel: (slow, fast), or (panels, slow, fast)
    for a panel set, each panel from its own geometry) of ``plan``'s detector, sources
    and fluence, and the line to print (it does not depend on the crystal
    orientation)."""
    from .amorphous import AmorphousSample
    s = parsed.outputs.suite
    path = s["stol"][1]
    cfg = parsed.config
    thickness, density, mw = _amorphous_sample_values(s)
    sample = AmorphousSample(thickness=thickness, density=density, molecular_weight=mw,
                             fluence=float(plan.fluence), beamsize=float(cfg.beam.beamsize),
                             polarization=float(cfg.beam.polarization),
                             nopolar=bool(getattr(cfg.beam, "nopolar", False)))
    bg = _per_panel(plan, table, sample)
    _, molecules, *_ = sample.resolved()
    return bg, ["amorphous background from %s: %d points, %.6g molecules, max %.6g photons/pixel"
                 % (path, table.points, molecules, float(bg.max()))]


def effects_params(parsed, adc_offset: float):
    """:class:`nbsim.effects.NoisifyParams` from the suite flags, or None if none given."""
    s = parsed.outputs.suite
    if not any(k in s for k in EFFECT_KEYS):
        return None
    from .effects import NoisifyParams
    det_pixel = float(parsed.config.detector.pixel_size)
    psf = None
    if "psf" in s:
        t = str(s["psf"][1]).lower()
        psf = "gauss" if "gauss" in t else "fiber" if "fiber" in t else None
        if psf is None:
            raise SuiteError(f"-psf: unknown PSF type {s['psf'][1]!r} (expected gauss or fiber)")
    fwhm_m = float(np.float32(_val(s, "psf_fwhm", 46.0) / 1e6))     # noisify.c: a float
    if psf is not None and not fwhm_m > 0.0:
        raise SuiteError("-psf_fwhm: must be positive")
    radius = _val(s, "psf_radius", 0.0)
    if radius < 0:
        raise SuiteError("-psf_radius: must be >= 0 pixels (0 = automatic)")
    method = _val(s, "psf_method", "auto", str)
    if method not in ("auto", "exact", "fft"):
        raise SuiteError(f"-psf_method: must be auto, exact or fft, got {method!r}")
    bits = _val(s, "bits", 16, int)
    if bits not in (16, 32):
        raise SuiteError(f"-bits: must be 16 or 32, got {bits}")
    return NoisifyParams(psf_type=psf, psf_fwhm_pixels=fwhm_m / det_pixel,
                         psf_radius=int(radius), psf_method=method,
                         readout=_val(s, "readout", 0.0), flicker=_val(s, "flicker", 0.0),
                         calibration=_val(s, "calibration", 0.03), gain=_val(s, "gain", 1.0),
                         adc_offset=float(adc_offset), bits=bits, noise=True)


def noisify_noise_image(parsed, params, img32: np.ndarray, noise_idum: int):
    """Noise image by noisify.c's chain: ``(integers, bits, lines)``."""
    from .effects import NoisifyStreams, noisify
    res = noisify(img32, params, NoisifyStreams(int(noise_idum), calib_idum(parsed)))
    return res.noisy.image(params.bits), params.bits, res.messages


def calib_idum(parsed) -> int:
    """noisify.c's calibration-stream idum: ``-calib_seed``, else its 123456789."""
    from .rng import idum_from_seed_flag
    s = parsed.outputs.suite
    return (idum_from_seed_flag(int(s["calib_seed"][1])) if "calib_seed" in s
            else 123456789)


def write_noise_smv(path, image: np.ndarray, header, bits: int) -> None:
    """nanoBragg's noise-image SMV file, with noisify.c's TYPE for 32-bit integers."""
    from .io._atomic import atomic_open
    from .io.smv import format_smv_header
    h = format_smv_header(header, noise=True)
    if bits == 32:
        h = h.rstrip(b" ").replace(b"TYPE=unsigned_short;", b"TYPE=long_integer;")
        h += b" " * max(0, 512 - len(h))
    dt = "<u2" if bits == 16 else "<u4"
    with atomic_open(path, "wb") as fh:
        fh.write(h)
        fh.write(np.ascontiguousarray(image, dtype=dt).tobytes())

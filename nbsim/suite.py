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

from typing import List, Tuple

import numpy as np

__all__ = ["prepare", "Suite", "SuiteError", "add_amorphous_background", "effects_params", "noisify_noise_image",
           "EFFECT_KEYS", "suite_notes"]

EFFECT_KEYS = ("psf", "psf_fwhm", "psf_radius", "psf_method", "readout", "flicker",
               "calibration", "calib_seed", "gain", "bits")
_AMORPHOUS_KEYS = ("thickness", "density", "MW")


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
        self.effects = effects_params(parsed, adc_offset) if parsed.outputs.calculate_noise else None
        # the counting / JUNGFRAU detector (nbsim.detector_model), or None
        from .detector_model import model_notes, resolve_detector_model
        self.detector = resolve_detector_model(parsed)
        self.notes += model_notes(parsed)
        self.background_image = None    # float64 photons/pixel, once :meth:`background` ran

    def background(self, plan, img32):
        """``(image, lines)``: the float image plus the -stol background (kept as
        ``background_image`` for the run's other outputs, e.g. -truth's Bragg fraction)."""
        if self.table is None:
            return img32, []
        bg, lines = amorphous_background(self.parsed, plan, self.table)
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
    from .amorphous import AmorphousSample, amorphous_image, geometry_from_nbsim
    s = parsed.outputs.suite
    path = s["stol"][1]
    cfg = parsed.config
    thickness, density, mw = _amorphous_sample_values(s)
    sample = AmorphousSample(thickness=thickness, density=density, molecular_weight=mw,
                             fluence=float(plan.fluence), beamsize=float(cfg.beam.beamsize),
                             polarization=float(cfg.beam.polarization),
                             nopolar=bool(getattr(cfg.beam, "nopolar", False)))
    device = "cuda" if cfg.device == "cuda" else "cpu"
    if getattr(plan, "panels", None) is None:
        geom = geometry_from_nbsim(plan.detector, plan.sources, plan.oversample)
        bg = amorphous_image(geom, table, sample, device=device)
    else:
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
        bg = np.stack(parts)
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

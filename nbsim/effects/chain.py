"""The whole noisify.c chain as one function of an image and two seeds.

:func:`noisify` = photon scale -> (noiseless integers) -> flicker, calibration,
Poisson -> PSF -> gain, ADC offset, readout -> 16/32-bit integers, in noisify.c's order
(see :mod:`nbsim.effects.detector`).  It returns arrays and the lines noisify.c
prints; writing files is the caller's business (:mod:`nbsim.cli.noisify`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from ..io.cformat import c_g
from . import detector, psf

__all__ = ["NoisifyParams", "NoisifyResult", "noisify", "validate_params"]


@dataclass
class NoisifyParams:
    """noisify.c's knobs, in its units (fractions, ADU, ADU/photon, pixels)."""

    scale: float = 1.0                    # -scale: multiplies the input
    fluence: float = detector.DEFAULT_FLUENCE   # -fluence, photons/m^2
    psf_type: Optional[str] = None        # None, 'gauss' or 'fiber'
    psf_fwhm_pixels: float = 0.46         # FWHM in pixels (C: (float)(um/1e6)/pixel)
    psf_radius: int = 0                   # pixels, 0 = automatic
    psf_method: str = "auto"              # 'auto', 'exact' (C bit for bit) or 'fft'
    readout: float = 0.0                  # ADU rms
    flicker: float = 0.0                  # fractional
    calibration: float = 0.03             # fractional, static per pixel
    gain: float = 1.0                     # ADU/photon
    adc_offset: float = 40.0              # ADU
    bits: int = 16                        # 16 or 32
    noise: bool = True                    # False: -nonoise


@dataclass
class NoisifyResult:
    noiseless: detector.ADUResult
    noisy: Optional[detector.ADUResult]
    photons: np.ndarray                   # photons/pixel before noise
    messages: List[str] = field(default_factory=list)


def validate_params(p: NoisifyParams) -> None:
    """Raise ValueError (naming the flag) for values noisify.c would misuse."""
    if p.psf_type is not None and p.psf_type not in psf.PSF_TYPES:
        raise ValueError(f"-psf: unknown PSF type {p.psf_type!r} (expected gauss or fiber)")
    if p.psf_type is not None and not p.psf_fwhm_pixels > 0.0:
        raise ValueError(f"-psf_fwhm: must be positive, got {p.psf_fwhm_pixels} pixels")
    if p.psf_radius < 0:
        raise ValueError(f"-psf_radius: must be >= 0 pixels (0: automatic), got {p.psf_radius}")
    if p.bits not in (16, 32):
        raise ValueError(f"-bits: must be 16 or 32, got {p.bits}")


def _psf_lines(r: psf.PSFResult, auto: bool) -> List[str]:
    lines = []
    if auto:
        lines.append("  maximum input photon/pixel: %s" % c_g(r.max_input))
        if r.skipped:
            lines.append("WARNING: no photons, PSF skipped")
            return lines
        lines.append("  auto-selected psf_radius = %d pixels" % r.radius)
    lines.append("adding back %s lost photons" % c_g(r.lost_photons))
    return lines


def noisify(image, p: NoisifyParams, streams: Optional[detector.NoisifyStreams] = None,
            *, workers: Optional[int] = None) -> NoisifyResult:
    """Run noisify.c's chain on ``image`` (float32, input units): (slow, fast), or
    (panels, slow, fast) for a multi-panel frame.

    Per-pixel steps (flicker, calibration, Poisson, gain, ADC, readout) draw their
    streams in raster order over panels (panel, slow, fast); a PSF stays inside its
    panel (:func:`nbsim.effects.psf.apply_psf`).  The results have ``image``'s shape.
    ``streams``: the random streams (default: :class:`~detector.NoisifyStreams` seeded
    like noisify.c with no seed flags); advanced in place.
    """
    validate_params(p)
    img = np.ascontiguousarray(image, dtype=np.float32)
    if img.ndim not in (2, 3):
        raise ValueError("noisify image must be (slow, fast) or (panels, slow, fast)")
    msgs: List[str] = []
    photons = detector.photon_scale_image(img, p.scale, p.fluence)
    use_psf = p.psf_type is not None and p.psf_fwhm_pixels > 0.0
    current = photons
    if not p.noise and use_psf:
        msgs.append("  applying PSF to noiseless image width = %s pixels"
                    % c_g(p.psf_fwhm_pixels))
        r = psf.apply_psf(current, p.psf_type, p.psf_fwhm_pixels, p.psf_radius,
                          method=p.psf_method, workers=workers)
        msgs.extend(_psf_lines(r, p.psf_radius == 0))
        current = r.image
    noiseless = detector.adu_integers(current, p.gain, p.adc_offset, noisy=False)
    if not p.noise:
        return NoisifyResult(noiseless, None, photons, msgs)
    if streams is None:
        streams = detector.NoisifyStreams.from_flags()
    counts, total = detector.photon_noise(current, streams, p.flicker, p.calibration)
    if use_psf:
        msgs.append("%s photons on noise image before PSF" % c_g(total, ".0f"))
        r = psf.apply_psf(counts, p.psf_type, p.psf_fwhm_pixels, p.psf_radius,
                          method=p.psf_method, workers=workers)
        msgs.extend(_psf_lines(r, p.psf_radius == 0))
        counts = r.image
    noisy = detector.adu_integers(counts, p.gain, p.adc_offset, p.readout, streams, noisy=True)
    msgs.append("%s photons on noise image (%d overloads)"
                % (c_g(noisy.photons, ".0f"), noisy.overloads(p.bits)))
    return NoisifyResult(noiseless, noisy, photons, msgs)

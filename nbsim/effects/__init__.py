"""Detector effects on a rendered image: functions of an image and seeds, no files.

* :mod:`.psf` -- Gaussian / fiber point-spread function (noisify.c's, exact or FFT);
* :mod:`.detector` -- photon scale, flicker, calibration error, Poisson counts, gain,
  ADC offset, readout noise, 16/32-bit integers, with noisify.c's random streams;
* :mod:`.chain` -- the whole noisify.c chain in its order (:func:`noisify`);
* :mod:`.counting` -- a photon-counting detector (charge sharing, dead time, counter);
* :mod:`.jungfrau` -- JUNGFRAU's gain switching (three stages, per-pixel calibration).

The order, the seeds and what matches C exactly: docs/effects.md.
"""
from .chain import NoisifyParams, NoisifyResult, noisify, validate_params
from .detector import NoisifyStreams, adu_integers, photon_noise, photon_scale_image
from .psf import apply_psf, apply_psf_exact, apply_psf_fft, psf_kernel

__all__ = ["NoisifyParams", "NoisifyResult", "noisify", "validate_params", "NoisifyStreams",
           "adu_integers", "photon_noise", "photon_scale_image", "apply_psf",
           "apply_psf_exact", "apply_psf_fft", "psf_kernel"]

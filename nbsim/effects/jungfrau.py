"""JUNGFRAU charge-integrating detector with dynamic gain switching (PSI).

A function of the frame's float image (expected photons per pixel, (panels, slow,
fast)) and seeds; docs/effects.md ("JUNGFRAU") gives the model and its sources
(Mozzanica et al. 2018, Synchrotron Radiation News 31(6) 16; Redford et al. 2018, JINST
13 C01027).  Per pixel, in one parallel pass (prange over panel rows):

1. photons ``N`` ~ Poisson(``lambda``) (the default mode's counter generator: the same
   ``N`` as the plain Poisson image), deposited charge ``E = N * E_photon`` keV;
   (the per-pixel spreads are Irwin-Hall deviates: the centred, scaled sum of 4
   uniforms, nearly normal, bounded at 2 sqrt 3 rms)
2. the gain stage: G0 while ``E`` < ``switch[0]`` keV, G1 while ``E`` < ``switch[1]``,
   else G2 (the switching is decided on the charge, before the electronic noise);
3. the 14-bit ADC value ``adc = pedestal_g + gain_g * E + noise_g * z`` (``z`` standard
   normal), rounded and clipped to 0..16383; ``gain_g`` (ADU/keV) and ``pedestal_g``
   (ADU) are the pixel's own (:func:`jungfrau_calibration`: the nominal values with a
   seeded Gaussian spread, fixed per detector);
4. output ``"adu"``: the raw 16-bit word ``gain bits << 14 | adc`` (gain bits 0b00 G0,
   0b01 G1, 0b11 G2, as the JUNGFRAU readout); ``"photons"``: the converted photons
   ``round((adc - pedestal_g) / gain_g / E_photon)`` with the pixel's own calibration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import numba
import numpy as np

from ..counter_rng import poisson_inline, uniform, roi_window

__all__ = ["JungfrauParams", "jungfrau", "jungfrau_calibration", "GAIN_BITS", "ADC_MAX"]

#: the gain bits of stages G0, G1, G2 in the raw word (bits 14-15)
GAIN_BITS = (0, 1, 3)
ADC_MAX = 16383


@dataclass(frozen=True)
class JungfrauParams:
    """Nominal JUNGFRAU calibration (docs/effects.md): ``gains`` ADU/keV of G0, G1, G2;
    ``pedestals`` ADU; ``noise`` ADU rms per stage; ``switch`` keV (G0 -> G1, G1 -> G2);
    ``gain_spread`` (relative rms of the per-pixel gains) and ``pedestal_spread`` (ADU
    rms of the per-pixel pedestals); ``photon_kev``; ``output`` "photons" or "adu"."""
    photon_kev: float = 12.4
    output: str = "photons"
    gains: Tuple[float, float, float] = (40.0, 1.5, 0.11)
    pedestals: Tuple[float, float, float] = (2000.0, 1500.0, 1500.0)
    noise: Tuple[float, float, float] = (7.0, 3.0, 3.0)
    switch: Tuple[float, float] = (300.0, 9000.0)
    gain_spread: float = 0.02
    pedestal_spread: float = 50.0

    def photon_noise(self, stage: int) -> float:
        """The rms of the converted photons of ``stage`` from its electronic noise
        (nominal gain), without the ADC's rounding: ``noise_g / (gain_g E_photon)``."""
        return self.noise[stage] / (self.gains[stage] * self.photon_kev)


@numba.njit(inline="always")
def _normal(key, counter):
    u1 = 1.0 - uniform(key, counter)
    u2 = uniform(key, counter + np.uint64(1))
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


_SQRT3 = math.sqrt(3.0)


@numba.njit(inline="always")
def _spread(key, base):
    # a zero-mean, unit-variance, nearly normal deviate without a transcendental
    # function: the Irwin-Hall sum of 4 uniforms, centred and scaled (|z| <= 2 sqrt 3)
    s = (uniform(key, base) + uniform(key, base + np.uint64(1))
         + uniform(key, base + np.uint64(2)) + uniform(key, base + np.uint64(3)))
    return (s - 2.0) * _SQRT3


@numba.njit(inline="always")
def _pixel_calibration(key_c, pixel, g, gain, ped, gspread, pspread):
    # the pixel's gain and pedestal of stage g: counters pixel * 32 + 8 g + 0..3 (gain)
    # and + 4..7 (pedestal)
    base = (np.uint64(pixel) << np.uint64(5)) + np.uint64(8 * g)
    gg = gain * max(1.0 + gspread * _spread(key_c, base), 0.5)
    pp = ped + pspread * _spread(key_c, base + np.uint64(4))
    return gg, pp


@numba.njit(parallel=True, cache=True)
def _jungfrau_frame(img, roi, ekev, gains, peds, noise, switch, gspread, pspread, photons,
                    key_p, key_n, key_c, out):
    npan, ns, nf = img.shape
    s0, f0, f1, nrows = roi_window(roi, ns, nf)
    for r in numba.prange(npan * nrows):
        p = r // nrows
        s = s0 + r % nrows
        for f in range(f0, f1 + 1):
            pix = (p * ns + s) * nf + f
            n = poisson_inline(np.float64(img[p, s, f]), key_p, pix)
            e = n * ekev
            g = 0 if e < switch[0] else (1 if e < switch[1] else 2)
            gain, ped = _pixel_calibration(key_c, pix, g, gains[g], peds[g], gspread, pspread)
            a = ped + gain * e + noise[g] * _normal(key_n, np.uint64(pix) << np.uint64(1))
            a = math.floor(a + 0.5)
            a = min(max(a, 0.0), 16383.0)
            if photons:
                out[p, s, f] = np.int32(math.floor((a - ped) / gain / ekev + 0.5))
            else:
                bits = 0 if g == 0 else (1 if g == 1 else 3)
                out[p, s, f] = np.int32(bits * 16384 + np.int64(a))


@numba.njit(parallel=True, cache=True)
def _calibration(shape3, gains, peds, gspread, pspread, key_c, gain_out, ped_out):
    npan, ns, nf = shape3[0], shape3[1], shape3[2]
    for r in numba.prange(npan * ns):
        p = r // ns
        s = r % ns
        for f in range(nf):
            pix = (p * ns + s) * nf + f
            for g in range(3):
                gg, pp = _pixel_calibration(key_c, pix, g, gains[g], peds[g], gspread, pspread)
                gain_out[g, p, s, f] = gg
                ped_out[g, p, s, f] = pp


def _as3(image32):
    img = np.ascontiguousarray(image32, dtype=np.float32)
    return img if img.ndim == 3 else img.reshape((1,) + img.shape)


def jungfrau_calibration(shape, params: JungfrauParams, key_calibration):
    """``(gains, pedestals)``: float64 arrays (3, panels, slow, fast) of every pixel's
    gain (ADU/keV) and pedestal (ADU) per stage, as :func:`jungfrau` uses them."""
    from .._numba_setup import prepare_cpu
    prepare_cpu()
    s3 = tuple(shape) if len(shape) == 3 else (1,) + tuple(shape)
    g = np.empty((3,) + s3)
    p = np.empty((3,) + s3)
    _calibration(np.array(s3, dtype=np.int64), np.array(params.gains, float),
                 np.array(params.pedestals, float), float(params.gain_spread),
                 float(params.pedestal_spread), np.uint64(key_calibration), g, p)
    return g, p


def jungfrau(image32: np.ndarray, params: JungfrauParams, key_poisson, key_noise,
             key_calibration, roi=None) -> np.ndarray:
    """The JUNGFRAU output (int32, the image's shape): converted photons or raw words
    (``params.output``).  ``key_poisson``: :func:`nbsim.counter_rng.counter_key` of the
    frame's seed; ``key_noise``: ``stream_key(seed, "jungfrau")``; ``key_calibration``:
    ``stream_key(calib seed, "jungfrau_calibration")``.  0 outside ``roi``."""
    from .._numba_setup import prepare_cpu
    prepare_cpu()
    shape = np.shape(image32)
    img = _as3(image32)
    ns, nf = img.shape[-2:]
    r = (np.array([0, nf - 1, 0, ns - 1], dtype=np.int64) if roi is None
         else np.asarray(roi, dtype=np.int64))
    out = np.zeros(img.shape, dtype=np.int32)
    _jungfrau_frame(img, r, float(params.photon_kev), np.array(params.gains, float),
                    np.array(params.pedestals, float), np.array(params.noise, float),
                    np.array(params.switch, float), float(params.gain_spread),
                    float(params.pedestal_spread), params.output == "photons",
                    np.uint64(key_poisson), np.uint64(key_noise), np.uint64(key_calibration),
                    out)
    return out.reshape(shape)

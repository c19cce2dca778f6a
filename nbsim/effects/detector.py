"""noisify.c's detector chain on a photons/pixel image: functions of an image and seeds.

Order of operations and random streams, exactly noisify.c's (``main``):

1. photon scale: ``photons = float32((fluence*r_e^2) * scale * I)``
   (:func:`photon_scale_image`);
2. noiseless integers (``-intfile``): ``adu = photons*gain + adc``; with ``-nonoise``
   the PSF is applied first (:func:`adu_integers`, ``readout=0``);
3. per pixel in raster order (:func:`photon_noise`):
   ``p = photons``; flicker ``p *= 1 + flicker*gaussdev(seed)``; calibration
   ``p *= 1 + calibration*gaussdev(calib_seed)``; ``photons = poidev(p, seed)``;
4. PSF on the Poisson counts (:mod:`nbsim.effects.psf`);
5. per pixel (:func:`adu_integers`): ``adu = photons*gain + adc``, readout
   ``adu += readout*gaussdev(seed)``; clip at 2^31-1 for 32-bit, 65535 for 16-bit;
   truncate to integers the way gcc x86-64 converts.

Random streams: C keeps ran1's shuffle table and gaussdev's spare deviate in *static*
variables, shared by the two seeds; only each seed's ``idum`` is its own.
:class:`NoisifyStreams` holds that shared state (one :mod:`nbsim.rng` state array) and
the two idums, so flicker, calibration, Poisson and readout deviates interleave exactly
as in C.  Seeds follow noisify.c: ``-seed N`` -> idum ``-N`` (default ``-time(0)``),
``-calib_seed N`` -> ``-N`` (default +123456789, which ran1 turns into idum 1 when it
loads the table: C's default calibration pattern is the one of ``-calib_seed -1``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .. import rng
from . import _streams
from .._numba_setup import prepare_cpu

__all__ = ["R_E_SQR", "DEFAULT_FLUENCE", "DEFAULT_CALIB_IDUM", "NoisifyStreams",
           "photon_scale_image", "photon_noise", "adu_integers", "ADUResult"]

#: Thomson cross section (m^2), noisify.c's value
R_E_SQR = 7.94079248018965e-30
#: default fluence (photons/m^2): with R_E_SQR it makes the input photons/pixel
DEFAULT_FLUENCE = 125932015286227086360700780544.0
#: noisify.c's calib_seed before any -calib_seed flag (not negated)
DEFAULT_CALIB_IDUM = 123456789


class NoisifyStreams:
    """noisify.c's two random streams (``seed``, ``calib_seed``) and their shared statics."""

    def __init__(self, seed_idum: int, calib_idum: int = DEFAULT_CALIB_IDUM):
        self.state = rng.new_state(0)     # shared ran1 table + gaussdev spare
        self.idums = np.array([int(seed_idum), int(calib_idum)], dtype=np.int64)

    @classmethod
    def from_flags(cls, seed=None, calib_seed=None) -> "NoisifyStreams":
        """From ``-seed``/``-calib_seed`` values as given on noisify's command line."""
        import time
        s = rng.idum_from_seed_flag(seed) if seed is not None else -int(time.time())
        c = rng.idum_from_seed_flag(calib_seed) if calib_seed is not None else DEFAULT_CALIB_IDUM
        return cls(s, c)


@numba.njit(cache=True)
def _scale(img, factor, out):
    flat = img.ravel()
    o = out.ravel()
    for i in range(flat.size):
        o[i] = np.float32(factor * np.float64(flat[i]))


def photon_scale_image(image, scale: float = 1.0, fluence: float = DEFAULT_FLUENCE) -> np.ndarray:
    """``float32((fluence*r_e^2)*scale*I)`` per pixel (photons/pixel), as noisify.c."""
    prepare_cpu()
    img = np.ascontiguousarray(image, dtype=np.float32)
    out = np.empty_like(img)
    _scale(img, (float(fluence) * R_E_SQR) * float(scale), out)
    return out


@numba.njit(cache=True)
def _photon_noise(photons, flicker, calibration, state, idums, out):
    flat = photons.ravel()
    o = out.ravel()
    total = 0.0
    iy, iv, iset, gset = _streams.load(state)
    seed = idums[0]
    calib = idums[1]
    for i in range(flat.size):
        p = np.float64(flat[i])
        if flicker > 0.0:
            seed, iy, iset, gset, g = _streams.gaussdev(seed, iy, iv, iset, gset)
            p *= 1.0 + flicker * np.float64(g)
        if calibration > 0.0:
            calib, iy, iset, gset, g = _streams.gaussdev(calib, iy, iv, iset, gset)
            p *= 1.0 + calibration * np.float64(g)
        seed, iy, iset, gset, v = _streams.poidev(np.float32(p), seed, iy, iv, iset, gset)
        o[i] = v
        total += np.float64(v)
    idums[0] = seed
    idums[1] = calib
    _streams.store(state, iy, iv, iset, gset)
    return total


def photon_noise(photons, streams: NoisifyStreams, flicker: float = 0.0,
                 calibration: float = 0.0):
    """Flicker, calibration error and Poisson counts (float32), C's order; returns
    ``(counts, sum)``.  ``flicker``/``calibration`` are fractions (0.03 = 3 %)."""
    prepare_cpu()
    img = np.ascontiguousarray(photons, dtype=np.float32)
    out = np.empty_like(img)
    total = _photon_noise(img, float(flicker), float(calibration), streams.state,
                          streams.idums, out)
    return out, float(total)


@numba.njit(cache=True)
def _c_to_u32(x):
    # gcc x86-64 (unsigned int)(double): cvttsd2si to int64, low 32 bits; NaN -> 0
    if not (x > -9223372036854775809.0 and x < 9223372036854775808.0):
        return np.uint32(0)
    return np.uint32(np.int64(x) & 0xFFFFFFFF)


@numba.njit(cache=True)
def _c_to_u16(x):
    # gcc x86-64 (unsigned short)(double): cvttsd2si to int32, low 16 bits; NaN -> 0
    if not (x > -2147483649.0 and x < 2147483648.0):
        return np.uint16(0)
    return np.uint16(np.int64(x) & 0xFFFF)


@numba.njit(cache=True)
def _adu(photons, gain, adc, readout, noisy, state, idums, out16, out32):
    flat = photons.ravel()
    o16 = out16.ravel()
    o32 = out32.ravel()
    total = 0.0
    over16 = 0
    over32 = 0
    iy, iv, iset, gset = _streams.load(state)
    seed = idums[0]
    for i in range(flat.size):
        total += np.float64(flat[i])
        adu = np.float64(flat[i]) * gain + adc
        if readout > 0.0:
            seed, iy, iset, gset, g = _streams.gaussdev(seed, iy, iv, iset, gset)
            adu += readout * np.float64(g)
        if adu > 2147483647.0:
            adu = 2147483647.0
            over32 += 1
        if not noisy and adu > 65535.0:
            # the noiseless int image clips both widths at 65535 (noisify.c)
            adu = 65535.0
        o32[i] = _c_to_u32(adu)
        if adu > 65535.0:
            adu = 65535.0
            over16 += 1
        o16[i] = _c_to_u16(adu)
    idums[0] = seed
    _streams.store(state, iy, iv, iset, gset)
    return total, over16, over32


@dataclass
class ADUResult:
    """Integer images in ADU (both widths, (slow, fast)) and C's counters."""

    int16: np.ndarray
    int32: np.ndarray
    photons: float       # sum of the photon image converted
    overloads16: int
    overloads32: int

    def image(self, bits: int) -> np.ndarray:
        return self.int16 if bits == 16 else self.int32

    def overloads(self, bits: int) -> int:
        return self.overloads16 if bits == 16 else self.overloads32


def adu_integers(photons, gain: float = 1.0, adc_offset: float = 40.0, readout: float = 0.0,
                 streams: NoisifyStreams | None = None, *, noisy: bool = True) -> ADUResult:
    """Photons -> ADU integers as noisify.c: ``photons*gain + adc`` (+ readout noise in
    ADU from the ``seed`` stream), clipped and truncated like gcc.  ``noisy=False`` is
    the ``-intfile`` (noiseless) conversion, which clips the 32-bit image at 65535 too."""
    prepare_cpu()
    img = np.ascontiguousarray(photons, dtype=np.float32)
    if readout > 0.0 and streams is None:
        raise ValueError("readout noise needs the random streams")
    st = streams if streams is not None else NoisifyStreams(-1)
    o16 = np.empty(img.shape, dtype=np.uint16)
    o32 = np.empty(img.shape, dtype=np.uint32)
    total, ov16, ov32 = _adu(img, float(gain), float(adc_offset),
                             float(readout) if noisy else 0.0, bool(noisy),
                             st.state, st.idums, o16, o32)
    return ADUResult(o16, o32, float(total), int(ov16), int(ov32))

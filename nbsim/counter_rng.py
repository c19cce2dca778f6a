"""Counter-based random numbers: every pixel's deviates from (key, pixel, draw number).

The default mode's Poisson noise (:mod:`nbsim.dataset.noise`) and the detector models
(:mod:`nbsim.effects.counting`, :mod:`nbsim.effects.jungfrau`) draw with these functions,
parallel over pixels: the uniforms of pixel ``p`` are SplitMix64 outputs (Steele, Lea &
Flood 2014) at counters ``key + (p * 2**shift + j) * G`` (``G = 0x9E3779B97F4A7C15``,
``j`` the draw number within the pixel), so a pixel's noise depends only on (key, pixel)
and never on the thread count.  Keys come from a frame's ``-seed`` value:
:func:`counter_key` (Poisson photons) and :func:`stream_key` (the named streams of
:data:`STREAMS`, one per detector model; :mod:`nbsim.dataset.seeds` lists them with the
frame seed rule).  Poisson deviates: inversion below a mean of 10, Hoermann's PTRS
transformed rejection (as NumPy uses) above.
"""
from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["roi_window", "mix64", "counter_key", "stream_key", "STREAMS", "uniform", "poisson_one",
           "poisson_inline", "gauss_one"]

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15

#: named random streams of a frame's detector model, keyed by the frame's -seed value
#: (numbers after nbsim.dataset.seeds' frame streams: one table of stream numbers)
STREAMS = {"counting": 6, "jungfrau": 7, "jungfrau_calibration": 8}


@numba.extending.register_jitable
def roi_window(roi, ns, nf):
    """The -roi (xmin, xmax, ymin, ymax; pixels, inclusive) clipped to a (slow ``ns``,
    fast ``nf``) panel: ``(s0, f0, f1, nrows)``, rows s0 .. s0 + nrows - 1 (nrows 0 when
    the ROI misses the panel), columns f0 .. f1."""
    s0 = max(roi[2], 0)
    s1 = min(roi[3], ns - 1)
    f0 = max(roi[0], 0)
    f1 = min(roi[1], nf - 1)
    return s0, f0, f1, max(s1 - s0 + 1, 0)


def mix64(z: int) -> int:
    """SplitMix64's output function (a bijection of 64-bit integers)."""
    z &= _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def counter_key(seed: int) -> np.uint64:
    """The Poisson generator's 64-bit key of a frame seed (``-seed`` value)."""
    return np.uint64(mix64(int(seed) ^ 0x6E6273696D6E6F69))     # "nbsimnoi"


def stream_key(seed: int, stream: str) -> np.uint64:
    """The 64-bit key of the named stream ``stream`` (:data:`STREAMS`) of a ``-seed``
    value: ``mix64(mix64(seed + K * G))``, K the stream's number."""
    k = STREAMS[stream]
    return np.uint64(mix64(mix64((int(seed) + k * _GOLDEN) & _M64)))


@numba.njit(inline="always")
def uniform(key, counter):
    """SplitMix64 at position ``counter`` of the stream ``key``; 53 random bits in [0, 1)."""
    z = key + counter * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(inline="always")
def gauss_one(key, counter):
    """A standard normal deviate from the uniforms at ``counter`` and ``counter + 1``
    (Box-Muller)."""
    u1 = 1.0 - uniform(key, counter)           # (0, 1]
    u2 = uniform(key, counter + np.uint64(1))
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@numba.njit(inline="always")
def poisson_inline(lam, key, pixel):
    """One Poisson deviate of mean ``lam`` from the counter stream of ``pixel``
    (counters ``pixel * 2**16 + j``); inlined into the caller's loop."""
    if not (lam > 0.0):
        return 0.0
    base = np.uint64(pixel) << np.uint64(16)
    if lam < 10.0:
        # inversion: smallest k with F(k) >= u
        u = uniform(key, base)
        if u < 1.0 - 2.0 * lam:
            # F(0) = exp(-lam) > 1 - lam: k = 0 without the exp (most pixels of a
            # diffraction image; the margin covers the rounding of 1 - lam and of exp)
            return 0.0
        p = math.exp(-lam)
        F = p
        k = 0.0
        while u > F and k < 1000.0:
            k += 1.0
            p *= lam / k
            F += p
        return k
    # PTRS (Hoermann 1993), NumPy's random_poisson_ptrs
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    j = np.uint64(1)
    while True:
        U = uniform(key, base + j) - 0.5
        V = uniform(key, base + j + np.uint64(1))
        j += np.uint64(2)
        us = 0.5 - abs(U)
        k = math.floor((2.0 * a / us + b) * U + lam + 0.43)
        if us >= 0.07 and V <= vr:
            return k
        if k < 0.0 or (us < 0.013 and V > us):
            continue
        if (math.log(V) + math.log(invalpha) - math.log(a / (us * us) + b)) <= \
                (-lam + k * loglam - math.lgamma(k + 1.0)):
            return k


@numba.njit(cache=True)
def poisson_one(lam, key, pixel):
    """:func:`poisson_inline` as a compiled function."""
    return poisson_inline(lam, key, pixel)

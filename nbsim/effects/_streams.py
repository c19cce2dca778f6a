"""noisify.c's generators with their state in local variables, for the per-pixel loops.

The same arithmetic as :mod:`nbsim.rng` (``ran1``, ``gaussdev``, ``poidev``; C's
Numerical Recipes code), restated as functions of the state values that return the new
values, inlined into the loops: ran1's idum, iy and shuffle table, and gaussdev's spare
live in registers / a 32-entry local table instead of being loaded from and stored to
the state array on every deviate, and no call passes an array.  This is where
noisify.c's noise spends its time (about 8 uniforms per pixel), and it halves it.
:func:`load` / :func:`store` move the values between an :mod:`nbsim.rng` state array
and the loop; tests/test_noisify_c.py (C's integers) and tests/test_effects_streams.py
(equality with :mod:`nbsim.rng`) hold them to it.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .. import rng
from ..rng import AM, IA, IM, IQ, IR, NDIV, NTAB, RNMX

_PI = math.pi


@numba.njit(inline="always")
def ran1(idum, iy, iv):
    """``(idum, iy, uniform)``; ``iv`` (int64[32]) is updated in place."""
    if idum <= 0 or iy == 0:
        if -idum < 1:
            idum = 1
        else:
            idum = -idum
        for j in range(NTAB + 7, -1, -1):
            k = idum // IQ
            idum = IA * (idum - k * IQ) - IR * k
            if idum < 0:
                idum += IM
            if j < NTAB:
                iv[j] = idum
        iy = iv[0]
    # Schrage's step == IA*idum mod IM for 0 <= idum <= IM (see nbsim.rng.ran1)
    idum = np.int64(np.uint64(IA) * np.uint64(idum) % np.uint64(IM))
    j = np.int64(np.uint64(iy) // np.uint64(NDIV))
    iy = iv[j]
    iv[j] = idum
    temp = np.float32(AM * iy)
    if temp > RNMX:
        temp = np.float32(RNMX)
    return idum, iy, temp


@numba.njit(inline="always")
def gaussdev(idum, iy, iv, iset, gset):
    """``(idum, iy, iset, gset, deviate)`` -- rng.gaussdev."""
    if iset == 0:
        while True:
            idum, iy, u1 = ran1(idum, iy, iv)
            v1 = np.float32(2.0 * np.float64(u1) - 1.0)
            idum, iy, u2 = ran1(idum, iy, iv)
            v2 = np.float32(2.0 * np.float64(u2) - 1.0)
            rsq = np.float32(v1 * v1) + np.float32(v2 * v2)
            if not (rsq >= 1.0 or rsq == 0):
                break
        r = np.float64(rsq)
        fac = np.float32(math.sqrt(-2.0 * math.log(r) / r))
        return idum, iy, 1, np.float32(v1 * fac), np.float32(v2 * fac)
    return idum, iy, 0, gset, gset


@numba.njit(inline="always")
def poidev(xm, idum, iy, iv, iset, gset):
    """``(idum, iy, iset, gset, deviate)`` -- rng.poidev (float32 mean and result)."""
    xm = np.float32(xm)
    if xm > 1.0e6:
        idum, iy, iset, gset, gd = gaussdev(idum, iy, iv, iset, gset)
        xd = np.float64(xm)
        return idum, iy, iset, gset, np.float32(xd + math.sqrt(xd) * np.float64(gd))
    if xm < 12.0:
        g = np.float32(math.exp(-np.float64(xm)))
        em = np.float32(-1.0)
        t = np.float32(1.0)
        while True:
            em = em + np.float32(1.0)
            idum, iy, u = ran1(idum, iy, iv)
            t = np.float32(t * u)
            if not (t > g):
                break
        return idum, iy, iset, gset, em
    sq = np.float32(math.sqrt(2.0 * np.float64(xm)))
    alxm = np.float32(math.log(np.float64(xm)))
    g = np.float32(np.float32(xm * alxm) - rng.gammln(np.float32(np.float64(xm) + 1.0)))
    while True:
        while True:
            idum, iy, u = ran1(idum, iy, iv)
            y = np.float32(math.tan(_PI * np.float64(u)))
            em = np.float32(np.float32(sq * y) + xm)
            if not (em < 0.0):
                break
        em = np.float32(np.floor(np.float64(em)))
        e = np.float32(np.float32(em * alxm) - rng.gammln(np.float32(np.float64(em) + 1.0)))
        e = np.float32(e - g)
        t = np.float32(0.9 * (1.0 + np.float64(np.float32(y * y))) * math.exp(np.float64(e)))
        idum, iy, u = ran1(idum, iy, iv)
        if not (u > t):
            break
    return idum, iy, iset, gset, em


@numba.njit(inline="always")
def load(state):
    """``(iy, iv, iset, gset)`` from an rng state array (the shared statics)."""
    iv = state[rng.S_IV:rng.S_IV + NTAB].copy()
    return state[rng.S_IY], iv, state[rng.S_ISET], rng._f32_from_bits(state[rng.S_GSET])


@numba.njit(inline="always")
def store(state, iy, iv, iset, gset):
    state[rng.S_IY] = iy
    state[rng.S_IV:rng.S_IV + NTAB] = iv
    state[rng.S_ISET] = iset
    state[rng.S_GSET] = rng._bits_from_f32(gset)

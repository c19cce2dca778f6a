"""Photon-counting detector (EIGER2 / PILATUS type): charge sharing, dead time, counter.

A function of the frame's float image (expected photons per pixel, (panels, slow,
fast)) and its ``-seed`` value; docs/effects.md ("Photon-counting detectors") gives the
model and its sources.  Per pixel ``q``, in one parallel pass (prange over panel rows):

1. **charge sharing** (Gaussian charge cloud of rms ``sigma``, the photon's position
   uniform in its pixel, a pixel counts the photon when its share of the charge is at
   least ``threshold / E_photon``): the expected number of counting events of ``q`` is
   ``nu_q = sum_d P(d) * lambda_{q - d}``, ``P(d)`` the probability that a photon
   absorbed in a pixel is counted by the pixel ``d`` away (:func:`charge_sharing_kernel`,
   computed once per run).  A photon gives each pixel a count independently of the
   other photons, so the events of one pixel are a Poisson process of rate
   ``nu_q / T`` (the marking theorem); the correlation of neighbours counting the same
   photon is not modelled.  A zero cloud gives ``P = [[1]]``.
2. **dead time** ``tau`` over the count time ``T``: the recorded count of a stationary
   renewal process (the flux was on before the frame began), so its mean is exactly
   ``n T / (1 + n tau)`` (non-paralyzable, DECTRIS's instant retrigger) or
   ``n T exp(-n tau)`` (paralyzable), ``n = nu_q / T``.  Drawn exactly, event by
   event, up to :data:`SIMULATE_MAX` events; above, from the renewal central limit
   theorem (normal with the exact mean and the asymptotic variance ``m / (1 + n tau)^2``
   resp. ``m (1 - 2 n tau e^{-n tau})``, Mueller 1973), and a paralyzable counter buried
   in more than :data:`SIMULATE_MAX` photons but fewer than :data:`CLT_MIN` counts draws
   Poisson(``m``).  Below ``n tau`` = :data:`POISSON_X` (1e-5) the count is Poisson of
   the exact mean (the renewal variance differs by a relative ``2 n tau``).
   ``tau = 0`` draws Poisson(``nu_q``) with the default mode's counter
   generator: with no charge cloud either, the plain Poisson image bit for bit.
3. **counter depth** ``bits``: the count saturates at ``2**bits - 1`` (or rolls over,
   as EIGER2's 8-bit readout does).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from ..counter_rng import poisson_inline, uniform, roi_window

__all__ = ["CountingParams", "charge_sharing_kernel", "photon_counting", "SIMULATE_MAX",
           "CLT_MIN", "POISSON_X", "HC_KEV_ANGSTROM"]

#: h c in keV Angstrom (CODATA 2018)
HC_KEV_ANGSTROM = 12.398419843320026
#: the renewal process is drawn event by event up to this many expected events
SIMULATE_MAX = 4096.0
#: the normal approximation of the count is used from this many expected counts on
CLT_MIN = 100.0
#: below this n * tau the count is drawn as Poisson of the exact mean
POISSON_X = 1e-5
_POISSON_SALT = np.uint64(0x636F756E74696E67)       # "counting"


@dataclass(frozen=True)
class CountingParams:
    """A photon-counting detector.  ``count_time`` s (the frame's counting time: the
    photon rate is the image over it); ``deadtime`` s (0: none); ``paralyzable``;
    ``counter_bits`` (1..31); ``overflow`` "saturate" or "rollover"; ``charge_cloud``
    m (rms of the Gaussian charge cloud; 0: none); ``pixel_size`` m;
    ``threshold_fraction`` (the energy threshold over the photon energy, (0, 1]);
    ``threshold_kev`` / ``photon_kev`` (for the file metadata)."""
    count_time: float = 1.0
    deadtime: float = 0.0
    paralyzable: bool = False
    counter_bits: int = 16
    overflow: str = "saturate"
    charge_cloud: float = 0.0
    pixel_size: float = 75e-6
    threshold_fraction: float = 0.5
    threshold_kev: float = 0.0
    photon_kev: float = 0.0

    @property
    def counter_max(self) -> int:
        return (1 << int(self.counter_bits)) - 1


def _erf(x):
    return np.vectorize(math.erf, otypes=[float])(x)


def charge_sharing_kernel(sigma_pixels: float, threshold_fraction: float,
                          grid: int = 1024) -> np.ndarray:
    """``P[dy + R, dx + R]``: the probability that a photon absorbed uniformly in a pixel
    is counted by the pixel ``(dy, dx)`` away -- the pixel's share of a Gaussian charge
    cloud of rms ``sigma_pixels`` (pixels) is ``>= threshold_fraction``.  The share
    factorises, ``g(x; dx) g(y; dy)`` with ``g(x; d) = (erf((d + 1 - x)/(s sqrt 2)) -
    erf((d - x)/(s sqrt 2)))/2``; the indicator is averaged over a ``grid`` x ``grid``
    midpoint grid of photon positions (error ~ 1/grid).  Rows / columns that are 0 are
    trimmed (R is the smallest that keeps every nonzero entry)."""
    s = float(sigma_pixels)
    t = float(threshold_fraction)
    if s <= 0.0:
        return np.array([[1.0 if t <= 1.0 else 0.0]])
    R = int(math.ceil(5.0 * s)) + 1
    x = (np.arange(grid) + 0.5) / grid
    d = np.arange(-R, R + 1)[:, None]
    g = 0.5 * (_erf((d + 1 - x) / (s * math.sqrt(2.0))) - _erf((d - x) / (s * math.sqrt(2.0))))
    P = np.zeros((2 * R + 1, 2 * R + 1))
    for iy in range(2 * R + 1):
        for ix in range(2 * R + 1):
            if g[iy].max() * g[ix].max() >= t:
                P[iy, ix] = np.count_nonzero(np.multiply.outer(g[iy], g[ix]) >= t) / grid ** 2
    nz = np.nonzero(P)
    if len(nz[0]) == 0:
        return np.zeros((1, 1))
    r = int(max(np.abs(nz[0] - R).max(), np.abs(nz[1] - R).max()))
    return np.ascontiguousarray(P[R - r:R + r + 1, R - r:R + r + 1])


@numba.njit(inline="always")
def _exp_gap(key, counter, rate):
    return -math.log(1.0 - uniform(key, counter)) / rate


@numba.njit(inline="always")
def _dead_time_count(nu, T, tau, paralyzable, key_p, key_d, pixel):
    """The recorded count of one pixel with ``nu`` expected events in ``T`` s and dead
    time ``tau`` s (a float; see the module docstring)."""
    if not (nu > 0.0):
        return 0.0
    if tau <= 0.0:
        return poisson_inline(nu, key_p, pixel)
    x = nu * (tau / T)              # n tau (tau / T: hoisted out of the pixel loop)
    if x < POISSON_X:
        # a dead time this short changes the count's variance by a relative 2 n tau <
        # 2e-5 only: Poisson of the exact mean (1/(1+x) and e^{-x} by their series,
        # exact to 1e-15; no division in the pixel loop)
        m = nu * (1.0 - x + x * x) if not paralyzable else nu * (1.0 - x + 0.5 * x * x)
        return poisson_inline(m, key_p, pixel)
    n = nu / T
    base = np.uint64(pixel) << np.uint64(24)
    j = np.uint64(0)
    if not paralyzable:
        m = nu / (1.0 + x) if nu > SIMULATE_MAX else nu
        if m > SIMULATE_MAX:
            sd = math.sqrt(nu / ((1.0 + x) ** 3))
            u1 = 1.0 - uniform(key_d, base)
            u2 = uniform(key_d, base + np.uint64(1))
            z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
            return max(0.0, math.floor(m + sd * z + 0.5))
        if tau <= 0.5 * T:
            # the first count D = R + E (R: the rest of a dead time running at t = 0,
            # E: the wait for a photon) by inversion: P(no count) = P(D > T) =
            # e^{-nu} e^{x} / (1 + x) costs one uniform and one exp; a count's D is then
            # drawn conditioned on D <= T (R = 0 with weight (1 - e^{-nu}) / (1 + x),
            # else R uniform in (0, tau) by rejection on P(E <= T - R))
            u0 = uniform(key_d, base)
            if u0 * (1.0 + x) < 1.0 + x - 2.0 * nu:
                # p0 >= 1 - nu / (1 + x) (e^y >= 1 + y): no count, without the exp
                return 0.0
            p0 = math.exp(x - nu) / (1.0 + x)
            if u0 < p0:
                return 0.0
            v = u0 - p0                                    # uniform in (0, 1 - p0)
            q0 = -math.expm1(-nu)                          # P(E <= T)
            w0 = q0 / (1.0 + x)
            j = np.uint64(1)
            if v < w0:
                t = -math.log1p(-(v / w0) * q0) / n
            else:
                while True:
                    r = tau * uniform(key_d, base + j)
                    qr = -math.expm1(-n * (T - r))
                    a = uniform(key_d, base + j + np.uint64(1)) * q0
                    j += np.uint64(2)
                    if a <= qr:
                        break
                t = r - math.log1p(-uniform(key_d, base + j) * qr) / n
                j += np.uint64(1)
        else:
            # stationary start: dead at t = 0 with probability tau / mu, for U(0, tau)
            pdead = x / (1.0 + x)
            u = uniform(key_d, base)
            j += np.uint64(1)
            t = tau * (u / pdead) if u < pdead else 0.0
            t += _exp_gap(key_d, base + j, n)
            j += np.uint64(1)
        c = 0.0
        while t <= T:
            c += 1.0
            t += tau + _exp_gap(key_d, base + j, n)
            j += np.uint64(1)
        return c
    m = nu * math.exp(-x)
    if nu <= SIMULATE_MAX:
        # photons of a stationary Poisson process; one counts when the gap before it
        # (for the first: backward recurrence + forward recurrence) exceeds tau
        t = _exp_gap(key_d, base, n)
        gap = t + _exp_gap(key_d, base + np.uint64(1), n)
        j = np.uint64(2)
        c = 0.0
        while t <= T:
            if gap > tau:
                c += 1.0
            gap = _exp_gap(key_d, base + j, n)
            j += np.uint64(1)
            t += gap
        return c
    if m >= CLT_MIN:
        sd = math.sqrt(max(m * (1.0 - 2.0 * x * math.exp(-x)), 0.0))
        u1 = 1.0 - uniform(key_d, base)
        u2 = uniform(key_d, base + np.uint64(1))
        z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
        return max(0.0, math.floor(m + sd * z + 0.5))
    return poisson_inline(m, key_d ^ _POISSON_SALT, pixel)


@numba.njit(cache=True)
def dead_time_count(nu, T, tau, paralyzable, key_p, key_d, pixel):
    """The recorded count of one pixel with ``nu`` expected events in ``T`` s and dead
    time ``tau`` s (a float; see the module docstring)."""
    return _dead_time_count(nu, T, tau, paralyzable, key_p, key_d, pixel)


@numba.njit(inline="always")
def _counter(c, cmax, rollover):
    # the counter's depth: saturation at cmax, or modulo cmax + 1
    if c > cmax:
        wrap = cmax + 1.0
        return c - wrap * math.floor(c / wrap) if rollover else cmax
    return c


@numba.njit(parallel=True, cache=True)
def _count_frame_local(img, scale, roi, T, tau, paralyzable, cmax, rollover, key_p, key_d,
                       out):
    # no charge reaches a neighbour (a 1x1 sharing kernel ``scale``): (panels, slow,
    # fast), pixel number = the flat index (panel * ns + s) * nf + f, as the default
    # mode's Poisson generator
    npan, ns, nf = img.shape
    s0, f0, f1, nrows = roi_window(roi, ns, nf)
    for r in numba.prange(npan * nrows):
        p = r // nrows
        s = s0 + r % nrows
        row = (p * ns + s) * nf
        for f in range(f0, f1 + 1):
            nu = np.float64(img[p, s, f]) * scale
            c = 0.0
            if nu > 0.0:
                c = _counter(_dead_time_count(nu, T, tau, paralyzable, key_p, key_d, row + f),
                             cmax, rollover)
            out[p, s, f] = np.int32(c)


@numba.njit(parallel=True, cache=True)
def _count_frame_shared(img, P, roi, T, tau, paralyzable, cmax, rollover, key_p, key_d,
                        out):
    # as _count_frame_local, the events' mean gathered from the (2R+1)^2 neighbours
    # through the sharing kernel P; charge is shared inside a panel only
    npan, ns, nf = img.shape
    R = P.shape[0] // 2
    s0, f0, f1, nrows = roi_window(roi, ns, nf)
    for r in numba.prange(npan * nrows):
        p = r // nrows
        s = s0 + r % nrows
        row = (p * ns + s) * nf
        # the row's event means, one kernel tap at a time (contiguous, vectorised loops)
        nus = np.zeros(nf)
        for dy in range(-R, R + 1):
            ss = s - dy
            if ss < 0 or ss >= ns:
                continue
            for dx in range(-R, R + 1):
                w = P[dy + R, dx + R]
                if w == 0.0:
                    continue
                lo = max(f0, dx)
                hi = min(f1 + 1, nf + dx)
                for f in range(lo, hi):
                    v = np.float64(img[p, ss, f - dx])
                    nus[f] += w * v if v > 0.0 else 0.0
        for f in range(f0, f1 + 1):
            nu = nus[f]
            c = 0.0
            if nu > 0.0:
                c = _counter(_dead_time_count(nu, T, tau, paralyzable, key_p, key_d, row + f),
                             cmax, rollover)
            out[p, s, f] = np.int32(c)


def photon_counting(image32: np.ndarray, params: CountingParams, key_poisson, key_deadtime,
                    roi=None, kernel=None) -> np.ndarray:
    """The counts (int32, the image's shape: (slow, fast) or (panels, slow, fast)) of a
    photon-counting detector for the expected photons ``image32``; ``key_poisson`` is
    :func:`nbsim.counter_rng.counter_key` of the frame's seed, ``key_deadtime``
    :func:`nbsim.counter_rng.stream_key` (``"counting"``).  ``roi`` (xmin, xmax, ymin,
    ymax) in every panel's pixel coordinates: 0 outside.  ``kernel``: a precomputed
    :func:`charge_sharing_kernel` (else computed here)."""
    from .._numba_setup import prepare_cpu
    prepare_cpu()
    shape = np.shape(image32)
    img = np.ascontiguousarray(image32, dtype=np.float32)
    if img.ndim == 2:
        img = img.reshape((1,) + img.shape)
    ns, nf = img.shape[-2:]
    r = (np.array([0, nf - 1, 0, ns - 1], dtype=np.int64) if roi is None
         else np.asarray(roi, dtype=np.int64))
    if kernel is None:
        kernel = charge_sharing_kernel(params.charge_cloud / params.pixel_size,
                                       params.threshold_fraction)
    out = np.zeros(img.shape, dtype=np.int32) if roi is not None else \
        np.empty(img.shape, dtype=np.int32)      # every pixel is written
    args = (r, float(params.count_time), float(params.deadtime), bool(params.paralyzable),
            float(params.counter_max), params.overflow == "rollover",
            np.uint64(key_poisson), np.uint64(key_deadtime), out)
    if np.shape(kernel) == (1, 1):
        _count_frame_local(img, float(np.asarray(kernel)[0, 0]), *args)
    else:
        _count_frame_shared(img, np.ascontiguousarray(kernel, dtype=np.float64), *args)
    return out.reshape(shape)

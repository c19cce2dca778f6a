"""Poisson noise of one frame, from the frame's noise seed (:mod:`nbsim.dataset.seeds`).

Two generators, chosen by the run's mode:

* **c-parity**: nanoBragg.c's own stream: ``ran1``/``poidev`` seeded with idum
  ``-seed``, one deviate per pixel of the ROI in raster order (the mask is not consulted,
  as in C).  The counts are the integers ``nanoBragg -seed <frame seed>`` draws (its
  noise image is ``counts + adc``, clipped at 65535).  Sequential by nature.
* **default (spec)**: a counter-based generator, parallel over pixels: the uniforms of
  pixel ``p`` are SplitMix64 outputs at counters ``key + (p * 2**16 + j) * G`` (``key``
  from the frame seed, ``j`` the draw number within the pixel), so every pixel draws
  independently of the others and of the thread count.  Poisson deviates: inversion
  (sequential search) for means below 10, Hoermann's PTRS transformed rejection (as
  NumPy uses) above.  The noise of a pixel depends only on (frame seed, pixel, mean).

Both take the float32 image (C's ``floatimage``), so the counts are those of the files:
(slow, fast), or a frame's (panels, slow, fast) with the ROI in every panel's own pixel
coordinates (c-parity: one stream in raster order over panels, panel then slow then fast;
default: pixel p is the flat index).  Pixels outside the ROI get 0.
"""
from __future__ import annotations


import numba
import numpy as np

from .. import rng
from .._numba_setup import prepare_cpu
from ..counter_rng import counter_key, poisson_inline, roi_window

__all__ = ["poisson_counts", "c_parity_counts", "counter_counts", "counter_key",
           "noise_smv_image"]

_INT32_MAX = 2147483647


@numba.njit(cache=True)
def _c_counts(img, roi, state, out):
    # (panels, slow, fast): one stream in raster order over panels (panel, slow, fast)
    npan, ns, nf = img.shape
    for p in range(npan):
        for s in range(max(roi[2], 0), min(roi[3], ns - 1) + 1):
            for f in range(max(roi[0], 0), min(roi[1], nf - 1) + 1):
                v = np.float64(rng.poidev(img[p, s, f], state))
                out[p, s, f] = np.int32(v) if v < 2147483647.0 else np.int32(2147483647)


@numba.njit(parallel=True, cache=True)
def _counter_counts(img, roi, key, out):
    # (panels, slow, fast); pixel number = flat index (panel * ns + s) * nf + f
    npan, ns, nf = img.shape
    s0, f0, f1, nrows = roi_window(roi, ns, nf)
    for r in numba.prange(npan * nrows):
        p = r // nrows
        s = s0 + r % nrows
        for f in range(f0, f1 + 1):
            v = poisson_inline(np.float64(img[p, s, f]), key, (p * ns + s) * nf + f)
            out[p, s, f] = np.int32(v) if v < 2147483647.0 else np.int32(2147483647)


def _roi(roi, shape):
    ns, nf = shape[-2:]
    if roi is None:
        return np.array([0, nf - 1, 0, ns - 1], dtype=np.int64)
    return np.asarray(roi, dtype=np.int64)


def _as3(image32):
    img = np.ascontiguousarray(image32, dtype=np.float32)
    return img if img.ndim == 3 else img.reshape((1,) + img.shape)


def c_parity_counts(image32: np.ndarray, seed: int, roi=None) -> np.ndarray:
    """nanoBragg.c's Poisson deviates (int32, the image's shape: (slow, fast) or
    (panels, slow, fast), one stream in raster order over panels) for ``-seed seed``;
    ``roi`` in every panel's own pixel coordinates."""
    prepare_cpu()
    shape = np.shape(image32)
    img = _as3(image32)
    out = np.zeros(img.shape, dtype=np.int32)
    state = rng.new_state(rng.idum_from_seed_flag(int(seed)))
    _c_counts(img, _roi(roi, img.shape), state, out)
    return out.reshape(shape)


def counter_counts(image32: np.ndarray, seed: int, roi=None) -> np.ndarray:
    """Default-mode Poisson deviates (int32, the image's shape: (slow, fast) or (panels,
    slow, fast); pixel p = the flat index), parallel over rows."""
    prepare_cpu()
    shape = np.shape(image32)
    img = _as3(image32)
    out = np.zeros(img.shape, dtype=np.int32)
    _counter_counts(img, _roi(roi, img.shape), counter_key(seed), out)
    return out.reshape(shape)


def poisson_counts(image32: np.ndarray, seed: int, mode: str, roi=None) -> np.ndarray:
    """The frame's photon counts: C's stream in c-parity mode, the counter generator
    otherwise."""
    if mode == "c-parity":
        return c_parity_counts(image32, seed, roi)
    return counter_counts(image32, seed, roi)


def noise_smv_image(counts: np.ndarray, adc_offset: float, roi=None) -> np.ndarray:
    """The -noisefile pixels C writes from the deviates: ``(unsigned short)`` of
    ``counts + adc`` clipped at 65535 (no lower clip), 0 outside the ROI."""
    t = counts.astype(np.float64) + float(adc_offset)
    np.minimum(t, 65535.0, out=t)
    # C's cast: truncation to a 32-bit int, low 16 bits
    u = (np.trunc(t).astype(np.int64) & 0xFFFF).astype(np.uint16)
    r = _roi(roi, counts.shape)
    if roi is not None:
        keep = np.zeros(counts.shape[-2:], dtype=bool)
        keep[max(r[2], 0):r[3] + 1, max(r[0], 0):r[1] + 1] = True
        u[..., ~keep] = 0
    return u

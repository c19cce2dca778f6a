"""Detector point-spread function exactly as noisify.c applies it (``apply_psf``).

Units: the PSF width is given in *pixels* here (noisify.c divides ``-psf_fwhm`` in um by
the pixel size); images are photons/pixel, float32, (slow, fast).

Kernel (noisify.c ``apply_psf``): a (2R+1)^2 table of the PSF integrated analytically
over each pixel -- ``integrate_gauss_over_pixel`` (2D Gaussian of that FWHM, erf
products) or ``integrate_fiber_over_pixel`` (fiber-optic taper PSF
``g/(2 pi (g^2+r^2)^(3/2))`` with ``g = 0.652383013252053 * fwhm``, atan form) -- filled
only inside the disc ``dx^2+dy^2 <= R^2``.

Application, in C's order: every source pixel with a positive value spreads
``in*kernel`` onto the output (float32 accumulator, each add done in double then
rounded), sources in raster order; each source's radius is the user's ``-psf_radius`` or,
when that is 0, an automatic one from its own value; the photons beyond that radius
(an analytic tail estimate) are summed and spread evenly over the whole image at the
end.  Two C quirks are kept because they change the integers:

* the right-edge test is ``x > xpixels`` (not ``>=``), so the light landing one column
  past the right edge wraps to column 0 of the next row;
* with no positive pixel and an automatic radius the result is all zeros.

Where noisify.c crashes -- the automatic Gaussian radius of a pixel below 0.01
photons is NaN (``sqrt`` of a negative number), C then indexes its kernel out of
bounds (a segmentation fault with ``-nonoise`` on such images) -- such a pixel spreads
nothing here (its loss estimate is 0, as C computes it).

Two paths give this result:

* :func:`apply_psf_exact` -- C's arithmetic bit for bit, rewritten as a gather (each
  output pixel adds its sources in C's raster order), parallel over output rows.  It
  is the one used where integers must match noisify.c, and the only one for the
  automatic (per-source) radius.
* :func:`apply_psf_fft` -- a fixed radius as one linear convolution by FFT (scipy.fft
  when present, numpy.fft otherwise) in float64, plus the wrap quirk and the tail
  constant; equal to the exact path within float32 rounding of the accumulation, not
  bit for bit (C rounds to float after every add).

:func:`apply_psf` chooses: exact for automatic radii or small kernels, FFT for large
fixed kernels, unless told otherwise.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .._numba_setup import prepare_cpu

__all__ = ["PSF_TYPES", "FIBER_G_PER_FWHM", "psf_kernel", "auto_psf_radius",
           "apply_psf", "apply_psf_exact", "apply_psf_fft", "PSFResult"]

#: noisify.c's psf_type names (``-psf gauss|fiber``); codes used by the kernels
PSF_TYPES = {"gauss": 2, "fiber": 1}
#: fwhm = sqrt(2^(2/3)-1)/2 * g  ->  g = fwhm * this (noisify.c apply_psf)
FIBER_G_PER_FWHM = 0.652383013252053
#: the auto radius keeps what is lost below sqrt(I)/photonloss_factor
_PHOTONLOSS_FACTOR = 10.0
_GAUSS = 2
_FIBER = 1

# Above this many kernel taps a fixed-radius PSF goes through the FFT by default.
FFT_MIN_TAPS = 81


class PSFResult:
    """Blurred image (float32) and C's printed numbers."""

    __slots__ = ("image", "radius", "lost_photons", "max_input", "skipped")

    def __init__(self, image, radius, lost_photons, max_input, skipped=False):
        self.image = image
        self.radius = radius              # kernel radius in pixels (C's psf_radius)
        self.lost_photons = lost_photons  # C's total_lost_photons
        self.max_input = max_input        # max photons/pixel seen by the auto radius
        self.skipped = skipped            # no photons: C returns zeros


# ----------------------------------------------------------------- analytic integrals
@numba.njit(cache=True)
def _ngauss2D_integ(x, y):
    # C: 0.125*(erf(2*x*sqrt(log(2)))*erf(y*sqrt(log(16)))*sqrt(log(16)/log(2)))
    return 0.125 * (math.erf(2 * x * math.sqrt(math.log(2.0)))
                    * math.erf(y * math.sqrt(math.log(16.0)))
                    * math.sqrt(math.log(16.0) / math.log(2.0)))


@numba.njit(cache=True)
def _gauss_over_pixel(x, y, fwhm, pix):
    x = x / fwhm
    y = y / fwhm
    pix = pix / fwhm
    h = pix / 2.0
    return (_ngauss2D_integ(x + h, y + h) - _ngauss2D_integ(x + h, y - h)
            - _ngauss2D_integ(x - h, y + h) + _ngauss2D_integ(x - h, y - h))


@numba.njit(cache=True)
def _fiber2D_integ(x, y, g):
    return math.atan((x * y) / (g * math.sqrt(g * g + x * x + y * y))) / 2.0 / math.pi


@numba.njit(cache=True)
def _fiber_over_pixel(x, y, g, pix):
    h = pix / 2.0
    return (_fiber2D_integ(x + h, y + h, g) - _fiber2D_integ(x + h, y - h, g)
            - _fiber2D_integ(x - h, y + h, g) + _fiber2D_integ(x - h, y - h, g))


@numba.njit(cache=True)
def _kernel(psf_code, fwhm_pixels, radius):
    g = fwhm_pixels * FIBER_G_PER_FWHM
    size = 2 * radius + 1
    k = np.zeros((size, size), dtype=np.float64)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy > radius * radius:
                continue
            if psf_code == _GAUSS:
                k[radius + dy, radius + dx] = _gauss_over_pixel(float(dx), float(dy), fwhm_pixels, 1.0)
            else:
                k[radius + dy, radius + dx] = _fiber_over_pixel(float(dx), float(dy), g, 1.0)
    return k


def _code(psf_type: str) -> int:
    try:
        return PSF_TYPES[psf_type]
    except KeyError:
        raise ValueError(f"unknown PSF type {psf_type!r} (expected gauss or fiber)") from None


def psf_kernel(psf_type: str, fwhm_pixels: float, radius: int) -> np.ndarray:
    """C's (2R+1, 2R+1) float64 kernel, [dy+R, dx+R]; zero outside the disc of radius R."""
    prepare_cpu()
    return _kernel(_code(psf_type), float(fwhm_pixels), int(radius))


# ----------------------------------------------------------------- radii
@numba.njit(cache=True)
def _c_int(x):
    # gcc x86-64 (int)(double): truncation; NaN / out of range -> INT_MIN
    if not (x > -2147483649.0 and x < 2147483648.0):
        return -2147483648
    return int(x)


@numba.njit(cache=True)
def _auto_radius_one(psf_code, value, fwhm_pixels, g):
    """Per-source automatic radius (apply_psf's loop): value is the float32 pixel."""
    v = np.float64(value)
    lost = math.sqrt(v) / _PHOTONLOSS_FACTOR
    if psf_code == _GAUSS:
        r = _c_int(1.0 + math.ceil(math.sqrt(-math.log(lost / v) / math.log(16.0)) * fwhm_pixels))
    else:
        r = _c_int(1.0 + math.ceil(g * (v / lost)))
    return r


@numba.njit(cache=True)
def _global_auto_radius(psf_code, max_I, fwhm_pixels, g):
    lost = math.sqrt(max_I) / _PHOTONLOSS_FACTOR
    if psf_code == _GAUSS:
        r = _c_int(1.0 + math.ceil(math.sqrt(-math.log(lost / max_I) / math.log(4.0) / 2.0)
                                   * fwhm_pixels))
    else:
        r = _c_int(1.0 + math.ceil(g * (max_I / lost)))
    if r == 0:
        r = 1
    return r


def auto_psf_radius(psf_type: str, max_photons: float, fwhm_pixels: float) -> int:
    """noisify.c's automatic kernel radius for the brightest pixel (before the size clip)."""
    prepare_cpu()
    return int(_global_auto_radius(_code(psf_type), float(max_photons), float(fwhm_pixels),
                                   float(fwhm_pixels) * FIBER_G_PER_FWHM))


@numba.njit(cache=True)
def _source_radii(img, psf_code, fwhm_pixels, user_radius, maxwidth):
    """C's psf_radius for every source pixel of (panels, slow, fast) ``img`` and each
    panel's lost photons (C's total, raster order within the panel)."""
    npan, ny, nx = img.shape
    g = fwhm_pixels * FIBER_G_PER_FWHM
    radii = np.zeros((npan, ny, nx), dtype=np.int32)
    total_lost = np.zeros(npan)
    for p in range(npan):
        lost_p = 0.0
        for y0 in range(ny):
            for x0 in range(nx):
                v = img[p, y0, x0]
                if v <= 0.0:
                    continue
                if user_radius != 0:
                    r = user_radius
                else:
                    r = _auto_radius_one(psf_code, v, fwhm_pixels, g)
                if r == 0:
                    r = 1
                if r > maxwidth:
                    r = maxwidth
                if psf_code == _GAUSS:
                    rsq = np.float64(r) / fwhm_pixels
                    rsq = rsq * rsq
                    lost = np.float64(v) * math.exp(-math.log(16.0) * rsq)
                else:
                    lost = np.float64(v) * g / math.sqrt(g * g + np.float64(r * r))
                lost_p += lost
                radii[p, y0, x0] = r
        total_lost[p] = lost_p
    return radii, total_lost


# ----------------------------------------------------------------- exact (gather) path
@numba.njit(cache=True)
def _add_source(acc, img, radii, kernel, R, xs, ys, dx, dy):
    """One source's term for a target at offset (dx, dy), as C's scatter loop tests it."""
    v = img[ys, xs]
    if v <= 0.0:
        return acc
    r = radii[ys, xs]
    if r < 0 or dx < -r or dx > r or dy < -r or dy > r:
        return acc
    kv = kernel[R + dy, R + dx]
    if kv == 0.0:
        return acc
    if dx * dx + dy * dy > r * r:
        return acc
    return np.float32(np.float64(acc) + np.float64(v) * kv)


@numba.njit(cache=True)
def _column0(img, radii, kernel, R, yt):
    """Output pixel (yt, 0): its own sources plus what sources one row up threw to
    x == nx (C tests ``x > xpixels``), interleaved in C's raster order of sources."""
    ny, nx = img.shape
    acc = np.float32(0.0)
    for ys in range(max(0, yt - R - 1), min(ny - 1, yt + R) + 1):
        for xs in range(0, nx):
            if xs > R and xs < nx - R:
                continue
            if xs <= R:
                acc = _add_source(acc, img, radii, kernel, R, xs, ys, -xs, yt - ys)
            if yt >= 1 and xs >= nx - R:
                acc = _add_source(acc, img, radii, kernel, R, xs, ys, nx - xs, yt - 1 - ys)
    return acc


@numba.njit(cache=True, parallel=True)
def _gather_exact(img, radii, kernel, R, lost_each, uniform, out):
    """C's scatter as a gather: every output pixel adds its sources in raster order.

    ``img`` (panels, slow, fast): every panel is an image of its own (its light never
    reaches another panel; ``lost_each[p]`` is spread over panel p).  For one output
    row the sources of one input row are taken in increasing x (that is decreasing dx),
    each as one pass over the whole row, so the float32 accumulator of every output
    pixel sees exactly C's sequence of (double add, float round) steps while the pass
    vectorises.  Column 0 (the wrap quirk) is done separately.
    """
    npan, ny, nx = img.shape
    for pyt in prange(npan * ny):
        p = pyt // ny
        yt = pyt % ny
        pimg = img[p]
        prad = radii[p]
        acc = np.zeros(nx, dtype=np.float32)
        for ys in range(max(0, yt - R), min(ny - 1, yt + R) + 1):
            dy = yt - ys
            row = pimg[ys]
            rrow = prad[ys]
            for dx in range(R, -R - 1, -1):
                kv = kernel[R + dy, R + dx]
                if kv == 0.0:
                    continue
                d2 = dx * dx + dy * dy
                lo = max(1, dx)
                hi = min(nx - 1, nx - 1 + dx)
                if uniform:
                    # one radius for all sources (-psf_radius): the disc is the kernel's
                    for xt in range(lo, hi + 1):
                        v = row[xt - dx]
                        # C skips sources <= 0 (NaN is not); adding +0.0 instead leaves
                        # the float32 sum unchanged (it is never -0.0), and vectorises
                        t = np.float64(v) * kv if not (v <= 0.0) else 0.0
                        acc[xt] = np.float32(np.float64(acc[xt]) + t)
                else:
                    for xt in range(lo, hi + 1):
                        v = row[xt - dx]
                        r = rrow[xt - dx]
                        # ... and targets beyond the source's own radius
                        ok = (not (v <= 0.0)) and r >= 0 and d2 <= r * r
                        t = np.float64(v) * kv if ok else 0.0
                        acc[xt] = np.float32(np.float64(acc[xt]) + t)
        if nx > 0:
            acc[0] = _column0(pimg, prad, kernel, R, yt)
        le = lost_each[p]
        for xt in range(nx):
            out[p, yt, xt] = np.float32(np.float64(acc[xt]) + le)


def _prepare(image, psf_type, fwhm_pixels, user_radius):
    img = np.ascontiguousarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img.reshape((1,) + img.shape)
    if img.ndim != 3:
        raise ValueError("PSF image must be (slow, fast) or (panels, slow, fast)")
    code = _code(psf_type)
    fwhm_pixels = float(fwhm_pixels)
    user_radius = int(user_radius)
    if not fwhm_pixels > 0.0:
        raise ValueError(f"PSF FWHM must be positive, got {fwhm_pixels} pixels")
    if user_radius < 0:
        raise ValueError(f"PSF radius must be >= 0 pixels (0: automatic), got {user_radius}")
    return img, code, fwhm_pixels, user_radius


def _kernel_radius(img, code, fwhm_pixels, user_radius):
    """C's kernel radius (the brightest pixel of all panels); None when the automatic
    radius finds no photons."""
    _, ny, nx = img.shape
    maxwidth = max(nx, ny)
    max_I = 0.0
    if user_radius <= 0:
        max_I = float(max(0.0, float(img.max()))) if img.size else 0.0
        if max_I <= 0.0:
            return None, max_I, maxwidth
        R = int(_global_auto_radius(code, max_I, fwhm_pixels, fwhm_pixels * FIBER_G_PER_FWHM))
    else:
        R = user_radius
    if R > maxwidth:
        R = maxwidth
    return R, max_I, maxwidth


def apply_psf_exact(image, psf_type: str, fwhm_pixels: float, radius: int = 0) -> PSFResult:
    """noisify.c's ``apply_psf`` bit for bit (float32 result, the image's shape).

    ``image``: (slow, fast), or (panels, slow, fast): every panel is blurred as an image
    of its own (no light crosses into another panel; each panel's lost tail is spread
    over that panel); one kernel radius, from the brightest pixel of all panels.
    ``radius``: C's ``-psf_radius`` in pixels, 0 for the automatic per-source radius.
    """
    prepare_cpu()
    shape = np.shape(image)
    img, code, fwhm_pixels, user_radius = _prepare(image, psf_type, fwhm_pixels, radius)
    R, max_I, maxwidth = _kernel_radius(img, code, fwhm_pixels, user_radius)
    if R is None:
        return PSFResult(np.zeros(shape, dtype=np.float32), 0, 0.0, max_I, skipped=True)
    kernel = _kernel(code, fwhm_pixels, R)
    radii, lost = _source_radii(img, code, fwhm_pixels, user_radius, maxwidth)
    out = np.empty_like(img)
    npix = img.shape[1] * img.shape[2]
    _gather_exact(img, radii, kernel, R, lost / max(npix, 1), user_radius > 0, out)
    return PSFResult(out.reshape(shape), R, float(lost.sum()), max_I)


# ----------------------------------------------------------------- FFT path
def _rfft_mod():
    try:
        import scipy.fft as sfft
        return sfft, True
    except ImportError:                      # numpy.fft: same result, slower
        return np.fft, False


#: core tile edge of the overlap-add FFT (small transforms stay in cache)
FFT_TILE = 512


def _fft_convolve(src, kernel, R, workers=None):
    """Full linear convolution of ``src`` with the (2R+1)^2 ``kernel`` in float64: shape
    (ny+2R, nx+2R), by overlap-add over tiles; tiles run on ``workers`` threads (default:
    Numba's thread count).  A float32 ``src`` (an image) spreads its positive pixels only,
    as C; a float64 one is taken as given."""
    fft, is_scipy = _rfft_mod()
    ny, nx = src.shape
    T = max(FFT_TILE, 4 * (2 * R + 1))
    L = T + 2 * R
    if is_scipy:
        L = fft.next_fast_len(L, real=True)
    K = fft.rfft2(kernel, (L, L))
    if workers is None:
        workers = numba.get_num_threads()
    full = np.zeros((ny + 2 * R, nx + 2 * R))
    tiles = [(y, x) for y in range(0, ny, T) for x in range(0, nx, T)]

    def one(yx):
        y, x = yx
        t = src[y:y + T, x:x + T]
        if t.dtype != np.float64:
            # only positive pixels spread light (C skips in <= 0)
            t = np.where(t > 0.0, t.astype(np.float64), 0.0)
        o = fft.irfft2(fft.rfft2(t, (L, L)) * K, (L, L))
        return yx, t.shape, o

    def add(res):
        (y, x), (h, w), o = res
        full[y:y + h + 2 * R, x:x + w + 2 * R] += o[:h + 2 * R, :w + 2 * R]

    if workers > 1 and len(tiles) > 1:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=int(workers)) as ex:
            for res in ex.map(one, tiles):
                add(res)
    else:
        for yx in tiles:
            add(one(yx))
    return full


def apply_psf_fft(image, psf_type: str, fwhm_pixels: float, radius: int,
                  workers: int | None = None) -> PSFResult:
    """Fixed-radius PSF by FFT (overlap-add, float64), same result as C within float rounding.

    ``image`` (slow, fast) or (panels, slow, fast): the panels are convolved as one image
    with 2R zero rows between them, so no light crosses into another panel; each panel's
    lost tail is spread over that panel.  ``radius`` must be > 0 (the automatic radius
    varies per source; use the exact path).
    """
    prepare_cpu()
    shape = np.shape(image)
    img, code, fwhm_pixels, user_radius = _prepare(image, psf_type, fwhm_pixels, radius)
    if user_radius <= 0:
        raise ValueError("the FFT PSF needs a fixed radius > 0 (automatic radius: exact path)")
    npan, ny, nx = img.shape
    R, max_I, maxwidth = _kernel_radius(img, code, fwhm_pixels, user_radius)
    kernel = _kernel(code, fwhm_pixels, R)
    if code == _GAUSS:
        rsq = (float(R) / fwhm_pixels) ** 2
        lost_frac = math.exp(-math.log(16.0) * rsq)
    else:
        g = fwhm_pixels * FIBER_G_PER_FWHM
        lost_frac = g / math.sqrt(g * g + float(R * R))
    # the tail of the positive pixels (the ones that spread), per panel
    if npan == 1:
        lost = np.array([float(np.sum(img, where=img > 0.0, dtype=np.float64))]) * lost_frac
    else:
        lost = np.sum(img, axis=(1, 2), where=img > 0.0, dtype=np.float64) * lost_frac
    pitch = ny + 2 * R if npan > 1 else ny         # panel p starts at row p * pitch
    if npan > 1:
        src = np.zeros((npan, pitch, nx), dtype=np.float32)
        src[:, :ny] = img
        src = src.reshape(npan * pitch, nx)[:(npan - 1) * pitch + ny]
    else:
        src = img[0]
    full = _fft_convolve(src, kernel, R, workers)
    # full[R + y, R + x] is the output at (y, x); column nx is C's wrap column
    rows = np.arange(npan)[:, None] * pitch + R + np.arange(ny)[None, :]
    conv = full[rows, R:R + nx + 1]                   # (panels, ny, nx + 1)
    out = conv[:, :, :nx].copy()
    out[:, 1:, 0] += conv[:, :-1, nx]       # x == nx wraps to column 0 of the next row
    out += (lost / (ny * nx))[:, None, None]
    return PSFResult(out.astype(np.float32).reshape(shape), R, float(lost.sum()), max_I)


def apply_psf(image, psf_type: str, fwhm_pixels: float, radius: int = 0, *,
              method: str = "auto", workers: int | None = None) -> PSFResult:
    """PSF with C's semantics; ``method`` 'exact', 'fft' or 'auto' (exact unless the
    radius is fixed and the kernel has more than :data:`FFT_MIN_TAPS` taps)."""
    if method not in ("auto", "exact", "fft"):
        raise ValueError(f"PSF method must be auto, exact or fft, got {method!r}")
    r = int(radius)
    if method == "auto":
        method = "fft" if r > 0 and (2 * r + 1) ** 2 > FFT_MIN_TAPS else "exact"
    if method == "fft":
        return apply_psf_fft(image, psf_type, fwhm_pixels, r, workers=workers)
    return apply_psf_exact(image, psf_type, fwhm_pixels, r)

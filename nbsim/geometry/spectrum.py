"""X-ray spectra of datasets: a seeded SASE model per shot, or a pink-beam spectrum from a
file, turned into nanoBragg sources (docs/datasets.md, "Spectra").

nanoBragg sums its sources with **equal weight** (the source file's weight column is read
and ignored), so a spectrum S(E) is represented by ``n`` channels placed at its
equal-photon quantiles: channel j sits at ``E_j = C^-1((j + 1/2) / n)``, C the cumulative
photon spectrum, and carries 1/n of the pulse's photons.  The render of the channels is
then exactly the render of ``-sourcefile`` with one line ``nan nan nan 1 lambda_j`` per
channel (NaN: C's default position, along the beam), and the weighted mean of the
channels is the spectrum's mean wavelength up to the sampling.

SASE model (:class:`SaseSpectrum`): the partial-coherence method of Pfeifer, Jiang, Liu &
Robinson, "Partial-coherence method to model experimental free-electron laser pulse
statistics", Opt. Lett. 35, 3441 (2010), which reproduces the Gaussian random-field
statistics of SASE radiation (Saldin, Schneidmiller & Yurkov, "The Physics of Free
Electron Lasers", Springer 2000, ch. 6: chaotic light, spectral spikes of width ~ 1/T):

1. the shot's central photon energy ``E_c = E_0 (1 + jitter g)``, g ~ N(0, 1), E_0 =
   hc/lambda (``-lambda``);
2. on an energy grid around E_c (+-2.5 FWHM, 6 points per spike FWHM, at most 2^18
   points), a complex field of Gaussian amplitude envelope
   ``sqrt(G(E))`` (G a Gaussian of FWHM ``bandwidth * E_0``, the mean spectrum) with
   independent phases uniform on [0, 2 pi);
3. Fourier transform to time, multiply by the pulse's field envelope
   ``exp(-t^2 / (4 sigma_t^2))`` (intensity FWHM ``duration`` = 2.3548 sigma_t),
   transform back: ``S(E) = |field|^2`` has spikes of FWHM ~ 4 ln2 hbar / duration
   (1.825 eV fs / duration) inside the envelope, about bandwidth x duration / 1.8 eV fs of
   them;
4. photons per energy bin ``S(E) / E``; the channels are its quantiles as above.

Every random number of shot i comes from ``numpy.random.default_rng(frame_seed(seed, i,
"spectrum"))`` (PCG64: the same numbers on every platform and worker).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
import numpy as np

__all__ = ["HC_EV_M", "SaseSpectrum", "FileSpectrum", "quantile_channels",
           "read_spectrum", "source_rows"]

#: h c in eV m (CODATA 2018, exact SI: 1.239841984e-6 eV m)
HC_EV_M = 1.2398419843320026e-06
#: h in eV fs (CODATA 2018, exact SI)
H_EV_FS = 4.135667696923859
#: FWHM / sigma of a Gaussian
FWHM_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: the finest energy grid: at most this many points per shot (an FFT of 2^18 is ~10 ms)
MAX_GRID = 1 << 18


def quantile_channels(x: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """``n`` points at the equal-weight quantiles ``(j + 1/2)/n`` of a spectrum sampled
    on an increasing grid ``x`` with non-negative ``weights``: the density is linear
    between neighbouring points (weight ``w_k`` at ``x_k``), so the cumulative is
    quadratic in each interval and is inverted exactly there.  Returns an increasing
    array."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    dx = np.diff(x)
    mass = 0.5 * (w[:-1] + w[1:]) * dx
    cdf = np.concatenate([[0.0], np.cumsum(mass)])
    targets = (np.arange(n) + 0.5) / n * cdf[-1]
    k = (np.searchsorted(cdf, targets, side="right") - 1).clip(0, dx.size - 1)
    r = targets - cdf[k]                     # what the interval k still has to hold
    a = (w[k + 1] - w[k]) / (2.0 * dx[k])    # r = a u^2 + w_k u, u from x_k
    b = w[k]
    disc = np.sqrt(np.maximum(b * b + 4.0 * a * r, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(b + disc > 0, 2.0 * r / (b + disc), 0.0)   # the stable root
    return x[k] + np.clip(u, 0.0, dx[k])


@dataclass(frozen=True)
class SaseSpectrum:
    """A SASE spectrum per shot (see the module doc).  ``bandwidth``: FWHM of the mean
    spectrum relative to E_0; ``jitter``: rms of the shot's central photon energy
    relative to E_0; ``duration``: FWHM of the pulse's intensity in fs; ``channels``:
    sources per shot."""
    bandwidth: float
    jitter: float = 0.0
    duration: float = 30.0
    channels: int = 100

    kind = "sase"

    def __post_init__(self):
        if not (math.isfinite(self.bandwidth) and 0.0 < self.bandwidth < 0.5):
            raise ValueError(f"-sase_bandwidth: the relative FWHM must be in (0, 0.5), "
                             f"got {self.bandwidth:g}")
        if not (math.isfinite(self.jitter) and 0.0 <= self.jitter < 0.1):
            raise ValueError(f"-sase_jitter: the relative rms must be in [0, 0.1), "
                             f"got {self.jitter:g}")
        if not (math.isfinite(self.duration) and 0.01 <= self.duration <= 1e5):
            raise ValueError(f"-sase_duration: the pulse FWHM must be in [0.01, 1e5] fs, "
                             f"got {self.duration:g}")
        _check_channels(self.channels)

    def spectrum(self, lambda0: float, seed: int):
        """``(energies eV, photons per bin)`` of the shot seeded ``seed`` (an increasing
        energy grid), for the mean wavelength ``lambda0`` (m)."""
        rng = np.random.default_rng(int(seed))
        e0 = HC_EV_M / float(lambda0)
        ec = e0 * (1.0 + self.jitter * rng.standard_normal())
        fwhm = self.bandwidth * e0
        spike = 4.0 * math.log(2.0) * H_EV_FS / (2.0 * math.pi) / self.duration
        span = 5.0 * fwhm + 16.0 * spike            # +-2.5 FWHM: G < 3e-8 beyond
        step = spike / 6.0                          # 6 points per spike FWHM
        m = 1 << max(10, int(math.ceil(math.log2(span / step))))
        m = min(m, MAX_GRID)
        step = span / m
        energies = ec + (np.arange(m) - m // 2) * step
        sigma_e = fwhm / FWHM_SIGMA
        envelope = np.exp(-0.25 * ((energies - ec) / sigma_e) ** 2)   # sqrt of Gaussian
        phases = rng.uniform(0.0, 2.0 * math.pi, m)
        field_t = np.fft.ifft(envelope * np.exp(1j * phases))
        t = np.fft.fftfreq(m, d=step) * H_EV_FS                       # fs
        sigma_t = self.duration / FWHM_SIGMA
        field_t *= np.exp(-0.25 * (t / sigma_t) ** 2)
        s = np.abs(np.fft.fft(field_t)) ** 2
        return energies, s / energies

    def wavelengths(self, lambda0: float, seed: int) -> np.ndarray:
        """The shot's ``channels`` wavelengths (m, increasing)."""
        e, photons = self.spectrum(lambda0, seed)
        return np.sort(HC_EV_M / quantile_channels(e, photons, self.channels))


@dataclass(frozen=True, eq=False)
class FileSpectrum:
    """A pink-beam / polychromatic spectrum from a file, the same for every frame:
    ``wavelength`` (m, increasing) and ``weight`` (photons per point)."""
    wavelength: np.ndarray
    weight: np.ndarray
    channels: int = 100
    path: str = ""

    kind = "file"

    def __post_init__(self):
        _check_channels(self.channels)

    def wavelengths(self, lambda0: float, seed: int) -> np.ndarray:
        """The ``channels`` wavelengths (m, increasing); independent of the frame."""
        cached = self.__dict__.get("_channels")
        if cached is None:
            cached = quantile_channels(self.wavelength, self.weight, self.channels)
            object.__setattr__(self, "_channels", cached)
        return cached.copy()


def _check_channels(n):
    if not (isinstance(n, (int, np.integer)) and 1 <= n <= 100000):
        raise ValueError(f"-spectrum_channels: needs 1 to 100000 channels, got {n}")


def read_spectrum(path: str, channels: int = 100) -> FileSpectrum:
    """A spectrum file: two columns per line, ``wavelength_A weight`` (weight: the
    relative photon density at that wavelength, >= 0, linear between the lines); '#'
    starts a comment; at least two distinct wavelengths.  Raises ValueError with the line
    at fault."""
    lam, w = [], []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            t = line.split("#", 1)[0].replace(",", " ").split()
            if not t:
                continue
            if len(t) != 2:
                raise ValueError(f"line {n}: expected 2 columns (wavelength_A weight), "
                                 f"got {len(t)}")
            try:
                a, b = float(t[0]), float(t[1])
            except ValueError:
                raise ValueError(f"line {n}: not numbers: {line.strip()!r}") from None
            if not (math.isfinite(a) and a > 0):
                raise ValueError(f"line {n}: the wavelength must be > 0 A, got {t[0]}")
            if not (math.isfinite(b) and b >= 0):
                raise ValueError(f"line {n}: the weight must be >= 0, got {t[1]}")
            lam.append(a * 1e-10)
            w.append(b)
    lam, w = np.array(lam), np.array(w)
    order = np.argsort(lam, kind="stable")
    lam, w = lam[order], w[order]
    if np.unique(lam).size < 2:
        raise ValueError("needs at least two distinct wavelengths")
    if np.any(np.diff(lam) == 0):
        raise ValueError("a wavelength is listed twice")
    if not w.sum() > 0:
        raise ValueError("the weights sum to zero")
    return FileSpectrum(lam, w, channels=int(channels), path=str(path))


def source_rows(wavelengths: np.ndarray) -> np.ndarray:
    """The Config's ``beam.sources`` rows of a spectrum's channels: what ``-sourcefile``
    with one line ``nan nan nan 1 lambda`` per channel reads (position: along the beam)."""
    lam = np.asarray(wavelengths, dtype=np.float64)
    rows = np.full((lam.size, 5), np.nan)
    rows[:, 3] = 1.0
    rows[:, 4] = lam
    return rows


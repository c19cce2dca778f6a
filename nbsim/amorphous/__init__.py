"""Amorphous scattering (water, air, ice ...) on an absolute scale: nonBragg.c.

* :mod:`.stol` -- the structure-factor table (``-stol``/``-4stol``/``-Q`` files);
* :mod:`.geometry` -- nonBragg.c's geometry rules, or nbsim's detector, as
  :class:`~.geometry.AmorphousGeometry`;
* :mod:`.pixel` -- one pixel (written once), :mod:`.cpu` (prange) and :mod:`.cuda`
  (one thread per pixel) kernels;
* :func:`amorphous_image` -- photons/pixel of a sample of given size, density and
  molecular weight under a given fluence.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._numba_setup import prepare_cpu
from .geometry import (AmorphousGeometry, NonBraggDetector, geometry_from_nbsim,
                       resolve_nonbragg_geometry)
from .stol import StolTable, read_stol, stol_table

__all__ = ["AmorphousSample", "amorphous_image", "pack", "AmorphousGeometry",
           "NonBraggDetector", "resolve_nonbragg_geometry", "geometry_from_nbsim",
           "StolTable", "read_stol", "stol_table", "AVOGADRO", "R_E_SQR"]

AVOGADRO = 6.02214179e23           # nonBragg.c's value
R_E_SQR = 7.94079248018965e-30     # Thomson cross section, m^2
DEFAULT_FLUENCE = 125932015286227086360700780544.0


@dataclass
class AmorphousSample:
    """Sample and beam scale (nonBragg.c defaults): metres, g/m^3, g/mol, photons/m^2."""

    thickness: float = 1e-4        # sample_x, along the beam
    width: float = 1e-4            # sample_y
    height: float = 1e-4           # sample_z
    density: float = 1.0e6         # g/m^3 (1 g/cm^3)
    molecular_weight: float = 18.0
    molecules: float = 0.0         # > 0: given, overrides the density
    fluence: float = DEFAULT_FLUENCE
    flux: float = 0.0              # photons/s; with exposure and beamsize sets the fluence
    exposure: float = 1.0          # s
    beamsize: float = 1e-4         # m; clips the sample's width and height
    polarization: float = 0.0      # Kahn factor
    nopolar: bool = False

    def resolved(self):
        """C's arithmetic: ``(fluence, molecules, width, height, notes)``."""
        notes = []
        fluence = self.fluence
        y, z = self.width, self.height
        if self.flux != 0.0 and self.exposure > 0.0 and self.beamsize >= 0:
            fluence = self.flux * self.exposure / self.beamsize / self.beamsize
        if self.beamsize >= 0:
            if self.beamsize < y:
                notes.append("clipping sample (%g m high) with beam (%g m)" % (y, self.beamsize))
                y = self.beamsize
            if self.beamsize < z:
                notes.append("clipping sample (%g m wide) with beam (%g m)" % (z, self.beamsize))
                z = self.beamsize
        volume = self.thickness * y * z
        density = self.density
        if self.molecules != 0:
            density = self.molecules / volume / AVOGADRO * self.molecular_weight
        molecules = volume * density * AVOGADRO / self.molecular_weight
        return fluence, molecules, y, z, density, notes


def pack(geom: AmorphousGeometry, sample: AmorphousSample, fmap: bool = False):
    """Kernel arguments ``(roi, g, opt, incident, wavelengths, weights)``."""
    from . import pixel as P
    fluence, molecules, *_ = sample.resolved()
    g = np.zeros(P.G_SIZE)
    g[P.G_PIXEL] = geom.pixel_size
    g[P.G_SUBPIXEL] = geom.pixel_size / geom.oversample
    g[P.G_DISTANCE] = geom.distance
    g[P.G_CLOSE] = geom.close_distance
    for idx, v in ((P.G_F, geom.fdet), (P.G_S, geom.sdet), (P.G_O, geom.odet),
                   (P.G_PIX0, geom.pix0), (P.G_BEAM, geom.beam), (P.G_POLAR, geom.polar)):
        g[idx:idx + 3] = v
    g[P.G_KAHN] = sample.polarization
    g[P.G_RE2] = R_E_SQR
    g[P.G_FLUENCE] = fluence
    g[P.G_MOLECULES] = molecules
    opt = np.zeros(P.O_SIZE, dtype=np.int64)
    opt[P.O_OVERSAMPLE] = geom.oversample
    opt[P.O_CURVED] = int(geom.curved)
    opt[P.O_POINT] = int(geom.point_pixel)
    opt[P.O_NOPOLAR] = int(sample.nopolar)
    opt[P.O_FMAP] = int(fmap)
    roi = np.array(geom.roi, dtype=np.int64)
    return (roi, g, opt, np.ascontiguousarray(geom.incident, dtype=np.float64),
            np.ascontiguousarray(geom.wavelengths, dtype=np.float64),
            np.ascontiguousarray(geom.weights, dtype=np.float64))


def amorphous_image(geom: AmorphousGeometry, table: StolTable, sample: AmorphousSample,
                    *, device: str = "cpu", fmap: bool = False) -> np.ndarray:
    """Photons/pixel (float32, (spixels, fpixels)) of amorphous scattering, nonBragg.c's.

    ``device``: 'cpu' (Numba prange) or 'cuda' (numba.cuda; float64 kept on the device).
    """
    roi, g, opt, inc, lam, w = pack(geom, sample, fmap)
    shape = (geom.spixels, geom.fpixels)
    if device == "cuda":
        from .cuda import render_amorphous_cuda
        img = render_amorphous_cuda(shape, roi, g, opt, inc, lam, w, table.stol, table.F)
        out = img.astype(np.float32)
        r = geom.roi
        mask = np.zeros(shape, dtype=bool)
        mask[r[2]:r[3] + 1, r[0]:r[1] + 1] = True
        out[~mask] = 0.0
        return out
    if device != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    prepare_cpu()
    from .cpu import render_amorphous_cpu
    out = np.empty(shape, dtype=np.float32)
    render_amorphous_cpu(out, roi, g, opt, inc, lam, w, table.stol, table.F)
    return out

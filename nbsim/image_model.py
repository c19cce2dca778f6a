"""The image model: a frame is ``(panels, slow, fast)`` from the renderer to the sinks.

A single-panel detector is one panel, ``(1, slow, fast)``.  The renderer, the -stol
background, the Poisson noise, noisify's chain (a PSF stays inside its panel) and the
per-pixel products (int / PGM / noise pixels) all work on that array; only the file
writers turn it into a file layout (:class:`FileLayout`, dxtbx's detector-as-list-of-
panels model):

* ``single``: a one-panel detector: the panel, as nanoBragg writes it;
* ``tiled``: a panel set with a layout (presets; panel files with ``frame`` and every
  panel's ``tile``): the tiled frame with zero gaps, the frame detector's header;
* ``stacked``: any other panel set: the panels stacked along slow (the flat index
  raster, ``panels * spixels`` rows), or one file per panel where a writer does so (CBF).

``-roi`` applies to each panel's own pixel coordinates; pixels outside it are 0 in every
product (C's rule), gaps are 0.  Statistics (max, mean, rms, rmsd: the int and PGM
scales) are C's over the panels' ROI pixels in nbsim's raster order over panels (panel,
slow, fast); the location of the maximum is given in the stacked raster (row = panel *
spixels + slow), as :meth:`nbsim.Simulator.trace_pixel` takes it.  For one panel every
function here is the single-panel code path, byte for byte.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional, Tuple

import numpy as np

__all__ = ["frame_shape", "as_frame", "panel_roi", "rendered_mask", "outside_roi",
           "FileLayout", "frame_stats", "int_pixels", "pgm_pixels"]


def frame_shape(plan) -> Tuple[int, int, int]:
    """``(panels, slow, fast)`` of ``plan``'s frames (one panel without a panel set)."""
    ps = getattr(plan, "panels", None)
    if ps is not None:
        return tuple(int(v) for v in ps.shape)
    det = plan.detector
    return (1, int(det.spixels), int(det.fpixels))


def as_frame(plan, image) -> np.ndarray:
    """``image`` (any shape holding the frame's pixels in the flat order) as a
    ``(panels, slow, fast)`` view."""
    return np.asarray(image).reshape(frame_shape(plan))


def panel_roi(plan):
    """The ROI ``(xmin, xmax, ymin, ymax)`` (inclusive) in every panel's own pixel
    coordinates, clipped to the panel; None when it covers every pixel."""
    n, sp, fp = frame_shape(plan)
    det = plan.frame_detector if getattr(plan, "panels", None) is not None else plan.detector
    roi = det.roi
    if roi is None:
        return None
    x0, x1, y0, y1 = (int(v) for v in roi)
    r = (max(x0, 0), min(x1, fp - 1), max(y0, 0), min(y1, sp - 1))
    if r == (0, fp - 1, 0, sp - 1):
        return None
    return r


def outside_roi(plan) -> Optional[np.ndarray]:
    """bool ``(slow, fast)`` of one panel: True outside the ROI (the same in every panel);
    None when the ROI covers the panel."""
    r = panel_roi(plan)
    if r is None:
        return None
    _, sp, fp = frame_shape(plan)
    out = np.ones((sp, fp), dtype=bool)
    out[r[2]:r[3] + 1, r[0]:r[1] + 1] = False
    return out


def rendered_mask(plan) -> Optional[np.ndarray]:
    """bool ``(panels, slow, fast)``: True where a pixel is rendered (the -mask and the
    panels' own masks); None without a mask."""
    if getattr(plan, "panels", None) is None:
        if not plan.options.has_mask:
            return None
    elif not plan.options.has_mask:
        return None
    return np.asarray(plan.mask).reshape(frame_shape(plan)) != 0


class FileLayout:
    """How a plan's ``(panels, slow, fast)`` frames are laid out in a file (module doc):
    ``kind`` ("single", "tiled", "stacked"), ``detector`` (the file header's detector,
    whose pixel counts are the file's), :meth:`file` (the 2-D file array)."""

    def __init__(self, plan):
        self.plan = plan
        self.shape = frame_shape(plan)
        ps = getattr(plan, "panels", None)
        self.panels = ps
        if ps is None:
            self.kind = "single"
            self.detector = plan.detector
        elif ps.frame is not None and all(p.tile is not None for p in ps.panels):
            self.kind = "tiled"
            det = plan.frame_detector
            self.detector = replace(det, roi=(0, det.fpixels, 0, det.spixels))
        else:
            self.kind = "stacked"
            det = plan.detector
            self.detector = replace(det, roi=(0, det.fpixels, 0, det.spixels))

    @property
    def file_shape(self) -> Tuple[int, int]:
        return (int(self.detector.spixels), int(self.detector.fpixels))

    def file(self, frame) -> np.ndarray:
        """The 2-D file array of a ``(panels, slow, fast)`` frame (zero gaps)."""
        a = np.asarray(frame).reshape(self.shape)
        if self.kind == "tiled":
            return self.panels.tiled(a, fill=0)
        return a.reshape(self.file_shape)


def frame_stats(plan, img3, *, compiled: bool = False):
    """C's statistics (:class:`nbsim.stats.ImageStats`) of a float32 ``(panels, slow,
    fast)`` frame over its ROI and rendered pixels (module doc); ``compiled``: one
    panel by :mod:`nbsim.postrender` (same numbers)."""
    from .stats import StreamingStats, image_stats
    n, sp, fp = frame_shape(plan)
    img = np.ascontiguousarray(img3, dtype=np.float32).reshape(n, sp, fp)
    if n == 1:
        det = plan.detector
        if compiled:
            acc = StreamingStats(det.roi, fp, sp,
                                 plan.mask if plan.options.has_mask else None)
            acc.add_rows(img[0], 0)
            acc.add_deviation_rows(img[0], 0)
            return acc.result(det.pixel_size, plan.oversample)
        return image_stats(img[0], mask=rendered_mask(plan), roi=det.roi,
                           pixel_size=det.pixel_size, oversample=plan.oversample)
    r = panel_roi(plan) or (0, fp - 1, 0, sp - 1)
    return image_stats(img, mask=rendered_mask(plan), roi=r,
                       pixel_size=float(plan.frame_detector.pixel_size),
                       oversample=plan.oversample)


def _clear_outside(plan, out3: np.ndarray) -> np.ndarray:
    keep_out = outside_roi(plan)
    if keep_out is not None:
        out3[:, keep_out] = 0
    return out3


def int_pixels(plan, img3, scale: float, adc_offset: float) -> np.ndarray:
    """C's int image (uint16 ``(panels, slow, fast)``), 0 outside the ROI."""
    from .io import int_image
    n, sp, fp = frame_shape(plan)
    img = np.asarray(img3).reshape(n, sp, fp)
    if n == 1:
        return int_image(img[0], scale, adc_offset, plan.detector.roi).reshape(n, sp, fp)
    out = int_image(img.reshape(n * sp, fp), scale, adc_offset, None).reshape(n, sp, fp)
    return _clear_outside(plan, out)


def pgm_pixels(plan, img3, scale: float) -> np.ndarray:
    """C's PGM pixels (uint8 ``(panels, slow, fast)``), 0 outside the ROI."""
    from .io import pgm_image
    n, sp, fp = frame_shape(plan)
    img = np.asarray(img3).reshape(n, sp, fp)
    if n == 1:
        return pgm_image(img[0], scale, plan.detector.roi).reshape(n, sp, fp)
    out = pgm_image(img.reshape(n * sp, fp), scale, None).reshape(n, sp, fp)
    return _clear_outside(plan, out)

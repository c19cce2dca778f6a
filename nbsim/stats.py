"""Image statistics nanoBragg.c prints after rendering, and its output-scale rules.

C (ll. 3041-3139) accumulates, *inside the render loop*, over pixels that are in the ROI
and not masked, in raster order, from the stored float32 pixel values:

* ``max_I``: starts at 0.0, replaced when a pixel is strictly greater (first maximum
  wins; an all-nonpositive image reports 0 at 0 0).  Its location ``max_I_x, max_I_y``
  is C's ``Fdet, Sdet`` at that moment: the detector coordinate (metres) of the *last
  sub-pixel* of the pixel, ``subpixel*(fpixel*oversample + oversample-1) + subpixel/2``
  with ``subpixel = pixel_size/oversample`` -- the pixel centre only when oversample = 1;
* ``sum += v`` (double), ``sumsqr += v*v`` where ``v*v`` is a *float32* product;
* ``sumn`` = number of such pixels.

Then ``avg = sum/sumn`` (sumn forced >= 1), ``rms = sqrt(sumsqr/(sumn-1))`` (sumn
forced >= 2), and a second pass over the ROI -- *including masked pixels* (value 0),
with its own count -- gives ``rmsd = sqrt(sum((v-avg)^2)/(n-1))``.  C prints::

    max_I = %g  at %g %g
    mean= %g rms= %g rmsd= %g

Scales: ``intfile_scale <= 0`` (default 0) becomes ``55000/max_I`` (1.0 when max_I <= 0),
printed ``intfile_scale = %g``; ``pgm_scale <= 0`` becomes ``250/(5*rmsd)`` (or
intfile_scale when rmsd <= 0), printed ``pgm_scale = %g``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import physics as ph
from .io._roi import as_image2d, roi_tuple, roi_window
from .io.cformat import c_g

__all__ = ["ImageStats", "image_stats", "intfile_scale_rule", "pgm_scale_rule",
           "max_location", "StreamingStats", "solid_angle_sum"]


@dataclass
class ImageStats:
    """C's statistics of a rendered image (see module doc); lengths in metres."""

    max_I: float
    max_I_x: float
    max_I_y: float
    max_fpixel: int          # -1 when no pixel exceeded 0
    max_spixel: int
    mean: float
    rms: float
    rmsd: float
    sum: float
    sumsqr: float
    sumn: int                # rendered (in-ROI, unmasked) pixels, before C's clamping

    def lines(self) -> list[str]:
        """The two lines C prints."""
        return ["max_I = %s  at %s %s" % (c_g(self.max_I), c_g(self.max_I_x), c_g(self.max_I_y)),
                "mean= %s rms= %s rmsd= %s" % (c_g(self.mean), c_g(self.rms), c_g(self.rmsd))]


_BLOCK = 1 << 16


def _seq_sum(x: np.ndarray, transform=None, start: float = 0.0) -> float:
    """Left-to-right float64 sum of ``transform(x)`` continuing from ``start`` (C's loop
    order: ``np.add.accumulate`` is sequential, unlike ``np.sum``'s pairwise summation), in
    blocks so no image-sized temporary is made.  Sequential, so a sum carried across
    pieces of an image (``start`` = the previous pieces' sum) is the one-piece sum, bit for
    bit."""
    acc = float(start)
    buf = np.empty(_BLOCK + 1, dtype=np.float64)
    for i in range(0, x.size, _BLOCK):
        c = x[i:i + _BLOCK]
        if transform is not None:
            c = transform(c)
        m = c.size + 1
        buf[0] = acc
        buf[1:m] = c
        np.add.accumulate(buf[:m], out=buf[:m])
        acc = float(buf[m - 1])
    return acc


def _stats(img, render, use_mask, roi):
    """C's two passes (module doc) with NumPy, in C's order and precision.  NumPy rather
    than a Numba kernel: the CLI on a GPU then never sets up Numba's CPU target.
    ``img`` (slow, fast) or (panels, slow, fast): the ROI of every panel, in raster order
    over panels; the maximum's slow index is then the stacked row (panel * slow + s)."""
    img3 = img if img.ndim == 3 else img[None]
    render3 = render if (not use_mask or render.ndim == 3) else render[None]
    rows, cols = roi_window(roi)
    x0, y0 = cols.start, rows.start
    win = img3[:, rows, cols]                       # the ROI, raster order (float32)
    v = win[render3[:, rows, cols]] if use_mask else win.ravel()
    # max: C keeps the first pixel strictly greater than the running max (from 0.0);
    # NaN never compares greater
    max_I, mf, ms = 0.0, -1, -1
    if v.size:
        finite_max = np.where(np.isnan(v), -np.inf, v)
        k = int(np.argmax(finite_max))
        if finite_max[k] > 0.0:
            max_I = float(v[k])
            if use_mask:
                pp, ss, ff = np.nonzero(render3[:, rows, cols])
                ms, mf = (int(ss[k]) + y0 + int(pp[k]) * img3.shape[1],
                          int(ff[k]) + x0)
            else:
                pk, rem = divmod(k, win.shape[1] * win.shape[2])
                ms, mf = divmod(rem, win.shape[2])
                ms, mf = ms + y0 + pk * img3.shape[1], mf + x0
    sumn = int(v.size)
    total = _seq_sum(v)
    sumsqr = _seq_sum(v, lambda c: c * c)           # float*float in C, summed in double
    n = max(sumn, 1)
    avg = total / n
    n = max(n, 2)
    rms = math.sqrt(sumsqr / (n - 1))
    allv = win.ravel()                              # second pass: masked pixels too

    def dev2(c):
        t = c.astype(np.float64) - avg
        return t * t
    n2 = max(int(allv.size), 2)
    rmsd = math.sqrt(_seq_sum(allv, dev2) / (n2 - 1))
    return max_I, mf, ms, avg, rms, rmsd, total, sumsqr, sumn


class StreamingStats:
    """C's statistics of an image that arrives in blocks of whole rows (raster order),
    with the compiled loops of :mod:`nbsim.postrender` (one pass each, no temporaries).

    The same operations in the same order as :func:`image_stats` on the whole image (the
    sequential sums are carried from block to block), so the result is bit-identical.
    C needs two passes: :meth:`add_rows` for every block (max, sum, sum of squares, count),
    then :meth:`add_deviation_rows` for every block again (``rmsd`` needs the mean), then
    :meth:`result`.  A block is float32 rows ``row0 .. row0+len-1`` of the detector (every
    column); ``mask`` the flat uint8 raster mask of the whole detector (C renders where it
    is nonzero) or None.  A whole image is one block (``row0 = 0``).
    """

    def __init__(self, roi, fpixels: int, spixels: int, mask=None):
        from . import postrender
        self._pr = postrender
        self.roi = roi_tuple(roi, fpixels, spixels)
        self.mask = (np.zeros(1, dtype=np.uint8) if mask is None
                     else np.ascontiguousarray(mask, dtype=np.uint8).reshape(-1))
        self.use_mask = mask is not None
        self.acc = postrender.new_first_pass_acc()
        self.dev = np.zeros(2)
        self.avg = None

    def add_rows(self, img_rows, row0: int):
        """First pass over one block (float32 (rows, fpixels) from detector row ``row0``)."""
        if self.avg is not None:
            raise RuntimeError("add_rows after the deviation pass began")
        self._pr.stats_first_pass(np.ascontiguousarray(img_rows, dtype=np.float32),
                                  int(row0), self.roi, self.mask, self.use_mask, self.acc)

    @property
    def max_I(self) -> float:
        """The maximum so far (0.0 until a pixel exceeds it)."""
        return float(self.acc[0])

    def _mean(self):
        if self.avg is None:
            self.avg = float(self.acc[3]) / max(int(self.acc[5]), 1)
        return self.avg

    def add_deviation_rows(self, img_rows, row0: int):
        """Second pass over one block: the ROI including masked pixels, for ``rmsd``."""
        self._pr.stats_deviation_pass(np.ascontiguousarray(img_rows, dtype=np.float32),
                                      int(row0), self.roi, self._mean(), self.dev)

    def result(self, pixel_size: float = 0.1e-3, oversample: int = 1) -> ImageStats:
        """The :class:`ImageStats` (after both passes)."""
        avg = self._mean()
        max_I, mf, ms, total, sumsqr, sumn = (float(v) for v in self.acc)
        sumn = int(sumn)
        n = max(max(sumn, 1), 2)
        rms = math.sqrt(sumsqr / (n - 1))
        rmsd = math.sqrt(float(self.dev[0]) / (max(int(self.dev[1]), 2) - 1))
        mf, ms = int(mf), int(ms)
        if mf >= 0:
            x, y = max_location(mf, ms, pixel_size, oversample)
        else:
            x = y = 0.0
        return ImageStats(max_I, x, y, mf, ms, float(avg), float(rms), float(rmsd),
                          total, sumsqr, sumn)


def max_location(fpixel: int, spixel: int, pixel_size: float, oversample: int = 1):
    """C's ``(Fdet, Sdet)`` of the last sub-pixel of a pixel, metres (see module doc)."""
    sub = pixel_size / oversample
    fdet = sub * (fpixel * oversample + (oversample - 1)) + sub / 2.0
    sdet = sub * (spixel * oversample + (oversample - 1)) + sub / 2.0
    return fdet, sdet


def image_stats(float_image, *, mask=None, roi=None, pixel_size: float = 0.1e-3,
                oversample: int = 1, fpixels: int | None = None) -> ImageStats:
    """C's statistics of a float image.

    ``mask``: bool (slow, fast), True = rendered (C: mask value != 0); None = no mask.
    ``roi``: ``(xmin, xmax, ymin, ymax)`` inclusive, or None.  ``pixel_size`` in metres
    and ``oversample`` (the final value C used) only set ``max_I_x/max_I_y``.
    """
    a = np.asarray(float_image)
    img = np.ascontiguousarray(a if a.ndim == 3 else as_image2d(a, fpixels),
                               dtype=np.float32)
    use_mask = mask is not None
    render = (np.ascontiguousarray(np.asarray(mask, dtype=np.bool_).reshape(img.shape))
              if use_mask else np.ones((1, 1), dtype=np.bool_))
    r = roi_tuple(roi, img.shape[-1], img.shape[-2])
    max_I, mf, ms, avg, rms, rmsd, total, sumsqr, sumn = _stats(img, render, use_mask, r)
    if mf >= 0:
        x, y = max_location(mf, ms, pixel_size, oversample)
    else:
        x = y = 0.0
    return ImageStats(float(max_I), x, y, int(mf), int(ms), float(avg), float(rms),
                      float(rmsd), float(total), float(sumsqr), int(sumn))


def intfile_scale_rule(max_I: float, intfile_scale: float = 0.0) -> float:
    """C's int-image scale: the given one if > 0, else 55000/max_I (1.0 if max_I <= 0)."""
    if intfile_scale <= 0.0:
        intfile_scale = 1.0
        if max_I > 0.0:
            intfile_scale = 55000.0 / max_I
    return intfile_scale


def pgm_scale_rule(rmsd: float, intfile_scale: float, pgm_scale: float = 0.0) -> float:
    """C's PGM scale: the given one if > 0, else 250/(5*rmsd) (intfile_scale if rmsd <= 0).

    ``intfile_scale`` must be the final value from :func:`intfile_scale_rule`.
    """
    if pgm_scale <= 0.0:
        pgm_scale = intfile_scale
        if rmsd > 0.0:
            pgm_scale = 250.0 / (5.0 * rmsd)
    return pgm_scale


def _rotate_many(v, axis, angles):
    """Rotate the rows of ``v`` (n, 3) about the unit ``axis`` by ``angles`` (n,) radians:
    C's rotate_axis (Rodrigues), vectorised (physics.rotate_about is scalar: math.cos)."""
    cs = np.cos(angles)
    sn = np.sin(angles)
    ax, ay, az = (float(x) for x in axis)
    vx, vy, vz = v[:, 0], v[:, 1], v[:, 2]
    d = (ax * vx + ay * vy + az * vz) * (1.0 - cs)
    return np.stack([ax * d + vx * cs + (-az * vy + ay * vz) * sn,
                     ay * d + vy * cs + (az * vx - ax * vz) * sn,
                     az * d + vz * cs + (-ay * vx + ax * vy) * sn], axis=1)


def solid_angle_sum(plan, block: int = 1 << 18, index_blocks=None,
                    compiled: bool = False) -> float:
    """C's ``omega_sum / steps``: the solid angle (sr) it prints as "subtended by detector".

    C adds the pixel's solid angle once per sub-pixel and sensor layer of every rendered
    (in-ROI, unmasked) pixel, before any -dmin cut; without -oversample_omega the value of
    the first sub-pixel of the first layer stands for all of them.  Divided by ``steps``
    (sources x domains x phi steps x oversample^2), so it is the detector's solid angle
    times the number of layers.  Exact formula of C; the sum order differs (printed %g).
    ``index_blocks``: the rendered pixels as successive arrays of ``block`` raster indices
    (the last may be shorter), for a detector whose whole index is not built; the same
    blocks as the default, so the same sum.  ``compiled``: a flat single-panel detector's
    solid angles by :func:`nbsim.postrender.omega_flat` (the same values; sets Numba's
    CPU target up)."""
    det = plan.detector
    opts = plan.options
    os_ = int(plan.oversample)
    ts = int(det.thicksteps)
    if index_blocks is None:
        idx = plan.rendered_pixels
        index_blocks = (idx[b0:b0 + block] for b0 in range(0, idx.size, block))
    sub = float(plan.subpixel_size)
    pix0, fdet, sdet, odet = (np.asarray(x, dtype=np.float64) for x in
                              (det.pix0, det.fdet, det.sdet, det.odet))
    if opts.os_omega:
        layers = range(ts)
        subs = [(i, j) for i in range(os_) for j in range(os_)]
        weight = 1.0
    else:
        layers = range(1)
        subs = [(0, 0)]
        weight = float(ts * os_ * os_)
    def omega_of(part, t, subS, subF):
        # the kernels' physics functions, on arrays (plain arithmetic), for raster indices
        fp = (part % det.fpixels).astype(np.float64)
        sp = (part // det.fpixels).astype(np.float64)
        p0, fd, sd, od = pix0, fdet, sdet, odet
        sub_, thickstep, pixel_size, close = sub, det.thickstep, det.pixel_size, \
            det.close_distance
        if plan.panels is not None:
            # each pixel's panel geometry (nbsim.geometry.panels: rows are stacked panels)
            panel = (part // det.fpixels) // plan.panel_rows
            sp = sp - panel * plan.panel_rows
            g = plan.panel_table()[panel]
            p0, fd, sd, od = g[:, 0:3].T, g[:, 3:6].T, g[:, 6:9].T, g[:, 9:12].T
            sub_, thickstep, pixel_size, close = g[:, 25], g[:, 21], g[:, 20], g[:, 19]
        _, _, x, y, z = ph.subpixel_position(sub_, fp * os_ + subF, sp * os_ + subS,
                                             sub_ / 2.0, t * thickstep, *fd, *sd, *od, *p0)
        if opts.curved:
            d = float(det.distance)
            flat = np.stack([x, y, z], axis=1)
            beam_pt = np.broadcast_to(d * np.asarray(det.beam, dtype=np.float64),
                                      flat.shape)
            pos = _rotate_many(_rotate_many(beam_pt, sdet, flat[:, 1] / d),
                               fdet, flat[:, 2] / d)
            x, y, z = pos[:, 0], pos[:, 1], pos[:, 2]
        airpath = np.sqrt(x * x + y * y + z * z)
        return ph.solid_angle(pixel_size, airpath, close, bool(opts.point_pixel))

    # omega of a block is computed in pieces (elementwise: the same values) into one
    # array, summed whole (np.sum's pairwise order is the array's): a tenth of the
    # temporaries, the same sum
    piece = 1 << 15
    omega = np.empty(block, dtype=np.float64)
    flat_compiled = compiled and plan.panels is None and not opts.curved
    if flat_compiled:
        from .postrender import omega_flat
    total = 0.0
    for blk in index_blocks:
        n = blk.size
        for t in layers:
            for subS, subF in subs:
                if flat_compiled:
                    omega_flat(np.ascontiguousarray(blk, dtype=np.int64), int(det.fpixels),
                               os_, float(subS), float(subF), sub, float(t * det.thickstep),
                               fdet, sdet, odet, pix0, float(det.pixel_size),
                               float(det.close_distance), bool(opts.point_pixel), omega)
                else:
                    for a in range(0, n, piece):
                        part = blk[a:a + piece]
                        omega[a:a + part.size] = omega_of(part, t, subS, subF)
                total += float(np.sum(omega[:n])) * weight
    return total / float(plan.steps)

"""c-parity phi=0 carryover (REFERENCE.md section 4).

nanoBragg.c keeps the phi-rotated cell (ap, bp, cp) across its whole loop nest; a phi step
with phi == 0.0 skips the rotation and reuses it.  Every sub-path that executes runs all
phi steps, so after the first executed sub-path of the run the vectors entering any later
sub-path are always those of the last nonzero phi step.  What enters a pixel therefore
depends only on whether any sub-path has executed before it in raster order: one index
(the first executing pixel) says it all.  The plan builds two cell tables (the run's first
sub-path, and every other); the kernel picks per sub-path.

Sub-paths are skipped by the ROI, the mask and the ``dmin`` cut.  Without ``dmin`` the
first executing pixel is the first unmasked ROI pixel; with it, a pre-pass computes one
byte per pixel ("executes any sub-path") and the first set byte is the answer.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .. import physics as ph
from .cpu import FASTMATH


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def executed_flags(pixel_index, ka, has_mask, curved, out):
    """out[n] = 1 when pixel pixel_index[n] executes at least one phi step (dmin cut);
    ka: the plan's argument bundle (``bundle.KernelArrays``)."""
    fpixels = ka.fpixels
    mask = ka.mask
    oversample = ka.oversample
    thicksteps = ka.thicksteps
    src_dir = ka.src_dir
    src_lambda = ka.src_lambda
    nsrc = src_lambda.shape[0]
    for n in numba.prange(pixel_index.shape[0]):
        idx = pixel_index[n]
        out[n] = 0
        if has_mask and mask[idx] == 0:
            continue
        fpixel = idx % fpixels
        spixel = idx // fpixels
        # the pixel's panel (rows of the panels stacked along slow) and its geometry
        panel = spixel // ka.panel_rows
        spixel = spixel - panel * ka.panel_rows
        geom = ka.panel_geom[panel]
        subpixel_size = geom[25]
        p0x = geom[0]; p0y = geom[1]; p0z = geom[2]
        fx = geom[3]; fy = geom[4]; fz = geom[5]
        sx = geom[6]; sy = geom[7]; sz = geom[8]
        ox = geom[9]; oy = geom[10]; oz = geom[11]
        bx = geom[12]; by = geom[13]; bz = geom[14]
        distance = geom[18]
        thickstep = geom[21]
        dmin = geom[24]
        found = False
        for t in range(thicksteps):
            if found:
                break
            Odet = t * thickstep
            for subS in range(oversample):
                if found:
                    break
                for subF in range(oversample):
                    if found:
                        break
                    # the render kernels' exact geometry (physics "IEEE twins")
                    _, _, posx, posy, posz = ph.subpixel_position_ieee(
                        subpixel_size, fpixel * oversample + subF, spixel * oversample + subS,
                        subpixel_size / 2.0, Odet, fx, fy, fz, sx, sy, sz, ox, oy, oz,
                        p0x, p0y, p0z)
                    if curved:
                        posx, posy, posz = ph.curved_detector_point_ieee(
                            posy, posz, distance, bx, by, bz, sx, sy, sz, fx, fy, fz)
                    dx, dy, dz, airpath = ph.unit_direction_ieee(posx, posy, posz)
                    for src in range(nsrc):
                        qx, qy, qz = ph.scattering_vector_ieee(
                            dx, dy, dz, -src_dir[src, 0], -src_dir[src, 1], -src_dir[src, 2],
                            src_lambda[src])
                        stol = 0.5 * math.sqrt(qx * qx + qy * qy + qz * qz)
                        if stol > 0.0 and dmin > 0.5 / stol:
                            continue
                        found = True
                        break
        if found:
            out[n] = 1


def first_executing_pixel(plan) -> int:
    """Raster index of the first pixel that executes a phi step (-1 if none)."""
    from .._numba_setup import prepare_cpu
    prepare_cpu()
    idx = plan.pixel_index
    idx_rendered = plan.rendered_pixels
    if idx_rendered.size == 0:
        return -1
    if not plan.options.use_dmin:
        return int(idx_rendered[0])
    flags = np.zeros(idx.shape[0], dtype=np.uint8)
    executed_flags(idx, plan.kernel_arrays(), plan.options.has_mask, plan.options.curved,
                   flags)
    nz = np.flatnonzero(flags)
    return int(idx[nz[0]]) if nz.size else -1

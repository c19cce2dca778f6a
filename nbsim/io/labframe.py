"""nanoBragg's lab frame -> the NeXus (McStas) lab frame: one proper rotation.

nanoBragg works in a lab frame fixed by its ``-*_convention`` (MOSFLM: beam along +x,
spindle along +z; XDS/DIALS: beam along +z; CUSTOM: whatever the vectors say).  NeXus
files describe geometry in the McStas frame: z along the beam (source -> sample), y up,
x = y cross z (to the left, looking downstream).  dxtbx reads a file's beam as McStas +z
whatever the file says, and turns McStas into imgCIF with ``diag(-1, 1, -1)``; imgCIF's
principal goniometer axis is conventionally +x there, i.e. McStas -x.

The rotation ``R`` (McStas = R @ nanoBragg) used for every NeXus file is therefore the
proper rotation (det +1, no mirror) with

* ``R @ beam = +z``  (nanoBragg's beam direction, source -> sample), and
* ``R @ spindle_perp = -x`` where ``spindle_perp`` is the spindle axis' component
  perpendicular to the beam (so a spindle perpendicular to the beam becomes McStas -x =
  imgCIF +x, the usual single-axis goniometer); the spindle keeps any component along the
  beam it has.

If the spindle is (anti)parallel to the beam, the E-vector (``polar``) perpendicular to
the beam is sent to +x instead, and if that is degenerate too, any perpendicular.

For the MOSFLM convention (beam +x, spindle +z) this is the fixed matrix
``[[0, 0, -1], [0, 1, 0], [1, 0, 0]]`` (x -> z, y -> y, z -> -x); for XDS (beam +z, spindle
+x) it is ``diag(-1, -1, 1)``.  Because ``R`` is a rotation, every distance, angle and
handedness relation between pixels, sample (origin), beam and spindle is unchanged.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ["mcstas_rotation", "to_mcstas", "beam_centre_px"]

_DEGENERATE = 1e-12


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = float(np.linalg.norm(v))
    if n == 0.0:
        raise ValueError("zero vector")
    return v / n


def _perpendicular_part(v, axis):
    v = np.asarray(v, dtype=np.float64)
    return v - float(np.dot(v, axis)) * axis


def mcstas_rotation(beam, spindle, polar=None) -> np.ndarray:
    """The 3x3 rotation ``R`` with McStas = ``R @`` nanoBragg (see the module docstring).

    ``beam``: direction of travel of the X-rays (source -> sample) in nanoBragg's frame;
    ``spindle``: the rotation axis; ``polar``: the E-vector, used only when the spindle is
    parallel to the beam.  Returns rows x', y', z' (the McStas axes in nanoBragg's frame).
    """
    z_axis = _unit(beam)
    x_axis = None
    for ref, sign in ((spindle, -1.0), (polar, +1.0)):
        if ref is None:
            continue
        perp = _perpendicular_part(ref, z_axis)
        n = float(np.linalg.norm(perp))
        if n > _DEGENERATE:
            x_axis = sign * perp / n
            break
    if x_axis is None:
        trial = np.eye(3)[int(np.argmin(np.abs(z_axis)))]
        x_axis = _unit(_perpendicular_part(trial, z_axis))
    y_axis = np.cross(z_axis, x_axis)
    return np.vstack([x_axis, y_axis, z_axis])


def to_mcstas(rotation: np.ndarray, v) -> np.ndarray:
    """``rotation @ v`` for a 3-vector (or an (..., 3) array of them)."""
    return np.asarray(v, dtype=np.float64) @ np.asarray(rotation).T


def beam_centre_px(det) -> Tuple[float, float, float]:
    """Where the direct beam meets the detector plane: (fast, slow) in pixels from the
    pixel-(0,0) corner, and the sample-plane distance along the plane's normal (m).
    NaN pixels if the beam is parallel to the plane."""
    pix0 = np.asarray(det.pix0, dtype=np.float64)
    fdet, sdet = np.asarray(det.fdet, float), np.asarray(det.sdet, float)
    normal = np.cross(fdet, sdet)
    normal /= np.linalg.norm(normal)
    beam = np.asarray(det.beam, float)
    dist = float(np.dot(pix0, normal))
    bn = float(np.dot(beam, normal))
    if bn == 0.0:
        return float("nan"), float("nan"), abs(dist)
    hit = beam * (dist / bn) - pix0
    return (float(np.dot(hit, fdet)) / det.pixel_size,
            float(np.dot(hit, sdet)) / det.pixel_size, abs(dist))

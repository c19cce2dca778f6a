"""Rotations exactly as nanoBragg.c applies them (host side, float64).

Vectors are plain length-3 arrays (C keeps a magnitude in element 0; we do not).
Each function reproduces C's operation order so that rotated vectors are
bit-identical to the reference program's.
"""
from __future__ import annotations

import math

import numpy as np


def rotate_xyz(v, phix: float, phiy: float, phiz: float) -> np.ndarray:
    """Rotate ``v`` about x, then y, then z (radians), skipping zero angles as C does."""
    x, y, z = float(v[0]), float(v[1]), float(v[2])
    if phix != 0:
        c, s = math.cos(phix), math.sin(phix)
        y, z = y * c + z * (-s), y * s + z * c
    if phiy != 0:
        c, s = math.cos(phiy), math.sin(phiy)
        x, z = x * c + y * 0.0 + z * s, x * (-s) + y * 0.0 + z * c
    if phiz != 0:
        c, s = math.cos(phiz), math.sin(phiz)
        x, y = x * c + y * (-s), x * s + y * c
    return np.array([x, y, z])


def rotate_axis(v, axis, phi: float) -> np.ndarray:
    """Rotate ``v`` by ``phi`` (radians) about the unit vector ``axis`` (Rodrigues, C's form)."""
    sinphi = math.sin(phi)
    cosphi = math.cos(phi)
    ax, ay, az = float(axis[0]), float(axis[1]), float(axis[2])
    vx, vy, vz = float(v[0]), float(v[1]), float(v[2])
    dot = (ax * vx + ay * vy + az * vz) * (1.0 - cosphi)
    return np.array([
        ax * dot + vx * cosphi + (-az * vy + ay * vz) * sinphi,
        ay * dot + vy * cosphi + (+az * vx - ax * vz) * sinphi,
        az * dot + vz * cosphi + (-ay * vx + ax * vy) * sinphi,
    ])


def rotate_umat(v, umat) -> np.ndarray:
    """Apply a row-major 3x3 (or flat 9) rotation matrix: ``newv = U @ v``, C's sum order."""
    u = np.asarray(umat, dtype=np.float64).reshape(9)
    vx, vy, vz = float(v[0]), float(v[1]), float(v[2])
    return np.array([
        u[0] * vx + u[1] * vy + u[2] * vz,
        u[3] * vx + u[4] * vy + u[5] * vz,
        u[6] * vx + u[7] * vy + u[8] * vz,
    ])


def magnitude(v) -> float:
    return math.sqrt(float(v[0]) * v[0] + float(v[1]) * v[1] + float(v[2]) * v[2])


def unitize(v) -> tuple[np.ndarray, float]:
    """Unit vector and the original magnitude; a zero vector stays zero (as in C)."""
    mag = magnitude(v)
    if mag != 0.0:
        return np.array([v[0] / mag, v[1] / mag, v[2] / mag], dtype=np.float64), mag
    return np.zeros(3), mag


def cross(x, y) -> np.ndarray:
    return np.array([
        x[1] * y[2] - x[2] * y[1],
        x[2] * y[0] - x[0] * y[2],
        x[0] * y[1] - x[1] * y[0],
    ], dtype=np.float64)


def dot(x, y) -> float:
    return float(x[0]) * y[0] + float(x[1]) * y[1] + float(x[2]) * y[2]

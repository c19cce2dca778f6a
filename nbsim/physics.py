"""Scalar physics of nanoBragg, written once for every target.

Each function is a ``register_jitable``: plain Python when called from Python,
inlined into ``@njit`` CPU kernels and ``@cuda.jit`` device code alike.  No
arrays are allocated and no NaN is produced here (Numba's fast-math flags assume
no NaN).  Units: lengths in metres, wavelengths in metres, angles in radians.
"""
from __future__ import annotations

import math

import numpy as np
from numba.extending import register_jitable

SHAPE_SQUARE, SHAPE_ROUND, SHAPE_GAUSS, SHAPE_TOPHAT = 0, 1, 2, 3
SHAPE_CODES = {"SQUARE": SHAPE_SQUARE, "ROUND": SHAPE_ROUND, "GAUSS": SHAPE_GAUSS,
               "TOPHAT": SHAPE_TOPHAT}
ROUND_NORM = 0.723601254558268   # sqrt of the cube/sphere volume ratio used by C


@register_jitable
def sincg(x, N):
    """Lattice transform of N cells along one axis: sin(N x)/sin(x), N at x == 0 (C's form)."""
    if x == 0.0:
        return N
    return math.sin(x * N) / math.sin(x)


# Taylor coefficients of sin(y)/y in y^2, enough terms for |y| <= pi/2 to ~1e-16
_S1 = -1.0 / 6.0
_S2 = 1.0 / 120.0
_S3 = -1.0 / 5040.0
_S4 = 1.0 / 362880.0
_S5 = -1.0 / 39916800.0
_S6 = 1.0 / 6227020800.0
_S7 = -1.0 / 1307674368000.0
_S8 = 1.0 / 355687428096000.0
_S9 = -1.0 / 121645100408832000.0


@register_jitable(inline="always")
def sin_pi_small(x):
    """sin(pi x) for |x| <= 1/2 by a branch-free polynomial (relative error ~1e-16)."""
    y = math.pi * x
    z = y * y
    return y * (1.0 + z * (_S1 + z * (_S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * (
        _S6 + z * (_S7 + z * (_S8 + z * _S9)))))))))


@register_jitable(inline="always")
def sincg_delta(h, N):
    """sin(N pi h) / sin(pi h) for integer N, reduced to the fractional part of h.

    With h = h0 + d (h0 the nearest integer) the ratio is (-1)^((N-1) h0) sin(N pi d)/sin(pi d),
    and sin(N pi d) is reduced again to N d - m; both sines are then evaluated on
    [-pi/2, pi/2] by a polynomial.  No large arguments reach a sine, so the result keeps
    its relative accuracy near Bragg peaks (also in float32).  Branch-free and call-free,
    so loops over it vectorise.  Equals C's ``sincg(M_PI*h, N)`` to rounding (C's own
    value loses digits near integer h); N*(-1)^((N-1)h0) at integer h.
    """
    h0 = np.floor(h + 0.5)
    d = h - h0
    nd = N * d
    m = np.floor(nd + 0.5)
    num = sin_pi_small(nd - m)
    den = sin_pi_small(d)
    # at an integer h (d == 0, so m == 0 and num == 0) the ratio is N; written as
    # arithmetic rather than a branch so the caller's loop still vectorises
    at_node = 1.0 * (d == 0.0)
    num = num + at_node * N
    den = den + at_node * (1.0 - den)
    # sign (-1)^(m + (N-1) h0), from the parity of a whole number held in a float
    p = m + (np.floor(N + 0.5) - 1.0) * h0
    sgn = 1.0 - 2.0 * (p - 2.0 * np.floor(0.5 * p))
    return sgn * num / den


@register_jitable
def sinc3(x):
    """Transform of a sphere: 3 (sin x / x - cos x) / x^2, 1 at x == 0."""
    if x == 0.0:
        return 1.0
    return 3.0 * (math.sin(x) / x - math.cos(x)) / (x * x)


@register_jitable
def polarization_basis(ix, iy, iz, ax, ay, az):
    """Unit E and B vectors of the incident beam i for the E-vector axis a:
    B = unit(a x i), E = unit(i x B) (a zero vector stays zero, as C's unitize)."""
    bx = ay * iz - az * iy
    by = az * ix - ax * iz
    bz = ax * iy - ay * ix
    bm = math.sqrt(bx * bx + by * by + bz * bz)
    if bm != 0.0:
        bx /= bm
        by /= bm
        bz /= bm
    ex = iy * bz - iz * by
    ey = iz * bx - ix * bz
    ez = ix * by - iy * bx
    em = math.sqrt(ex * ex + ey * ey + ez * ez)
    if em != 0.0:
        ex /= em
        ey /= em
        ez /= em
    return ex, ey, ez, bx, by, bz


@register_jitable
def polarization_factor(kahn, ix, iy, iz, dx, dy, dz, ax, ay, az):
    """Kahn polarization factor for incident (i) and diffracted (d) unit vectors and the
    E-vector axis (a): 0.5 (1 + cos^2 2th - kahn cos(2 psi) sin^2 2th)."""
    cos2theta = ix * dx + iy * dy + iz * dz
    cos2theta_sqr = cos2theta * cos2theta
    sin2theta_sqr = 1.0 - cos2theta_sqr
    psi = 0.0
    if kahn != 0.0:
        ex, ey, ez, bx, by, bz = polarization_basis(ix, iy, iz, ax, ay, az)
        e_out = dx * ex + dy * ey + dz * ez
        b_out = dx * bx + dy * by + dz * bz
        psi = -math.atan2(b_out, e_out)
    return 0.5 * (1.0 + cos2theta_sqr - kahn * math.cos(2.0 * psi) * sin2theta_sqr)


@register_jitable
def rotate_about(vx, vy, vz, ax, ay, az, ang):
    """Rotate v by ``ang`` (rad) about the unit axis a (C's rotate_axis, Rodrigues form)."""
    cs = math.cos(ang)
    sn = math.sin(ang)
    d = ax * vx + ay * vy + az * vz
    dt = d - d * cs          # d (1 - cos), written without a float64 literal (float32 path)
    return (ax * dt + vx * cs + (-az * vy + ay * vz) * sn,
            ay * dt + vy * cs + (az * vx - ax * vz) * sn,
            az * dt + vz * cs + (-ay * vx + ax * vy) * sn)


@register_jitable
def curved_detector_point(posy, posz, distance, bx, by, bz, sx, sy, sz, fx, fy, fz):
    """C's -curved_det: every pixel at ``distance`` from the sample.  The flat-detector
    position's y and z components are taken as arc lengths: the beam point at ``distance``
    is rotated about sdet by posy/distance, then about fdet by posz/distance."""
    nx, ny, nz = rotate_about(distance * bx, distance * by, distance * bz, sx, sy, sz,
                              posy / distance)
    return rotate_about(nx, ny, nz, fx, fy, fz, posz / distance)


@register_jitable
def subpixel_position(subpixel_size, xF, xS, half, Odet, fx, fy, fz, sx, sy, sz,
                      ox, oy, oz, p0x, p0y, p0z):
    """C's sub-pixel position, left to right as C writes it: Fdet = subpixel_size * xF +
    half (xF = fpixel * oversample + subF, half = subpixel_size / 2), Sdet likewise, and
    pos = Fdet fdet + Sdet sdet + Odet odet + pix0.  Returns (Fdet, Sdet, x, y, z)."""
    Fdet = subpixel_size * xF + half
    Sdet = subpixel_size * xS + half
    return (Fdet, Sdet,
            Fdet * fx + Sdet * sx + Odet * ox + p0x,
            Fdet * fy + Sdet * sy + Odet * oy + p0y,
            Fdet * fz + Sdet * sz + Odet * oz + p0z)


@register_jitable
def unit_direction(x, y, z):
    """C's unitize: (x, y, z) / |v| by true division, and |v|."""
    r = math.sqrt(x * x + y * y + z * z)
    return x / r, y / r, z / r, r


@register_jitable
def scattering_vector(dx, dy, dz, ix, iy, iz, lam):
    """(diffracted - incident) / lambda, by true division as C."""
    return (dx - ix) / lam, (dy - iy) / lam, (dz - iz) / lam


@register_jitable
def capture_fraction(layer, thickstep, mu, parallax):
    """Fraction of photons absorbed in sensor layer ``layer`` (Beer-Lambert, oblique path)."""
    return (math.exp(-layer * thickstep * mu / parallax)
            - math.exp(-(layer + 1) * thickstep * mu / parallax))


@register_jitable
def solid_angle(pixel_size, airpath, close_distance, point_pixel):
    """Solid angle of a pixel seen from the sample: (pix/R)^2 * close/R, or 1/R^2 for a point."""
    if point_pixel:
        return 1.0 / airpath / airpath
    return pixel_size * pixel_size / airpath / airpath * close_distance / airpath


@register_jitable(inline="always")
def lattice_factor(shape, h, k, l, Na, Nb, Nc, fudge, ast):
    """F_latt for the crystal shape code; ``ast`` holds a*, b*, c* (1/A) as 9 values."""
    if shape == 0:
        f = 1.0
        if Na > 1.0:
            f *= sincg_delta(h, Na)
        if Nb > 1.0:
            f *= sincg_delta(k, Nb)
        if Nc > 1.0:
            f *= sincg_delta(l, Nc)
        return f
    h0 = np.ceil(h - 0.5)
    k0 = np.ceil(k - 0.5)
    l0 = np.ceil(l - 0.5)
    dh = h - h0
    dk = k - k0
    dl = l - l0
    if shape == 1:
        hrad_sqr = dh * dh * Na * Na + dk * dk * Nb * Nb + dl * dl * Nc * Nc
        return Na * Nb * Nc * ROUND_NORM * sinc3(math.pi * math.sqrt(hrad_sqr * fudge))
    dx = dh * ast[0] + dk * ast[3] + dl * ast[6]
    dy = dh * ast[1] + dk * ast[4] + dl * ast[7]
    dz = dh * ast[2] + dk * ast[5] + dl * ast[8]
    rad_star_sqr = (dx * dx + dy * dy + dz * dz) * Na * Na * Nb * Nb * Nc * Nc
    if shape == 2:
        return Na * Nb * Nc * math.exp(-(rad_star_sqr / 0.63 * fudge))
    return Na * Nb * Nc * (1.0 * (rad_star_sqr * fudge < 0.3969))


@register_jitable
def polint4(x0, x1, x2, x3, y0, y1, y2, y3, x):
    """Cubic Lagrange polynomial through four points, C's polint term order."""
    t0 = (x - x1) * (x - x2) * (x - x3) * y0 / ((x0 - x1) * (x0 - x2) * (x0 - x3))
    t1 = (x - x0) * (x - x2) * (x - x3) * y1 / ((x1 - x0) * (x1 - x2) * (x1 - x3))
    t2 = (x - x0) * (x - x1) * (x - x3) * y2 / ((x2 - x0) * (x2 - x1) * (x2 - x3))
    t3 = (x - x0) * (x - x1) * (x - x2) * y3 / ((x3 - x0) * (x3 - x1) * (x3 - x2))
    return t0 + t1 + t2 + t3


@register_jitable
def tricubic(grid, ih, ik, il, h, k, l):
    """C's polin3 on the 4x4x4 block whose first corner is grid[ih, ik, il]; grid index
    i corresponds to Miller index (i - ih) + floor(h) - 1 along each axis."""
    hf = math.floor(h)
    kf = math.floor(k)
    lf = math.floor(l)
    ym0 = 0.0
    ym1 = 0.0
    ym2 = 0.0
    ym3 = 0.0
    for i1 in range(4):
        # polin2 over (k, l) for this h plane: interpolate along l, then along k
        r0 = polint4(lf - 1.0, lf, lf + 1.0, lf + 2.0,
                     grid[ih + i1, ik, il], grid[ih + i1, ik, il + 1],
                     grid[ih + i1, ik, il + 2], grid[ih + i1, ik, il + 3], l)
        r1 = polint4(lf - 1.0, lf, lf + 1.0, lf + 2.0,
                     grid[ih + i1, ik + 1, il], grid[ih + i1, ik + 1, il + 1],
                     grid[ih + i1, ik + 1, il + 2], grid[ih + i1, ik + 1, il + 3], l)
        r2 = polint4(lf - 1.0, lf, lf + 1.0, lf + 2.0,
                     grid[ih + i1, ik + 2, il], grid[ih + i1, ik + 2, il + 1],
                     grid[ih + i1, ik + 2, il + 2], grid[ih + i1, ik + 2, il + 3], l)
        r3 = polint4(lf - 1.0, lf, lf + 1.0, lf + 2.0,
                     grid[ih + i1, ik + 3, il], grid[ih + i1, ik + 3, il + 1],
                     grid[ih + i1, ik + 3, il + 2], grid[ih + i1, ik + 3, il + 3], l)
        v = polint4(kf - 1.0, kf, kf + 1.0, kf + 2.0, r0, r1, r2, r3, k)
        if i1 == 0:
            ym0 = v
        elif i1 == 1:
            ym1 = v
        elif i1 == 2:
            ym2 = v
        else:
            ym3 = v
    return polint4(hf - 1.0, hf, hf + 1.0, hf + 2.0, ym0, ym1, ym2, ym3, h)


@register_jitable
def interp_in_range(h, k, l, h_min, k_min, l_min, h_range, k_range, l_range):
    """C's test that the 4-point stencil around (h, k, l) lies inside the grid."""
    return not ((h - h_min + 3) > h_range or (h - 2) < h_min
                or (k - k_min + 3) > k_range or (k - 2) < k_min
                or (l - l_min + 3) > l_range or (l - 2) < l_min)


@register_jitable
def nearest_F(grid, hkls, h0, k0, l0, h_min, k_min, l_min, h_max, k_max, l_max, default_F):
    """Nearest-neighbour structure factor, default_F off the grid (or with no grid)."""
    if (hkls != 0 and h0 <= h_max and h0 >= h_min and k0 <= k_max and k0 >= k_min
            and l0 <= l_max and l0 >= l_min):
        return grid[h0 - h_min, k0 - k_min, l0 - l_min]
    return default_F


# ----------------------------------------------------------------- IEEE twins (CPU)
# The CPU kernels compile with fast-math flags (contraction to FMA, reciprocal division,
# reassociation), and a register_jitable function takes its caller's flags unless it sets
# its own.  The detector geometry must keep C's exact IEEE arithmetic: where C's scattering
# vector is exactly zero (a pixel centred on the direct beam), sinc3 of -round_xtal is
# 1, but any x below ~1e-8 gives 0 (sin(x)/x - cos(x) cancels), so an FMA or a
# reciprocal there changes that pixel's value completely.  These twins are the same code
# compiled with an explicit minimal flag set ("nsz" only) that the caller cannot
# override; the lattice sums, where the time goes, keep the fast flags.  CUDA uses the
# functions above (CUDA kernels compile without fast-math).
IEEE_JIT = {"fastmath": {"nsz"}}


def _ieee_twin(fn, **replace_globals):
    """A register_jitable copy of ``fn`` compiled with :data:`IEEE_JIT`; names in
    ``replace_globals`` (other twins) replace the globals the copy calls."""
    import types
    glb = fn.__globals__ if not replace_globals else {**fn.__globals__, **replace_globals}
    twin = types.FunctionType(fn.__code__, glb, fn.__name__ + "_ieee", fn.__defaults__,
                              fn.__closure__)
    twin.__doc__ = fn.__doc__
    twin.__qualname__ = fn.__qualname__ + "_ieee"
    twin.__module__ = fn.__module__
    return register_jitable(**IEEE_JIT)(twin)


subpixel_position_ieee = _ieee_twin(subpixel_position)
unit_direction_ieee = _ieee_twin(unit_direction)
scattering_vector_ieee = _ieee_twin(scattering_vector)
rotate_about_ieee = _ieee_twin(rotate_about)
curved_detector_point_ieee = _ieee_twin(curved_detector_point, rotate_about=rotate_about_ieee)

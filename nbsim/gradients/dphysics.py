"""Derivatives of nanoBragg's scalar physics (companions of :mod:`nbsim.physics`).

Every function is a ``register_jitable``: plain Python when called from Python, inlined
into the CPU adjoint kernel and into CUDA device code alike.  Values come from the same
formulas as :mod:`nbsim.physics`, so a value returned here equals the forward's to
rounding.  No arrays are allocated and no NaN is produced.

Conventions: each ``d_*`` function returns the value first, then its partial
derivatives, as a tuple.
"""
from __future__ import annotations

import math

from numba.extending import register_jitable

from .. import physics as ph


# ---------------------------------------------------------------- lattice transforms
@register_jitable
def d_sincg(x, N):
    """sin(N x)/sin(x) (C's form, N at x == 0), d/dx and d/dN.

    d/dx = (N cos(N x) - f cos x) / sin x;  d/dN = x cos(N x) / sin x  (1 at x == 0,
    where the function is N)."""
    if x == 0.0:
        return N, 0.0, 1.0
    s = math.sin(x)
    c = math.cos(x)
    sN = math.sin(N * x)
    cN = math.cos(N * x)
    f = sN / s
    inv = 1.0 / s
    return f, (N * cN - f * c) * inv, x * cN * inv


@register_jitable
def d_square_axis(h, N):
    """One factor of the SQUARE lattice transform, reduced to d = h - rint(h):
    sin(N pi d)/sin(pi d) (N at d == 0) when N > 1, else 1.

    Returns (value, d/dh, d/dN).  For integer N this is C's sin(N pi h)/sin(pi h) up to
    the sign (-1)^((N-1) h0), which the intensity (F_latt squared) never sees; extended
    to real N it keeps every reflection's profile centred on its integer, so d/dN is the
    derivative of the spot profile, not of the phase drift the unreduced formula would
    give non-integer N.  For N < 1 the model's factor is the constant 1 (zero
    derivative); at N == 1 exactly the right derivative is returned, so refinement of N
    can leave 1."""
    if N < 1.0:
        return 1.0, 0.0, 0.0
    d = h - math.floor(h + 0.5)
    if d == 0.0:
        return (N if N > 1.0 else 1.0), 0.0, 1.0
    x = math.pi * d
    s = math.sin(x)
    sN = math.sin(N * x)
    cN = math.cos(N * x)
    inv = 1.0 / s
    dN = x * cN * inv
    if N > 1.0:
        f = sN * inv
        if abs(N * x) < 0.05:
            # (N cos Nx - f cos x) / sin x cancels near the peak: use the series of
            # sin(Nx)/sin(x) = N + c2 x^2 + c4 x^4 + c6 x^6 + ...
            n2 = N * N
            base = N * (n2 - 1.0)
            c2 = -base / 6.0
            c4 = base * (3.0 * n2 - 7.0) / 360.0
            c6 = -base * (3.0 * n2 * n2 - 18.0 * n2 + 31.0) / 15120.0
            x2 = x * x
            dfx = x * (2.0 * c2 + x2 * (4.0 * c4 + x2 * 6.0 * c6))
        else:
            dfx = (N * cN - f * math.cos(x)) * inv
        return f, math.pi * dfx, dN
    return 1.0, 0.0, dN


@register_jitable
def sinc3_over_x_deriv(x):
    """g(x) = sinc3'(x) / x, smooth at 0 (series below 0.2)."""
    if x < 0.2:
        x2 = x * x
        return -0.2 + x2 * (1.0 / 70.0 + x2 * (-1.0 / 2520.0 + x2 * (1.0 / 166320.0)))
    return 3.0 * math.sin(x) / (x * x * x) - 3.0 * ph.sinc3(x) / (x * x)


@register_jitable
def d_round(dh, dk, dl, Na, Nb, Nc, fudge):
    """ROUND transform Na Nb Nc K sinc3(pi sqrt(hrad^2 fudge)) with dh = h - h0 etc.

    Returns (F_latt, d/dh, d/dk, d/dl, d/dNa, d/dNb, d/dNc)."""
    hr2 = dh * dh * Na * Na + dk * dk * Nb * Nb + dl * dl * Nc * Nc
    x = math.pi * math.sqrt(hr2 * fudge)
    pre = ph.ROUND_NORM
    s3 = ph.sinc3(x)
    NNN = Na * Nb * Nc
    f = NNN * pre * s3
    # d f / d hr2 = NNN K sinc3'(x) dx/dhr2, dx/dhr2 = pi^2 fudge / (2 x)
    dfdhr2 = NNN * pre * sinc3_over_x_deriv(x) * math.pi * math.pi * fudge * 0.5
    fh = dfdhr2 * 2.0 * dh * Na * Na
    fk = dfdhr2 * 2.0 * dk * Nb * Nb
    fl = dfdhr2 * 2.0 * dl * Nc * Nc
    fNa = Nb * Nc * pre * s3 + dfdhr2 * 2.0 * dh * dh * Na
    fNb = Na * Nc * pre * s3 + dfdhr2 * 2.0 * dk * dk * Nb
    fNc = Na * Nb * pre * s3 + dfdhr2 * 2.0 * dl * dl * Nc
    return f, fh, fk, fl, fNa, fNb, fNc


# ---------------------------------------------------------------- tricubic interpolation
@register_jitable
def lagrange4(t):
    """Cubic Lagrange weights on the nodes -1, 0, 1, 2 at t (t = x - floor(x)) and their
    derivatives: (w0, w1, w2, w3, d0, d1, d2, d3)."""
    tm1 = t - 1.0
    tm2 = t - 2.0
    tp1 = t + 1.0
    w0 = -t * tm1 * tm2 / 6.0
    w1 = tp1 * tm1 * tm2 * 0.5
    w2 = -tp1 * t * tm2 * 0.5
    w3 = tp1 * t * tm1 / 6.0
    t2 = t * t
    d0 = -(3.0 * t2 - 6.0 * t + 2.0) / 6.0
    d1 = (3.0 * t2 - 4.0 * t - 1.0) * 0.5
    d2 = -(3.0 * t2 - 2.0 * t - 2.0) * 0.5
    d3 = (3.0 * t2 - 1.0) / 6.0
    return w0, w1, w2, w3, d0, d1, d2, d3


@register_jitable
def pick4(i, a0, a1, a2, a3):
    if i == 0:
        return a0
    if i == 1:
        return a1
    if i == 2:
        return a2
    return a3


@register_jitable
def d_tricubic(grid, ih, ik, il, h, k, l):
    """Tricubic value (the Lagrange tensor product C's polin3 evaluates) and its gradient
    on the 4x4x4 block whose first corner is grid[ih, ik, il]: (F, dF/dh, dF/dk, dF/dl)."""
    a0, a1, a2, a3, da0, da1, da2, da3 = lagrange4(h - math.floor(h))
    b0, b1, b2, b3, db0, db1, db2, db3 = lagrange4(k - math.floor(k))
    c0, c1, c2, c3, dc0, dc1, dc2, dc3 = lagrange4(l - math.floor(l))
    F = 0.0
    Fh = 0.0
    Fk = 0.0
    Fl = 0.0
    for i in range(4):
        wa = pick4(i, a0, a1, a2, a3)
        dwa = pick4(i, da0, da1, da2, da3)
        for j in range(4):
            wb = pick4(j, b0, b1, b2, b3)
            dwb = pick4(j, db0, db1, db2, db3)
            # along l
            g0 = grid[ih + i, ik + j, il]
            g1 = grid[ih + i, ik + j, il + 1]
            g2 = grid[ih + i, ik + j, il + 2]
            g3 = grid[ih + i, ik + j, il + 3]
            v = c0 * g0 + c1 * g1 + c2 * g2 + c3 * g3
            dv = dc0 * g0 + dc1 * g1 + dc2 * g2 + dc3 * g3
            F += wa * wb * v
            Fh += dwa * wb * v
            Fk += wa * dwb * v
            Fl += wa * wb * dv
    return F, Fh, Fk, Fl


# ---------------------------------------------------------------- detector factors
@register_jitable
def d_solid_angle(pixel_size, posx, posy, posz, airpath, close_distance, point_pixel):
    """Solid angle and its gradient: (omega, d/dpos (3), d/dclose_distance)."""
    if point_pixel:
        om = 1.0 / airpath / airpath
        k = -2.0 * om / (airpath * airpath)
        return om, k * posx, k * posy, k * posz, 0.0
    om = pixel_size * pixel_size / airpath / airpath * close_distance / airpath
    k = -3.0 * om / (airpath * airpath)
    return (om, k * posx, k * posy, k * posz,
            pixel_size * pixel_size / (airpath * airpath * airpath))


@register_jitable
def d_capture_fraction(layer, thickstep, mu, parallax):
    """Capture fraction of sensor layer ``layer`` and its derivative w.r.t. the parallax."""
    A = thickstep * mu
    e0 = math.exp(-layer * A / parallax)
    e1 = math.exp(-(layer + 1) * A / parallax)
    p2 = parallax * parallax
    return e0 - e1, e0 * layer * A / p2 - e1 * (layer + 1) * A / p2


@register_jitable
def d_polarization(kahn, use_kahn, ix, iy, iz, dx, dy, dz, ax, ay, az):
    """Polarization factor (Kahn when ``use_kahn``, else 0.5 (1 + cos^2 2theta)) and its
    gradient w.r.t. the diffracted unit vector d: (polar, d/ddx, d/ddy, d/ddz)."""
    c = ix * dx + iy * dy + iz * dz
    if not use_kahn:
        return 0.5 * (1.0 + c * c), c * ix, c * iy, c * iz
    c2 = c * c
    s2 = 1.0 - c2
    ex, ey, ez, bx, by, bz = ph.polarization_basis(ix, iy, iz, ax, ay, az)
    e_out = dx * ex + dy * ey + dz * ez
    b_out = dx * bx + dy * by + dz * bz
    psi = -math.atan2(b_out, e_out)
    c2psi = math.cos(2.0 * psi)
    polar = 0.5 * (1.0 + c2 - kahn * c2psi * s2)
    dpdc = c * (1.0 + kahn * c2psi)
    dpdpsi = kahn * math.sin(2.0 * psi) * s2
    r2 = e_out * e_out + b_out * b_out
    gx = dpdc * ix
    gy = dpdc * iy
    gz = dpdc * iz
    if r2 > 0.0:
        # psi = -atan2(b, e): dpsi/db = -e/r2, dpsi/de = b/r2
        kb = -dpdpsi * e_out / r2
        ke = dpdpsi * b_out / r2
        gx += kb * bx + ke * ex
        gy += kb * by + ke * ey
        gz += kb * bz + ke * ez
    return polar, gx, gy, gz


@register_jitable
def rodrigues_vjp(vx, vy, vz, ax, ay, az, th, gx, gy, gz):
    """Vector-Jacobian product of rot(v, a, th) = a (a.v)(1-c) + v c + (a x v) s
    (nanoBragg's rotate_axis) for the cotangent g: returns (vbar(3), abar(3), thbar)."""
    c = math.cos(th)
    s = math.sin(th)
    av = ax * vx + ay * vy + az * vz
    ag = ax * gx + ay * gy + az * gz
    # a x g
    axg_x = ay * gz - az * gy
    axg_y = az * gx - ax * gz
    axg_z = ax * gy - ay * gx
    vbx = ax * ag * (1.0 - c) + gx * c - axg_x * s
    vby = ay * ag * (1.0 - c) + gy * c - axg_y * s
    vbz = az * ag * (1.0 - c) + gz * c - axg_z * s
    # v x g
    vxg_x = vy * gz - vz * gy
    vxg_y = vz * gx - vx * gz
    vxg_z = vx * gy - vy * gx
    abx = (1.0 - c) * (av * gx + ag * vx) + s * vxg_x
    aby = (1.0 - c) * (av * gy + ag * vy) + s * vxg_y
    abz = (1.0 - c) * (av * gz + ag * vz) + s * vxg_z
    # d/dth: s a (a.v) - s v + c (a x v)
    axv_x = ay * vz - az * vy
    axv_y = az * vx - ax * vz
    axv_z = ax * vy - ay * vx
    tb = (gx * (s * ax * av - s * vx + c * axv_x) + gy * (s * ay * av - s * vy + c * axv_y)
          + gz * (s * az * av - s * vz + c * axv_z))
    return vbx, vby, vbz, abx, aby, abz, tb

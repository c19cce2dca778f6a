"""nanoBragg's random-number generators, bit for bit.

nanoBragg.c (ll. 3412-3805) uses the Numerical Recipes generators with C ``float``
return values and ``long`` (64-bit on Linux) seeds.  Every function here repeats the
C arithmetic step by step, rounding to float32 exactly where C stores into (or computes
with only) ``float`` values, and computing in float64 where C promotes to ``double``.
Results are therefore identical to the C program compiled for x86-64 (SSE, no FMA).

State
-----
C keeps the generator state in *static* variables: ``ran1``'s shuffle table ``iy``,
``iv[32]`` and ``gaussdev``'s spare deviate ``iset``/``gset``; only ``idum`` belongs to
the caller.  Here the whole state lives in one small ``int64`` array (see the ``S_*``
index constants) so several streams can coexist and be passed to Numba code::

    state[S_IDUM]       idum (the C ``long`` the caller owns)
    state[S_IY]         ran1 static iy (0 = table never loaded)
    state[S_IV:S_IV+32] ran1 static iv[NTAB]
    state[S_ISET]       gaussdev static iset
    state[S_GSET]       gaussdev static gset, as its float32 bit pattern

C-faithful seeding (ll. 354-358, 1099-1110): ``seed = -time(0)`` by default and
``-seed N`` sets ``seed = -atoi(N)``; ``mosaic_seed = -12345678`` unless
``-mosaic_seed N`` (then ``-atoi(N)``); ``misset_seed = seed`` (the value at
declaration, i.e. ``-time``) unless ``-misset_seed N``.  The C value (already negated)
is the *idum*; :func:`idum_from_seed_flag` does the negation.

ran1 (re)loads its table when ``idum <= 0`` or when the table was never loaded
(``iy == 0``); a non-positive idum becomes ``max(-idum, 1)`` first.  Because the table
is *static* in C it is shared by all streams: a stream whose first idum is positive
(the user gave a negative ``-seed``) does not reload it and continues with the table
the previously used stream left behind.  Reproduce that with
``Ran1Stream(seed, previous=<stream used just before>)``.  C's order of use is:
random misset (misset_seed, l. 1902), mosaic domains (mosaic_seed, l. 2441; always at
least one call, even without mosaicity), then the noise image (seed, l. 3244).
``gaussdev``'s spare deviate is also static in C; it is only used by ``poidev`` for
means above 1e6 (noise stream), so keeping it per stream is exact.
"""
from __future__ import annotations

import math

import numba
import numba.extending
import numpy as np

__all__ = [
    "STATE_SIZE", "S_IDUM", "S_IY", "S_IV", "S_ISET", "S_GSET", "NTAB",
    "new_state", "idum_from_seed_flag", "share_table",
    "ran1", "gaussdev", "poidev", "gammln", "lorentzdev", "triangledev", "expdev",
    "uniform3Ddev", "mosaic_rotation_umat", "mosaic_rotation_umat_into", "umat2misset",
    "mosaic_umats", "random_misset_umat", "Ran1Stream",
    "DEFAULT_MOSAIC_SEED",
]

# ---- Numerical Recipes ran1 constants (nanoBragg.c ll. 3762-3771) ----
IA = 16807
IM = 2147483647
AM = 1.0 / IM
IQ = 127773
IR = 2836
NTAB = 32
NDIV = 1 + (IM - 1) // NTAB
RNMX = 1.0 - 1.2e-7          # double in C; compared as double, returned as float

# ---- state layout ----
S_IDUM = 0
S_IY = 1
S_IV = 2
S_ISET = S_IV + NTAB
S_GSET = S_ISET + 1
STATE_SIZE = S_GSET + 1

#: C default of ``mosaic_seed`` (already negated, i.e. an idum).
DEFAULT_MOSAIC_SEED = -12345678

_F32 = np.float32
_PI = math.pi
_M_1_PI = 0.318309886183790671537767526745028724   # C's M_1_PI literal


def new_state(idum: int) -> np.ndarray:
    """Fresh state array holding ``idum`` (the C ``long``, e.g. -12345) and an unloaded table."""
    st = np.zeros(STATE_SIZE, dtype=np.int64)
    st[S_IDUM] = int(idum)
    return st


def idum_from_seed_flag(value) -> int:
    """The idum C stores for ``-seed V`` / ``-mosaic_seed V`` / ``-misset_seed V``: ``-atoi(V)``.

    ``atoi`` reads an optional sign and leading digits (``"12abc"`` -> 12, ``"x"`` -> 0) and
    the result is a C ``int``, so it wraps to 32 bits like glibc's ``(int) strtol``.
    """
    if isinstance(value, (int, np.integer)):
        n = int(value)
    else:
        s = str(value).lstrip(" \t\n\v\f\r")
        i = 0
        if i < len(s) and s[i] in "+-":
            i += 1
        j = i
        while j < len(s) and s[j].isdigit():
            j += 1
        n = int(s[:j]) if j > i else 0
    n &= 0xFFFFFFFF
    if n >= 0x80000000:
        n -= 0x100000000
    return -n


def share_table(dst: np.ndarray, src: np.ndarray) -> None:
    """Copy ran1's shuffle table (iy, iv) from ``src`` into ``dst`` (C's shared statics)."""
    dst[S_IY:S_IV + NTAB] = src[S_IY:S_IV + NTAB]


# --------------------------------------------------------------------------------------
# Jitted generators.  All take the int64 state array as last argument.
# --------------------------------------------------------------------------------------

@numba.njit(cache=True)
def ran1(state):
    """Uniform deviate in (0, 1) as float32 -- NR ``ran1`` (nanoBragg.c ll. 3773-3805)."""
    idum = state[S_IDUM]
    if idum <= 0 or state[S_IY] == 0:
        # first time around: don't want idum = 0
        if -idum < 1:
            idum = 1
        else:
            idum = -idum
        # load the shuffle table (after 8 warm-ups)
        for j in range(NTAB + 7, -1, -1):
            k = idum // IQ          # idum > 0 here, so floor == C truncation
            idum = IA * (idum - k * IQ) - IR * k
            if idum < 0:
                idum += IM
            if j < NTAB:
                state[S_IV + j] = idum
        state[S_IY] = state[S_IV]
    # Schrage's step IA*(idum%IQ) - IR*(idum/IQ) (+IM) is IA*idum mod IM exactly for
    # 0 <= idum <= IM (its only range here); unsigned 64-bit arithmetic does it in half
    # the time and gives the same integers.
    idum = np.int64(np.uint64(IA) * np.uint64(idum) % np.uint64(IM))
    state[S_IDUM] = idum
    j = np.int64(np.uint64(state[S_IY]) // np.uint64(NDIV))
    iy = state[S_IV + j]
    state[S_IY] = iy
    state[S_IV + j] = idum
    # C: temp (float) = AM*iy (double product rounded to float); compared as double
    temp = np.float32(AM * iy)
    if temp > RNMX:
        return np.float32(RNMX)
    return temp


@numba.extending.intrinsic
def _bitcast_i32_f32(typingctx, bits):
    # reinterpret an int32 as float32 in registers (no array allocation per deviate)
    sig = numba.types.float32(numba.types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(numba.types.float32))
    return sig, codegen


@numba.extending.intrinsic
def _bitcast_f32_i32(typingctx, x):
    sig = numba.types.int32(numba.types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(numba.types.int32))
    return sig, codegen


@numba.njit(cache=True)
def _f32_from_bits(bits):
    return _bitcast_i32_f32(np.int32(bits))


@numba.njit(cache=True)
def _bits_from_f32(x):
    return np.int64(_bitcast_f32_i32(np.float32(x)))


@numba.njit(cache=True)
def gaussdev(state):
    """Unit-variance Gaussian deviate (float32), Box-Muller polar form (ll. 3673-3702).

    Returns two deviates per pair of accepted uniforms; the spare is kept in the state.
    """
    if state[S_ISET] == 0:
        while True:
            v1 = np.float32(2.0 * np.float64(ran1(state)) - 1.0)
            v2 = np.float32(2.0 * np.float64(ran1(state)) - 1.0)
            rsq = np.float32(v1 * v1) + np.float32(v2 * v2)   # float arithmetic in C
            if not (rsq >= 1.0 or rsq == 0):
                break
        r = np.float64(rsq)
        fac = np.float32(math.sqrt(-2.0 * math.log(r) / r))
        state[S_GSET] = _bits_from_f32(np.float32(v1 * fac))
        state[S_ISET] = 1
        return np.float32(v2 * fac)
    state[S_ISET] = 0
    return _f32_from_bits(state[S_GSET])


@numba.njit(cache=True)
def gammln(xx):
    """ln Gamma(xx) for float32 ``xx``, computed in double, returned as float32 (ll. 3741-3756)."""
    x = np.float64(xx)
    y = x
    tmp = x + 5.5
    tmp -= (x + 0.5) * math.log(tmp)
    ser = 1.000000000190015
    y += 1.0
    ser += 76.18009172947146 / y
    y += 1.0
    ser += -86.50532032941677 / y
    y += 1.0
    ser += 24.01409824083091 / y
    y += 1.0
    ser += -1.231739572450155 / y
    y += 1.0
    ser += 0.1208650973866179e-2 / y
    y += 1.0
    ser += -0.5395239384953e-5 / y
    return np.float32(-tmp + math.log(2.5066282746310005 * ser / x))


@numba.njit(cache=True)
def poidev(xm, state):
    """Poisson deviate with mean ``xm`` (float32 in, float32 out) -- nanoBragg.c ll. 3616-3670.

    * ``xm > 1e6``: Gaussian approximation ``xm + sqrt(xm)*gaussdev``.
    * ``xm < 12``: direct method (multiply uniforms until below ``exp(-xm)``); consumes
      ``k+1`` uniforms for a result ``k`` (one uniform even for ``xm <= 0``).
    * otherwise (also NaN): rejection against a Lorentzian.

    C caches ``exp(-xm)`` etc. in statics keyed on the previous ``xm``; the cached values
    are pure functions of ``xm`` so recomputing them each call is identical.
    """
    xm = np.float32(xm)
    if xm > 1.0e6:
        xd = np.float64(xm)
        return np.float32(xd + math.sqrt(xd) * np.float64(gaussdev(state)))
    if xm < 12.0:
        g = np.float32(math.exp(-np.float64(xm)))
        em = np.float32(-1.0)
        t = np.float32(1.0)
        while True:
            em = em + np.float32(1.0)
            t = np.float32(t * ran1(state))
            if not (t > g):
                break
        return em
    # rejection method; all of sq, alxm, g, y, em, t are C floats
    sq = np.float32(math.sqrt(2.0 * np.float64(xm)))
    alxm = np.float32(math.log(np.float64(xm)))
    g = np.float32(np.float32(xm * alxm) - gammln(np.float32(np.float64(xm) + 1.0)))
    while True:
        while True:
            y = np.float32(math.tan(_PI * np.float64(ran1(state))))
            em = np.float32(np.float32(sq * y) + xm)
            if not (em < 0.0):
                break
        em = np.float32(np.floor(np.float64(em)))
        e = np.float32(np.float32(em * alxm) - gammln(np.float32(np.float64(em) + 1.0)))
        e = np.float32(e - g)
        t = np.float32(0.9 * (1.0 + np.float64(np.float32(y * y))) * math.exp(np.float64(e)))
        if not (ran1(state) > t):
            break
    return em


@numba.njit(cache=True)
def lorentzdev(state):
    """Lorentzian deviate with FWHM 2: ``tan(pi*(ran1-0.5))`` as float32 (ll. 3705-3709)."""
    return np.float32(math.tan(_PI * (np.float64(ran1(state)) - 0.5)))


@numba.njit(cache=True)
def triangledev(state):
    """Triangular deviate with FWHM 1 (ll. 3712-3725)."""
    value = ran1(state)
    if value > 0.5:
        return np.float32(math.sqrt(2.0 * (np.float64(value) - 0.5)) - 1.0)
    return np.float32(1.0 - math.sqrt(2.0 * np.float64(value)))


@numba.njit(cache=True)
def expdev(state):
    """Exponential deviate ``-log(ran1)`` (ll. 3728-3736)."""
    while True:
        dum = ran1(state)
        if dum != 0.0:
            break
    return np.float32(-math.log(np.float64(dum)))


@numba.njit(cache=True)
def uniform3Ddev(state):
    """Random unit vector and a random radius in [0.01, 1] (ll. 3412-3435).

    Returns ``(dx, dy, dz, dr)``, all float32 like C's out-parameters and return value.
    """
    dx = np.float32(0.0)
    dy = np.float32(0.0)
    dz = np.float32(0.0)
    dr = np.float32(0.0)
    while dr > 1 or dr < 1e-2:
        dx = np.float32(2.1 * (np.float64(ran1(state)) - 0.5))
        dy = np.float32(2.1 * (np.float64(ran1(state)) - 0.5))
        dz = np.float32(2.1 * (np.float64(ran1(state)) - 0.5))
        s = np.float32(np.float32(np.float32(dx * dx) + np.float32(dy * dy)) + np.float32(dz * dz))
        dr = np.float32(math.sqrt(np.float64(s)))
    return np.float32(dx / dr), np.float32(dy / dr), np.float32(dz / dr), dr


@numba.njit(cache=True)
def mosaic_rotation_umat_into(mosaicity, umat, state):
    """Fill ``umat`` (9 float64, row-major) with a random rotation (ll. 3439-3486).

    ``mosaicity`` is in *radians* (C passes ``mosaic_spread``, already divided by RTD, and
    it is narrowed to C ``float``).  The rotation axis is isotropic; the angle is
    ``mosaicity * (1-r3^2)^(1/3)`` with the product and the cube root in float32
    (C: ``float * powf(...)``).  Consumes exactly three ``ran1`` values.
    The matrix acts as ``v' = U @ v`` with ``U = umat.reshape(3, 3)`` (C's ``rotate_umat``).
    """
    mos = np.float32(mosaicity)
    r1 = 2.0 * np.float64(ran1(state)) - 1.0
    r2 = 2.0 * np.float64(ran1(state)) - 1.0
    r3 = 2.0 * np.float64(ran1(state)) - 1.0
    xyrad = math.sqrt(1.0 - r2 * r2)
    # powf((float)(1-r3^2), (float)(1/3)) then float*float
    p = np.float32(1.0 - r3 * r3) ** np.float32(1.0 / 3.0)
    rot = np.float64(np.float32(mos * np.float32(p)))
    v1 = xyrad * math.sin(_PI * r1)
    v2 = xyrad * math.cos(_PI * r1)
    v3 = r2
    t1 = math.cos(rot)
    t2 = 1.0 - t1
    t3 = v1 * v1
    t6 = t2 * v1
    t7 = t6 * v2
    t8 = math.sin(rot)
    t9 = t8 * v3
    t11 = t6 * v3
    t12 = t8 * v2
    t15 = v2 * v2
    t19 = t2 * v2 * v3
    t20 = t8 * v1
    t24 = v3 * v3
    umat[0] = t1 + t2 * t3
    umat[1] = t7 - t9
    umat[2] = t11 + t12
    umat[3] = t7 + t9
    umat[4] = t1 + t2 * t15
    umat[5] = t19 - t20
    umat[6] = t11 - t12
    umat[7] = t19 + t20
    umat[8] = t1 + t2 * t24


@numba.njit(cache=True)
def mosaic_rotation_umat(mosaicity, state):
    """3x3 float64 rotation ``U`` (``v' = U @ v``) from :func:`mosaic_rotation_umat_into`."""
    u = np.empty(9, dtype=np.float64)
    mosaic_rotation_umat_into(mosaicity, u, state)
    return u.reshape((3, 3))


@numba.njit(cache=True)
def mosaic_umats(mosaic_spread, mosaic_domains, state):
    """All domain matrices as C builds them (ll. 2437-2448): shape (domains, 3, 3).

    Every domain draws a matrix (three uniforms each, domain 0 included) and domain 0 is
    then overwritten with the identity.  ``mosaic_spread`` in radians.  Note that the
    render loop only applies the matrices when ``mosaic_spread > 0``.
    """
    out = np.empty((mosaic_domains, 3, 3), dtype=np.float64)
    u = np.empty(9, dtype=np.float64)
    for d in range(mosaic_domains):
        mosaic_rotation_umat_into(mosaic_spread, u, state)
        for i in range(3):
            for j in range(3):
                out[d, i, j] = u[3 * i + j]
        if d == 0:
            for i in range(3):
                for j in range(3):
                    out[0, i, j] = 1.0 if i == j else 0.0
    return out


def umat2misset(umat) -> tuple[float, float, float]:
    """Missetting angles (rotx, roty, rotz) in radians from a rotation matrix (ll. 3491-3612).

    The angles satisfy ``U = Rz(rotz) @ Ry(roty) @ Rx(rotx)``, i.e. C's ``rotate(v, x, y, z)``
    (x first, then y, then z) reproduces ``U`` up to rounding.  ``umat`` is 3x3 or 9 values,
    row-major.  Rows are normalised and re-orthogonalised exactly like C before the atan2s.
    """
    u = np.asarray(umat, dtype=np.float64).reshape(9)
    uxx, uxy, uxz, uyx, uyy, uyz, uzx, uzy, uzz = (float(x) for x in u)
    sqrt = math.sqrt

    mx = sqrt(uxx * uxx + uxy * uxy + uxz * uxz)
    my = sqrt(uyx * uyx + uyy * uyy + uyz * uyz)
    mz = sqrt(uzx * uzx + uzy * uzy + uzz * uzz)
    if mx > 0:
        uxx /= mx; uxy /= mx; uxz /= mx
    if my > 0:
        uyx /= my; uyy /= my; uyz /= my
    if mz > 0:
        uzx /= mz; uzy /= mz; uzz /= mz
    if mx >= 0 and my <= 0 and mz <= 0:
        uyx, uyy, uyz = 0.0, 1.0, 0.0
        uzx, uzy, uzz = 0.0, 0.0, 1.0
    if mx <= 0 and my >= 0 and mz <= 0:
        uxx, uxy, uxz = 1.0, 0.0, 0.0
        uzx, uzy, uzz = 0.0, 0.0, 1.0
    if mx <= 0 and my <= 0 and mz >= 0:
        uxx, uxy, uxz = 1.0, 0.0, 0.0
        uyx, uyy, uyz = 0.0, 1.0, 0.0

    def _unit(x, y, z):
        m = sqrt(x * x + y * y + z * z)
        if m > 0:
            return x / m, y / m, z / m
        return x, y, z

    for _ in range(2):       # C repeats the cross-product repair twice
        xcy = _unit(uxy * uyz - uxz * uyy, uxz * uyx - uxx * uyz, uxx * uyy - uxy * uyx)
        ycz = _unit(uyy * uzz - uyz * uzy, uyz * uzx - uyx * uzz, uyx * uzy - uyy * uzx)
        zcx = _unit(uzy * uxz - uzz * uxy, uzz * uxx - uzx * uxz, uzx * uxy - uzy * uxx)
        if mx <= 0:
            uxx, uxy, uxz = ycz
        if my <= 0:
            uyx, uyy, uyz = zcx
        if mz <= 0:
            uzx, uzy, uzz = xcy

    mx = sqrt(uxx * uxx + uxy * uxy + uxz * uxz)
    my = sqrt(uyx * uyx + uyy * uyy + uyz * uyz)
    mz = sqrt(uzx * uzx + uzy * uzy + uzz * uzz)
    if mx > 0:
        uxx /= mx; uxy /= mx; uxz /= mx
    if my > 0:
        uyx /= my; uyy /= my; uyz /= my
    if mz > 0:
        uzx /= mz; uzy /= mz; uzz /= mz

    if uzx * uzx < 1.0:
        rotx = math.atan2(uzy, uzz)
        roty = math.atan2(-uzx, sqrt(uzy * uzy + uzz * uzz))
        rotz = math.atan2(uyx, uxx)
    else:
        rotx = math.atan2(1, 1) * 4
        roty = math.atan2(1, 1) * 2
        rotz = math.atan2(uxy, -uyy)
    return rotx, roty, rotz


def random_misset_umat(misset_seed: int | None = None, *, state: np.ndarray | None = None):
    """What C does for ``-misset random`` (ll. 1898-1912).

    C calls ``mosaic_rotation_umat(90.0, umat, &misset_seed)`` -- 90 is read as *radians*
    (a full-sphere cap), derives missetting angles with ``umat2misset``, prints
    ``"random orientation misset angles: %f %f %f deg"`` and then rotates a*, b*, c* with
    ``rotate(v, rotx, roty, rotz)`` using those *angles* (applying ``umat`` directly is
    commented out in C).  For bit-exact cells apply the angles, not the matrix.

    Give either ``misset_seed`` (the C idum, already negated: ``-misset_seed 777`` ->
    ``-777``) or a prepared ``state`` (e.g. one sharing the table, see module doc).

    Returns ``(umat 3x3, (rotx, roty, rotz) radians, message)``; ``message`` is the line
    C prints.
    """
    if state is None:
        if misset_seed is None:
            raise ValueError("give misset_seed or state")
        state = new_state(misset_seed)
    u = mosaic_rotation_umat(90.0, state)
    angles = umat2misset(u)
    rtd = 180.0 * _M_1_PI       # C: RTD = 180.0*M_1_PI
    msg = "random orientation misset angles: %f %f %f deg" % tuple(a * rtd for a in angles)
    return u, angles, msg


class Ran1Stream:
    """Python-friendly wrapper of one generator stream.

    ``Ran1Stream(idum)`` takes the C idum (negative to seed: ``-seed 12345`` -> ``-12345``;
    use :func:`idum_from_seed_flag`).  ``previous`` is the stream used just before in C's
    program order; it matters only when ``idum > 0`` (see module doc: C's shuffle table
    is static, so such a stream continues with the previous stream's table).

    ``stream.state`` is the int64 array the jitted functions take.
    """

    def __init__(self, idum: int, previous: "Ran1Stream | None" = None):
        self.state = new_state(idum)
        if previous is not None and int(idum) > 0:
            share_table(self.state, previous.state)

    @property
    def idum(self) -> int:
        return int(self.state[S_IDUM])

    def ran1(self) -> float:
        return float(ran1(self.state))

    def gaussdev(self) -> float:
        return float(gaussdev(self.state))

    def poidev(self, xm: float) -> float:
        return float(poidev(np.float32(xm), self.state))

    def lorentzdev(self) -> float:
        return float(lorentzdev(self.state))

    def uniform3Ddev(self):
        return tuple(float(v) for v in uniform3Ddev(self.state))

    def mosaic_rotation_umat(self, mosaicity: float) -> np.ndarray:
        return mosaic_rotation_umat(float(mosaicity), self.state)

    def mosaic_umats(self, mosaic_spread: float, mosaic_domains: int) -> np.ndarray:
        return mosaic_umats(float(mosaic_spread), int(mosaic_domains), self.state)

    def uniform(self, n: int) -> np.ndarray:
        """``n`` successive ran1 values as float32."""
        return _ran1_many(int(n), self.state)


@numba.njit(cache=True)
def _ran1_many(n, state):
    out = np.empty(n, dtype=np.float32)
    for i in range(n):
        out[i] = ran1(state)
    return out

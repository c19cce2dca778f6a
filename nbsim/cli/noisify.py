"""``nbsim-noisify``: noisify.c's command line (photon noise and detector effects).

    nbsim-noisify -floatfile floatimage.bin -distance 100 -pixel 0.1 \\
        -scale 1 -readout 3 -flicker 0.02 -calibration 0.03 -psf fiber -psf_fwhm 100

Reads a raw float32 image (photons/pixel after ``-scale``), writes noisify.c's three
files: ``-intfile`` (SMV, noiseless, default intimage.img), ``-pgmfile`` (PGM of the
noiseless 16-bit pixels clipped at 255, default image.pgm, off with ``-nopgm``) and
``-noisefile`` (SMV with noise, default noiseimage.img, off with ``-nonoise``).  The SMV
header is noisify's own (HEADER_BYTES=512 ... BEAMLINE=fake) or, with ``-header FILE``,
that file's header copied verbatim (its SIZE1/SIZE2/PIXEL_SIZE/DISTANCE/WAVELENGTH/
BEAM_CENTER_X/Y replace the flags).

Flags, units, defaults and the order of operations are noisify.c's; the effects are in
:mod:`nbsim.effects`.  Differences, on purpose (the house rules): flags are matched
exactly, with the synonyms noisify.c's substring tests were written for listed
explicitly; unknown flags, missing or non-numeric values, an unknown ``-psf`` type, a
non-positive ``-psf_fwhm`` with a PSF, a negative ``-psf_radius``, ``-bits`` other than 16
or 32, an unreadable ``-header`` and a float file whose size does not match
``-detpixels``/the header are errors (one line on stderr, exit 2, nothing written) where
C warns and goes on.  ``-psf_method exact|fft|auto`` (nbsim's own, default exact) picks
the PSF path: exact is C's arithmetic bit for bit, fft equals it within float rounding
(auto: fft for fixed radii with more than 81 taps).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from ..io.cformat import c_g

from ._tool import (
    NUMBER_RE as _NUMBER_RE, UsageError, number as _num,
    integer as _int, tool_main, write_all as _write_all,
    check_writable as _check_writable)

__all__ = ["main", "run", "parse", "NoisifyArgs", "smv_header", "UsageError"]


@dataclass
class NoisifyArgs:
    floatfile: Optional[str] = None
    header: Optional[str] = None
    intfile: str = "intimage.img"
    pgmfile: str = "image.pgm"
    noisefile: str = "noiseimage.img"
    write_pgm: bool = True
    noise: bool = True
    distance: float = 100.0e-3           # m
    detsize_x: float = 102.4e-3          # m
    detsize_y: float = 102.4e-3
    pixel: float = 0.1e-3                # m
    xbeam: float = -1e99                 # m
    ybeam: float = -1e99
    xpixels: int = 0
    ypixels: int = 0
    lambda_A: float = 1.0                # header only, Angstrom
    psf: Optional[str] = None
    psf_fwhm: float = float(np.float32(46e-6))   # m, a C float
    psf_radius: int = 0
    psf_method: str = "exact"            # noisify.c's integers; fft/auto: faster
    fluence: float = 125932015286227086360700780544.0
    bits: int = 16
    readout: float = 0.0
    flicker: float = 0.0
    calibration: float = 0.03
    scale: float = 1.0
    seed: Optional[int] = None           # idum (already -atoi)
    calib_seed: Optional[int] = None
    adc: float = 40.0
    gain: float = 1.0
    phi: float = 0.0
    osc: float = 1.0
    notes: List[str] = field(default_factory=list)


def _seed(flag, text):
    from ..rng import idum_from_seed_flag
    return idum_from_seed_flag(_int(flag, text))


def _mm(a, attr):
    return lambda f, v: setattr(a, attr, _num(f, v) / 1000.0)


def _flags(a: NoisifyArgs):
    """name(s) -> (takes a value, apply(flag, value))."""
    def setv(attr, conv):
        return lambda f, v: setattr(a, attr, conv(f, v))

    def psf(f, v):
        t = v.lower()
        if "gauss" in t:
            a.psf = "gauss"
        elif "fiber" in t:
            a.psf = "fiber"
        else:
            raise UsageError(f"-psf: unknown PSF type {v!r} (expected gauss or fiber)")

    def psf_radius(f, v):
        r = _num(f, v)
        if r < 0:
            raise UsageError(f"{f}: must be >= 0 pixels (0 = automatic), got {v!r}")
        a.psf_radius = int(r)          # C: int = atof(), truncation

    def psf_fwhm(f, v):
        a.psf_fwhm = float(np.float32(_num(f, v) / 1e6))     # C stores a float

    def detsize(f, v):
        a.detsize_x = a.detsize_y = _num(f, v) / 1000.0

    def detpixels(f, v):
        a.xpixels = a.ypixels = _int(f, v)

    def bits(f, v):
        b = _int(f, v)
        if b not in (16, 32):
            raise UsageError(f"{f}: must be 16 or 32, got {v!r}")
        a.bits = b

    def method(f, v):
        if v not in ("auto", "exact", "fft"):
            raise UsageError(f"{f}: must be auto, exact or fft, got {v!r}")
        a.psf_method = v

    def ignored(f, v):
        a.notes.append(f"{f} is accepted and, as in noisify.c, changes nothing")

    def nonneg_int(f, v):
        n = _int(f, v)
        if n <= 0:
            raise UsageError(f"{f}: must be a positive number of pixels, got {v!r}")
        return n

    table = [
        (("-floatfile", "-floatimage", "-bin"), True, setv("floatfile", lambda f, v: v)),
        (("-header",), True, setv("header", lambda f, v: v)),
        (("-intfile", "-intimage"), True, setv("intfile", lambda f, v: v)),
        (("-pgmfile", "-pgmimage"), True, setv("pgmfile", lambda f, v: v)),
        (("-noisefile", "-noiseimage"), True, setv("noisefile", lambda f, v: v)),
        (("-nonoise",), False, lambda f, v: setattr(a, "noise", False)),
        (("-nopgm",), False, lambda f, v: setattr(a, "write_pgm", False)),
        (("-lambda",), True, setv("lambda_A", _num)),
        (("-Xbeam",), True, _mm(a, "xbeam")),
        (("-Ybeam",), True, _mm(a, "ybeam")),
        (("-distance",), True, _mm(a, "distance")),
        (("-detsize",), True, detsize),
        (("-detsize_x",), True, _mm(a, "detsize_x")),
        (("-detsize_y",), True, _mm(a, "detsize_y")),
        (("-detpixels",), True, lambda f, v: detpixels(f, str(nonneg_int(f, v)))),
        (("-detpixels_x",), True, setv("xpixels", nonneg_int)),
        (("-detpixels_y",), True, setv("ypixels", nonneg_int)),
        (("-pixel",), True, _mm(a, "pixel")),
        (("-psf",), True, psf),
        (("-psf_radius", "-psf_rad"), True, psf_radius),
        (("-psf_fwhm", "-psf_fw", "-psf_sigma", "-psf_si", "-psf_width", "-psf_wi"), True,
         psf_fwhm),
        (("-psf_method",), True, method),
        (("-fluence",), True, setv("fluence", _num)),
        (("-bits",), True, bits),
        (("-readout", "-readout_noise", "-readnoise", "-readnoi"), True, setv("readout", _num)),
        (("-flicker",), True, setv("flicker", _num)),
        (("-calibration",), True, setv("calibration", _num)),
        (("-scale",), True, setv("scale", _num)),
        (("-seed",), True, setv("seed", _seed)),
        (("-calib_seed",), True, setv("calib_seed", _seed)),
        (("-badpix_seed", "-hotpix_seed"), True, ignored),
        (("-adc",), True, setv("adc", _num)),
        (("-gain",), True, setv("gain", _num)),
        (("-phi",), True, setv("phi", _num)),
        (("-osc",), True, setv("osc", _num)),
    ]
    out = {}
    for names, takes, fn in table:
        for n in names:
            out[n] = (takes, fn)
    return out


def parse(argv: Sequence[str]) -> NoisifyArgs:
    a = NoisifyArgs()
    table = _flags(a)
    i = 0
    argv = list(argv)
    while i < len(argv):
        tok = argv[i]
        if tok.startswith("-") and tok in table:
            takes, fn = table[tok]
            if takes:
                if i + 1 >= len(argv):
                    raise UsageError(f"{tok}: needs a value")
                fn(tok, argv[i + 1])
                i += 2
            else:
                fn(tok, None)
                i += 1
            continue
        if tok.startswith("-") and not _NUMBER_RE.match(tok):
            raise UsageError(f"{tok}: unknown flag (nbsim-noisify -h lists them)")
        if "floatimage.bin" in tok:          # noisify.c: a bare floatimage.bin is the input
            a.floatfile = tok
            i += 1
            continue
        raise UsageError(f"{tok!r}: unexpected argument (the input is -floatfile FILE)")
    if a.floatfile is None:
        raise UsageError("no input: give -floatfile FILE (raw float32 image)")
    if a.psf is not None and not a.psf_fwhm > 0.0:
        raise UsageError(f"-psf_fwhm: must be positive, got {c_g(a.psf_fwhm * 1e6)} um")
    return a


def _geometry(a: NoisifyArgs, nbytes: int, header: Optional[bytes]):
    """noisify.c's pixel counts and sizes; checks the float file size against them."""
    from ..io.smv import smv_value_of
    if nbytes % 4:
        raise UsageError(f"{a.floatfile}: size {nbytes} bytes is not a whole number of floats")
    pixels = nbytes // 4
    given = a.xpixels or a.ypixels
    if header is not None:
        a.xpixels = int(smv_value_of(header, "SIZE1"))
        a.ypixels = int(smv_value_of(header, "SIZE2"))
        given = True
        t = smv_value_of(header, "PIXEL_SIZE")
        if not math.isnan(t):
            a.pixel = t / 1000.0
        a.detsize_x = a.pixel * a.xpixels
        a.detsize_y = a.pixel * a.ypixels
        t = smv_value_of(header, "DISTANCE")
        if not math.isnan(t):
            a.distance = t / 1000.0
        t = smv_value_of(header, "WAVELENGTH")
        if not math.isnan(t):
            a.lambda_A = t / 1e10          # C's quirk; only printed, the header is copied
        t = smv_value_of(header, "BEAM_CENTER_X")
        if not math.isnan(t):
            a.xbeam = t / 1000.0
        t = smv_value_of(header, "BEAM_CENTER_Y")
        if not math.isnan(t):
            a.ybeam = a.detsize_y - t / 1000.0
    x, y = a.xpixels, a.ypixels
    if not x and not y:
        a.notes.append("guessing xy pixel dimensions")
        x = int(math.sqrt(pixels))
        y = pixels // x if x else 0
        while x > 0 and pixels != x * y:
            x -= 1
            y = pixels // x if x else 0
        if pixels != x * y:
            x, y = pixels, 1
    if x and not y:
        y = pixels // x
    if y and not x:
        x = pixels // y
    if given and x * y * 4 != nbytes:
        raise UsageError(f"{a.floatfile}: {pixels} floats ({nbytes} bytes) do not make the "
                         f"{x}x{y} image the flags ask for")
    if x <= 0 or y <= 0:
        raise UsageError(f"{a.floatfile}: empty image")
    a.xpixels, a.ypixels = x, y
    a.detsize_x = a.pixel * x
    a.detsize_y = a.pixel * y
    if a.xbeam <= -1e99:
        a.xbeam = a.detsize_x / 2.0
    if a.ybeam <= -1e99:
        a.ybeam = a.detsize_y / 2.0


def smv_header(a: NoisifyArgs, bits: int) -> bytes:
    """noisify.c's own SMV header (padded with spaces to 512 bytes)."""
    byte_order = "little_endian" if sys.byteorder == "little" else "big_endian"
    typ = "unsigned_short" if bits == 16 else "long_integer"
    s = "{\nHEADER_BYTES=512;\nDIM=2;\nBYTE_ORDER=%s;\nTYPE=%s;\n" % (byte_order, typ)
    s += "SIZE1=%d;\nSIZE2=%d;\nPIXEL_SIZE=%s;\nDISTANCE=%s;\n" % (
        a.xpixels, a.ypixels, c_g(a.pixel * 1000.0), c_g(a.distance * 1000.0))
    s += "WAVELENGTH=%s;\nBEAM_CENTER_X=%s;\nBEAM_CENTER_Y=%s;\n" % (
        c_g(a.lambda_A), c_g(a.xbeam * 1000.0), c_g((a.detsize_y - a.ybeam) * 1000))
    s += "PHI=%s;\nOSC_START=%s;\nOSC_RANGE=%s;\n" % (c_g(a.phi), c_g(a.phi), c_g(a.osc))
    s += "DETECTOR_SN=000;\nBEAMLINE=fake;\n}\f"
    b = s.encode("latin-1")
    if len(b) < 512:
        b += b" " * (512 - len(b))
    return b


def run(argv: Sequence[str], out=None) -> int:
    """Parse, compute and write; raises UsageError for bad input (nothing written)."""
    from ..effects import NoisifyParams, NoisifyStreams, noisify
    from ..io.errors import FormatError
    from ..io.smv import read_smv_header_text
    out = out or sys.stdout
    a = parse(argv)
    header = None
    if a.header is not None:
        try:
            header = read_smv_header_text(a.header)
        except (OSError, FormatError) as e:
            raise UsageError(f"-header {a.header}: {getattr(e, 'strerror', None) or e}")
    try:
        raw = Path(a.floatfile).read_bytes()
    except OSError as e:
        raise UsageError(f"-floatfile {a.floatfile}: {e.strerror or e}")
    _geometry(a, len(raw), header)
    outputs = [("-intfile", a.intfile)]
    if a.write_pgm:
        outputs.append(("-pgmfile", a.pgmfile))
    if a.noise:
        outputs.append(("-noisefile", a.noisefile))
    for flag, path in outputs:
        _check_writable(path, flag)
    if not a.noise:
        a.calibration = a.readout = a.flicker = 0.0
    img = np.frombuffer(raw, dtype="<f4").reshape(a.ypixels, a.xpixels)
    p = NoisifyParams(scale=a.scale, fluence=a.fluence, psf_type=a.psf,
                      psf_fwhm_pixels=a.psf_fwhm / a.pixel, psf_radius=a.psf_radius,
                      psf_method=a.psf_method, readout=a.readout, flicker=a.flicker,
                      calibration=a.calibration, gain=a.gain, adc_offset=a.adc, bits=a.bits,
                      noise=a.noise)
    streams = NoisifyStreams(a.seed if a.seed is not None else -int(__import__("time").time()),
                             a.calib_seed if a.calib_seed is not None else 123456789)
    pr = lambda s="": print(s, file=out)  # noqa: E731
    pr("noisify - add noise to pixels - nbsim")
    for n in a.notes:
        print(f"nbsim-noisify: note: {n}", file=sys.stderr)
    pr("importing %d pixel intensites: %s" % (a.xpixels * a.ypixels, a.floatfile))
    pr("  distance=%s detsize=%sx%s  pixel=%s meters (%dx%d pixels)" % (
        c_g(a.distance), c_g(a.detsize_x), c_g(a.detsize_y), c_g(a.pixel), a.xpixels, a.ypixels))
    pr("  Xbeam=%s Ybeam=%s" % (c_g(a.xbeam), c_g(a.ybeam)))
    if a.psf:
        pr("  %s PSF fwhm = %s um   with %s" % (
            "Gaussian" if a.psf == "gauss" else "fiber", c_g(a.psf_fwhm * 1e6),
            "automatic rendering radius" if a.psf_radius == 0
            else "rendering radius: %d" % a.psf_radius))
    pr("  seed: %d" % streams.idums[0])
    pr("  calibration noise seed: %d" % streams.idums[1])
    pr("  calibration_noise = %s %%" % c_g(a.calibration * 100))
    pr("  input file scale = %s" % c_g(a.scale))
    pr("  readout_noise = %s ADU" % c_g(a.readout))
    pr("  flicker_noise = %s %%" % c_g(a.flicker * 100))
    pr("  quantum_gain = %s ADU/photon" % c_g(a.gain))
    pr("  adc_offset = %s ADU" % c_g(a.adc))
    pr()
    neg = img < 0
    if neg.any():
        pr("WARNING: %d negative intensities in %s" % (int(neg.sum()), a.floatfile))
    max_I = max(0.0, float(img.max()))
    pr("maximum value in input file: %s ( %s on photon scale)" % (
        c_g(max_I), c_g(max_I * a.scale * a.fluence * 7.94079248018965e-30)))
    res = noisify(img, p, streams)
    for m in res.messages:
        pr(m)
    hdr = header if header is not None else smv_header(a, a.bits)
    dtype = "<u2" if a.bits == 16 else "<u4"
    files = [(a.intfile, hdr + res.noiseless.image(a.bits).astype(dtype).tobytes())]
    if a.write_pgm:
        pgm = np.minimum(res.noiseless.int16, 255).astype(np.uint8)
        files.append((a.pgmfile, b"P5\n%d %d\n# pixels scaled by 1\n255\n"
                      % (a.xpixels, a.ypixels) + pgm.tobytes()))
    if res.noisy is not None:
        files.append((a.noisefile, hdr + res.noisy.image(a.bits).astype(dtype).tobytes()))
    _write_all(files)
    for path, _ in files:
        pr("writing %s" % path)
    return 0


_HELP = """usage: nbsim-noisify -floatfile floatimage.bin [options]
  floatimage.bin      raw float32 image (photons/pixel after -scale)
  -scale S            multiplies the input          -fluence F  photons/m^2 (default: unity scale)
  -gain G             ADU per photon (1)            -adc A      ADU offset added after noise (40)
  -readout R          Gaussian readout noise, ADU rms (0)
  -flicker F          fractional source flicker (0) -calibration C  static fractional pixel error (0.03)
  -seed N             seed of the noise (default -time)  -calib_seed N  seed of the calibration error
  -psf gauss|fiber    point spread function         -psf_fwhm UM  its FWHM in um (46)
  -psf_radius PX      rendering radius in pixels (0 = automatic)
  -psf_method exact|fft|auto  nbsim: exact (default) = noisify.c bit for bit, fft = within float rounding
  -bits 16|32         integer width of the SMV files (16)
  -distance MM -detsize MM -detpixels N (_x/_y) -pixel MM -Xbeam MM -Ybeam MM -lambda A -phi D -osc D
                      header values (and the image size)
  -header FILE        copy this SMV file's header (and take its size, pixel, distance, beam)
  -intfile F (intimage.img)  -pgmfile F (image.pgm)  -noisefile F (noiseimage.img)
  -nonoise            no noise file (the PSF then blurs the noiseless image)   -nopgm  no PGM
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    return tool_main("nbsim-noisify", _HELP, run, argv)


def console() -> None:
    """The console script's entry point: :func:`main`, then a quick exit
    (:mod:`nbsim.cli._exit`)."""
    from ._exit import exit_now
    exit_now(main())


if __name__ == "__main__":
    console()


"""``nbsim-nonbragg``: nonBragg.c's command line (amorphous scattering on an absolute scale).

    nbsim-nonbragg -stol water.stol -distance 250 -density 1 -thickness 1

Reads a ``-stol`` table (sin(theta)/lambda in 1/A and F; also ``-4stol``, ``-Q``) and
renders the scattering of a sample ``-thickness`` x ``-width`` x ``-height`` mm
(``-samplesize`` all three), ``-density`` g/cm^3, ``-MW`` g/mol (or ``-molecules N``) under
``-fluence`` photons/m^2 (or ``-flux`` ph/s x ``-exposure`` s over ``-beamsize`` mm), on
nonBragg.c's detector (its own geometry rules: :mod:`nbsim.amorphous.geometry`).  Writes
nonBragg.c's files: ``-floatfile`` (raw float32 photons/pixel, floatimage.bin),
``-intfile`` (SMV, scaled by ``-scale`` or 55000/max, plus ``-adc``; intimage.img),
``-pgmfile`` (image.pgm, off with ``-nopgm``) and ``-noisefile`` (SMV with Poisson noise
from ``-seed``; noiseimage.img, off with ``-nonoise``).

Differences, on purpose (the house rules; nonBragg.c itself warns of nothing): flags are
matched exactly with their synonyms listed (C's substring test also fires ``-twotheta``
on ``-twotheta_axis``; here it does not); unknown flags, missing or non-numeric values, a
stol file with bad columns or decreasing sin(theta)/lambda, a source file that cannot be
read are errors (one line on stderr, exit 2, nothing written); ``-img``/``-stolout``
(fitting F from an image) are not implemented and refused; ``-nonoise`` wins over
``-noisefile``; the PGM is written with one byte per pixel (nonBragg.c writes twice as
many bytes as it has, the second half uninitialised memory) and its scale from the mean
and rms deviation of the ROI pixels (C's running count is uninitialised there).
``-printout``, ``-coherent``, ``-noreject``, ``-gain``, ``-ignore``, ``-phistep(s)``,
``-spindle_axis``, ``-odet_vector``, ``-pix0_vector`` change nothing in nonBragg.c and are
accepted with a note.  ``-device cpu|cuda`` (nbsim's own) picks the kernel.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from ..io.cformat import c_g

from ._tool import (
    UsageError, number as _num, integer as _int,
    tool_main, write_all as _write_all,
    check_writable as _check_writable)
RTD = 180.0 * 0.318309886183790671537767526745028724

__all__ = ["main", "run", "parse", "UsageError"]


@dataclass
class NonBraggArgs:
    stol: Optional[str] = None
    stol_flavour: str = "stol"
    sourcefile: Optional[str] = None
    source_distance: float = 10.0
    floatfile: str = "floatimage.bin"
    intfile: str = "intimage.img"
    pgmfile: str = "image.pgm"
    noisefile: str = "noiseimage.img"
    write_pgm: bool = True
    noise: bool = True
    nonoise: bool = False
    intfile_scale: float = 0.0
    pgm_scale: float = 0.0
    adc: float = 40.0
    seed: Optional[int] = None
    phi0: float = 0.0
    osc: float = -1.0
    fmap: bool = False
    device: str = "cpu"
    notes: List[str] = field(default_factory=list)


def parse(argv: Sequence[str]):
    from ..amorphous import AmorphousSample, NonBraggDetector
    from ..rng import idum_from_seed_flag
    a = NonBraggArgs()
    d = NonBraggDetector()
    s = AmorphousSample()

    def mm(attr, obj=d, pivot=None):
        def f(flag, v):
            setattr(obj, attr, _num(flag, v[0]) / 1000.0)
            if pivot:
                d.pivot = pivot
        return f

    def val(attr, obj, conv=_num, scale=1.0, pivot=None):
        def f(flag, v):
            x = conv(flag, v[0])
            setattr(obj, attr, x * scale if scale != 1.0 else x)
            if pivot:
                d.pivot = pivot
        return f

    def vec(attr):
        def f(flag, v):
            setattr(d, attr, tuple(_num(flag, x) for x in v))
        return f

    def note(flag, v):
        a.notes.append(f"{flag} is accepted and, as in nonBragg.c, changes nothing in the image")

    def refuse(flag, v):
        raise UsageError(f"{flag}: fitting structure factors to an image is not implemented "
                         f"in nbsim-nonbragg")

    def samplesize(flag, v):
        s.thickness = s.width = s.height = _num(flag, v[0]) / 1000.0

    def stol(flavour):
        def f(flag, v):
            a.stol = v[0]
            a.stol_flavour = flavour
        return f

    def pivot(flag, v):
        t = v[0]
        if "sample" in t:
            d.pivot = "SAMPLE"
        elif "beam" in t:
            d.pivot = "BEAM"
        else:
            raise UsageError(f"-pivot: expected beam or sample, got {t!r}")

    def detsize(flag, v):
        d.detsize_x = d.detsize_y = _num(flag, v[0]) / 1000.0

    def detpixels(which):
        def f(flag, v):
            n = _int(flag, v[0])
            if n <= 0:
                raise UsageError(f"{flag}: must be a positive number of pixels, got {v[0]!r}")
            if which in ("f", "both"):
                d.fpixels = n
            if which in ("s", "both"):
                d.spixels = n
        return f

    def energy(flag, v):
        e = _num(flag, v[0])
        if e <= 0:
            raise UsageError(f"{flag}: must be positive (eV), got {v[0]!r}")
        d.wavelength = (12398.42 / e) / 1.0e10

    def wavelength(flag, v):
        lam = _num(flag, v[0])
        if lam <= 0:
            raise UsageError(f"{flag}: must be positive (Angstrom), got {v[0]!r}")
        d.wavelength = lam / 1.0e10

    def roi(flag, v):
        d.roi = tuple(_int(flag, x) for x in v)

    def oversample(flag, v):
        d.oversample = _int(flag, v[0])

    def polar(flag, v):
        s.polarization = _num(flag, v[0])
        s.nopolar = False

    def setflag(obj, attr, value):
        return lambda flag, v: setattr(obj, attr, value)

    def seed(flag, v):
        a.seed = idum_from_seed_flag(_int(flag, v[0]))

    def device(flag, v):
        if v[0] not in ("cpu", "cuda"):
            raise UsageError(f"{flag}: must be cpu or cuda, got {v[0]!r}")
        a.device = v[0]

    def pos(flag, attr, name):
        def f(fl, v):
            x = _num(fl, v[0])
            if x <= 0:
                raise UsageError(f"{fl}: {name} must be positive, got {v[0]!r}")
            setattr(s, attr, x)
        return f

    def nonneg_mm(attr):
        def f(flag, v):
            x = _num(flag, v[0])
            if x <= 0:
                raise UsageError(f"{flag}: sample size must be positive (mm), got {v[0]!r}")
            setattr(s, attr, x / 1000.0)
        return f

    def divergence(flag, v):
        d.hdivrange = d.vdivrange = _num(flag, v[0]) / 1000.0

    def divsteps(flag, v):
        d.hdivsteps = d.vdivsteps = _int(flag, v[0])

    T = [
        (("-stol",), 1, stol("stol")), (("-4stol",), 1, stol("4stol")), (("-Q",), 1, stol("Q")),
        (("-samplesize", "-sample_size"), 1, samplesize),
        (("-sample_thick", "-sample_x", "-thick", "-thickness"), 1, nonneg_mm("thickness")),
        (("-sample_width", "-sample_y", "-width"), 1, nonneg_mm("width")),
        (("-sample_height", "-sample_heigh", "-sample_z", "-height", "-heigh"), 1,
         nonneg_mm("height")),
        (("-density", "-sample_density", "-sample_den"), 1,
         lambda f, v: setattr(s, "density", _num(f, v[0]) * 1e6)),
        (("-molecules", "-sample_molecules"), 1, val("molecules", s)),
        (("-MW", "-molecular_weight", "-molecular"), 1, pos("-MW", "molecular_weight",
                                                           "the molecular weight")),
        (("-Xbeam",), 1, mm("Xbeam", pivot="BEAM")), (("-Ybeam",), 1, mm("Ybeam", pivot="BEAM")),
        (("-Xclose",), 1, mm("Xclose", pivot="SAMPLE")),
        (("-Yclose",), 1, mm("Yclose", pivot="SAMPLE")),
        (("-ORGX",), 1, val("ORGX", d, pivot="SAMPLE")),
        (("-ORGY",), 1, val("ORGY", d, pivot="SAMPLE")),
        (("-pivot",), 1, pivot),
        (("-fdet_vector",), 3, vec("fdet")), (("-sdet_vector",), 3, vec("sdet")),
        (("-beam_vector",), 3, vec("beam")), (("-polar_vector",), 3, vec("polar")),
        (("-twotheta_axis",), 3, vec("twotheta_axis")),
        (("-odet_vector", "-spindle_axis", "-pix0_vector"), 3, note),
        (("-distance",), 1, mm("distance", pivot="BEAM")),
        (("-close_distance",), 1, mm("close_distance", pivot="SAMPLE")),
        (("-source_distance",), 1, lambda f, v: setattr(a, "source_distance",
                                                         _num(f, v[0]) / 1000.0)),
        (("-twotheta",), 1, val("twotheta", d, scale=1.0 / RTD, pivot="SAMPLE")),
        (("-detector_rotx",), 1, val("rotx", d, scale=1.0 / RTD)),
        (("-detector_roty",), 1, val("roty", d, scale=1.0 / RTD)),
        (("-detector_rotz",), 1, val("rotz", d, scale=1.0 / RTD)),
        (("-detsize",), 1, detsize), (("-detsize_x",), 1, mm("detsize_x")),
        (("-detsize_y",), 1, mm("detsize_y")),
        (("-detpixels",), 1, detpixels("both")),
        (("-detpixels_f", "-detpixels_x"), 1, detpixels("f")),
        (("-detpixels_s", "-detpixels_y"), 1, detpixels("s")),
        (("-curved_det", "-curved_detector"), 0, setflag(d, "curved", True)),
        (("-pixel",), 1, mm("pixel_size")),
        (("-point_pixel",), 0, setflag(d, "point_pixel", True)),
        (("-Fmap",), 0, setflag(a, "fmap", True)),
        (("-polar",), 1, polar), (("-nopolar",), 0, setflag(s, "nopolar", True)),
        (("-oversample",), 1, oversample), (("-roi",), 4, roi),
        (("-lambda", "-wave", "-wavelength"), 1, wavelength), (("-energy",), 1, energy),
        (("-fluence",), 1, val("fluence", s)), (("-flux",), 1, val("flux", s)),
        (("-exposure",), 1, val("exposure", s)),
        (("-beamsize",), 1, lambda f, v: setattr(s, "beamsize", _num(f, v[0]) / 1000.0)),
        (("-dispersion",), 1, val("dispersion", d, scale=1.0 / 100.0)),
        (("-dispsteps",), 1, val("dispsteps", d, conv=_int)),
        (("-divergence",), 1, divergence),
        (("-hdivrange",), 1, val("hdivrange", d, scale=1.0 / 1000.0)),
        (("-vdivrange",), 1, val("vdivrange", d, scale=1.0 / 1000.0)),
        (("-hdivstep",), 1, val("hdivstep", d, scale=1.0 / 1000.0)),
        (("-vdivstep",), 1, val("vdivstep", d, scale=1.0 / 1000.0)),
        (("-hdivsteps",), 1, val("hdivsteps", d, conv=_int)),
        (("-vdivsteps",), 1, val("vdivsteps", d, conv=_int)),
        (("-divsteps",), 1, divsteps),
        (("-round_div",), 0, setflag(d, "round_div", True)),
        (("-square_div",), 0, setflag(d, "round_div", False)),
        (("-adc",), 1, val("adc", a)),
        (("-phi",), 1, lambda f, v: setattr(a, "phi0", _num(f, v[0]) / RTD)),
        (("-osc",), 1, lambda f, v: setattr(a, "osc", _num(f, v[0]) / RTD)),
        (("-sourcefile",), 1, lambda f, v: setattr(a, "sourcefile", v[0])),
        (("-floatfile", "-floatimage"), 1, lambda f, v: setattr(a, "floatfile", v[0])),
        (("-intfile", "-intimage"), 1, lambda f, v: setattr(a, "intfile", v[0])),
        (("-pgmfile", "-pgmimage"), 1, lambda f, v: setattr(a, "pgmfile", v[0])),
        (("-noisefile", "-noiseimage"), 1, lambda f, v: setattr(a, "noisefile", v[0])),
        (("-nonoise",), 0, setflag(a, "nonoise", True)),
        (("-nopgm",), 0, setflag(a, "write_pgm", False)),
        (("-scale",), 1, val("intfile_scale", a)), (("-pgmscale",), 1, val("pgm_scale", a)),
        (("-seed",), 1, seed),
        (("-noprogress", "-progress", "-printout", "-coherent", "-noreject"), 0, note),
        (("-printout_pixel",), 2, note),
        (("-gain", "-ignore", "-phistep", "-phisteps"), 1, note),
        (("-img", "-stolout"), 1, refuse),
        (("-device",), 1, device),
    ]
    table = {}
    for names, n, fn in T:
        for nm in names:
            table[nm] = (n, fn)
    argv = list(argv)
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok not in table:
            if tok.startswith("-"):
                raise UsageError(f"{tok}: unknown flag (nbsim-nonbragg -h lists them)")
            raise UsageError(f"{tok!r}: unexpected argument")
        n, fn = table[tok]
        vals = argv[i + 1:i + 1 + n]
        if len(vals) < n:
            raise UsageError(f"{tok}: needs {n} value{'s' if n > 1 else ''}")
        fn(tok, vals)
        i += 1 + n
    if a.stol is None:
        raise UsageError("no structure factors: give -stol FILE (sin(theta)/lambda and F)")
    a.noise = not a.nonoise
    return a, d, s


def smv_header(geom, lambda0, phi0, osc, twotheta) -> bytes:
    """nonBragg.c's SMV header (512 bytes)."""
    p = geom.pixel_size
    h = ("{\nHEADER_BYTES=512;\nDIM=2;\nBYTE_ORDER=little_endian;\nTYPE=unsigned_short;\n"
         "SIZE1=%d;\nSIZE2=%d;\nPIXEL_SIZE=%s;\nDISTANCE=%s;\n" % (
             geom.fpixels, geom.spixels, c_g(p * 1000.0), c_g(geom.distance * 1000.0)))
    h += "WAVELENGTH=%s;\n" % c_g(lambda0 * 1e10)
    h += "BEAM_CENTER_X=%s;\nBEAM_CENTER_Y=%s;\n" % (
        c_g(geom.Xbeam * 1000.0), c_g((geom.detsize_y - geom.Ybeam) * 1000))
    h += "ORGX=%s;\nORGY=%s;\n" % (c_g(geom.Xclose / p), c_g(geom.Yclose / p))
    h += "CLOSE_DISTANCE=%s;\n" % c_g(geom.close_distance * 1000.0)
    h += "PHI=%s;\nOSC_START=%s;\nOSC_RANGE=%s;\n" % (c_g(phi0 * RTD), c_g(phi0 * RTD),
                                                     c_g(osc * RTD))
    h += "TWOTHETA=%s;\n" % c_g(twotheta * RTD)
    h += "DETECTOR_SN=000;\nBEAMLINE=fake;\n}\f"
    b = h.encode("latin-1")
    return b + b" " * max(0, 512 - len(b))


def run(argv: Sequence[str], out=None) -> int:
    from ..amorphous import amorphous_image, read_stol, resolve_nonbragg_geometry
    from ..geometry.rotations import unitize
    from ..io.errors import FormatError
    from ..io.sources import read_sources
    from ..noise import noise_image
    out = out or sys.stdout
    a, d, s = parse(argv)
    try:
        table = read_stol(a.stol, a.stol_flavour)
    except FormatError as e:
        raise UsageError(f"-stol {e}")
    if a.sourcefile is not None:
        beam_u, _ = unitize(np.asarray(d.beam, dtype=np.float64))
        try:
            st = read_sources(a.sourcefile, beam_vector=beam_u,
                              source_distance=a.source_distance, lambda0=d.wavelength)
        except FormatError as e:
            raise UsageError(f"-sourcefile {e}")
        d.sources = np.stack([st.x, st.y, st.z, st.weight, st.wavelength], axis=1)
    geom = resolve_nonbragg_geometry(d)
    if geom.fpixels <= 0 or geom.spixels <= 0:
        raise UsageError(f"detector has no pixels ({geom.fpixels}x{geom.spixels})")
    outputs = [("-floatfile", a.floatfile), ("-intfile", a.intfile)]
    if a.write_pgm:
        outputs.append(("-pgmfile", a.pgmfile))
    if a.noise:
        outputs.append(("-noisefile", a.noisefile))
    for flag, path in outputs:
        _check_writable(path, flag)
    for n in a.notes:
        print(f"nbsim-nonbragg: note: {n}", file=sys.stderr)
    fluence, molecules, sy, sz, density, notes = s.resolved()
    pr = lambda t="": print(t, file=out)  # noqa: E731
    pr("nonBragg amorphous material diffraction simulator - nbsim")
    for n in notes:
        pr("WARNING: " + n)
    pr("  created a total of %d sources:" % len(geom.wavelengths))
    pr("  %d initialized F points (will cubic-spline interpolate between them)"
       % table.stol.size)
    pr("  incident fluence: %s photons/m^2" % c_g(fluence))
    pr("  sample is %s m thick x %s m high x %s m wide, %s g/cm^3 and %s g/mol (%s molecules)"
       % (c_g(s.thickness), c_g(sy), c_g(sz), c_g(density / 1e6), c_g(s.molecular_weight),
          c_g(molecules)))
    pr("  distance=%s detsize=%sx%s  pixel=%s meters (%dx%d pixels)" % (
        c_g(geom.distance), c_g(geom.detsize_x), c_g(geom.detsize_y), c_g(geom.pixel_size),
        geom.fpixels, geom.spixels))
    pr("  Xbeam=%s Ybeam=%s" % (c_g(geom.Xbeam), c_g(geom.Ybeam)))
    pr("  detector origin: %s %s %s" % tuple(c_g(v) for v in geom.pix0))
    img = amorphous_image(geom, table, s, device=a.device, fmap=a.fmap)
    r = geom.roi
    win = (slice(max(r[2], 0), r[3] + 1), slice(max(r[0], 0), r[1] + 1))
    roi_vals = img[win].astype(np.float64)
    max_I = max(0.0, float(roi_vals.max())) if roi_vals.size else 0.0
    avg = float(roi_vals.mean()) if roi_vals.size else 0.0
    rmsd = float(np.sqrt(((roi_vals - avg) ** 2).sum() / max(roi_vals.size - 1, 1)))
    pr("max_I = %s" % c_g(max_I))
    intfile_scale = a.intfile_scale
    if intfile_scale <= 0.0:
        intfile_scale = 55000.0 / max_I if max_I > 0.0 else 1.0
    pr("intfile_scale = %s" % c_g(intfile_scale))
    test = img.astype(np.float64) * intfile_scale + a.adc
    test = np.clip(test, 0.0, 65535.0)
    ints = np.floor((test + 0.5).astype(np.float32)).astype(np.uint16)
    mask = np.zeros(img.shape, dtype=bool)
    mask[win] = True
    ints[~mask] = 0
    lambda0 = d.wavelength
    osc = a.osc if a.osc >= 0 else 0.0
    hdr = smv_header(geom, lambda0, a.phi0, osc, geom.twotheta)
    files = [(a.floatfile, img.astype("<f4").tobytes()),
             (a.intfile, hdr + ints.astype("<u2").tobytes())]
    if a.write_pgm:
        pgm_scale = a.pgm_scale
        if pgm_scale <= 0.0:
            pgm_scale = 250.0 / (5.0 * rmsd) if rmsd > 0.0 else intfile_scale
        pr("pgm_scale = %s" % c_g(pgm_scale))
        from ..io.pgm import pgm_header, pgm_image
        pix = pgm_image(img, pgm_scale, (r[0], r[1], r[2], r[3]))
        files.append((a.pgmfile, pgm_header(geom.fpixels, geom.spixels, pgm_scale)
                      + pix.tobytes()))
    if a.noise:
        seed = a.seed if a.seed is not None else -int(__import__("time").time())
        pr("  seed: %d" % seed)
        nres = noise_image(img, idum=seed, adc_offset=a.adc, roi=(r[0], r[1], r[2], r[3]))
        pr(nres.message)
        files.append((a.noisefile, hdr + nres.image.astype("<u2").tobytes()))
    _write_all(files)
    for path, _ in files:
        pr("writing %s" % path)
    return 0


_HELP = """usage: nbsim-nonbragg -stol water.stol [options]
  -stol FILE        sin(theta)/lambda (1/A) and F of one molecule  (-4stol FILE, -Q FILE)
  -thickness MM     sample thickness along the beam (-samplesize MM: a cube)  -width MM -height MM
  -density G/CC     sample density (1)        -MW G/MOL  molecular weight (18)   -molecules N
  -fluence PH/M2    integrated beam (unity scale)   -flux PH/S -exposure S -beamsize MM
  -lambda A | -energy EV   -dispersion PCT -dispsteps N   -divergence MRAD -hdivrange -vdivrange
  -hdivstep -vdivstep -hdivsteps -vdivsteps -divsteps -round_div -square_div -sourcefile FILE
  -distance MM -close_distance MM -detsize MM -detpixels N -pixel MM -Xbeam MM -Ybeam MM
  -Xclose MM -Yclose MM -ORGX PX -ORGY PX -pivot beam|sample -twotheta DEG -detector_rotx/y/z DEG
  -fdet_vector X Y Z -sdet_vector X Y Z -beam_vector X Y Z -polar_vector X Y Z -twotheta_axis X Y Z
  -curved_det -point_pixel -oversample N -roi XMIN XMAX YMIN YMAX -polar K -nopolar -Fmap
  -floatfile F -intfile F -pgmfile F -noisefile F -nopgm -nonoise -scale S -pgmscale S -adc A -seed N
  -device cpu|cuda  (nbsim)
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    return tool_main("nbsim-nonbragg", _HELP, run, argv)


def console() -> None:
    """The console script's entry point: :func:`main`, then a quick exit
    (:mod:`nbsim.cli._exit`)."""
    from ._exit import exit_now
    exit_now(main())


if __name__ == "__main__":
    console()


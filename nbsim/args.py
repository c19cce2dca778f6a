"""nanoBragg's command-line flags -> :class:`Config` (+ output requests).

One declarative table holds every flag nanoBragg.c main parses (l.405-1111), with its
synonyms, arity, units, default and help.  Flags are matched exactly (C's ``strstr``
substring matching is not reproduced); unknown flags are refused.  Values are converted
to SI units here, with C's arithmetic (e.g. degrees / RTD), and nowhere else.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .config import Config
from .errors import ConfigError
from .units import RTD


class ArgError(ValueError):
    """A command-line problem; the message names the flag (or file) and what is wrong."""


@dataclass
class Outputs:
    floatfile: str = "floatimage.bin"
    intfile: str = "intimage.img"
    pgmfile: str = "image.pgm"
    noisefile: str = "noiseimage.img"
    dumpfile: str = "Fdump.bin"
    write_pgm: bool = True
    calculate_noise: bool = True
    intfile_scale: float = 0.0
    pgm_scale: float = 0.0
    adc_offset: float = 40.0
    printout: bool = False
    printout_pixel: Optional[Tuple[int, int]] = None
    progress: bool = True
    write_dump: bool = False       # an -hkl file was read: write Fdump.bin as C does
    stol_inputs: List[str] = field(default_factory=list)


@dataclass
class ParsedArgs:
    config: Config
    outputs: Outputs
    threads: Optional[int] = None
    notes: List[str] = field(default_factory=list)
    hkl_file: Optional[str] = None
    mat_file: Optional[str] = None
    used_dump: Optional[str] = None
    pivot_requests: List[str] = field(default_factory=list)


@dataclass
class Flag:
    names: Tuple[str, ...]
    nargs: int
    kind: str            # 'float', 'int', 'str', 'none', 'vec3', special
    units: str
    default: str
    help: str
    apply: Callable


def _num(flag, text, kind="float"):
    try:
        if kind == "int":
            v = float(text)
            if v != int(v):
                raise ValueError
            return int(v)
        v = float(text)
    except (TypeError, ValueError):
        raise ArgError(f"{flag}: expected {'an integer' if kind == 'int' else 'a number'}, "
                       f"got {text!r}") from None
    if not math.isfinite(v):
        raise ArgError(f"{flag}: value {text!r} is not finite")
    return v


class _State:
    """C's variables while parsing, in C's internal units (metres, radians)."""

    def __init__(self):
        self.cfg = Config()
        self.out = Outputs()
        self.threads = None
        self.pivot = None          # C's detector_pivot as parsing leaves it
        self.convention = "MOSFLM"
        self.hkl = None
        self.mat = None
        self.sourcefile = None
        self.mask = None
        self.img = None
        self.misset_random = False
        self.pix0 = None
        self.pix0_mm = False
        self.notes = []
        self.pivot_requests = []
        self.N_given = {}
        self.cell_partial = None


def _set(path, conv=lambda v: v):
    def apply(st, flag, vals):
        obj = st.cfg
        parts = path.split(".")
        for p in parts[:-1]:
            obj = getattr(obj, p)
        setattr(obj, parts[-1], conv(vals[0]) if len(vals) == 1 else conv(vals))
    return apply


def _set_out(attr, value=None, conv=lambda v: v):
    def apply(st, flag, vals):
        setattr(st.out, attr, value if value is not None else conv(vals[0]))
    return apply


def _pivot(p):
    def apply(st, flag, vals):
        st.pivot = p
        st.pivot_requests.append(flag)
    return apply


def _chain(*fs):
    def apply(st, flag, vals):
        for f in fs:
            f(st, flag, vals)
    return apply


def _convention(name, pivot):
    def apply(st, flag, vals):
        st.convention = name
        st.pivot = pivot
    return apply


def _vector(target):
    def apply(st, flag, vals):
        st.convention = "CUSTOM"
        obj = st.cfg
        parts = target.split(".")
        for p in parts[:-1]:
            obj = getattr(obj, p)
        setattr(obj, parts[-1], tuple(float(v) for v in vals))
    return apply


def _pix0(mm):
    def apply(st, flag, vals):
        st.convention = "CUSTOM"
        st.pix0 = tuple(float(v) for v in vals)
        st.pix0_mm = mm
    return apply


def _cell(st, flag, vals):
    a, b, c, al, be, ga = vals
    st.cfg.crystal.cell = (a * 1e-10, b * 1e-10, c * 1e-10, al / RTD, be / RTD, ga / RTD)


def _misset(st, flag, vals):
    if len(vals) == 1:
        st.misset_random = True
        st.cfg.crystal.misset = None
    else:
        st.misset_random = False
        st.cfg.crystal.misset = tuple(v / RTD for v in vals)


def _N(which):
    def apply(st, flag, vals):
        n = float(int(vals[0]))
        for w in which:
            setattr(st.cfg.crystal, "N" + w, n)
            st.N_given[w] = n
    return apply


def _sample(axes, scale=1e-3):
    def apply(st, flag, vals):
        for a in axes:
            setattr(st.cfg.crystal, "sample_" + a, vals[0] * scale)
    return apply


def _detector_abs(st, flag, vals):
    text = vals[0]
    if "inf" in text:
        st.cfg.detector.thick = 0.0
        st.cfg.detector.mu = 0.0
        return
    v = _num(flag, text)
    if v == 0.0:
        st.cfg.detector.thick = 0.0
        st.cfg.detector.mu = 0.0
    else:
        st.cfg.detector.mu = 1.0 / (v * 1e-6)


def _detsize(which):
    def apply(st, flag, vals):
        for w in which:
            setattr(st.cfg.detector, "detsize_" + w, vals[0] / 1000.0)
    return apply


def _detpixels(which):
    def apply(st, flag, vals):
        for w in which:
            setattr(st.cfg.detector, w + "pixels", int(vals[0]))
    return apply


def _energy(st, flag, vals):
    if vals[0] == 0.0:
        raise ArgError(f"{flag}: photon energy must be nonzero")
    st.cfg.beam.wavelength = (12398.42 / vals[0]) / 1.0e10


def _mosaic(st, flag, vals):
    st.cfg.crystal.mosaic_spread = vals[0] / RTD


def _divergence(st, flag, vals):
    st.cfg.beam.hdivrange = st.cfg.beam.vdivrange = vals[0] / 1000.0


def _divsteps(st, flag, vals):
    st.cfg.beam.hdivsteps = st.cfg.beam.vdivsteps = int(vals[0])


def _roi(st, flag, vals):
    st.cfg.detector.roi = tuple(int(v) for v in vals)


def _shape(name):
    def apply(st, flag, vals):
        st.cfg.crystal.shape = name
    return apply


def _file(attr):
    def apply(st, flag, vals):
        setattr(st, attr, vals[0])
    return apply


def _noisefile(st, flag, vals):
    st.out.noisefile = vals[0]
    st.out.calculate_noise = True


def _pgmfile(st, flag, vals):
    st.out.pgmfile = vals[0]
    st.out.write_pgm = True


def _pgmscale(st, flag, vals):
    st.out.pgm_scale = vals[0]
    st.out.write_pgm = True


def _printout_pixel(st, flag, vals):
    st.out.printout = True
    st.out.printout_pixel = (int(vals[0]), int(vals[1]))


def _ignored(st, flag, vals):
    st.notes.append(f"{flag} is accepted for compatibility; it changes nothing in the image")


def _mode(st, flag, vals):
    st.cfg.mode = "c-parity"


def _device(st, flag, vals):
    if vals[0] not in ("cpu", "cuda", "auto"):
        raise ArgError(f"{flag}: expected cpu, cuda or auto, got {vals[0]!r}")
    st.cfg.device = vals[0]


def _dtype(st, flag, vals):
    if vals[0] not in ("float64", "float32"):
        raise ArgError(f"{flag}: expected float64 or float32, got {vals[0]!r}")
    st.cfg.dtype = vals[0]


def _threads(st, flag, vals):
    if vals[0] < 1:
        raise ArgError(f"{flag}: needs at least 1 thread")
    st.threads = int(vals[0])


def _seed(attr):
    def apply(st, flag, vals):
        if attr == "seed":
            st.cfg.seed = int(vals[0])
        else:
            setattr(st.cfg.crystal, attr, int(vals[0]))
    return apply


def _mm(path):
    return _set(path, lambda v: v / 1000.0)


def _deg(path):
    return _set(path, lambda v: v / RTD)


F, I, S, N0, V3 = "float", "int", "str", "none", "vec3"

FLAGS: List[Flag] = [
    # crystal
    Flag(("-cell",), 6, F, "A, deg", "none", "unit cell a b c alpha beta gamma", _cell),
    Flag(("-mat",), 1, S, "file", "none", "MOSFLM A matrix (reciprocal vectors x lambda)", _file("mat")),
    Flag(("-misset",), -1, S, "deg", "0 0 0", "crystal rotation about x, y, z; or 'random'", _misset),
    Flag(("-N",), 1, I, "cells", "1", "number of unit cells along a, b and c", _N("abc")),
    Flag(("-Na",), 1, I, "cells", "1", "number of unit cells along a", _N("a")),
    Flag(("-Nb",), 1, I, "cells", "1", "number of unit cells along b", _N("b")),
    Flag(("-Nc",), 1, I, "cells", "1", "number of unit cells along c", _N("c")),
    Flag(("-xtalsize", "-xtal_size", "-samplesize", "-sample_size"), 1, F, "mm", "0",
         "crystal full width (sets N along a, b, c)", _sample("xyz")),
    Flag(("-xtal_thick", "-xtal_x", "-sample_thick", "-sample_x"), 1, F, "mm", "0",
         "crystal size along x (sets Na)", _sample("x")),
    Flag(("-xtal_width", "-xtal_y", "-sample_width", "-sample_y", "-width"), 1, F, "mm", "0",
         "crystal size along y (sets Nb)", _sample("y")),
    Flag(("-xtal_height", "-xtal_z", "-sample_height", "-sample_z", "-height"), 1, F, "mm", "0",
         "crystal size along z (sets Nc)", _sample("z")),
    Flag(("-density", "-sample_density"), 1, F, "g/cm^3", "1", "sample density (printed only)", _ignored),
    Flag(("-MW", "-molecular_weight", "-molecules"), 1, F, "g/mol", "18", "molecular weight (printed only)", _ignored),
    Flag(("-square_xtal",), 0, N0, "", "on", "parallelepiped crystal (sincg lattice factor)", _shape("SQUARE")),
    Flag(("-round_xtal",), 0, N0, "", "off", "ellipsoidal crystal (sinc3)", _shape("ROUND")),
    Flag(("-gauss_xtal",), 0, N0, "", "off", "Gaussian spots", _shape("GAUSS")),
    Flag(("-tophat_spots", "-binary_spots"), 0, N0, "", "off", "flat-top spots clipped at FWHM", _shape("TOPHAT")),
    Flag(("-fudge",), 1, F, "", "1", "spot-size fudge factor for round/gauss/tophat", _set("crystal.fudge")),
    Flag(("-mosaic", "-mosaicity", "-mosaic_spread"), 1, F, "deg", "0", "isotropic mosaic spread", _mosaic),
    Flag(("-mosaic_domains", "-mosaic_dom"), 1, I, "", "10 if a spread is given", "number of mosaic domains", _set("crystal.mosaic_domains", int)),
    Flag(("-mosaic_seed",), 1, I, "", "12345678", "seed of the mosaic-domain generator", _seed("mosaic_seed")),
    Flag(("-misset_seed",), 1, I, "", "clock", "seed of -misset random", _seed("misset_seed")),
    Flag(("-phi",), 1, F, "deg", "0", "starting spindle rotation", _deg("crystal.phi0")),
    Flag(("-osc",), 1, F, "deg", "auto", "spindle rotation range", _deg("crystal.osc")),
    Flag(("-phistep",), 1, F, "deg", "auto", "spindle step", _deg("crystal.phistep")),
    Flag(("-phisteps",), 1, I, "", "auto", "number of spindle steps", _set("crystal.phisteps", int)),
    Flag(("-spindle_axis",), 3, V3, "vector", "0 0 1", "spindle rotation axis (selects CUSTOM)", _vector("crystal.spindle_axis")),
    # structure factors
    Flag(("-hkl",), 1, S, "file", "none", "structure factors: text 'h k l F' per line", _file("hkl")),
    Flag(("-default_F",), 1, F, "electrons", "0", "F of every reflection not in -hkl", _set("structure.default_F")),
    Flag(("-dumpfile", "-dump"), 1, S, "file", "Fdump.bin", "binary cache of the -hkl grid", _set_out("dumpfile")),
    Flag(("-interpolate",), 0, N0, "", "auto (on if any N <= 2)", "tricubic interpolation of F", _set("structure.interpolate", lambda v: True)),
    Flag(("-nointerpolate",), 0, N0, "", "auto", "nearest-neighbour F", _set("structure.interpolate", lambda v: False)),
    # beam
    Flag(("-lambda", "-wavelength", "-wave"), 1, F, "A", "1", "X-ray wavelength", _set("beam.wavelength", lambda v: v / 1.0e10)),
    Flag(("-energy",), 1, F, "eV", "12398.42", "X-ray photon energy", _energy),
    Flag(("-fluence",), 1, F, "photons/m^2", "1.259e29", "integrated incident fluence", _set("beam.fluence")),
    Flag(("-flux",), 1, F, "photons/s", "0", "flux (with -exposure and -beamsize sets fluence)", _set("beam.flux")),
    Flag(("-exposure",), 1, F, "s", "1", "exposure time", _set("beam.exposure")),
    Flag(("-beamsize",), 1, F, "mm", "0.1", "beam size (also clips the crystal)", _mm("beam.beamsize")),
    Flag(("-dispersion",), 1, F, "%", "0", "spectral width delta-lambda/lambda", _set("beam.dispersion", lambda v: v / 100.0)),
    Flag(("-dispsteps",), 1, I, "", "auto", "number of wavelengths", _set("beam.dispsteps", int)),
    Flag(("-divergence",), 1, F, "mrad", "0", "horizontal and vertical divergence range", _divergence),
    Flag(("-hdivrange",), 1, F, "mrad", "0", "horizontal divergence range", _set("beam.hdivrange", lambda v: v / 1000.0)),
    Flag(("-vdivrange",), 1, F, "mrad", "0", "vertical divergence range", _set("beam.vdivrange", lambda v: v / 1000.0)),
    Flag(("-hdivstep",), 1, F, "mrad", "auto", "horizontal divergence step", _set("beam.hdivstep", lambda v: v / 1000.0)),
    Flag(("-vdivstep",), 1, F, "mrad", "auto", "vertical divergence step", _set("beam.vdivstep", lambda v: v / 1000.0)),
    Flag(("-hdivsteps",), 1, I, "", "auto", "number of horizontal divergence steps", _set("beam.hdivsteps", int)),
    Flag(("-vdivsteps",), 1, I, "", "auto", "number of vertical divergence steps", _set("beam.vdivsteps", int)),
    Flag(("-divsteps",), 1, I, "", "auto", "divergence steps, both directions", _divsteps),
    Flag(("-round_div",), 0, N0, "", "on", "cut the divergence grid to an ellipse", _set("beam.round_div", lambda v: True)),
    Flag(("-square_div",), 0, N0, "", "off", "full rectangular divergence grid", _set("beam.round_div", lambda v: False)),
    Flag(("-sourcefile",), 1, S, "file", "none", "sources: X Y Z weight lambda per line (m)", _file("sourcefile")),
    Flag(("-beam_vector",), 3, V3, "vector", "1 0 0", "beam direction (selects CUSTOM)", _vector("beam.beam_vector")),
    Flag(("-polar_vector",), 3, V3, "vector", "0 0 1", "E-vector of the beam (selects CUSTOM)", _vector("beam.polar_vector")),
    Flag(("-polar",), 1, F, "", "0 (unpolarized)", "Kahn polarization factor", _set("beam.polarization")),
    Flag(("-nopolar",), 0, N0, "", "off", "no polarization correction", _set("beam.nopolar", lambda v: True)),
    # detector
    Flag(("-distance",), 1, F, "mm", "100", "sample to beam spot on the detector (beam pivot)", _chain(_mm("detector.distance"), _pivot("BEAM"))),
    Flag(("-close_distance",), 1, F, "mm", "auto", "sample to nearest detector point (sample pivot)", _chain(_mm("detector.close_distance"), _pivot("SAMPLE"))),
    Flag(("-detsize",), 1, F, "mm", "102.4", "detector size, both directions", _detsize("fs")),
    Flag(("-detsize_f", "-detsize_x"), 1, F, "mm", "102.4", "detector size along fast axis", _detsize("f")),
    Flag(("-detsize_s", "-detsize_y"), 1, F, "mm", "102.4", "detector size along slow axis", _detsize("s")),
    Flag(("-detpixels",), 1, I, "pixels", "1024", "detector size in pixels, both directions", _detpixels("fs")),
    Flag(("-detpixels_f", "-detpixels_x"), 1, I, "pixels", "1024", "pixels along the fast axis", _detpixels("f")),
    Flag(("-detpixels_s", "-detpixels_y"), 1, I, "pixels", "1024", "pixels along the slow axis", _detpixels("s")),
    Flag(("-pixel",), 1, F, "mm", "0.1", "pixel size", _mm("detector.pixel_size")),
    Flag(("-Xbeam",), 1, F, "mm", "centre", "beam centre, image X (beam pivot)", _chain(_mm("detector.beam_center_x"), _pivot("BEAM"))),
    Flag(("-Ybeam",), 1, F, "mm", "centre", "beam centre, image Y (beam pivot)", _chain(_mm("detector.beam_center_y"), _pivot("BEAM"))),
    Flag(("-Xclose",), 1, F, "mm", "centre", "nearest point, image X (sample pivot)", _chain(_mm("detector.xclose"), _pivot("SAMPLE"))),
    Flag(("-Yclose",), 1, F, "mm", "centre", "nearest point, image Y (sample pivot)", _chain(_mm("detector.yclose"), _pivot("SAMPLE"))),
    Flag(("-ORGX",), 1, F, "pixels", "centre", "XDS origin, fast (sample pivot)", _chain(_set("detector.orgx"), _pivot("SAMPLE"))),
    Flag(("-ORGY",), 1, F, "pixels", "centre", "XDS origin, slow (sample pivot)", _chain(_set("detector.orgy"), _pivot("SAMPLE"))),
    Flag(("-pivot",), 1, S, "beam|sample", "convention", "detector pivot (CUSTOM only)", None),
    Flag(("-mosflm",), 0, N0, "", "on", "MOSFLM convention (beam pivot)", _convention("MOSFLM", "BEAM")),
    Flag(("-xds",), 0, N0, "", "off", "XDS convention (sample pivot)", _convention("XDS", "SAMPLE")),
    Flag(("-adxv",), 0, N0, "", "off", "ADXV convention (beam pivot)", _convention("ADXV", "BEAM")),
    Flag(("-denzo",), 0, N0, "", "off", "DENZO convention (beam pivot)", _convention("DENZO", "BEAM")),
    Flag(("-dials",), 0, N0, "", "off", "DIALS convention (sample pivot)", _convention("DIALS", "BEAM")),
    Flag(("-fdet_vector",), 3, V3, "vector", "0 0 1", "fast-axis direction (selects CUSTOM)", _vector("detector.fdet_vector")),
    Flag(("-sdet_vector",), 3, V3, "vector", "0 -1 0", "slow-axis direction (selects CUSTOM)", _vector("detector.sdet_vector")),
    Flag(("-odet_vector",), 3, V3, "vector", "1 0 0", "detector normal (selects CUSTOM)", _vector("detector.odet_vector")),
    Flag(("-twotheta_axis",), 3, V3, "vector", "0 0 -1", "two-theta rotation axis (selects CUSTOM)", _vector("detector.twotheta_axis")),
    Flag(("-pix0_vector",), 3, V3, "m", "derived", "lab position of the first pixel (selects CUSTOM)", _pix0(False)),
    Flag(("-pix0_vector_mm",), 3, V3, "mm", "derived", "lab position of the first pixel in mm (selects CUSTOM)", _pix0(True)),
    Flag(("-detector_rotx",), 1, F, "deg", "0", "detector rotation about x", _deg("detector.rotx")),
    Flag(("-detector_roty",), 1, F, "deg", "0", "detector rotation about y", _deg("detector.roty")),
    Flag(("-detector_rotz",), 1, F, "deg", "0", "detector rotation about z", _deg("detector.rotz")),
    Flag(("-twotheta",), 1, F, "deg", "0", "detector two-theta swing (sample pivot)", _chain(_deg("detector.twotheta"), _pivot("SAMPLE"))),
    Flag(("-curved_det",), 0, N0, "", "off", "spherical detector: every pixel at the same distance", _set("detector.curved", lambda v: True)),
    Flag(("-point_pixel",), 0, N0, "", "off", "no pixel solid angle (1/R^2 only)", _set("detector.point_pixel", lambda v: True)),
    Flag(("-detector_abs", "-detector_absorb", "-detector_absorption"), 1, S, "um|inf", "inf", "sensor attenuation depth", _detector_abs),
    Flag(("-detector_thick",), 1, F, "um", "0", "sensor thickness", _set("detector.thick", lambda v: v * 1e-6)),
    Flag(("-detector_thicksteps", "-thicksteps"), 1, I, "", "auto", "number of sensor layers", _set("detector.thicksteps", int)),
    Flag(("-roi",), 4, I, "pixels", "whole detector", "render only xmin xmax ymin ymax", _roi),
    Flag(("-mask",), 1, S, "file", "none", "SMV image: pixels of value 0 are skipped (header read too)", _file("mask")),
    Flag(("-img",), 1, S, "file", "none", "SMV image whose header sets the detector", _file("img")),
    # sampling
    Flag(("-oversample",), 1, I, "", "auto", "sub-pixels per pixel edge", _set("sampling.oversample", int)),
    Flag(("-oversample_thick",), 0, N0, "", "off", "capture fraction per sub-pixel", _set("sampling.oversample_thick", lambda v: True)),
    Flag(("-oversample_polar",), 0, N0, "", "off", "polarization per sub-pixel", _set("sampling.oversample_polar", lambda v: True)),
    Flag(("-oversample_omega",), 0, N0, "", "off", "solid angle per sub-pixel", _set("sampling.oversample_omega", lambda v: True)),
    Flag(("-dmin",), 1, F, "A", "0", "skip scattering beyond this resolution", _set("sampling.dmin", lambda v: v * 1e-10)),
    Flag(("-water",), 1, F, "um", "0", "water background thickness", _set("sampling.water_size", lambda v: v / 1e6)),
    # output
    Flag(("-floatfile", "-floatimage"), 1, S, "file", "floatimage.bin", "raw float32 image", _set_out("floatfile")),
    Flag(("-intfile", "-intimage"), 1, S, "file", "intimage.img", "SMV image, scaled", _set_out("intfile")),
    Flag(("-pgmfile", "-pgmimage"), 1, S, "file", "image.pgm", "8-bit PGM image", _pgmfile),
    Flag(("-noisefile", "-noiseimage"), 1, S, "file", "noiseimage.img", "SMV image with Poisson noise", _noisefile),
    Flag(("-nonoise",), 0, N0, "", "off", "do not write the noise image", _set_out("calculate_noise", False)),
    Flag(("-nopgm",), 0, N0, "", "off", "do not write the PGM image", _set_out("write_pgm", False)),
    Flag(("-scale",), 1, F, "", "auto (55000/max)", "intfile scale", _set_out("intfile_scale")),
    Flag(("-pgmscale",), 1, F, "", "auto", "PGM scale", _pgmscale),
    Flag(("-adc",), 1, F, "ADU", "40", "offset added to SMV pixels", _set_out("adc_offset")),
    Flag(("-seed",), 1, I, "", "clock", "seed of the noise generator", _seed("seed")),
    Flag(("-printout",), 0, N0, "", "off", "print every pixel's details", _set_out("printout", True)),
    Flag(("-printout_pixel",), 2, I, "fast slow", "none", "print one pixel's scaling chain", _printout_pixel),
    Flag(("-noprogress",), 0, N0, "", "on", "no progress meter", _set_out("progress", False)),
    Flag(("-progress",), 0, N0, "", "on", "progress meter", _set_out("progress", True)),
    Flag(("-coherent",), 0, N0, "", "off", "accepted; nanoBragg.c does not use it", _ignored),
    Flag(("-stol",), 1, S, "file", "none", "accepted; nanoBragg.c reads it but it changes nothing", _ignored),
    Flag(("-4stol",), 1, S, "file", "none", "accepted; changes nothing", _ignored),
    Flag(("-Q",), 1, S, "file", "none", "accepted; changes nothing", _ignored),
    Flag(("-stolout",), 1, S, "file", "none", "accepted; nanoBragg.c never writes it", _ignored),
    # nbsim's own
    Flag(("-c_parity",), 0, N0, "", "off", "reproduce nanoBragg.c main bugs (phi=0 carryover, ...)", _mode),
    Flag(("-device",), 1, S, "cpu|cuda|auto", "cpu", "where to render", _device),
    Flag(("-dtype",), 1, S, "float64|float32", "float64", "arithmetic precision", _dtype),
    Flag(("-threads",), 1, I, "", "all cores", "CPU threads", _threads),
]


def _pivot_flag(st, flag, vals):
    v = vals[0]
    if "sample" in v:
        st.pivot = "SAMPLE"
    elif "beam" in v:
        st.pivot = "BEAM"
    else:
        raise ArgError(f"{flag}: expected 'beam' or 'sample', got {v!r}")
    st.pivot_requests.append(flag)


for _f in FLAGS:
    if _f.names[0] == "-pivot":
        _f.apply = _pivot_flag

FLAG_INDEX: Dict[str, Flag] = {n: f for f in FLAGS for n in f.names}


def _read_header(st, path, is_mask):
    from .io.smv import read_smv
    from .io.errors import FormatError
    try:
        header, image = read_smv(path)
    except FileNotFoundError:
        raise ArgError(f"{'-mask' if is_mask else '-img'}: cannot open {path}") from None
    except (FormatError, OSError, ValueError) as e:
        raise ArgError(f"{'-mask' if is_mask else '-img'}: {e}") from None
    vals = header["_c_values"]
    d = st.cfg.detector
    sp, fp = image.shape
    d.fpixels, d.spixels = fp, sp
    if vals.get("PIXEL_SIZE") is not None:
        d.pixel_size = vals["PIXEL_SIZE"] / 1000.0
    d.detsize_f = d.pixel_size * fp
    d.detsize_s = d.pixel_size * sp
    if vals.get("DISTANCE") is not None:
        d.distance = vals["DISTANCE"] / 1000.0
    if vals.get("CLOSE_DISTANCE") is not None:
        d.close_distance = vals["CLOSE_DISTANCE"] / 1000.0
    if vals.get("WAVELENGTH") is not None:
        st.cfg.beam.wavelength = vals["WAVELENGTH"] / 1e10
    if vals.get("BEAM_CENTER_X") is not None:
        d.beam_center_x = vals["BEAM_CENTER_X"] / 1000.0
    if vals.get("BEAM_CENTER_Y") is not None:
        y = vals["BEAM_CENTER_Y"] / 1000.0
        d.beam_center_y = (d.detsize_s - y) if is_mask else y
    if vals.get("ORGX") is not None:
        d.orgx = vals["ORGX"]
    if vals.get("ORGY") is not None:
        d.orgy = vals["ORGY"]
    if vals.get("PHI") is not None:
        st.cfg.crystal.phi0 = vals["PHI"] / RTD
    if vals.get("OSC_RANGE") is not None:
        st.cfg.crystal.osc = vals["OSC_RANGE"] / RTD
    if is_mask:
        d.mask = (image != 0).astype(np.uint8)


def tokenize(argv: Sequence[str]):
    """Split argv into (flag, values) pairs; raises ArgError for unknown flags or
    missing/invalid values."""
    out = []
    i = 0
    argv = list(argv)
    while i < len(argv):
        tok = argv[i]
        f = FLAG_INDEX.get(tok)
        if f is None:
            if tok in ("-h", "-help", "--help"):
                out.append(("-h", []))
                i += 1
                continue
            if tok.startswith("-"):
                raise ArgError(f"{tok}: unknown flag (see nbsim -h)")
            raise ArgError(f"{tok}: unexpected value with no flag before it")
        if f.nargs == -1:  # -misset: 'random' or three angles
            if i + 1 < len(argv) and argv[i + 1].startswith("rand"):
                out.append((tok, ["random"]))
                i += 2
                continue
            n = 3
        else:
            n = f.nargs
        vals = argv[i + 1:i + 1 + n]
        if len(vals) < n:
            raise ArgError(f"{tok}: needs {n} value{'s' if n > 1 else ''}")
        if f.kind in (F, V3) or (f.nargs == -1):
            vals = [_num(tok, v) for v in vals]
        elif f.kind == I:
            vals = [_num(tok, v, "int") for v in vals]
        out.append((tok, vals))
        i += 1 + n
    return out


def parse_args(argv: Sequence[str], *, read_files: bool = True) -> ParsedArgs:
    """Parse nanoBragg flags into a :class:`ParsedArgs` (Config in SI units + outputs)."""
    pairs = tokenize(argv)
    st = _State()
    # C reads -mask, then -img headers before any other flag (l.404-502)
    mask_file = [v[0] for f, v in pairs if f == "-mask"]
    img_file = [v[0] for f, v in pairs if f == "-img"]
    if mask_file and read_files:
        _read_header(st, mask_file[-1], True)
    if img_file and read_files:
        _read_header(st, img_file[-1], False)
    for flag, vals in pairs:
        if flag == "-h":
            continue
        FLAG_INDEX[flag].apply(st, flag, vals)

    cfg = st.cfg
    d = cfg.detector
    d.convention = st.convention
    d.pivot = st.pivot
    if st.pix0 is not None:
        scale = 1.0
        if st.pix0_mm and cfg.mode == "spec":
            scale = 1e-3
        d.pix0_vector = tuple(v * scale for v in st.pix0)
    cfg.crystal.misset_random = st.misset_random
    notes = list(st.notes)
    if d.convention != "CUSTOM" and st.pivot_requests:
        conv_pivot = "BEAM" if d.convention in ("MOSFLM", "DENZO", "ADXV") else "SAMPLE"
        if st.pivot != conv_pivot:
            notes.append(f"{d.convention} convention pivots about the "
                         f"{conv_pivot.lower()}: {', '.join(sorted(set(st.pivot_requests)))} "
                         f"does not change the pivot (as in nanoBragg.c)")

    out = st.out
    used_dump = None
    if read_files:
        if st.mat is not None:
            from .io.matrix import read_mosflm_matrix
            vecs = _load(read_mosflm_matrix, "-mat", st.mat)
            cfg.crystal.a_star_matrix = np.column_stack(vecs)
        if st.sourcefile is not None:
            from .io.sources import read_sources
            nan = float("nan")
            table = _load(lambda p: read_sources(p, beam_vector=(nan, nan, nan), lambda0=nan),
                          "-sourcefile", st.sourcefile)
            # missing columns stay NaN here: the geometry fills them from the resolved beam
            cfg.beam.sources = np.column_stack([table.x, table.y, table.z, table.weight,
                                                table.wavelength])
        if st.hkl is not None:
            from .io.hkl import read_hkl
            default_F = cfg.structure.default_F
            _apply_structure(cfg, _load(lambda p: read_hkl(p, default_F), "-hkl", st.hkl))
            out.write_dump = True
        elif os.path.exists(out.dumpfile):
            from .io.fdump import read_fdump
            _apply_structure(cfg, _load(read_fdump, "-dumpfile", out.dumpfile))
            used_dump = out.dumpfile
    if read_files:
        if cfg.structure.hkls == 0 and cfg.structure.default_F == 0.0:
            raise ArgError("-hkl: no structure factors (no -hkl file, no Fdump.bin, -default_F 0)")
        if cfg.crystal.cell is None and cfg.crystal.a_star_matrix is None:
            raise ArgError("-cell: no unit cell (give -cell a b c alpha beta gamma or -mat)")
    return ParsedArgs(config=cfg, outputs=out, threads=st.threads, notes=notes,
                      hkl_file=st.hkl, mat_file=st.mat, used_dump=used_dump,
                      pivot_requests=st.pivot_requests)


def _load(fn, flag, path):
    from .io.errors import FormatError
    try:
        return fn(path)
    except FileNotFoundError:
        raise ArgError(f"{flag}: cannot open {path}") from None
    except IsADirectoryError:
        raise ArgError(f"{flag}: {path} is a directory") from None
    except (FormatError, OSError, ValueError) as e:
        msg = str(e)
        raise ArgError(f"{flag}: {msg}" if str(path) in msg else f"{flag}: {path}: {msg}") from None


def _apply_structure(cfg: Config, grid):
    st = cfg.structure
    st.grid = grid.F
    st.h_min, st.k_min, st.l_min = grid.h_min, grid.k_min, grid.l_min
    st.h_range, st.k_range, st.l_range = grid.h_range, grid.k_range, grid.l_range
    st.hkls = grid.hkls


def usage() -> str:
    lines = ["usage: nbsim [flags]   (nanoBragg's flags; values in the units shown)", ""]
    for f in FLAGS:
        names = ", ".join(f.names)
        arity = "" if f.nargs == 0 else (" <random | x y z>" if f.nargs == -1 else
                                          " " + " ".join(["v"] * f.nargs))
        units = f" [{f.units}]" if f.units else ""
        lines.append(f"  {names}{arity}{units}  default: {f.default}")
        lines.append(f"        {f.help}")
    return "\n".join(lines)

"""nanoBragg's command-line flags -> :class:`Config` (+ output requests).

One declarative table (:data:`FLAGS`) holds every flag nanoBragg.c main parses
(nanoBragg.c l.405-1111), with its synonyms, arity, units, default and help, plus
nbsim's own flags.  Values are converted to SI units here, with C's arithmetic
(e.g. degrees / RTD), and nowhere else.

Differences from C's parser, on purpose:

* flags are matched exactly (C's ``strstr`` substring matching, which makes ``-seed``
  fire on ``-mosaic_seed`` or ``-twotheta`` on ``-twotheta_axis``, is not reproduced);
  the synonyms C's substrings were written for are listed explicitly;
* unknown flags, missing values and values that are not numbers are errors
  (:class:`ArgError`, whose message names the flag), where C would read ``atof`` garbage
  as 0;
* ``-nonoise`` wins over ``-noisefile`` whatever their order;
* flags C reads without any effect on the image (``-stolout``, ``-coherent``) are
  accepted with a note; ``-stol``/``-4stol``/``-Q`` (with ``-thickness``, ``-density``,
  ``-MW``) add nonBragg.c's amorphous background in the default mode and change nothing
  (a note) under ``-c_parity``, as in nanoBragg.c (:mod:`nbsim.suite`);
* noisify.c's detector-effect flags (``-psf``, ``-readout``, ``-flicker``,
  ``-calibration``, ``-calib_seed``, ``-gain``, ``-bits`` ...) make the noise image with
  noisify.c's chain (:mod:`nbsim.effects`).

What C does and nbsim keeps: the ``-mask`` then ``-img`` headers are read before every
other flag (the last ``-img``/``-mask`` given wins; ``-mask`` flips BEAM_CENTER_Y), later
flags override earlier ones, vector flags select the CUSTOM convention, the convention
decides the pivot after parsing (only CUSTOM honours ``-pivot``, ``-distance``,
``-close_distance``, ``-Xbeam``... requests), ``-pix0_vector_mm`` is read as metres in
c-parity mode (C's substring match) and as millimetres in the default mode.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .config import Config
from .errors import ArgError
from .units import RTD

__all__ = ["ArgError", "Outputs", "ParsedArgs", "Flag", "FLAGS", "FLAG_INDEX", "HELP_FLAGS",
           "tokenize", "parse_args", "usage", "flag_for_param"]


HELP_FLAGS = ("-h", "-help", "--help")


@dataclass
class Outputs:
    """What to write and print (C's output variables)."""
    floatfile: str = "floatimage.bin"
    intfile: str = "intimage.img"
    pgmfile: str = "image.pgm"
    noisefile: str = "noiseimage.img"
    dumpfile: str = "Fdump.bin"
    write_pgm: bool = True
    calculate_noise: bool = True    # final decision: off when -nonoise was given
    nonoise: bool = False           # -nonoise seen (wins over -noisefile)
    intfile_scale: float = 0.0      # <= 0: auto (55000/max_I)
    pgm_scale: float = 0.0          # <= 0: auto (250/(5 rmsd))
    adc_offset: float = 40.0
    printout: bool = False
    printout_pixel: Optional[Tuple[int, int]] = None   # (fast, slow)
    progress: bool = True
    write_dump: bool = False        # an -hkl file was read: write the dump file as C does
    stol_inputs: List[str] = field(default_factory=list)
    suite: Dict[str, object] = field(default_factory=dict)   # nbsim.suite
    dataset: Dict[str, object] = field(default_factory=dict)   # -nimages, -nexus, ... (nbsim.cli.dataset)


@dataclass
class ParsedArgs:
    config: Config
    outputs: Outputs
    threads: Optional[int] = None
    notes: List[str] = field(default_factory=list)
    hkl_file: Optional[str] = None
    mat_file: Optional[str] = None
    used_dump: Optional[str] = None          # the dump file read in place of -hkl
    pivot_requests: List[str] = field(default_factory=list)
    mask_file: Optional[str] = None
    img_file: Optional[str] = None
    source_file: Optional[str] = None
    hkl_data: Optional[object] = None        # nbsim.io.HKLData of -hkl / the dump file
    inputs: Optional[object] = None          # nbsim.inputs.flags.InputsResult (-mtz, -expt...)
    given: Dict[str, Tuple[str, List[str]]] = field(default_factory=dict)
    """config parameter -> (flag, raw values) of the last flag that set it."""


@dataclass
class Flag:
    names: Tuple[str, ...]
    nargs: int            # number of values; -1: 'random' or three numbers (-misset)
    kind: str             # 'float', 'int', 'str', 'none', 'vec3'
    units: str
    default: str
    help: str
    apply: Callable
    targets: Tuple[str, ...] = ()   # Config parameters it sets (for error messages)
    metavar: str = ""


_NUMBER_RE = re.compile(r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")
_INT32 = 2 ** 31


def _num(flag, text, kind="float"):
    """Parse one value strictly (a plain decimal number; ints may be written 5 or 5.0)."""
    t = str(text)
    if not _NUMBER_RE.match(t):
        what = "an integer" if kind == "int" else "a number"
        raise ArgError(f"{flag}: expected {what}, got {t!r}")
    v = float(t)
    if not math.isfinite(v):
        raise ArgError(f"{flag}: value {t!r} is out of range")
    if kind == "int":
        if v != int(v):
            raise ArgError(f"{flag}: expected an integer, got {t!r}")
        v = int(v)
        if not -_INT32 < v < _INT32:
            raise ArgError(f"{flag}: value {t!r} does not fit in a 32-bit integer")
    return v


class _State:
    """C's variables while parsing, in C's internal units (metres, radians)."""

    def __init__(self):
        self.cfg = Config()
        self.out = Outputs()
        self.threads = None
        self.pivot = "BEAM"        # C's detector_pivot as parsing leaves it (default BEAM)
        self.convention = "MOSFLM"
        self.hkl = None
        self.mat = None
        self.sourcefile = None
        self.misset_random = False
        self.pix0 = None
        self.pix0_mm = False
        self.notes = []
        self.pivot_requests = []   # (flag, pivot) in order
        self.given = {}
        self.mask_file = None      # set by -mask / -img (read before the other flags)
        self.img_file = None


# ---------------------------------------------------------------- apply helpers
def _setattr_path(root, path, value):
    obj = root
    parts = path.split(".")
    for p in parts[:-1]:
        obj = getattr(obj, p)
    setattr(obj, parts[-1], value)


def _set(path, conv=lambda v: v):
    def apply(st, flag, vals):
        _setattr_path(st.cfg, path, conv(vals[0] if len(vals) == 1 else vals))
    return apply


def _set_out(attr, value=None, conv=lambda v: v):
    """Set an output attribute to ``value`` (flags without values) or ``conv(value)``."""
    def apply(st, flag, vals):
        setattr(st.out, attr, value if not vals else conv(vals[0]))
    return apply


def _true(path):
    return _set(path, lambda v: True)


def _false(path):
    return _set(path, lambda v: False)


def _pivot(p):
    def apply(st, flag, vals):
        st.pivot = p
        st.pivot_requests.append((flag, p))
    return apply


def _chain(*fs):
    def apply(st, flag, vals):
        for f in fs:
            f(st, flag, vals)
    return apply


def _convention(name, pivot):
    def apply(st, flag, vals):
        st.convention = name
        st.pivot = pivot        # C sets detector_pivot here too (-dials: BEAM)
    return apply


def _vector(path):
    def apply(st, flag, vals):
        st.convention = "CUSTOM"
        _setattr_path(st.cfg, path, tuple(float(v) for v in vals))
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
    if vals == ["random"]:
        st.misset_random = True
        st.cfg.crystal.misset = None
    else:
        st.misset_random = False
        st.cfg.crystal.misset = tuple(v / RTD for v in vals)


def _N(which):
    def apply(st, flag, vals):
        for w in which:
            setattr(st.cfg.crystal, "N" + w, float(vals[0]))
    return apply


def _sample(axes):
    def apply(st, flag, vals):
        for a in axes:
            setattr(st.cfg.crystal, "sample_" + a, vals[0] / 1000.0)
    return apply


def _detector_abs(st, flag, vals):
    text = str(vals[0])
    d = st.cfg.detector
    # C: strstr(value, "inf") or atof(value) == 0 -> no absorption model at all
    if "inf" in text or text.lower().lstrip("+") in ("inf", "infinity"):
        d.thick, d.mu = 0.0, 0.0
        return
    v = _num(flag, text)
    if v == 0.0:
        d.thick, d.mu = 0.0, 0.0
    else:
        d.mu = 1.0 / (v * 1e-6)


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


def _polar(st, flag, vals):
    st.cfg.beam.polarization = vals[0]
    st.cfg.beam.nopolar = False          # C: -polar also clears nopolar


def _divergence(st, flag, vals):
    st.cfg.beam.hdivrange = st.cfg.beam.vdivrange = vals[0] / 1000.0


def _divsteps(st, flag, vals):
    st.cfg.beam.hdivsteps = st.cfg.beam.vdivsteps = int(vals[0])


def _panels_file(st, flag, vals):
    from .errors import ConfigError
    from .geometry.panels import load_panels_json
    try:
        st.cfg.detector.panels = load_panels_json(str(vals[0]))
    except ConfigError as e:
        where = f"{e.value}: " if e.value else ""
        raise ArgError(f"{flag} {vals[0]}: {where}{e.why}") from None


def _detector_preset(st, flag, vals):
    from .errors import ConfigError
    from .geometry.panels import preset
    try:
        st.cfg.detector.panels = preset(str(vals[0]))
    except ConfigError as e:
        raise ArgError(f"{flag} {vals[0]}: {e.why}") from None


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


def _pgmfile(st, flag, vals):
    st.out.pgmfile = vals[0]
    st.out.write_pgm = True


def _pgmscale(st, flag, vals):
    st.out.pgm_scale = vals[0]
    st.out.write_pgm = True


def _printout_pixel(st, flag, vals):
    st.out.printout_pixel = (int(vals[0]), int(vals[1]))


def _ignored(st, flag, vals):
    st.notes.append(f"{flag} is accepted for compatibility with nanoBragg; "
                    f"it changes nothing in the outputs")


def _suite(key, flavour=None):
    """Record a noisify/nonBragg-suite flag (interpreted by nbsim.suite)."""
    def apply(st, flag, vals):
        st.out.suite[key] = (flag, vals[0] if vals else None)
        if flavour is not None:
            st.out.suite["stol_flavour"] = flavour
            st.out.stol_inputs.append(vals[0])
    return apply


def _beamstop_arm(st, flag, vals):
    st.cfg.detector.beamstop_arm_width = vals[0] / 1000.0
    st.cfg.detector.beamstop_arm_angle = vals[1] / RTD


def _mode(st, flag, vals):
    st.cfg.mode = "c-parity"


def _choice(path, choices):
    def apply(st, flag, vals):
        if vals[0] not in choices:
            raise ArgError(f"{flag}: expected {' or '.join(choices)}, got {vals[0]!r}")
        _setattr_path(st.cfg, path, vals[0])
    return apply


def _threads(st, flag, vals):
    if vals[0] < 1:
        raise ArgError(f"{flag}: needs at least 1 thread, got {vals[0]}")
    st.threads = int(vals[0])


def _pivot_flag(st, flag, vals):
    v = vals[0]
    # C: strstr(value, "sample") then strstr(value, "beam"); the later test wins
    p = None
    if "sample" in v:
        p = "SAMPLE"
    if "beam" in v:
        p = "BEAM"
    if p is None:
        raise ArgError(f"{flag}: expected 'beam' or 'sample', got {v!r}")
    st.pivot = p
    st.pivot_requests.append((flag, p))


def _dataset(key, conv=lambda v: v):
    """A dataset flag (nbsim.cli.dataset reads ``Outputs.dataset``)."""
    def apply(st, flag, vals):
        st.out.dataset[key] = conv(vals[0]) if vals else True
    return apply


def _mm(path):
    return _set(path, lambda v: v / 1000.0)


def _deg(path):
    return _set(path, lambda v: v / RTD)


def _inputs_store(key):
    from .inputs.flags import store
    return store(key)


F, I, S, N0, V3 = "float", "int", "str", "none", "vec3"


def _F(names, nargs, kind, units, default, help, apply, targets=(), metavar=""):
    if isinstance(names, str):
        names = (names,)
    if isinstance(targets, str):
        targets = (targets,)
    return Flag(tuple(names), nargs, kind, units, default, help, apply, tuple(targets), metavar)


FLAGS: List[Flag] = [
    # ------------------------------------------------------------------ crystal
    _F("-cell", 6, F, "A, deg", "none (or -mat)",
       "unit cell a b c alpha beta gamma", _cell, "crystal.cell", "a b c al be ga"),
    _F("-mat", 1, S, "file", "none (or -cell)",
       "MOSFLM A matrix file (three reciprocal vectors x lambda)", _file("mat"),
       "crystal.a_star_matrix"),
    _F("-misset", -1, F, "deg", "0 0 0",
       "crystal rotation about x, y, z (applied to the reciprocal cell), or 'random'",
       _misset, "crystal.misset", "x y z|random"),
    _F("-misset_seed", 1, I, "", "same as -seed (clock)", "seed of -misset random",
       _set("crystal.misset_seed", int), "crystal.misset_seed"),
    _F("-N", 1, I, "cells", "1", "number of unit cells along a, b and c", _N("abc"),
       ("crystal.Na", "crystal.Nb", "crystal.Nc")),
    _F("-Na", 1, I, "cells", "1", "number of unit cells along a", _N("a"), "crystal.Na"),
    _F("-Nb", 1, I, "cells", "1", "number of unit cells along b", _N("b"), "crystal.Nb"),
    _F("-Nc", 1, I, "cells", "1", "number of unit cells along c", _N("c"), "crystal.Nc"),
    _F(("-xtalsize", "-xtal_size", "-samplesize", "-sample_size"), 1, F, "mm", "0 (use -N)",
       "crystal full width along a, b and c (sets N; clipped by -beamsize)", _sample("xyz"),
       ("crystal.sample_x", "crystal.sample_y", "crystal.sample_z")),
    _F(("-xtal_thick", "-xtal_x", "-sample_thick", "-sample_x"), 1, F, "mm", "0",
       "crystal size along a (sets Na)", _sample("x"), "crystal.sample_x"),
    _F(("-xtal_width", "-xtal_y", "-sample_width", "-sample_y", "-width"), 1, F, "mm", "0",
       "crystal size along b (sets Nb)", _sample("y"), "crystal.sample_y"),
    _F(("-xtal_height", "-xtal_z", "-sample_height", "-sample_z", "-height",
        "-xtal_heigh", "-sample_heigh", "-heigh"), 1, F, "mm",
       "0", "crystal size along c (sets Nc)", _sample("z"), "crystal.sample_z"),
    _F("-square_xtal", 0, N0, "", "on", "parallelepiped crystal (sincg lattice factor)",
       _shape("SQUARE"), "crystal.shape"),
    _F("-round_xtal", 0, N0, "", "off", "ellipsoidal crystal (sinc3 lattice factor)",
       _shape("ROUND"), "crystal.shape"),
    _F("-gauss_xtal", 0, N0, "", "off", "Gaussian spots: no inter-Bragg maxima",
       _shape("GAUSS"), "crystal.shape"),
    _F(("-tophat_spots", "-binary_spots"), 0, N0, "", "off",
       "flat-top spots clipped at the FWHM", _shape("TOPHAT"), "crystal.shape"),
    _F("-fudge", 1, F, "", "1", "spot-size fudge factor of the round/gauss/tophat shapes",
       _set("crystal.fudge"), "crystal.fudge"),
    _F(("-mosaic", "-mosaicity", "-mosaici", "-mosaic_spread", "-mosaic_spr"), 1, F, "deg", "0",
       "isotropic mosaic spread", _set("crystal.mosaic_spread", lambda v: v / RTD),
       "crystal.mosaic_spread"),
    _F(("-mosaic_domains", "-mosaic_dom"), 1, I, "", "10 if a spread is given, else 1",
       "number of mosaic domains", _set("crystal.mosaic_domains", int),
       "crystal.mosaic_domains"),
    _F("-mosaic_seed", 1, I, "", "12345678", "seed of the mosaic-domain generator",
       _set("crystal.mosaic_seed", int), "crystal.mosaic_seed"),
    _F("-phi", 1, F, "deg", "0", "starting spindle rotation", _deg("crystal.phi0"),
       "crystal.phi0"),
    _F("-osc", 1, F, "deg", "phistep, or 1 deg with -phisteps, else 0",
       "spindle rotation range", _deg("crystal.osc"), "crystal.osc"),
    _F("-phistep", 1, F, "deg", "osc/phisteps", "spindle step", _deg("crystal.phistep"),
       "crystal.phistep"),
    _F("-phisteps", 1, I, "", "1 (2 with -osc or -phistep)", "number of spindle steps",
       _set("crystal.phisteps", int), "crystal.phisteps"),
    _F("-spindle_axis", 3, V3, "unit vector", "0 0 1 (MOSFLM)",
       "right-handed phi rotation axis (selects CUSTOM)", _vector("crystal.spindle_axis"),
       "crystal.spindle_axis", "x y z"),
    _F(("-density", "-sample_density", "-sample_den"), 1, F, "g/cm^3", "1",
       "amorphous (-stol) sample density; nanoBragg.c overwrites it", _suite("density")),
    _F(("-MW", "-molecular_weight", "-molecules", "-molec"), 1, F, "g/mol", "18",
       "amorphous (-stol) molecular weight; nanoBragg.c overwrites it", _suite("MW")),
    # -------------------------------------------------------- structure factors
    _F("-hkl", 1, S, "file", "none (read the dump file)",
       "structure factors: text 'h k l F' per line", _file("hkl"), "structure.grid"),
    _F("-default_F", 1, F, "electrons", "0",
       "F of every reflection not in -hkl (alternative to -hkl)",
       _set("structure.default_F"), "structure.default_F"),
    _F(("-dumpfile", "-dump"), 1, S, "file", "Fdump.bin",
       "binary cache of the -hkl grid: written after reading -hkl, read when -hkl is absent",
       _set_out("dumpfile")),
    _F("-interpolate", 0, N0, "", "auto: on if any N <= 2",
       "tricubic interpolation of F between Bragg peaks", _true("structure.interpolate"),
       "structure.interpolate"),
    _F("-nointerpolate", 0, N0, "", "auto", "nearest-neighbour F (no interpolation)",
       _false("structure.interpolate"), "structure.interpolate"),
    # files from the ecosystem (nbsim.inputs; gemmi: pip install -e ".[formats]")
    _F("-mtz", 1, S, "file", "none",
       "structure factors from an MTZ file, expanded to P1 with its space group",
       _inputs_store("-mtz")),
    _F("-mtz_label", 1, S, "LABEL", "first of F FP F-obs FOBS FMODEL FC, then I IMEAN",
       "column of -mtz / -sfcif (intensities become sqrt(I); F(+) uses its F(-) pair)",
       _inputs_store("-mtz_label")),
    _F("-sfcif", 1, S, "file", "none",
       "structure factors from an SF-mmCIF file (first block), expanded to P1",
       _inputs_store("-sfcif")),
    _F("-model", 1, S, "file", "none",
       "PDB or mmCIF atomic model: Fcalc (IT92, B, occupancies, F000), expanded to P1",
       _inputs_store("-model")),
    _F("-model_dmin", 1, F, "A", "the detector corners' resolution",
       "resolution limit of the -model Fcalc", _inputs_store("-model_dmin")),
    _F("-solvent", 2, F, "e/A^3, A^2", "none", "flat bulk solvent of -model: k_sol b_sol",
       _inputs_store("-solvent"), metavar="k_sol b_sol"),
    _F("-anomalous", 0, N0, "", "off",
       "no Friedel mates in the P1 expansion (anomalous columns first in -mtz_label)",
       _inputs_store("-anomalous")),
    _F("-write_hkl", 1, S, "file", "none",
       "write the P1 list of -mtz/-sfcif/-model as 'h k l F' text (*.bin: Fdump format)",
       _inputs_store("-write_hkl")),
    # --------------------------------------------------------------------- beam
    _F(("-lambda", "-wavelength", "-wave"), 1, F, "A", "1", "X-ray wavelength",
       _set("beam.wavelength", lambda v: v / 1.0e10), "beam.wavelength"),
    _F("-energy", 1, F, "eV", "12398.42", "X-ray photon energy (sets -lambda)", _energy,
       "beam.wavelength"),
    _F("-fluence", 1, F, "photons/m^2", "1.25932e+29", "integrated incident fluence",
       _set("beam.fluence"), "beam.fluence"),
    _F("-flux", 1, F, "photons/s", "0",
       "incident flux; with -exposure and -beamsize sets the fluence", _set("beam.flux"),
       "beam.flux"),
    _F("-exposure", 1, F, "s", "1", "exposure time (with -flux)", _set("beam.exposure"),
       "beam.exposure"),
    _F("-beamsize", 1, F, "mm", "0.1", "beam size (with -flux); also clips the crystal",
       _mm("beam.beamsize"), "beam.beamsize"),
    _F("-dispersion", 1, F, "%", "0", "spectral width delta-lambda/lambda",
       _set("beam.dispersion", lambda v: v / 100.0), "beam.dispersion"),
    _F("-dispsteps", 1, I, "", "auto", "number of wavelengths in the -dispersion range",
       _set("beam.dispsteps", int), "beam.dispsteps"),
    _F("-divergence", 1, F, "mrad", "0", "horizontal and vertical divergence range",
       _divergence, ("beam.hdivrange", "beam.vdivrange")),
    _F("-hdivrange", 1, F, "mrad", "0", "horizontal divergence range",
       _set("beam.hdivrange", lambda v: v / 1000.0), "beam.hdivrange"),
    _F("-vdivrange", 1, F, "mrad", "0", "vertical divergence range",
       _set("beam.vdivrange", lambda v: v / 1000.0), "beam.vdivrange"),
    _F("-hdivstep", 1, F, "mrad", "auto", "horizontal divergence step",
       _set("beam.hdivstep", lambda v: v / 1000.0), "beam.hdivstep"),
    _F("-vdivstep", 1, F, "mrad", "auto", "vertical divergence step",
       _set("beam.vdivstep", lambda v: v / 1000.0), "beam.vdivstep"),
    _F("-hdivsteps", 1, I, "", "auto", "number of horizontal divergence steps",
       _set("beam.hdivsteps", int), "beam.hdivsteps"),
    _F("-vdivsteps", 1, I, "", "auto", "number of vertical divergence steps",
       _set("beam.vdivsteps", int), "beam.vdivsteps"),
    _F("-divsteps", 1, I, "", "auto", "divergence steps in both directions", _divsteps,
       ("beam.hdivsteps", "beam.vdivsteps")),
    _F("-round_div", 0, N0, "", "on", "cut the divergence grid to an ellipse",
       _true("beam.round_div")),
    _F("-square_div", 0, N0, "", "off", "full rectangular divergence grid",
       _false("beam.round_div")),
    _F("-sourcefile", 1, S, "file", "none",
       "sources, one per line: X Y Z weight lambda (m; position seen from the sample)",
       _file("sourcefile"), "beam.sources"),
    _F("-beam_vector", 3, V3, "unit vector", "1 0 0 (MOSFLM)",
       "direction of the X-ray beam (selects CUSTOM)", _vector("beam.beam_vector"),
       "beam.beam_vector", "x y z"),
    _F("-polar_vector", 3, V3, "unit vector", "0 0 1 (MOSFLM)",
       "E-vector of the beam (selects CUSTOM)", _vector("beam.polar_vector"),
       "beam.polar_vector", "x y z"),
    _F("-polar", 1, F, "", "0 (unpolarized)", "Kahn polarization factor (clears -nopolar)",
       _polar, "beam.polarization"),
    _F("-nopolar", 0, N0, "", "off", "no polarization correction", _true("beam.nopolar")),
    # ----------------------------------------------------------------- detector
    _F("-distance", 1, F, "mm", "100", "sample to beam spot on the detector (beam pivot)",
       _chain(_mm("detector.distance"), _pivot("BEAM")), "detector.distance"),
    _F("-close_distance", 1, F, "mm", "distance",
       "sample to the nearest point of the detector plane (sample pivot)",
       _chain(_mm("detector.close_distance"), _pivot("SAMPLE")), "detector.close_distance"),
    _F("-detsize", 1, F, "mm", "102.4", "detector size, both directions",
       _detsize("fs"), ("detector.detsize_f", "detector.detsize_s")),
    _F("-detsize_f", 1, F, "mm", "102.4", "detector size along the fast axis",
       _detsize("f"), "detector.detsize_f"),
    _F("-detsize_s", 1, F, "mm", "102.4", "detector size along the slow axis",
       _detsize("s"), "detector.detsize_s"),
    _F("-detpixels", 1, I, "pixels", "1024 (detsize/pixel)", "pixels in both directions",
       _detpixels("fs"), ("detector.fpixels", "detector.spixels")),
    _F(("-detpixels_f", "-detpixels_x"), 1, I, "pixels", "1024", "pixels along the fast axis",
       _detpixels("f"), "detector.fpixels"),
    _F(("-detpixels_s", "-detpixels_y"), 1, I, "pixels", "1024", "pixels along the slow axis",
       _detpixels("s"), "detector.spixels"),
    _F("-pixel", 1, F, "mm", "0.1", "pixel size", _mm("detector.pixel_size"),
       "detector.pixel_size"),
    _F("-Xbeam", 1, F, "mm", "detector centre",
       "image fast coordinate of the direct-beam spot (beam pivot)",
       _chain(_mm("detector.beam_center_x"), _pivot("BEAM")), "detector.beam_center_x"),
    _F("-Ybeam", 1, F, "mm", "detector centre",
       "image slow coordinate of the direct-beam spot (beam pivot)",
       _chain(_mm("detector.beam_center_y"), _pivot("BEAM")), "detector.beam_center_y"),
    _F("-Xclose", 1, F, "mm", "detector centre",
       "fast coordinate of the nearest point (sample pivot)",
       _chain(_mm("detector.xclose"), _pivot("SAMPLE")), "detector.xclose"),
    _F("-Yclose", 1, F, "mm", "detector centre",
       "slow coordinate of the nearest point (sample pivot)",
       _chain(_mm("detector.yclose"), _pivot("SAMPLE")), "detector.yclose"),
    _F("-ORGX", 1, F, "pixels", "detector centre", "XDS origin, fast (sample pivot)",
       _chain(_set("detector.orgx"), _pivot("SAMPLE")), "detector.orgx"),
    _F("-ORGY", 1, F, "pixels", "detector centre", "XDS origin, slow (sample pivot)",
       _chain(_set("detector.orgy"), _pivot("SAMPLE")), "detector.orgy"),
    _F("-pivot", 1, S, "beam|sample", "the convention's",
       "detector pivot (honoured under CUSTOM only)", _pivot_flag, "detector.pivot"),
    _F("-mosflm", 0, N0, "", "on", "MOSFLM convention (beam pivot)",
       _convention("MOSFLM", "BEAM")),
    _F("-xds", 0, N0, "", "off", "XDS convention (sample pivot)",
       _convention("XDS", "SAMPLE")),
    _F("-adxv", 0, N0, "", "off", "ADXV convention (beam pivot)",
       _convention("ADXV", "BEAM")),
    _F("-denzo", 0, N0, "", "off", "DENZO convention (beam pivot)",
       _convention("DENZO", "BEAM")),
    _F("-dials", 0, N0, "", "off", "DIALS convention (sample pivot)",
       _convention("DIALS", "BEAM")),
    _F("-fdet_vector", 3, V3, "unit vector", "0 0 1 (MOSFLM)",
       "direction of increasing fast pixel index (selects CUSTOM)",
       _vector("detector.fdet_vector"), "detector.fdet_vector", "x y z"),
    _F("-sdet_vector", 3, V3, "unit vector", "0 -1 0 (MOSFLM)",
       "direction of increasing slow pixel index (selects CUSTOM)",
       _vector("detector.sdet_vector"), "detector.sdet_vector", "x y z"),
    _F("-odet_vector", 3, V3, "unit vector", "1 0 0 (MOSFLM)",
       "detector normal, away from the sample (selects CUSTOM; non-unit: fast x slow)",
       _vector("detector.odet_vector"), "detector.odet_vector", "x y z"),
    _F("-twotheta_axis", 3, V3, "vector", "0 0 -1 (MOSFLM; 0 1 0 under CUSTOM)",
       "axis of the -twotheta swing (selects CUSTOM)", _vector("detector.twotheta_axis"),
       "detector.twotheta_axis", "x y z"),
    _F("-pix0_vector", 3, V3, "m", "from the beam centre",
       "sample to the corner of the first pixel (selects CUSTOM; c-parity: overwritten "
       "by the pivot geometry, as in nanoBragg.c)", _pix0(False), "detector.pix0_vector",
       "x y z"),
    _F("-pix0_vector_mm", 3, V3, "mm (c-parity: m)", "from the beam centre",
       "as -pix0_vector in millimetres", _pix0(True), "detector.pix0_vector", "x y z"),
    _F("-detector_rotx", 1, F, "deg", "0", "detector rotation about x",
       _deg("detector.rotx"), "detector.rotx"),
    _F("-detector_roty", 1, F, "deg", "0", "detector rotation about y",
       _deg("detector.roty"), "detector.roty"),
    _F("-detector_rotz", 1, F, "deg", "0", "detector rotation about z",
       _deg("detector.rotz"), "detector.rotz"),
    _F("-twotheta", 1, F, "deg", "0", "detector two-theta swing (sample pivot)",
       _chain(_deg("detector.twotheta"), _pivot("SAMPLE")), "detector.twotheta"),
    _F("-curved_det", 0, N0, "", "off", "spherical detector: every pixel at the same distance",
       _true("detector.curved")),
    _F("-point_pixel", 0, N0, "", "off", "no pixel solid angle (1/R^2 only)",
       _true("detector.point_pixel")),
    _F(("-detector_absorb", "-detector_abs", "-detector_absorption"), 1, S, "um|inf", "inf",
       "sensor attenuation depth ('inf' or 0: no sensor model)", _detector_abs,
       "detector.mu", "depth"),
    _F("-detector_thick", 1, F, "um", "0", "sensor thickness",
       _set("detector.thick", lambda v: v * 1e-6), "detector.thick"),
    _F(("-detector_thicksteps", "-thicksteps"), 1, I, "", "2 with a thickness, else 1",
       "number of sensor layers", _set("detector.thicksteps", int), "detector.thicksteps"),
    _F("-roi", 4, I, "pixels", "whole detector",
       "render only fast xmin..xmax, slow ymin..ymax (inclusive)", _roi, "detector.roi",
       "xmin xmax ymin ymax"),
    _F("-mask", 1, S, "file", "none",
       "SMV image: pixels of value 0 are skipped (its header sets the detector too)",
       _file("mask_file"), "detector.mask"),
    _F("-beamstop", 1, F, "mm", "none",
       "beamstop disk of this radius on the direct beam at the detector: its shadow gets "
       "no photons and is masked", _mm("detector.beamstop_radius"),
       "detector.beamstop_radius"),
    _F("-beamstop_arm", 2, F, "mm deg", "none",
       "the beamstop's arm: full width, direction from the fast axis towards slow",
       _beamstop_arm, ("detector.beamstop_arm_width", "detector.beamstop_arm_angle"),
       "width angle"),
    _F("-bad_pixels", 1, F, "fraction", "0",
       "dead (read 0) and hot (read 65535 photons) pixels, half each, masked",
       _set("detector.bad_pixel_fraction"), "detector.bad_pixel_fraction"),
    _F("-bad_pixel_seed", 1, I, "", "123456789", "seed of the -bad_pixels map",
       _set("detector.bad_pixel_seed", int), "detector.bad_pixel_seed"),
    _F("-img", 1, S, "file", "none", "SMV image whose header sets the detector",
       _file("img_file")),
    _F("-expt", 1, S, "file", "none",
       "DIALS experiment list: beam, single-panel detector, goniometer, scan, crystal",
       _inputs_store("-expt")),
    _F("-expt_index", 1, I, "", "0", "which experiment of -expt", _inputs_store("-expt_index")),
    # ----------------------------------------------------------------- sampling
    _F("-oversample", 1, I, "", "auto (from crystal size)", "sub-pixels per pixel edge",
       _set("sampling.oversample", int), "sampling.oversample"),
    _F("-oversample_thick", 0, N0, "", "off", "capture fraction per sub-pixel",
       _true("sampling.oversample_thick")),
    _F("-oversample_polar", 0, N0, "", "off", "polarization per sub-pixel",
       _true("sampling.oversample_polar")),
    _F("-oversample_omega", 0, N0, "", "off", "solid angle per sub-pixel",
       _true("sampling.oversample_omega")),
    _F("-dmin", 1, F, "A", "0 (no cut)", "skip scattering beyond this resolution",
       _set("sampling.dmin", lambda v: v * 1e-10), "sampling.dmin"),
    _F("-water", 1, F, "um", "0", "water background: droplet size",
       _set("sampling.water_size", lambda v: v / 1e6), "sampling.water_size"),
    # ------------------------------------------------------------------- output
    _F(("-floatfile", "-floatimage"), 1, S, "file", "floatimage.bin",
       "raw float32 image (photons/pixel)", _set_out("floatfile")),
    _F(("-intfile", "-intimage"), 1, S, "file", "intimage.img",
       "SMV image, scaled by -scale, plus -adc", _set_out("intfile")),
    _F(("-pgmfile", "-pgmimage"), 1, S, "file", "image.pgm", "8-bit PGM preview",
       _pgmfile),
    _F(("-noisefile", "-noiseimage"), 1, S, "file", "noiseimage.img",
       "SMV image with Poisson noise", _noisefile),
    _F("-nonoise", 0, N0, "", "off", "no noise image (wins over -noisefile)",
       _set_out("nonoise", True)),
    _F("-nopgm", 0, N0, "", "off", "no PGM image", _set_out("write_pgm", False)),
    _F("-scale", 1, F, "", "auto: 55000/max_I", "scale of the -intfile pixels",
       _set_out("intfile_scale")),
    _F("-pgmscale", 1, F, "", "auto: 250/(5 rmsd)", "scale of the PGM pixels", _pgmscale),
    _F("-adc", 1, F, "ADU", "40", "offset added to the SMV pixels", _set_out("adc_offset")),
    _F("-seed", 1, I, "", "-time", "seed of the noise generator", _set("seed", int), "seed"),
    _F("-printout", 0, N0, "", "off", "print every rendered pixel's scaling chain",
       _set_out("printout", True)),
    _F("-printout_pixel", 2, I, "fast slow", "none", "print one pixel's scaling chain",
       _printout_pixel, metavar="f s"),
    _F("-noprogress", 0, N0, "", "on", "no progress bar", _set_out("progress", False)),
    _F("-progress", 0, N0, "", "on", "progress bar on stderr (renders over 1 s)",
       _set_out("progress", True)),
    _F("-coherent", 0, N0, "", "off", "accepted; nanoBragg.c never uses it", _ignored),
    _F("-stol", 1, S, "file", "none",
       "amorphous background (nonBragg.c) added to the image; c-parity: changes nothing",
       _suite("stol", "stol")),
    _F("-4stol", 1, S, "file", "none", "as -stol, file in 4 sin(theta)/lambda",
       _suite("stol", "4stol")),
    _F("-Q", 1, S, "file", "none", "as -stol, file in Q = 4 pi sin(theta)/lambda",
       _suite("stol", "Q")),
    _F("-thickness", 1, F, "mm", "0.1", "amorphous (-stol) sample thickness along the beam",
       _suite("thickness")),
    _F("-ice", 1, F, "um", "none",
       "hexagonal ice (Ih) powder rings of this ice thickness in the beam (docs/effects.md)",
       _suite("ice")),
    _F("-ice_crystallite", 1, F, "nm", "100", "ice crystallite size (ring width, Scherrer)",
       _suite("ice_crystallite")),
    # noisify.c's detector effects on the noise image (nbsim.effects; docs/effects.md)
    _F("-psf", 1, S, "gauss|fiber", "none", "point-spread function of the noise image",
       _suite("psf")),
    _F("-psf_fwhm", 1, F, "um", "46", "PSF full width at half maximum", _suite("psf_fwhm")),
    _F("-psf_radius", 1, F, "pixels", "0 (automatic)", "PSF rendering radius",
       _suite("psf_radius")),
    _F("-psf_method", 1, S, "auto|exact|fft", "auto", "PSF path (exact = noisify.c's bits)",
       _suite("psf_method")),
    _F("-readout", 1, F, "ADU", "0", "Gaussian readout noise (rms)", _suite("readout")),
    _F("-flicker", 1, F, "fraction", "0", "source flicker per pixel", _suite("flicker")),
    _F("-calibration", 1, F, "fraction", "0.03 (with any effect flag)",
       "static pixel calibration error", _suite("calibration")),
    _F("-calib_seed", 1, I, "", "noisify.c's", "seed of the calibration error",
       _suite("calib_seed")),
    _F("-gain", 1, F, "ADU/photon", "1", "quantum gain", _suite("gain")),
    _F("-bits", 1, I, "16|32", "16", "integer width of the noise image", _suite("bits")),
    _F("-stolout", 1, S, "file", "none", "accepted; nanoBragg.c never writes it", _ignored),
    # detector models of the noise image (nbsim.detector_model; docs/effects.md)
    _F("-detector_model", 1, S, "integrating|counting|jungfrau",
       "the preset's (eiger2_16m: counting, jungfrau_4m: jungfrau), else integrating",
       "detector of the noise image / counts", _suite("detector_model")),
    _F("-deadtime", 1, F, "ns", "100 (counting)", "counting: dead time per count",
       _suite("deadtime")),
    _F("-deadtime_model", 1, S, "nonparalyzable|paralyzable", "nonparalyzable",
       "counting: dead-time model", _suite("deadtime_model")),
    _F("-frame_time", 1, F, "s", "-exposure", "counting: counting time of a frame",
       _suite("frame_time")),
    _F("-counter_bits", 1, I, "1..31", "16", "counting: counter depth",
       _suite("counter_bits")),
    _F("-counter_overflow", 1, S, "saturate|rollover", "saturate",
       "counting: what the counter does at 2^bits - 1", _suite("counter_overflow")),
    _F("-charge_cloud", 1, F, "um", "5 (counting)", "counting: rms of the charge cloud",
       _suite("charge_cloud")),
    _F("-threshold", 1, F, "keV", "half the photon energy", "counting: energy threshold",
       _suite("threshold")),
    _F("-jungfrau_output", 1, S, "photons|adu", "photons",
       "jungfrau: converted photons or raw ADU words with gain bits",
       _suite("jungfrau_output")),

    # ------------------------------------------------------------- nbsim's own
    _F("-c_parity", 0, N0, "", "off (spec mode)",
       "bug-compatible with nanoBragg.c main on one thread (phi=0 carryover, ...)", _mode),
    _F("-device", 1, S, "cpu|cuda|auto", "cpu", "where to render",
       _choice("device", ("cpu", "cuda", "auto")), "device"),
    _F("-dtype", 1, S, "float64|float32", "float64", "arithmetic precision",
       _choice("dtype", ("float64", "float32")), "dtype"),
    _F("-threads", 1, I, "", "all cores", "CPU threads", _threads),
    # ------------------------------------------------- datasets (nbsim.cli.dataset)
    _F("-nimages", 1, I, "frames", "1 (one image)",
       "rotation scan: frame i is -phi phi+i*osc -osc osc (outputs take '#' templates)",
       _dataset("nimages", int)),
    _F("-stills", 1, I, "frames", "off",
       "serial stills: one orientation per frame (-misset random: drawn per frame)",
       _dataset("stills", int)),
    _F("-orientations", 1, S, "file", "none",
       "orientations of -stills, one per line: misset x y z (deg) or 9 A-matrix numbers",
       _dataset("orientations")),
    _F("-vary", 1, S, "file.json", "none",
       "stills: per-frame random values of numeric flags, e.g. {\"distance\": "
       "{\"normal\": 0.5}} (normal SD added, uniform [LO, HI], lognormal SD; "
       "docs/datasets.md)", _dataset("vary")),
    _F("-lattices", 1, I, "crystals", "1",
       "stills: crystals in the beam per frame, each its own random orientation "
       "(needs -misset random); the image is their sum", _dataset("lattices", int)),
    _F("-nexus", 1, S, "file", "none", "NeXus NXmx HDF5 file of the dataset (DIALS reads it)",
       _dataset("nexus")),
    _F("-nexus_compression", 1, S, "bslz4|gzip|none", "bslz4", "compression of -nexus data",
       _dataset("nexus_compression")),
    _F("-cbf", 1, S, "template", "none", "miniCBF file per frame ('#' digits: frame number)",
       _dataset("cbf")),
    _F("-write_expt", 1, S, "file", "none",
       "DIALS experiment list of the job: beam, detector, goniometer, scan, crystal, images "
       "(docs/formats.md)", _dataset("write_expt")),
    _F("-png", 1, S, "file", "none", "quick-look PNG (a montage of frames for a dataset)",
       _dataset("png")),
    _F("-workers", 1, I, "", "0 (in-process)", "render frames on a local Dask cluster "
       "of N worker processes", _dataset("workers", int)),
    _F("-scheduler", 1, S, "address", "none", "render frames on a running Dask cluster "
       "(workers write -nexus blocks)", _dataset("scheduler")),
    _F("-worker_blocks", 1, I, "frames", "16 with -scheduler, else off",
       "workers write -nexus data in blocks of N frames; the master file joins them",
       _dataset("worker_blocks", int)),
    _F("-resume", 0, N0, "", "off", "continue an interrupted dataset: keep complete frames",
       _dataset("resume")),
    _F("-truth", 1, S, "file.refl", "none",
       "ground truth: the reflections each frame holds as a DIALS reflection file, and "
       "per-pixel labels / Bragg fraction (docs/truth.md)", _dataset("truth")),
    # XFEL spectra and radiation damage per frame (docs/datasets.md)
    _F("-sase_bandwidth", 1, F, "dE/E", "off",
       "a seeded SASE spectrum per shot (Pfeifer et al. 2010): FWHM of the mean spectrum, "
       "relative to the -lambda photon energy", _dataset("sase_bandwidth", float)),
    _F("-sase_jitter", 1, F, "dE/E", "0",
       "SASE: rms shot-to-shot jitter of the central photon energy, relative",
       _dataset("sase_jitter", float)),
    _F("-sase_duration", 1, F, "fs", "30",
       "SASE: FWHM of the pulse (sets the spike width, 1.825 eV fs / duration)",
       _dataset("sase_duration", float)),
    _F("-spectrum", 1, S, "file", "none",
       "pink-beam spectrum, lines 'wavelength_A weight' (the same for every frame)",
       _dataset("spectrum")),
    _F("-spectrum_channels", 1, I, "sources", "100",
       "sources per frame of -sase_bandwidth / -spectrum (equal-photon quantiles)",
       _dataset("spectrum_channels", int)),
    _F("-dose", 1, F, "MGy", "off",
       "radiation damage: dose per frame (frame i renders at (i + 1/2) x dose)",
       _dataset("dose", float)),
    _F("-mu_en", 1, F, "1/mm", "off",
       "radiation damage with the dose per frame from the fluence: the crystal's "
       "energy-absorption coefficient (RADDOSE-style: fluence x E x mu_en / density)",
       _dataset("mu_en", float)),
    _F("-crystal_density", 1, F, "g/cm^3", "1.2", "crystal density for -mu_en's dose",
       _dataset("crystal_density", float)),
    _F("-b_per_mgy", 1, F, "A^2/MGy", "1.0",
       "radiation damage: B-factor increase per MGy (I x exp(-B/(2 d^2)))",
       _dataset("b_per_mgy", float)),
    _F("-damaged_mtz", 1, S, "file", "none",
       "specific damage (MLFSOM): the damaged structure factors (MTZ, or a -hkl text "
       "file); intensities mix by dose", _dataset("damaged_mtz")),
    _F("-half_dose", 1, F, "MGy", "none",
       "specific damage: the dose at which half the cells are damaged",
       _dataset("half_dose", float)),
    # multi-panel detectors (nbsim.geometry.panels, docs/panels.md)
    _F("-panels", 1, S, "file", "none (one flat panel)",
       "multi-panel detector from a JSON panel file", _panels_file, "detector.panels"),
    _F("-detector_preset", 1, S, "eiger2_16m|jungfrau_4m", "none",
       "built-in multi-panel detector (its frame placed by the detector flags)",
       _detector_preset, "detector.panels"),
]

FLAG_INDEX: Dict[str, Flag] = {n: f for f in FLAGS for n in f.names}
assert len(FLAG_INDEX) == sum(len(f.names) for f in FLAGS), "duplicate flag name"


def flag_for_param(param: str) -> Optional[str]:
    """The first flag that sets a Config parameter (e.g. 'detector.pixel_size' -> '-pixel')."""
    for f in FLAGS:
        if param in f.targets:
            return f.names[0]
    return None


def _looks_like_flag(tok: str) -> bool:
    return tok in FLAG_INDEX or tok in HELP_FLAGS or (
        tok.startswith("-") and not _NUMBER_RE.match(tok) and len(tok) > 1)


def tokenize(argv: Sequence[str]):
    """Split argv into ``(flag, values)`` pairs (values converted per the flag's kind).

    Raises :class:`ArgError` for unknown flags, missing values and values that are not
    numbers where numbers are needed.  ``-h``/``-help``/``--help`` give ``("-h", [])``.
    """
    return [(flag, vals) for flag, vals, _raw in _tokenize(argv)]


def _tokenize(argv: Sequence[str]):
    """As :func:`tokenize`, with the raw value strings as a third element."""
    out = []
    i = 0
    argv = [str(a) for a in argv]
    while i < len(argv):
        tok = argv[i]
        if tok in HELP_FLAGS:
            out.append(("-h", [], []))
            i += 1
            continue
        f = FLAG_INDEX.get(tok)
        if f is None:
            if tok.startswith("-") and len(tok) > 1 and not _NUMBER_RE.match(tok):
                raise ArgError(f"{tok}: unknown flag (nbsim -h lists the flags)")
            raise ArgError(f"{tok!r}: value without a flag before it")
        if f.nargs == -1:        # -misset: 'random' or three angles
            if i + 1 < len(argv) and "rand" in argv[i + 1]:
                out.append((tok, ["random"], [argv[i + 1]]))
                i += 2
                continue
            n = 3
        else:
            n = f.nargs
        vals = argv[i + 1:i + 1 + n]
        missing = len(vals) < n or any(_looks_like_flag(v) for v in vals)
        if missing:
            got = 0
            while got < len(vals) and not _looks_like_flag(vals[got]):
                got += 1
            meta = f" ({f.metavar})" if f.metavar else ""
            raise ArgError(f"{tok}: needs {n} value{'s' if n > 1 else ''}{meta}, got {got}")
        raw = list(vals)
        if f.kind in (F, V3):
            vals = [_num(tok, v) for v in vals]
        elif f.kind == I:
            vals = [_num(tok, v, "int") for v in vals]
        out.append((tok, vals, raw))
        i += 1 + n
    return out


def _read_header(st, flag, path, is_mask):
    """C l.418-502: a -mask / -img header sets the detector before the other flags."""
    from .io.smv import c_overrides_from_smv, read_smv
    header, image = _load(read_smv, flag, path)
    d = st.cfg.detector
    v = c_overrides_from_smv(header["_c_values"], "mask" if is_mask else "img",
                             pixel_size_m=d.pixel_size)
    sp, fp = image.shape
    d.fpixels, d.spixels = fp, sp
    d.pixel_size = v.get("pixel_size", d.pixel_size)
    d.detsize_f, d.detsize_s = v["detsize_f"], v["detsize_s"]
    for key, attr in (("distance", "distance"), ("close_distance", "close_distance"),
                      ("Xbeam", "beam_center_x"), ("Ybeam", "beam_center_y"),
                      ("ORGX", "orgx"), ("ORGY", "orgy")):
        if key in v:
            setattr(d, attr, v[key])
    if "lambda0" in v:
        st.cfg.beam.wavelength = v["lambda0"]
    if "phi0" in v:
        st.cfg.crystal.phi0 = v["phi0"]
    if "osc" in v:
        st.cfg.crystal.osc = v["osc"]
    if is_mask:
        d.mask = (image != 0).astype(np.uint8)


def parse_args(argv: Sequence[str], *, read_files: bool = True) -> ParsedArgs:
    """Parse nanoBragg flags into a :class:`ParsedArgs` (Config in SI units + outputs).

    With ``read_files`` (default) the input files are read here (-mask, -img, -mat,
    -sourcefile, -hkl or the dump file) and a missing cell or missing structure factors
    are errors; every problem raises :class:`ArgError` naming the flag or file.
    """
    triples = _tokenize(argv)
    pairs = [(flag, vals) for flag, vals, _raw in triples]
    st = _State()
    # C reads the -mask header, then the -img header, before any other flag (l.400-502);
    # the last -mask / -img given is the one read
    mask_file = [v[0] for f, v in pairs if f == "-mask"]
    img_file = [v[0] for f, v in pairs if f == "-img"]
    if read_files:
        if mask_file:
            _read_header(st, "-mask", mask_file[-1], True)
        if img_file:
            _read_header(st, "-img", img_file[-1], False)
    for flag, vals, raw in triples:
        if flag == "-h":
            continue
        f = FLAG_INDEX[flag]
        f.apply(st, flag, vals)
        for t in f.targets:
            st.given[t] = (flag, raw)

    cfg = st.cfg
    d = cfg.detector
    out = st.out
    d.convention = st.convention
    # under a named convention the convention decides the pivot (C l.1172-1255); only
    # CUSTOM keeps what parsing left in detector_pivot
    d.pivot = st.pivot if st.convention == "CUSTOM" else None
    if st.pix0 is not None:
        # c-parity: C's strstr("-pix0_vector") also takes -pix0_vector_mm, in metres
        scale = 1e-3 if (st.pix0_mm and cfg.mode == "spec") else 1.0
        d.pix0_vector = tuple(v * scale for v in st.pix0)
    cfg.crystal.misset_random = st.misset_random
    out.calculate_noise = not out.nonoise
    if out.printout or out.printout_pixel is not None:
        out.progress = False            # C prints no progress meter with -printout

    notes = list(st.notes)
    if st.convention != "CUSTOM":
        conv_pivot = "BEAM" if st.convention in ("MOSFLM", "DENZO", "ADXV") else "SAMPLE"
        # -distance is left out: under XDS/DIALS it still sets the distance
        overridden = [fl for fl, p in st.pivot_requests if p != conv_pivot and fl != "-distance"]
        if overridden:
            other = "sample" if conv_pivot == "BEAM" else "beam"
            names = ", ".join(dict.fromkeys(overridden))
            notes.append(f"the {st.convention} convention pivots the detector about the "
                         f"{'beam spot' if conv_pivot == 'BEAM' else 'sample'}: the {other} "
                         f"pivot asked for by {names} is overridden, as in nanoBragg.c "
                         f"(vector flags select CUSTOM, which honours it)")

    hkl_data = None
    inputs = None
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
        if getattr(st, "input_requests", None):
            from .inputs.flags import resolve_inputs
            inputs = resolve_inputs(st, cfg, notes)
        if inputs is not None and inputs.hkl_data is not None:
            hkl_data = inputs.hkl_data       # -mtz / -sfcif / -model, expanded to P1
            _apply_structure(cfg, hkl_data)
        elif st.hkl is not None:
            from .io.hkl import read_hkl
            default_F = cfg.structure.default_F
            hkl_data = _load(lambda p: read_hkl(p, default_F), "-hkl", st.hkl)
            _apply_structure(cfg, hkl_data)
            out.write_dump = True
        elif os.path.isfile(out.dumpfile):
            # C: with no -hkl, the dump file of a previous run is read if it opens
            from .io.fdump import read_fdump
            default_F = cfg.structure.default_F
            hkl_data = _load(lambda p: read_fdump(p, default_F=default_F), "-dumpfile",
                             out.dumpfile)
            _apply_structure(cfg, hkl_data)
            used_dump = out.dumpfile
        if cfg.structure.hkls == 0 and cfg.structure.default_F == 0.0:
            raise ArgError(f"-hkl: no structure factors (no -hkl file, no {out.dumpfile} "
                           f"to read, and -default_F is 0)")
        if cfg.crystal.cell is None and cfg.crystal.a_star_matrix is None:
            raise ArgError("-cell: no unit cell (give -cell a b c alpha beta gamma, or -mat)")
    _check_distinct_outputs(out, st.hkl is not None and out.write_dump)
    return ParsedArgs(config=cfg, outputs=out, threads=st.threads, notes=notes,
                      hkl_file=st.hkl, mat_file=st.mat, used_dump=used_dump,
                      pivot_requests=[fl for fl, _ in st.pivot_requests],
                      mask_file=mask_file[-1] if mask_file else None,
                      img_file=img_file[-1] if img_file else None,
                      source_file=st.sourcefile, hkl_data=hkl_data, given=dict(st.given),
                      inputs=inputs)


def _check_distinct_outputs(out, with_dump):
    """Two outputs naming one file would silently replace each other: refused."""
    from .limits import check_distinct_outputs
    targets = [("-dumpfile", out.dumpfile)] if with_dump else []
    targets += [("-floatfile", out.floatfile), ("-intfile", out.intfile)]
    if out.write_pgm:
        targets.append(("-pgmfile", out.pgmfile))
    if out.calculate_noise:
        targets.append(("-noisefile", out.noisefile))
    try:
        check_distinct_outputs(targets)
    except ValueError as e:
        raise ArgError(str(e)) from None


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
        raise ArgError(f"{flag}: {msg}" if str(path) in msg else f"{flag}: {path}: {msg}") \
            from None


def _apply_structure(cfg: Config, grid):
    s = cfg.structure
    s.grid = grid.F
    s.h_min, s.k_min, s.l_min = grid.h_min, grid.k_min, grid.l_min
    s.h_range, s.k_range, s.l_range = grid.h_range, grid.k_range, grid.l_range
    s.hkls = grid.hkls


_SECTIONS = (("-cell", "crystal"), ("-hkl", "structure factors"), ("-lambda", "beam"),
             ("-distance", "detector"), ("-oversample", "sampling"),
             ("-floatfile", "outputs"), ("-c_parity", "nbsim"), ("-nimages", "datasets"))


def usage() -> str:
    """The -h text: every flag with its synonyms, values, units and default."""
    lines = [
        "usage: nbsim [flags]          (nanoBragg's flags, units and defaults)",
        "       nbsim -h               (this text)",
        "",
        "Renders a nanocrystal diffraction image and writes floatimage.bin, intimage.img,",
        "image.pgm and noiseimage.img (unless told otherwise). A unit cell (-cell or -mat)",
        "and structure factors (-hkl, a dump file, or -default_F) are required.",
        "Exit status: 0 success, 2 bad flags or input files, 1 unexpected failure.",
    ]
    section = dict(_SECTIONS)
    for f in FLAGS:
        if f.names[0] in section:
            lines += ["", f"{section[f.names[0]]}:"]
        names = ", ".join(f.names)
        if f.nargs == 0:
            arity = ""
        elif f.metavar:
            arity = " " + f.metavar
        elif f.kind == S:
            arity = " FILE" if f.units == "file" else " " + f.units
        else:
            arity = " " + " ".join(["N" if f.kind == I else "X"] * f.nargs)
        units = f" [{f.units}]" if f.units and not (f.kind == S and not f.metavar) else ""
        lines.append(f"  {names}{arity}{units}  (default: {f.default})")
        lines.append(f"        {f.help}")
    return "\n".join(lines) + "\n"

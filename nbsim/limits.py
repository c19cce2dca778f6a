"""Physical ranges and work/memory bounds a render must satisfy before anything is allocated.

:meth:`nbsim.config.Config.validate` calls :func:`check_config` (values and the step counts
nanoBragg's rules will derive from them) and :func:`nbsim.plan.make_plan` calls
:func:`check_plan` (what needs the resolved crystal and sources: the crystal size in cells,
the auto-selected oversampling, the total work).  Every failure is a
:class:`~nbsim.errors.ConfigError` naming the parameter (the CLI turns it into the flag).

Bounds (documented in ``docs/validation.md``):

* wavelength (``-lambda``/``-energy``, source-file and dispersion-swept values) in
  [1e-13 m, 1e-6 m] (0.001 A .. 10000 A);
* pixel size in [1 nm, 1 m]; distance and detector size in (0, 10 km]; at most
  100000 pixels per side;
* ``-flux``, ``-exposure``, ``-beamsize`` >= 0 and a finite fluence;
  Kahn polarisation factor in [-1, 1];
* unit cell lengths in (0, 1e6] A with angles that make a cell of positive volume;
  at most 1e6 cells per crystal axis (whether from ``-N`` or a crystal size);
* step counts: phi steps and mosaic domains <= 1e6 each, sources <= 1e6, sensor layers
  <= 100000, oversampling <= 1000 (given or auto-selected);
* memory of the tables built before the render (structure-factor grid, phi x mosaic
  rotation table): <= ``NBSIM_MAX_TABLE_GIB`` GiB (default 4);
* estimated work, pixels x subpixels x sensor layers x sources x phi steps x domains:
  <= ``NBSIM_MAX_WORK`` sub-path evaluations (default 1e15: days of CPU time even at
  1e9 evaluations/s; ``NBSIM_MAX_WORK=inf`` removes the bound);
* the detector plane must face the sample (close distance > 0), else every solid angle
  and so every pixel is negative;
* a ``-roi`` that selects no pixel is refused (a ROI partly outside is clipped);
* after the render (:func:`check_image`): a finite image <= 3.4e38 photons per pixel.
"""
from __future__ import annotations

import math
import os
import numpy as np

from .errors import ConfigError

LAMBDA_MIN = 1e-13          # m
LAMBDA_MAX = 1e-6           # m
PIXEL_MIN = 1e-9            # m
PIXEL_MAX = 1.0             # m
LENGTH_MAX = 1e4            # m (distances, detector size)
MAX_PIXELS_PER_SIDE = 100000
CELL_MAX_A = 1e6            # Angstrom
MAX_CELLS_PER_AXIS = 1e6
MAX_STEPS = 1_000_000       # phi steps, mosaic domains
MAX_SOURCES = 1_000_000
MAX_THICKSTEPS = 100_000
MAX_OVERSAMPLE = 1000
DEFAULT_MAX_WORK = 1e15
DEFAULT_MAX_TABLE_GIB = 4.0


def max_work() -> float:
    """The work bound (sub-path evaluations): ``NBSIM_MAX_WORK`` or 1e15."""
    return _env_float("NBSIM_MAX_WORK", DEFAULT_MAX_WORK)


def max_table_bytes() -> float:
    """The bound on the structure-factor grid and the rotation table, bytes each."""
    return _env_float("NBSIM_MAX_TABLE_GIB", DEFAULT_MAX_TABLE_GIB) * 2.0 ** 30


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        v = float(raw)
    except ValueError:
        raise ConfigError(name, raw, "must be a number (environment variable)") from None
    if not v > 0:
        raise ConfigError(name, raw, "must be > 0 (environment variable)")
    return v


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2.0 ** 30:.3g} GiB"


def check_hkl_grid(shape, what: str = "HKL index ranges") -> None:
    """Refuse a structure-factor grid of ``shape`` (h, k, l extents) above the table bound,
    before it is allocated.  Raises :class:`nbsim.io.errors.FormatError` (a file problem)."""
    from .errors import FormatError
    n = 1.0
    for s in shape:
        n *= max(float(s), 0.0)
    nbytes = 8.0 * n
    if nbytes > max_table_bytes():
        h, k, l = (int(s) for s in shape)
        raise FormatError(f"{what} need a {h} x {k} x {l} structure-factor grid "
                          f"({_gib(nbytes)}; the bound is {_gib(max_table_bytes())}, "
                          f"NBSIM_MAX_TABLE_GIB): an index is far outside the others?")


def _in_range(param, v, lo, hi, unit, lo_open=False):
    if v is None:
        return
    fv = float(v)
    bad = not math.isfinite(fv) or fv > hi or (fv <= lo if lo_open else fv < lo)
    if bad:
        lo_s = f"> {lo:g}" if lo_open else f">= {lo:g}"
        raise ConfigError(param, v, f"must be {lo_s} and <= {hi:g} {unit}")


def _nonneg(param, v):
    if v is not None and not float(v) >= 0:
        raise ConfigError(param, v, "must be >= 0")


def _wavelength_ok(lam: float) -> bool:
    return math.isfinite(lam) and LAMBDA_MIN <= lam <= LAMBDA_MAX


_LAMBDA_WHY = (f"wavelength must be between {LAMBDA_MIN:g} and {LAMBDA_MAX:g} m "
               f"({LAMBDA_MIN * 1e10:g}-{LAMBDA_MAX * 1e10:g} A, "
               f"{12398.42 / (LAMBDA_MAX * 1e10):.3g} eV-{12398.42 / (LAMBDA_MIN * 1e10):.3g} eV)")


def check_config(cfg) -> None:
    """Physical ranges and derived step counts; called at the end of Config.validate."""
    d, b, c, s, st = cfg.detector, cfg.beam, cfg.crystal, cfg.sampling, cfg.structure
    # beam
    if not _wavelength_ok(float(b.wavelength)):
        raise ConfigError("beam.wavelength", b.wavelength, _LAMBDA_WHY)
    for name in ("flux", "exposure", "beamsize"):
        _nonneg(f"beam.{name}", getattr(b, name))
    if b.polarization is not None and not -1.0 <= float(b.polarization) <= 1.0:
        raise ConfigError("beam.polarization", b.polarization,
                          "Kahn polarization factor must be between -1 and 1")
    if b.flux != 0.0 and b.exposure > 0.0 and b.beamsize == 0.0:
        raise ConfigError("beam.beamsize", b.beamsize,
                          "must be > 0 with -flux (the fluence is flux x exposure / beamsize^2)")
    with np.errstate(all="ignore"):
        try:
            fluence = b.photon_fluence()
        except ArithmeticError:
            fluence = math.inf
    if not (math.isfinite(fluence) and fluence >= 0):
        raise ConfigError("beam.flux", b.flux, f"gives a fluence of {fluence:g} photons/m^2 "
                                               f"(flux x exposure / beamsize^2 must be finite)")
    if b.dispersion is not None and float(b.dispersion) >= 2.0:
        raise ConfigError("beam.dispersion", b.dispersion,
                          "must be < 2 (200%): wider spectra have wavelengths <= 0")
    if b.sources is not None:
        _check_source_table(b.sources)
    # detector
    _in_range("detector.pixel_size", d.pixel_size, PIXEL_MIN, PIXEL_MAX, "m")
    _in_range("detector.distance", d.distance, 0.0, LENGTH_MAX, "m", lo_open=True)
    _in_range("detector.close_distance", d.close_distance, 0.0, LENGTH_MAX, "m", lo_open=True)
    for name in ("detsize_f", "detsize_s"):
        _in_range(f"detector.{name}", getattr(d, name), 0.0, LENGTH_MAX, "m", lo_open=True)
    for name in ("beam_center_x", "beam_center_y", "xclose", "yclose"):
        _in_range(f"detector.{name}", getattr(d, name), -LENGTH_MAX, LENGTH_MAX, "m")
    for name in ("orgx", "orgy"):
        _in_range(f"detector.{name}", getattr(d, name), -1e9, 1e9, "pixels")
    if d.mu is not None:
        _nonneg("detector.mu", d.mu)
    if d.thick is not None:
        _in_range("detector.thick", d.thick, -LENGTH_MAX, 1.0, "m")
    pixel = float(d.pixel_size)
    for name, size, given in (("fpixels", d.detsize_f, d.fpixels),
                              ("spixels", d.detsize_s, d.spixels)):
        if not given:
            with np.errstate(all="ignore"):
                n = float(size) / pixel - 0.5
            if not n <= MAX_PIXELS_PER_SIDE:
                raise ConfigError(f"detector.detsize_{name[0]}", size,
                                  f"gives {n:.4g} pixels of {pixel * 1e3:g} mm per side "
                                  f"(at most {MAX_PIXELS_PER_SIDE})")
    # crystal
    if c.cell is not None and len(c.cell) == 6:
        _check_cell(c.cell)
    for name in ("sample_x", "sample_y", "sample_z"):
        _in_range(f"crystal.{name}", getattr(c, name), -LENGTH_MAX, LENGTH_MAX, "m")
    _in_range("crystal.fudge", c.fudge, 0.0, 1e6, "", lo_open=True)
    # sampling
    _in_range("sampling.water_size", s.water_size, 0.0, 1.0, "m")
    _in_range("sampling.dmin", s.dmin, 0.0, 1.0, "m")
    if s.oversample is not None and int(s.oversample) > MAX_OVERSAMPLE:
        raise ConfigError("sampling.oversample", s.oversample, f"must be <= {MAX_OVERSAMPLE}")
    # structure factors
    if st.grid is not None:
        shape = np.shape(st.grid)
        if 8.0 * float(np.prod([float(x) for x in shape])) > max_table_bytes():
            raise ConfigError("structure.grid", shape,
                              f"is larger than {_gib(max_table_bytes())} (NBSIM_MAX_TABLE_GIB)")
    check_counts(cfg)


def _check_cell(cell) -> None:
    a, b_, c_, al, be, ga = (float(v) for v in cell)
    for v in (a, b_, c_):
        if not (math.isfinite(v) and 0.0 < v <= CELL_MAX_A):
            raise ConfigError("crystal.cell", tuple(cell),
                              f"cell lengths must be > 0 and <= {CELL_MAX_A:g} A")
    for v in (al, be, ga):
        if not (math.isfinite(v) and 0.0 < v < 180.0):
            raise ConfigError("crystal.cell", tuple(cell),
                              "cell angles must be between 0 and 180 degrees")
    ca, cb, cg = (math.cos(math.radians(v)) for v in (al, be, ga))
    vol2 = 1.0 - ca * ca - cb * cb - cg * cg + 2.0 * ca * cb * cg
    if not vol2 > 1e-12:
        raise ConfigError("crystal.cell", tuple(cell),
                          "these angles give no unit cell (zero or negative volume)")


def _check_source_table(sources) -> None:
    src = np.asarray(sources, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 5:
        raise ConfigError("beam.sources", src.shape, "must be an (n, 5) array X Y Z weight lambda")
    if src.shape[0] > MAX_SOURCES:
        raise ConfigError("beam.sources", src.shape[0], f"at most {MAX_SOURCES} sources")
    if np.any(np.isinf(src)):
        row = int(np.nonzero(np.isinf(src).any(axis=1))[0][0])
        raise ConfigError("beam.sources", f"line {row + 1}",
                          f"source {row + 1}: values must be finite")
    lam = src[:, 4]
    given = ~np.isnan(lam)
    bad = given & ~((lam >= LAMBDA_MIN) & (lam <= LAMBDA_MAX))
    if np.any(bad):
        row = int(np.nonzero(bad)[0][0])
        raise ConfigError("beam.sources", f"line {row + 1}: lambda {lam[row]:g} m",
                          f"source {row + 1} has lambda {lam[row]:g} m: {_LAMBDA_WHY}")
    pos = src[:, :3]
    at_sample = np.all(pos == 0.0, axis=1)
    if np.any(at_sample):
        row = int(np.nonzero(at_sample)[0][0])
        raise ConfigError("beam.sources", f"line {row + 1}: position 0 0 0",
                          f"source {row + 1} is at the sample (X Y Z = 0 0 0): no direction")


def predicted_counts(cfg):
    """(sources, phi steps, mosaic domains, sensor layers) nanoBragg's rules will give,
    computed without building anything.  Raises ConfigError for counts that overflow."""
    from .steps import resolve_mosaic, resolve_phi, source_steps
    b, c, d = cfg.beam, cfg.crystal, cfg.detector
    if b.sources is not None and len(b.sources) > 0:
        nsrc = len(b.sources)
    else:
        nsrc = 1
        for name, args in (("hdiv", (b.hdivsteps, b.hdivrange, b.hdivstep)),
                           ("vdiv", (b.vdivsteps, b.vdivrange, b.vdivstep)),
                           ("disp", (b.dispsteps, b.dispersion, b.dispstep))):
            nsrc *= _count(_which(f"beam.{name}steps", f"beam.{name}step", args[0]),
                           args, lambda a: source_steps(a[0], a[1], a[2], 1.0)[0], MAX_SOURCES)
    nphi = _count(_which("crystal.phisteps", "crystal.phistep", c.phisteps),
                  (c.phi0, c.osc, c.phistep, c.phisteps),
                  lambda a: resolve_phi(*a)[1], MAX_STEPS)
    ndom = _count("crystal.mosaic_domains", (c.mosaic_spread, c.mosaic_domains),
                  lambda a: resolve_mosaic(*a)[1], MAX_STEPS)
    nthick = _count(_which("detector.thicksteps", "detector.thickstep", d.thicksteps),
                    (d.thick, d.thickstep, d.thicksteps), _thicksteps, MAX_THICKSTEPS)
    return nsrc, nphi, ndom, nthick


def _which(count_param, step_param, count):
    """The parameter to name: the step count when it was given, else the step size."""
    return count_param if (count is not None and count > 0) else step_param


def _count(param, args, rule, bound):
    with np.errstate(all="ignore"):
        try:
            n = rule(args)
        except (OverflowError, ValueError, ZeroDivisionError):
            n = math.inf
    if not (isinstance(n, (int, np.integer)) and 0 < n <= bound):
        raise ConfigError(param, None, f"gives {_fmt_count(n)} steps (at most {bound})")
    return int(n)


def _fmt_count(n):
    try:
        return f"{float(n):.4g}"
    except (OverflowError, TypeError, ValueError):
        return "too many"


def _thicksteps(args):
    """detector.py's sensor-layer rule (C l.1596-1633), the count only."""
    thick, thickstep, thicksteps = args
    thick = float(thick or 0.0)
    thickstep = -1.0 if thickstep is None else float(thickstep)
    thicksteps = -1 if thicksteps is None else int(thicksteps)
    if thicksteps <= 0:
        if thick < 0.0:
            return 1 if thickstep <= 0.0 else 2
        if thickstep <= 0.0:
            return 2
        return int(math.ceil(thick / thickstep))
    return thicksteps


def check_counts(cfg) -> None:
    nsrc, nphi, ndom, nthick = predicted_counts(cfg)
    if nsrc > MAX_SOURCES:
        raise ConfigError("beam.sources", nsrc, f"divergence x dispersion gives {nsrc} sources "
                                                f"(at most {MAX_SOURCES})")
    table = 2.0 * 9 * 8 * nphi * ndom
    if table > max_table_bytes():
        raise ConfigError("crystal.mosaic_domains", ndom,
                          f"{nphi} phi steps x {ndom} mosaic domains need a "
                          f"{_gib(table)} rotation table (bound {_gib(max_table_bytes())}, "
                          f"NBSIM_MAX_TABLE_GIB)")


def check_plan(cfg, cryst, srcs, detector, oversample: int, recommended: int,
               auto_oversample: bool, npix: int) -> None:
    """Bounds that need the resolved crystal, sources and detector (from make_plan)."""
    c = cfg.crystal
    for axis, n, size_param in (("a", cryst.Na, "crystal.sample_x"),
                                ("b", cryst.Nb, "crystal.sample_y"),
                                ("c", cryst.Nc, "crystal.sample_z")):
        if not n <= MAX_CELLS_PER_AXIS:
            size = getattr(c, size_param.split(".")[1])
            param = size_param if size and size > 0 else f"crystal.N{axis}"
            value = size if size and size > 0 else n
            raise ConfigError(param, value, f"the crystal is {n:.4g} unit cells along {axis} "
                                            f"(at most {MAX_CELLS_PER_AXIS:g})")
    lam = np.asarray(srcs.wavelengths, dtype=np.float64)
    bad = ~((lam >= LAMBDA_MIN) & (lam <= LAMBDA_MAX))
    if np.any(bad):
        i = int(np.nonzero(bad)[0][0])
        param = "beam.sources" if cfg.beam.sources is not None else "beam.dispersion"
        raise ConfigError(param, f"source {i + 1}: lambda {lam[i]:g} m",
                          f"source {i + 1} has lambda {lam[i]:g} m: {_LAMBDA_WHY}")
    if not np.all(np.isfinite(srcs.directions)):
        raise ConfigError("beam.sources", "direction", "a source direction is not finite")
    if auto_oversample and recommended > MAX_OVERSAMPLE:
        sized = [p for p in ("sample_x", "sample_y", "sample_z") if getattr(c, p) > 0]
        big = max(("Na", "Nb", "Nc"), key=lambda p: getattr(c, p))
        raise ConfigError(f"crystal.{sized[0] if sized else big}", None,
                          f"the crystal ({cryst.xtalsize_max * 1e3:.4g} mm) makes nanoBragg's "
                          f"rule select {recommended}-fold oversampling (more than "
                          f"{MAX_OVERSAMPLE}); give -oversample (e.g. -oversample 1) or a "
                          f"smaller crystal")
    if not detector.close_distance > 0:
        d = cfg.detector
        moved = [p for p in ("twotheta", "rotx", "roty", "rotz") if getattr(d, p)]
        param = f"detector.{moved[0]}" if moved else (
            "detector.odet_vector" if d.odet_vector is not None else "detector.distance")
        raise ConfigError(param, getattr(d, param.split(".")[1]),
                          f"the detector faces away from the sample (its plane is "
                          f"{detector.close_distance * 1e3:.4g} mm along its normal): every "
                          f"pixel would see a negative solid angle")
    fp, sp = detector.fpixels, detector.spixels
    if npix == 0 and fp > 0 and sp > 0 and cfg.detector.roi is not None:
        raise ConfigError("detector.roi", tuple(cfg.detector.roi),
                          f"selects no pixel of the {fp}x{sp} detector (pixels 0-{fp - 1} "
                          f"fast, 0-{sp - 1} slow; xmin xmax ymin ymax, inclusive)")
    work = (float(npix) * float(oversample) ** 2 * detector.thicksteps * srcs.count
            * cryst.phisteps * cryst.mosaic_domains)
    bound = max_work()
    if work > bound:
        raise ConfigError("sampling.oversample", oversample,
                          f"the render needs about {work:.3g} sub-path evaluations "
                          f"({npix} pixels x {oversample}^2 subpixels x "
                          f"{detector.thicksteps} layers x {srcs.count} sources x "
                          f"{cryst.phisteps} phi steps x {cryst.mosaic_domains} domains), "
                          f"more than the bound {bound:.3g} (NBSIM_MAX_WORK)")


def check_distinct_outputs(targets) -> None:
    """``targets``: (flag, path) pairs of the files one run writes.  Raises ValueError naming
    both flags when two name the same file."""
    seen = {}
    for flag, path in targets:
        if not path:
            continue
        key = os.path.normcase(os.path.realpath(os.path.abspath(path)))
        if key in seen:
            raise ValueError(f"{flag} {path}: the same file as {seen[key][0]} {seen[key][1]} "
                             f"(each output needs its own file)")
        seen[key] = (flag, path)


FLOAT32_MAX = float(np.finfo(np.float32).max)


class ImageRangeError(ConfigError):
    """The rendered image is out of range; its message stands alone (it is found after
    the render, from the product of several parameters, not from one flag)."""

    def __str__(self):
        return self.why


def check_image(image, cfg):
    """The rendered image (photons per pixel) must be finite and fit the float32 output
    files; ``image`` is returned unchanged.  A pixel beyond 3.4e38 photons comes from an
    absurd fluence or structure factor, which the input ranges alone cannot exclude
    (the intensity is their product)."""
    arr = np.asarray(image)
    with np.errstate(all="ignore"):
        hi = float(np.max(arr)) if arr.size else 0.0
        finite = bool(np.all(np.isfinite(arr)))
    if not finite or hi > FLOAT32_MAX:
        b = cfg.beam
        what = "not finite" if not finite else f"a pixel of {hi:.3g} photons"
        param = "beam.flux" if b.flux else "beam.fluence"
        raise ImageRangeError(param, b.flux if b.flux else b.fluence,
                          f"the image overflows ({what}; at most {FLOAT32_MAX:.3g} fits the "
                          f"float32 files): the fluence, -default_F or the HKL amplitudes "
                          f"are too large")
    return image

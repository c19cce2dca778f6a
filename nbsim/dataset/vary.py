"""``-vary FILE.json``: per-frame random values of nbsim's numeric flags (stills).

The file is a JSON object; each key is a flag name without the dash (:data:`VARY_KEYS`)
and each value one distribution, in the flag's own units::

    {"distance": {"normal": 0.5},              # mm, added to the run's value
     "lambda":   {"uniform": [0.98, 1.02]},    # A, replaces it
     "mosaic":   {"lognormal": 0.2},           # multiplies it by exp(N(0, 0.2))
     "cell":     {"normal": [0.5, 0.5, 0.5, 0, 0, 0]},
     "misset":   {"normal": 1.0}}              # deg, every angle

* ``{"normal": SD}``: value = run's value + SD z, z ~ N(0, 1);
* ``{"uniform": [LO, HI]}``: value = LO + (HI - LO) u, u ~ U[0, 1) (LO <= HI);
* ``{"lognormal": SD}``: value = run's value x exp(SD z) (keeps the sign: positive
  quantities only).

A vector key (``cell``: a b c (A) alpha beta gamma (deg); ``misset``: x y z (deg)) takes
one SD (every component) or one per component; ``uniform`` takes one [LO, HI] or one per
component.  Components are drawn independently.  ``N`` sets Na = Nb = Nc (one draw),
``Na``/``Nb``/``Nc`` one each; N values are rounded to the nearest integer
(``numpy.rint``).

Valid values (:data:`VARY_KEYS` bounds): a draw outside its key's range (distance,
lambda, fluence, cell lengths > 0; cell angles in (0, 180) deg with a positive cell
volume; N >= 1 after rounding; mosaic >= 0) is **redrawn** from the same stream
(a truncated distribution), at most 1000 times, then the job is refused.  Refused when
the file is read: unknown or non-numeric keys, a missing/unknown/extra distribution, a
negative SD, LO > HI, a uniform range reaching outside the key's range, lognormal of a
quantity that can be zero or negative (Xbeam, misset, ...) or is 0 in the run.

Randomness (docs/datasets.md): frame i's values of key k for lattice l come from
``numpy.random.default_rng([frame_seed(S, i, "vary"), l, code(k)])`` (NumPy's
SeedSequence -> PCG64; ``code`` = the key's position in :data:`VARY_KEYS`, fixed),
so any frame, lattice and key is drawn alone: adding a key or a lattice does not change
the others' values.  Frame-level keys (detector and beam: one image) use l = 0;
crystal keys are drawn per lattice.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..units import RTD

__all__ = ["VaryKey", "VARY_KEYS", "VarySpec", "read_vary", "parse_vary",
           "apply_parameters", "base_values", "MAX_REDRAWS"]

MAX_REDRAWS = 1000
_INF = math.inf


@dataclass(frozen=True)
class VaryKey:
    name: str                 # flag without the dash
    flag: str                 # the flag whose conversion applies the value
    level: str                # "frame" (detector, beam) or "crystal" (per lattice)
    ncomp: int = 1
    lo: float = -_INF         # valid range (exclusive for > 0 bounds, see lo_open)
    hi: float = _INF
    lo_open: bool = False
    integer: bool = False
    units: str = ""


#: the keys -vary accepts, in a fixed order (their stream codes): append, never reorder
VARY_KEYS: Tuple[VaryKey, ...] = (
    VaryKey("distance", "-distance", "frame", lo=0.0, lo_open=True, units="mm"),
    VaryKey("lambda", "-lambda", "frame", lo=0.0, lo_open=True, units="A"),
    VaryKey("Xbeam", "-Xbeam", "frame", units="mm"),
    VaryKey("Ybeam", "-Ybeam", "frame", units="mm"),
    VaryKey("detector_rotx", "-detector_rotx", "frame", units="deg"),
    VaryKey("detector_roty", "-detector_roty", "frame", units="deg"),
    VaryKey("detector_rotz", "-detector_rotz", "frame", units="deg"),
    VaryKey("fluence", "-fluence", "frame", lo=0.0, lo_open=True, units="photons/m^2"),
    VaryKey("N", "-N", "crystal", lo=1.0, integer=True, units="cells"),
    VaryKey("Na", "-Na", "crystal", lo=1.0, integer=True, units="cells"),
    VaryKey("Nb", "-Nb", "crystal", lo=1.0, integer=True, units="cells"),
    VaryKey("Nc", "-Nc", "crystal", lo=1.0, integer=True, units="cells"),
    VaryKey("mosaic", "-mosaic", "crystal", lo=0.0, units="deg"),
    VaryKey("cell", "-cell", "crystal", ncomp=6, units="A, deg"),
    VaryKey("misset", "-misset", "crystal", ncomp=3, units="deg"),
)
_KEYS = {k.name: k for k in VARY_KEYS}
_CODES = {k.name: n for n, k in enumerate(VARY_KEYS)}
_POSITIVE = {"distance", "lambda", "fluence", "N", "Na", "Nb", "Nc", "mosaic", "cell"}


def _bounds(key: VaryKey, comp: int) -> Tuple[float, float, bool]:
    """(lo, hi, lo_open) of one component; hi is exclusive for the cell angles."""
    if key.name == "cell":
        return (0.0, _INF, True) if comp < 3 else (0.0, 180.0, True)
    return key.lo, key.hi, key.lo_open


def _valid(key: VaryKey, comp: int, v: float) -> bool:
    lo, hi, lo_open = _bounds(key, comp)
    if not math.isfinite(v):
        return False
    if v < lo or (lo_open and v == lo):
        return False
    if key.name == "cell" and comp >= 3:
        return v < hi
    return v <= hi


def _cell_volume_ok(cell) -> bool:
    ca, cb, cg = (math.cos(math.radians(x)) for x in cell[3:])
    return 1.0 - ca * ca - cb * cb - cg * cg + 2.0 * ca * cb * cg > 0.0


@dataclass(frozen=True)
class Dist:
    kind: str                      # normal | uniform | lognormal
    params: Tuple                  # per component: SD, or (LO, HI)


@dataclass(frozen=True)
class VarySpec:
    """The distributions of a -vary file: key name -> :class:`Dist` (file order kept)."""
    dists: Tuple[Tuple[str, Dist], ...]
    source: str = "-vary"

    @property
    def names(self) -> List[str]:
        return [n for n, _ in self.dists]

    def level_names(self, level: str) -> List[str]:
        return [n for n, _ in self.dists if _KEYS[n].level == level]

    @property
    def varies_frame(self) -> bool:
        """True when a detector or beam key varies (the frame's geometry / spectrum)."""
        return bool(self.level_names("frame"))

    def check_base(self, base: Dict[str, object]) -> None:
        """Refuse what the run's values make invalid (lognormal of 0, an invalid mean)."""
        for name, d in self.dists:
            key = _KEYS[name]
            if base.get(name) is None:
                raise ValueError(f"{name}: the run has no -{name} value to vary (give "
                                 f"-{name})")
            if d.kind == "uniform":
                continue
            b = np.atleast_1d(np.asarray(base[name], dtype=np.float64))
            for c in range(key.ncomp):
                if d.kind == "lognormal" and b[c] == 0.0:
                    raise ValueError(f"{name}: lognormal multiplies the run's value, "
                                     f"which is 0 (give the run's -{name}, or use uniform)")
                if not _valid(key, c, float(b[c])):
                    raise ValueError(f"{name}: the run's value {b[c]:g} is outside the "
                                     f"valid range")

    def draw(self, frame_seed: int, lattice: int, base: Dict[str, object],
             level: str) -> Dict[str, object]:
        """The values (flag units) of the keys of ``level`` for (frame seed, lattice);
        floats, or lists for vector keys."""
        out: Dict[str, object] = {}
        for name, d in self.dists:
            key = _KEYS[name]
            if key.level != level:
                continue
            rng = np.random.default_rng([int(frame_seed), int(lattice), _CODES[name]])
            b = np.atleast_1d(np.asarray(base[name] if base[name] is not None
                                         else np.zeros(key.ncomp), dtype=np.float64))
            for _attempt in range(MAX_REDRAWS):
                vals = [_draw_component(rng, key, c, d, float(b[c]))
                        for c in range(key.ncomp)]
                if any(v is None for v in vals):
                    raise ValueError(f"{name}: no valid value in {MAX_REDRAWS} draws "
                                     f"(frame seed {frame_seed}); narrow the distribution")
                if key.name != "cell" or _cell_volume_ok(vals):
                    break
            else:
                raise ValueError(f"cell: no valid cell in {MAX_REDRAWS} draws "
                                 f"(frame seed {frame_seed}); narrow the distribution")
            out[name] = vals[0] if key.ncomp == 1 else vals
        return out


def _draw_component(rng, key: VaryKey, comp: int, d: Dist, base: float):
    p = d.params[comp]
    for _ in range(MAX_REDRAWS):
        if d.kind == "normal":
            v = base + p * rng.standard_normal()
        elif d.kind == "lognormal":
            v = base * math.exp(p * rng.standard_normal())
        else:
            lo, hi = p
            v = lo + (hi - lo) * rng.random()
        v = float(v)
        if key.integer:
            v = float(np.rint(v))
        if _valid(key, comp, v):
            return v
    return None


def read_vary(path) -> VarySpec:
    """Read and check a -vary JSON file (ValueError / OSError with a one-line reason)."""
    with open(path) as fh:
        try:
            doc = json.load(fh)
        except json.JSONDecodeError as e:
            raise ValueError(f"not JSON: {e.msg} (line {e.lineno})") from None
    return parse_vary(doc, source=str(path))


def _numbers(name, what, x, n):
    """A number or a list of n numbers -> list of n floats."""
    vals = x if isinstance(x, list) else [x] * n
    if len(vals) != n:
        raise ValueError(f"{name}: {what}: expected one number or {n}, got {len(vals)}")
    out = []
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name}: {what}: expected finite numbers, got {v!r}")
        out.append(float(v))
    return out


def parse_vary(doc, source: str = "-vary") -> VarySpec:
    """Check a -vary document (a dict) and return its :class:`VarySpec`."""
    if not isinstance(doc, dict) or not doc:
        raise ValueError("expected a JSON object of flag names (e.g. "
                         "{\"distance\": {\"normal\": 0.5}})")
    dists = []
    for name, spec in doc.items():
        key = _KEYS.get(name)
        if key is None:
            raise ValueError(f"{name!r}: not a flag -vary can change (one of "
                             f"{', '.join(_KEYS)})")
        if not isinstance(spec, dict) or len(spec) != 1:
            raise ValueError(f"{name}: expected one distribution, e.g. {{\"normal\": SD}}, "
                             f"{{\"uniform\": [LO, HI]}} or {{\"lognormal\": SD}}")
        (kind, arg), = spec.items()
        n = key.ncomp
        if kind in ("normal", "lognormal"):
            sds = _numbers(name, kind, arg, n)
            if any(s < 0 for s in sds):
                raise ValueError(f"{name}: {kind}: the SD must be >= 0")
            if kind == "lognormal" and name not in _POSITIVE:
                raise ValueError(f"{name}: lognormal keeps the sign of a positive quantity; "
                                 f"{name} can be 0 or negative: use normal or uniform")
            params = tuple(sds)
        elif kind == "uniform":
            if not isinstance(arg, list) or not arg:
                raise ValueError(f"{name}: uniform: expected [LO, HI]")
            pairs = arg if isinstance(arg[0], list) else [arg] * n
            if len(pairs) != n:
                raise ValueError(f"{name}: uniform: expected one [LO, HI] or {n}")
            params = []
            for c, pr in enumerate(pairs):
                lo, hi = _numbers(name, "uniform [LO, HI]", pr, 2) if isinstance(pr, list) \
                    and len(pr) == 2 else (None, None)
                if lo is None:
                    raise ValueError(f"{name}: uniform: expected [LO, HI]")
                if lo > hi:
                    raise ValueError(f"{name}: uniform: LO {lo:g} > HI {hi:g}")
                blo, bhi, lo_open = _bounds(key, c)
                bad_hi = hi >= bhi if key.name == "cell" and c >= 3 else hi > bhi
                if lo < blo or (lo_open and lo == blo) or bad_hi:
                    raise ValueError(f"{name}: uniform [{lo:g}, {hi:g}] reaches outside "
                                     f"the valid range of {name}")
                params.append((lo, hi))
            params = tuple(params)
        else:
            raise ValueError(f"{name}: unknown distribution {kind!r} (normal, uniform or "
                             f"lognormal)")
        dists.append((name, Dist(kind, params)))
    names = [n for n, _ in dists]
    if "N" in names and any(x in names for x in ("Na", "Nb", "Nc")):
        raise ValueError("N sets Na, Nb and Nc: give N or Na/Nb/Nc, not both")
    return VarySpec(tuple(dists), source)


def base_values(config, plan, misset_deg=None) -> Dict[str, object]:
    """The run's value of every key in flag units (``plan``: the run's plan, for the
    resolved beam centre, N and fluence); ``misset_deg``: the frame's orientation angles
    (deg) where it has some, else the run's misset (0 0 0 without one)."""
    det, c = plan.detector, config.crystal
    cell = None
    if config.crystal.cell is not None:
        a, b, cc, al, be, ga = config.crystal.cell
        cell = [a * 1e10, b * 1e10, cc * 1e10, al * RTD, be * RTD, ga * RTD]
    if misset_deg is None:
        misset_deg = [0.0, 0.0, 0.0] if c.misset is None else [m * RTD for m in c.misset]
    return {
        "distance": float(det.distance) * 1e3,
        "lambda": float(config.beam.wavelength) * 1e10,
        "Xbeam": float(det.Xbeam) * 1e3, "Ybeam": float(det.Ybeam) * 1e3,
        "detector_rotx": float(config.detector.rotx) * RTD,
        "detector_roty": float(config.detector.roty) * RTD,
        "detector_rotz": float(config.detector.rotz) * RTD,
        "fluence": float(plan.fluence),
        "N": float(plan.crystal.Na), "Na": float(plan.crystal.Na),
        "Nb": float(plan.crystal.Nb), "Nc": float(plan.crystal.Nc),
        "mosaic": 0.0 if not c.mosaic_spread else float(c.mosaic_spread) * RTD,
        "cell": cell, "misset": list(misset_deg)}


def apply_parameters(config, params: Dict[str, object]):
    """``config`` with the values ``params`` (flag units) applied by the flags' own
    conversions (:data:`nbsim.args.FLAGS`), so the result is the Config of the single
    render given those values as flags.  A shallow copy; beam, detector and crystal are
    copied when changed."""
    if not params:
        return config
    from ..args import FLAG_INDEX, _State
    cfg = copy.copy(config)
    cfg.beam = dataclasses.replace(cfg.beam)
    cfg.detector = dataclasses.replace(cfg.detector)
    cfg.crystal = dataclasses.replace(cfg.crystal)
    st = _State()
    st.cfg = cfg
    pivot = cfg.detector.pivot
    for name, v in params.items():
        key = _KEYS[name]
        vals = [float(x) for x in v] if isinstance(v, (list, tuple)) else [float(v)]
        FLAG_INDEX[key.flag].apply(st, key.flag, vals)
    # the convention's pivot stays (parse_args decides it after every flag; a vary value
    # is a value, not a pivot request)
    cfg.detector.pivot = pivot
    if "misset" in params:
        cfg.crystal = dataclasses.replace(cfg.crystal, misset_random=False,
                                          a_star_matrix=cfg.crystal.a_star_matrix)
    return cfg


def frame_parameter_units(spec: Optional[VarySpec]) -> Dict[str, str]:
    if spec is None:
        return {}
    return {n: _KEYS[n].units for n in spec.names}


def key_info(name: str) -> VaryKey:
    return _KEYS[name]


def describe(spec: VarySpec) -> str:
    parts = []
    for name, d in spec.dists:
        p = d.params
        same = all(x == p[0] for x in p)
        shown = p[0] if same else list(p)
        if d.kind == "uniform":
            shown = list(shown) if same else [list(x) for x in p]
        parts.append(f"{name} {d.kind} {shown}")
    return ", ".join(parts)


def as_flags(params: Dict[str, object]) -> List[str]:
    """The flags that give a single render these values (repr: exact round trip)."""
    out: List[str] = []
    for name, v in params.items():
        out.append(_KEYS[name].flag)
        out += [repr(float(x)) for x in (v if isinstance(v, (list, tuple)) else [v])]
    return out

"""Command-line glue: the -mtz / -sfcif / -model / -expt family of flags.

:mod:`nbsim.args` lists the flags (its table calls :func:`store`) and, once every flag
has been applied, calls :func:`resolve_inputs`, which reads the files, writes their
geometry and cell into the Config and returns the expanded P1 grid.

Rules (docs/inputs.md):

* one structure-factor source: -hkl, -mtz, -sfcif or -model (two are an error);
* -expt sets the beam, the detector, the spindle, phi and the crystal orientation; a
  flag that sets one of those too is an error (which one wins would be a guess);
* the cell and space group of an MTZ, SF-mmCIF or model are used when neither -cell,
  -mat nor an -expt crystal gives a cell; when one does and it differs from the file's
  by more than 1 % (a length, or an angle), a WARNING note says so;
* the expansion to P1 happens here, before the engine: both modes (spec and c-parity)
  render the same P1 list.  -hkl is untouched (nanoBragg's behaviour, no symmetry).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

__all__ = ["store", "resolve_inputs", "InputsResult", "CELL_TOLERANCE"]

CELL_TOLERANCE = 0.01
_SOURCES = ("-mtz", "-sfcif", "-model")


def _requests(st) -> dict:
    req = getattr(st, "input_requests", None)
    if req is None:
        req = {}
        st.input_requests = req
    return req


def store(key: str):
    """An args-table apply function recording the flag's value(s) under ``key``."""
    def apply(st, flag, vals):
        _requests(st)[key] = (flag, vals[0] if len(vals) == 1 else
                              (True if not vals else tuple(vals)))
    return apply


@dataclass
class InputsResult:
    """What the input files gave: the P1 grid (or None), its list, where it came from."""
    hkl_data: Optional[object] = None       # nbsim.io.HKLData
    p1: Optional[tuple] = None              # (h, k, l, F) distinct P1 reflections
    source: Optional[str] = None
    write_hkl: Optional[str] = None
    expt_file: Optional[str] = None
    space_group: Optional[str] = None       # the file's space group (gemmi name), P1-expanded
    notes: List[str] = field(default_factory=list)


def _arg_error(msg):
    from ..errors import ArgError
    return ArgError(msg)


def _read(fn, flag, path):
    """Run a reader; every problem becomes one ArgError line naming the flag and file."""
    from ..io.errors import FormatError
    from ._gemmi import MissingDependency
    try:
        return fn()
    except MissingDependency as e:
        raise _arg_error(f"{flag}: {e}") from None
    except FileNotFoundError:
        raise _arg_error(f"{flag}: cannot open {path}") from None
    except IsADirectoryError:
        raise _arg_error(f"{flag}: {path} is a directory") from None
    except (FormatError, OSError, ValueError, RuntimeError) as e:
        msg = str(e)
        raise _arg_error(f"{flag}: {msg}" if str(path) in msg else f"{flag}: {path}: {msg}") \
            from None


def _cell_from_reciprocal(m: np.ndarray):
    """a b c (A) alpha beta gamma (deg) of reciprocal column vectors (1/A)."""
    real = np.linalg.inv(m).T          # columns a, b, c
    a, b, c = real[:, 0], real[:, 1], real[:, 2]

    def ang(u, v):
        return math.degrees(math.acos(max(-1.0, min(1.0, float(u @ v) /
                                                    (np.linalg.norm(u) * np.linalg.norm(v))))))
    return (float(np.linalg.norm(a)), float(np.linalg.norm(b)), float(np.linalg.norm(c)),
            ang(b, c), ang(a, c), ang(a, b))


def _compare_cell(given, given_by, file_cell, source, notes):
    names = ("a", "b", "c", "alpha", "beta", "gamma")
    off = [f"{n} {g:.6g} vs {f:.6g}" for n, g, f in zip(names, given, file_cell)
           if abs(g - f) > CELL_TOLERANCE * abs(f)]
    if off:
        notes.append(f"WARNING: the cell of {given_by} differs from that of {source} by "
                     f"more than {CELL_TOLERANCE:.0%} ({', '.join(off)}); the structure "
                     f"factors are used with the cell of {given_by}")


def resolve_inputs(st, cfg, notes: List[str]) -> InputsResult:
    """Read the -expt / -mtz / -sfcif / -model files into ``cfg`` (see the module doc)."""
    req = _requests(st)
    res = InputsResult()
    if not req:
        return res
    given = st.given

    def need(flag, parent):
        if flag in {v[0] for v in req.values()} and not any(p in req for p in parent):
            raise _arg_error(f"{flag}: needs {' or '.join(parent)}")
    need("-mtz_label", ("-mtz", "-sfcif"))
    need("-model_dmin", ("-model",))
    need("-solvent", ("-model",))
    need("-expt_index", ("-expt",))
    sources = [s for s in _SOURCES if s in req]
    if len(sources) > 1 or (sources and st.hkl is not None):
        both = (["-hkl"] if st.hkl is not None else []) + sources
        raise _arg_error(f"{' and '.join(both)}: give one source of structure factors")
    if "-write_hkl" in req and not sources:
        raise _arg_error("-write_hkl: needs -mtz, -sfcif or -model (the P1 list it writes)")
    anomalous = "-anomalous" in req
    if anomalous and not sources:
        raise _arg_error("-anomalous: needs -mtz, -sfcif or -model")

    # ---- geometry first: -model's resolution depends on the detector
    if "-expt" in req:
        from .expt import apply_to_config, params_set, read_expt
        path = req["-expt"][1]
        index = int(req["-expt_index"][1]) if "-expt_index" in req else 0
        if index < 0:
            raise _arg_error(f"-expt_index: must be >= 0, got {index}")
        geom = _read(lambda: read_expt(path, index), "-expt", path)
        sets = params_set(geom)
        clash = [given[p][0] for p in sets if p in given]
        if st.mat is not None and geom.a_star_matrix is not None:
            clash.append("-mat")
        if clash:
            raise _arg_error(f"{', '.join(dict.fromkeys(clash))}: conflicts with -expt "
                             f"{path}, which sets the beam and the detector (and the "
                             f"spindle, phi and crystal orientation when it has them): "
                             f"give one or the other")
        apply_to_config(geom, cfg)
        notes.extend(geom.notes)
        res.expt_file = path

    if not sources:
        return res
    flag = sources[0]
    path = req[flag][1]
    label = req["-mtz_label"][1] if "-mtz_label" in req else None
    if flag == "-mtz":
        from .mtz import read_mtz
        refl = _read(lambda: read_mtz(path, label=label, anomalous=anomalous), flag, path)
    elif flag == "-sfcif":
        from .sfcif import read_sfcif
        refl = _read(lambda: read_sfcif(path, label=label, anomalous=anomalous), flag, path)
    else:
        from .model import fcalc, read_model
        from .resolution import detector_dmin
        structure = _read(lambda: read_model(path), flag, path)
        if "-model_dmin" in req:
            d_min = float(req["-model_dmin"][1])
            if not d_min > 0:
                raise _arg_error(f"-model_dmin: must be > 0 A, got {d_min:g}")
        else:
            d_min = _read(lambda: detector_dmin(cfg), flag, path)
        solvent = None
        if "-solvent" in req:
            k_sol, b_sol = (float(v) for v in req["-solvent"][1])
            if k_sol < 0 or b_sol < 0:
                raise _arg_error(f"-solvent: k_sol and b_sol must be >= 0, got "
                                 f"{k_sol:g} {b_sol:g}")
            solvent = (k_sol, b_sol)
        refl = _read(lambda: fcalc(structure, d_min, solvent=solvent, source=path),
                     flag, path)

    # ---- cell: from the file, or checked against the one given
    c = cfg.crystal
    if c.a_star_matrix is not None:
        lam_A = cfg.beam.wavelength * 1e10
        by = f"-expt {res.expt_file}" if res.expt_file else f"-mat {st.mat}"
        _compare_cell(_cell_from_reciprocal(np.asarray(c.a_star_matrix) / lam_A), by,
                      refl.cell, f"{flag} {path}", notes)
    elif c.cell is not None:
        gc = (c.cell[0] * 1e10, c.cell[1] * 1e10, c.cell[2] * 1e10,
              math.degrees(c.cell[3]), math.degrees(c.cell[4]), math.degrees(c.cell[5]))
        _compare_cell(gc, "-cell", refl.cell, f"{flag} {path}", notes)
    else:
        a, b, cc, al, be, ga = refl.cell
        c.cell = (a * 1e-10, b * 1e-10, cc * 1e-10, math.radians(al), math.radians(be),
                  math.radians(ga))

    from .symmetry import p1_hkl_data
    hkl_data, p1 = _read(lambda: p1_hkl_data(refl, anomalous=anomalous,
                                             default_F=cfg.structure.default_F), flag, path)
    notes.extend(refl.notes)
    mates = ("anomalous pairs as given" if refl.anomalous else
             "no Friedel mates (-anomalous)" if anomalous else "Friedel mates added")
    notes.append(f"{flag} {refl.source}: {len(refl)} reflections expanded to "
                 f"{p1[0].size} in P1 ({mates})")
    res.hkl_data, res.p1, res.source = hkl_data, p1, f"{flag} {path}"
    res.space_group = refl.space_group
    res.write_hkl = req["-write_hkl"][1] if "-write_hkl" in req else None
    return res

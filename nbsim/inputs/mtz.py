"""MTZ files (``-mtz FILE``, ``-mtz_label LABEL``) -> :class:`Reflections`.

Column choice: ``-mtz_label`` names it; otherwise the first present of
:data:`DEFAULT_AMPLITUDE_LABELS` (F, FP, F-obs, FOBS, FMODEL, FC), then
:data:`DEFAULT_INTENSITY_LABELS` (I, IMEAN), then the anomalous pairs F(+)/F(-) and
I(+)/I(-) (with ``-anomalous`` the pairs are looked for first).

* an amplitude column (MTZ type F) is used as it is;
* an intensity column (type J) becomes ``F = sqrt(I)``; negative intensities become 0
  and their count is reported;
* an anomalous column (type G or K, or a label ending in ``(+)``/``(-)``) is used with
  its partner as a pair: F(+) for (h, k, l), F(-) for (-h, -k, -l);
* rows whose value is missing (MTZ's NaN) are left out.

Cell: the file's global cell; space group: the file's (an MTZ without one is refused).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..io.errors import FormatError
from ._gemmi import import_gemmi
from .reflections import Reflections

__all__ = ["DEFAULT_AMPLITUDE_LABELS", "DEFAULT_INTENSITY_LABELS", "read_mtz",
           "reflections_from_mtz"]

DEFAULT_AMPLITUDE_LABELS = ("F", "FP", "F-obs", "FOBS", "FMODEL", "FC")
DEFAULT_INTENSITY_LABELS = ("I", "IMEAN")
DEFAULT_ANOMALOUS_LABELS = ("F(+)", "I(+)")
_VALUE_TYPES = {"F": "amplitude", "J": "intensity", "G": "anomalous amplitude",
                "K": "anomalous intensity"}


def _partner(label: str) -> Optional[str]:
    for a, b in (("(+)", "(-)"), ("(-)", "(+)"), ("PLUS", "MINUS"), ("MINUS", "PLUS"),
                 ("+", "-"), ("-", "+")):
        if a in label:
            i = label.rfind(a)
            return label[:i] + b + label[i + len(a):]
    return None


def _is_minus(label: str) -> bool:
    return label.endswith("(-)") or "MINUS" in label or (label.endswith("-") and
                                                         not label.endswith("(+)"))


def _choose(labels: Sequence[str], label: Optional[str], anomalous: bool, source: str):
    listing = " ".join(labels)
    if label is not None:
        if label not in labels:
            raise FormatError(f"{source}: no column {label!r} (columns: {listing})")
        return label
    order = (DEFAULT_ANOMALOUS_LABELS + DEFAULT_AMPLITUDE_LABELS + DEFAULT_INTENSITY_LABELS
             if anomalous else
             DEFAULT_AMPLITUDE_LABELS + DEFAULT_INTENSITY_LABELS + DEFAULT_ANOMALOUS_LABELS)
    for name in order:
        if name in labels:
            return name
    raise FormatError(f"{source}: none of the default columns "
                      f"{', '.join(order)} is present; choose one with -mtz_label "
                      f"(columns: {listing})")


def _amplitudes(values: np.ndarray, is_intensity: bool, name: str, notes: list):
    v = np.asarray(values, dtype=np.float64)
    if not is_intensity:
        return v
    neg = int(np.count_nonzero(v < 0))
    if neg:
        notes.append(f"{name}: {neg} negative intensit{'y' if neg == 1 else 'ies'} "
                     f"set to 0 (F = sqrt(I))")
    return np.sqrt(np.where(v < 0, 0.0, v))


def reflections_from_mtz(mtz, *, label: Optional[str] = None, anomalous: bool = False,
                         source: str = "MTZ") -> Reflections:
    """:class:`Reflections` from a ``gemmi.Mtz`` object (see the module doc)."""
    labels = list(mtz.column_labels())
    types = {c.label: c.type for c in mtz.columns}
    name = _choose(labels, label, anomalous, source)
    ctype = types[name]
    pair = ctype in ("G", "K") or name.endswith(("(+)", "(-)"))
    if not pair and ctype not in ("F", "J"):
        raise FormatError(f"{source}: column {name!r} is of MTZ type {ctype!r}, not an "
                          f"amplitude (F) or an intensity (J) (columns: {' '.join(labels)})")
    if mtz.spacegroup is None:
        raise FormatError(f"{source}: the file has no space group")
    data = np.asarray(mtz.array, dtype=np.float64)
    col = {lab: i for i, lab in enumerate(labels)}
    if not all(x in col for x in ("H", "K", "L")):
        raise FormatError(f"{source}: no H, K, L columns")
    hkl = data[:, [col["H"], col["K"], col["L"]]]
    if np.any(np.isnan(hkl)) or np.any(hkl != np.rint(hkl)):
        raise FormatError(f"{source}: Miller indices that are not integers")
    hkl = hkl.astype(np.int64)
    notes: list = []
    if pair:
        other = _partner(name)
        if other is None or other not in col:
            raise FormatError(f"{source}: anomalous column {name!r} has no partner "
                              f"{other!r} (columns: {' '.join(labels)})")
        plus, minus = (other, name) if _is_minus(name) else (name, other)
        is_int = types[plus] == "K" or types[plus] == "J"
        Fp = _amplitudes(data[:, col[plus]], is_int, f"{source} {plus}", notes)
        Fm = _amplitudes(data[:, col[minus]], is_int, f"{source} {minus}", notes)
        keep = ~(np.isnan(Fp) & np.isnan(Fm))
        used = f"{plus}/{minus}"
        F, F_minus = Fp[keep], Fm[keep]
    else:
        F = _amplitudes(data[:, col[name]], ctype == "J", f"{source} {name}", notes)
        keep = ~np.isnan(F)
        used = name
        F, F_minus = F[keep], None
    hkl = hkl[keep]
    if hkl.shape[0] == 0:
        raise FormatError(f"{source}: column {used} has no values")
    c = mtz.cell
    return Reflections(h=hkl[:, 0].copy(), k=hkl[:, 1].copy(), l=hkl[:, 2].copy(), F=F,
                       F_minus=F_minus, cell=(c.a, c.b, c.c, c.alpha, c.beta, c.gamma),
                       space_group=mtz.spacegroup.xhm(), source=f"{source} ({used})",
                       notes=notes)


def read_mtz(path, *, label: Optional[str] = None, anomalous: bool = False) -> Reflections:
    """Read an MTZ file's amplitudes (see the module doc); problems raise FormatError."""
    gemmi = import_gemmi("-mtz (MTZ files)")
    path = str(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise FormatError(f"{path}: unable to open: {e.strerror}") from None
    if magic != b"MTZ ":
        raise FormatError(f"{path}: not an MTZ file (it does not start with 'MTZ ')")
    try:
        mtz = gemmi.read_mtz_file(path)
    except (RuntimeError, ValueError, OSError) as e:
        raise FormatError(f"{path}: not a readable MTZ file ({e})") from None
    return reflections_from_mtz(mtz, label=label, anomalous=anomalous, source=path)

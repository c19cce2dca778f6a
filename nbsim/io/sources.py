"""Source files (``-sourcefile``), read like nanoBragg.c (``read_text_file`` ll. 3867-3969,
caller ll. 2319-2346).

Columns: ``X Y Z weight lambda`` -- X, Y, Z the source position in metres *as seen from
the sample* (C later normalises it to a unit vector; the incident direction is its
negative), ``weight`` (C reads it but ignores it in the render), ``lambda`` in metres.
Separators are any of ``" \\t,;:!"``; lines containing only separators are skipped.
Missing columns (C initialises them to NaN) take defaults after reading:

* X, Y, Z: ``-source_distance * beam_vector`` (source_distance default 10 m),
* weight: 1.0,
* lambda: ``lambda0``.

A value that reads as NaN also gets the default.  An empty file is an error.

C quirks reproduced only by ``strict=False``: a token that is not a number reads as 0
(``atof``), so a ``# comment`` line becomes a source at the origin; and on a line without
``\\n`` (last line of a file lacking a final newline, or a CRLF line), every column after
the last number is set to 0 instead of its default.  ``strict=True`` (default) raises
:class:`~nbsim.io.FormatError` for non-numeric tokens or more than five columns, and
treats CRLF / a missing final newline as ordinary line ends.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cformat import c_atof, float_prefix
from .errors import FormatError

__all__ = ["SourceTable", "read_sources"]

_DELIMS = b" \t,;:!"
_NUMBERSTUF = b"0123456789-+.EGeg"


@dataclass
class SourceTable:
    """Sources as C holds them after reading (before unit-normalising X, Y, Z).

    ``x, y, z`` metres, ``weight`` dimensionless, ``wavelength`` metres; float64 arrays.
    """

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    weight: np.ndarray
    wavelength: np.ndarray

    @property
    def n(self) -> int:
        return int(self.x.size)


def _span(buf: bytes, pos: int, accept: bytes) -> int:
    while pos < len(buf) and buf[pos] in accept:
        pos += 1
    return pos


def _cspan(buf: bytes, pos: int, reject: bytes) -> int:
    while pos < len(buf) and buf[pos] not in reject:
        pos += 1
    return pos


def _c_lines(raw: bytes):
    """Lines as C's fgets loop sees them (each keeps its '\\n' if it had one)."""
    parts = raw.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _c_parse(raw: bytes, nargs: int = 5):
    rows = []
    for text in _c_lines(raw):
        tok = _span(text, 0, _DELIMS)
        if text[tok:] == b"\n":
            continue
        row = [math.nan] * nargs
        i = 0
        while True:
            row[i] = c_atof(text[tok:])
            tok = _span(text, tok, _NUMBERSTUF)
            if text[tok:] == b"\n":
                break
            tok = _cspan(text, tok, _DELIMS)
            tok = _span(text, tok, _DELIMS)
            if text[tok:] == b"\n":
                break
            i += 1
            if i >= nargs:
                break
        rows.append(row)
    return rows


def _strict_parse(path: Path, raw: bytes, nargs: int = 5):
    rows = []
    for lineno, text in enumerate(raw.split(b"\n"), start=1):
        text = text.rstrip(b"\r")
        fields = []
        pos = 0
        while True:
            pos = _span(text, pos, _DELIMS)
            if pos >= len(text):
                break
            end = _cspan(text, pos, _DELIMS)
            fields.append(text[pos:end])
            pos = end
        if not fields:
            continue
        if len(fields) > nargs:
            raise FormatError(f"{path}:{lineno}: {len(fields)} columns, expected at most "
                              f"{nargs} (X Y Z weight lambda)")
        row = [math.nan] * nargs
        for i, f in enumerate(fields):
            v, end = float_prefix(f, 0)
            if v is None or end != len(f):
                raise FormatError(f"{path}:{lineno}: column {i + 1} is not a number: "
                                  f"{f.decode('latin-1')!r}")
            row[i] = v
        rows.append(row)
    return rows


def read_sources(path, *, beam_vector=(1.0, 0.0, 0.0), source_distance: float = 10.0,
                 lambda0: float = 1.0e-10, strict: bool = True) -> SourceTable:
    """Read a source file; missing values take C's defaults (see module doc).

    ``beam_vector`` is the unit incident-beam direction C holds after the convention is
    applied (MOSFLM default (1, 0, 0)); ``source_distance`` metres; ``lambda0`` metres.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise FormatError(f"{path}: unable to open: {e.strerror}") from None
    rows = _strict_parse(path, raw) if strict else _c_parse(raw)
    if not rows:
        raise FormatError(f"{path}: no sources in file")
    a = np.array(rows, dtype=np.float64)
    bv = [float(v) for v in beam_vector]
    defaults = (-source_distance * bv[0], -source_distance * bv[1], -source_distance * bv[2],
                1.0, float(lambda0))
    for j, d in enumerate(defaults):
        col = a[:, j]
        col[np.isnan(col)] = d
    return SourceTable(a[:, 0].copy(), a[:, 1].copy(), a[:, 2].copy(), a[:, 3].copy(),
                       a[:, 4].copy())

"""C-compatible number formatting and parsing used by the file formats.

``c_g`` formats like glibc ``printf("%g")`` (Python's ``%g`` agrees for finite values;
NaN and infinities are spelled the C way, with the sign of a NaN shown as ``-nan``).
``c_atof`` parses like C ``atof``/``strtod``: leading whitespace, then the longest
numeric prefix; no number gives 0.0.
"""
from __future__ import annotations

import math
import re

_FLOAT_RE = re.compile(
    rb"""[+-]?(?:
        0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?
      | (?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?
      | inf(?:inity)?
      | nan(?:\([0-9A-Za-z_]*\))?
    )""",
    re.VERBOSE | re.IGNORECASE,
)
_C_SPACE = b" \t\n\v\f\r"


def c_g(x: float, spec: str = "g") -> str:
    """``printf("%g", x)`` as glibc prints it (also ``%lg``); ``spec`` e.g. ``".0f"``."""
    x = float(x)
    if math.isnan(x):
        return "-nan" if math.copysign(1.0, x) < 0 else "nan"
    if math.isinf(x):
        return "-inf" if x < 0 else "inf"
    return ("%" + spec) % x


def float_prefix(buf: bytes, pos: int = 0):
    """strtod on ``buf[pos:]`` after skipping C whitespace: ``(value, end)`` or ``(None, pos)``."""
    n = len(buf)
    while pos < n and buf[pos] in _C_SPACE:
        pos += 1
    m = _FLOAT_RE.match(buf, pos)
    if not m:
        return None, pos
    tok = m.group(0)
    low = tok.lower().lstrip(b"+-")
    if low.startswith(b"0x"):
        sign = -1.0 if tok.startswith(b"-") else 1.0
        text = tok.decode().lstrip("+-")
        if "p" not in text.lower():
            text += "p0"
        return sign * float.fromhex(text), m.end()
    if low.startswith(b"nan"):
        return (-math.nan if tok.startswith(b"-") else math.nan), m.end()
    return float(tok.decode()), m.end()


def int_prefix(buf: bytes, pos: int = 0):
    """scanf ``%d`` on ``buf[pos:]``: ``(value, end)`` or ``(None, pos)``."""
    n = len(buf)
    while pos < n and buf[pos] in _C_SPACE:
        pos += 1
    m = re.compile(rb"[+-]?[0-9]+").match(buf, pos)
    if not m:
        return None, pos
    v = int(m.group(0)) & 0xFFFFFFFF
    if v >= 0x80000000:
        v -= 0x100000000
    return v, m.end()


def c_atof(s) -> float:
    """C ``atof``: the numeric prefix of ``s`` (after whitespace), 0.0 if there is none."""
    if isinstance(s, str):
        s = s.encode("latin-1")
    v, _ = float_prefix(s, 0)
    return 0.0 if v is None else v

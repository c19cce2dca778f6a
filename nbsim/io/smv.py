"""SMV (ADSC) images: nanoBragg's reader (``-img``, ``-mask``) and writer (int/noise images).

Reader -- nanoBragg.c ``GetFrame``/``ValueOf`` (ll. 4124-4263) and the callers
(ll. 418-502):

* the file must start with ``"{\\nHEADER_BYT"``; the header is ``HEADER_BYTES`` long
  (512 unless the header says otherwise) and is used as a C string (up to its first NUL);
* ``ValueOf(KEY)`` finds the *last* occurrence of ``KEY`` as a substring anywhere in the
  header, then the first ``=`` after it, and ``atof``s what follows (missing key -> NaN,
  no ``=`` -> 0).  Substring matching has consequences: ``DISTANCE`` also matches
  ``CLOSE_DISTANCE`` (a nanoBragg-written header has CLOSE_DISTANCE after DISTANCE, so C
  reads the *close distance* as the distance), ``ORGX`` matches ``XDS_ORGX``;
* image size ``SIZE1`` (fast) x ``SIZE2`` (slow), falling back to ``DETECTOR_DIMENSIONS``
  only when SIZE1 is present and zero;
* pixel data: ``unsigned short`` at byte ``HEADER_BYTES``, read in the *machine's* byte
  order -- C computes ``swap_bytes`` from BYTE_ORDER but never uses it (little-endian here).

Keys C parses and what it does with them (``c_overrides_from_smv``): PIXEL_SIZE (mm),
DISTANCE (mm), CLOSE_DISTANCE (mm), WAVELENGTH (Angstrom), BEAM_CENTER_X (mm),
BEAM_CENTER_Y (mm; for ``-mask`` C stores ``detsize_s - value``, for ``-img`` the value
itself), ORGX, ORGY (pixels), PHI (deg -> phi0), OSC_RANGE (deg -> osc), TWOTHETA (deg; C
assigns it to a scratch variable ``twotheta`` that is overwritten later, i.e. it has no
effect), and SIZE1/SIZE2/HEADER_BYTES.  OSC_START, DETECTOR_SN, BYTE_ORDER, TYPE are not
used.  ``-mask`` is read before ``-img``, so ``-img`` values win; command-line flags are
parsed afterwards and win over both.

Writer -- nanoBragg.c ll. 3163-3185 (int image) and 3256-3278 (noise image).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._atomic import atomic_open
from .cformat import c_atof, c_g
from .errors import FormatError

__all__ = [
    "SMVHeader", "read_smv", "read_smv_header_text", "smv_value_of", "smv_c_values",
    "c_overrides_from_smv", "read_smv_mask", "read_smv_float", "mask_from_image",
    "write_smv", "format_smv_header", "C_PARSED_KEYS",
]

#: Keys nanoBragg.c looks up with ValueOf when reading -img / -mask files.
C_PARSED_KEYS = (
    "HEADER_BYTES", "SIZE1", "SIZE2", "DETECTOR_DIMENSIONS", "PIXEL_SIZE", "DISTANCE",
    "CLOSE_DISTANCE", "WAVELENGTH", "BEAM_CENTER_X", "BEAM_CENTER_Y", "ORGX", "ORGY",
    "PHI", "OSC_RANGE", "TWOTHETA", "BYTE_ORDER",
)

_RTD = 180.0 * 0.318309886183790671537767526745028724     # C: RTD = 180.0*M_1_PI
_MAGIC = b"{\nHEADER_BYT"      # C compares the first 12 characters


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------

def _header_c_string(raw: bytes) -> bytes:
    """The header as C sees it: a C string ending at the first NUL."""
    nul = raw.find(b"\0")
    return raw if nul < 0 else raw[:nul]


def smv_value_of(header: bytes | str, keyword: str) -> float:
    """C ``ValueOf``: value after the first ``=`` following the *last* ``keyword``.

    Returns NaN when the keyword does not occur and 0.0 when no ``=`` follows it
    (exactly like C).
    """
    if isinstance(header, str):
        header = header.encode("latin-1")
    header = _header_c_string(header)
    key = keyword.encode()
    pos = header.rfind(key)
    if pos < 0:
        return math.nan
    eq = header.find(b"=", pos + len(key))
    if eq < 0:
        return 0.0
    return c_atof(header[eq + 1:])


def _parse_keyvals(text: bytes) -> dict:
    """``KEY=VALUE;`` pairs of a header, in order (later duplicates win)."""
    out: dict[str, str] = {}
    for line in text.split(b"\n"):
        line = line.strip(b" \t\r\f{}")
        if b"=" not in line:
            continue
        k, v = line.split(b"=", 1)
        k = k.strip().decode("latin-1")
        v = v.strip().rstrip(b";").strip().decode("latin-1")
        if k:
            out[k] = v
    return out


def read_smv_header_text(path) -> bytes:
    """Raw header bytes (``HEADER_BYTES`` long) of an SMV file, checked like C's GetFrame."""
    path = Path(path)
    with open(path, "rb") as fh:
        first = fh.read(512)
        if len(first) < 512:
            raise FormatError(f"{path}: SMV header shorter than 512 bytes")
        if not first.startswith(_MAGIC):
            raise FormatError(f"{path}: does not look like an ADSC (SMV) frame")
        hb = smv_value_of(first, "HEADER_BYTES")
        if not math.isfinite(hb) or int(hb) <= 0:
            raise FormatError(f"{path}: bad HEADER_BYTES")
        size = int(hb)
        if size == 512:
            return first
        fh.seek(0)
        raw = fh.read(size)
        if len(raw) < size:
            raise FormatError(f"{path}: file shorter than HEADER_BYTES={size}")
        return raw


def smv_c_values(header: bytes) -> dict:
    """Values of :data:`C_PARSED_KEYS` as C's ValueOf reads them (None where C gets NaN).

    Raw header units (mm, Angstrom, degrees, pixels); BYTE_ORDER is the raw text.
    """
    out = {}
    for k in C_PARSED_KEYS:
        if k == "BYTE_ORDER":
            text = _header_c_string(header)
            pos = text.rfind(b"BYTE_ORDER=")
            if pos < 0:
                out[k] = None
            else:
                val = text[pos + 11:].split(b";")[0].split(b"\n")[0]
                out[k] = val.strip().decode("latin-1")
            continue
        v = smv_value_of(header, k)
        out[k] = None if math.isnan(v) else v
    return out


def _dims(path, header: bytes) -> tuple[int, int, int]:
    hb = int(smv_value_of(header, "HEADER_BYTES"))
    w = smv_value_of(header, "SIZE1")
    h = smv_value_of(header, "SIZE2")
    if math.isnan(w) or math.isnan(h):
        raise FormatError(f"{path}: SMV header lacks SIZE1/SIZE2")
    w, h = int(w), int(h)
    if w == 0:
        d = smv_value_of(header, "DETECTOR_DIMENSIONS")
        w = h = 0 if math.isnan(d) else int(d)
    if w <= 0 or h <= 0:
        raise FormatError(f"{path}: bad image size {w}x{h}")
    return hb, w, h


def read_smv(path, *, honour_byte_order: bool = False):
    """Read an SMV file: ``(header, image)``.

    ``header`` is a dict of every ``KEY=VALUE`` pair (raw strings, order kept) plus
    ``"_c_values"`` (:func:`smv_c_values`) and ``"_raw"`` (header bytes).  ``image`` is
    ``uint16`` of shape ``(SIZE2, SIZE1)`` = (slow, fast).  Like C, the data are read in
    little-endian (machine) order regardless of BYTE_ORDER unless ``honour_byte_order``.
    """
    path = Path(path)
    raw = read_smv_header_text(path)
    hb, w, h = _dims(path, raw)
    with open(path, "rb") as fh:
        fh.seek(hb)
        data = fh.read(2 * w * h)
    if len(data) < 2 * w * h:
        raise FormatError(f"{path}: {len(data)} data bytes, expected {2 * w * h} ({w}x{h})")
    dtype = np.dtype("<u2")
    if honour_byte_order:
        bo = smv_c_values(raw)["BYTE_ORDER"] or "little_endian"
        dtype = np.dtype(">u2" if bo.startswith("big") else "<u2")
    image = np.frombuffer(data, dtype=dtype).astype(np.uint16).reshape(h, w)
    header = _parse_keyvals(_header_c_string(raw))
    header["_c_values"] = smv_c_values(raw)
    header["_raw"] = raw
    return header, image


def mask_from_image(image: np.ndarray) -> np.ndarray:
    """C's mask rule: a pixel is rendered unless its mask value is 0 (True = render)."""
    return np.asarray(image) != 0


def read_smv_mask(path):
    """``-mask`` file: ``(header, render)`` with ``render`` a bool (slow, fast) array."""
    header, image = read_smv(path)
    return header, mask_from_image(image)


def read_smv_float(path):
    """``-img`` file: ``(header, image)`` with the pixels as float32 (C's imginfileimage)."""
    header, image = read_smv(path)
    return header, image.astype(np.float32)


def c_overrides_from_smv(c_values: dict, kind: str, *, pixel_size_m: float = 0.1e-3,
                         fpixels: int | None = None, spixels: int | None = None) -> dict:
    """The C variables a ``-mask`` (``kind="mask"``) or ``-img`` (``kind="img"``) header sets.

    ``c_values`` is :func:`smv_c_values` output.  ``pixel_size_m`` is the pixel size in
    effect before this file (C default 0.1 mm, or what an earlier ``-mask`` set); it only
    matters for the mask's BEAM_CENTER_Y flip when the header has no PIXEL_SIZE.
    Returned keys (SI units, radians), present only where the header provides a value:
    ``fpixels, spixels, pixel_size, detsize_f, detsize_s, distance, close_distance,
    lambda0, Xbeam, Ybeam, ORGX, ORGY, phi0, osc``.  TWOTHETA is reported as
    ``twotheta_ignored`` (C writes it to a scratch variable).
    """
    if kind not in ("mask", "img"):
        raise ValueError("kind must be 'mask' or 'img'")
    v = c_values
    out: dict = {}
    w = int(v["SIZE1"]) if v.get("SIZE1") is not None else fpixels
    h = int(v["SIZE2"]) if v.get("SIZE2") is not None else spixels
    if w == 0 and v.get("DETECTOR_DIMENSIONS") is not None:
        w = h = int(v["DETECTOR_DIMENSIONS"])
    out["fpixels"], out["spixels"] = w, h
    px = pixel_size_m
    if v.get("PIXEL_SIZE") is not None:
        px = v["PIXEL_SIZE"] / 1000.0
        out["pixel_size"] = px
    out["detsize_f"] = px * w
    out["detsize_s"] = px * h
    if v.get("DISTANCE") is not None:
        out["distance"] = v["DISTANCE"] / 1000.0
    if v.get("CLOSE_DISTANCE") is not None:
        out["close_distance"] = v["CLOSE_DISTANCE"] / 1000.0
    if v.get("WAVELENGTH") is not None:
        out["lambda0"] = v["WAVELENGTH"] / 1e10
    if v.get("BEAM_CENTER_X") is not None:
        out["Xbeam"] = v["BEAM_CENTER_X"] / 1000.0
    if v.get("BEAM_CENTER_Y") is not None:
        if kind == "mask":
            out["Ybeam"] = out["detsize_s"] - v["BEAM_CENTER_Y"] / 1000.0
        else:
            out["Ybeam"] = v["BEAM_CENTER_Y"] / 1000.0
    if v.get("ORGX") is not None:
        out["ORGX"] = v["ORGX"]
    if v.get("ORGY") is not None:
        out["ORGY"] = v["ORGY"]
    if v.get("PHI") is not None:
        out["phi0"] = v["PHI"] / _RTD
    if v.get("OSC_RANGE") is not None:
        out["osc"] = v["OSC_RANGE"] / _RTD
    if v.get("TWOTHETA") is not None:
        out["twotheta_ignored"] = v["TWOTHETA"] / _RTD
    return out


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------

@dataclass
class SMVHeader:
    """Values nanoBragg writes into an SMV header, in C's internal units.

    All lengths in metres except ``dials_origin`` (mm, as C keeps it); angles in
    radians; ``ORGX``/``ORGY`` in pixels.  Use the values C holds at the end of the run
    (after convention/pivot handling): ``Xbeam``/``Ybeam`` are the header beam centre,
    ``Fbeam``/``Sbeam`` the beam spot on the fast/slow axes, ``detsize_s = spixels *
    pixel_size``, ``detector_twotheta`` the ``-twotheta`` angle.  NaN values are printed
    as C prints them (``nan``/``-nan``).

    Header lines (C ll. 3163-3181)::

        PIXEL_SIZE=pixel_size*1000   DISTANCE=distance*1000   WAVELENGTH=lambda0*1e10
        BEAM_CENTER_X=Xbeam*1000     BEAM_CENTER_Y=Ybeam*1000
        ADXV_CENTER_X=Fbeam*1000     ADXV_CENTER_Y=(detsize_s-Sbeam)*1000
        MOSFLM_CENTER_X=(Sbeam-pixel_size/2)*1000  MOSFLM_CENTER_Y=(Fbeam-pixel_size/2)*1000
        DENZO_X_BEAM=Sbeam*1000      DENZO_Y_BEAM=Fbeam*1000
        DIALS_ORIGIN=x,y,z (mm, no ';')   XDS_ORGX=ORGX  XDS_ORGY=ORGY
        CLOSE_DISTANCE=close_distance*1000  PHI=OSC_START=phi0 deg  OSC_RANGE=osc deg
        TWOTHETA=detector_twotheta deg  DETECTOR_SN=000  BEAMLINE=fake
    """

    fpixels: int
    spixels: int
    pixel_size: float = 0.1e-3
    distance: float = 100.0e-3
    lambda0: float = 1.0e-10
    Xbeam: float = math.nan
    Ybeam: float = math.nan
    Fbeam: float = math.nan
    Sbeam: float = math.nan
    detsize_s: float | None = None
    dials_origin: tuple = (0.0, 0.0, 0.0)
    ORGX: float = math.nan
    ORGY: float = math.nan
    close_distance: float = math.nan
    phi0: float = 0.0
    osc: float = 0.0
    detector_twotheta: float = 0.0
    byte_order: str = field(default_factory=lambda: "little_endian"
                            if sys.byteorder == "little" else "big_endian")


def format_smv_header(h: SMVHeader, *, noise: bool = False) -> bytes:
    """The header bytes C writes, padded with spaces to 512 bytes.

    ``noise=True`` selects the noise-image variant, which C writes with
    ``Sbeam+0.0*pixel_size`` instead of ``Sbeam-0.0*pixel_size`` in the DENZO lines (it
    only differs for a zero/NaN sign).  If the text exceeds 512 bytes C writes it as is
    (no padding, data follow directly, HEADER_BYTES still says 512); so do we.
    """
    g = c_g
    px = h.pixel_size
    detsize_s = h.detsize_s if h.detsize_s is not None else h.spixels * px
    rtd = _RTD
    if noise:
        dx, dy = (h.Sbeam + 0.0 * px) * 1000.0, (h.Fbeam + 0.0 * px) * 1000
    else:
        dx, dy = (h.Sbeam - 0.0 * px) * 1000.0, (h.Fbeam - 0.0 * px) * 1000
    o = h.dials_origin
    s = (
        "{\nHEADER_BYTES=512;\nDIM=2;\nBYTE_ORDER=%s;\nTYPE=unsigned_short;\n" % h.byte_order
        + "SIZE1=%d;\nSIZE2=%d;\nPIXEL_SIZE=%s;\nDISTANCE=%s;\n"
        % (h.fpixels, h.spixels, g(px * 1000.0), g(h.distance * 1000.0))
        + "WAVELENGTH=%s;\n" % g(h.lambda0 * 1e10)
        + "BEAM_CENTER_X=%s;\nBEAM_CENTER_Y=%s;\n" % (g(h.Xbeam * 1000.0), g(h.Ybeam * 1000))
        + "ADXV_CENTER_X=%s;\nADXV_CENTER_Y=%s;\n"
        % (g(h.Fbeam * 1000.0), g((detsize_s - h.Sbeam) * 1000))
        + "MOSFLM_CENTER_X=%s;\nMOSFLM_CENTER_Y=%s;\n"
        % (g((h.Sbeam - 0.5 * px) * 1000.0), g((h.Fbeam - 0.5 * px) * 1000))
        + "DENZO_X_BEAM=%s;\nDENZO_Y_BEAM=%s;\n" % (g(dx), g(dy))
        + "DIALS_ORIGIN=%s,%s,%s\n" % (g(o[0]), g(o[1]), g(o[2]))
        + "XDS_ORGX=%s;\nXDS_ORGY=%s;\n" % (g(h.ORGX), g(h.ORGY))
        + "CLOSE_DISTANCE=%s;\n" % g(h.close_distance * 1000.0)
        + "PHI=%s;\nOSC_START=%s;\nOSC_RANGE=%s;\n"
        % (g(h.phi0 * rtd), g(h.phi0 * rtd), g(h.osc * rtd))
        + "TWOTHETA=%s;\n" % g(h.detector_twotheta * rtd)
        + "DETECTOR_SN=000;\nBEAMLINE=fake;\n}\f"
    ).encode("latin-1")
    if len(s) < 512:
        s += b" " * (512 - len(s))
    return s


def write_smv(path, image: np.ndarray, header: SMVHeader, *, noise: bool = False) -> None:
    """Write ``image`` (uint16, shape (spixels, fpixels)) as nanoBragg writes -intfile/-noisefile.

    Data follow the header in native (little-endian) byte order, fast index fastest.
    Written to a temporary file in the same directory, then renamed.
    """
    img = np.asarray(image)
    if img.shape != (header.spixels, header.fpixels):
        raise ValueError(f"image shape {img.shape} != (spixels, fpixels) = "
                         f"({header.spixels}, {header.fpixels})")
    if img.dtype != np.uint16:
        raise ValueError("SMV images are uint16; convert first (see nbsim.io.int_image)")
    order = "<" if header.byte_order.startswith("little") else ">"
    data = np.ascontiguousarray(img, dtype=np.dtype(order + "u2"))   # no copy if native
    with atomic_open(path, "wb") as fh:
        fh.write(format_smv_header(header, noise=noise))
        fh.write(data.reshape(-1).view(np.uint8))

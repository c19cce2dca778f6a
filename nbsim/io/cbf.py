"""miniCBF images (the Dectris/Pilatus flavour dxtbx's ``FormatCBFMini*`` and XDS read).

One file per frame::

    ###CBF: VERSION 1.5, ...
    data_<name>
    _array_data.header_convention "GENERIC_MINI"      (or "PILATUS_1.2" for a real
    _array_data.header_contents                        Pilatus size: 2463x2527,
    ;                                                  1475x1679, 487x619)
    # Detector: ..., S/N ...
    # 2026-12-01T17:00:00.000                          (timestamp)
    # Pixel_size 172e-6 m x 172e-6 m
    # Silicon sensor, thickness 0.000450 m
    # Exposure_time / Exposure_period ... s
    # Count_cutoff N counts
    # Wavelength L A
    # Detector_distance D m
    # Beam_xy (F, S) pixels                            (from the pixel-(0,0) corner)
    # Start_angle / Angle_increment ... deg.
    ;
    _array_data.data
    ;
    --CIF-BINARY-FORMAT-SECTION--
    Content-Type: application/octet-stream;
         conversions="x-CBF_BYTE_OFFSET"
    ... X-Binary-Size, X-Binary-Element-Type "signed 32-bit integer", Content-MD5,
    X-Binary-Number-of-Elements = fast*slow, X-Binary-Size-Fastest/Second-Dimension
    <0C 1A 04 D5> byte-offset data, 4095 padding bytes
    --CIF-BINARY-FORMAT-SECTION----
    ;

Pixels without data: a preset's module gaps in the tiled frame hold -1 and the
``-beamstop`` shadow and ``-bad_pixels`` hold -2, the values Pilatus / EIGER miniCBF
files use, which dxtbx's trusted range (-1, cutoff) masks (miniCBF has no mask field).

The header can only say "detector normal to the beam, fast along imgCIF +x, slow along
-y, spindle along +x": dxtbx builds exactly that model from any miniCBF.  nanoBragg's
MOSFLM and XDS defaults are that geometry; ADXV's is its mirror image (slow axis up with
the same fast axis and spindle); for those and others (rotated or two-theta detectors,
other spindles) :func:`cbf_header_for` sets ``geometry_exact=False`` and the file's
geometry is an approximation -- use NeXus for those.

Byte-offset compression (CBF spec, ``x-CBF_BYTE_OFFSET``): each pixel is stored as the
difference to the previous one (the first to 0) in 1 byte if it fits in -127..127, else
0x80 and 2 bytes (-32767..32767), else 0x80 0x8000 and 4 bytes; little-endian.  The
differences are int32 differences (modulo 2**32), so the 8-byte escape is never needed.
Encoded by a Numba kernel (one pass, ~2 ns a pixel).
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Set, Tuple

import numba
import numpy as np

from .._numba_setup import prepare_cpu
from ._atomic import atomic_open
from .labframe import beam_centre_px, mcstas_rotation, to_mcstas
from .sinks import DatasetInfo, frame_path

__all__ = ["CbfHeader", "CbfSink", "write_cbf", "cbf_bytes", "cbf_header_for",
           "byte_offset_compress", "PILATUS_SIZES"]

#: (fast, slow) sizes of real Pilatus detectors (6M, 2M, 300K): PILATUS_1.2 convention
PILATUS_SIZES = {(2463, 2527): "PILATUS 6M", (1475, 1679): "PILATUS 2M",
                 (487, 619): "PILATUS 300K"}
_START = b"\x0c\x1a\x04\xd5"
_PADDING = 4095
_INT32_MAX = 2**31 - 1


@dataclass
class CbfHeader:
    """What a miniCBF header says about one frame (SI units unless named otherwise)."""
    pixel_size: float                  # m (square pixels)
    distance: float                    # m, sample to detector plane along its normal
    beam_xy: Tuple[float, float]       # pixels (fast, slow) from the pixel-(0,0) corner
    wavelength_A: float                # angstrom
    start_angle_deg: float = 0.0
    angle_increment_deg: float = 0.0
    exposure_s: float = 1.0
    count_cutoff: int = _INT32_MAX     # counts; dxtbx's overload value
    thickness: float = 0.0             # m, silicon sensor
    twotheta_deg: float = 0.0          # recorded only; dxtbx's miniCBF model ignores it
    timestamp: Optional[str] = None    # ISO-like Pilatus timestamp; now if None
    geometry_exact: bool = True        # False: the geometry is not miniCBF's simple one


@numba.njit(cache=True)
def _byte_offset_kernel(v, out):
    """Encode int32 ``v`` into ``out`` (large enough: 7 bytes a pixel); returns the
    length used.  Differences wrap modulo 2**32 (int32 arithmetic)."""
    pos = 0
    prev = np.int64(0)
    for k in range(v.size):
        cur = np.int64(v[k])
        d = cur - prev
        if d > 2147483647:
            d -= 4294967296
        elif d < -2147483648:
            d += 4294967296
        prev = cur
        if -127 <= d <= 127:
            out[pos] = np.uint8(d & 0xFF)
            pos += 1
        elif -32767 <= d <= 32767:
            out[pos] = 0x80
            out[pos + 1] = np.uint8(d & 0xFF)
            out[pos + 2] = np.uint8((d >> 8) & 0xFF)
            pos += 3
        else:
            out[pos] = 0x80
            out[pos + 1] = 0x00
            out[pos + 2] = 0x80
            for b in range(4):
                out[pos + 3 + b] = np.uint8((d >> (8 * b)) & 0xFF)
            pos += 7
    return pos


def byte_offset_compress(values: np.ndarray) -> bytes:
    """CBF byte-offset encoding of a flat int32 array (see the module docstring).

    Differences are taken in int32 arithmetic (modulo 2**32, as 32-bit decoders such as
    dxtbx's and fabio's accumulate), so every one fits in at most 4 bytes."""
    prepare_cpu()
    v = np.ascontiguousarray(values, dtype=np.int32).ravel()
    out = np.empty(7 * v.size, dtype=np.uint8)
    n = _byte_offset_kernel(v, out)
    return out[:n].tobytes()


def _as_int32(data) -> np.ndarray:
    a = np.asarray(data)
    if a.ndim != 2:
        raise ValueError(f"a CBF frame is 2-D (slow, fast), not shape {a.shape}")
    if a.dtype.kind == "f":
        a = np.rint(np.nan_to_num(a.astype(np.float64), nan=0.0))
        a = np.clip(a, -_INT32_MAX - 1, _INT32_MAX)
    elif a.dtype.kind not in "iub":
        raise ValueError(f"CBF pixels must be numbers, not {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.int32)


def _sensor_line(thickness: float) -> str:
    """The sensor line.  Without a sensor model (thickness 0) a 1 nm sensor is written:
    dxtbx asserts a thickness > 0 for its parallax-corrected model, whose shift is then
    ~1e-11 pixel (NO_SENSOR_THICKNESS_MM, docs/formats.md)."""
    if thickness > 0:
        return f"# Silicon sensor, thickness {thickness:.6f} m"
    from .dials_expt import NO_SENSOR_THICKNESS_MM
    return f"# Silicon sensor, thickness {NO_SENSOR_THICKNESS_MM * 1e-3:.9f} m"


def _header_text(h: CbfHeader, fast: int, slow: int) -> str:
    model = PILATUS_SIZES.get((fast, slow))
    detector = f"{model}, S/N 60-0000" if model else "GENERIC (nbsim simulation), S/N 0"
    stamp = h.timestamp or datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-3]
    energy_ev = 12398.419843320026 / h.wavelength_A if h.wavelength_A > 0 else 0.0
    lines = [
        f"# Detector: {detector}",
        f"# {stamp}",
        f"# Pixel_size {h.pixel_size * 1e6:.10g}e-6 m x {h.pixel_size * 1e6:.10g}e-6 m",
        _sensor_line(h.thickness),
        f"# Exposure_time {h.exposure_s:.7f} s",
        f"# Exposure_period {h.exposure_s:.7f} s",
        "# Tau = 0 s",
        f"# Count_cutoff {int(h.count_cutoff)} counts",
        f"# Threshold_setting: {int(energy_ev / 2)} eV",
        "# Gain_setting: autog (vrf = 1.000)",
        "# N_excluded_pixels = 0",
        "# Excluded_pixels: (nil)",
        "# Flat_field: (nil)",
        "# Trim_file: (nil)",
        "# Image_path: (nil)",
        f"# Wavelength {h.wavelength_A:.10g} A",
        f"# Detector_distance {h.distance:.10g} m",
        f"# Beam_xy ({h.beam_xy[0]:.8f}, {h.beam_xy[1]:.8f}) pixels",
        f"# Start_angle {h.start_angle_deg:.10g} deg.",
        f"# Angle_increment {h.angle_increment_deg:.10g} deg.",
        f"# Detector_2theta {h.twotheta_deg:.4f} deg.",
        f"# Phi {h.start_angle_deg:.10g} deg.",
        "# Oscillation_axis X.CW",
    ]
    return "\r\n".join(lines)


def cbf_bytes(data, header: CbfHeader, name: str = "image") -> bytes:
    """The whole miniCBF file for one frame (``data``: (slow, fast) integers)."""
    img = _as_int32(data)
    slow, fast = img.shape
    packed = byte_offset_compress(img)
    md5 = base64.b64encode(hashlib.md5(packed).digest()).decode()
    convention = "PILATUS_1.2" if (fast, slow) in PILATUS_SIZES else "GENERIC_MINI"
    text = "\r\n".join([
        "###CBF: VERSION 1.5, CBFlib v0.7.8 - nbsim",
        "",
        f"data_{name}",
        "",
        f'_array_data.header_convention "{convention}"',
        "_array_data.header_contents",
        ";",
        _header_text(header, fast, slow),
        ";",
        "",
        "_array_data.data",
        ";",
        "--CIF-BINARY-FORMAT-SECTION--",
        "Content-Type: application/octet-stream;",
        '     conversions="x-CBF_BYTE_OFFSET"',
        "Content-Transfer-Encoding: BINARY",
        f"X-Binary-Size: {len(packed)}",
        "X-Binary-ID: 1",
        'X-Binary-Element-Type: "signed 32-bit integer"',
        "X-Binary-Element-Byte-Order: LITTLE_ENDIAN",
        f"Content-MD5: {md5}",
        f"X-Binary-Number-of-Elements: {fast * slow}",
        f"X-Binary-Size-Fastest-Dimension: {fast}",
        f"X-Binary-Size-Second-Dimension: {slow}",
        f"X-Binary-Size-Padding: {_PADDING}",
        "",
        "",
    ])
    tail = "\r\n--CIF-BINARY-FORMAT-SECTION----\r\n;\r\n\r\n"
    return (text.encode("ascii") + _START + packed + bytes(_PADDING)
            + tail.encode("ascii"))


def write_cbf(path, data, header: CbfHeader) -> None:
    """Write one frame as a miniCBF file (atomically: temporary file, then rename)."""
    path = Path(path)
    blob = cbf_bytes(data, header, name=path.stem or "image")
    with atomic_open(path, "wb") as fh:
        fh.write(blob)


def _simple_geometry(det) -> bool:
    """True if the detector is miniCBF's model: fast = imgCIF +x (McStas -x), slow =
    imgCIF -y, normal to the beam, spindle along imgCIF +x."""
    R = mcstas_rotation(det.beam, det.spindle, det.polar)
    f = to_mcstas(R, det.fdet)
    s = to_mcstas(R, det.sdet)
    a = to_mcstas(R, det.spindle)
    tol = 1e-9
    return (np.allclose(f, [-1, 0, 0], atol=tol) and np.allclose(s, [0, -1, 0], atol=tol)
            and np.allclose(a, [-1, 0, 0], atol=tol))


def cbf_header_for(info: DatasetInfo, index: int, det=None) -> CbfHeader:
    """The miniCBF header of frame ``index`` (0-based) of a dataset (of detector ``det``
    if given: a panel's, or a multi-panel frame's)."""
    plan = info.plan_of(index)             # -vary: the frame's detector and beam
    det = plan.detector if det is None else det
    bf, bs, dist = beam_centre_px(det)
    lam = np.asarray(plan.sources.wavelengths, dtype=np.float64)
    if getattr(info, "spectra", None) is not None:
        lam = np.asarray(info.spectra[index], dtype=np.float64)   # the frame's spectrum
    if info.scans is not None:
        start, width = info.scans[index].phi_start_deg, info.scans[index].osc_deg
    else:
        start, width = 0.0, 0.0
    cutoff = _INT32_MAX if info.saturation is None else int(info.saturation)
    return CbfHeader(pixel_size=float(det.pixel_size), distance=dist,
                     beam_xy=(bf, bs), wavelength_A=float(lam.mean()) * 1e10,
                     start_angle_deg=float(start), angle_increment_deg=float(width),
                     exposure_s=float(info.exposure_s), count_cutoff=cutoff,
                     thickness=float(det.thick),
                     twotheta_deg=float(np.degrees(getattr(det, "twotheta", 0.0))),
                     geometry_exact=_simple_geometry(det) and not getattr(det, "curved",
                                                                           False))


#: miniCBF pixel values of pixels that hold no data, as Pilatus / EIGER miniCBF files
#: write them (dxtbx's trusted range (-1, cutoff) masks both): module gaps, and the
#: pixels of the beamstop's shadow and bad pixels (nbsim.geometry.defects)
CBF_GAP = -1
CBF_BAD = -2


def _int32_frames(data) -> np.ndarray:
    """:func:`_as_int32` of any (..., slow, fast) array, its shape kept."""
    a = np.asarray(data)
    return _as_int32(a.reshape(-1, a.shape[-1])).reshape(a.shape)


def _mark_defects(plan, data: np.ndarray) -> np.ndarray:
    """``data`` (the frame) with the beamstop's shadow and bad pixels set to
    :data:`CBF_BAD` (int32; unchanged without them)."""
    defects = getattr(plan, "defects", None)
    if defects is None:
        return data
    out = _int32_frames(data).copy()
    out.reshape(-1)[np.asarray(defects.blocked).reshape(-1)] = CBF_BAD
    return out.reshape(np.shape(data))


class CbfSink:
    """One miniCBF file per frame, named by a ``#`` template (frame numbers from 1).

    Each file is written atomically, so on ``resume`` a frame whose file exists is
    complete.  ``notes`` says when the geometry cannot be exact in miniCBF."""

    def __init__(self, template: str, single: bool = False):
        if not single:
            frame_path(template, 0)              # raises ValueError without '#'
        self.template = template
        self.single = bool(single)               # one frame, one named file
        self._info: Optional[DatasetInfo] = None
        self.notes = []

    def open(self, info: DatasetInfo, resume: bool = False) -> Set[int]:
        self._info = info
        if not cbf_header_for(info, 0).geometry_exact:
            self.notes.append("miniCBF can only describe a detector normal to the beam "
                              "with the spindle along its fast axis; this geometry is "
                              "approximated (NeXus output describes it exactly)")
        if not resume:
            return set()
        return {i for i in range(info.nframes)
                if all(os.path.isfile(f) for f in self.frame_files(i))}

    def _path(self, index: int) -> str:
        return self.template if self.single else frame_path(self.template, index)

    def frame_files(self, index: int):
        """The files of frame ``index``: one, or one per panel (``_p00``...) for a
        multi-panel detector without a tiled layout (see :meth:`_write_panels`)."""
        path = self._path(index)
        ps = getattr(self._info.plan, "panels", None) if self._info is not None else None
        if ps is None or (ps.frame is not None and all(p.tile is not None
                                                       for p in ps.panels)):
            return [path]
        from ..geometry import panels as pnl
        return [pnl.panel_file_path(path, k, ps.count) for k in range(ps.count)]

    def write(self, index: int, data: np.ndarray) -> None:
        """``data``: the frame, (panels, slow, fast) (a single panel: (1, slow, fast) or
        (slow, fast))."""
        if self._info is None:
            raise RuntimeError("CbfSink.write before open")
        plan = self._info.plan
        if getattr(plan, "panels", None) is not None:
            self._write_panels(index, data)
            return
        a = _mark_defects(plan, np.asarray(data))
        if a.ndim == 3 and a.shape[0] == 1:
            a = a[0]
        write_cbf(self._path(index), a, cbf_header_for(self._info, index))

    def _write_panels(self, index: int, data: np.ndarray) -> None:
        """A multi-panel frame (nbsim.geometry.panels): the tiled frame with its gaps at
        :data:`CBF_GAP` and the frame detector's header when the panel set has a layout
        (presets), else
        one file per panel (``_p00``, ``_p01``... before the extension), each with its
        panel's header."""
        from ..geometry import panels as pnl
        plan = self._info.plan
        ps = plan.panels
        path = self._path(index)
        img = _mark_defects(plan, np.asarray(data).reshape(ps.shape))
        fplan = self._info.plan_of(index)      # -vary: the frame's own geometry
        if ps.frame is not None and all(p.tile is not None for p in ps.panels):
            # the module gaps hold Pilatus' gap value, which dxtbx masks
            from ..image_model import FileLayout
            frame = ps.tiled(_int32_frames(img), fill=CBF_GAP)
            write_cbf(path, frame, cbf_header_for(self._info, index,
                                                  FileLayout(fplan).detector))
            return
        for k in range(ps.count):
            write_cbf(pnl.panel_file_path(path, k, ps.count), img[k],
                      cbf_header_for(self._info, index, pnl.panel_detector(fplan, k)))

    def close(self) -> None:
        self._info = None

    def abort(self) -> None:
        self._info = None

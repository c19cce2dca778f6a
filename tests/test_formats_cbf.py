"""miniCBF output (nbsim.io.cbf) read back by fabio and parsed as dxtbx parses it; SMV
frames read by fabio."""
from __future__ import annotations

import base64
import hashlib
import re

import numpy as np
import pytest

fabio = pytest.importorskip("fabio")

from nbsim.io.cbf import (CbfHeader, CbfSink, byte_offset_compress, cbf_header_for,  # noqa
                          write_cbf)
from nbsim.io.labframe import mcstas_rotation                         # noqa: E402
from nbsim.io.sinks import DatasetInfo, FrameScan, frame_path         # noqa: E402
from nbsim.io.smv import SMVHeader, write_smv                         # noqa: E402
from nbsim.physics import subpixel_position                           # noqa: E402
from nbsim.simulator import Simulator                                 # noqa: E402

BASE = ["-cell", "70", "80", "90", "90", "90", "90", "-default_F", "100", "-N", "3",
        "-lambda", "1.3", "-distance", "150"]


def _decode_reference(raw: bytes, n: int) -> np.ndarray:
    """Byte-offset decoding written from the CBF specification (1/2/4/8-byte steps),
    accumulated in Python integers and wrapped to int32 at the end."""
    out, pos, cur = [], 0, 0
    while len(out) < n:
        step = int.from_bytes(raw[pos:pos + 1], "little", signed=True)
        pos += 1
        if step == -128:
            step = int.from_bytes(raw[pos:pos + 2], "little", signed=True)
            pos += 2
            if step == -32768:
                step = int.from_bytes(raw[pos:pos + 4], "little", signed=True)
                pos += 4
                if step == -2**31:
                    step = int.from_bytes(raw[pos:pos + 8], "little", signed=True)
                    pos += 8
        cur += step
        out.append(cur)
    assert pos == len(raw)
    return ((np.array(out, dtype=object) + 2**31) % 2**32 - 2**31).astype(np.int64)


def _frame_values(rng, shape):
    a = rng.integers(-5, 300000, shape).astype(np.int32)
    a.flat[:8] = [2**31 - 1, -2**31, 5, 2**31 - 1, 0, -40000, 40000, 127]
    a.flat[8:12] = [-127, -128, 128, -32768]
    return a


def test_byte_offset_matches_spec_decoder():
    rng = np.random.default_rng(3)
    a = _frame_values(rng, (1, 2000))
    raw = byte_offset_compress(a)
    assert np.array_equal(_decode_reference(raw, a.size), a.ravel().astype(np.int64))
    # small steps really are one byte each
    assert len(byte_offset_compress(np.arange(100, dtype=np.int32))) == 100


def _dxtbx_style_header(path):
    """The header dictionary as dxtbx's FormatCBFMini._start builds it."""
    blob = open(path, "rb").read()
    head = blob[:blob.index(b"--CIF-BINARY-FORMAT-SECTION--")].decode("ascii")
    d = {}
    for record in head.split("\n"):
        if record[:1] != "#":
            continue
        if len(record[1:].split()) <= 2 and record.count(":") == 2:
            d["timestamp"] = record[1:].strip()
            continue
        tokens = record.replace("=", "").replace(":", "").split()
        d[tokens[1]] = " ".join(tokens[2:])
    mime = blob[blob.index(b"--CIF-BINARY-FORMAT-SECTION--"):]
    for record in mime.split(b"\r\n"):
        if not record.strip():
            break
        record = record.decode("ascii")
        if record[0] == "X":
            token, value = record.split(":")          # dxtbx: exactly one colon
            d[token.strip()] = value.strip()
    md5 = re.search(rb"Content-MD5: (\S+)", blob).group(1).decode()
    return d, head, blob, md5


def test_fabio_reads_cbf_values_and_header(tmp_path):
    rng = np.random.default_rng(7)
    a = _frame_values(rng, (40, 50))
    h = CbfHeader(pixel_size=172e-6, distance=0.2, beam_xy=(10.5, 20.25),
                  wavelength_A=0.9793, start_angle_deg=3.5, angle_increment_deg=0.1,
                  exposure_s=0.25, count_cutoff=1048576, thickness=450e-6)
    path = tmp_path / "frame_00001.cbf"
    write_cbf(path, a, h)
    im = fabio.open(str(path))
    assert im.data.dtype == np.int32 and np.array_equal(im.data, a)
    assert im.header["_array_data.header_convention"] == "GENERIC_MINI"
    d, head, blob, md5 = _dxtbx_style_header(path)
    assert blob.startswith(b"###CBF")
    assert float(d["Detector_distance"].split()[0]) == pytest.approx(0.2)
    bx, by = map(float, d["Beam_xy"].replace("(", "").replace(")", "").replace(",", "")
                 .split()[:2])
    assert (bx, by) == (10.5, 20.25)
    px, py = map(float, d["Pixel_size"].replace("m", "").replace("x", "").split())
    assert px == py == pytest.approx(172e-6, rel=1e-12)
    assert float(d["Wavelength"].split()[0]) == pytest.approx(0.9793)
    assert float(d["Start_angle"].split()[0]) == 3.5
    assert float(d["Angle_increment"].split()[0]) == pytest.approx(0.1)
    assert float(d["Exposure_period"].split()[0]) == 0.25
    assert int(d["Count_cutoff"].split()[0]) == 1048576
    assert float(d["Silicon"].split()[2]) == pytest.approx(450e-6)
    assert "timestamp" in d
    assert int(d["X-Binary-Size-Fastest-Dimension"]) == 50
    assert int(d["X-Binary-Size-Second-Dimension"]) == 40
    assert int(d["X-Binary-Number-of-Elements"]) == 2000
    start = blob.index(b"\x0c\x1a\x04\xd5") + 4
    packed = blob[start:start + int(d["X-Binary-Size"])]
    assert base64.b64encode(hashlib.md5(packed).digest()).decode() == md5
    assert np.array_equal(_decode_reference(packed, a.size), a.ravel().astype(np.int64))


def test_pilatus_sizes_use_pilatus_convention(tmp_path):
    h = CbfHeader(pixel_size=172e-6, distance=0.2, beam_xy=(1, 1), wavelength_A=1.0)
    a = np.zeros((619, 487), np.int32)
    a[100, 200] = 12345
    write_cbf(tmp_path / "p.cbf", a, h)
    im = fabio.open(str(tmp_path / "p.cbf"))
    assert im.header["_array_data.header_convention"] == "PILATUS_1.2"
    assert "PILATUS 300K" in im.header["_array_data.header_contents"]
    assert im.data[100, 200] == 12345
    write_cbf(tmp_path / "q.cbf", a.T.copy(), h)           # 619 x 487 fast: not Pilatus
    assert fabio.open(str(tmp_path / "q.cbf")).header[
        "_array_data.header_convention"] == "GENERIC_MINI"


def test_float_frames_are_rounded(tmp_path):
    h = CbfHeader(pixel_size=1e-4, distance=0.1, beam_xy=(1, 1), wavelength_A=1.0)
    a = np.array([[0.4, 0.6, 2.5, 1e12], [-3.7, np.nan, 7.0, 8.49]], dtype=np.float32)
    write_cbf(tmp_path / "f.cbf", a, h)
    got = fabio.open(str(tmp_path / "f.cbf")).data
    assert got.tolist() == [[0, 1, 2, 2**31 - 1], [-4, 0, 7, 8]]


def _imgcif_simple_model_positions(path):
    """Pixel centres (m, imgCIF frame) of the model dxtbx builds from a miniCBF file's
    header text: fast +x, slow -y, normal to the beam at Detector_distance, Beam_xy
    (pixels from the corner)."""
    d, *_ = _dxtbx_style_header(path)
    distance = float(d["Detector_distance"].split()[0])
    bx, by = map(float, d["Beam_xy"].replace("(", "").replace(")", "").replace(",", "")
                 .split()[:2])
    px, py = map(float, d["Pixel_size"].replace("m", "").replace("x", "").split())
    fast, slow = (int(d["X-Binary-Size-Fastest-Dimension"]),
                  int(d["X-Binary-Size-Second-Dimension"]))
    fast_ax, slow_ax = np.array([1.0, 0, 0]), np.array([0, -1.0, 0])
    origin = distance * np.array([0, 0, -1.0]) - bx * px * fast_ax - by * py * slow_ax
    s, f = np.mgrid[0:slow, 0:fast].astype(np.float64)
    return origin + (f[..., None] + 0.5) * px * fast_ax + (s[..., None] + 0.5) * py * slow_ax


@pytest.mark.parametrize("extra,exact", [
    (["-detpixels_f", "40", "-detpixels_s", "30", "-Xbeam", "1.7", "-Ybeam", "2.2"], True),
    (["-xds", "-detpixels", "36", "-ORGX", "10", "-ORGY", "20.5"], True),
    (["-adxv", "-detpixels", "30"], False),      # slow axis up: a mirror of the model
    (["-detpixels", "30", "-twotheta", "10"], False),
    (["-dials", "-detpixels", "30"], False),
])
def test_cbf_geometry_matches_render_when_exact(tmp_path, extra, exact):
    plan = Simulator.from_args(BASE + extra).plan
    det = plan.detector
    info = DatasetInfo(plan=plan, nframes=1, scans=[FrameScan(0.0, 0.1)])
    h = cbf_header_for(info, 0)
    assert h.geometry_exact is exact
    if not exact:
        return
    s, f = np.mgrid[0:det.spixels, 0:det.fpixels].astype(np.float64)
    _, _, x, y, z = subpixel_position(det.pixel_size, f, s, det.pixel_size / 2, 0.0,
                                      *det.fdet, *det.sdet, *det.odet, *det.pix0)
    render = np.stack([x, y, z], axis=-1)
    R = np.diag([-1.0, 1.0, -1.0]) @ mcstas_rotation(det.beam, det.spindle, det.polar)
    render_imgcif = render @ R.T
    path = tmp_path / "g.cbf"
    write_cbf(path, np.zeros(plan.shape, np.int32), h)
    model = _imgcif_simple_model_positions(path)
    assert model.shape == render_imgcif.shape
    assert np.max(np.abs(render_imgcif - model)) <= 1e-9
    assert h.wavelength_A == pytest.approx(1.3, rel=1e-12)


def test_cbf_sink_template_frames_and_resume(tmp_path):
    plan = Simulator.from_args(BASE + ["-detpixels", "24"]).plan
    scans = [FrameScan(5.0 + 0.5 * i, 0.5) for i in range(3)]
    info = DatasetInfo(plan=plan, nframes=3, scans=scans, exposure_s=0.5, saturation=65535)
    template = str(tmp_path / "img_####.cbf")
    sink = CbfSink(template)
    assert sink.open(info) == set()
    frames = [np.full(plan.shape, 10 * (i + 1), np.int32) for i in range(3)]
    for i in (0, 2):
        sink.write(i, frames[i])
    sink.abort()
    assert frame_path(template, 0).endswith("img_0001.cbf")
    sink = CbfSink(template)
    assert sink.open(info, resume=True) == {0, 2}
    sink.write(1, frames[1])
    sink.close()
    for i in range(3):
        path = frame_path(template, i)
        assert np.array_equal(fabio.open(path).data, frames[i])
        d, *_ = _dxtbx_style_header(path)
        assert float(d["Start_angle"].split()[0]) == 5.0 + 0.5 * i
        assert float(d["Angle_increment"].split()[0]) == 0.5
        assert int(d["Count_cutoff"].split()[0]) == 65535
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ValueError, match="#"):
        CbfSink(str(tmp_path / "no_template.cbf"))


def test_fabio_reads_smv_frames(tmp_path):
    rng = np.random.default_rng(11)
    img = rng.integers(0, 65536, (30, 40)).astype(np.uint16)
    h = SMVHeader(fpixels=40, spixels=30, pixel_size=0.1e-3, distance=0.1, lambda0=1e-10,
                  Xbeam=2e-3, Ybeam=1.5e-3, Fbeam=2e-3, Sbeam=1.5e-3, phi0=np.radians(1.5),
                  osc=np.radians(0.25))
    path = tmp_path / "img_00001.img"
    write_smv(path, img, h)
    im = fabio.open(str(path))
    assert np.array_equal(im.data.astype(np.uint16), img)
    assert int(im.header["SIZE1"]) == 40 and int(im.header["SIZE2"]) == 30
    assert float(im.header["OSC_START"]) == 1.5
    assert float(im.header["OSC_RANGE"]) == 0.25
    assert float(im.header["PIXEL_SIZE"]) == pytest.approx(0.1)

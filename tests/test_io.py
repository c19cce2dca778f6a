"""nbsim.io readers/writers against nanoBragg.c's files and behaviour."""
import gzip
import os
import math
from pathlib import Path

import numpy as np
import pytest

from nbsim import stats
from nbsim.io import (FormatError, SMVHeader, c_overrides_from_smv, fdump_bytes,
                      format_smv_header, int_image, pgm_image, read_fdump, read_float_image,
                      read_hkl, read_mosflm_matrix, read_pgm, read_smv, read_smv_mask,
                      read_sources, smv_value_of, write_fdump, write_float_image, write_pgm,
                      write_smv)

GOLDEN = Path(__file__).parent / "golden"
PUBLIC = GOLDEN / "public"
INPUTS = GOLDEN / "inputs"


def _gunzip(path):
    return gzip.decompress(path.read_bytes())


def _mosflm_header_256():
    """Header values C held for the 256x256 MOSFLM cases (see their c_stdout.txt)."""
    return SMVHeader(256, 256, pixel_size=1e-4, distance=0.1, lambda0=6.2e-10,
                     Xbeam=0.01285, Ybeam=0.01285, Fbeam=0.0129, Sbeam=0.0129,
                     dials_origin=(-12.9, 12.9, -100.0), ORGX=129.5, ORGY=129.5,
                     close_distance=0.1, phi0=0.0, osc=0.0, detector_twotheta=0.0)


# ------------------------------------------------------------------ SMV

def test_read_smv_header_img():
    header, image = read_smv(INPUTS / "header.img")
    assert image.shape == (180, 200) and image.dtype == np.uint16
    assert header["SIZE1"] == "200" and header["PIXEL_SIZE"] == "0.12"
    cv = header["_c_values"]
    assert cv["DISTANCE"] == 90.0 and cv["CLOSE_DISTANCE"] is None and cv["PHI"] is None
    ov = c_overrides_from_smv(cv, "img")
    # c_stdout: distance=0.09 detsize=0.024x0.0216 pixel=0.00012 (200x180), Xbeam=0.011 Ybeam=0.0105
    out = (PUBLIC / "img_header" / "c_stdout.txt").read_text()
    assert "distance=%g detsize=%gx%g  pixel=%g meters (%dx%d pixels)" % (
        ov["distance"], ov["detsize_f"], ov["detsize_s"], ov["pixel_size"],
        ov["fpixels"], ov["spixels"]) in out
    assert "  Xbeam=%g Ybeam=%g" % (ov["Xbeam"], ov["Ybeam"]) in out


def test_read_smv_mask():
    header, render = read_smv_mask(INPUTS / "mask256.img")
    assert render.shape == (256, 256)
    zeros = ~render
    expect = np.zeros((256, 256), dtype=bool)
    expect[100:140, 50:90] = True
    expect[:, 200] = True
    assert np.array_equal(zeros, expect)
    # the mask's BEAM_CENTER_Y is flipped by C: Ybeam = detsize_s - value
    ov = c_overrides_from_smv(header["_c_values"], "mask")
    assert ov["Ybeam"] == pytest.approx(0.0256 - 0.0128)


def test_value_of_substring_quirks():
    h = b"{\nHEADER_BYTES=512;\nDISTANCE=100;\nCLOSE_DISTANCE=95;\nXDS_ORGX=12.5;\n}"
    assert smv_value_of(h, "DISTANCE") == 95.0          # last match wins, as in C
    assert smv_value_of(h, "ORGX") == 12.5
    assert np.isnan(smv_value_of(h, "PHI"))
    assert smv_value_of(b"{\nHEADER_BYTES=512;\nFOO\n", "FOO") == 0.0


def test_read_smv_rejects_non_smv(tmp_path):
    p = tmp_path / "bad.img"
    p.write_bytes(b"P5\n" + b"\0" * 600)
    with pytest.raises(FormatError, match="bad.img"):
        read_smv(p)


@pytest.mark.parametrize("case,kind", [("intfile_scale_pgm", "int"),
                                       ("noise_seeded", "int"),
                                       ("noise_seeded", "noise")])
def test_smv_header_bytes_identical(case, kind):
    ref = _gunzip(PUBLIC / case / f"{kind}.img.gz")[:512]
    assert format_smv_header(_mosflm_header_256(), noise=(kind == "noise")) == ref


@pytest.mark.parametrize("case", ["intfile_scale_pgm", "noise_seeded"])
def test_int_image_identical_to_c(case, tmp_path):
    d = PUBLIC / case
    args = (d / "args.txt").read_text().split()
    img = read_float_image(d / "c_float.bin.gz", fpixels=256)
    st = stats.image_stats(img, pixel_size=1e-4)
    scale = float(args[args.index("-scale") + 1]) if "-scale" in args else 0.0
    adc = float(args[args.index("-adc") + 1]) if "-adc" in args else 40.0
    ii = int_image(img, stats.intfile_scale_rule(st.max_I, scale), adc)
    out = tmp_path / "int.img"
    write_smv(out, ii, _mosflm_header_256())
    ref = _gunzip(d / "int.img.gz")
    mine = out.read_bytes()
    ref_pix = np.frombuffer(ref[512:], dtype="<u2").reshape(256, 256)
    assert (ii == ref_pix).mean() >= 0.999
    assert np.array_equal(ii, ref_pix)              # in fact exact
    assert mine == ref
    hdr, back = read_smv(out)
    assert np.array_equal(back, ii)
    ref_keys = [ln.split("=")[0] for ln in ref[:512].decode("latin-1").splitlines() if "=" in ln]
    assert [k for k in hdr if not k.startswith("_")] == ref_keys
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_int_image_rounding_and_roi():
    img = np.array([[0.0, 1.0, 2.0], [1e9, -1e9, 2.49999]], dtype=np.float32)
    ii = int_image(img, 1.0, 40.0)
    assert ii.tolist() == [[40, 41, 42], [65535, 0, 42]]
    # floorf((float)(test+0.5)): 99.4999999 + 0.5 rounds to 100.0 in float -> 100
    # (a double floor would give 99)
    assert int_image(np.array([[1.0]], np.float32), 99.4999999, 0.0)[0, 0] == 100
    assert int_image(np.array([[1.0]], np.float32), 99.4999, 0.0)[0, 0] == 99
    r = int_image(img, 1.0, 40.0, roi=(1, 2, 0, 0))
    assert r.tolist() == [[0, 41, 42], [0, 0, 0]]


# ------------------------------------------------------------------ PGM

def test_pgm_byte_identical(tmp_path):
    d = PUBLIC / "intfile_scale_pgm"
    args = (d / "args.txt").read_text().split()
    pgm_scale = float(args[args.index("-pgmscale") + 1])
    img = read_float_image(d / "c_float.bin.gz", fpixels=256)
    st = stats.image_stats(img, pixel_size=1e-4)
    scale = stats.pgm_scale_rule(st.rmsd, stats.intfile_scale_rule(st.max_I, 10.0), pgm_scale)
    assert scale == 2.0
    out = tmp_path / "image.pgm"
    write_pgm(out, pgm_image(img, scale), scale)
    ref = _gunzip(d / "image.pgm.gz")
    assert out.read_bytes() == ref
    pix, comments = read_pgm(out)
    assert comments == ["pixels scaled by 2"] and pix.shape == (256, 256)


def test_pgm_auto_scale_header():
    d = PUBLIC / "simple_cubic"
    img = read_float_image(d / "c_float.bin.gz", fpixels=256)
    st = stats.image_stats(img, pixel_size=1e-4)
    s = stats.pgm_scale_rule(st.rmsd, stats.intfile_scale_rule(st.max_I))
    assert s == pytest.approx(250.0 / (5.0 * st.rmsd))
    p = pgm_image(img, s)
    assert p.max() == 255 and p.dtype == np.uint8


# ------------------------------------------------------------------ float image

def test_float_image_roundtrip(tmp_path):
    img = read_float_image(PUBLIC / "roi" / "c_float.bin.gz", fpixels=256)
    p = tmp_path / "f.bin"
    write_float_image(p, img)
    assert p.stat().st_size == 256 * 256 * 4
    assert p.read_bytes() == _gunzip(PUBLIC / "roi" / "c_float.bin.gz")
    assert np.array_equal(read_float_image(p, shape=(256, 256)), img)
    with pytest.raises(FormatError):
        read_float_image(p, shape=(10, 10))


# ------------------------------------------------------------------ HKL / Fdump

@pytest.mark.parametrize("name", ["grid3", "sparse", "test_pattern", "grid10"])
def test_hkl_strict_equals_c_mode(name):
    a = read_hkl(INPUTS / f"{name}.hkl", default_F=3.5)
    b = read_hkl(INPUTS / f"{name}.hkl", default_F=3.5, strict=False)
    assert (a.h_min, a.h_max, a.k_min, a.k_max, a.l_min, a.l_max, a.hkls) == \
           (b.h_min, b.h_max, b.k_min, b.k_max, b.l_min, b.l_max, b.hkls)
    assert np.array_equal(a.F, b.F)


def test_hkl_grid_and_default_F():
    d = read_hkl(INPUTS / "sparse.hkl", default_F=10.0)
    assert (d.h_min, d.h_max, d.k_min, d.k_max, d.l_min, d.l_max) == (-1, 2, -1, 2, 0, 0)
    assert d.F.shape == (4, 4, 1) and d.hkls == 8
    assert d.F[0 - d.h_min, 0 - d.k_min, 0] == 100.0
    assert d.F[2 - d.h_min, 2 - d.k_min, 0] == 30.0
    assert d.F[1 - d.h_min, 0 - d.k_min, 0] == 10.0          # missing -> default_F
    # the count C prints
    out = (PUBLIC / "hkl_sparse_default_F" / "c_stdout.txt").read_text()
    assert "  %d initialized hkls (all others =%g)" % (d.hkls, 10.0) in out


@pytest.mark.parametrize("text,match", [
    ("1 2 3 4\n# comment\n", r":2: expected 'h k l F'"),
    ("1 2 3 4\n1 2 3 4 5\n", r":2: expected 'h k l F'"),
    ("1 2 3 4\n\n1.5 2 3 4\n", r":3: Miller index '1.5'"),
    ("1 2 3 x\n", r":1: structure factor 'x'"),
    ("\n\n", r"no HKL entries"),
])
def test_hkl_errors_name_file_and_line(tmp_path, text, match):
    p = tmp_path / "bad.hkl"
    p.write_text(text)
    with pytest.raises(FormatError, match=match) as e:
        read_hkl(p)
    assert str(p) in str(e.value)
    assert "\n" not in str(e.value)


def test_hkl_c_mode_truncates_at_comment(tmp_path):
    p = tmp_path / "c.hkl"
    p.write_text("0 0 0 5\n1 0 0 6\n# stop here\n2 0 0 7\n")
    d = read_hkl(p, strict=False)
    assert d.hkls == 2 and d.h_max == 1


def test_fdump_roundtrip_and_format(tmp_path):
    d = read_hkl(INPUTS / "sparse.hkl", default_F=3.5)
    raw = fdump_bytes(d)
    head = b"-1 2 -1 2 0 0\n\f"
    assert raw.startswith(head)
    assert len(raw) == len(head) + 5 * 5 * 2 * 8       # (range+1)^3 doubles incl. C padding
    pad = np.frombuffer(raw[len(head):], dtype="<f8").reshape(5, 5, 2)
    assert (pad[4] == 0).all() and (pad[:, 4] == 0).all() and (pad[:, :, 1] == 0).all()
    p = tmp_path / "Fdump.bin"
    write_fdump(p, d)
    back = read_fdump(p)
    assert np.array_equal(back.F, d.F)
    assert (back.h_min, back.h_max, back.k_min, back.k_max, back.l_min, back.l_max) == \
           (d.h_min, d.h_max, d.k_min, d.k_max, d.l_min, d.l_max)
    assert back.hkls == 4 * 4 * 1
    big = read_hkl(INPUTS / "grid3.hkl")
    write_fdump(p, big)
    assert np.array_equal(read_fdump(p).F, big.F)
    p.write_bytes(raw[:-8])
    with pytest.raises(FormatError, match="truncated"):
        read_fdump(p)


# ------------------------------------------------------------------ matrix

def test_mosflm_matrix_as_c_assigns_it():
    a, b, c = read_mosflm_matrix(INPUTS / "hex_A.mat")
    assert a.tolist() == [0.01214963, -0.01451536, 0.01705250]     # first column
    assert b.tolist() == [0.02546154, 0.00000807, 0.00089825]
    # C prints a*, b*, c* after scaling by 1e-10/lambda0 (lambda 6.2 A)
    out = (PUBLIC / "hkl_mat_nointerp" / "c_stdout.txt").read_text().splitlines()
    i = out.index("reciprocal-space cell vectors (Angstrom^-1):")
    s = 1e-10 / 6.2e-10
    for row, axis in zip(out[i + 2:i + 5], "XYZ"):
        k = "XYZ".index(axis)
        assert row == "%s: %11.8f %11.8f %11.8f" % (axis, a[k] * s, b[k] * s, c[k] * s)


def test_mosflm_matrix_too_few_numbers(tmp_path):
    p = tmp_path / "short.mat"
    p.write_text("1 2 3\n4 5 6\n7 8\n")
    with pytest.raises(FormatError, match="expected 9 numbers"):
        read_mosflm_matrix(p)


# ------------------------------------------------------------------ sources

def test_sources_as_c_prints_them():
    s = read_sources(INPUTS / "sources.txt", lambda0=6.2e-10)
    out = (PUBLIC / "sourcefile" / "c_stdout.txt").read_text().splitlines()
    i = out.index("  created a total of 3 sources:")
    for j in range(3):
        assert out[i + 1 + j] == "%g %g %g   %g %g" % (s.x[j], s.y[j], s.z[j], s.weight[j],
                                                     s.wavelength[j])


def test_sources_defaults_and_errors(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("-10 0 0\n\n-10,0.1;0 2\r\n5\n")
    s = read_sources(p, beam_vector=(0.0, 0.0, 1.0), lambda0=1.5e-10)
    assert s.n == 3
    assert s.weight.tolist() == [1.0, 2.0, 1.0]
    assert s.wavelength.tolist() == [1.5e-10] * 3
    assert (s.x[2], s.y[2], s.z[2]) == (5.0, 0.0, -10.0)      # -10 m along the beam
    q = tmp_path / "bad.txt"
    q.write_text("-10 0 0\n-10 abc 0\n")
    with pytest.raises(FormatError, match=r"bad.txt:2: column 2"):
        read_sources(q)
    q.write_text("1 2 3 4 5 6\n")
    with pytest.raises(FormatError, match="6 columns"):
        read_sources(q)
    q.write_text("\n  \n")
    with pytest.raises(FormatError, match="no sources"):
        read_sources(q)


def test_sources_c_mode_quirks(tmp_path):
    # checked against nanoBragg.c: a comment line is a source at 0 with weight 0 and
    # lambda 0; CRLF / missing final newline zero the remaining columns
    p = tmp_path / "s.txt"
    p.write_bytes(b"# comment\n-10 0 0\n\n-10,0.1;0 2\r\n-10 0 0")
    s = read_sources(p, lambda0=6.2e-10, strict=False)
    rows = ["%g %g %g   %g %g" % r for r in zip(s.x, s.y, s.z, s.weight, s.wavelength)]
    assert rows == ["0 0 0   0 0", "-10 0 0   1 6.2e-10", "-10 0.1 0   2 0", "-10 0 0   0 0"]


def test_tiff_roundtrip_float32(tmp_path):
    from nbsim.io import read_tiff, write_tiff
    img = np.arange(12, dtype=np.float64).reshape(3, 4) * 0.25
    path = tmp_path / "x.tif"
    write_tiff(path, img)
    back = read_tiff(path)
    assert back.dtype == np.float32 and back.shape == (3, 4)
    np.testing.assert_array_equal(back, img.astype(np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["x.tif"]


# ------------------------------------------------------------------ C arithmetic details

def test_stats_sum_in_c_loop_order():
    """sum/sumsqr/rmsd are left-to-right double sums like C's loop (not pairwise), also
    across the blocks the implementation works in (> 65536 pixels)."""
    import functools
    rng = np.random.default_rng(7)
    img = rng.random((300, 260)).astype(np.float32)     # 78000 pixels: two blocks
    img[0, 0] = 3.0e7                                   # makes the order matter
    v = [float(x) for x in img.ravel()]
    total = functools.reduce(lambda a, b: a + b, v, 0.0)
    sq = functools.reduce(lambda a, b: a + float(np.float32(b) * np.float32(b)), v, 0.0)
    st = stats.image_stats(img, pixel_size=1e-4)
    assert st.sum == total
    assert st.sumsqr == sq
    assert st.sum != float(np.sum(img.astype(np.float64)))   # pairwise differs here
    avg = total / img.size
    dev = functools.reduce(lambda a, b: a + (b - avg) * (b - avg), v, 0.0)
    assert st.rmsd == math.sqrt(dev / (img.size - 1))
    assert (st.max_fpixel, st.max_spixel, st.max_I) == (0, 0, 3.0e7)


def test_stats_first_maximum_mask_and_nan():
    img = np.array([[1.0, 5.0, np.nan], [5.0, 7.0, 2.0]], dtype=np.float32)
    mask = np.array([[1, 1, 1], [1, 0, 1]], dtype=bool)      # hides the 7
    st = stats.image_stats(img, mask=mask, pixel_size=1e-4)
    assert (st.max_I, st.max_fpixel, st.max_spixel) == (5.0, 1, 0)   # first of the 5s
    assert st.sumn == 5 and math.isnan(st.sum)
    none = stats.image_stats(-np.ones((2, 2), np.float32), pixel_size=1e-4)
    assert (none.max_I, none.max_fpixel, none.max_spixel) == (0.0, -1, -1)


def test_int_and_pgm_conversions_of_special_values():
    img = np.array([[np.nan, np.inf, -np.inf, -1.5, 300.7, 2.5e9]], dtype=np.float32)
    # int: clip to [0, 65535] then floorf(x + 0.5); NaN survives the clips and
    # (unsigned short)NaN is 0 on x86-64
    assert int_image(img, 1.0, 0.0).tolist() == [[0, 65535, 0, 0, 301, 65535]]
    # pgm: clip above only, truncate to int32, keep the low byte (-1.5 -> -1 -> 255);
    # NaN and -inf (outside int32) give 0
    assert pgm_image(img, 1.0).tolist() == [[0, 255, 0, 255, 255, 255]]
    assert pgm_image(np.array([[-300.2]], np.float32), 1.0)[0, 0] == (-300) % 256

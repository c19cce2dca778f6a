"""nbsim-compare (issue 3): statistics, summary.json, PNG previews, exit statuses."""
import io
import json
import os
import stat
import sys

import numpy as np
import pytest

from conftest import PUBLIC, golden_args, golden_cases
from nbsim.cli.compare import c_run_args, compare_images, main

C_BIN = os.environ.get("NB_C_BIN") or "/tmp/nb/nanoBragg"


def run_compare(argv):
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(argv), stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("case", golden_cases())
def test_every_public_case_passes_against_c_float(case, tmp_path):
    rc, out, err = run_compare(["--threshold", "0.999999", "--outdir", str(tmp_path),
                                "--c-float", str(PUBLIC / case / "c_float.bin.gz"), "--",
                                *golden_args(case), "-c_parity"])
    assert rc == 0, out + err
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["passed"] and s["correlation"] >= 0.999999 and s["mode"] == "c-parity"
    assert abs(s["sum_ratio"] - 1) < 1e-6


@pytest.mark.parametrize("case", [c for c in golden_cases()
                                  if (PUBLIC / c / "spec_float.bin.gz").exists()])
def test_spec_cases_against_spec_reference(case, tmp_path):
    rc, out, err = run_compare(["--threshold", "0.999999", "--outdir", str(tmp_path),
                                "--c-float", str(PUBLIC / case / "spec_float.bin.gz"), "--",
                                *golden_args(case)])
    assert rc == 0, out + err


def _png_info(path):
    """(width, height, RGB pixels) of a PNG, read by Pillow."""
    Image = pytest.importorskip("PIL.Image")
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.width, im.height, np.asarray(im.convert("RGB"))


def test_outputs_and_report(tmp_path):
    case = "mosaic"
    rc, out, err = run_compare(["--outdir", str(tmp_path / "o"), "--roi", "10", "99", "20", "59",
                                "--c-float", str(PUBLIC / case / "c_float.bin.gz"), "--",
                                *golden_args(case), "-c_parity"])
    assert rc == 0, err
    for key in ("correlation =", "RMSE =", "max |diff| =", "sum C =", "sum nbsim =",
                "ratio =", "time C =", "nbsim ="):
        assert key in out
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["pixels"] == 90 * 40 and s["roi"] == [10, 99, 20, 59]
    for name in ("c.png", "nbsim.png", "diff.png"):
        w, h, pix = _png_info(tmp_path / "o" / name)
        assert (w, h) == (256, 256)
    _, _, c = _png_info(tmp_path / "o" / "c.png")
    _, _, n = _png_info(tmp_path / "o" / "nbsim.png")
    # same scale: (nearly) equal images give equal pictures, with spots and background
    assert np.mean(np.all(c == n, axis=-1)) > 0.999 and len(np.unique(c.reshape(-1, 3),
                                                                        axis=0)) > 20


def test_below_threshold_exits_3(tmp_path):
    rc, out, err = run_compare(["--outdir", str(tmp_path), "--threshold", "0.99",
                                "--c-float", str(PUBLIC / "mosaic" / "c_float.bin.gz"), "--",
                                *golden_args("triclinic_misset"), "-c_parity"])
    assert rc == 3 and "FAIL" in out
    assert not json.loads((tmp_path / "summary.json").read_text())["passed"]


def test_shape_mismatch_exits_4(tmp_path):
    rc, out, err = run_compare(["--outdir", str(tmp_path),
                                "--c-float", str(PUBLIC / "simple_cubic" / "c_float.bin.gz"),
                                "--", *golden_args("hkl_pattern")])
    assert rc == 4 and err.count("\n") == 1 and "pixels" in err


@pytest.mark.parametrize("argv", [
    ["--c-float", "x.bin"],                                     # no '--'
    ["--c-float", "x.bin", "--"],                               # no ARGS
    ["--roi", "1", "2", "--", "-cell", "1"],                    # short --roi
    ["--threshold", "high", "--c-float", "x", "--", "-default_F", "1"],
    ["--bogus", "--", "-default_F", "1"],
    ["--c-float", "missing.bin", "--", "-cell", "100", "100", "100", "90", "90", "90",
     "-default_F", "1", "-detpixels", "8"],
    ["--c-float", "missing.bin", "--", "-cell", "100"],         # nbsim ARGS error
    ["--c-bin", "/nonexistent/nanoBragg", "--", "-cell", "100", "100", "100", "90", "90",
     "90", "-default_F", "1", "-detpixels", "8"],
])
def test_usage_errors_exit_2(argv, monkeypatch):
    monkeypatch.delenv("NB_C_BIN", raising=False)
    rc, out, err = run_compare(argv)
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err


def test_no_c_source_exits_2(monkeypatch):
    monkeypatch.delenv("NB_C_BIN", raising=False)
    rc, out, err = run_compare(["--", *golden_args("simple_cubic")])
    assert rc == 2 and "NB_C_BIN" in err


def test_help():
    rc, out, err = run_compare(["-h"])
    assert rc == 0 and "--c-float" in out


def test_c_run_args_rewrites_paths_and_outputs(tmp_path):
    from nbsim.args import parse_args
    args = golden_args("hkl_pattern") + ["-floatfile", "mine.bin", "-noisefile", "n.img",
                                         "-c_parity", "-threads", "2"]
    parsed = parse_args(args)
    c = c_run_args(args, parsed, str(tmp_path))
    assert "-c_parity" not in c and "-threads" not in c and "mine.bin" not in c
    assert c[c.index("-hkl") + 1] == golden_args("hkl_pattern")[1]
    assert c[-9:] == ["-dumpfile", str(tmp_path / "Fdump.bin"), "-floatfile",
                      str(tmp_path / "c_float.bin"), "-intfile", str(tmp_path / "c_int.img"),
                      "-nopgm", "-nonoise", "-noprogress"][-9:]


def test_c_bin_path_with_a_stand_in_program(tmp_path, monkeypatch):
    """The --c-bin / NB_C_BIN path, with a stand-in that writes the stored C image."""
    fake = tmp_path / "fake_nb"
    ref = PUBLIC / "simple_cubic" / "c_float.bin.gz"
    fake.write_text(f"""#!{sys.executable}
import gzip, sys
a = sys.argv
out = a[a.index('-floatfile') + 1]
open(out, 'wb').write(gzip.decompress(open({str(ref)!r}, 'rb').read()))
print('threads', __import__('os').environ.get('OMP_NUM_THREADS'))
""")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    rc, out, err = run_compare(["--outdir", str(tmp_path / "o"), "--c-bin", str(fake),
                                "--threshold", "0.999999", "--", *golden_args("simple_cubic"),
                                "-c_parity"])
    assert rc == 0, err
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["c_seconds"] > 0
    monkeypatch.setenv("NB_C_BIN", str(fake))
    rc, out, err = run_compare(["--outdir", str(tmp_path / "o2"), "--",
                                *golden_args("simple_cubic")])
    assert rc == 0, err


@pytest.mark.skipif(not os.access(C_BIN, os.X_OK), reason="no nanoBragg binary")
@pytest.mark.parametrize("case", ["hkl_interp_auto", "sourcefile", "mask_file"])
def test_against_the_real_c_binary(case, tmp_path):
    rc, out, err = run_compare(["--outdir", str(tmp_path), "--c-bin", C_BIN, "--threshold",
                                "0.999999", "--", *golden_args(case), "-c_parity"])
    assert rc == 0, out + err


def test_compare_images_degenerate():
    z = np.zeros((4, 4))
    assert compare_images(z, z)["correlation"] == 1.0
    one = np.ones((4, 4))
    assert compare_images(z, one)["correlation"] == 0.0
    nan = z.copy()
    nan[0, 0] = np.nan
    assert compare_images(nan, nan)["correlation"] == 1.0
    assert compare_images(nan, z)["correlation"] == 0.0

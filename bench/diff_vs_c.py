"""Random differential test of the nbsim CLI against nanoBragg.c binaries.

    NB_C_BIN=/path/nanoBragg [NB_C_SPEC_BIN=/path/nanoBragg_spec] \
        python bench/diff_vs_c.py FIRST_SEED COUNT

Each seed draws a random flag set (conventions, CUSTOM vectors, detector rotations and
two-theta, curved / point pixel, sensor thickness, divergence and dispersion, a source
file, mosaic domains, phi sweeps, misset (also random), crystal shapes and sizes, HKL
files with and without interpolation, ROI, dmin, water, beam centres, detector sizes,
fluence...), runs the C binary (OMP_NUM_THREADS=1) and nbsim on it with the same seed,
and compares: the float image (max |diff| / max <= 1e-5), the SMV integer and noise
images and the PGM (byte for byte), and the statistics lines C prints (to 2e-5).
``NB_C_BIN`` (upstream main) is compared with ``-c_parity``; ``NB_C_SPEC_BIN`` (main
with upstream's fix branches and the per-evaluation tricubic fallback, see
tests/golden/README.md) with the default mode, except for flag sets with -pix0_vector,
which the spec mode honours differently.  Prints one line per comparison ("ok" or "DIFF"
with the flags to reproduce it) and a count at the end.

Flags are drawn in an order a user of C must use: C matches flags by substring, so e.g.
``-misset_seed`` given after ``-misset random`` would also reset the misset angles in C
(REFERENCE.md section 5; nbsim parses exact names).  This is how the CUSTOM two-theta axis,
the exact direct-beam geometry under fast-math and the DIALS origin's signed zero were
found (docs/architecture.md, "Precision").
"""
from __future__ import annotations

import math
import os
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
INPUTS = ROOT / "tests" / "golden" / "inputs"
NUM = re.compile(r"[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf)")
STAT_PREFIXES = ("max_I", "mean=", "solid angle", "intfile_scale", "pgm_scale",
                 "divergence deviation")


def _f(x, nd=3):
    return f"{x:.{nd}f}"


def draw_flags(r: random.Random) -> list:
    """One random nanoBragg flag set."""
    a = []
    if r.random() < 0.15:
        a += ["-mat", str(INPUTS / "hex_A.mat")]
        lam = 6.2
    else:
        ang = [90.0] * 3 if r.random() < 0.5 else [r.uniform(70, 110) for _ in range(3)]
        a += ["-cell"] + [_f(r.uniform(30, 120)) for _ in range(3)] + [_f(x) for x in ang]
        lam = r.choice([1.0, 1.5, 6.2, 0.9])
    if r.random() < 0.3:
        hkl = r.choice(["grid10.hkl", "grid3.hkl", "sparse.hkl", "test_pattern.hkl"])
        a += ["-hkl", str(INPUTS / hkl), "-default_F", str(r.choice([0, 10, 100]))]
        if r.random() < 0.3:
            a += [r.choice(["-interpolate", "-nointerpolate"])]
    else:
        a += ["-default_F", str(r.choice([10, 100, 1000]))]
    if r.random() < 0.5:
        a += ["-N", str(r.randint(1, 12))]
    else:
        a += ["-Na", str(r.randint(1, 10)), "-Nb", str(r.randint(1, 10)),
              "-Nc", str(r.randint(1, 10))]
    if r.random() < 0.3:
        a += [r.choice(["-square_xtal", "-round_xtal", "-gauss_xtal", "-binary_spots",
                        "-tophat_spots"])]
        if r.random() < 0.5:
            a += ["-fudge", _f(r.uniform(0.5, 2))]
    if r.random() < 0.3:
        a += ["-misset"] + [_f(r.uniform(-180, 180), 2) for _ in range(3)]
    a += ["-energy", _f(12398.42 / lam)] if r.random() < 0.2 else ["-lambda", str(lam)]
    if r.random() < 0.2:
        a += ["-dispersion", _f(r.uniform(0, 5), 2), "-dispsteps", str(r.randint(1, 3))]
    if r.random() < 0.2:
        a += ["-divergence", _f(r.uniform(0, 2)), "-divsteps", str(r.randint(1, 3))]
        if r.random() < 0.5:
            a += [r.choice(["-square_div", "-round_div"])]
    if r.random() < 0.1:
        a += ["-sourcefile", str(INPUTS / "sources.txt")]
    if r.random() < 0.3:
        a += ["-polar", _f(r.uniform(-1, 1))]
    elif r.random() < 0.1:
        a += ["-nopolar"]
    if r.random() < 0.2:
        a += ["-fluence", f"{r.uniform(1e20, 1e24):.3e}"]
    if r.random() < 0.2:
        a += ["-flux", f"{r.uniform(1e10, 1e13):.3e}", "-exposure", _f(r.uniform(0.1, 2), 2),
              "-beamsize", _f(r.uniform(0.01, 0.2))]
    n = r.choice([48, 64, 80])
    if r.random() < 0.5:
        a += ["-detpixels", str(n)]
    else:
        a += ["-detpixels_f", str(n), "-detpixels_s", str(r.choice([40, 56, 64]))]
    a += ["-pixel", _f(r.uniform(0.05, 0.3))]
    if r.random() < 0.8:
        a += [r.choice(["-distance", "-close_distance"]), _f(r.uniform(50, 300), 2)]
    conv = r.choice([None, None, "mosflm", "xds", "adxv", "denzo", "dials"])
    if conv:
        a += ["-" + conv]
    if r.random() < 0.3:
        a += ["-Xbeam", _f(r.uniform(0, 10), 2), "-Ybeam", _f(r.uniform(0, 10), 2)]
    elif r.random() < 0.15:
        a += ["-ORGX", _f(r.uniform(0, 60), 1), "-ORGY", _f(r.uniform(0, 60), 1)]
    if r.random() < 0.3:
        a += ["-twotheta", _f(r.uniform(-30, 30), 2)]
    if r.random() < 0.3:
        for ax in "xyz":
            if r.random() < 0.6:
                a += [f"-detector_rot{ax}", _f(r.uniform(-10, 10), 2)]
    if r.random() < 0.3:
        a += ["-pivot", r.choice(["beam", "sample"])]
    if r.random() < 0.1:
        a += ["-curved_det"]
    if r.random() < 0.1:
        a += ["-point_pixel"]
    if r.random() < 0.3:
        a += ["-oversample", str(r.randint(1, 3))]
    if r.random() < 0.2:
        a += [r.choice(["-oversample_thick", "-oversample_polar", "-oversample_omega"])]
    if r.random() < 0.2:
        a += ["-detector_abs", _f(r.uniform(10, 500), 1), "-detector_thick",
              _f(r.uniform(10, 500), 1), "-detector_thicksteps", str(r.randint(1, 3))]
    if r.random() < 0.2:
        a += ["-roi", str(r.randint(0, 20)), str(r.randint(25, 47)), str(r.randint(0, 20)),
              str(r.randint(25, 39))]
    if r.random() < 0.3:
        a += ["-phi", _f(r.uniform(-20, 20), 2), "-osc", _f(r.uniform(0, 2), 2),
              "-phisteps", str(r.randint(1, 4))]
        if r.random() < 0.3:
            a += ["-spindle_axis"] + [_f(r.uniform(-1, 1)) for _ in range(3)]
    if r.random() < 0.3:
        a += ["-mosaic", _f(r.uniform(0, 2)), "-mosaic_dom", str(r.randint(1, 5)),
              "-mosaic_seed", str(r.randint(1, 1000))]
    if r.random() < 0.15:
        a += ["-dmin", _f(r.uniform(1, 10), 2)]
    if r.random() < 0.1:
        a += ["-water", _f(r.uniform(0, 100), 1)]
    # extras, inserted before a random flag of the above
    e = []
    if r.random() < 0.25:
        e += [r.choice(["-xtal_size", "-xtal_x", "-xtal_width", "-xtal_heigh", "-width",
                        "-heigh", "-xtal_thick"]), _f(r.uniform(0.0003, 0.003), 5)]
        if "-oversample" not in a:
            e += ["-oversample", str(r.randint(1, 2))]      # C's auto choice can be huge
    if r.random() < 0.15:
        e += ["-Xclose", _f(r.uniform(0, 8), 2), "-Yclose", _f(r.uniform(0, 8), 2)]
    if r.random() < 0.15:
        e += [r.choice(["-detsize", "-detsize_f", "-detsize_s"]), _f(r.uniform(3, 12), 2)]
    if r.random() < 0.1:
        e += ["-detpixels_x", str(r.choice([32, 48])), "-detpixels_y", str(r.choice([32, 40]))]
    if r.random() < 0.15:
        e += ["-hdivrange", _f(r.uniform(0, 2)), "-vdivrange", _f(r.uniform(0, 2)),
              "-hdivsteps", str(r.randint(1, 3)), "-vdivsteps", str(r.randint(1, 3))]
    if r.random() < 0.1:
        e += ["-mosaic_spr", _f(r.uniform(0.1, 1))]
    if r.random() < 0.1:
        e += ["-phistep", _f(r.uniform(0.05, 0.5)), "-osc", _f(r.uniform(0.1, 1))]
    for flag, p in (("-beam_vector", 0.12), ("-polar_vector", 0.12)):
        if r.random() < p:
            e += [flag] + _unit(r)
    if r.random() < 0.08:
        e += ["-twotheta_axis"] + _unit(r) + ["-twotheta", _f(r.uniform(-20, 20), 2)]
    if r.random() < 0.08:
        f, s, o = _frame(r)
        e += ["-fdet_vector"] + f + ["-sdet_vector"] + s + ["-odet_vector"] + o
    if r.random() < 0.05:
        e += ["-pix0_vector"] + [_f(r.uniform(-0.01, 0.01), 5) for _ in range(3)]
    if r.random() < 0.1:
        e += ["-misset_seed", str(r.randint(1, 999)), "-misset", "random"]
    cut = [i for i, x in enumerate(a) if x.startswith("-") and not x[1:2].isdigit()]
    pos = r.choice(cut + [len(a)])
    return a[:pos] + e + a[pos:]


def _unit(r):
    v = [r.uniform(-1, 1) for _ in range(3)]
    n = math.sqrt(sum(x * x for x in v))
    return [_f(x / n, 4) for x in v]


def _frame(r):
    """A random right-handed detector frame (fast, slow, normal)."""
    q, _ = np.linalg.qr(np.random.default_rng(r.randint(0, 10**6)).standard_normal((3, 3)))
    if np.linalg.det(q) < 0:
        q[:, 2] *= -1
    return [[_f(x, 5) for x in q[:, i]] for i in range(3)]


def _close(a, b):
    if a == b:
        return True
    na, nb = NUM.findall(a), NUM.findall(b)
    if NUM.split(a) != NUM.split(b) or len(na) != len(nb):
        return False
    return all(float(x) == float(y) or abs(float(x) - float(y))
               <= 2e-5 * max(abs(float(x)), abs(float(y))) for x, y in zip(na, nb))


def compare(cbin, flags, mode, seed):
    """Problems found (empty: identical within the tolerances), or None if C failed."""
    outs = ["f.bin", "i.img", "n.img", "p.pgm"]
    tail = ["-floatfile", "f.bin", "-intfile", "i.img", "-noisefile", "n.img",
            "-pgmfile", "p.pgm", "-seed", seed, "-noprogress"]
    with tempfile.TemporaryDirectory() as d:
        pc = subprocess.run([cbin] + flags + tail, cwd=d, capture_output=True, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=900)
        if pc.returncode != 0 or not os.path.exists(f"{d}/f.bin"):
            return None
        ref = {k: Path(d, k).read_bytes() for k in outs if Path(d, k).exists()}
        for k in ref:
            os.remove(f"{d}/{k}")
        pn = subprocess.run([sys.executable, "-m", "nbsim.cli.main"] + flags + tail
                            + (["-c_parity"] if mode == "c-parity" else []),
                            cwd=d, capture_output=True, text=True, timeout=900)
        if pn.returncode != 0:
            return [f"nbsim failed: {pn.stderr.strip()[-200:]}"]
        mine = {k: Path(d, k).read_bytes() for k in ref if Path(d, k).exists()}
    c = np.frombuffer(ref["f.bin"], np.float32)
    m = np.frombuffer(mine["f.bin"], np.float32)
    probs = []
    fin = np.isfinite(c) & np.isfinite(m)
    if not np.array_equal(np.isfinite(c), np.isfinite(m)):
        probs.append("non-finite pixels differ")
    if fin.any():
        err = float(np.abs(c[fin].astype(np.float64) - m[fin]).max()
                    / max(float(np.abs(c[fin]).max()), 1e-30))
        if err > 1e-5:
            probs.append(f"float image {err:.2e}")
    probs += [f"{k} differs" for k in ref if k != "f.bin" and ref[k] != mine.get(k)]
    sc = [ln for ln in pc.stdout.splitlines() if ln.startswith(STAT_PREFIXES)]
    sn = [ln for ln in pn.stdout.splitlines() if ln.startswith(STAT_PREFIXES)]
    if len(sc) != len(sn) or not all(_close(x, y) for x, y in zip(sc, sn)):
        probs.append("statistics lines differ")
    return probs


def main(first: int, count: int) -> int:
    bins = [(os.environ.get("NB_C_BIN"), "c-parity"), (os.environ.get("NB_C_SPEC_BIN"), "spec")]
    bins = [(b, m) for b, m in bins if b]
    if not bins:
        sys.exit("set NB_C_BIN (and optionally NB_C_SPEC_BIN) to nanoBragg binaries")
    bad = 0
    for i in range(first, first + count):
        r = random.Random(i)
        flags = draw_flags(r)
        seed = str(r.randint(1, 10**6))
        for cbin, mode in bins:
            if mode == "spec" and "-pix0_vector" in flags:
                continue
            probs = compare(cbin, flags, mode, seed)
            if probs is None:
                continue
            if probs:
                bad += 1
                print("DIFF", i, mode, "; ".join(probs), "::", " ".join(flags), "-seed", seed,
                      flush=True)
            else:
                print("ok", i, mode, flush=True)
    print(f"{bad} comparisons with differences")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))

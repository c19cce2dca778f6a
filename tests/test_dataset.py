"""Datasets (issue 9): rotation scans and stills equal single renders, per-frame seeds and
noise (nanoBragg.c's stream in c-parity mode), per-frame files, resume, bad input."""
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nbsim.cli.main import main
from nbsim.dataset import Dataset, RotationScan, Stills, frame_seed
from nbsim.dataset.manifest import format_ranges, parse_ranges
from nbsim.dataset.noise import counter_counts
from nbsim.io import read_float_image, read_smv
from nbsim.simulator import Simulator

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "dataset_fixtures"
CELL = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5",
        "-lambda", "6.2", "-distance", "100"]
# acceptance 1: 256^2 detector, mosaic domains so every frame has several rotations
SCAN = CELL + ["-detpixels", "256", "-pixel", "0.1", "-oversample", "1", "-mosaic", "0.3",
               "-mosaic_domains", "3"]


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    rc = main([str(a) for a in argv], stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------ acceptance 1
@pytest.mark.parametrize("mode", [[], ["-c_parity"]], ids=["spec", "c-parity"])
def test_rotation_scan_frames_equal_single_renders(mode, tmp_path):
    osc, n = 0.5, 12
    flags = SCAN + ["-osc", str(osc), "-phisteps", "3"] + mode
    # CLI: the float file of every frame is the single render's float file, byte for byte
    rc, out, err = run_cli(flags + ["-nimages", n, "-nonoise", "-noprogress",
                                    "-floatfile", tmp_path / "scan_##.bin"])
    assert rc == 0, err
    ds = Dataset.from_args(flags, RotationScan(n), noise=False)
    for i, frame in enumerate(ds.frames()):
        phi = repr(0.0 + i * osc)
        single = Simulator.from_args(flags[:-len(mode) or None] + ["-phi", phi] + mode).run()
        # the API's float64 frame equals the single render to 1e-12 of the maximum
        assert single.max() > 0
        assert np.max(np.abs(frame.image - single)) <= 1e-12 * single.max()
        rc, _o, err = run_cli(flags + ["-phi", phi, "-nonoise", "-nopgm", "-noprogress",
                                       "-floatfile", tmp_path / "one.bin",
                                       "-intfile", tmp_path / "one.img"])
        assert rc == 0, err
        assert (tmp_path / f"scan_{i + 1:02d}.bin").read_bytes() == \
            (tmp_path / "one.bin").read_bytes()
    # consecutive frames differ (the crystal turns)
    a = read_float_image(tmp_path / "scan_01.bin")
    b = read_float_image(tmp_path / "scan_02.bin")
    assert np.abs(a - b).max() > 1e-3 * a.max()


@pytest.mark.parametrize("mode", [[], ["-c_parity"]], ids=["spec", "c-parity"])
def test_random_stills_equal_single_renders_with_each_frame_orientation(mode):
    flags = SCAN + mode
    ds = Dataset.from_args(flags + ["-misset", "random"], Stills(4), misset_seed=77,
                           noise=False)
    images = []
    for i, frame in enumerate(ds.frames()):
        mseed = frame_seed(77, i, "misset")
        assert ds.frame(i).misset_seed == mseed
        single = Simulator.from_args(flags + ["-misset", "random", "-misset_seed",
                                              str(mseed)]).run()
        assert np.max(np.abs(frame.image - single)) <= 1e-12 * single.max()
        images.append(frame.image)
    assert np.abs(images[0] - images[1]).max() > 0.1 * images[0].max()


def test_stills_from_an_orientation_file_equal_single_renders(tmp_path):
    flags = CELL + ["-detpixels", "96", "-pixel", "0.25"]
    amat = np.array([[0.0123, -0.0021, 0.0035], [0.0019, 0.0127, 0.0008],
                     [-0.0036, -0.0003, 0.0125]])
    (tmp_path / "o.txt").write_text("# misset x y z (deg), or an A matrix\n"
                                    "10 20 30\n"
                                    + " ".join(f"{v:.6f}" for v in amat.ravel()) + "\n")
    mat = tmp_path / "a.mat"
    mat.write_text("\n".join(" ".join(f"{v:.6f}" for v in row) for row in amat)
                   + "\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n")
    rc, out, err = run_cli(flags + ["-stills", "2", "-orientations", tmp_path / "o.txt",
                                    "-nonoise", "-noprogress",
                                    "-floatfile", tmp_path / "s_#.bin"])
    assert rc == 0, err
    for k, extra in enumerate((["-misset", "10", "20", "30"], ["-mat", mat])):
        rc, _o, err = run_cli(flags + extra + ["-nonoise", "-nopgm", "-noprogress",
                                               "-floatfile", tmp_path / "one.bin",
                                               "-intfile", tmp_path / "one.img"])
        assert rc == 0, err
        assert (tmp_path / f"s_{k + 1}.bin").read_bytes() == \
            (tmp_path / "one.bin").read_bytes()


# ------------------------------------------------------------------ seeds and noise
def _mix64(z):
    m = (1 << 64) - 1
    z &= m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def test_frame_seed_rule_as_documented():
    g, m = 0x9E3779B97F4A7C15, (1 << 64) - 1
    for S in (1, 7, 2026, 2 ** 31 - 1):
        for stream, k in (("noise", 1), ("misset", 2)):
            seeds = [frame_seed(S, i, stream) for i in range(50)]
            expect = [1 + _mix64((_mix64((S + k * g) & m) + i * g) & m) % (2 ** 31 - 2)
                      for i in range(50)]
            assert seeds == expect
            assert all(1 <= s <= 2 ** 31 - 2 for s in seeds)
            assert len(set(seeds)) == 50
    assert frame_seed(7, 3, "noise") != frame_seed(7, 3, "misset")


def test_c_parity_noise_is_nanoBraggs_stream_for_the_frame_seed(tmp_path):
    # nanoBragg.c run with -phi i*0.5 -seed frame_seed(2026, i) (tests/dataset_fixtures)
    flags = CELL + ["-detpixels", "64", "-pixel", "0.4", "-osc", "0.5", "-phisteps", "3",
                    "-c_parity", "-seed", "2026", "-nimages", "2", "-noprogress"]
    rc, out, err = run_cli(flags + ["-noisefile", tmp_path / "n_#.img"])
    assert rc == 0, err
    for i in (1, 2):
        c = gzip.decompress((FIXTURES / f"c_noise_{i}.img.gz").read_bytes())
        assert (tmp_path / f"n_{i}.img").read_bytes() == c
    # the counts a sink gets are C's deviates without the ADC offset
    ds = Dataset.from_args(flags[:-6] + ["-c_parity"], RotationScan(2), seed=2026)
    counts = ds.render(1).counts
    assert counts.shape == (1, 64, 64)          # (panels, slow, fast): one panel
    counts = counts[0]
    c2 = np.frombuffer(gzip.decompress((FIXTURES / "c_noise_2.img.gz").read_bytes())[512:],
                       dtype="<u2").reshape(64, 64)
    assert np.array_equal(counts, c2.astype(np.int32) - 40)


@pytest.mark.parametrize("lam", [0.3, 4.0, 9.99, 10.0, 37.0, 2.5e4])
def test_counter_noise_is_poisson(lam):
    from scipy import stats
    img = np.full((400, 500), lam, dtype=np.float32)
    k = counter_counts(img, seed=12345).ravel().astype(np.float64)
    n = k.size
    lam32 = float(np.float32(lam))
    # mean and variance within 5 standard errors
    assert abs(k.mean() - lam32) < 5 * np.sqrt(lam32 / n)
    var_se = np.sqrt((2 * lam32 ** 2 + lam32) / n)
    assert abs(k.var() - lam32) < 5 * var_se
    # chi-square goodness of fit on the central bins
    lo, hi = int(max(0, lam32 - 4 * np.sqrt(lam32))), int(lam32 + 4 * np.sqrt(lam32)) + 1
    edges = np.arange(lo, hi + 1)
    obs = np.array([(k == e).sum() for e in edges[:-1]])
    exp = n * stats.poisson.pmf(edges[:-1], lam32)
    keep = exp > 20
    chi2 = ((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4


def test_counter_noise_depends_on_seed_and_pixel_only():
    import numba
    rng = np.random.default_rng(1)
    img = rng.exponential(3.0, size=(64, 80)).astype(np.float32)
    img[5, 7] = 1e5
    a = counter_counts(img, seed=9)
    prev = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        b = counter_counts(img, seed=9)
    finally:
        numba.set_num_threads(prev)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, counter_counts(img, seed=10))
    # a pixel's deviate does not depend on the other pixels' means
    img2 = img.copy()
    img2[:, :40] = 0.0
    c = counter_counts(img2, seed=9)
    assert np.array_equal(c[:, 40:], a[:, 40:]) and not c[:, :40].any()


def test_ranges_round_trip():
    s = {0, 1, 2, 3, 7, 9, 10, 11, 100}
    assert format_ranges(s) == "0-3,7,9-11,100"
    assert parse_ranges(format_ranges(s)) == s
    assert parse_ranges("") == set()


# ------------------------------------------------------------------ per-frame files
def test_per_frame_smv_headers_carry_the_frames_phi_range(tmp_path):
    flags = CELL + ["-detpixels", "48", "-pixel", "0.5", "-phi", "10", "-osc", "0.25",
                    "-phisteps", "2", "-nimages", "3", "-seed", "5", "-noprogress"]
    rc, out, err = run_cli(flags + ["-intfile", tmp_path / "i_###.img",
                                    "-noisefile", tmp_path / "n_###.img",
                                    "-pgmfile", tmp_path / "p_###.pgm"])
    assert rc == 0, err
    for i in range(3):
        for stem in ("i", "n"):
            h, img = read_smv(tmp_path / f"{stem}_{i + 1:03d}.img")
            text = (tmp_path / f"{stem}_{i + 1:03d}.img").read_bytes()[:512].decode()
            assert f"OSC_START={10 + 0.25 * i:g};" in text.replace(".000000", "")
            assert "OSC_RANGE=0.25" in text
        # the int and PGM frames are the single render's files
        rc, _o, err = run_cli(CELL + ["-detpixels", "48", "-pixel", "0.5",
                                      "-phi", repr(10 + 0.25 * i), "-osc", "0.25",
                                      "-phisteps", "2", "-noprogress", "-nonoise",
                                      "-floatfile", tmp_path / "one.bin",
                                      "-intfile", tmp_path / "one.img",
                                      "-pgmfile", tmp_path / "one.pgm"])
        assert rc == 0, err
        assert (tmp_path / "one.img").read_bytes() == \
            (tmp_path / f"i_{i + 1:03d}.img").read_bytes()
        assert (tmp_path / "one.pgm").read_bytes() == \
            (tmp_path / f"p_{i + 1:03d}.pgm").read_bytes()
    rec = json.loads((tmp_path / "i_.img.nbsim-job.json").read_text())
    assert rec["done"] == "0-2" and rec["seed"] == 5 and rec["nframes"] == 3


# ------------------------------------------------------------------ resume
HEAVY = CELL + ["-detpixels", "128", "-pixel", "0.2", "-mosaic", "0.4",
                "-mosaic_domains", "25", "-osc", "0.2", "-phisteps", "4", "-oversample", "2",
                "-nimages", "40", "-seed", "11", "-noprogress"]


def _outputs(d):
    return ["-nexus", d / "scan.h5", "-noisefile", d / "n_##.img"]


def _nexus_data(path):
    h5py = pytest.importorskip("h5py")
    pytest.importorskip("hdf5plugin")
    import hdf5plugin  # noqa: F401
    with h5py.File(path, "r", swmr=True) as f:
        return f["entry/data/data"][()], f["entry/nbsim/frame_complete"][()]


def _interrupt(argv, sig, record, min_done=3, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.Popen([sys.executable, "-m", "nbsim"] + [str(a) for a in argv],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    t0 = time.time()
    done = 0
    while time.time() - t0 < timeout and p.poll() is None:
        try:
            done = json.loads(Path(record).read_text())["ndone"]
        except (OSError, ValueError, KeyError):
            done = 0
        if done >= min_done:
            p.send_signal(sig)
            break
        time.sleep(0.01)
    out, err = p.communicate(timeout=timeout)
    return p.returncode, done, err.decode()


@pytest.mark.parametrize("sig", [signal.SIGKILL, pytest.param(signal.SIGINT, marks=pytest.mark.slow)],
                         ids=["SIGKILL", "SIGINT"])
def test_interrupted_job_resumes_to_the_identical_dataset(sig, tmp_path):
    pytest.importorskip("h5py")
    ref, job = tmp_path / "ref", tmp_path / "job"
    ref.mkdir()
    job.mkdir()
    rc, out, err = run_cli(HEAVY + _outputs(ref))
    assert rc == 0, err
    record = job / "scan.h5.nbsim-job.json"
    rc, done, err = _interrupt(HEAVY + _outputs(job), sig, record)
    rec = json.loads(record.read_text())
    assert 3 <= rec["ndone"] < 40, "the job must be stopped part-way"
    if sig == signal.SIGKILL:
        assert rc == -signal.SIGKILL
    else:
        assert rc == 130 and "-resume" in err, err
    # every frame the record names is complete on disk
    data, complete = _nexus_data(job / "scan.h5")
    recorded = parse_ranges(rec["done"])
    assert recorded <= set(np.flatnonzero(complete))
    assert all((job / f"n_{i + 1:02d}.img").exists() for i in recorded)
    rc, out, err = run_cli(HEAVY + _outputs(job) + ["-resume"])
    assert rc == 0, err
    assert f"{40 - len(recorded)} rendered" in out or "rendered" in out
    ref_data, ref_complete = _nexus_data(ref / "scan.h5")
    data, complete = _nexus_data(job / "scan.h5")
    assert complete.all() and ref_complete.all()
    assert np.array_equal(data, ref_data)
    for i in range(40):
        assert (job / f"n_{i + 1:02d}.img").read_bytes() == \
            (ref / f"n_{i + 1:02d}.img").read_bytes()


# ------------------------------------------------------------------ acceptance 5
SMALL = CELL + ["-detpixels", "32", "-pixel", "0.8", "-osc", "0.5", "-nimages", "3",
                "-seed", "4", "-noprogress"]


def _one_error_line(rc, err, *words):
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("nbsim: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_template_without_hash_is_refused_for_a_series(tmp_path):
    rc, out, err = run_cli(SMALL + ["-floatfile", tmp_path / "f.bin"])
    _one_error_line(rc, err, "-floatfile", "'#'", "f_#####.bin")
    rc, out, err = run_cli(SMALL + ["-cbf", tmp_path / "img.cbf"])
    _one_error_line(rc, err, "-cbf", "'#'")
    assert list(tmp_path.iterdir()) == []
    # one frame needs no '#'
    rc, out, err = run_cli(SMALL[:-5] + ["-nimages", "1", "-floatfile", tmp_path / "f.bin"])
    assert rc == 0, err and (tmp_path / "f.bin").exists()


def test_series_without_output_is_refused(tmp_path):
    rc, out, err = run_cli(SMALL)
    _one_error_line(rc, err, "needs an output", "-nexus")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_directory_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    rc, out, err = run_cli(SMALL + ["-nexus", tmp_path / "afile" / "scan.h5"])
    _one_error_line(rc, err, "-nexus", "does not exist")
    rc, out, err = run_cli(SMALL + ["-noisefile", tmp_path / "nodir" / "n_#.img"])
    _one_error_line(rc, err, "-noisefile", "nodir")
    if os.geteuid() != 0:            # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        rc, out, err = run_cli(SMALL + ["-noisefile", ro / "n_#.img"])
        _one_error_line(rc, err, "-noisefile", "not writable")
    assert sorted(p.name for p in tmp_path.iterdir()) in (["afile"], ["afile", "ro"])


def test_resume_with_other_flags_is_refused_naming_the_flag(tmp_path):
    outs = ["-noisefile", tmp_path / "n_#.img", "-floatfile", tmp_path / "f_#.bin"]
    rc, out, err = run_cli(SMALL + outs)
    assert rc == 0, err
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    cases = [(["-osc", "0.25"], "-osc 0.5", "-osc 0.25"),
             (["-mosaic", "0.1"], "without -mosaic", "-mosaic 0.1"),
             (["-c_parity"], "without -c_parity", "")]
    for extra, w1, w2 in cases:
        rc, out, err = run_cli(SMALL + extra + outs + ["-resume"])
        _one_error_line(rc, err, "-resume", w1, w2)
    rc, out, err = run_cli([a for a in SMALL if a != "-noprogress"] + outs + ["-resume"])
    assert rc == 0, err                  # run-only flags may differ
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for name, data in before.items():
        if not name.endswith(".json"):
            assert after[name] == data, name
    rc, out, err = run_cli(SMALL + ["-noisefile", tmp_path / "x_#.img", "-resume"])
    _one_error_line(rc, err, "-resume", "no job record")


def test_workers_without_dask_is_refused(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_dask(name, *a, **kw):
        if name.split(".")[0] in ("dask", "distributed"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *a, **kw)
    monkeypatch.setattr(builtins, "__import__", no_dask)
    rc, out, err = run_cli(SMALL + ["-workers", "2", "-noisefile", tmp_path / "n_#.img"])
    _one_error_line(rc, err, "-workers", 'pip install -e ".[distributed]"')
    assert list(tmp_path.iterdir()) == []


def test_stills_dataset_to_nexus_cbf_and_png(tmp_path):
    h5py = pytest.importorskip("h5py")
    fabio = pytest.importorskip("fabio")
    PIL = pytest.importorskip("PIL.Image")
    import hdf5plugin  # noqa: F401
    flags = CELL + ["-detpixels", "64", "-pixel", "0.4", "-stills", "4", "-misset", "random",
                    "-misset_seed", "31", "-seed", "9", "-noprogress"]
    rc, out, err = run_cli(flags + ["-nexus", tmp_path / "s.h5", "-cbf", tmp_path / "s_#.cbf",
                                    "-noisefile", tmp_path / "s_#.img",
                                    "-png", tmp_path / "s.png"])
    assert rc == 0, err
    with h5py.File(tmp_path / "s.h5", "r") as f:
        data = f["entry/data/data"][()]
        assert f["entry/sample/depends_on"][()] in (b".", ".")      # stills: no goniometer
    ds = Dataset.from_args(flags, Stills(4, "random"), seed=9, misset_seed=31)
    for i in range(4):
        counts = ds.render(i).counts[0]         # (panels, slow, fast): one panel
        assert np.array_equal(data[i], counts)
        assert np.array_equal(fabio.open(str(tmp_path / f"s_{i + 1}.cbf")).data, counts)
        _h, smv = read_smv(tmp_path / f"s_{i + 1}.img")
        assert np.array_equal(smv.astype(np.int64) - 40, counts)
    assert not np.array_equal(data[0], data[1])
    with PIL.open(tmp_path / "s.png") as im:       # a 2x2 montage of 64^2 frames
        assert im.format == "PNG" and im.size[0] > 2 * 64 - 8 and im.size[1] > 2 * 64 - 8


C_BIN = os.environ.get("NB_C_BIN", "/work/cbin/nanoBragg")


@pytest.mark.skipif(not os.access(C_BIN, os.X_OK), reason="no nanoBragg.c binary (NB_C_BIN)")
def test_c_parity_random_stills_are_nanoBragg_runs_with_the_frame_seeds(tmp_path):
    flags = CELL + ["-detpixels", "48", "-pixel", "0.5", "-mosaic", "0.5",
                    "-mosaic_domains", "4"]
    rc, out, err = run_cli(flags + ["-c_parity", "-stills", "2", "-misset", "random",
                                    "-misset_seed", "5", "-seed", "6", "-noprogress",
                                    "-noisefile", tmp_path / "s_#.img"])
    assert rc == 0, err
    for i in range(2):
        c_out = tmp_path / f"c_{i}.img"
        # -misset_seed first: C's strstr also takes it for -misset (REFERENCE.md 5)
        p = subprocess.run([C_BIN] + flags + [
            "-misset_seed", str(frame_seed(5, i, "misset")), "-misset", "random",
            "-seed", str(frame_seed(6, i, "noise")), "-noisefile", str(c_out),
            "-floatfile", "/dev/null", "-intfile", "/dev/null", "-nopgm"],
            capture_output=True, cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert p.returncode == 0, p.stderr
        assert c_out.read_bytes() == (tmp_path / f"s_{i + 1}.img").read_bytes()


def test_frame_progress_bar_reports_frames_rate_and_time_left():
    from nbsim.cli.dataset import _FrameProgress
    s = io.StringIO()
    bar = _FrameProgress(s, delay=0.0)
    bar(0, 10)
    time.sleep(0.01)
    bar(5, 10)
    bar(5, 10)                        # same decile: no new line
    lines = s.getvalue().splitlines()
    assert len(lines) == 2
    assert "5/10" in lines[1] and "frames/s" in lines[1] and "left" in lines[1]
    assert "50.0%" in lines[1]


def test_resume_of_a_complete_job_renders_nothing(tmp_path):
    outs = ["-noisefile", tmp_path / "n_#.img"]
    rc, out, err = run_cli(SMALL + outs)
    assert rc == 0, err
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("n_*.img")}
    rc, out, err = run_cli(SMALL + outs + ["-resume"])
    assert rc == 0, err
    assert "(0 rendered, 3 kept)" in out
    assert before == {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("n_*.img")}

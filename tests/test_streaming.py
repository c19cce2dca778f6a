"""Detectors rendered in row blocks and streamed to the outputs (nbsim.streaming, issue 13):
the same bytes and lines as the one-piece path; refusals that name the size."""
import dataclasses
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import golden_args
from nbsim.cli.main import main
from nbsim.stats import StreamingStats, image_stats

ROOT = Path(__file__).resolve().parent.parent
CUBE = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5",
        "-lambda", "6.2", "-distance", "100", "-pixel", "0.1", "-oversample", "1"]


def _run(args, cwd, monkeypatch, rows=None, env=()):
    """main() in ``cwd``; returns (rc, stdout, stderr, {file name: bytes})."""
    monkeypatch.delenv("NBSIM_STREAM_ROWS", raising=False)
    monkeypatch.delenv("NBSIM_MEMORY_LIMIT", raising=False)
    if rows is not None:
        monkeypatch.setenv("NBSIM_STREAM_ROWS", str(rows))
    for k, v in env:
        monkeypatch.setenv(k, v)
    cwd.mkdir()
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        rc = main(list(args) + ["-noprogress"], stdout=out, stderr=err)
    finally:
        os.chdir(old)
    files = {p.name: p.read_bytes() for p in cwd.iterdir()}
    return rc, out.getvalue(), err.getvalue(), files


CASES = {
    # ROI off the corner, PGM and noise on, a seed: every output
    "cube_roi_noise": CUBE + ["-detpixels", "64", "-roi", "3", "50", "5", "40", "-seed", "7"],
    # -mask (masked pixels out of the statistics, in the noise stream)
    "mask_file": golden_args("mask_file") + ["-seed", "3"],
    # c-parity phi=0 carryover (the carry pixel re-rendered inside its block)
    "phi_from_zero": golden_args("phi_from_zero") + ["-nonoise"],
    # the carry pixel under -dmin (found block by block by the pre-pass)
    "dmin_phi": golden_args("dmin_cut") + ["-phi", "0", "-osc", "1", "-phisteps", "3",
                                           "-nopgm", "-seed", "2"],
    # c-parity tricubic switch (found in raster order, later blocks rendered after it)
    "interp_out_of_range": golden_args("interp_out_of_range") + ["-nonoise"],
    # means above 1e6 (Gaussian deviates: the photon sum is not a sum of whole numbers),
    # a negative -seed (noise continues the mosaic stream's shuffle table), no PGM
    "bright_negative_seed": CUBE + ["-detpixels", "48", "-fluence", "1e35", "-seed", "-5",
                                    "-nopgm", "-mosaic", "0.2", "-mosaic_dom", "3"],
}


@pytest.mark.parametrize("mode", ["spec", "c-parity"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_streamed_outputs_are_the_one_piece_bytes(case, mode, tmp_path, monkeypatch):
    args = CASES[case] + (["-c_parity"] if mode == "c-parity" else [])
    rc1, out1, err1, files1 = _run(args, tmp_path / "whole", monkeypatch)
    assert rc1 == 0, err1
    for rows in (7, 1):
        rc2, out2, err2, files2 = _run(args, tmp_path / f"rows{rows}", monkeypatch, rows=rows)
        assert rc2 == 0, err2
        assert sorted(files2) == sorted(files1)
        for name in files1:
            assert files2[name] == files1[name], (name, rows)
        assert out2 == out1
        assert err2 == err1
    # the outputs themselves are real: the float file is an image with signal
    img = np.frombuffer(files1["floatimage.bin"], dtype="<f4")
    assert np.isfinite(img).all() and img.max() > 0
    assert not any(n.endswith(".tmp") for n in files1)


@pytest.mark.parametrize("mode", ["spec", "c-parity"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_float_image_is_simulator_run_rounded(case, mode, tmp_path, monkeypatch):
    """The CLI renders in row blocks rounded as they complete (one-piece and streamed):
    its float file is Simulator.run()'s image (one kernel call) rounded to float32."""
    from nbsim import Simulator
    args = CASES[case] + (["-c_parity"] if mode == "c-parity" else [])
    monkeypatch.chdir(tmp_path)
    ref = Simulator.from_args(args).run().astype("<f4").tobytes()
    rc, _, err, files = _run(args, tmp_path / "cli", monkeypatch)
    assert rc == 0, err
    assert files["floatimage.bin"] == ref


def test_memory_limit_selects_streaming(tmp_path, monkeypatch):
    """Above NBSIM_MEMORY_LIMIT the run streams by itself (blocks of ~4 M pixels, here
    one block) and writes the same files."""
    args = CASES["cube_roi_noise"]
    _, _, _, whole = _run(args, tmp_path / "whole", monkeypatch)
    import nbsim.streaming as streaming
    calls = []
    real = streaming.render_streamed
    monkeypatch.setattr(streaming, "render_streamed",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    rc, _, err, streamed = _run(args, tmp_path / "limited", monkeypatch,
                                env=[("NBSIM_MEMORY_LIMIT", "1K")])
    assert rc == 0, err
    assert calls == [1]
    assert streamed == whole


@pytest.mark.parametrize("extra, flag", [(["-printout_pixel", "3", "4"], "-printout_pixel"),
                                         (["-printout"], "-printout")])
def test_outputs_that_need_the_whole_image_are_refused_with_the_size(extra, flag, tmp_path,
                                                                     monkeypatch):
    rc, out, err, files = _run(CUBE + ["-detpixels", "64"] + extra, tmp_path / "r",
                               monkeypatch, env=[("NBSIM_MEMORY_LIMIT", "1K")])
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nbsim: error: {flag}: ")
    need_mib = (64 * 64 * (4 + 2 + 1 + 2) + (40 << 20)) / 2 ** 20     # every output on
    assert (f"a 64x64 detector needs about {need_mib:.2f} MiB held whole (limit 1.00 KiB"
            in lines[0])
    assert files == {}


def test_a_gpu_render_too_large_for_memory_is_refused_before_allocating(monkeypatch):
    """-device cuda renders the whole image at once: refused with the size, from the
    plan alone (no image allocated)."""
    from nbsim import Simulator
    from nbsim.args import parse_args
    from nbsim.outputs import OutputError
    from nbsim.streaming import choose_streaming, one_piece_bytes
    monkeypatch.delenv("NBSIM_STREAM_ROWS", raising=False)
    monkeypatch.setenv("NBSIM_MEMORY_LIMIT", "1G")
    parsed = parse_args(CUBE + ["-detpixels", "20000"])
    sim = Simulator(parsed.config)
    assert "pixel_index" not in vars(sim.plan)          # the index was never built
    need = one_piece_bytes(sim.plan, parsed.outputs, "cuda")
    assert need == 20000 ** 2 * (8 + 4 + 2 + 1 + 2 + 8 + 14)
    need_cpu = one_piece_bytes(sim.plan, parsed.outputs, "cpu")
    assert need_cpu == 20000 ** 2 * (4 + 2 + 1 + 2) + (40 << 20)
    gib = f"{need / 2 ** 30:.2f}"
    with pytest.raises(OutputError, match=rf"^-device cuda: a 20000x20000 detector needs "
                                          rf"about {gib} GiB held whole \(limit 1\.00 GiB"):
        choose_streaming(sim.plan, parsed.outputs, "cuda")
    st = choose_streaming(sim.plan, parsed.outputs, "cpu")
    assert st.rows_per_block == (1 << 22) // 20000 and st.estimate == need_cpu
    assert choose_streaming(Simulator(parse_args(CUBE + ["-detpixels", "64"]).config).plan,
                            parsed.outputs, "cuda") is None


@pytest.mark.parametrize("var, value", [("NBSIM_STREAM_ROWS", "0"),
                                        ("NBSIM_STREAM_ROWS", "x"),
                                        ("NBSIM_MEMORY_LIMIT", "lots")])
def test_bad_streaming_settings_are_one_line(var, value, tmp_path, monkeypatch):
    rc, _, err, files = _run(CUBE + ["-detpixels", "16"], tmp_path / "r", monkeypatch,
                             env=[(var, value)])
    assert rc == 2
    assert err.count("\n") == 1 and f"{var}={value}" in err
    assert files == {}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_stats_equal_whole_image_stats(seed):
    """C's statistics from blocks of rows (carried sequential sums) are bit-identical to
    the whole-image computation: random images with NaN, negative values, ties at the
    maximum, a mask and an ROI, split at random rows."""
    rng = np.random.default_rng(seed)
    sp, fp = 37, 23
    img = rng.normal(3.0, 2.0, (sp, fp)).astype(np.float32)
    img[5, 7] = img[20, 3] = np.float32(99.0)           # a tie: the first wins
    with_nan = img.copy()
    with_nan[rng.random((sp, fp)) < 0.05] = np.nan      # C's sums become NaN
    mask = rng.random((sp, fp)) > 0.2
    mask[5, 7] = mask[20, 3] = True
    for im in (img, with_nan):
        for m in (None, mask):
            for roi in (None, (2, 19, 4, 30), (0, 100, 30, 200)):
                whole = image_stats(im, mask=m, roi=roi, pixel_size=1e-4, oversample=2)
                st = StreamingStats(roi, fp, sp, None if m is None else m.astype(np.uint8))
                cuts = np.unique(np.concatenate(([0, sp], rng.integers(1, sp, 6))))
                for a, b in zip(cuts[:-1], cuts[1:]):
                    st.add_rows(im[a:b], int(a))
                for a, b in zip(cuts[:-1], cuts[1:]):
                    st.add_deviation_rows(im[a:b], int(a))
                got = dataclasses.astuple(st.result(1e-4, 2))
                want = dataclasses.astuple(whole)
                np.testing.assert_array_equal(np.array(got, dtype=float),
                                              np.array(want, dtype=float))
                if im is img:
                    assert np.isfinite(want).all()
                if im is img and roi is None:
                    assert (whole.max_I, whole.max_fpixel, whole.max_spixel) == (99.0, 7, 5)


def _wait_with_rusage(p, timeout):
    """Wait for ``p`` (its own rusage, not the whole test session's children)."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            return ru
        if time.monotonic() > deadline:
            p.kill()
            p.wait()
            pytest.fail(f"no result within {timeout} s")
        time.sleep(0.5)


@pytest.mark.slow
def test_20000_squared_detector_streams_in_bounded_memory(tmp_path):
    """Issue 13 acceptance 3: a 20000 x 20000 cube (no -roi, every output, noise) renders
    with a peak resident memory <= 2 GiB (ru_maxrss of the process)."""
    n = 20000
    work = tmp_path / "run"
    work.mkdir()
    cmd = [sys.executable, "-m", "nbsim", *CUBE, "-detpixels", str(n), "-seed", "1",
           "-noprogress"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NBSIM_STREAM_ROWS", None)
    env.pop("NBSIM_MEMORY_LIMIT", None)
    with open(tmp_path / "out.txt", "wb") as fo, open(tmp_path / "err.txt", "wb") as fe:
        p = subprocess.Popen(cmd, cwd=work, env=env, stdout=fo, stderr=fe)
        ru = _wait_with_rusage(p, 3000)
    err = (tmp_path / "err.txt").read_text()
    assert p.returncode == 0, err
    peak = ru.ru_maxrss * 1024                      # Linux: KiB
    assert peak <= 2 * 1024 ** 3, f"peak RSS {peak / 2**30:.2f} GiB"
    sizes = {q.name: q.stat().st_size for q in work.iterdir()}
    pgm_head = (work / "image.pgm").open("rb").read(64)
    head_len = pgm_head.index(b"\n255\n") + 5
    assert pgm_head.startswith(f"P5\n{n} {n}\n# pixels scaled by ".encode())
    assert sizes == {"floatimage.bin": 4 * n * n, "intimage.img": 512 + 2 * n * n,
                     "noiseimage.img": 512 + 2 * n * n, "image.pgm": head_len + n * n}
    text = (tmp_path / "out.txt").read_text()
    assert f"writing floatimage.bin as {n * n} 4-byte floats" in text
    assert "photons on noise image" in text
    # the brightest pixel is the direct-beam spot at the detector centre (C: max_I's
    # location in metres, pixel centres at 0.1 mm spacing)
    line = next(x for x in text.splitlines() if x.startswith("max_I = "))
    x, y = (float(v) for v in line.split("at")[1].split())
    assert abs(x - 1.0) < 2e-4 and abs(y - 1.0) < 2e-4
    mid = np.fromfile(work / "floatimage.bin", dtype="<f4", count=n, offset=4 * n * (n // 2))
    assert np.isfinite(mid).all() and mid.max() > 0


@pytest.mark.parametrize("case", ["mask_file", "roi", "curved_det", "oversample_flags"])
def test_solid_angle_from_row_blocks_is_the_whole_index_sum(case, monkeypatch, tmp_path):
    """The CLI's solid-angle line is summed from index blocks built a few rows at a time
    (no whole pixel index): the same blocks, so the same float, bit for bit."""
    from nbsim import Simulator
    from nbsim.outputs import rendered_index_blocks
    from nbsim.stats import solid_angle_sum
    monkeypatch.chdir(tmp_path)
    plan = Simulator.from_args(golden_args(case)).plan
    for block, rows in ((1 << 18, 256), (1000, 7), (333, 1)):
        got = solid_angle_sum(plan, block, index_blocks=rendered_index_blocks(plan, block,
                                                                             rows))
        assert got == solid_angle_sum(plan, block)
        assert 0.0 < got < 4 * np.pi
    blocks = list(rendered_index_blocks(plan, 1000, 7))
    np.testing.assert_array_equal(np.concatenate(blocks), plan.rendered_pixels)
    assert all(b.size == 1000 for b in blocks[:-1])

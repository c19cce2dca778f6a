"""GPU kernel timings of nbsim (issue 4), next to nanoBraggCUDA's (REFERENCE.md section 8).

    python bench/gpu_bench.py            # on a machine with a GPU (bench/gpu_check.sh runs it)
    NBSIM_BENCH_TINY=1 NUMBA_ENABLE_CUDASIM=1 python bench/gpu_bench.py   # code-path check

Kernel time: CUDA events around one launch, the stream held busy by a spin kernel while the
host enqueues (so Python's launch overhead is not counted), median of >= 10 launches after a
warm-up launch.  "wall" is launch + synchronize as Python sees it.  "render" is a whole
in-process Simulator.run(device='cuda') (upload, both passes, copy back), median of 3.
"process" runs the CLI in fresh processes: once to fill numba-cuda's disk cache, then with
and without the background driver start (NBSIM_CUDA_WARMUP=1/0), twice each, with
NBSIM_TIMING=1 (its notes from the last warm run are printed).  Errors: float64 rows against the CPU engine, float32 rows against the
float64 GPU image, both as max|diff| / max.
The table is printed last and written to $OUT/gpu_bench.txt when OUT is set.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nbsim  # noqa: E402
from nbsim.kernels import cuda as kc  # noqa: E402

TINY = os.environ.get("NBSIM_BENCH_TINY", "") not in ("", "0")
REPS = 3 if TINY else int(os.environ.get("NBSIM_BENCH_REPS", "15"))
GOLDEN = ROOT / "tests" / "golden"


def _pix0_full():
    text = (GOLDEN / "public" / "pix0_custom_roi" / "args.txt").read_text()
    text = text.replace("{in}", str(GOLDEN / "inputs"))
    a = text.split()
    i = a.index("-roi")
    return a[:i] + a[i + 5:]


def _cube(n, pix):
    return ("-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 6.2 -distance 100 "
            f"-detpixels {n} -pixel {pix} -oversample 1").split()


TRICLINIC = ("-cell 70 80 90 75 85 95 -misset 10 20 30 -default_F 100 -N 5 -lambda 1.5 "
             "-distance 100 -detpixels 512 -pixel 0.1 -mosaic 0.5 -mosaic_dom 10 -phi 0 -osc 1 "
             "-phisteps 5 -oversample 1").split()

# LS49-like still (issue 12): 3000x3000 pixels, 100 spectral channels, 25 mosaic domains,
# a random orientation; noise in the whole-process run
LS49 = ("-cell 67.2 59.8 47.2 90 113.2 90 -default_F 100 -N 20 -lambda 1.3 -dispersion 0.5 "
        "-dispsteps 100 -mosaic 0.05 -mosaic_dom 25 -misset random -seed 7 -distance 150 "
        "-detpixels 3000 -pixel 0.11 -oversample 1 -flux 1e12 -exposure 1 "
        "-beamsize 0.003").split()
# the CPU reference of the LS49 case is rendered on this corner only (full size: minutes)
LS49_REF_ROI = ["-roi", "0", "95", "0", "95"]

# name, args, modes, nanoBraggCUDA H200 / H100 kernel ms (single / double)
CASES = [
    ("cube_1024", _cube(1024, 0.1), ("spec",), "0.29/0.38-0.52", "0.26-0.28/0.36-0.37"),
    ("cube_4096", _cube(4096, 0.025), ("spec",), "0.85-0.95/1.56", "0.71/1.47-1.49"),
    ("tric_mosaic_512", TRICLINIC, ("spec", "c-parity"), "0.39/-", "0.39-0.40/0.51"),
    ("pix0_full", _pix0_full(), ("spec", "c-parity"), "1.1-1.3/1.7", "1.05/1.65"),
    ("ls49_still", LS49, ("spec",), "-", "-"),
]


def _tiny(args):
    """Shrink a case to a 16x16 detector (simulator check)."""
    a = list(args)
    for flag in ("-detpixels", "-detpixels_x", "-detpixels_y"):
        if flag in a:
            a[a.index(flag) + 1] = "16"
    return a


def _sim(args, mode, dtype):
    return nbsim.Simulator.from_args(list(args) + ["-dtype", dtype, "-device", "cuda"],
                                     mode=mode)


_SPIN = None


def _spin_kernel():
    global _SPIN
    if _SPIN is None:
        from numba import cuda

        @cuda.jit
        def spin(ns):
            if cuda.grid(1) == 0:
                t = 0
                while t < ns:
                    cuda.nanosleep(1000)
                    t += 1000
        _SPIN = spin
    return _SPIN


def kernel_times(g, carry, reps):
    """Median kernel ms (events) and median launch+sync wall ms of the first pass."""
    from numba import cuda
    opts = g.first_pass_opts()
    g.launch(opts, 0, carry)                       # warm-up (compiles or loads the cache)
    cuda.synchronize()
    walls = []
    for _ in range(max(3, reps // 3)):
        t0 = time.perf_counter()
        g.launch(opts, 0, carry)
        cuda.synchronize()
        walls.append((time.perf_counter() - t0) * 1e3)
    if kc.simulator_enabled():
        return statistics.median(walls), statistics.median(walls)
    spin = _spin_kernel()
    times = []
    for _ in range(reps):
        e0 = cuda.event(timing=True)
        e1 = cuda.event(timing=True)
        spin[1, 32](2_000_000)                     # 2 ms: the host enqueues meanwhile
        e0.record()
        g.launch(opts, 0, carry)
        e1.record()
        e1.synchronize()
        times.append(cuda.event_elapsed_time(e0, e1))
    return statistics.median(times), statistics.median(walls)


def render_ms(sim, reps=3):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        sim.run()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def process_seconds(args):
    """Wall times of fresh CLI processes: the first fills numba-cuda's disk cache, then
    alternately with and without the background driver start (NBSIM_CUDA_WARMUP).
    Returns ({label: [seconds...]}, the NBSIM_TIMING notes of the last warm run) or
    (None, error)."""
    times = {"cold": [], "warm": [], "warm, no driver thread": []}
    notes = ""
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "nbsim.cli.main"] + list(args) + [
            "-device", "cuda", "-floatfile", "float.bin", "-nonoise", "-nopgm",
            "-intfile", "int.img", "-noprogress"]
        env = dict(os.environ, NBSIM_TIMING="1", PYTHONPATH=os.pathsep.join(
            [str(ROOT), os.environ.get("PYTHONPATH", "")]))
        plan = [("cold", "1")] + [("warm", "1"), ("warm, no driver thread", "0")] * 2
        for label, warm in plan:
            t0 = time.perf_counter()
            p = subprocess.run(cmd, cwd=d, env=dict(env, NBSIM_CUDA_WARMUP=warm),
                               capture_output=True, text=True)
            times[label].append(time.perf_counter() - t0)
            if p.returncode != 0:
                return None, (p.stderr or p.stdout)[-600:]
            if label == "warm":
                notes = " | ".join(ln.replace("nbsim: note: ", "")
                                   for ln in p.stderr.splitlines() if "took" in ln
                                   or "timing" in ln)
    return times, notes


def main():
    from numba import cuda
    lines = []
    dev = "CUDA simulator" if kc.simulator_enabled() else cuda.get_current_device().name
    if isinstance(dev, bytes):
        dev = dev.decode()
    import numba
    try:
        import numba_cuda
        ncv = numba_cuda.__version__
    except Exception:
        ncv = "built-in"
    print(f"device: {dev}; numba {numba.__version__}, numba-cuda {ncv}, numpy {np.__version__}; "
          f"threads/block {kc.THREADS_PER_BLOCK}; reps {REPS}", flush=True)
    rows = []
    for name, args, modes, ref_h200, ref_h100 in CASES:
        if TINY:
            args = _tiny(args)
        for mode in modes:
            img64 = None
            for dtype in ("float64", "float32"):
                t_all = time.perf_counter()
                sim = _sim(args, mode, dtype)
                p = sim.plan
                img = sim.run()                   # compiles; also the reference for errors
                g = kc.GpuRender(sim)
                kms, wall = kernel_times(g, sim._carry_pixel, REPS)
                rms = render_ms(sim)
                if dtype == "float64":
                    img64 = img[:int(LS49_REF_ROI[2]) + 1, :int(LS49_REF_ROI[2]) + 1] \
                        if name.startswith("ls49") and not TINY else img
                    roi = LS49_REF_ROI if name.startswith("ls49") and not TINY else []
                    cs = nbsim.Simulator.from_args(list(args) + roi, mode=mode)
                    cs.config.device = "cpu"
                    ref = cs.run()
                    what = "cpu"
                    if roi:
                        n = int(roi[2]) + 1
                        ref = ref[:n, :n]
                        img = img[:n, :n]
                else:
                    ref = img64
                    what = "f64"
                    if name.startswith("ls49") and not TINY:
                        n = int(LS49_REF_ROI[2]) + 1
                        img = img[:n, :n]
                err = float(np.max(np.abs(img - ref)) / max(np.max(np.abs(ref)), 1e-300))
                npx = p.pixel_index.shape[0]
                row = dict(case=name, mode=mode, dtype=dtype, pixels=npx, kernel_ms=kms,
                           wall_ms=wall, render_ms=rms, err=err, err_vs=what,
                           mpix_s=npx / (kms * 1e3), ref=ref_h200 + " | " + ref_h100,
                           mem_mb=g.device_bytes() / 2**20)
                rows.append(row)
                print(f"{name:16s} {mode:8s} {dtype:7s} kernel {kms:8.3f} ms  wall {wall:8.3f} ms"
                      f"  render {rms:8.1f} ms  err({what}) {err:.1e}  dev {row['mem_mb']:.1f} MiB"
                      f"  [{time.perf_counter() - t_all:.1f} s]", flush=True)
                del g
    # opt-in pure float32 (geometry in float32 too: faster, error not bounded by 1e-4)
    extra = []
    name, args = "cube_4096", (_tiny(CASES[1][1]) if TINY else CASES[1][1])
    sim = _sim(args, "spec", "float32")
    g = kc.GpuRender(sim, pure_float32=True)
    kms, wall = kernel_times(g, -1, REPS)
    g.render()
    img = sim.image
    ref = _sim(args, "spec", "float64").run()
    err = float(np.max(np.abs(img - ref)) / np.max(np.abs(ref)))
    extra.append(f"pure float32 (NBSIM_CUDA_PURE_F32=1) cube_4096: kernel {kms:.3f} ms, "
                 f"err vs f64 {err:.1e}")
    # threads per block on the 1024^2 cube, float64
    args = _tiny(CASES[0][1]) if TINY else CASES[0][1]
    sim = _sim(args, "spec", "float64")
    sim.run()
    tpbs = []
    for tpb in (64, 128, 256, 512):
        g = kc.GpuRender(sim, threads_per_block=tpb)
        kms, _ = kernel_times(g, -1, REPS)
        tpbs.append(f"{tpb}: {kms:.3f}")
    extra.append("cube_1024 float64 kernel ms by threads/block: " + ", ".join(tpbs))
    proc, pnotes = process_seconds(_tiny(CASES[0][1]) if TINY else CASES[0][1])
    if proc:
        extra.append("whole process, cube_1024 float64 CLI -device cuda (writes float+int "
                     "image), s: " + "; ".join(
                         f"{k} " + ", ".join(f"{v:.2f}" for v in vs) for k, vs in proc.items()))
        extra.append("  last warm run: " + pnotes)
    else:
        extra.append(f"whole process run failed: {pnotes}")
    # LS49 recipe as users run it: whole CLI process with noise, float32, images/s per GPU
    ls49 = _tiny(LS49) if TINY else LS49
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "nbsim.cli.main"] + list(ls49) + [
            "-device", "cuda", "-dtype", "float32", "-floatfile", "float.bin", "-noisefile",
            "noise.img", "-nopgm", "-noprogress"]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT), os.environ.get("PYTHONPATH", "")]))
        walls = []
        for _ in range(2):                 # the first fills the caches
            t0 = time.perf_counter()
            pr = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            if pr.returncode != 0:
                extra.append(f"ls49 whole process failed: {(pr.stderr or pr.stdout)[-400:]}")
                break
        else:
            extra.append(f"ls49 still, whole process with noise, float32 (cold, warm) s: "
                         f"{walls[0]:.2f}, {walls[1]:.2f} -> {1.0 / walls[1]:.2f} images/s "
                         f"(one process per image; the issue's target: >= 5 images/s)")

    lines.append(f"nbsim GPU benchmark - {dev}; numba {numba.__version__}, numba-cuda {ncv}")
    lines.append("kernel = CUDA-event time of one launch (median), wall = launch+sync from "
                 "Python, render = Simulator.run() in-process; err vs CPU (f64) / vs f64 (f32)")
    hdr = (f"{'case':16s} {'mode':8s} {'dtype':7s} {'pixels':>9s} {'kernel ms':>10s} "
           f"{'Mpix/s':>8s} {'wall ms':>8s} {'render ms':>9s} {'err':>8s}  "
           f"nanoBraggCUDA s/d ms: H200 | H100")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for r in rows:
        ref = r["ref"] if r["dtype"] == "float64" else ""
        lines.append(f"{r['case']:16s} {r['mode']:8s} {r['dtype']:7s} {r['pixels']:9d} "
                     f"{r['kernel_ms']:10.3f} {r['mpix_s']:8.0f} {r['wall_ms']:8.2f} "
                     f"{r['render_ms']:9.1f} {r['err']:8.1e}  {ref}")
    lines.extend(extra)
    text = "\n".join(lines)
    print("\n" + text, flush=True)
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu_bench.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()

"""CPU render time of nbsim against nanoBragg.c, side by side at the same thread count.

    python bench/bench_cpu.py [--threads 1 2] [--repeat 3] [--mode spec|c-parity]
                              [--dtype float64 float32] [case ...]

nbsim: in-process render time (kernel compiled and cached beforehand; best of --repeat).
nanoBragg.c: set NB_C_BIN to a binary built from bl831/nanoBragg (gcc -O3 -fopenmp ...),
or to several separated by ":";
it is run with OMP_NUM_THREADS=threads as a whole process (best of --repeat), writing its
float image to a temporary directory.  Ratio = C time / nbsim time (> 1: nbsim faster), of
wall times and, in brackets, of CPU times (user + system, all threads; on a shared machine
the CPU-time ratio is the steadier one).  The roofline line uses CPU time per thread.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import nbsim  # noqa: E402
from cases import CASES  # noqa: E402


# Roofline estimate.  Multiplies and FMAs (the FMA pipes' work) per sub-path (one pixel x
# sub-pixel x layer x source x (phi, domain) cell evaluation) in the lattice loop, counted
# from the kernels' source: float64 lanes kernel: h, k, l (9) + 3 x sincg_delta (the two
# sine polynomials 2 x 12, N d, sign and node terms: ~28) + accumulation (4) = ~97;
# float32 lanes kernel: h, k, l in float64 from the lane's Fdet and 1/|position| (2 FMAs
# an axis: 6) + 3 x the float32 ratio (N d, two squares, two degree-4 polynomials, the two
# factors x and d: 13) + products and F_cell (5) = 44 float32 lanes, i.e. 22
# float64-equivalent in vectors of twice the lanes + square and accumulation (2) = ~30
# float64-equivalent.  Adds, roundings, compares and conversions run
# on other pipes and are not counted.  Peak: measured by bench/fma_peak.py (float64 FMA/s of
# one core) times the threads.
FMA_PER_SUBPATH = {"float64": 97.0, "float32": 30.0}


def subpaths(sim):
    """Sub-path evaluations of one render (pixels x sub-pixels x layers x sources x cells)."""
    p = sim.plan
    return (p.rendered_pixels.size * p.oversample ** 2 * p.detector.thicksteps
            * p.src_lambda.shape[0] * p.cells.shape[1])


def nbsim_sim(args, threads, mode, dtype="float64"):
    sim = nbsim.Simulator.from_args([*args, "-dtype", dtype], mode=mode, threads=threads)
    sim.run()                       # compile / load cache
    return sim


def _cpu(who=resource.RUSAGE_SELF):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def time_nbsim(sim, repeat):
    """(best wall, best CPU) seconds of ``repeat`` renders.  CPU time (all threads) is what
    a shared machine disturbs least: a descheduled thread costs wall time, not CPU time."""
    best = best_cpu = float("inf")
    for _ in range(repeat):
        c0 = _cpu()
        t0 = time.perf_counter()
        sim.run()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, _cpu() - c0)
    return best, best_cpu


def time_c(cbin, args, threads, repeat, mode):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    best = best_cpu = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [cbin, *args, "-floatfile", "float.bin", "-intfile", "int.img", "-nopgm",
               "-noprogress", "-nonoise"]
        for _ in range(repeat):
            c0 = _cpu(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True)
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, _cpu(resource.RUSAGE_CHILDREN) - c0)
    return best, best_cpu


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", default=list(CASES))
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--nbsim-repeat", type=int, default=1,
                    help="nbsim renders per round (cheap next to a C process; more samples "
                         "make the best-of robust on a shared machine)")
    ap.add_argument("--mode", default="spec", choices=["spec", "c-parity"])
    ap.add_argument("--dtype", nargs="+", default=["float64"], choices=["float64", "float32"],
                    help="nbsim precisions to time (each beside the same C run)")
    a = ap.parse_args(argv)
    # NB_C_BIN: one nanoBragg binary, or several separated by ":" (e.g. -O2 and -O3 builds),
    # each timed in the same interleaved rounds
    cbins = [c for c in os.environ.get("NB_C_BIN", "").split(":") if c]
    from fma_peak import fma_per_second
    fma_peak = fma_per_second()
    print(f"float64 FMA peak (bench/fma_peak.py): {fma_peak / 1e9:.1f} G FMA/s per core",
          flush=True)
    rows = []
    for name in a.cases:
        for th in a.threads:
            # interleaved: every precision and every C binary, best of --repeat rounds
            sims = {d: nbsim_sim(CASES[name], th, a.mode, d) for d in a.dtype}
            tns = {d: (float("inf"),) * 2 for d in a.dtype}
            tcs = {c: (float("inf"),) * 2 for c in cbins}
            for _ in range(a.repeat):
                for d in a.dtype:
                    tns[d] = tuple(map(min, tns[d], time_nbsim(sims[d], a.nbsim_repeat)))
                for c in cbins:
                    tcs[c] = tuple(map(min, tcs[c], time_c(c, CASES[name], th, 1, a.mode)))
            for d in a.dtype:
                (tn, tnc) = tns[d]
                rows.append((name, th, d, tn, tnc, dict(tcs)))
                cols = "".join(f"   C[{Path(c).name}] {tc * 1000:8.1f} ms  C/nbsim {tc / tn:6.2f}x"
                               f" (cpu {tcc / tnc:6.2f}x)" for c, (tc, tcc) in tcs.items())
                print(f"{name:26s} threads={th} {d}  nbsim {tn * 1000:8.2f} ms (cpu "
                      f"{tnc * 1000:8.2f} ms){cols}", flush=True)
                sps = subpaths(sims[d]) / (tnc / th)   # CPU time per thread
                peak = th * fma_peak
                print(f"{'':26s} roofline: {sps / 1e9:6.3f} G sub-paths/s, "
                      f"{100 * sps * FMA_PER_SUBPATH[d] / peak:5.1f} % of the FMA peak "
                      f"({th} x {fma_peak / 1e9:.1f} G FMA/s measured)", flush=True)
            if "float64" in tns and "float32" in tns:
                print(f"{'':26s} float64/float32: {tns['float64'][0] / tns['float32'][0]:5.2f} "
                      f"(cpu {tns['float64'][1] / tns['float32'][1]:5.2f})", flush=True)
    return rows


if __name__ == "__main__":
    main()

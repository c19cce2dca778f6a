"""CPU render time of nbsim against nanoBragg.c, side by side at the same thread count.

    python bench/bench_cpu.py [--threads 1 2] [--repeat 3] [--mode spec|c-parity]
                              [--dtype float64 float32] [case ...]

nbsim: in-process render time (kernel compiled and cached beforehand; best of --repeat).
nanoBragg.c: set NB_C_BIN to a binary built from bl831/nanoBragg (gcc -O3 -fopenmp ...);
it is run with OMP_NUM_THREADS=threads as a whole process (best of --repeat), writing its
float image to a temporary directory.  Ratio = C time / nbsim time (> 1: nbsim faster).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import nbsim  # noqa: E402
from cases import CASES  # noqa: E402


def nbsim_sim(args, threads, mode, dtype="float64"):
    sim = nbsim.Simulator.from_args([*args, "-dtype", dtype], mode=mode, threads=threads)
    sim.run()                       # compile / load cache
    return sim


def time_nbsim(sim, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        sim.run()
        best = min(best, time.perf_counter() - t0)
    return best


def time_c(cbin, args, threads, repeat, mode):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    best = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [cbin, *args, "-floatfile", "float.bin", "-intfile", "int.img", "-nopgm",
               "-noprogress", "-nonoise"]
        for _ in range(repeat):
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True)
            best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", default=list(CASES))
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mode", default="spec", choices=["spec", "c-parity"])
    ap.add_argument("--dtype", nargs="+", default=["float64"], choices=["float64", "float32"],
                    help="nbsim precisions to time (each beside the same C run)")
    a = ap.parse_args(argv)
    cbin = os.environ.get("NB_C_BIN")
    rows = []
    for name in a.cases:
        for th in a.threads:
            # interleaved: every precision and C, best of --repeat rounds of all of them
            sims = {d: nbsim_sim(CASES[name], th, a.mode, d) for d in a.dtype}
            tns = {d: float("inf") for d in a.dtype}
            tc = float("inf") if cbin else None
            for _ in range(a.repeat):
                for d in a.dtype:
                    tns[d] = min(tns[d], time_nbsim(sims[d], 1))
                if cbin:
                    tc = min(tc, time_c(cbin, CASES[name], th, 1, a.mode))
            for d in a.dtype:
                tn = tns[d]
                rows.append((name, th, d, tn, tc))
                ratio = f"{tc / tn:6.2f}x" if tc else "     -"
                tcs = f"{tc * 1000:9.1f}" if tc else "        -"
                print(f"{name:26s} threads={th} {d}  nbsim {tn * 1000:9.1f} ms   C {tcs} ms   "
                      f"C/nbsim {ratio}", flush=True)
    return rows


if __name__ == "__main__":
    main()

"""256- against 512-bit vectors for the CPU kernels, side by side.

    python bench/bench_vector_width.py [--threads 1] [--rounds 5] [--dtype float64 float32] [case ...]

"512": Numba's default, the host CPU's name and features (LLVM picks 512-bit vectors on
CPUs whose tuning prefers them, e.g. AMD Zen 4/5; Intel server parts are tuned to prefer
256).  "256": the same CPU with every AVX-512 feature removed (``NUMBA_CPU_FEATURES``), so
LLVM can only use 256-bit AVX2.  Each setting runs in its own process (Numba reads the
target at start-up) and keeps its own on-disk cache entries: Numba keys its cache index on
the CPU name and feature string, so code built for one never loads on the other.  Rounds
alternate the two settings; per case the best in-process render time is kept.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, sys, time
sys.path.insert(0, %(root)r); sys.path.insert(0, %(here)r)
import nbsim
from cases import CASES
out = {}
for name in %(cases)r:
    for dt in %(dtypes)r:
        sim = nbsim.Simulator.from_args([*CASES[name], "-dtype", dt], threads=%(threads)d)
        sim.run()
        best = 1e9
        for _ in range(%(repeat)d):
            t0 = time.perf_counter(); sim.run(); best = min(best, time.perf_counter() - t0)
        out[name + " " + dt] = best
print("RESULT" + json.dumps(out))
"""


def host_features_without_avx512() -> str:
    import llvmlite.binding as llvm
    feats = llvm.get_host_cpu_features()
    return ",".join(("-" if (not on or k.startswith("avx512")) else "+") + k
                    for k, on in sorted(feats.items()))


def run(width, cases, dtypes, threads, repeat):
    env = dict(os.environ)
    env.pop("NUMBA_CPU_FEATURES", None)
    if width == 256:
        env["NUMBA_CPU_FEATURES"] = host_features_without_avx512()
    code = CHILD % dict(root=str(HERE.parent), here=str(HERE), cases=list(cases),
                        dtypes=list(dtypes), threads=threads, repeat=repeat)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       check=True)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def main(argv=None):
    sys.path.insert(0, str(HERE))
    from cases import CASES
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", default=list(CASES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dtype", nargs="+", default=["float64", "float32"])
    a = ap.parse_args(argv)
    best = {256: {}, 512: {}}
    for _ in range(a.rounds):
        for w in (512, 256):
            for k, v in run(w, a.cases, a.dtype, a.threads, a.repeat).items():
                best[w][k] = min(best[w].get(k, 1e9), v)
    for k in best[512]:
        t5, t2 = best[512][k], best[256][k]
        print(f"{k:36s} threads={a.threads}  512-bit {t5 * 1e3:8.2f} ms   256-bit {t2 * 1e3:8.2f} ms"
              f"   256/512 {t2 / t5:5.2f}", flush=True)
    return best


if __name__ == "__main__":
    main()

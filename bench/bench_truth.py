"""Cost of the reflection truth (docs/truth.md): the render with ``run(truth=True)``
against the plain ``run()`` of the same Simulator, interleaved call by call in one
process; best wall and CPU time of ROUNDS each, float64 and float32.

    python bench/bench_truth.py THREADS ROUNDS SIZE case [case ...]

SIZE overrides -detpixels (0: the case's own).  The truth render is the general kernel
with the slots, plus the host aggregation (unique keys, bincount) and the overflow
re-render; the plain render is whatever kernel the options pick (the SIMD lanes kernels
for these cases)."""
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import nbsim  # noqa: E402
from cases import CASES  # noqa: E402


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn):
    c0 = cpu()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0, cpu() - c0


th, rounds, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for name in sys.argv[4:]:
    args = list(CASES[name])
    if size:
        i = args.index("-detpixels")
        args[i + 1] = str(size)
    for dt in ("float64", "float32"):
        sim = nbsim.Simulator.from_args(args + ["-dtype", dt], threads=th)
        sim.run()
        sim.run(truth=True)
        rows = len(sim.truth["id"])
        best = {"off": [1e9, 1e9], "on": [1e9, 1e9]}
        for _ in range(rounds):
            for key, fn in (("off", sim.run), ("on", lambda: sim.run(truth=True))):
                w, c = timed(fn)
                best[key][0] = min(best[key][0], w)
                best[key][1] = min(best[key][1], c)
        (w0, c0), (w1, c1) = best["off"], best["on"]
        print(f"{name:26s} {size or 'own'} th={th} {dt}: off wall {w0 * 1e3:8.1f} cpu "
              f"{c0 * 1e3:8.1f} ms | truth wall {w1 * 1e3:8.1f} cpu {c1 * 1e3:8.1f} ms | "
              f"ratio wall {w1 / w0:.2f} cpu {c1 / c0:.2f} | {rows} reflections", flush=True)

"""Where the time of ``run(truth=True)`` goes (docs/performance.md, "Reflection truth"):
one Simulator, the plain render and the truth render alternately, best process (CPU)
time of ROUNDS for the whole run and its parts (the lanes kernel, the exact overflow
re-render ``truth.complete_slots``, the aggregation ``truth.collect``).  One thread by
default: CPU time is the figure that survives a loaded machine; with THREADS > 1 the
best wall times of the run and the aggregation are printed too (``*_wall``).

    python bench/profile_truth.py CASE DTYPE SIZE ROUNDS [THREADS]
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import nbsim  # noqa: E402
import nbsim.simulator as simulator  # noqa: E402
import nbsim.truth as truth  # noqa: E402
from cases import CASES  # noqa: E402

name, dtype, size, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
threads = int(sys.argv[5]) if len(sys.argv) > 5 else 1
args = list(CASES[name])
args[args.index("-detpixels") + 1] = size
sim = nbsim.Simulator.from_args(args + ["-dtype", dtype], threads=threads)
sim.run()
sim.run(truth=True)
best, parts = {}, {}


def timed(key, fn):
    def wrapper(*a, **k):
        t0, w0 = time.process_time(), time.perf_counter()
        out = fn(*a, **k)
        k2 = key(*a, **k) if callable(key) else key
        parts[k2] = parts.get(k2, 0.0) + time.process_time() - t0
        if k2 == "collect":
            parts["collect_wall"] = parts.get("collect_wall", 0.0) + time.perf_counter() - w0
        return out
    return wrapper


truth.complete_slots = timed("complete_slots", truth.complete_slots)
truth.collect = timed("collect", truth.collect)
simulator.Simulator._launch_lanes = timed(
    lambda self, opts, pi, image, t=None: "lanes_on" if t is not None else "lanes_off",
    simulator.Simulator._launch_lanes)
for _ in range(rounds):
    for key, fn in (("run_off", sim.run), ("run_on", lambda: sim.run(truth=True))):
        parts.clear()
        t0, w0 = time.process_time(), time.perf_counter()
        fn()
        parts[key] = time.process_time() - t0
        parts[key + "_wall"] = time.perf_counter() - w0
        for k, v in parts.items():
            best[k] = min(best.get(k, 1e9), v)
print(name, dtype, size, f"threads={threads}",
      " ".join(f"{k}={v * 1e3:.2f}ms" for k, v in best.items()
               if threads > 1 or not k.endswith("_wall")),
      f"ratio={best['run_on'] / best['run_off']:.2f}", flush=True)

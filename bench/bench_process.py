"""Whole-process wall time and peak memory of ``nbsim`` against nanoBragg.c, side by side.

    python bench/bench_process.py [-n 5] [--c /work/cbin/nanoBragg] [--threads 2] [cases...]

Each case runs as a fresh process (warm caches: one untimed run first), ``-nonoise``,
writing the float and int images, alternating nbsim and C runs so that a machine shared
with other work disturbs both alike; prints the best of ``-n`` wall times, the peak
resident memory (ru_maxrss of the child, from ``os.wait4``) and nbsim's wall / C's wall.
``NBSIM_TIMING=1`` is passed to nbsim so its own timing note (plan / render / outputs) is
shown for the best run, with what the process spent outside ``main`` (interpreter start,
imports before ``main``, exit).  Warm caches means Numba's kernels and Python's bytecode:
``PYTHONDONTWRITEBYTECODE`` is dropped from the children's environment, so the source tree
gets its ``.pyc`` files like an installed package.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from cases import CASES  # noqa: E402

CUBE = ("-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 6.2 -distance 100 "
        "-pixel 0.1 -oversample 1").split()
PROCESS_CASES = {
    "cube_256": CUBE + ["-detpixels", "256"],
    "cube_1024": CASES["cube_1024"],
    "pix0_full_2463x2527": CASES["pix0_full_2463x2527"],
}


def _run(cmd, env, cwd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode()
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({p.returncode}): {err}")
    return wall, ru.ru_maxrss / 1024.0, err


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--c", default="/work/cbin/nanoBragg")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-c", action="store_true")
    ap.add_argument("--baseline", help="another nbsim source tree (e.g. a `git archive` of "
                    "an older commit), run alternately with this one: before / after")
    ap.add_argument("cases", nargs="*")
    a = ap.parse_args(argv)
    names = a.cases or list(PROCESS_CASES)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), NUMBA_NUM_THREADS=str(a.threads),
               PYTHONPATH=str(ROOT), NBSIM_TIMING="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    print(f"threads {a.threads}, best of {a.n}, nbsim and C alternating "
          f"(a shared machine disturbs both alike)")
    for name in names:
        flags = PROCESS_CASES[name]
        with tempfile.TemporaryDirectory() as d:
            outs = ["-nonoise", "-floatfile", "f.bin", "-intfile", "i.img"]
            nb = [sys.executable, "-m", "nbsim", *flags, *outs, "-noprogress"]
            cc = [a.c, *flags, *outs]
            _run(nb, env, d)                                  # warm the caches
            env_base = dict(env, PYTHONPATH=a.baseline) if a.baseline else None
            if env_base:
                _run(nb, env_base, d)
            best_nb = best_c = best_base = None
            for _ in range(a.n):
                r = _run(nb, env, d)
                if best_nb is None or r[0] < best_nb[0]:
                    best_nb = r
                if env_base:
                    r = _run(nb, env_base, d)
                    if best_base is None or r[0] < best_base[0]:
                        best_base = r
                if not a.no_c:
                    r = _run(cc, env, d)
                    if best_c is None or r[0] < best_c[0]:
                        best_c = r
        line = f"{name:24s} nbsim {best_nb[0]:6.3f} s {best_nb[1]:7.1f} MiB"
        if best_c:
            line += (f" | C {best_c[0]:6.3f} s {best_c[1]:7.1f} MiB | nbsim/C "
                     f"{best_nb[0] / best_c[0]:.3f}")
        print(line)
        _timing(best_nb)
        if best_base:
            print(f"{'':24s} baseline {best_base[0]:6.3f} s {best_base[1]:7.1f} MiB"
                  + (f" | baseline/C {best_base[0] / best_c[0]:.3f}" if best_c else ""))
            _timing(best_base)


def _timing(run):
    """nbsim's timing note of a run, and the wall time outside ``main``."""
    import re
    notes = [x for x in run[2].splitlines() if "timing" in x]
    if not notes:
        return
    t = dict(re.findall(r"([a-z>-]+) ([0-9.]+) s", notes[-1]))
    inside = float(t.get("main->plan", 0)) + float(t.get("plan->written", 0))
    print(f"    {notes[-1].strip()}; outside main {run[0] - inside:.3f} s")


if __name__ == "__main__":
    main()

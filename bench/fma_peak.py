"""The machine's float64 FMA peak per core, measured (not taken from a data sheet).

    python bench/fma_peak.py

A compiled loop of independent multiply-adds on 64 accumulators (eight 512-bit registers,
enough chains to cover the FMA latency on two pipes), timed by CPU time (so a shared
machine's descheduling does not count).  Returns float64 FMA per second on one core;
``bench/bench_cpu.py`` uses it for the roofline line.
"""
from __future__ import annotations

import resource

import numba
import numpy as np

NACC = 64


@numba.njit(fastmath=True, cache=True)
def _fma_loop(x, n, b, c):
    for _ in range(n):
        for j in range(NACC):
            x[j] = x[j] * b + c
    return x


def fma_per_second(n: int = 4_000_000, rounds: int = 5) -> float:
    x = np.ones(NACC)
    _fma_loop(x, 10, 0.999999, 1e-9)                  # compile / load
    best = float("inf")
    for _ in range(rounds):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        _fma_loop(x, n, 0.999999, 1e-9)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        best = min(best, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
    return n * NACC / best


if __name__ == "__main__":
    f = fma_per_second()
    print(f"float64 FMA peak, one core: {f / 1e9:.1f} G FMA/s "
          f"({f / 8 / 2 / 1e9:.2f} GHz if 2 pipes x 8 lanes)")

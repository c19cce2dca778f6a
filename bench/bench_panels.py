"""Multi-panel render throughput: an ``eiger2_16m`` render (32 modules, 18.1 M pixels, one
kernel launch) next to the single flat detector of the preset's frame (4148 x 4362 =
18.1 M pixels, module gaps included) with the same crystal and beam, in pixels/s.

    python bench/bench_panels.py [--threads N] [--repeat 3] [--dtype float64 float32]
                                 [--preset eiger2_16m] [--oversample 1]

The two renders are interleaved (panels, flat, panels, flat, ...) and the best of
``--repeat`` is kept for each, so a busy machine disturbs both alike.  Compilation and the
plan are outside the timing (one warm-up render each).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nbsim  # noqa: E402
from nbsim.args import parse_args  # noqa: E402
from nbsim.geometry import panels as pnl  # noqa: E402

CRYSTAL = ["-cell", "70", "80", "90", "90", "90", "90", "-default_F", "100", "-N", "5",
           "-misset", "10", "20", "30", "-lambda", "1.0", "-distance", "150",
           "-nonoise", "-nopgm"]


def build(preset, flat, dtype, threads, oversample):
    lay = pnl.preset(preset)
    flags = CRYSTAL + ["-oversample", str(oversample), "-dtype", dtype]
    if flat:
        flags += ["-detpixels_f", str(lay.frame_fpixels), "-detpixels_s",
                  str(lay.frame_spixels), "-pixel", repr(lay.pixel_size * 1e3)]
    cfg = parse_args(flags).config
    if not flat:
        cfg.detector.panels = lay
    sim = nbsim.Simulator(cfg, threads=threads)
    sim.run()                                   # compile / load the cache
    return sim


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dtype", nargs="+", default=["float64"])
    ap.add_argument("--preset", default="eiger2_16m")
    ap.add_argument("--oversample", type=int, default=1)
    a = ap.parse_args(argv)
    print(f"{'dtype':8s} {'detector':24s} {'pixels':>10s} {'best s':>8s} {'Mpixel/s':>9s}")
    for dtype in a.dtype:
        sims = {"panels": build(a.preset, False, dtype, a.threads, a.oversample),
                "flat": build(a.preset, True, dtype, a.threads, a.oversample)}
        best = {k: float("inf") for k in sims}
        for _ in range(a.repeat):
            for k, sim in sims.items():
                t0 = time.perf_counter()
                sim.run()
                best[k] = min(best[k], time.perf_counter() - t0)
        for k, sim in sims.items():
            npix = int(sim.plan.rendered_pixels.size)
            name = f"{a.preset} ({sim.plan.panels.count} panels)" if k == "panels" else \
                "flat frame (1 panel)"
            print(f"{dtype:8s} {name:24s} {npix:10d} {best[k]:8.3f} {npix / best[k] / 1e6:9.2f}")
        ratio = (sims["panels"].plan.rendered_pixels.size / best["panels"]) / \
            (sims["flat"].plan.rendered_pixels.size / best["flat"])
        print(f"{dtype:8s} per-pixel throughput, panels / flat = {ratio:.3f}")


if __name__ == "__main__":
    main()

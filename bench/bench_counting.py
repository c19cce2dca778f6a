"""The photon-counting and JUNGFRAU detector models next to the render of the same frame.

    python bench/bench_counting.py [--threads N] [--repeat 2] [--case panels|cube_1024]

An ``eiger2_16m`` frame (32 modules, 16.8 M pixels) of a bench case's crystal and beam
(default: bench/bench_panels.py's, the project's render bench of this frame; or a
``bench/cases.py`` case, its detector flags replaced by the preset) is rendered, then
the detector models run on it: the preset's counting defaults (100 ns non-paralyzable
dead time, 16-bit counter, 5 um charge cloud at half the photon energy: a 1x1 sharing
kernel), the same with a 15 um cloud at 0.3 of the energy (a 3x3 kernel), the
paralyzable model at a 1 ms frame, and the JUNGFRAU model (converted photons) on the
same frame.  Renders and models are interleaved and the best of ``--repeat`` is kept,
so a busy machine disturbs both alike; compilation is outside the timing.  Printed:
seconds and the ratio model / render (acceptance: <= 0.5 for the counting chain).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import nbsim  # noqa: E402
from nbsim.args import parse_args  # noqa: E402
from nbsim.detector_model import resolve_detector_model  # noqa: E402

_DETECTOR_FLAGS = {"-detpixels": 1, "-pixel": 1, "-detpixels_x": 1, "-detpixels_y": 1}


def case_flags(name):
    """A case's crystal and beam flags: ``panels`` is bench/bench_panels.py's (the
    project's eiger2_16m render bench), the others bench/cases.py's."""
    if name == "panels":
        from bench_panels import CRYSTAL
        return [a for a in CRYSTAL if a not in ("-nonoise", "-nopgm")]
    from cases import CASES
    out, it = [], iter(CASES[name])
    for a in it:
        if a in _DETECTOR_FLAGS:
            next(it)
            continue
        out.append(a)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--case", default="panels", help="panels (bench_panels.py's crystal) "
                    "or a bench/cases.py name (e.g. cube_1024)")
    a = ap.parse_args(argv)
    base = case_flags(a.case) + ["-detector_preset", "eiger2_16m", "-seed", "7"]
    parsed = parse_args(base)
    sim = nbsim.Simulator(parsed.config, threads=a.threads)
    photon_kev = 12.398419843320026 / (float(parsed.config.beam.wavelength) * 1e10)
    models = {
        "counting (preset)": resolve_detector_model(parsed),
        "counting 15um/0.3": resolve_detector_model(parse_args(
            base + ["-charge_cloud", "15", "-threshold", "%g" % (0.3 * photon_kev)])),
        "paralyzable 1 ms": resolve_detector_model(parse_args(
            base + ["-deadtime_model", "paralyzable", "-frame_time", "1e-3"])),
        "jungfrau photons": resolve_detector_model(parse_args(
            base + ["-detector_model", "jungfrau"])),
    }
    img = np.ascontiguousarray(sim.run(), dtype=np.float32)     # compile / cache
    img = img.reshape(32, 512, 1028)
    print(f"case {a.case} on eiger2_16m: {img.size / 1e6:.1f} M pixels, "
          f"{img.sum():.4g} photons, max {img.max():.4g}")
    for m in models.values():
        m.counts(img[:1, :8, :8], 7)                            # compile / cache
    best = {k: float("inf") for k in ["render", *models]}
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        img = np.ascontiguousarray(sim.run(), dtype=np.float32).reshape(32, 512, 1028)
        best["render"] = min(best["render"], time.perf_counter() - t0)
        for k, m in models.items():
            t0 = time.perf_counter()
            c = m.counts(img, 7)
            best[k] = min(best[k], time.perf_counter() - t0)
            assert c.shape == img.shape
    import numba
    print(f"threads {numba.get_num_threads()}; best of {a.repeat}")
    print(f"{'step':20s} {'best s':>8s} {'/ render':>9s}")
    for k, t in best.items():
        print(f"{k:20s} {t:8.3f} {t / best['render']:9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

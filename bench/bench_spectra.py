"""Cost of a SASE still (issue 19 B, acceptance 5): a ``-sase_bandwidth`` still of
CHANNELS channels (the shot's spectrum drawn, the frame planned, rendered) against the
same still with a CHANNELS-line ``-sourcefile`` (planned once, rendered), both through
``Dataset.render`` (no noise), interleaved frame by frame in one process; best wall and
CPU time of ROUNDS each.  The SASE frames are new shots each round (frame index r).

    python bench/bench_spectra.py THREADS ROUNDS SIZE [CHANNELS]

SIZE: -detpixels.  Prints the side-by-side ratio."""
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from nbsim.dataset import Dataset, Stills  # noqa: E402
from nbsim.geometry.spectrum import SaseSpectrum  # noqa: E402


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn):
    c0, t0 = cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, cpu() - c0


th, rounds, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
n = int(sys.argv[4]) if len(sys.argv) > 4 else 100
flags = ["-cell", "79", "79", "38", "90", "90", "90", "-default_F", "100", "-N", "10",
         "-lambda", "1.3", "-distance", "100", "-detpixels", str(size), "-pixel", "0.1",
         "-oversample", "1", "-misset", "10", "20", "30"]
model = SaseSpectrum(bandwidth=3e-3, jitter=1e-3, duration=30.0, channels=n)
sase = Dataset.from_args(flags, Stills(rounds + 1, None), seed=3, spectrum=model,
                         noise=False, threads=th)
with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
    fh.write("".join(f"nan nan nan 1 {float(v)!r}\n" for v in sase.frame(0).wavelengths))
src = Dataset.from_args(flags + ["-sourcefile", fh.name], Stills(1, None), seed=3,
                        noise=False, threads=th)
sase.render(0)
src.render(0)                       # compile / load both, build the plans
best = {"sase": [1e9, 1e9], "srcfile": [1e9, 1e9]}
for r in range(rounds):
    sase.__dict__.pop("_spectra", None)      # a new shot: its spectrum is drawn
    for key, fn in (("sase", lambda: sase.render(r + 1)), ("srcfile", lambda: src.render(0))):
        w, c = timed(fn)
        best[key][0] = min(best[key][0], w)
        best[key][1] = min(best[key][1], c)
(w0, c0), (w1, c1) = best["srcfile"], best["sase"]
print(f"{size}x{size} {n} channels th={th}: -sourcefile wall {w0 * 1e3:8.1f} cpu "
      f"{c0 * 1e3:8.1f} ms | SASE wall {w1 * 1e3:8.1f} cpu {c1 * 1e3:8.1f} ms | "
      f"ratio wall {w1 / w0:.3f} cpu {c1 / c0:.3f}", flush=True)

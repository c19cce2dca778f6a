"""Wall time of a fresh process rendering a 256^2 case, imports included (cache warm).

    python bench/bench_startup.py        # runs the process three times, prints each wall time
"""
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = ("import nbsim; nbsim.Simulator.from_args('-cell 100 100 100 90 90 90 -default_F 100 "
        "-N 5 -lambda 6.2 -distance 100 -detpixels 256 -pixel 0.1 -oversample 1'.split()).run()")

if __name__ == "__main__":
    for i in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, check=True)
        print(f"process {i + 1}: {time.perf_counter() - t0:.2f} s wall")

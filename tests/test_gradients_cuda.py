"""The CUDA adjoint (nbsim.gradients.adjoint_cuda) against the CPU adjoint.

With a GPU the cases run here at their full (small) size.  Without one they run in the
CUDA simulator on 5 x 5 pixels, in ONE subprocess (NUMBA_ENABLE_CUDASIM must be set before
numba.cuda is imported, which this process may already have done); the subprocess is this
file run as a script and prints the comparison as JSON.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))

from test_gradients_helpers import CPAR_CASES, SPEC_CASES, cotangent  # noqa: E402

pytestmark = pytest.mark.cuda

# one case per path of the per-pixel adjoint (the simulator takes seconds per case)
CASES = [("mosaic", "spec"), ("os_polar_omega", "spec"), ("thick", "spec"),
         ("cpar_running", "c-parity"), ("cpar_interp_switch", "c-parity")]
SLOW_CASES = [("base", "spec"), ("curved", "spec"), ("cpar_phi0", "c-parity")]
TOL = 1e-9


def _flags(name, small):
    text = SPEC_CASES.get(name) or CPAR_CASES[name]
    if small:
        text += " -detpixels 5"
    return text.split()


def compare_cases(small, cases=None):
    from nbsim import gradients as gr
    out = {}
    for name, mode in (cases or CASES):
        sim = gr.as_simulator(_flags(name, small), mode=mode)
        params = [p for p in gr.PARAMETERS if gr.host.applicable(sim, p) is None]
        G = cotangent(sim.plan.shape, 11)
        gc, imc = gr.vjp(sim, G, params, device="cuda", return_image=True)
        g, im = gr.vjp(sim, G, params, return_image=True)
        worst = 0.0
        for n in params:
            a, b = np.asarray(gc[n], dtype=float), np.asarray(g[n], dtype=float)
            worst = max(worst, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)))
        out[f"{name}/{mode}"] = {
            "grad": worst,
            "image": float(np.max(np.abs(imc - im)) / max(np.max(np.abs(im)), 1e-300))}
    return out


def _gpu():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:
        return False


def test_cuda_matches_cpu():
    from nbsim._numba_setup import cuda_unavailable_reason
    why = cuda_unavailable_reason()
    if why is not None:
        pytest.skip(f"no CUDA backend: {why}")
    if _gpu():
        res = compare_cases(small=False, cases=CASES + SLOW_CASES)
    else:
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", NBSIM_ADJ_CUDA_TPB="16")
        r = subprocess.run([sys.executable, __file__], capture_output=True, text=True,
                           env=env, timeout=900, cwd=str(HERE.parent))
        assert r.returncode == 0, r.stderr[-4000:]
        res = json.loads(r.stdout.strip().splitlines()[-1])
    for case, v in res.items():
        assert v["image"] <= 1e-12, (case, v)
        assert v["grad"] <= TOL, (case, v)


if __name__ == "__main__":
    print(json.dumps(compare_cases(small=True)))

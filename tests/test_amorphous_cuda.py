"""CUDA twin of the amorphous-scattering kernel against the CPU kernel and nonBragg.c.

With a real GPU the cases run in this process; without one they run in Numba's CUDA
simulator in one subprocess (NUMBA_ENABLE_CUDASIM must be set before numba.cuda is first
imported), on small ROIs of the nonBragg.c fixture geometries.  Tolerance: <= 1e-12 * max
against the CPU kernel (same float64 arithmetic), <= 1e-6 * max against nonBragg.c.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
FIX = HERE / "fixtures" / "nonbragg"
if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(FIX))

pytestmark = pytest.mark.cuda

# case -> ROI (xmin, xmax, ymin, ymax), inclusive
CASES = {
    "water_rotations_twotheta": (10, 14, 20, 23),
    "water_curved_oversample": (3, 5, 28, 30),
    "air_divergence_dispersion": (18, 21, 0, 2),
    "water_xds_like_vectors": (0, 3, 10, 12),
}


def _setup(name, roi):
    from make_nonbragg_fixtures import CASES as FLAGS, expand
    from nbsim.cli import nonbragg as cli
    from nbsim.amorphous import read_stol, resolve_nonbragg_geometry
    a, d, s = cli.parse(expand(FLAGS[name], FIX))
    d.roi = roi
    return resolve_nonbragg_geometry(d), read_stol(a.stol, a.stol_flavour), s


def _render_all(device):
    from nbsim.amorphous import amorphous_image
    out = {}
    for name, roi in CASES.items():
        g, t, s = _setup(name, roi)
        out[name] = amorphous_image(g, t, s, device=device)
    return out


def _gpu_here():
    try:
        from numba import cuda
        return bool(cuda.is_available()) and not os.environ.get("NUMBA_ENABLE_CUDASIM")
    except Exception:
        return False


@pytest.fixture(scope="module")
def cuda_images(tmp_path_factory):
    if _gpu_here():
        return _render_all("cuda")
    pytest.importorskip("numba.cuda")
    d = tmp_path_factory.mktemp("amorphous_cuda")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1",
               PYTHONPATH=str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, __file__, str(d / "out.npz")], env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    z = np.load(d / "out.npz")
    return {k: z[k] for k in z.files}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cuda_equals_cpu_and_c(name, cuda_images):
    from nbsim.amorphous import amorphous_image
    g, t, s = _setup(name, CASES[name])
    cpu = amorphous_image(g, t, s, device="cpu")
    got = cuda_images[name]
    x0, x1, y0, y1 = CASES[name]
    win = (slice(y0, y1 + 1), slice(x0, x1 + 1))
    assert np.all(got[win] > 0)
    assert np.count_nonzero(got) == got[win].size        # outside the ROI: 0
    assert np.max(np.abs(got - cpu)) <= 1e-12 * np.max(cpu)
    c = np.frombuffer(gzip.decompress((FIX / name / "c_float.bin.gz").read_bytes()), "<f4")
    c = c.reshape(g.spixels, g.fpixels)[win]
    assert np.max(np.abs(got[win] - c)) <= 1e-6 * np.max(c)


if __name__ == "__main__":
    imgs = _render_all("cuda")
    np.savez(sys.argv[1], **imgs)

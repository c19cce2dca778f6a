"""A kernel compiled in one process and the same kernel loaded from Numba's disk cache in
another give the same bits (nbsim._numba_setup, patch ``cpu_local_linkage``).

Before the fix the float32 c-parity render of pix0_custom_roi differed in the last bits
(12005 of 20800 pixels, up to ~4 ulp) between the process that compiled the kernels and one
that loaded them: Numba links a copy of each separately compiled callee (the parfor's gufunc,
helpers) into a kernel's module as a weak symbol, optimises the module again and caches that
object code, and the JIT binds a weak symbol to the first definition in the process -- the
callee's own library (optimised once) where it was compiled, the kernel's copy where it was
loaded.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

from conftest import golden_args
from nbsim import _numba_setup as ns

ROOT = Path(__file__).resolve().parent.parent

# render a small ROI, save the image, report whether the kernels were compiled or loaded
_RENDER = r"""
import json, sys
import numpy as np
import nbsim
from nbsim.kernels import cpu, cpu_lanes32
args, mode, dtype, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
x0, x1, y0, y1 = json.loads(sys.argv[5])
sim = nbsim.Simulator.from_args(args, mode=mode)
sim.config.dtype = dtype
sim = nbsim.Simulator(sim.config)
img = sim.run()
np.save(out, img[y0:y1 + 1, x0:x1 + 1])
stats = {}
for name, mod in (("lanes32", cpu_lanes32), ("general", cpu)):
    for opts in {sim.plan.options, sim.plan.options._replace(truth=False)}:
        try:
            k = mod.get_kernel(opts)
        except Exception:
            continue
        if k.signatures:
            s = k.stats
            stats[name] = [sum(s.cache_hits.values()), sum(s.cache_misses.values())]
print(json.dumps(stats))
"""


def _render(tmp_path, tag, args, roi, mode, dtype, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache),
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in os.environ.get(
                   "PYTHONPATH", "").split(os.pathsep) if p]))
    out = tmp_path / f"{tag}.npy"
    r = subprocess.run([sys.executable, "-c", _RENDER, json.dumps(args), mode, dtype,
                        str(out), json.dumps(roi)], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return np.load(out), json.loads(r.stdout.strip().splitlines()[-1])


def _small_roi(case, roi):
    args = golden_args(case)
    if "-roi" in args:
        i = args.index("-roi")
        del args[i:i + 5]
    return args + ["-roi"] + [str(v) for v in roi]


@pytest.mark.slow
def test_compiled_and_loaded_kernels_same_bits(tmp_path):
    """The issue's case, small: float32, c-parity (float32 lanes kernel plus the general
    kernel for the carry pixel), structure-factor grid, 10 phi steps; process 1 compiles
    the kernels into an empty private cache, process 2 loads them; same bytes.  (Without
    the patch: ~1/2 of the ROI's pixels differ.)"""
    if not ns.patch_status("cpu_local_linkage")[0]:
        pytest.skip("patch cpu_local_linkage does not apply: "
                    + ns.patch_status("cpu_local_linkage")[1])
    roi = (960, 1007, 620, 643)
    args = _small_roi("pix0_custom_roi", roi)
    cache = tmp_path / "numba-cache"
    a, sa = _render(tmp_path, "compiled", args, roi, "c-parity", "float32", cache)
    c, sc = _render(tmp_path, "loaded", args, roi, "c-parity", "float32", cache)
    # process 1 compiled both kernels, process 2 loaded both
    assert sa.get("lanes32", [0, 0])[1] >= 1 and sa.get("general", [0, 0])[1] >= 1, sa
    assert sc["lanes32"] == [1, 0] and sc["general"] == [1, 0], sc
    assert a.shape == (24, 48) and np.all(a > 0)
    assert a.tobytes() == c.tobytes(), (
        f"{np.count_nonzero(a != c)} of {a.size} pixels differ between the compiling and "
        "the loading process")


def test_linked_callee_copies_are_internal():
    """The mechanism, in-process and cheap: after ``prepare_cpu`` a compiled function's own
    object code holds its callees' copies with internal linkage (no weak definitions left
    for the JIT to bind to another library's code), while the module other functions link
    against is Numba's (exported functions ``linkonce_odr``)."""
    if not ns.patch_status("cpu_local_linkage")[0]:
        pytest.skip(ns.patch_status("cpu_local_linkage")[1])
    import llvmlite.binding as ll
    ns.prepare_cpu()

    @numba.njit(fastmath=True)
    def callee(x):
        s = 0.0
        for i in range(x.shape[0]):
            s += x[i] * x[i] + 0.5 * x[i]
        return s

    @numba.njit(fastmath=True, parallel=True)
    def caller(x):
        out = np.empty(4)
        for j in numba.prange(4):
            out[j] = callee(x[j::4])
        return out.sum()

    x = np.linspace(0.0, 1.0, 64)
    assert caller(x) == pytest.approx(sum(callee(x[j::4]) for j in range(4)))
    lib = caller.overloads[caller.signatures[0]].library
    defs = [fn for fn in lib._final_module.functions if not fn.is_declaration]
    assert defs
    assert not [fn.name for fn in defs if fn.linkage == ll.Linkage.linkonce_odr]
    # the parfor's gufunc (a separately compiled library) is in there, as a local copy
    assert any("parfor_gufunc" in fn.name and fn.linkage == ll.Linkage.internal
               for fn in defs), [(fn.name[:60], fn.linkage) for fn in defs]
    shared = lib._get_module_for_linking()
    assert any(not fn.is_declaration and fn.linkage == ll.Linkage.linkonce_odr
               for fn in shared.functions)

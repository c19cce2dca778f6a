"""GPU backend (nbsim.kernels.cuda) against nanoBragg.c's golden images and the CPU engine.

With a real GPU (numba.cuda.is_available() outside the simulator) every case renders in
this process at full size (pix0_custom_roi on its own ROI).  Without one, the same cases
render in the CUDA simulator on small ROIs, in ONE subprocess: NUMBA_ENABLE_CUDASIM must be
set before numba.cuda is first imported, which this process may already have done.  The
subprocess (this file run as a script) saves the images; the comparisons run here.

Tolerances (REFERENCE.md section 7): float64 <= 1e-6 * max|C| against the golden image,
<= 1e-9 * max against the CPU engine; float32 <= 1e-4 * max|C|.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":  # worker: make nbsim and conftest importable
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))

import nbsim  # noqa: E402
from nbsim._numba_setup import cuda_unavailable_reason  # noqa: E402
from conftest import golden_args, reference_for  # noqa: E402

pytestmark = pytest.mark.cuda

TOL_GOLDEN = 1e-6
TOL_CPU = 1e-9
TOL_F32 = 1e-4
NO_SWITCH = np.iinfo(np.int64).max

# case -> simulator ROI (xmin xmax ymin ymax, inclusive, as -roi).  The c-parity ROIs
# contain the pixel the full-image run depends on: phi_from_zero the first pixel (phi=0
# carryover), interp_out_of_range the first out-of-range pixel (fast 83, slow 0),
# pix0_custom_roi the first pixel of its own ROI.
CASES = {
    "simple_cubic": (100, 107, 100, 107),
    "phi_from_zero": (0, 7, 0, 7),
    "interp_out_of_range": (78, 93, 0, 7),
    "mosaic": (120, 127, 120, 127),
    "oversample_flags": (100, 107, 100, 107),
    "absorption_oversample_thick": (100, 107, 100, 107),
    "dmin_cut": (200, 211, 124, 131),          # straddles the dmin circle
    "curved_det": (120, 127, 120, 127),
    "shape_round": (120, 127, 120, 127),
    "shape_gauss": (120, 127, 120, 127),
    "shape_tophat_fudge": (120, 127, 120, 127),
    "pix0_custom_roi": (960, 975, 620, 635),
    "mask_file": (44, 59, 94, 101),            # crosses the masked block
}
F32_CASES = ["simple_cubic", "mosaic", "pix0_custom_roi", "curved_det", "interp_out_of_range",
             "phi_from_zero"]


def _backend():
    """'gpu', 'sim' (this process runs the simulator), 'subprocess' or None (no numba-cuda
    package: numba's own deprecated numba.cuda is not what nbsim's CUDA code is for)."""
    if cuda_unavailable_reason() is not None:
        return None
    try:
        from numba import cuda
        from nbsim.kernels import cuda as kc
    except Exception:
        return None
    if kc.simulator_enabled():
        return "sim"
    try:
        if cuda.is_available():
            return "gpu"
    except Exception:
        pass
    return "subprocess"


BACKEND = _backend()
FULL = BACKEND == "gpu"
NO_CUDA = f"no CUDA backend: {cuda_unavailable_reason()}"
needs_cuda = pytest.mark.skipif(BACKEND is None, reason=NO_CUDA)


def case_args(case, roi):
    a = golden_args(case)
    if roi is None:
        return a
    if "-roi" in a:
        i = a.index("-roi")
        a = a[:i] + a[i + 5:]
    return a + ["-roi"] + [str(v) for v in roi]


def _jobs():
    jobs = []
    for case, roi in CASES.items():
        r = None if FULL else roi        # full size: pix0_custom_roi keeps its own ROI
        for mode in ("spec", "c-parity"):
            jobs.append(dict(id=f"{case}-{mode}-float64", case=case, mode=mode,
                             dtype="float64", roi=r, indexed=False))
    for case in F32_CASES:
        r = None if FULL else CASES[case]
        for mode in ("spec", "c-parity"):
            jobs.append(dict(id=f"{case}-{mode}-float32", case=case, mode=mode,
                             dtype="float32", roi=r, indexed=False))
    jobs.append(dict(id="mask_file-spec-indexed", case="mask_file", mode="spec",
                     dtype="float64", roi=CASES["mask_file"], indexed=True))
    jobs.append(dict(id="interp_out_of_range-c-parity-indexed", case="interp_out_of_range",
                     mode="c-parity", dtype="float64", roi=CASES["interp_out_of_range"],
                     indexed=True))
    return jobs


JOBS = {j["id"]: j for j in _jobs()}


def render_job(job):
    """Render one job through Simulator.run(device='cuda'); returns (image, info)."""
    from nbsim.kernels import cuda as kc
    args = case_args(job["case"], job["roi"]) + ["-dtype", job["dtype"], "-device", "cuda"]
    sim = nbsim.Simulator.from_args(args, mode=job["mode"])
    assert sim.config.device == "cuda" and sim.config.dtype == job["dtype"]
    saved = kc._roi_rect
    if job["indexed"]:
        kc._roi_rect = lambda plan: None
    try:
        img = sim.run()
        g = kc.GpuRender(sim, upload=False)
        info = dict(carry=int(sim._carry_pixel), switch=int(sim._switch_pixel),
                    indexed=bool(g.indexed), device_bytes=int(g.device_bytes()),
                    available=bool(kc.available()))
    finally:
        kc._roi_rect = saved
    return np.asarray(img), info


def _worker(jobs_path, out_dir):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    jobs = json.loads(Path(jobs_path).read_text())
    out = Path(out_dir)
    results = {}
    for job in jobs:
        try:
            img, info = render_job(job)
            np.save(out / f"{job['id']}.npy", img)
            results[job["id"]] = dict(ok=True, **info)
        except Exception as e:  # reported by the test of that job
            import traceback
            results[job["id"]] = dict(ok=False, error=f"{type(e).__name__}: {e}\n"
                                      + traceback.format_exc())
    (out / "results.json").write_text(json.dumps(results))


@pytest.fixture(scope="session")
def gpu_results(tmp_path_factory):
    """id -> (image, info) for every job, rendered once per session."""
    if BACKEND is None:
        pytest.skip(NO_CUDA)
    if BACKEND == "subprocess":
        d = tmp_path_factory.mktemp("cudasim")
        (d / "jobs.json").write_text(json.dumps(list(JOBS.values())))
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
        py = [sys.executable] + (["-S"] if sys.flags.no_site else [])
        proc = subprocess.run(py + [str(Path(__file__).resolve()), "--worker",
                               str(d / "jobs.json"), str(d)], cwd=str(d), env=env,
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not (d / "results.json").exists():
            pytest.fail("CUDA simulator worker failed:\n" + proc.stdout[-4000:]
                        + proc.stderr[-4000:])
        res = json.loads((d / "results.json").read_text())
        out = {}
        for k, v in res.items():
            out[k] = ((np.load(d / f"{k}.npy") if v["ok"] else None), v)
        return out
    out = {}
    cwd = os.getcwd()
    d = tmp_path_factory.mktemp("cudarun")
    os.chdir(d)
    try:
        for k, job in JOBS.items():
            try:
                img, info = render_job(job)
                out[k] = (img, dict(ok=True, **info))
            except Exception as e:
                import traceback
                out[k] = (None, dict(ok=False, error=f"{type(e).__name__}: {e}\n"
                                     + traceback.format_exc()))
    finally:
        os.chdir(cwd)
    return out


def _get(gpu_results, jid):
    img, info = gpu_results[jid]
    assert info["ok"], info.get("error")
    return img, info


def _cpu(job):
    sim = nbsim.Simulator.from_args(case_args(job["case"], job["roi"]), mode=job["mode"])
    sim.config.device = "cpu"
    img = sim.run()
    return img, sim


def _roi_slices(job, shape):
    roi = job["roi"]
    if roi is None:
        a = golden_args(job["case"])
        if "-roi" not in a:
            return (slice(None), slice(None))
        i = a.index("-roi")
        roi = tuple(int(v) for v in a[i + 1:i + 5])
    x0, x1, y0, y1 = roi
    return (slice(y0, min(y1, shape[0] - 1) + 1), slice(x0, min(x1, shape[1] - 1) + 1))


F64_IDS = [k for k, j in JOBS.items() if j["dtype"] == "float64" and not j["indexed"]]
F32_IDS = [k for k, j in JOBS.items() if j["dtype"] == "float32"]
IDX_IDS = [k for k, j in JOBS.items() if j["indexed"]]


@needs_cuda
@pytest.mark.parametrize("jid", F64_IDS)
def test_float64_matches_golden_and_cpu(gpu_results, jid):
    job = JOBS[jid]
    img, info = _get(gpu_results, jid)
    ref = reference_for(job["case"], job["mode"]).astype(np.float64).reshape(img.shape)
    sl = _roi_slices(job, img.shape)
    scale = np.max(np.abs(ref[sl]))
    assert scale > 0
    err = np.max(np.abs(img[sl] - ref[sl])) / scale
    assert err <= TOL_GOLDEN, f"{jid}: GPU vs nanoBragg.c {err:.3e}"
    cpu, csim = _cpu(job)
    assert img.shape == cpu.shape and img.dtype == np.float64
    err_cpu = np.max(np.abs(img - cpu)) / np.max(np.abs(cpu))
    assert err_cpu <= TOL_CPU, f"{jid}: GPU vs CPU {err_cpu:.3e}"
    outside = np.ones(img.shape, bool)
    outside[sl] = False
    assert not np.any(img[outside]), "pixels outside the ROI must stay zero"
    assert info["carry"] == csim._carry_pixel
    if job["case"] == "interp_out_of_range" and job["mode"] == "c-parity":
        assert info["switch"] == 83       # fast 83, slow 0: C's first out-of-range pixel
    if job["case"] == "phi_from_zero" and job["mode"] == "c-parity":
        assert info["carry"] == 0


@needs_cuda
@pytest.mark.parametrize("jid", F32_IDS)
def test_float32_error_bound(gpu_results, jid):
    job = JOBS[jid]
    img, info = _get(gpu_results, jid)
    ref = reference_for(job["case"], job["mode"]).astype(np.float64).reshape(img.shape)
    sl = _roi_slices(job, img.shape)
    scale = np.max(np.abs(ref[sl]))
    err = np.max(np.abs(img[sl] - ref[sl])) / scale
    assert err <= TOL_F32, f"{jid}: float32 GPU vs nanoBragg.c {err:.3e}"


@needs_cuda
@pytest.mark.parametrize("jid", IDX_IDS)
def test_indexed_pixel_path(gpu_results, jid):
    """Pixel indices read from a device array (plans that are not a ROI rectangle)."""
    job = JOBS[jid]
    img, info = _get(gpu_results, jid)
    assert info["indexed"]
    cpu, csim = _cpu(job)
    assert np.max(np.abs(img - cpu)) <= TOL_CPU * np.max(np.abs(cpu))
    if job["mode"] == "c-parity" and job["case"] == "interp_out_of_range":
        assert info["switch"] == 83


@needs_cuda
def test_available_and_memory(gpu_results):
    img, info = _get(gpu_results, "simple_cubic-spec-float64")
    assert info["available"] is True
    # device memory: output + F grid + cells + small arrays <= 3 x image + grid + cache
    for jid in ("pix0_custom_roi-spec-float64", "mosaic-c-parity-float64"):
        img, info = _get(gpu_results, jid)
        job = JOBS[jid]
        sim = nbsim.Simulator.from_args(case_args(job["case"], job["roi"]), mode=job["mode"])
        p = sim.plan
        image_bytes = 8 * p.pixel_index.shape[0]
        extra = p.Fgrid.nbytes + p.cells.nbytes + p.mask.nbytes + 4096
        assert info["device_bytes"] <= 3 * image_bytes + extra


def _ptx_toolchain_problem():
    """None when numba-cuda can compile PTX here (libNVVM, and NVRTC, which numba-cuda 0.30
    asks for the supported architectures); else the skip reason.  A CUDA toolkit without
    NVRTC (as on this machine kind: libcudart and libnvvm only) cannot."""
    try:
        from numba.cuda.cudadrv.nvvm import NVVM
        NVVM()
    except Exception as e:  # no libnvvm here
        return f"NVVM not available: {' '.join(str(e).split())[:200]}"
    try:
        from numba.cuda.cudadrv import nvrtc
        nvrtc.get_supported_ccs()
    except Exception as e:  # no libnvrtc here
        return (f"NVRTC not available (the CUDA toolkit lacks it; numba-cuda[cu12]/[cu13] "
                f"brings it): {' '.join(str(e).split())[:160]}")
    return None


PTX_VARIANTS = [("simple_cubic", "spec", "float64", False),
                ("pix0_custom_roi", "c-parity", "float64", False),
                ("interp_out_of_range", "c-parity", "float64", False),  # atomic min pass
                ("interp_out_of_range", "c-parity", "float64", True),   # interp=2 pass
                ("oversample_flags", "c-parity", "float32", False),
                ("mask_file", "spec", "float32", False),
                ("curved_det", "spec", "float64", False)]


@pytest.mark.skipif(BACKEND != "subprocess", reason="needs numba-cuda with NVVM and no GPU "
                    "(a GPU runs the kernels themselves)")
@pytest.mark.parametrize("case,mode,dtype,second", PTX_VARIANTS)
def test_kernel_compiles_to_ptx(monkeypatch, case, mode, dtype, second):
    """The simulator runs the kernel as Python; this compiles it for sm_90 with NVVM so
    physics that numba-cuda cannot lower is caught without a GPU."""
    import types
    import numba
    from numba import cuda
    if getattr(cuda, "implementation", "") != "NVIDIA":
        pytest.skip("needs the numba-cuda package (numba's built-in CUDA target is deprecated)")
    why = _ptx_toolchain_problem()
    if why:
        pytest.skip(why)
    import numba.cuda.dispatcher as cdisp
    from nbsim.kernels import cuda as kc
    # device functions ask the current device for its compute capability
    monkeypatch.setattr(cdisp, "get_current_device",
                        lambda: types.SimpleNamespace(compute_capability=(9, 0)))
    kc._patch_numba_cuda()
    args = case_args(case, CASES[case]) + ["-dtype", dtype]
    sim = nbsim.Simulator.from_args(args, mode=mode)
    g = kc.GpuRender(sim, upload=False)
    opts = g.opts._replace(interp=2) if second else g.first_pass_opts()
    argt = tuple(numba.typeof(a) for a in g.launch_args(0, g.npix))
    with kc._NoInline():
        ptx, _ = cuda.compile_ptx(kc.kernel_source(opts, g.spec), argt, cc=(9, 0))
    assert ".entry" in ptx
    # the (float64, also under -dtype float32) detector geometry is rounded as C rounds
    # it: explicit mul.rn/add.rn, which ptxas may not fuse into FMAs
    assert g.spec.rn_geometry
    assert "mul.rn.f64" in ptx and "add.rn.f64" in ptx


@pytest.mark.skipif(not FULL, reason="needs a GPU: NVVM's FMA contraction is what is tested")
@pytest.mark.parametrize("extra", [[], ["-detector_roty", "9.72"],
                                   ["-detector_rotx", "-6.85", "-curved_det"]])
def test_direct_beam_pixel_exact_on_gpu(extra):
    """The pixel centred on the direct beam has a scattering vector of exactly 0 in C's
    arithmetic; with the FMA-free geometry (cuda_geometry) the GPU keeps that zero, so
    -round_xtal's lattice term (sinc3(0) = 1) survives as on the CPU and in C."""
    args = ("-cell 117.85 85.195 92.374 77.512 103.205 103.797 -default_F 10 -Nb 10 "
            "-round_xtal -lambda 1.5 -detpixels 64 -distance 172.77 -denzo "
            "-oversample 1").split() + extra
    cpu = nbsim.Simulator.from_args(args).run()
    gpu = nbsim.Simulator.from_args(args + ["-device", "cuda"]).run()
    assert gpu[32, 32] == pytest.approx(cpu[32, 32], rel=1e-12)
    assert np.max(np.abs(gpu - cpu)) <= TOL_CPU * np.max(cpu)


_PREPARE_THEN_COMPILE = r"""
import sys, types, importlib
import numba
from numba import cuda
import numba.cuda.dispatcher as cdisp
from nbsim.kernels import cuda as kc
from nbsim import _numba_setup
assert _numba_setup.patch_status("cuda_blas")[0], _numba_setup.patch_status("cuda_blas")
kc.prepare_compiler()
am = sys.modules["numba.cuda.np.arraymath"]
assert am._HAVE_BLAS is _numba_setup.scipy_blas_installed(), "BLAS answer changed"
assert "scipy.linalg" not in sys.modules, "scipy.linalg imported"
linalg = importlib.import_module("numba.cuda.np.linalg")
assert linalg.ensure_blas is am.ensure_blas, "ensure_blas not restored"
assert linalg.ensure_blas.__module__ == "numba.cuda.np.linalg"
if sys.argv[1] != "--ptx":
    print("ok")
    sys.exit(0)
cdisp.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))
kc._patch_numba_cuda()
assert kc.PATCHES["cuda_ufuncs"].startswith("added"), kc.PATCHES
import nbsim
sim = nbsim.Simulator.from_args(sys.argv[2:])
g = kc.GpuRender(sim, upload=False)
argt = tuple(numba.typeof(a) for a in g.launch_args(0, g.npix))
with kc._NoInline():
    ptx, _ = cuda.compile_ptx(kc.kernel_source(g.first_pass_opts(), g.spec), argt, cc=(9, 0))
assert ".entry" in ptx
print("ok")
"""


@pytest.mark.skipif(BACKEND is None, reason=NO_CUDA)
def test_prepare_compiler_skips_host_blas_and_kernel_still_compiles():
    """prepare_compiler() sets numba-cuda up without importing SciPy (start-up time),
    keeps numba-cuda's BLAS answer (the guarded patch, on the pinned numba-cuda), and the
    kernel then still compiles for sm_90 where NVVM and NVRTC are present (fresh process:
    nothing loaded before)."""
    ptx = BACKEND == "subprocess" and _ptx_toolchain_problem() is None
    args = ["--ptx" if ptx else "--no-ptx"] + case_args("mosaic", CASES["mosaic"])
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-c", _PREPARE_THEN_COMPILE] + args, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


def test_unavailable_is_false_without_numba_cuda(monkeypatch):
    """available() never raises; without numba.cuda it is False."""
    from nbsim.kernels import cuda as kc

    def no_cuda():
        raise ImportError("no numba.cuda")

    monkeypatch.setattr(kc, "_cuda", no_cuda)
    assert kc.available() is False


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--worker":
    _worker(sys.argv[2], sys.argv[3])

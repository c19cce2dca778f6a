"""Cost of the gradients: the VJP of every scalar parameter against the forward render of
the same case (issue 5: VJP <= 3 x forward, CPU and GPU).

    python bench/bench_gradients.py [case ...] [--device cpu|cuda|both] [--repeat N]

Cases are bench/cases.py's (the issue-2 benchmark set).  For each: the forward render
(``Simulator.run()``, kernel and host work) and ``gradients.vjp(sim, G)`` for all scalar
parameters that apply (host Jacobian, adjoint kernel, contraction), best of ``--repeat``
after a warm-up (compilation excluded).  ``adj.pass`` is the adjoint pass alone (with
its uploads and downloads on a GPU), ``host`` the rest of the VJP (effective
configuration, host-geometry Jacobian, contraction); on a GPU the CUDA kernel's own time
(synchronised) is printed too.
Prints a table and, with --json, writes the numbers.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cases import CASES  # noqa: E402

from nbsim import gradients as gr  # noqa: E402
from nbsim.gradients import host  # noqa: E402

DEFAULT = ["cube_1024", "triclinic_512", "triclinic_mosaic_phi_512", "oversample4_512",
           "pix0_full_2463x2527"]


def best(f, repeat):
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        t.append(time.perf_counter() - t0)
    return min(t)


def bench_case(name, device, repeat):
    import numba
    sim = gr.as_simulator(CASES[name])
    params = [p for p in gr.SCALAR_PARAMETERS if host.applicable(sim, p) is None]
    G = np.random.default_rng(0).normal(size=sim.plan.shape)
    if device == "cuda":
        from nbsim.kernels import cuda as kcuda
        sim.config.device = "cuda"

        def fwd():
            kcuda.run(sim)
            numba.cuda.synchronize()
    else:
        sim.config.device = "cpu"

        def fwd():
            sim.run()

    def vjp():
        gr.vjp(sim, G, params, device=device)

    eff = gr.as_simulator(gr.effective_config(sim))
    cfg = eff.config
    dlam = host.source_dlam(cfg)

    def kern():
        host.run_adjoint(eff, G, False, False, dlam, device=device, want_image=False)

    fwd(), vjp(), kern()                      # compile / warm up
    tf = best(fwd, repeat)
    tv = best(vjp, repeat)
    tk = best(kern, repeat)
    # host share of the VJP: the same call with the adjoint pass replaced by zeros
    real = host.run_adjoint

    def fake(*a, **k):
        return host.AdjointResult(acc=np.zeros(host.core.NACC), gF=None, image=None)
    host.run_adjoint = fake
    try:
        th = best(vjp, repeat)
    finally:
        host.run_adjoint = real
    row = {"case": name, "device": device, "pixels": int(sim.plan.pixel_index.size),
           "params": len(params), "forward_s": tf, "vjp_s": tv, "adjoint_kernel_s": tk,
           "host_s": th, "ratio": tv / tf, "threads": numba.get_num_threads()}
    if device == "cuda":
        from nbsim.gradients import adjoint_cuda
        kin = host.kernel_inputs(eff, False, False, dlam)
        cot = np.ascontiguousarray(G.reshape(-1))
        times = []
        for _ in range(repeat):
            adjoint_cuda.run_adjoint_cuda(eff, cot, kin, timing=times)
        row["cuda_kernel_s"] = min(times)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", default=DEFAULT)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "both"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    devices = ["cpu", "cuda"] if a.device == "both" else [a.device]
    rows = []
    print(f"{'case':28s} {'dev':4s} {'pixels':>9s} {'forward':>10s} {'vjp(all)':>10s} "
          f"{'adj.pass':>10s} {'host':>8s} {'vjp/fwd':>8s}")
    for dev in devices:
        if dev == "cuda":
            from nbsim.gradients import adjoint_cuda
            if not adjoint_cuda.available():
                print("cuda: no GPU, skipped")
                continue
        for name in a.cases:
            r = bench_case(name, dev, a.repeat)
            rows.append(r)
            extra = (f"  (CUDA adjoint kernel {r['cuda_kernel_s'] * 1e3:.2f} ms)"
                     if "cuda_kernel_s" in r else "")
            print(f"{name:28s} {dev:4s} {r['pixels']:9d} {r['forward_s'] * 1e3:8.1f}ms "
                  f"{r['vjp_s'] * 1e3:8.1f}ms {r['adjoint_kernel_s'] * 1e3:8.1f}ms "
                  f"{r['host_s'] * 1e3:6.1f}ms {r['ratio']:8.2f}{extra}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()

"""A/B of nbsim source trees (e.g. a checkout of main and this branch), float64 render,
interleaved call by call in long-lived worker processes; best wall and CPU time per tree.

    python bench/bench_ab.py TREE_A,TREE_B[,...] THREADS ROUNDS case [case ...]

Each TREE is a directory holding nbsim/ and bench/cases.py (e.g. `git archive REV nbsim bench
| tar -x -C /tmp/a`, plus a tests/golden link for the pix0 case)."""
import subprocess, sys
trees = sys.argv[1].split(","); th = int(sys.argv[2]); rounds = int(sys.argv[3]); cases = sys.argv[4:]
WORKER = r'''
import sys, time, resource
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/bench")
import nbsim
from cases import CASES
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
sims = {}
for line in sys.stdin:
    name, dt, th = line.split()
    key = (name, dt, th)
    if key not in sims:
        sims[key] = nbsim.Simulator.from_args([*CASES[name], "-dtype", dt], threads=int(th)); sims[key].run()
    s = sims[key]
    c0 = cpu(); t0 = time.perf_counter(); s.run(); w = time.perf_counter() - t0; c = cpu() - c0
    print(w, c, flush=True)
'''
procs = [subprocess.Popen([sys.executable, "-c", WORKER, t], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL) for t in trees]
for name in cases:
    bw = [1e9] * len(trees); bc = [1e9] * len(trees)
    for r in range(rounds):
        for i, p in enumerate(procs):
            p.stdin.write(f"{name} float64 {th}\n"); p.stdin.flush()
            w, c = map(float, p.stdout.readline().split())
            bw[i] = min(bw[i], w); bc[i] = min(bc[i], c)
    print(f"{name:26s} th={th} float64 " + "  ".join(f"{t.rstrip('/').split('/')[-1]} wall {w*1e3:8.2f} cpu {c*1e3:8.2f} ms" for t, w, c in zip(trees, bw, bc))
          + "  cpu ratios vs first: " + " ".join(f"{bc[0]/c:.3f}" for c in bc[1:]), flush=True)

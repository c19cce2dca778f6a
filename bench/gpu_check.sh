#!/usr/bin/env bash
# GPU check of nbsim (issues 4, 12): install the carried wheels, time the kernels, the whole
# process and the LS49 still (bench/gpu_bench.py), then run the CUDA tests at full size.
# Budget: under 8 minutes in all (setup ~1 min, bench <= 200 s, tests <= 200 s).
# Run from the repository root on the GPU machine, with .whl/ carried:
#
#     bash bench/gpu_check.sh
#
# .whl/ (git-ignored) holds wheels for Python 3.12 made with `pip download` (see docs/gpu.md):
#   numpy 2.4.6, numba 0.68.1, numba-cuda 0.30.4, tifffile 2026.3.3   (always installed)
#   fallback/: cuda-core 1.2.2, cuda-pathfinder 1.9.1, cuda-bindings 13.0.3 (only if the
#              machine's own CUDA Python packages do not work with numba-cuda 0.30.4)
# The machine's numpy 2.5 breaks numba.cuda (np.row_stack is gone), hence numpy 2.4.
# Output: the test summary, then the benchmark table (last); logs and the table in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/nbsim_gpu_out}
mkdir -p "$OUT"
SITE=/tmp/site
export PYTHONUNBUFFERED=1
if [ "${NBSIM_GPU_CHECK_SIM:-0}" = 1 ]; then
  # check of this script without a GPU: CUDA simulator, tiny benchmark
  export NUMBA_ENABLE_CUDASIM=1 NBSIM_BENCH_TINY=1
else
  unset NUMBA_ENABLE_CUDASIM
fi
if [ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda ]; then export CUDA_HOME=/usr/local/cuda; fi

ls .whl/*.whl >/dev/null 2>&1 || { echo "no wheels in .whl/ (carry .whl)"; exit 2; }
rm -rf "$SITE"
pipi() { "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
         --target "$SITE" "$@" 2>&1 | grep -v -i "warning" ; }
pipi .whl/*.whl
export PYTHONPATH=$SITE:$ROOT

smoke() {
  "$PY" - <<'EOF'
import sys
import numpy, numba
from numba import cuda
impl = getattr(cuda, "implementation", "?")
try:
    import numba_cuda
    ncv = numba_cuda.__version__
except Exception as e:
    ncv = f"missing ({e})"
print(f"python {sys.version.split()[0]}; numpy {numpy.__version__} ({numpy.__file__}); "
      f"numba {numba.__version__}; numba-cuda {ncv}; numba.cuda implementation {impl}")
if impl != "NVIDIA":
    sys.exit("numba.cuda is not numba-cuda")
if not cuda.is_available():
    sys.exit("numba.cuda sees no GPU")
from nbsim.kernels import cuda as kc
if not kc.simulator_enabled():
    d = cuda.get_current_device()
    print("device:", d.name, "cc", d.compute_capability)
import numpy as np
@cuda.jit
def k(a):
    i = cuda.grid(1)
    if i < a.size:
        a[i] = np.floor(i + 0.5)
kc._patch_numba_cuda()
a = cuda.device_array(64)
k[1, 64](a)
assert a.copy_to_host()[5] == 5.0
print("smoke kernel ok")
EOF
}

if ! smoke; then
  echo "== smoke test failed with the machine's cuda-core/cuda-bindings: adding .whl/fallback"
  pipi .whl/fallback/*.whl
  if ! smoke; then
    echo "== still failing: trying the machine's numba (and llvmlite) instead of numba 0.68.1"
    rm -rf "$SITE"/numba "$SITE"/numba-*.dist-info
    if ! smoke; then
      echo "== numba.cuda may not be redirected to numba-cuda: registering its finder"
      echo "import _numba_cuda_redirector" > "$SITE/sitecustomize.py"
      if ! smoke; then
        echo "== GPU setup failed; diagnostics:"
        "$PY" -m pip list 2>/dev/null | grep -i -E "numba|numpy|cuda|nvidia|llvmlite"
        ls -d /usr/local/cuda*/nvvm/lib64 2>/dev/null
        nvidia-smi || true
        exit 1
      fi
    fi
  fi
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm \
  --format=csv,noheader 2>/dev/null || true

# benchmark first (the figures issue 4 asks for), then the full-size tests with the time
# left; both budgets can be set from the environment to fit a device lease
echo "== bench/gpu_bench.py"
timeout "${NBSIM_BENCH_TIMEOUT:-200}" "$PY" bench/gpu_bench.py 2>&1 | tee "$OUT/gpu_bench.log" | tail -n 60
rc_bench=${PIPESTATUS[0]}

echo "== pytest -m cuda tests/test_cuda.py (full size)"
t0=$(date +%s)
# every case compiles its own kernel (CPU-bound NVVM work): spread the cases over
# processes with pytest-xdist when the machine has it (on the GPU only: under the
# simulator each worker would re-run the shared simulator subprocess)
XDIST=()
if [ "${NBSIM_GPU_CHECK_SIM:-0}" != 1 ] && "$PY" -c "import xdist" 2>/dev/null; then
  XDIST=(-n "${NBSIM_TEST_WORKERS:-8}")
fi
timeout "${NBSIM_TEST_TIMEOUT:-200}" "$PY" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider \
  ${XDIST[@]+"${XDIST[@]}"} -rfE --tb=short > "$OUT/pytest_cuda.log" 2>&1
rc_test=$?
# issue 18: the CUDA kernel's reflection truth equals the CPU's, on the GPU itself
NBSIM_TEST_REAL_GPU=$([ "${NBSIM_GPU_CHECK_SIM:-0}" = 1 ] && echo 0 || echo 1) \
  timeout 120 "$PY" -m pytest -q tests/test_truth.py -k cuda_kernel_truth -p no:cacheprovider \
  -rfE --tb=short >> "$OUT/pytest_cuda.log" 2>&1 || rc_test=1
tail -n 25 "$OUT/pytest_cuda.log"
echo "== tests: exit $rc_test in $(( $(date +%s) - t0 )) s"
echo "== tests exit $rc_test, bench exit $rc_bench"
[ "$rc_test" -eq 0 ] && [ "$rc_bench" -eq 0 ]

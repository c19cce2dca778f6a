"""The background CUDA driver start (nbsim.kernels.cuda_warmup), with a fake driver."""
import ctypes
import subprocess
import sys
import threading
import time

import pytest

from nbsim.kernels import cuda_warmup


class FakeDriver:
    """Stands for libcuda: records calls, optionally slow, writes through byref args."""

    def __init__(self, devices=1, init_rc=0, delay=0.0):
        self.devices = devices
        self.init_rc = init_rc
        self.delay = delay
        self.calls = []
        self.threads = set()

    def _log(self, name):
        self.calls.append(name)
        self.threads.add(threading.current_thread().name)

    def cuInit(self, flags):
        self._log("cuInit")
        time.sleep(self.delay)
        return self.init_rc

    def cuDeviceGetCount(self, p):
        self._log("cuDeviceGetCount")
        p._obj.value = self.devices
        return 0

    def cuDeviceGet(self, p, ordinal):
        self._log("cuDeviceGet")
        assert ordinal == 0
        p._obj.value = 0
        return 0

    def cuDevicePrimaryCtxRetain(self, p, dev):
        self._log("cuDevicePrimaryCtxRetain")
        time.sleep(self.delay)
        p._obj.value = 0x1234
        return 0


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    monkeypatch.delenv("NBSIM_CUDA_WARMUP", raising=False)
    cuda_warmup._reset_for_tests()
    yield
    cuda_warmup._reset_for_tests()


def test_context_created_on_a_thread_once():
    drv = FakeDriver(delay=0.2)
    t0 = time.perf_counter()
    assert cuda_warmup.start(lambda: drv) is True
    assert time.perf_counter() - t0 < 0.15          # start() does not wait for the driver
    assert cuda_warmup.start(lambda: drv) is False   # once per process
    assert cuda_warmup.wait_initialized(5)
    st = cuda_warmup.state()
    assert st.device_count == 1
    assert cuda_warmup.wait_ready(5)
    assert st.error is None
    assert drv.calls == ["cuInit", "cuDeviceGetCount", "cuDeviceGet",
                         "cuDevicePrimaryCtxRetain"]
    assert drv.threads == {"nbsim-cuda-warmup"}
    assert st.seconds["context"] >= st.seconds["init"] >= 0.2
    assert not st.thread.daemon        # the interpreter waits for it at exit


@pytest.mark.parametrize("drv, why", [(FakeDriver(devices=0), "no CUDA device"),
                                      (FakeDriver(init_rc=100), "cuInit failed")])
def test_driver_failures_are_recorded_not_raised(drv, why):
    assert cuda_warmup.start(lambda: drv)
    assert cuda_warmup.wait_ready(5)
    st = cuda_warmup.state()
    assert why in st.error
    assert "cuDevicePrimaryCtxRetain" not in drv.calls
    assert st.initialized.is_set()


def test_missing_driver_library():
    def load():
        raise OSError("libcuda.so.1: cannot open shared object file")
    assert cuda_warmup.start(load)
    assert cuda_warmup.wait_ready(5)
    assert "OSError" in cuda_warmup.state().error
    assert cuda_warmup.state().device_count == 0


def test_skipped_under_the_simulator_and_when_disabled(monkeypatch):
    drv = FakeDriver()
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    assert cuda_warmup.start(lambda: drv) is False
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM")
    monkeypatch.setenv("NBSIM_CUDA_WARMUP", "0")
    assert cuda_warmup.start(lambda: drv) is False
    assert drv.calls == []
    assert cuda_warmup.wait_ready(0.01) is False    # never started: nothing to wait for


def test_real_loader_never_raises():
    """On a machine without a driver this records the failure; with one, it makes the
    context.  Either way the events end set."""
    assert cuda_warmup.start()
    assert cuda_warmup.wait_ready(60)
    st = cuda_warmup.state()
    assert (st.error is None) == (st.device_count > 0)


def test_cli_module_import_is_light():
    """The CLI starts the driver thread before Numba is imported (lazy nbsim package)."""
    code = ("import sys, nbsim.cli.main, nbsim.kernels.cuda_warmup; "
            "assert 'numba' not in sys.modules, 'numba imported'; "
            "import nbsim; nbsim.Simulator; assert 'numba' in sys.modules; "
            "assert 'Simulator' in dir(nbsim)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_auto_without_gpu_renders_on_cpu(tmp_path, monkeypatch):
    from nbsim.cli.main import main
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NBSIM_CUDA_WARMUP", "1")
    args = ("-cell 100 100 100 90 90 90 -default_F 100 -N 2 -detpixels 16 -pixel 0.1 "
            "-distance 100 -floatfile f.bin -nonoise -nopgm -intfile i.img -device auto "
            "-noprogress").split()
    import io
    err = io.StringIO()
    assert main(args, stdout=io.StringIO(), stderr=err) == 0
    assert (tmp_path / "f.bin").stat().st_size == 16 * 16 * 4
    cuda_warmup.wait_ready(60)
    st = cuda_warmup.state()
    assert st.thread is not None and st.ready.is_set()


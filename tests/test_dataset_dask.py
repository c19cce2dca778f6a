"""Datasets on Dask (issue 9, acceptance 3): a local cluster gives the in-process
dataset pixel for pixel, a killed worker's frames are recomputed, worker-written blocks
joined by a virtual dataset hold the same frames."""
import io
import os
import signal
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
h5py = pytest.importorskip("h5py")
pytest.importorskip("hdf5plugin")
import hdf5plugin  # noqa: E402,F401

from nbsim.cli.main import main  # noqa: E402

CELL = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5",
        "-lambda", "6.2", "-distance", "100"]
JOB = CELL + ["-detpixels", "64", "-pixel", "0.4", "-osc", "0.5", "-phisteps", "2",
              "-nimages", "6", "-seed", "21", "-noprogress"]


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    rc = main([str(a) for a in argv], stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def nexus_data(path):
    with h5py.File(path, "r") as f:
        return f["entry/data/data"][()], f["entry/nbsim/frame_complete"][()]


def test_local_cluster_dataset_equals_in_process(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for d, extra in ((a, []), (b, ["-workers", "2"])):
        rc, out, err = run_cli(JOB + extra + ["-nexus", d / "s.h5", "-noisefile",
                                              d / "n_#.img", "-floatfile", d / "f_#.bin"])
        assert rc == 0, err
    da, ca = nexus_data(a / "s.h5")
    db, cb = nexus_data(b / "s.h5")
    assert ca.all() and cb.all() and da.shape == (6, 64, 64) and da.sum() > 0
    assert np.array_equal(da, db)
    for i in range(1, 7):
        for name in (f"n_{i}.img", f"f_{i}.bin"):
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.slow
def test_killed_worker_is_replaced_and_its_frames_recomputed(tmp_path):
    from nbsim.dataset import Dataset, RotationScan
    from nbsim.dataset.driver import run_frames
    from nbsim.dataset.executors import DaskExecutor
    from nbsim.dataset.manifest import JobRecord
    from nbsim.dataset.outputs import Output, dataset_info, frame_products
    from nbsim.io.nexus import NexusSink

    flags = CELL + ["-detpixels", "128", "-pixel", "0.2", "-mosaic", "0.4",
                    "-mosaic_domains", "20", "-osc", "0.2", "-phisteps", "4",
                    "-oversample", "2"]
    ds = Dataset.from_args(flags, RotationScan(16), seed=8)
    want = [f.counts[0] for f in ds.frames()]        # (panels, slow, fast): one panel
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=50)
    client = distributed.Client(cluster)
    try:
        ex = DaskExecutor(client, threads_per_task=1)
        pids = client.run(os.getpid)
        victim = sorted(pids.values())[0]
        info = dataset_info(ds)
        prod = frame_products(ds, None)
        sink = NexusSink(tmp_path / "k.h5")
        rec = JobRecord(str(tmp_path / "k.json"), {}, kind="rotation", nframes=16, seed=8,
                        misset_seed=8)
        killed = []

        def progress(done, total):
            if done == 3 and not killed:
                os.kill(victim, signal.SIGKILL)
                killed.append(time.time())
        res = run_frames(ds, [Output("-nexus", "k.h5", sink, prod.detector_data)], rec, ex,
                         info, progress=progress)
        assert killed and res.rendered == 16 and rec.complete
        # the nanny started a new worker process
        t0 = time.time()
        while time.time() - t0 < 30:
            now = set(client.run(os.getpid).values())
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.2)
        assert victim not in now and len(now) == 2
    finally:
        client.close()
        cluster.close()
    data, complete = nexus_data(tmp_path / "k.h5")
    assert complete.all()
    assert np.array_equal(data, np.stack(want))


@pytest.mark.slow
def test_worker_written_blocks_joined_by_a_virtual_dataset(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    rc, out, err = run_cli(JOB + ["-nexus", a / "s.h5", "-noisefile", a / "n_#.img"])
    assert rc == 0, err
    rc, out, err = run_cli(JOB + ["-workers", "2", "-worker_blocks", "4", "-nexus",
                                  b / "s.h5", "-noisefile", b / "n_#.img"])
    assert rc == 0, err
    assert sorted(p.name for p in b.glob("s_block_*.h5")) == ["s_block_000001.h5",
                                                              "s_block_000005.h5"]
    with h5py.File(b / "s.h5", "r") as f:
        assert f["entry/data/data"].is_virtual
    da, _ = nexus_data(a / "s.h5")
    db, cb = nexus_data(b / "s.h5")
    assert cb.all() and np.array_equal(da, db)
    for i in range(1, 7):
        assert (a / f"n_{i}.img").read_bytes() == (b / f"n_{i}.img").read_bytes()
    # resume: a lost block is rendered again, the kept one is not
    (b / "s_block_000005.h5").unlink()
    rc, out, err = run_cli(JOB + ["-workers", "2", "-worker_blocks", "4", "-nexus",
                                  b / "s.h5", "-noisefile", b / "n_#.img", "-resume"])
    assert rc == 0, err
    assert "(2 rendered, 4 kept)" in out, out
    db, cb = nexus_data(b / "s.h5")
    assert cb.all() and np.array_equal(da, db)


@pytest.mark.slow
def test_scheduler_address_uses_a_running_cluster(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    rc, out, err = run_cli(JOB + ["-nexus", a / "s.h5"])
    assert rc == 0, err
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=50)
    try:
        rc, out, err = run_cli(JOB + ["-scheduler", cluster.scheduler_address,
                                      "-threads", "1", "-nexus", b / "s.h5"])
    finally:
        cluster.close()
    assert rc == 0, err
    assert "worker blocks of 16" in out           # the workers wrote the data
    assert (b / "s_block_000001.h5").exists()
    da, _ = nexus_data(a / "s.h5")
    db, cb = nexus_data(b / "s.h5")
    assert cb.all() and np.array_equal(da, db)

"""Workers write the data: blocks of frames to their own files, joined by a master file.

At scale the pixels must not pass through the driver.  With ``-worker_blocks B`` (the
default with ``-scheduler``) the frames are cut into blocks of ``B``; one Dask task
renders a block, writes its per-frame files (templates) and then its data file
``<nexus stem>_block_<first frame, 1-based>.h5`` (atomic:
:func:`nbsim.io.nexus.write_block_file`), and returns only ``(first, n, path)``.  The
driver records each block in the job record as it completes (in any order) and at the
end writes the NXmx master file whose ``/entry/data/data`` is an HDF5 virtual dataset
over the block files (:func:`nbsim.io.nexus.write_master_vds`).  Driver cost per frame is
a few bytes of task result and a record update per block: independent of the image size.

Resume: a block whose file exists is complete (it is written last, atomically); the
others are rendered again.
"""
from __future__ import annotations

import os
import time
from typing import Optional, Sequence, Tuple

import numpy as np

from .driver import JobResult

__all__ = ["run_blocks", "block_path", "render_block"]


def block_path(nexus: str, first: int) -> str:
    stem, _ext = os.path.splitext(str(nexus))
    return f"{stem}_block_{first + 1:06d}.h5"


def _template_sinks(prod, outputs_spec):
    from .outputs import TemplateSink
    writers = {"-floatfile": (prod.write_float, prod.float32),
               "-intfile": (prod.write_int, prod.int_smv),
               "-noisefile": (prod.write_noise, prod.noise_smv),
               "-pgmfile": (prod.write_pgm, prod.pgm)}
    sinks = []
    for flag, target in outputs_spec:
        if flag == "-cbf":
            from ..io.cbf import CbfSink
            sinks.append((CbfSink(target), prod.detector_counts))
        elif flag in writers:
            w, p = writers[flag]
            sinks.append((TemplateSink(target, w), p))
    return sinks


def render_block(dataset, first: int, n: int, path: str, compression, outputs_spec,
                 outs, command) -> Tuple[int, int, str, Optional[np.ndarray]]:
    """A worker task: render frames first..first+n-1, write their per-frame files, then the
    block's data file.  Returns (first, n, path, first frame's detector data)."""
    from ..io.nexus import write_block_file
    from .executors import assign_gpu
    from .outputs import dataset_info, frame_products
    assign_gpu(dataset)
    info = dataset_info(dataset, command)
    prod = frame_products(dataset, outs)
    sinks = _template_sinks(prod, outputs_spec)
    for s, _p in sinks:
        s.open(info, resume=True)
    data = []
    for i in range(first, first + n):
        f = dataset.render(i)
        for s, p in sinks:
            s.write(i, p(f))
        data.append(prod.detector_data(f))
    for s, _p in sinks:
        s.close()
    write_block_file(path, info, first, np.stack(data), compression=compression)
    return first, n, path, data[0]


def run_blocks(dataset, nexus: str, info, record, executor, *, block: int, compression,
               outputs_spec: Sequence, outs, resume: bool = False, progress=None,
               keep_previews: Sequence[int] = ()) -> JobResult:
    import copy

    from ..io.nexus import write_master_vds
    nfr = dataset.nframes
    spans = [(a, min(block, nfr - a)) for a in range(0, nfr, block)]
    done = set(record.done) if resume else set()
    complete = []
    todo = []
    for a, n in spans:
        p = block_path(nexus, a)
        if resume and os.path.isfile(p) and all(i in done for i in range(a, a + n)):
            complete.append((a, n, p))
        else:
            todo.append((a, n, p))
    record.done = {i for a, n, _p in complete for i in range(a, a + n)}
    record.save()
    if progress:
        progress(len(record.done), nfr)
    t0 = time.perf_counter()
    drive = 0.0
    client = getattr(executor, "client", None)
    previews = {}
    if client is None:           # in-process: the same tasks, one after the other
        results = (render_block(dataset, a, n, p, compression, outputs_spec, outs,
                                info.command) for a, n, p in todo)
    else:
        from distributed import as_completed
        ds = copy.copy(dataset)
        ds._renderer = None
        if executor.threads_per_task is not None:
            ds.threads = executor.threads_per_task
        remote = client.scatter(ds, broadcast=True, hash=False)
        futs = [client.submit(render_block, remote, a, n, p, compression, list(outputs_spec),
                              outs, tuple(info.command), key=f"nbsim-block-{a}-{os.getpid()}",
                              retries=executor.retries, pure=False)
                for a, n, p in todo]
        results = (f.result() for f in as_completed(futs))
    count = 0
    try:
        for a, n, p, first_data in results:
            t1 = time.perf_counter()
            record.mark_done(range(a, a + n))
            complete.append((a, n, p))
            if a in set(keep_previews):
                previews[a] = first_data
            drive += time.perf_counter() - t1
            count += n
            if progress:
                progress(len(record.done), nfr)
    except BaseException:
        if client is not None:
            for f in futs:
                f.cancel()
        raise
    t1 = time.perf_counter()
    write_master_vds(nexus, info, sorted(complete))
    return JobResult(nframes=nfr, rendered=count, kept=nfr - count,
                     seconds=time.perf_counter() - t0, driver_seconds=drive,
                     previews=previews, finish_seconds=time.perf_counter() - t1)

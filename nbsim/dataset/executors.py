"""Where frames are rendered: in this process (all cores on each frame) or on Dask.

An executor turns a list of frame indices into their :class:`FrameImage`\\ s *in that
order* (the driver writes them as they come).  :class:`InProcess` renders one frame at
a time.  :class:`DaskExecutor` submits one task per frame to a Dask cluster, keeps a
bounded window of frames in flight (memory: about two frames per worker) and hands
them back in frame order; a frame whose worker dies is recomputed elsewhere (Dask
reschedules it; ``retries`` covers task errors).  Dask is imported only here, lazily
(extra ``distributed``).
"""
from __future__ import annotations

import copy
import os
from typing import Iterable, Iterator, Optional


from .render import FrameImage

__all__ = ["InProcess", "DaskExecutor", "require_dask", "DaskMissing"]


class DaskMissing(RuntimeError):
    """Dask distributed is not installed."""


def require_dask(flag: str):
    try:
        import dask  # noqa: F401
        import distributed
    except ImportError:
        raise DaskMissing(f"{flag} needs Dask: pip install -e \".[distributed]\"") from None
    return distributed


class InProcess:
    """Render in this process, one frame after the other, on all cores."""
    workers = 0

    def results(self, dataset, indices: Iterable[int],
                need_image: bool = True) -> Iterator[FrameImage]:
        for i in indices:
            yield dataset.render(i)

    def close(self):
        pass


_GPU_CHOSEN = False


def assign_gpu(dataset) -> None:
    """With ``-device cuda|auto`` on a Dask worker: use GPU ``worker name mod GPUs`` (a
    LocalCluster names its workers 0..N-1), once per worker process, before the first
    CUDA context.  Workers started one per GPU (``CUDA_VISIBLE_DEVICES``, dask-cuda)
    see one GPU and keep it."""
    global _GPU_CHOSEN
    if _GPU_CHOSEN or dataset.config.device not in ("cuda", "auto"):
        return
    _GPU_CHOSEN = True
    try:
        import zlib

        from distributed import get_worker
        from numba import cuda
        name = get_worker().name
        k = int(name) if str(name).isdigit() else zlib.crc32(str(name).encode())
        n = len(cuda.gpus)
        if n > 1:
            cuda.select_device(k % n)
    except Exception:      # noqa: BLE001 - no worker / no GPU: the renderer decides
        pass


def _render_task(dataset, index: int, need_image: bool = True) -> FrameImage:
    """A Dask task: one frame, shipped back as float32 (what every output uses) and the
    counts; without ``need_image`` (outputs that take only the counts) just the counts,
    half the bytes through the driver."""
    assign_gpu(dataset)
    f = dataset.render(index)
    keep = need_image or f.counts is None
    return FrameImage(index=f.index, image=f.image32 if keep else None, counts=f.counts,
                      noise_pixels=f.noise_pixels, truth=f.truth, labels=f.labels,
                      bragg_fraction=f.bragg_fraction)


class DaskExecutor:
    """Frames on a Dask cluster.  ``client``: a ``distributed.Client``;
    ``threads_per_task``: Numba threads each frame uses on its worker."""

    def __init__(self, client, *, cluster=None, threads_per_task: Optional[int] = None,
                 window: Optional[int] = None, retries: int = 3):
        self.client = client
        self.cluster = cluster
        self.threads_per_task = threads_per_task
        self.retries = retries
        nworkers = max(1, len(client.scheduler_info().get("workers", {})))
        self.workers = nworkers
        self.window = window or max(2, 2 * nworkers)

    @classmethod
    def local(cls, n_workers: int, threads_total: Optional[int] = None, **kw):
        """Start a LocalCluster of ``n_workers`` processes, one task at a time each, and
        ``threads_total // n_workers`` Numba threads per frame so the cores are not
        oversubscribed."""
        distributed = require_dask("-workers")
        cores = threads_total or os.cpu_count() or 1
        per = max(1, cores // n_workers)
        cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                           processes=True, dashboard_address=None,
                                           silence_logs=50)
        client = distributed.Client(cluster)
        return cls(client, cluster=cluster, threads_per_task=per, **kw)

    @classmethod
    def connect(cls, address: str, threads_per_task: Optional[int] = None, **kw):
        """Use a running cluster (dask-jobqueue, dask-mpi, ``dask scheduler``...)."""
        distributed = require_dask("-scheduler")
        client = distributed.Client(address, timeout=10)
        return cls(client, threads_per_task=threads_per_task, **kw)

    def _remote_dataset(self, dataset):
        ds = copy.copy(dataset)
        ds._renderer = None
        if self.threads_per_task is not None:
            ds.threads = self.threads_per_task
        return self.client.scatter(ds, broadcast=True, hash=False)

    def results(self, dataset, indices: Iterable[int],
                need_image: bool = True) -> Iterator[FrameImage]:
        order = list(indices)
        if not order:
            return
        remote = self._remote_dataset(dataset)
        token = f"{os.getpid()}-{id(dataset):x}"
        futures = {}
        nxt = 0

        def submit_more():
            nonlocal nxt
            while nxt < len(order) and len(futures) < self.window:
                i = order[nxt]
                futures[i] = self.client.submit(_render_task, remote, i, need_image,
                                                key=f"nbsim-frame-{token}-{i}",
                                                retries=self.retries, pure=False)
                nxt += 1

        try:
            submit_more()
            for i in order:
                fut = futures.pop(i)
                result = fut.result()
                fut.release()
                submit_more()
                yield result
        finally:
            for fut in futures.values():
                fut.cancel()

    def close(self):
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()

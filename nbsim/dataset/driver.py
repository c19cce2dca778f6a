"""The dataset driver: render the frames not done yet and feed every sink in frame order.

Order of events per frame ``i``: the executor returns the frame; every output's sink
writes it (durable in the OS when ``write`` returns); only then is ``i`` added to the job
record (:mod:`.manifest`).  An exception or Ctrl-C aborts the sinks (each leaves what is
complete resumable) and propagates; the record already names exactly the frames on disk.
On resume the frames done are those the record lists *and* every sink reports complete.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

from .manifest import JobRecord
from .outputs import Output

__all__ = ["run_frames", "JobResult", "RECORD_INTERVAL_S"]

#: the job record is rewritten at most this often (seconds) while frames stream
RECORD_INTERVAL_S = 0.5


@dataclass
class JobResult:
    nframes: int
    rendered: int                  # frames rendered by this run
    kept: int                      # frames already complete (resume)
    seconds: float                 # wall time of the frame loop
    driver_seconds: float          # time the driver spent writing and recording
    previews: dict = field(default_factory=dict)   # index -> detector data (for -png)
    finish_seconds: float = 0.0    # once at the end (the VDS master of worker blocks)


def run_frames(dataset, outputs: Sequence[Output], record: JobRecord, executor, info, *,
               resume: bool = False, progress: Optional[Callable[[int, int], None]] = None,
               keep_previews: Sequence[int] = ()) -> JobResult:
    n = dataset.nframes
    done = set(record.done) if resume else set()
    opened: List[Output] = []
    try:
        for o in outputs:
            have = o.sink.open(info, resume=resume)
            opened.append(o)
            if resume:
                done &= set(have)
        record.done = set(done)
        record.save()
        todo = [i for i in range(n) if i not in done]
        keep = set(keep_previews)
        previews = {}
        t0 = time.perf_counter()
        drive = 0.0
        count = 0
        if progress:
            progress(len(done), n)
        # previews take the counts when there are counts, like the NeXus data
        need_image = not dataset.noise or any(o.needs_image for o in outputs)
        for frame in executor.results(dataset, todo, need_image=need_image):
            t1 = time.perf_counter()
            for o in outputs:
                o.sink.write(frame.index, o.product(frame))
            record.mark_done([frame.index], min_interval=RECORD_INTERVAL_S)
            if frame.index in keep:
                previews[frame.index] = (frame.counts if frame.counts is not None
                                          else frame.image32)
            drive += time.perf_counter() - t1
            count += 1
            if progress:
                progress(len(record.done), n)
        for o in outputs:
            o.sink.close()
        record.flush()
        return JobResult(nframes=n, rendered=count, kept=len(done),
                         seconds=time.perf_counter() - t0, driver_seconds=drive,
                         previews=previews)
    except BaseException:
        record.flush()               # only frames every sink has written are in it
        for o in opened:
            try:
                o.sink.abort()
            except Exception:      # noqa: BLE001 - the first error is the one to report
                pass
        raise

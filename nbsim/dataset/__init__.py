"""Datasets: rotation scans and serial stills as one job (docs/datasets.md).

* :mod:`.frames` -- what the frames are (:class:`RotationScan`, :class:`Stills`);
* :mod:`.seeds` -- the per-frame seed rule;
* :mod:`.render` -- per-frame plans from the frame-independent parts built once;
* :mod:`.noise` -- per-frame Poisson counts (C's ran1 stream in c-parity mode, a
  parallel counter-based generator otherwise);
* :mod:`.effects` -- the detector suite per frame (-stol background once, noisify chain
  with the frame's noise seed);
* :mod:`.job` -- :class:`Dataset` (Config + frames + seeds; frames as a stream);
* :mod:`.outputs` -- per-frame file sinks (SMV, float, PGM templates) and what each
  output takes from a frame;
* :mod:`.manifest` -- the job record that ``-resume`` continues from;
* :mod:`.executors` -- where frames are rendered (in-process, Dask);
* :mod:`.driver` -- renders the frames that are not done and feeds the sinks in order.
"""
from .effects import FrameEffects
from .frames import FrameSpec, RotationScan, Stills, read_orientations
from .job import Dataset
from .render import FrameImage, FrameRenderer, frame_config
from .seeds import frame_seed

__all__ = ["Dataset", "RotationScan", "Stills", "FrameSpec", "FrameImage", "FrameRenderer",
           "frame_config", "frame_seed", "read_orientations", "FrameEffects"]

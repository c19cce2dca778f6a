"""Streaming frame sinks: the one interface every dataset output implements.

A dataset (``nbsim.dataset``) renders frames one after another and hands each finished
frame to its sinks *in frame order*; a sink never holds more than the frame it is
writing.  Sinks know the file format and nothing about physics or rendering.

Life cycle, driven by the dataset driver::

    sink = NexusSink(path, ...)          # constructing a sink touches no file
    done = sink.open(info, resume=False) # creates / reopens the file(s); returns the set of
                                         # frame indices already complete on disk (resume)
    sink.write(i, data)                  # i: 0-based frame index; data: the frame's array
    ...                                  # durable when write() returns (flushed to the OS)
    sink.close()                         # finalises; on error/interrupt: sink.abort()

``abort()`` leaves whatever is complete in a state that ``open(info, resume=True)`` can
continue from (NeXus: the file stays, frames not written are recorded as missing; per-frame
files: a frame file exists only once complete, written through ``io._atomic``).

Image model (:mod:`nbsim.image_model`): a frame is ``(panels, slow, fast)`` (a single
panel is one panel) up to the sinks.  NeXus and CBF sinks take that array and lay it
out themselves (stacked rows + one module per panel; a preset's tiled frame or one file
per panel); the SMV / float / PGM template sinks receive the 2-D file array the dataset's
products made with :class:`nbsim.image_model.FileLayout`.

Frame numbers in file names start at 1 (``img_#####.cbf`` -> ``img_00001.cbf`` for index 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Protocol, Sequence, Set, Tuple

import numpy as np


@dataclass(frozen=True)
class FrameScan:
    """Goniometer range of one rotation frame, in degrees (nanoBragg's -phi / -osc)."""
    phi_start_deg: float
    osc_deg: float


@dataclass
class DatasetInfo:
    """What a sink needs to know about the whole dataset before the first frame.

    ``plan`` is the first frame's :class:`nbsim.plan.Plan`: its ``detector``
    (:class:`nbsim.geometry.detector.DetectorGeometry`, nanoBragg's lab frame, metres),
    ``sources`` (wavelengths in m) and ``config`` (beam, crystal, exposure) are the same for
    every frame; only the goniometer angle (rotation) or the orientation (stills) changes.
    ``scans`` holds one :class:`FrameScan` per frame for a rotation series and is ``None``
    for stills (no goniometer).  ``dtype`` is the pixel type the frames arrive in
    (``"int32"`` for counts, ``"float32"`` for photons).  ``mask`` is True where a pixel is
    bad (nonzero in NeXus ``pixel_mask``).  ``command`` is the command line that made the
    dataset (stored in the file so ``-resume`` can refuse a mismatch).
    """
    plan: object
    nframes: int
    scans: Optional[Sequence[FrameScan]]
    dtype: str = "int32"
    mask: Optional[np.ndarray] = None
    saturation: Optional[float] = None
    exposure_s: float = 1.0
    command: Tuple[str, ...] = ()
    #: NXdetector fields of a detector model (docs/effects.md): count_time, frame_time
    #: (s), threshold_energy (eV); absent: the exposure, no threshold
    detector_fields: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    # the rendered crystal, rows (a, b, c) in m (nanoBragg lab): one at phi = 0 for a
    # rotation series, one per frame for stills (NeXus NXsample, -write_expt); None:
    # frame 0's plan
    crystals: Optional[Sequence[np.ndarray]] = None
    # per-frame spectra (nframes, channels) of equal-weight channels, m (-sase_bandwidth,
    # -spectrum; nbsim.geometry.spectrum); None: the plan's sources for every frame
    spectra: Optional[np.ndarray] = None
    # radiation damage per frame (nbsim.dataset.damage): {"dose": MGy, "b_factor_increase":
    # A^2, "damaged_fraction": (nframes,) arrays, "attrs": the model's constants}
    damage: Optional[dict] = None
    #: crystals in the beam per still (-lattices): ``crystals`` then holds one per
    #: experiment, frame-major (frame i, lattice k at i * lattices + k)
    lattices: int = 1
    #: the per-frame parameter record (``frame.parameters``): name -> array whose first
    #: axis is the frame (NeXus /entry/nbsim/frame_parameters), and its units
    frame_parameters: Dict[str, np.ndarray] = field(default_factory=dict)
    frame_parameter_units: Dict[str, str] = field(default_factory=dict)
    #: frame i's plan (lattice 0) where the detector or beam changes per frame (-vary),
    #: else None (``plan`` is every frame's); use :meth:`plan_of`
    frame_plan: Optional[Callable[[int], object]] = None

    def plan_of(self, index: int):
        """The plan whose detector and beam frame ``index`` was rendered with."""
        return self.plan if self.frame_plan is None else self.frame_plan(int(index))


class FrameSink(Protocol):
    """A streaming output of a dataset (see the module docstring for the life cycle)."""

    def open(self, info: DatasetInfo, resume: bool = False) -> Set[int]:
        ...

    def write(self, index: int, data: np.ndarray) -> None:
        ...

    def close(self) -> None:
        ...

    def abort(self) -> None:
        ...


def frame_path(template: str, index: int) -> str:
    """The file name of frame ``index`` (0-based) under a ``#`` template: the last run of
    ``#`` becomes the 1-based frame number, zero-padded to the run's length."""
    end = template.rfind("#")
    if end < 0:
        raise ValueError(f"template {template!r} has no '#'")
    start = end
    while start > 0 and template[start - 1] == "#":
        start -= 1
    width = end - start + 1
    return f"{template[:start]}{index + 1:0{width}d}{template[end + 1:]}"

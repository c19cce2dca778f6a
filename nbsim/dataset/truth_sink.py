"""``-truth FILE.refl`` for datasets: every frame's reflection truth in one DIALS
reflection file, and its label / Bragg-fraction images (docs/truth.md).

Per frame the sink writes ``FILE.refl.parts/frame_NNNNNN.npz`` atomically (the frame's
table, labels and Bragg fraction): a part exists only once complete, which is what
``open(resume=True)`` reports.  ``close`` joins the parts in frame order, fills the
rotation partialities, writes ``FILE.refl`` (one experiment for a sweep, one per still in
frame order, with ``-write_expt``'s identifiers:
:func:`nbsim.io.dials_expt.experiment_identifier`) and the
images, then removes the parts.  The images go into the NeXus file of ``-nexus``
(``/entry/truth/labels`` int32 and ``/entry/truth/bragg_fraction`` float32, shaped
like ``/entry/data/data``: (frames, panels x slow, fast), one chunk per frame), else
into ``FILE_labels.h5`` (``/labels``, ``/bragg_fraction``, same shapes).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional, Set

import numpy as np

from ..truth import COLUMNS, concat_tables, sweep_partiality

#: per-row columns a frame's table may add: "dose" (MGy, the frame's radiation dose,
#: nbsim.dataset.damage)
EXTRA_COLUMNS = ("dose",)

__all__ = ["TruthSink", "labels_path"]


def labels_path(refl_path: str) -> str:
    """Where the label images go without NeXus: FILE_labels.h5 beside FILE.refl."""
    stem, _ = os.path.splitext(str(refl_path))
    return stem + "_labels.h5"


class TruthSink:
    """A frame sink (``nbsim.io.sinks`` protocol) for the frames' truth."""

    def __init__(self, path: str, rotation: bool, nexus: Optional[str] = None,
                 identifier_tag: Optional[str] = None, lattices: int = 1):
        self.path = str(path)
        self.rotation = bool(rotation)
        self.nexus = nexus
        self.lattices = int(lattices)             # -lattices: experiments per still
        self.identifier_tag = identifier_tag     # the job's tag (its seed), as -write_expt's
        self.parts = Path(self.path + ".parts")
        self.nframes = 0

    def _part(self, index: int) -> Path:
        return self.parts / f"frame_{index:06d}.npz"

    def open(self, info, resume: bool = False) -> Set[int]:
        self.nframes = int(info.nframes)
        if not resume and self.parts.exists():
            shutil.rmtree(self.parts)
        self.parts.mkdir(exist_ok=True)
        if not resume:
            return set()
        return {i for i in range(self.nframes) if self._part(i).is_file()}

    def write(self, index: int, frame) -> None:
        arrays = {f"col:{c}": frame.truth[c] for c in COLUMNS + EXTRA_COLUMNS
                  if c in frame.truth}
        arrays["labels"] = frame.labels
        arrays["bragg_fraction"] = np.asarray(frame.bragg_fraction, dtype=np.float32)
        target = self._part(index)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}.npz")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)

    def _load(self, index: int):
        with np.load(self._part(index)) as z:
            table = {c: z[f"col:{c}"] for c in COLUMNS + EXTRA_COLUMNS
                     if f"col:{c}" in z.files}
            return table, z["labels"], z["bragg_fraction"]

    def close(self) -> None:
        from ..io.refl import write_refl
        tables = []
        for i in range(self.nframes):
            t, _, _ = self._load(i)
            tables.append(t)
        table = concat_tables(tables)
        for c in EXTRA_COLUMNS:
            if all(c in t for t in tables):
                table[c] = np.concatenate([t[c] for t in tables])
        from ..io.dials_expt import experiment_identifier
        if self.rotation:
            table["partiality"] = sweep_partiality(table)
            ids = {0: experiment_identifier(self.identifier_tag, 0)}
        else:
            ids = {e: experiment_identifier(self.identifier_tag, e)
                   for e in range(self.nframes * self.lattices)}
        write_refl(self.path, table, ids)
        self._write_images()
        shutil.rmtree(self.parts, ignore_errors=True)

    def _write_images(self) -> None:
        import h5py
        _, lab0, _ = self._load(0)
        shape = (self.nframes, lab0.shape[0] * lab0.shape[1], lab0.shape[2])
        chunks = (1,) + shape[1:]
        if self.nexus is not None:
            f = h5py.File(self.nexus, "r+")
            if "entry/truth" in f:
                del f["entry/truth"]
            g = f["entry"].create_group("truth")
            g.attrs["NX_class"] = "NXcollection"
            target, tmp = None, None
        else:
            target = labels_path(self.path)
            tmp = f"{target}.tmp{os.getpid()}"
            f = h5py.File(tmp, "w")
            g = f
        try:
            lab = g.create_dataset("labels", shape=shape, dtype=np.int32, chunks=chunks,
                                   fillvalue=-1, compression="gzip")
            frac = g.create_dataset("bragg_fraction", shape=shape, dtype=np.float32,
                                    chunks=chunks, compression="gzip")
            lab.attrs["description"] = ("row of -truth's reflection table (within the "
                                        "frame's rows) giving most photons; -1: none")
            frac.attrs["description"] = "Bragg share of the pixel's expected photons"
            first_row = np.zeros(self.nframes, dtype=np.int64)
            row = 0
            for i in range(self.nframes):
                table, labels, bragg_fraction = self._load(i)
                lab[i] = labels.reshape(shape[1:])
                frac[i] = bragg_fraction.reshape(shape[1:])
                first_row[i] = row
                row += int(table["id"].shape[0])
            fr = g.create_dataset("first_row", data=first_row)
            fr.attrs["description"] = ("row of FILE.refl holding each frame's row 0: "
                                       "label L of frame i is row first_row[i] + L")
        finally:
            f.close()
        if tmp is not None:
            os.replace(tmp, target)

    def abort(self) -> None:
        """Leave the complete parts for ``-resume``."""

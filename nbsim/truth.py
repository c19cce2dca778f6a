"""Ground truth of a rendered frame: the reflections it holds and which pixel belongs to
which (docs/truth.md).

The per-pixel body (``kernels/pixel.py``, ``KernelOptions.truth``) writes, per rendered
pixel, up to K slots of (packed nearest lattice point, photons, photons x rotation
fraction) with every factor of the pixel's value applied.  Pixels where more than K
lattice points contributed are rendered again with more slots until none overflows, so
every sum here is exact.  The host side (this module) turns the slots into the frame's
reflection table and its label and Bragg images with compiled passes
(:mod:`nbsim.truth_kernels`, parallel over fixed chunks of slot rows: the same bits
whatever the thread count).

Columns of a frame's table (one row per (miller_index, panel)), as DIALS names them:

=======================  ===========================================================
``miller_index``         (n, 3) int32: the nearest lattice point (h0, k0, l0) of the
                         sub-paths, the P1 index as rendered
``id``                   int32: the experiment (0 for a single image and a sweep; the
                         frame's index for stills)
``panel``                uint64: the detector panel
``intensity.true.value`` float64 photons before noise, summed over every pixel,
                         sub-pixel, layer, source, phi step and mosaic domain
``xyzcal.px``            (n, 3): photon-weighted centroid; x (fast), y (slow) in pixels
                         of the panel (pixel centre at +0.5), z in images (rotation:
                         frame index + photon-weighted rotation fraction; stills 0)
``xyzcal.mm``            (n, 3): x, y times the panel's pixel size (mm), z the rotation
                         angle (rad; stills 0)
``d``                    float64 resolution (Angstrom) of the lattice point
``partiality``           float64: rotation sweeps: share of the reflection's photons
                         over the frames of the sweep (filled by the sweep writer;
                         NaN in a single frame's table); stills: NaN (not computed)
``num_pixels.true``      int32: pixels where the reflection gives >= half the Bragg
                         photons of the pixel
=======================  ===========================================================
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from .kernels.bundle import EMPTY_KEY, HKL_BITS, HKL_OFFSET, TruthSlots, truth_slots

__all__ = ["NSLOTS", "FrameTruth", "cell_phase", "collect", "unpack_hkl", "COLUMNS"]

#: reflection slots per pixel in the first pass
NSLOTS = 4

COLUMNS = ("miller_index", "id", "panel", "intensity.true.value", "xyzcal.px",
           "xyzcal.mm", "d", "partiality", "num_pixels.true")


@dataclass
class FrameTruth:
    """The truth of one frame.  ``table``: column name -> NumPy array (one row per
    reflection and panel, see the module docstring); ``labels``: (panels, slow, fast)
    int32 row of the reflection giving most photons in the pixel, -1 for none;
    ``bragg``: (panels, slow, fast) float64 Bragg photons of the pixel (the sum of its
    reflections' shares)."""
    table: Dict[str, np.ndarray]
    labels: np.ndarray
    bragg: np.ndarray

    def bragg_fraction(self, image: np.ndarray) -> np.ndarray:
        """(panels, slow, fast) float64: the Bragg photons over the pixel's expected
        photons ``image`` (the float64 render plus any -stol background); 0 where the
        image is 0."""
        img = np.asarray(image, dtype=np.float64).reshape(self.bragg.shape)
        out = np.zeros(self.bragg.shape)
        np.divide(self.bragg, img, out=out, where=img != 0.0)
        return out

    @property
    def nrows(self) -> int:
        return int(self.table["id"].shape[0])


def cell_phase(plan) -> np.ndarray:
    """(ncell,) rotation fraction of each (phi step, mosaic domain) cell within the frame:
    phi step index x phistep / osc (the step's angle from the frame's start, nanoBragg
    samples phi0 + i * phistep); zeros without rotation (stills)."""
    cr = plan.crystal
    ndom = int(cr.mosaic_domains)
    ncell = int(plan.cells.shape[1])
    osc = float(cr.osc)
    step = np.arange(ncell) // ndom
    if osc == 0.0 or not np.isfinite(osc):
        return np.zeros(ncell)
    return step * (float(cr.phistep) / osc)


def unpack_hkl(key: np.ndarray) -> np.ndarray:
    """(n, 3) int32 Miller indices of packed slot keys."""
    key = np.asarray(key, dtype=np.int64)
    m = np.int64((1 << HKL_BITS) - 1)
    h = (key >> np.int64(2 * HKL_BITS)) & m
    k = (key >> np.int64(HKL_BITS)) & m
    l_ = key & m
    return (np.stack([h, k, l_], axis=1) - HKL_OFFSET).astype(np.int32)


def empty_table() -> Dict[str, np.ndarray]:
    return {"miller_index": np.zeros((0, 3), np.int32), "id": np.zeros(0, np.int32),
            "panel": np.zeros(0, np.uint64), "intensity.true.value": np.zeros(0),
            "xyzcal.px": np.zeros((0, 3)), "xyzcal.mm": np.zeros((0, 3)),
            "d": np.zeros(0), "partiality": np.zeros(0),
            "num_pixels.true": np.zeros(0, np.int32)}


def concat_tables(tables) -> Dict[str, np.ndarray]:
    tables = list(tables)
    if not tables:
        return empty_table()
    return {c: np.concatenate([t[c] for t in tables]) for c in COLUMNS}


def complete_slots(sim, opts, slots: TruthSlots, carry_pixel: int, switch_pixel: int,
                   no_switch: int):
    """Make the slots of a render exact: the pixels that overflowed are rendered again
    (their slots only) with 4x the slots until none overflows.  Returns the blocks of
    exact slots, ``[(pixels, key, photons, phase), ...]``: raster indices (n,) and
    (n, K) slot arrays; the first block is ``slots`` (all of ``plan.pixel_index``) with
    the overflowed rows emptied, the others hold those pixels with more slots."""
    p = sim.plan
    over = np.flatnonzero(slots.overflow)
    if over.size:
        slots.key[over] = EMPTY_KEY
        slots.photons[over] = 0.0
        slots.phase[over] = 0.0
    blocks = [(p.pixel_index, slots.key, slots.photons, slots.phase)]
    nslots = slots.key.shape[1]
    ropts = opts._replace(record_oor=False, trace=False, truth=True)
    if switch_pixel != no_switch:
        # C's interpolation switch happened: every pixel with it (pixels before the
        # switch pixel had no out-of-range evaluation, so they render the same)
        ropts = ropts._replace(interp=2)
    dummy_trace = np.zeros((1, 32))
    oor = np.zeros(1, dtype=np.uint8)
    while over.size:
        nslots *= 4
        sub = truth_slots(over.size, nslots, slots.cell_phase)
        pixels = np.ascontiguousarray(p.pixel_index[over])
        scratch = np.zeros(p.detector.fpixels * p.detector.spixels)
        sim._launch(ropts, pixels, scratch, carry_pixel, switch_pixel, oor, dummy_trace, sub)
        again = sub.overflow != 0
        sub.key[again] = EMPTY_KEY
        blocks.append((pixels, sub.key, sub.photons, sub.phase))
        over = over[again]
    return blocks


#: the largest (panels x h x k x l) box of lattice points grouped with a lookup table;
#: larger boxes are grouped by sorting
DENSE_GROUP_LIMIT = 1 << 24


def collect(plan, blocks, *, experiment_id: int = 0, frame_z0: float = 0.0,
            rotation: Optional[bool] = None) -> FrameTruth:
    """The frame's :class:`FrameTruth` from the exact slot blocks of
    :func:`complete_slots` (every rendered pixel in exactly one block).

    experiment_id: the ``id`` column; frame_z0: the frame's image number in its sweep
    (xyzcal.px z = frame_z0 + fraction; 0 for stills); rotation: whether the frame
    rotates (default: the plan's osc is nonzero)."""
    from . import truth_kernels as tk
    det = plan.detector
    fp = int(det.fpixels)
    rows_per_panel = int(plan.panel_rows)
    npanels = int(det.spixels) // rows_per_panel
    shape = (npanels, rows_per_panel, fp)
    npix_all = npanels * rows_per_panel * fp
    if rotation is None:
        rotation = float(plan.crystal.osc) != 0.0
    labels = np.full(npix_all, -1, dtype=np.int32)
    bragg = np.zeros(npix_all)
    lo = np.full(3, np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.full(3, np.iinfo(np.int64).min, dtype=np.int64)
    for _pix, key, photons, _phase in blocks:
        tk.hkl_bounds(key, photons, lo, hi, tk.CHUNK_ROWS)
    if lo[0] > hi[0]:
        return FrameTruth(table=empty_table(), labels=labels.reshape(shape),
                          bragg=bragg.reshape(shape))
    ext = hi - lo + 1
    volume = npanels * int(ext[0]) * int(ext[1]) * int(ext[2])
    if volume <= DENSE_GROUP_LIMIT:
        # rows: the occupied cells of the (panel, h, k, l) box, in that order
        present = np.zeros(volume, dtype=np.uint8)
        for pix, key, photons, _phase in blocks:
            tk.mark_cells(key, photons, pix, fp, rows_per_panel, lo, ext, present,
                          tk.CHUNK_ROWS)
        cells = np.flatnonzero(present)
        table = np.zeros(volume, dtype=np.int32)
        table[cells] = np.arange(cells.size, dtype=np.int32)
        del present
    else:
        cells = tk.sorted_cells(blocks, fp, rows_per_panel, lo, ext)
        table = np.zeros(0, dtype=np.int32)
    nrows = cells.size
    sums = np.zeros((4, nrows))           # photons, x, y, rotation fraction (weighted)
    npx = np.zeros(nrows, dtype=np.int32)
    for pix, key, photons, phase in blocks:
        tk.accumulate(key, photons, phase, pix, fp, rows_per_panel, lo, ext, table, cells,
                      sums, npx, labels, bragg, tk.CHUNK_ROWS)
    intensity = sums[0]
    x = sums[1] / intensity
    y = sums[2] / intensity
    frac = sums[3] / intensity
    # the rows' (panel, h, k, l) from their cells
    c = cells.astype(np.int64)
    l_ = c % ext[2] + lo[2]
    c //= ext[2]
    k = c % ext[1] + lo[1]
    c //= ext[1]
    h = c % ext[0] + lo[0]
    row_panel = c // ext[0]
    hkl = np.stack([h, k, l_], axis=1).astype(np.int32)

    ast = np.asarray(plan.ast, dtype=np.float64).reshape(3, 3)       # rows a*, b*, c* (1/A)
    q = hkl.astype(np.float64) @ ast
    with np.errstate(divide="ignore"):
        d = 1.0 / np.sqrt(np.einsum("ij,ij->i", q, q))
    pixel_mm = plan.panel_table()[row_panel, 20] * 1e3
    osc = float(plan.crystal.osc)
    if rotation:
        z_px = frame_z0 + frac
        z_mm = float(plan.crystal.phi0) + frac * osc
    else:
        z_px = np.zeros(nrows)
        z_mm = np.zeros(nrows)
    table_cols = {
        "miller_index": hkl,
        "id": np.full(nrows, int(experiment_id), dtype=np.int32),
        "panel": row_panel.astype(np.uint64),
        "intensity.true.value": intensity,
        "xyzcal.px": np.stack([x, y, z_px], axis=1),
        "xyzcal.mm": np.stack([x * pixel_mm, y * pixel_mm, z_mm], axis=1),
        "d": d,
        "partiality": np.full(nrows, np.nan),
        "num_pixels.true": npx,
    }
    return FrameTruth(table=table_cols, labels=labels.reshape(shape),
                      bragg=bragg.reshape(shape))


def sweep_partiality(table: Dict[str, np.ndarray]) -> np.ndarray:
    """Per row of a rotation sweep's table (all frames, all panels): the row's photons
    over the photons of its Miller index summed over every row of the sweep."""
    hkl = np.ascontiguousarray(table["miller_index"], dtype=np.int32)
    if hkl.shape[0] == 0:
        return np.zeros(0)
    _, inv = np.unique(hkl, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    total = np.bincount(inv, weights=table["intensity.true.value"])
    return table["intensity.true.value"] / total[inv]

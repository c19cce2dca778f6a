"""Ground truth of a rendered frame: the reflections it holds and which pixel belongs to
which (docs/truth.md).

The per-pixel body (``kernels/pixel.py``, ``KernelOptions.truth``) writes, per rendered
pixel, up to K slots of (packed nearest lattice point, photons, photons x rotation
fraction) with every factor of the pixel's value applied.  Pixels where more than K
lattice points contributed are rendered again with more slots until none overflows, so
every sum here is exact.  The host side (this module) turns the slots into the frame's
reflection table and its label and Bragg images with NumPy only (unique keys, bincount).

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


def _entries(slots: TruthSlots, rows: Optional[np.ndarray] = None):
    """The filled slots as a long table (row, key, photons, phase); ``rows`` maps slot
    rows to positions in the pixel index (None: the identity)."""
    filled = slots.key != EMPTY_KEY
    r, j = np.nonzero(filled)
    pos = r if rows is None else rows[r]
    return pos, slots.key[r, j], slots.photons[r, j], slots.phase[r, j]


def complete_slots(sim, opts, slots: TruthSlots, carry_pixel: int, switch_pixel: int,
                   no_switch: int):
    """Make the slots of a render exact: the pixels that overflowed are rendered again
    (their slots only) with 4x the slots until none overflows.  Returns ``(slots,
    extra)``: ``slots`` with the overflowed rows emptied, and ``extra`` the long table
    (position in ``plan.pixel_index``, key, photons, phase) of those pixels."""
    p = sim.plan
    over = np.flatnonzero(slots.overflow)
    parts = []
    if over.size:
        slots.key[over] = EMPTY_KEY
        slots.photons[over] = 0.0
        slots.phase[over] = 0.0
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
        scratch = np.zeros(p.detector.fpixels * p.detector.spixels)
        sim._launch(ropts, np.ascontiguousarray(p.pixel_index[over]), scratch, carry_pixel,
                    switch_pixel, oor, dummy_trace, sub)
        again = sub.overflow != 0
        pos, k, ph, fz = _entries(sub, over)
        ok = ~again[np.searchsorted(over, pos)]
        parts.append((pos[ok], k[ok], ph[ok], fz[ok]))
        over = over[again]
    if parts:
        extra = tuple(np.concatenate([pt[i] for pt in parts]) for i in range(4))
    else:
        extra = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    return slots, extra


def collect(plan, slots: TruthSlots, extra, *, experiment_id: int = 0,
            frame_z0: float = 0.0, rotation: Optional[bool] = None) -> FrameTruth:
    """The frame's :class:`FrameTruth` from exact slots (:func:`complete_slots`: the
    (n, K) slots of ``plan.pixel_index`` and the long table ``extra`` of the pixels that
    needed more).

    experiment_id: the ``id`` column; frame_z0: the frame's image number in its sweep
    (xyzcal.px z = frame_z0 + fraction; 0 for stills); rotation: whether the frame
    rotates (default: the plan's osc is nonzero)."""
    det = plan.detector
    fp = int(det.fpixels)
    rows_per_panel = int(plan.panel_rows)
    npanels = int(det.spixels) // rows_per_panel
    shape = (npanels, rows_per_panel, fp)
    npix_all = npanels * rows_per_panel * fp
    if rotation is None:
        rotation = float(plan.crystal.osc) != 0.0
    # the long table: the filled slots (grouped by pixel, in slot order) then the extra
    filled = (slots.key != EMPTY_KEY) & (slots.photons > 0.0)
    nmain = int(np.count_nonzero(filled))
    epos, ekey, eph, efz = extra
    eok = eph > 0.0
    pos = np.concatenate([np.nonzero(filled)[0], epos[eok]])
    key = np.concatenate([slots.key[filled], ekey[eok]])
    photons = np.concatenate([slots.photons[filled], eph[eok]])
    phase = np.concatenate([slots.phase[filled], efz[eok]])
    idx = plan.pixel_index[pos]
    bragg_flat = np.bincount(idx, weights=photons, minlength=npix_all)
    labels = np.full(npix_all, -1, dtype=np.int32)
    if key.size == 0:
        return FrameTruth(table=empty_table(), labels=labels.reshape(shape),
                          bragg=bragg_flat.reshape(shape))
    fast = idx % fp
    srow = idx // fp
    panel = srow // rows_per_panel
    slow = srow - panel * rows_per_panel
    # rows: one per (panel, lattice point), ordered by panel then packed key
    ukey, kinv = np.unique(key, return_inverse=True)
    combined = panel * ukey.size + kinv.reshape(-1)
    urow, row = np.unique(combined, return_inverse=True)
    row = row.reshape(-1)
    nrows = urow.size
    row_panel = urow // ukey.size
    row_key = ukey[urow % ukey.size]

    intensity = np.bincount(row, weights=photons, minlength=nrows)
    x = np.bincount(row, weights=photons * (fast + 0.5), minlength=nrows) / intensity
    y = np.bincount(row, weights=photons * (slow + 0.5), minlength=nrows) / intensity
    frac = np.bincount(row, weights=phase, minlength=nrows) / intensity
    main = photons >= 0.5 * bragg_flat[idx]
    npx = np.bincount(row[main], minlength=nrows).astype(np.int32)

    # the label: the row with most photons in the pixel (the first slot on a tie).
    # Slot pixels: argmax along the slots; pixels of the extra table: a sort of those few
    grid_ph = np.where(filled, slots.photons, -1.0)
    grid_row = np.full(slots.key.shape, -1, dtype=np.int64)
    grid_row[filled] = row[:nmain]
    best = np.argmax(grid_ph, axis=1)
    win_row = grid_row[np.arange(best.size), best]
    lit = win_row >= 0
    labels[plan.pixel_index[lit]] = win_row[lit].astype(np.int32)
    if pos.size > nmain:
        xi = idx[nmain:]
        xr = row[nmain:]
        order = np.lexsort((xr, -photons[nmain:], xi))
        first = np.ones(order.size, dtype=bool)
        first[1:] = xi[order[1:]] != xi[order[:-1]]
        labels[xi[order[first]]] = xr[order[first]].astype(np.int32)

    hkl = unpack_hkl(row_key)
    ast = np.asarray(plan.ast, dtype=np.float64).reshape(3, 3)       # rows a*, b*, c* (1/A)
    q = hkl.astype(np.float64) @ ast
    with np.errstate(divide="ignore"):
        d = 1.0 / np.sqrt(np.einsum("ij,ij->i", q, q))
    pixel_mm = plan.panel_table()[row_panel.astype(np.int64), 20] * 1e3
    osc = float(plan.crystal.osc)
    if rotation:
        z_px = frame_z0 + frac
        z_mm = float(plan.crystal.phi0) + frac * osc
    else:
        z_px = np.zeros(nrows)
        z_mm = np.zeros(nrows)
    table = {
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
    return FrameTruth(table=table, labels=labels.reshape(shape),
                      bragg=bragg_flat.reshape(shape))


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

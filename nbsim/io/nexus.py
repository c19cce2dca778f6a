"""NeXus NXmx writer: a streaming frame sink, block files and a virtual-dataset master.

Layout (what dxtbx's ``FormatNXmx`` / the ``nxmx`` package read; docs/formats.md)::

    /entry                      NXentry   definition="NXmx", start_time, end_time_estimated,
                                          program_name (@configuration = the command line),
                                          @nbsim_command (JSON list of the argv)
      data                      NXdata    @signal="data"
        data                    [frames, slow, fast] int32|float32, chunk = one frame,
                                          Bitshuffle-LZ4 (default) or gzip; a virtual
                                          dataset over block files for write_master_vds
      instrument                NXinstrument  name="nbsim"
        beam                    NXbeam    incident_wavelength (angstrom) [+ _weights],
                                          incident_polarisation_stokes, total_flux
        detector                NXdetector depends_on, sensor_material, sensor_thickness
                                          (1 nm without a sensor model: dxtbx needs > 0),
                                          saturation_value, pixel_mask (bit 8: pixels
                                          not rendered -- outside -roi, zero in -mask,
                                          a panel's mask, the beamstop's shadow --
                                          and ``info.mask``; bit 1 dead and bit 3 hot
                                          -bad_pixels), count_time,
                                          frame_time (a detector model's, else the
                                          exposure), threshold_energy (eV, counting
                                          detector), distance, beam_center_x/y
          transformations       NXtransformations  det_z (translation along the normal)
          module                NXdetector_module  data_origin, data_size ([slow, fast]),
                                          (multi-panel: module00, module01, ... one per
                                          panel over its rows of the stacked panels)
                                          module_offset (in-plane translation to the
                                          pixel-(0,0) corner), fast/slow_pixel_direction
      sample                    NXsample  depends_on -> transformations/omega (rotation,
                                          one value per frame, deg) or "." (stills);
                                          beam = hard link to instrument/beam; unit_cell,
                                          orientation_matrix, ub_matrix (the rendered
                                          crystal, McStas; one per still)
      source                    NXsource
      nbsim                     NXcollection  frame_complete [frames] uint8 (resume record),
                                          @dataset_extra (JSON of ``info.extra``: seeds...)
        frame_parameters        NXcollection  per-frame values (``frame.parameters``, -vary):
                                          one dataset per name, [frames(, lattices)(,
                                          components)], @units; with -vary of a detector
                                          or beam flag also instrument/beam
                                          incident_wavelength [frames] (-vary lambda) and
                                          detector distance, beam_center_x/y [frames]

Every vector is in the McStas frame, converted from nanoBragg's lab frame by the one
rotation of :mod:`nbsim.io.labframe`.  dxtbx takes the panel origin as the translation
of the fast axis' whole ``depends_on`` chain (the pixel-(0,0) *corner*; pixel centres at
+0.5 pixel, as in nanoBragg) and ignores the fast/slow axes' own offsets, so those are 0.

Streaming writes (:class:`NexusSink`) use HDF5's single-writer/multiple-reader mode: every
object exists before the first frame, each frame is written, flushed, and only then is
its ``frame_complete`` flag set and flushed -- a process killed at any point leaves a
readable file in which a frame is marked complete only if its bytes are on disk, and
``open(info, resume=True)`` continues from it.  While a job runs, or after it was killed,
the file opens with ``swmr=True`` only (dxtbx's readers use it; ``dials.import`` of a
killed job's file works once ``-resume`` has completed it).  Frames not yet written read
as the fill value (-1 for int32, NaN for float32).
"""
from __future__ import annotations

import datetime
import json
import os
import shlex
from pathlib import Path
from typing import Optional, Sequence, Set, Tuple

import numpy as np

from .. import __version__ as nbsim_version
from .dials_expt import NO_SENSOR_THICKNESS_MM
from .labframe import beam_centre_px, mcstas_rotation, to_mcstas
from .sinks import DatasetInfo

__all__ = ["NexusSink", "write_block_file", "write_master_vds", "read_nexus_command",
           "read_frames_complete", "COMPRESSIONS"]

COMPRESSIONS = ("bslz4", "gzip", None)
_MISSING_EXTRA = 'h5py and hdf5plugin are needed for NeXus output: pip install -e ".[formats]"'
_LIBVER = ("v110", "latest")      # SWMR needs the HDF5 1.10 file format
_MASK_BIT = 1 << 8                # NeXus pixel_mask bit 8: user-defined mask (nanoBragg -mask)
_DEAD_BIT = 1 << 1                # bit 1: dead (-bad_pixels)
_HOT_BIT = 1 << 3                 # bit 3: over-responding (-bad_pixels' hot pixels)
_FILL = {"int32": -1, "float32": np.nan}


def _h5():
    """h5py and hdf5plugin (which registers the Bitshuffle/LZ4 filter), or a clear error."""
    try:
        import h5py
        import hdf5plugin
    except ImportError as exc:            # pragma: no cover - extras installed in CI
        raise ImportError(_MISSING_EXTRA) from exc
    return h5py, hdf5plugin


def _check_compression(compression):
    if compression not in COMPRESSIONS:
        raise ValueError(f"NeXus compression must be one of bslz4, gzip or none, "
                         f"not {compression!r}")


def _filter_kwargs(compression) -> dict:
    _, hdf5plugin = _h5()
    if compression == "bslz4":
        return dict(hdf5plugin.Bitshuffle(cname="lz4"))
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    return {}


def _dtype_of(info: DatasetInfo) -> np.dtype:
    if info.dtype not in _FILL:
        raise ValueError(f"NeXus frames are int32 or float32, not {info.dtype!r}")
    return np.dtype(info.dtype)


def _frame_as(data, dtype: np.dtype, shape) -> np.ndarray:
    a = np.asarray(data)
    if a.ndim == 3 and a.shape[0] * a.shape[1] == shape[0] and a.shape[2] == shape[1]:
        a = a.reshape(shape)            # (panels, slow, fast): the stacked panels' rows
    if a.shape != tuple(shape):
        raise ValueError(f"frame shape {a.shape} != detector (slow, fast) {tuple(shape)}")
    if a.dtype == dtype:
        return np.ascontiguousarray(a)
    if dtype.kind == "i":
        if a.dtype.kind == "f":
            a = np.rint(np.nan_to_num(a.astype(np.float64), nan=0.0))
        info = np.iinfo(dtype)
        a = np.clip(a, info.min, info.max)      # never wrap around
    return np.ascontiguousarray(a, dtype=dtype)


def _shape(info: DatasetInfo) -> Tuple[int, int]:
    det = info.plan.detector
    return int(det.spixels), int(det.fpixels)


def _field(group, name, value, **attrs):
    """A dataset ``name`` holding ``value`` (scalar, string or array) with attributes."""
    ds = group.create_dataset(name, data=value)
    for k, v in attrs.items():
        ds.attrs[k] = v
    return ds


def _nxgroup(parent, name, nx_class):
    g = parent.create_group(name)
    g.attrs["NX_class"] = nx_class
    return g


def _axis(group, name, value, units, kind, vector, depends_on):
    """An NXtransformations axis: ``kind`` translation or rotation along unit ``vector``
    (McStas), zero offset, ``depends_on`` a path or "."."""
    ds = _field(group, name, value, units=units, transformation_type=kind,
                vector=np.asarray(vector, dtype=np.float64), depends_on=str(depends_on))
    ds.attrs["offset"] = np.zeros(3)
    ds.attrs["offset_units"] = "mm"
    return ds


def _write_module(detector, name, corner, fvec, svec, pixel_size, data_origin, data_size,
                  base_axis, base_position):
    """One NXdetector_module: pixels ``data_origin`` .. ``+data_size`` ([slow, fast]) of
    the data, pixel-(0,0) corner at ``corner`` (m, McStas), axes ``fvec``/``svec``.
    ``base_axis`` is the translation the module hangs on (det_z), which puts the origin
    at ``base_position`` (m); ``module_offset`` adds the rest, so dxtbx's origin (the fast
    axis' whole chain) is ``corner`` -- for a flat model and, one group per module, for a
    hierarchical (multi-module) one alike."""
    module = _nxgroup(detector, name, "NXdetector_module")
    _field(module, "data_origin", np.asarray(data_origin, dtype=np.int64))
    _field(module, "data_size", np.asarray(data_size, dtype=np.int64))
    _field(module, "data_stride", np.array([1, 1], dtype=np.int64))
    rest = np.asarray(corner, dtype=np.float64) - np.asarray(base_position, dtype=np.float64)
    length = float(np.linalg.norm(rest))
    direction = rest / length if length > 0 else np.asarray(fvec, dtype=np.float64)
    off = _axis(module, "module_offset", length * 1e3, "mm", "translation", direction,
                base_axis.name)
    px_mm = pixel_size * 1e3
    _axis(module, "fast_pixel_direction", px_mm, "mm", "translation", fvec, off.name)
    _axis(module, "slow_pixel_direction", px_mm, "mm", "translation", svec, off.name)
    return module


def _write_panel_modules(detector, panels, R, base_axis, base_position):
    """A multi-panel detector (nbsim.geometry.panels): the data are the panels stacked
    along slow (nbsim's flat index, ``panels * spixels`` rows); one NXdetector_module per
    panel, in panel order, over rows k * spixels .. (k + 1) * spixels - 1, each with the
    panel's own corner, axes and pixel size."""
    sp, fp = int(panels.spixels), int(panels.fpixels)
    width = max(2, len(str(panels.count - 1)))
    for k, p in enumerate(panels.panels):
        _write_module(detector, f"module{k:0{width}d}", to_mcstas(R, p.origin),
                      to_mcstas(R, p.fast), to_mcstas(R, p.slow), float(p.pixel_size),
                      (k * sp, 0), (sp, fp), base_axis, base_position)


def _not_rendered(plan, shape) -> np.ndarray:
    """True for the pixels nbsim leaves at zero (outside -roi, zero in -mask): not data."""
    bad = np.ones(shape, dtype=bool)
    rendered = getattr(plan, "rendered_pixels", None)
    if rendered is None:
        return ~bad
    bad.flat[np.asarray(rendered, dtype=np.int64)] = False
    return bad


def _wavelengths_angstrom(plan) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Distinct source wavelengths (angstrom) and their weights: nanoBragg sums every
    source with the same weight, so a wavelength's weight is its number of sources."""
    lam = np.asarray(plan.sources.wavelengths, dtype=np.float64) * 1e10
    values, counts = np.unique(lam, return_counts=True)
    if values.size == 1:
        return values, None
    return values, counts.astype(np.float64) / counts.sum()


def _stokes(plan, R) -> np.ndarray:
    """Stokes vector (S0, S1, S2, S3) of the incident beam in the McStas frame: S0 = 1,
    degree of linear polarisation = nanoBragg's Kahn factor K (-polar; 0 with -nopolar),
    along the E-vector (-polar_vector) at angle psi from McStas x: S1 = K cos 2 psi, S2 =
    K sin 2 psi, S3 = 0 (dxtbx: polarization_fraction = (1 + K) / 2)."""
    cfg = plan.config
    k = 0.0 if cfg.beam.nopolar else float(cfg.beam.polarization)
    e = to_mcstas(R, plan.detector.polar)
    psi = float(np.arctan2(e[1], e[0]))
    return np.array([1.0, k * np.cos(2 * psi), k * np.sin(2 * psi), 0.0])


def _total_flux(plan) -> float:
    """Photons per second on the sample: nanoBragg's fluence (photons/m^2) times the
    beam area (beamsize^2) over the exposure."""
    b = plan.config.beam
    if not b.exposure > 0:
        return 0.0
    return float(plan.fluence) * float(b.beamsize) ** 2 / float(b.exposure)


def _crystal_frames(info: DatasetInfo):
    """The rendered crystal's real-space rows (a, b, c) in m, nanoBragg lab: one at the
    goniometer datum (phi = 0) for a rotation series, one per still (as rendered), from
    ``info.crystals`` when the driver gave them, else frame 0's plan."""
    crystals = getattr(info, "crystals", None)
    if crystals:
        # -lattices: NXsample has one crystal per frame -- lattice 0's (every lattice
        # is in -write_expt)
        k = max(1, int(getattr(info, "lattices", 1)))
        return [np.asarray(c, dtype=np.float64) for c in crystals[::k]]
    c = info.plan.crystal
    rows = np.array([c.a0, c.b0, c.c0], dtype=np.float64)
    if info.scans is None and float(c.phi0) != 0.0:
        from .dials_expt import rotate_rows
        rows = rotate_rows(rows, info.plan.detector.spindle, float(c.phi0))
    return [rows]


def _write_crystal(sample, info: DatasetInfo, R):
    """NXsample unit cell and orientation, as DIALS' NXmx exporter writes them:
    ``unit_cell`` [n, 6] (angstrom, deg), ``orientation_matrix`` [n, 3, 3] (U, McStas,
    Busing-Levy: UB = U B), ``ub_matrix`` [n, 3, 3] (columns a*, b*, c* in 1/angstrom,
    McStas), their ``average_*`` and ``unit_cell_group`` (P 1: the render's symmetry is
    that of its structure factors).  Rotation series: at the goniometer datum (omega =
    0); stills: one per frame."""
    cells, us, ubs = [], [], []
    for rows in _crystal_frames(info):
        real = to_mcstas(R, rows) * 1e10                 # rows a, b, c in angstrom
        ub = np.linalg.inv(real)                         # columns a*, b*, c*
        q, r = np.linalg.qr(ub)
        sign = np.sign(np.diag(r))                       # B has a positive diagonal
        q, r = q * sign, (r.T * sign).T
        a, b, c = (float(np.linalg.norm(v)) for v in real)
        ang = [float(np.degrees(np.arccos(np.clip(np.dot(x, y) / np.linalg.norm(x)
                                                   / np.linalg.norm(y), -1, 1))))
               for x, y in ((real[1], real[2]), (real[0], real[2]), (real[0], real[1]))]
        cells.append([a, b, c] + ang)
        us.append(q)
        ubs.append(ub)
    cell = _field(sample, "unit_cell", np.array(cells))
    cell.attrs["length_units"] = "angstrom"
    cell.attrs["angles_units"] = "deg"
    avg = _field(sample, "average_unit_cell", np.array(cells[0]))
    avg.attrs["length_units"] = "angstrom"
    avg.attrs["angles_units"] = "deg"
    _field(sample, "orientation_matrix", np.array(us))
    _field(sample, "average_orientation_matrix", np.array(us[0]))
    _field(sample, "ub_matrix", np.array(ubs), units="1/angstrom")
    _field(sample, "unit_cell_group", "P 1")


def _write_metadata(f, info: DatasetInfo, data_factory):
    """Everything except the frame data, which ``data_factory(nxdata_group)`` creates;
    returns the ``/entry/nbsim`` group (for the resume record)."""
    det = info.plan.detector
    if getattr(det, "curved", False):
        raise ValueError("NeXus: a curved detector (-curved_det) cannot be written as a "
                         "flat NXdetector_module")
    R = mcstas_rotation(det.beam, det.spindle, det.polar)
    slow, fast = _shape(info)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    f.attrs["default"] = "entry"
    f.attrs["creator"] = "nbsim"
    entry = _nxgroup(f, "entry", "NXentry")
    entry.attrs["default"] = "data"
    entry.attrs["nbsim_command"] = json.dumps(list(info.command))
    _field(entry, "definition", "NXmx")
    _field(entry, "start_time", now)
    _field(entry, "end_time_estimated", now)
    _field(entry, "program_name", "nbsim", version=str(nbsim_version),
           configuration=shlex.join(info.command))

    # -- beam
    instrument = _nxgroup(entry, "instrument", "NXinstrument")
    _field(instrument, "name", "nbsim", short_name="nbsim")
    beam = _nxgroup(instrument, "beam", "NXbeam")
    lam, weights = _wavelengths_angstrom(info.plan)
    if getattr(info, "spectra", None) is not None:
        _write_frame_spectra(beam, info.spectra)
    elif "lambda" in info.frame_parameters:
        # -vary lambda: one wavelength per frame ([nP], NXmx), which dxtbx's
        # FormatNXmx reads per image; a frame of several source wavelengths (its
        # -dispersion) is recorded by its mean (the spectrum: frame_parameters)
        per = [float(np.mean(np.asarray(info.plan_of(i).sources.wavelengths))) * 1e10
               for i in range(info.nframes)]
        _field(beam, "incident_wavelength", np.array(per), units="angstrom")
    elif weights is None:
        _field(beam, "incident_wavelength", float(lam[0]), units="angstrom")
    else:
        _field(beam, "incident_wavelength", lam, units="angstrom")
        _field(beam, "incident_wavelength_weights", weights)
    # the direction of travel, recorded for readers that look (dxtbx assumes +z)
    _field(beam, "incident_beam_direction", to_mcstas(R, det.beam))
    _field(beam, "incident_polarisation_stokes", _stokes(info.plan, R)[None, :])
    _field(beam, "total_flux", _total_flux(info.plan), units="Hz")

    # -- detector: det_z along the normal, module_offset in plane to the (0,0) corner
    detector = _nxgroup(instrument, "detector", "NXdetector")
    pix0 = to_mcstas(R, det.pix0)
    fvec = to_mcstas(R, det.fdet)
    svec = to_mcstas(R, det.sdet)
    normal = np.cross(fvec, svec)
    normal /= np.linalg.norm(normal)
    along = float(np.dot(pix0, normal))
    trans = _nxgroup(detector, "transformations", "NXtransformations")
    z_ax = _axis(trans, "det_z", along * 1e3, "mm", "translation", normal, ".")
    _field(detector, "depends_on", z_ax.name)
    _field(detector, "description", "nbsim simulated pixel-array detector")
    _field(detector, "type", "pixel")
    _field(detector, "sensor_material", "Si")
    # dxtbx's reader always builds a parallax-corrected model (asserting a thickness
    # > 0): a render without a sensor model gets a 1 nm sensor, whose parallax is nil
    # (NO_SENSOR_THICKNESS_MM; docs/formats.md)
    if det.thick > 0:
        _field(detector, "sensor_thickness", float(det.thick) * 1e3, units="mm")
    else:
        _field(detector, "sensor_thickness", NO_SENSOR_THICKNESS_MM, units="mm",
               nbsim_note="no sensor model in the render (-detector_thick 0)")
    fields = getattr(info, "detector_fields", None) or {}
    _field(detector, "count_time", float(fields.get("count_time", info.exposure_s)), units="s")
    _field(detector, "frame_time", float(fields.get("frame_time", info.exposure_s)), units="s")
    if "threshold_energy" in fields:        # a photon-counting detector's threshold
        _field(detector, "threshold_energy", float(fields["threshold_energy"]), units="eV")
    if info.frame_plan is None:
        _field(detector, "distance", abs(along) * 1e3, units="mm")
        bf, bs, _ = beam_centre_px(det)
        _field(detector, "beam_center_x", bf, units="pixel")
        _field(detector, "beam_center_y", bs, units="pixel")
    else:
        # -vary: NXmx's per-frame [nP] distance and beam centre (the transformations,
        # which dxtbx builds the detector from, are frame 0's: docs/datasets.md)
        dist, bfs = [], []
        for i in range(info.nframes):
            d_i = info.plan_of(i).detector
            n_i = np.cross(to_mcstas(R, d_i.fdet), to_mcstas(R, d_i.sdet))
            dist.append(abs(float(np.dot(to_mcstas(R, d_i.pix0), n_i / np.linalg.norm(n_i))))
                        * 1e3)
            bfs.append(beam_centre_px(d_i)[:2])
        bfs = np.array(bfs, dtype=np.float64)
        _field(detector, "distance", np.array(dist), units="mm")
        _field(detector, "beam_center_x", bfs[:, 0], units="pixel")
        _field(detector, "beam_center_y", bfs[:, 1], units="pixel")
    _field(detector, "x_pixel_size", float(det.pixel_size) * 1e3, units="mm")
    _field(detector, "y_pixel_size", float(det.pixel_size) * 1e3, units="mm")
    if info.saturation is not None:
        _field(detector, "saturation_value", np.int64(int(info.saturation)))
    mask = np.zeros((slow, fast), dtype=np.int32)
    bad = _not_rendered(info.plan, (slow, fast))
    if info.mask is not None:
        m = np.asarray(info.mask, dtype=bool)
        if m.shape != (slow, fast):
            raise ValueError(f"mask shape {m.shape} != detector (slow, fast) {(slow, fast)}")
        bad |= m
    mask[bad] = _MASK_BIT
    defects = getattr(info.plan, "defects", None)
    if defects is not None:
        # NXdetector pixel_mask bits: 1 dead, 3 over-responding (hot); the beamstop's
        # shadow keeps bit 8 (user-defined: "e.g. around the beamstop")
        mask[np.asarray(defects.dead).reshape(slow, fast)] = _DEAD_BIT
        mask[np.asarray(defects.hot).reshape(slow, fast)] = _HOT_BIT
    detector.create_dataset("pixel_mask", data=mask, compression="gzip", shuffle=True)
    _field(detector, "pixel_mask_applied", False)

    panels = getattr(info.plan, "panels", None)
    if panels is None:
        _write_module(detector, "module", pix0, fvec, svec, float(det.pixel_size), (0, 0),
                      (slow, fast), z_ax, along * normal)
    else:
        _write_panel_modules(detector, panels, R, z_ax, along * normal)

    # -- sample and goniometer
    sample = _nxgroup(entry, "sample", "NXsample")
    _field(sample, "name", "nbsim simulated crystal")
    if info.scans is not None:
        if len(info.scans) != info.nframes:
            raise ValueError(f"{len(info.scans)} scan ranges for {info.nframes} frames")
        gonio = _nxgroup(sample, "transformations", "NXtransformations")
        start = np.array([s.phi_start_deg for s in info.scans], dtype=np.float64)
        width = np.array([s.osc_deg for s in info.scans], dtype=np.float64)
        omega = _axis(gonio, "omega", start, "deg", "rotation", to_mcstas(R, det.spindle),
                      ".")
        _field(gonio, "omega_end", start + width, units="deg")
        _field(gonio, "omega_increment_set", float(width[0]) if np.all(width == width[0])
               else width, units="deg")
        _field(sample, "depends_on", omega.name)
    else:
        _field(sample, "depends_on", ".")

    _write_crystal(sample, info, R)

    # NXmx before 2020 put the beam under the sample; a hard link serves both readers
    sample["beam"] = beam

    source = _nxgroup(entry, "source", "NXsource")
    _field(source, "name", "nbsim simulation")
    _field(source, "type", "Synchrotron X-ray Source")

    nxdata = _nxgroup(entry, "data", "NXdata")
    nxdata.attrs["signal"] = "data"
    data = data_factory(nxdata)
    data.attrs["units"] = "counts" if data.dtype.kind == "i" else "photons"
    nb = _nxgroup(entry, "nbsim", "NXcollection")
    nb.attrs["lab_rotation_mcstas_from_nanobragg"] = R
    nb.attrs["nanobragg_convention"] = str(det.convention)
    nb.attrs["dataset_extra"] = json.dumps(info.extra, default=str, sort_keys=True)
    if getattr(info, "damage", None) is not None:
        _write_damage(nb, info.damage, info.nframes)
    _write_frame_parameters(nb, info)
    return nb


def _write_frame_spectra(beam, spectra) -> None:
    """Per-frame spectra (nframes, channels) in m, each channel 1/channels of the
    photons (nbsim.geometry.spectrum): NXmx's "polychromatic beam that varies shot to
    shot" as the variant ``incident_wavelength_spectrum`` (nframes, channels) with
    ``incident_wavelength_spectrum_weights``; ``incident_wavelength`` holds each frame's
    weighted mean (the per-shot wavelength dxtbx's FormatNXmx reads)."""
    lam = np.asarray(spectra, dtype=np.float64) * 1e10
    weights = np.full(lam.shape, 1.0 / lam.shape[1])
    mean = (lam * weights).sum(axis=1)
    wl = _field(beam, "incident_wavelength", mean, units="angstrom")
    wl.attrs["variant"] = "incident_wavelength_spectrum"
    _field(beam, "incident_wavelength_spectrum", lam, units="angstrom")
    _field(beam, "incident_wavelength_spectrum_weights", weights)


def _write_damage(nb, damage: dict, nframes: int) -> None:
    """``/entry/nbsim/damage``: per-frame dose (MGy), B-factor increase (A^2) and damaged
    fraction (nbsim.dataset.damage), and the model's constants as attributes."""
    g = _nxgroup(nb, "damage", "NXcollection")
    for name, units in (("dose", "MGy"), ("b_factor_increase", "angstrom^2"),
                        ("damaged_fraction", "")):
        v = np.asarray(damage[name], dtype=np.float64)
        if v.shape != (nframes,):
            raise ValueError(f"damage {name}: {v.shape} values for {nframes} frames")
        ds = _field(g, name, v)
        if units:
            ds.attrs["units"] = units
    for k, v in damage.get("attrs", {}).items():
        g.attrs[k] = v


def _write_frame_parameters(nb, info: DatasetInfo) -> None:
    """``/entry/nbsim/frame_parameters`` (NXcollection): one dataset per recorded
    per-frame value (``info.frame_parameters``: first axis the frame; for a crystal value
    of stills with several lattices the lattice second), with its ``units``."""
    if not info.frame_parameters:
        return
    fp = _nxgroup(nb, "frame_parameters", "NXcollection")
    fp.attrs["lattices"] = int(getattr(info, "lattices", 1))
    for name, values in info.frame_parameters.items():
        a = np.asarray(values)
        if a.shape[:1] != (info.nframes,):
            raise ValueError(f"frame parameter {name}: {a.shape[0] if a.ndim else 0} "
                             f"values for {info.nframes} frames")
        _field(fp, name, a, units=info.frame_parameter_units.get(name, ""))


def _create_frames(nxdata, info, compression, nframes=None):
    n = info.nframes if nframes is None else nframes
    slow, fast = _shape(info)
    dtype = _dtype_of(info)
    return nxdata.create_dataset("data", shape=(n, slow, fast), dtype=dtype,
                                 chunks=(1, slow, fast), fillvalue=_FILL[info.dtype],
                                 **_filter_kwargs(compression))


def _atomic_h5(path, build, **file_kw):
    """Write an HDF5 file with ``build(h5file)`` to a temporary name, then rename it."""
    h5py, _ = _h5()
    from ._atomic import atomic_path
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", **file_kw) as f:
            build(f)


def _reopen_for_write(path):
    """Open an existing file for writing.  A writer that was killed leaves the file's
    "open for write" flags set (the file still reads, with ``swmr=True``, as dxtbx opens
    it); HDF5 then refuses to reopen it for writing, so its objects are copied -- chunks
    as stored, no recompression -- into a fresh file that atomically replaces it.  (Never
    resume a job that is still running: its writer would be cut off.)"""
    h5py, _ = _h5()
    try:
        return h5py.File(path, "r+", libver=_LIBVER)
    except OSError as exc:
        if "already open for write" not in str(exc):
            raise

    def build(dst):
        with h5py.File(path, "r", swmr=True) as src:
            for k, v in src.attrs.items():
                dst.attrs[k] = v
            for name in src:
                src.copy(src[name], dst, name=name)
    _atomic_h5(path, build, libver=_LIBVER)
    return h5py.File(path, "r+", libver=_LIBVER)


def read_nexus_command(path) -> Tuple[str, ...]:
    """The command line stored in a file written by nbsim (empty if none)."""
    h5py, _ = _h5()
    with h5py.File(path, "r", swmr=True) as f:
        raw = f["entry"].attrs.get("nbsim_command", "[]")
    return tuple(json.loads(raw if isinstance(raw, str) else raw.decode()))


def read_frames_complete(path) -> Set[int]:
    """0-based indices of the frames whose data are complete in ``path``."""
    h5py, _ = _h5()
    with h5py.File(path, "r", swmr=True) as f:
        flags = f["entry/nbsim/frame_complete"][()]
    return set(int(i) for i in np.flatnonzero(flags))


class NexusSink:
    """Stream frames into one NXmx file (see the module docstring for the layout).

    ``compression``: ``"bslz4"`` (Bitshuffle + LZ4, HDF5 filter 32008, default), ``"gzip"``
    (deflate level 4 with shuffle) or ``None``.
    """

    def __init__(self, path, compression: Optional[str] = "bslz4"):
        _check_compression(compression)
        self.path = Path(path)
        self.compression = compression
        self._file = None
        self._data = None
        self._done = None
        self._dtype = None
        self._shape = None

    def open(self, info: DatasetInfo, resume: bool = False) -> Set[int]:
        h5py, _ = _h5()
        self._dtype = _dtype_of(info)
        self._shape = _shape(info)
        if resume and self.path.exists():
            try:
                f = _reopen_for_write(self.path)
            except OSError as exc:
                raise ValueError(f"{self.path}: cannot be resumed: {exc}") from None
            try:
                try:
                    data = f["entry/data/data"]
                    done = f["entry/nbsim/frame_complete"]
                except KeyError:
                    raise ValueError(f"{self.path}: cannot be resumed: not a NeXus file "
                                     f"written by nbsim") from None
                if data.is_virtual:
                    raise ValueError(f"{self.path}: cannot be resumed as one file: it is a "
                                     f"master over block files")
                want = (info.nframes,) + self._shape
                if data.shape != want or data.dtype != self._dtype:
                    raise ValueError(
                        f"{self.path}: holds {data.shape[0]} frames of "
                        f"{data.shape[1]}x{data.shape[2]} {data.dtype}, the job makes "
                        f"{info.nframes} of {self._shape[0]}x{self._shape[1]} {self._dtype}")
            except BaseException:
                f.close()
                raise
            complete = set(int(i) for i in np.flatnonzero(done[()]))
        else:
            def build(f):
                nb = _write_metadata(f, info, lambda g: _create_frames(g, info,
                                                                       self.compression))
                nb.create_dataset("frame_complete", data=np.zeros(info.nframes, np.uint8))
            _atomic_h5(self.path, build, libver=_LIBVER)
            f = h5py.File(self.path, "r+", libver=_LIBVER)
            complete = set()
        f.swmr_mode = True
        self._file = f
        self._data = f["entry/data/data"]
        self._done = f["entry/nbsim/frame_complete"]
        return complete

    def write(self, index: int, data: np.ndarray) -> None:
        if self._file is None:
            raise RuntimeError("NexusSink.write before open")
        self._data[index] = _frame_as(data, self._dtype, self._shape)
        self._file.flush()              # the frame's bytes first ...
        self._done[index] = 1
        self._file.flush()              # ... then the record that it is complete

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            self._file.close()
        self._file = self._data = self._done = None

    def abort(self) -> None:
        """Close without finalising: complete frames stay recorded for ``resume``."""
        if self._file is not None:
            try:
                self._file.flush()
            finally:
                self._file.close()
        self._file = self._data = self._done = None


def write_block_file(path, info: DatasetInfo, first_index: int, frames,
                     compression: Optional[str] = "bslz4") -> None:
    """Write frames ``first_index ..`` of a dataset to a data-only HDF5 file, atomically.

    ``frames``: an array [n, slow, fast] or a sequence of (slow, fast) frames.  The file
    holds ``/data`` [n, slow, fast] (chunk = one frame, the dataset's compression) with
    attributes ``first_index`` (0-based) and ``nframes``; a master file made by
    :func:`write_master_vds` joins such files.
    """
    _check_compression(compression)
    dtype = _dtype_of(info)
    shape = _shape(info)
    frames = list(frames) if not isinstance(frames, np.ndarray) else frames
    n = len(frames)
    if n == 0:
        raise ValueError("a block file needs at least one frame")

    def build(f):
        ds = f.create_dataset("data", shape=(n,) + shape, dtype=dtype, chunks=(1,) + shape,
                              fillvalue=_FILL[info.dtype], **_filter_kwargs(compression))
        for k in range(n):
            ds[k] = _frame_as(frames[k], dtype, shape)
        ds.attrs["first_index"] = int(first_index)
        ds.attrs["nframes"] = int(n)
        f.attrs["creator"] = "nbsim"
    _atomic_h5(path, build, libver=_LIBVER)


def _check_block(block, first, shape, dtype) -> None:
    """A block file must hold the frames the master maps onto it (a missing or short
    block would silently read as fill values through the virtual dataset)."""
    h5py, _ = _h5()
    try:
        with h5py.File(block, "r") as f:
            ds = f["data"]
            got_shape, got_dtype = ds.shape, ds.dtype
            got_first = ds.attrs.get("first_index")
    except (OSError, KeyError) as exc:
        raise ValueError(f"block {block}: not a block file ({exc})") from None
    if got_shape != shape or got_dtype != dtype:
        raise ValueError(f"block {block}: holds {got_shape} {got_dtype}, the master maps "
                         f"{shape} {dtype} onto it")
    if got_first is not None and int(got_first) != first:
        raise ValueError(f"block {block}: starts at frame index {int(got_first)}, the "
                         f"master maps it at {first}")


def write_master_vds(path, info: DatasetInfo,
                     blocks: Sequence[Tuple[int, int, str]]) -> None:
    """Write the NXmx master file whose ``/entry/data/data`` is an HDF5 virtual dataset
    over block files (``blocks``: (first_index, n, block_path) each, from
    :func:`write_block_file`).  Block paths are stored relative to the master's
    directory when they are below it, so the set can be moved together.  Every block is
    checked (shape, dtype, first index) before the master is written.  Frames no block
    covers read as the fill value and are not marked complete."""
    h5py, _ = _h5()
    dtype = _dtype_of(info)
    shape = _shape(info)
    master_dir = Path(os.path.abspath(path)).parent
    done = np.zeros(info.nframes, np.uint8)
    layout = h5py.VirtualLayout(shape=(info.nframes,) + shape, dtype=dtype)
    for first, n, block in blocks:
        first, n = int(first), int(n)
        if first < 0 or n <= 0 or first + n > info.nframes:
            raise ValueError(f"block {block}: frames {first}..{first + n - 1} outside "
                             f"0..{info.nframes - 1}")
        if done[first:first + n].any():
            raise ValueError(f"block {block}: frames {first}..{first + n - 1} overlap "
                             f"another block")
        _check_block(block, first, (n,) + shape, dtype)
        absolute = Path(os.path.abspath(block))
        try:
            name = str(absolute.relative_to(master_dir))
        except ValueError:
            name = str(absolute)
        layout[first:first + n] = h5py.VirtualSource(name, "data", shape=(n,) + shape,
                                                     dtype=dtype)
        done[first:first + n] = 1

    def build(f):
        nb = _write_metadata(f, info, lambda g: g.create_virtual_dataset(
            "data", layout, fillvalue=_FILL[info.dtype]))
        nb.create_dataset("frame_complete", data=done)
        nb.attrs["blocks"] = json.dumps([[int(a), int(b), str(c)] for a, b, c in blocks])
    _atomic_h5(path, build, libver=_LIBVER)

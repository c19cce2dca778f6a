"""NeXus NXmx output (nbsim.io.nexus): geometry as the nxmx package / dxtbx read it,
layout, compression, streaming + resume, block files joined by a virtual dataset."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")
pytest.importorskip("hdf5plugin")
nxmx = pytest.importorskip("nxmx")

from nbsim.io.labframe import mcstas_rotation                       # noqa: E402
from nbsim.io.nexus import (NexusSink, read_frames_complete, read_nexus_command,  # noqa: E402
                            write_block_file, write_master_vds)
from nbsim.io.sinks import DatasetInfo, FrameScan                   # noqa: E402
from nbsim.physics import subpixel_position                         # noqa: E402
from nbsim.simulator import Simulator                               # noqa: E402

BASE = ["-cell", "70", "80", "90", "90", "90", "90", "-default_F", "100", "-N", "3",
        "-lambda", "1.1", "-distance", "120"]

GEOMETRIES = {
    "mosflm": ["-detpixels_f", "48", "-detpixels_s", "40", "-pixel", "0.172",
               "-Xbeam", "3.1", "-Ybeam", "4.4"],
    "xds": ["-xds", "-detpixels_f", "40", "-detpixels_s", "36", "-pixel", "0.1",
            "-ORGX", "12.5", "-ORGY", "30"],
    "dials": ["-dials", "-detpixels", "32", "-pixel", "0.075", "-detector_rotx", "3"],
    "adxv": ["-adxv", "-detpixels", "30", "-Xbeam", "1.2", "-Ybeam", "1.9"],
    "custom_rot_twotheta": [
        "-fdet_vector", "0", "0", "1", "-sdet_vector", "0", "-1", "0",
        "-odet_vector", "1", "0", "0", "-beam_vector", "1", "0", "0",
        "-polar_vector", "0", "0", "1", "-spindle_axis", "0.2", "0.3", "0.9",
        "-twotheta_axis", "0", "1", "0", "-twotheta", "20",
        "-detector_rotx", "2", "-detector_roty", "-5", "-detector_rotz", "7",
        "-detpixels_f", "50", "-detpixels_s", "42", "-pixel", "0.11",
        "-Xbeam", "2.0", "-Ybeam", "3.0", "-pivot", "sample"],
    "custom_oblique_beam": [
        "-fdet_vector", "0", "1", "0", "-sdet_vector", "0", "0", "-1",
        "-odet_vector", "1", "0", "0", "-beam_vector", "0.96", "0.2", "0.2",
        "-spindle_axis", "0", "-1", "0.1", "-detpixels", "36", "-pixel", "0.1",
        "-detector_roty", "4", "-pivot", "beam"],
}


def _plan(extra, mode=None):
    return Simulator.from_args(BASE + extra, mode=mode).plan


def _info(plan, nframes=2, rotation=True, dtype="int32", **kw):
    scans = [FrameScan(10.0 + 0.25 * i, 0.25) for i in range(nframes)] if rotation else None
    return DatasetInfo(plan=plan, nframes=nframes, scans=scans, dtype=dtype,
                       command=("nbsim", "-nimages", str(nframes)), **kw)


def _render_positions(det):
    """Every pixel centre as the kernel computes it (oversample 1, flat detector), m."""
    s, f = np.mgrid[0:det.spixels, 0:det.fpixels].astype(np.float64)
    px = det.pixel_size
    _, _, x, y, z = subpixel_position(px, f, s, px / 2.0, 0.0, *det.fdet, *det.sdet,
                                      *det.odet, *det.pix0)
    return np.stack([x, y, z], axis=-1)


def _file_geometry(path):
    """Pixel centres (m), beam and rotation axis as dxtbx derives them from the file
    (dxtbx/nexus get_dxtbx_detector, flat model), in the file's McStas frame."""
    with h5py.File(path, "r", swmr=True) as fh:
        entry = nxmx.NXmx(fh).entries[0]
        assert entry.definition == "NXmx"
        instrument = entry.instruments[0]
        module = instrument.detectors[0].modules[0]
        slow, fast = (int(v) for v in module.data_size)

        def rotated(axis):
            chain = [t for t in nxmx.get_dependency_chain(axis.depends_on)
                     if t.transformation_type == "rotation"]
            R = (nxmx.get_cumulative_transformation(chain)[0, :3, :3] if chain
                 else np.identity(3))
            return R @ np.asarray(axis.vector, dtype=np.float64)

        fvec = rotated(module.fast_pixel_direction)
        svec = rotated(module.slow_pixel_direction)
        chain = nxmx.get_dependency_chain(module.fast_pixel_direction.depends_on)
        origin_mm = nxmx.get_cumulative_transformation(chain)[0, :3, 3]
        pf = module.fast_pixel_direction[()].to("mm").magnitude.item()
        ps = module.slow_pixel_direction[()].to("mm").magnitude.item()
        s, f = np.mgrid[0:slow, 0:fast].astype(np.float64)
        pos_mm = (origin_mm + (f[..., None] + 0.5) * pf * fvec
                  + (s[..., None] + 0.5) * ps * svec)
        sample = entry.samples[0]
        axis = None
        if sample.depends_on is not None:
            axis = np.asarray(sample.depends_on.vector, dtype=np.float64)
        wavelength = instrument.beams[0].incident_wavelength.to("angstrom").magnitude
    return pos_mm * 1e-3, np.array([0.0, 0.0, 1.0]), axis, fvec, wavelength


def _frame_coordinates(pos, beam, ref):
    """Pixel coordinates in the right-handed frame (beam, ref ⊥ beam, beam × ref): the
    same numbers in any frame related by a proper rotation, sign-flipped by a mirror."""
    e1 = beam / np.linalg.norm(beam)
    e2 = ref - np.dot(ref, e1) * e1
    e2 /= np.linalg.norm(e2)
    e3 = np.cross(e1, e2)
    return np.stack([pos @ e1, pos @ e2, pos @ e3], axis=-1)


def _max_geometry_error(path, plan, rotation=True):
    det = plan.detector
    render = _render_positions(det)
    pos, beam, axis, fvec, _ = _file_geometry(path)
    assert pos.shape == render.shape
    if rotation:
        assert axis is not None
        # the spindle-beam angle itself, and pixels relative to sample, beam and axis
        ang = abs(np.dot(axis, beam) / np.linalg.norm(axis)
                  - np.dot(det.spindle, det.beam) / np.linalg.norm(det.spindle))
        assert ang < 1e-12
        a = _frame_coordinates(render, det.beam, det.spindle)
        b = _frame_coordinates(pos, beam, axis)
    else:
        assert axis is None
        a = _frame_coordinates(render, det.beam, det.fdet)
        b = _frame_coordinates(pos, beam, fvec)
    return float(np.max(np.abs(a - b)))


def _write_one(path, info, value=None):
    sink = NexusSink(path)
    assert sink.open(info) == set()
    shape = (info.plan.detector.spixels, info.plan.detector.fpixels)
    for i in range(info.nframes):
        sink.write(i, np.full(shape, i + 1 if value is None else value, np.int32))
    sink.close()


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
@pytest.mark.parametrize("mode", ["spec", "c-parity"])
def test_pixel_positions_match_render(tmp_path, name, mode):
    plan = _plan(GEOMETRIES[name], mode=mode)
    path = tmp_path / "scan.h5"
    _write_one(path, _info(plan))
    err = _max_geometry_error(path, plan)
    assert err <= 1e-9, f"{name}: {err:.3g} m"
    # the corner is not at the origin and the geometry is not trivially symmetric
    assert np.linalg.norm(plan.detector.pix0) > 0.05


def test_stills_have_no_goniometer_and_right_geometry(tmp_path):
    plan = _plan(GEOMETRIES["custom_rot_twotheta"])
    path = tmp_path / "stills.h5"
    _write_one(path, _info(plan, nframes=3, rotation=False))
    assert _max_geometry_error(path, plan, rotation=False) <= 1e-9
    with h5py.File(path, "r") as fh:
        assert fh["entry/sample/depends_on"][()].decode() == "."
        assert "transformations" not in fh["entry/sample"]


def _mirror_file(path):
    """Mirror every direction and translation in the file through the McStas y-z plane
    (x -> -x): distances are kept, handedness is inverted, the beam (z) is unchanged."""
    M = np.diag([-1.0, 1.0, 1.0])
    with h5py.File(path, "r+") as fh:
        for name in ("entry/instrument/detector/transformations/det_z",
                     "entry/instrument/detector/module/module_offset",
                     "entry/instrument/detector/module/fast_pixel_direction",
                     "entry/instrument/detector/module/slow_pixel_direction",
                     "entry/sample/transformations/omega"):
            ds = fh[name]
            ds.attrs["vector"] = M @ ds.attrs["vector"]


@pytest.mark.parametrize("name", ["mosflm", "custom_rot_twotheta"])
def test_mirrored_detector_fails(tmp_path, name):
    """Negative control: the comparison detects a mirror image of the right geometry."""
    plan = _plan(GEOMETRIES[name])
    path = tmp_path / "mirror.h5"
    _write_one(path, _info(plan))
    assert _max_geometry_error(path, plan) <= 1e-9
    _mirror_file(path)
    assert _max_geometry_error(path, plan) > 1e-3


def test_flipped_slow_axis_fails(tmp_path):
    """Negative control: a detector read upside down (slow axis reversed) is caught."""
    plan = _plan(GEOMETRIES["xds"])
    path = tmp_path / "flip.h5"
    _write_one(path, _info(plan))
    with h5py.File(path, "r+") as fh:
        ds = fh["entry/instrument/detector/module/slow_pixel_direction"]
        ds.attrs["vector"] = -ds.attrs["vector"]
    assert _max_geometry_error(path, plan) > 1e-3


@pytest.mark.parametrize("name", ["mosflm", "custom_rot_twotheta", "custom_oblique_beam"])
def test_goniometer_rotation_sense_matches_render(tmp_path, name):
    """The omega axis as nxmx turns it into a matrix (scipy rotvec, what dxtbx uses)
    rotates the phi=0 cell into the cell nbsim renders at each frame's phi."""
    plan = _plan(GEOMETRIES[name] + ["-phi", "30", "-osc", "14", "-phisteps", "2"])
    phis = np.degrees(plan.crystal.phi_values())
    assert np.allclose(phis, [30.0, 37.0])
    info = DatasetInfo(plan=plan, nframes=2, scans=[FrameScan(p, 7.0) for p in phis])
    path = tmp_path / "gonio.h5"
    _write_one(path, info)
    det = plan.detector
    R = mcstas_rotation(det.beam, det.spindle, det.polar)
    cell0 = np.stack([plan.crystal.a0, plan.crystal.b0, plan.crystal.c0])   # rows, m
    rendered = plan.cells[0].reshape(-1, 3, 3)                               # per phi step

    def worst(fh):
        omega = nxmx.NXmx(fh).entries[0].samples[0].depends_on
        mats = omega.matrix[:, :3, :3]
        return max(float(np.max(np.abs(rendered[k] @ R.T - (cell0 @ R.T) @ mats[k].T)))
                   for k in range(2)) / float(np.max(np.abs(cell0)))

    with h5py.File(path, "r") as fh:
        assert worst(fh) < 1e-12
    with h5py.File(path, "r+") as fh:           # negative control: opposite sense
        ds = fh["entry/sample/transformations/omega"]
        ds.attrs["vector"] = -ds.attrs["vector"]
    with h5py.File(path, "r") as fh:
        assert worst(fh) > 0.1


def test_lab_rotation_is_proper_and_maps_beam_to_z():
    for name in sorted(GEOMETRIES):
        det = _plan(GEOMETRIES[name]).detector
        R = mcstas_rotation(det.beam, det.spindle, det.polar)
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-14)
        assert abs(np.linalg.det(R) - 1.0) < 1e-14
        assert np.allclose(R @ det.beam, [0, 0, 1], atol=1e-14)
        perp = det.spindle - np.dot(det.spindle, det.beam) * det.beam
        x = R @ perp
        assert x[0] < 0 and abs(x[1]) < 1e-14 and abs(x[2]) < 1e-14
    # the matrices docs/formats.md lists (MOSFLM, XDS/ADXV, DIALS)
    for beam, spindle, want in (([1, 0, 0], [0, 0, 1], [[0, 0, -1], [0, 1, 0], [1, 0, 0]]),
                                ([0, 0, 1], [1, 0, 0], [[-1, 0, 0], [0, -1, 0], [0, 0, 1]]),
                                ([0, 0, 1], [0, 1, 0], [[0, -1, 0], [1, 0, 0], [0, 0, 1]])):
        assert np.array_equal(mcstas_rotation(beam, spindle) + 0.0, np.array(want, float))
    # spindle along the beam: the E-vector goes to +x
    R = mcstas_rotation([0, 0, 1], [0, 0, 1], polar=[0, 1, 0])
    assert np.allclose(R @ [0, 1, 0], [1, 0, 0]) and abs(np.linalg.det(R) - 1) < 1e-14


def test_layout_fields_dials_reads(tmp_path):
    plan = _plan(GEOMETRIES["mosflm"] + ["-detector_thick", "450", "-detector_abs", "500"])
    mask = np.zeros(plan.shape, dtype=bool)
    mask[3, 5] = mask[0, 0] = True
    info = _info(plan, nframes=4, mask=mask, saturation=65535, exposure_s=0.2,
                 extra={"seed": 7})
    path = tmp_path / "layout.h5"
    _write_one(path, info)
    with h5py.File(path, "r") as fh:
        entry = nxmx.NXmx(fh).entries[0]
        det = entry.instruments[0].detectors[0]
        # the other properties nxmx/dxtbx read all parse (units included)
        assert entry.start_time is not None and entry.end_time_estimated is not None
        assert entry.source.name and entry.instruments[0].name == "nbsim"
        assert det.depends_on.transformation_type == "translation"
        assert det.count_time.to("ms").magnitude == pytest.approx(200.0)
        assert det.distance.to("mm").magnitude == pytest.approx(
            abs(np.dot(plan.detector.pix0, np.cross(plan.detector.fdet, plan.detector.sdet)))
            * 1e3)
        assert det.beam_center_x.magnitude == pytest.approx(plan.detector.Fbeam / 172e-6)
        assert det.beam_center_y.magnitude == pytest.approx(plan.detector.Sbeam / 172e-6)
        assert det.sensor_material == "Si"
        assert det.sensor_thickness.to("um").magnitude == pytest.approx(450.0)
        assert det.saturation_value == 65535
        assert det.frame_time.to("s").magnitude == pytest.approx(0.2)
        pm = det.pixel_mask[()]
        assert pm.shape == plan.shape and pm[3, 5] != 0 and pm[0, 0] != 0
        assert np.count_nonzero(pm) == 2
        module = det.modules[0]
        assert list(module.data_origin) == [0, 0]
        assert list(module.data_size) == [plan.detector.spixels, plan.detector.fpixels]
        assert module.fast_pixel_direction[()].to("mm").magnitude.item() == \
            pytest.approx(0.172)
        wl = entry.instruments[0].beams[0].incident_wavelength.to("angstrom").magnitude
        assert wl == pytest.approx(1.1, rel=1e-12)
        omega = entry.samples[0].depends_on
        assert omega.transformation_type == "rotation"
        assert np.allclose(omega[()].to("deg").magnitude, [10.0, 10.25, 10.5, 10.75])
        assert np.allclose(omega.end[()].to("deg").magnitude, [10.25, 10.5, 10.75, 11.0])
        axes = nxmx.get_rotation_axes(nxmx.get_dependency_chain(omega))
        assert axes.is_scan_axis.tolist() == [True]
        # every transformation axis and every dimensional field has units
        for name in ("entry/instrument/detector/transformations/det_z",
                     "entry/instrument/detector/module/module_offset",
                     "entry/instrument/detector/module/fast_pixel_direction",
                     "entry/instrument/detector/module/slow_pixel_direction",
                     "entry/sample/transformations/omega",
                     "entry/instrument/beam/incident_wavelength",
                     "entry/instrument/detector/sensor_thickness"):
            assert fh[name].attrs["units"], name
        data = fh["entry/data/data"]
        assert data.shape == (4,) + plan.shape and data.dtype == np.int32
        assert data.chunks == (1,) + plan.shape
        assert "32008" in data._filters            # Bitshuffle
        assert data._filters["32008"][4] == 2       # ... with LZ4
        assert [data[i, 7, 9] for i in range(4)] == [1, 2, 3, 4]
        assert fh["entry"].attrs["nbsim_command"] == json.dumps(list(info.command))
        assert json.loads(fh["entry/nbsim"].attrs["dataset_extra"]) == {"seed": 7}
        assert fh["entry/sample/beam"] == fh["entry/instrument/beam"]     # one group
        assert len(nxmx.NXmx(fh).entries[0].instruments[0].beams) == 1
    assert read_nexus_command(path) == info.command


def test_pixels_outside_roi_are_masked(tmp_path):
    plan = _plan(GEOMETRIES["xds"] + ["-roi", "5", "20", "3", "30"])
    path = tmp_path / "roi.h5"
    _write_one(path, _info(plan))
    with h5py.File(path, "r") as fh:
        good = fh["entry/instrument/detector/pixel_mask"][()] == 0
    want = np.zeros(plan.shape, dtype=bool)
    want[3:31, 5:21] = True                 # -roi xmin xmax ymin ymax, inclusive
    assert np.array_equal(good, want)


def test_spectrum_wavelengths_and_weights(tmp_path):
    plan = _plan(GEOMETRIES["mosflm"] + ["-dispersion", "2", "-dispsteps", "3"])
    lam = np.asarray(plan.sources.wavelengths) * 1e10
    values, counts = np.unique(lam, return_counts=True)
    assert values.size == 3
    path = tmp_path / "spec.h5"
    _write_one(path, _info(plan))
    with h5py.File(path, "r") as fh:
        beam = nxmx.NXmx(fh).entries[0].instruments[0].beams[0]
        assert np.allclose(beam.incident_wavelength.to("angstrom").magnitude, values,
                           rtol=1e-14)
        assert np.allclose(fh["entry/instrument/beam/incident_wavelength_weights"][()],
                           counts / counts.sum())


@pytest.mark.parametrize("compression,dtype", [("gzip", "float32"), (None, "int32")])
def test_compression_options_round_trip(tmp_path, compression, dtype):
    plan = _plan(GEOMETRIES["dials"])
    info = _info(plan, nframes=2, dtype=dtype)
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 70000, plan.shape).astype(dtype) for _ in range(2)]
    path = tmp_path / "c.h5"
    sink = NexusSink(path, compression=compression)
    sink.open(info)
    for i, fr in enumerate(frames):
        sink.write(i, fr)
    sink.close()
    with h5py.File(path, "r") as fh:
        data = fh["entry/data/data"]
        assert data.dtype == np.dtype(dtype)
        assert data.compression == compression
        for i, fr in enumerate(frames):
            assert np.array_equal(data[i], fr)


def test_bad_compression_and_shape_refused(tmp_path):
    with pytest.raises(ValueError, match="compression"):
        NexusSink(tmp_path / "x.h5", compression="lzf")
    plan = _plan(GEOMETRIES["dials"])
    sink = NexusSink(tmp_path / "x.h5")
    sink.open(_info(plan))
    with pytest.raises(ValueError, match="frame shape"):
        sink.write(0, np.zeros((3, 3), np.int32))
    sink.abort()


def test_resume_returns_complete_frames_and_finishes(tmp_path):
    plan = _plan(GEOMETRIES["dials"])
    info = _info(plan, nframes=5)
    path = tmp_path / "r.h5"
    sink = NexusSink(path)
    sink.open(info)
    for i in (0, 1, 3):
        sink.write(i, np.full(plan.shape, 100 + i, np.int32))
    sink.abort()                       # interrupted after frames 0, 1, 3
    assert read_frames_complete(path) == {0, 1, 3}
    with h5py.File(path, "r") as fh:   # unwritten frames read as the fill value
        assert fh["entry/data/data"][2, 0, 0] == -1
    sink = NexusSink(path)
    done = sink.open(info, resume=True)
    assert done == {0, 1, 3}
    for i in sorted(set(range(5)) - done):
        sink.write(i, np.full(plan.shape, 100 + i, np.int32))
    sink.close()
    assert read_frames_complete(path) == set(range(5))
    with h5py.File(path, "r") as fh:
        assert fh["entry/data/data"][:, 4, 4].tolist() == [100, 101, 102, 103, 104]
    # a job of another shape is refused on resume, and the file is left alone
    other = _info(plan, nframes=6)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="holds 5 frames"):
        NexusSink(path).open(other, resume=True)
    assert path.read_bytes() == before


def test_resume_refuses_foreign_files(tmp_path):
    plan = _plan(GEOMETRIES["dials"])
    info = _info(plan, nframes=2)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="cannot be resumed"):
        NexusSink(junk).open(info, resume=True)
    assert junk.read_bytes() == b"not hdf5 at all"
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as fh:
        fh["x"] = 1
    with pytest.raises(ValueError, match="not a NeXus file written by nbsim"):
        NexusSink(other).open(info, resume=True)
    block = tmp_path / "b.h5"
    write_block_file(block, info, 0, np.zeros((2,) + plan.shape, np.int32))
    master = tmp_path / "m.h5"
    write_master_vds(master, info, [(0, 2, str(block))])
    with pytest.raises(ValueError, match="master over block files"):
        NexusSink(master).open(info, resume=True)


def test_killed_writer_leaves_resumable_file(tmp_path):
    """SIGKILL between frames: the file opens, completed frames are recorded and intact."""
    import subprocess
    import sys
    script = tmp_path / "w.py"
    path = tmp_path / "k.h5"
    script.write_text(f"""
import os, signal, numpy as np
from nbsim.simulator import Simulator
from nbsim.io.sinks import DatasetInfo, FrameScan
from nbsim.io.nexus import NexusSink
plan = Simulator.from_args({BASE + GEOMETRIES['dials']!r}).plan
info = DatasetInfo(plan=plan, nframes=4, scans=[FrameScan(i, 1.0) for i in range(4)])
s = NexusSink({str(path)!r}); s.open(info)
s.write(0, np.full(plan.shape, 7, np.int32)); s.write(1, np.full(plan.shape, 8, np.int32))
os.kill(os.getpid(), signal.SIGKILL)
""")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
        + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert read_frames_complete(path) == {0, 1}
    with h5py.File(path, "r", swmr=True) as fh:       # how dxtbx opens NeXus files
        assert fh["entry/data/data"][1, 3, 3] == 8
    info = DatasetInfo(plan=_plan(GEOMETRIES["dials"]), nframes=4,
                       scans=[FrameScan(i, 1.0) for i in range(4)])
    sink = NexusSink(path)
    assert sink.open(info, resume=True) == {0, 1}
    sink.write(2, np.full(info.plan.shape, 9, np.int32))
    sink.write(3, np.full(info.plan.shape, 10, np.int32))
    sink.close()
    with h5py.File(path, "r") as fh:                   # clean again after the resume
        assert fh["entry/data/data"][:, 3, 3].tolist() == [7, 8, 9, 10]
        assert fh["entry/nbsim/frame_complete"][()].tolist() == [1, 1, 1, 1]
        assert fh["entry/sample/beam"] == fh["entry/instrument/beam"]    # links kept
        assert fh["entry/data/data"]._filters == {"32008": (0, 4, 4, 0, 2)}
    assert _max_geometry_error(path, info.plan) <= 1e-9


def test_block_files_joined_by_virtual_dataset(tmp_path, monkeypatch):
    plan = _plan(GEOMETRIES["xds"])
    info = _info(plan, nframes=5)
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 1000, (5,) + plan.shape).astype(np.int32)
    blocks_dir = tmp_path / "blocks"
    blocks_dir.mkdir()
    blocks = []
    for first, n in ((0, 2), (2, 2), (4, 1)):
        p = blocks_dir / f"block_{first:05d}.h5"
        write_block_file(p, info, first, frames[first:first + n])
        blocks.append((first, n, str(p)))
    master = tmp_path / "master.h5"
    write_master_vds(master, info, blocks)
    assert _max_geometry_error(master, plan) <= 1e-9
    # readable from another working directory (paths relative to the master)
    monkeypatch.chdir(blocks_dir)
    with h5py.File(master, "r") as fh:
        data = fh["entry/data/data"]
        assert data.is_virtual
        assert np.array_equal(data[()], frames)
        assert all(not os.path.isabs(s.file_name) for s in data.virtual_sources())
    assert read_frames_complete(master) == set(range(5))
    with pytest.raises(ValueError, match="overlap"):
        write_master_vds(tmp_path / "bad.h5", info, blocks + [(1, 1, blocks[0][2])])
    with pytest.raises(ValueError, match="holds"):          # a block of 2 mapped as 1
        write_master_vds(tmp_path / "bad.h5", info, [(0, 1, blocks[0][2])])
    with pytest.raises(ValueError, match="starts at frame index 2"):
        write_master_vds(tmp_path / "bad.h5", info, [(0, 2, blocks[1][2])])
    with pytest.raises(ValueError, match="not a block file"):
        write_master_vds(tmp_path / "bad.h5", info, [(0, 2, str(tmp_path / "none.h5"))])
    assert not (tmp_path / "bad.h5").exists()

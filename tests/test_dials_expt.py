"""-write_expt (nbsim.io.dials_expt) and what NeXus / miniCBF say for dxtbx.

* round trip: the .expt read back by nbsim's own reader (nbsim.inputs.expt) is the
  render's geometry (MOSFLM: identical vectors; XDS: the same geometry up to the one lab
  rotation -- every distance and angle between beam, spindle, pixels and crystal);
* stills: one experiment, one crystal, one single-image imageset per frame;
* multi-panel: every panel's corner and axes;
* a render without a sensor model: NeXus sensor_thickness and the miniCBF sensor line are
  1 nm, whose dxtbx parallax shift is below 1e-8 pixel (dxtbx's formula, and dxtbx
  itself when installed);
* NXmx: Stokes vector, flux, NXsample cell / UB agree with the render;
* dxtbx's ExperimentListFactory (Debian's DIALS python) loads the file when present;
* bad input: one line naming -write_expt, exit status 2, nothing written.
"""
from __future__ import annotations

import io
import json
import math
import os
import subprocess

import numpy as np
import pytest

from nbsim.cli.main import main
from nbsim.inputs.expt import read_expt

BASE = ["-cell", "40", "50", "60", "90", "90", "90", "-default_F", "100", "-N", "3",
        "-lambda", "1.1", "-pixel", "0.1", "-detpixels", "48", "-oversample", "1",
        "-misset", "10", "20", "30", "-noprogress"]
DIALS_PY = "/usr/bin/python3"


def run(argv, cwd):
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        rc = main([str(a) for a in argv], stdout=out, stderr=err)
    finally:
        os.chdir(old)
    return rc, out.getvalue(), err.getvalue()


def plan_of(argv):
    from nbsim.simulator import Simulator
    from nbsim.args import parse_args
    return Simulator(parse_args(argv).config).plan


def have_dxtbx():
    if not os.path.exists(DIALS_PY):
        return False
    r = subprocess.run([DIALS_PY, "-c", "import dxtbx"], capture_output=True)
    return r.returncode == 0


def test_round_trip_mosflm_rotation(tmp_path):
    argv = BASE + ["-distance", "80", "-Xbeam", "2.1", "-Ybeam", "2.6", "-phi", "5",
                   "-osc", "0.5", "-polar", "0.6"]
    rc, _, err = run(argv + ["-nimages", "3", "-cbf", "c_###.cbf", "-write_expt",
                             "job.expt"], tmp_path)
    assert rc == 0, err
    g = read_expt(tmp_path / "job.expt")
    p = plan_of(argv)
    d = p.detector
    assert g.wavelength == pytest.approx(1.1e-10, rel=1e-12)
    np.testing.assert_allclose(g.fdet, d.fdet, atol=1e-12)
    np.testing.assert_allclose(g.sdet, d.sdet, atol=1e-12)
    np.testing.assert_allclose(g.odet, d.odet, atol=1e-12)
    pix0 = (-g.xclose * np.array(g.fdet) - g.yclose * np.array(g.sdet)
            + g.close_distance * np.array(g.odet))
    np.testing.assert_allclose(pix0, d.pix0, atol=1e-12)       # metres: < 1 pm
    np.testing.assert_allclose(g.beam_vector, d.beam, atol=1e-12)
    np.testing.assert_allclose(g.spindle_axis, d.spindle, atol=1e-12)
    assert g.phi0 == pytest.approx(math.radians(5.0), abs=1e-12)
    assert g.osc == pytest.approx(math.radians(0.5), abs=1e-12)
    assert g.polarization == pytest.approx(0.6, abs=1e-12)      # Kahn factor back
    np.testing.assert_allclose(g.polar_vector, d.polar, atol=1e-12)
    # the crystal at phi = 0: reciprocal vectors (x lambda, MOSFLM layout)
    c = p.crystal
    want = np.column_stack([c.a_star, c.b_star, c.c_star]) * 1.1
    np.testing.assert_allclose(g.a_star_matrix, want, rtol=1e-10, atol=1e-14)
    doc = json.loads((tmp_path / "job.expt").read_text())
    scan = doc["scan"][0]
    assert scan["image_range"] == [1, 3]
    assert scan["oscillation"] == pytest.approx([5.0, 0.5])
    iset = doc["imageset"][0]
    assert iset["__id__"] == "ImageSequence"
    assert iset["template"] == str(tmp_path / "c_###.cbf")
    assert doc["beam"][0]["polarization_fraction"] == pytest.approx(0.8)


def test_round_trip_xds_is_the_same_geometry(tmp_path):
    """Another convention: the .expt is the render rotated by one proper rotation, so
    every invariant (distances, angles between beam, spindle, detector axes, pixel
    corner, crystal axes) is the render's."""
    argv = BASE + ["-xds", "-distance", "90", "-ORGX", "20", "-ORGY", "27", "-osc", "1"]
    rc, _, err = run(argv + ["-nimages", "2", "-cbf", "c_##.cbf", "-write_expt",
                             "x.expt"], tmp_path)
    assert rc == 0, err
    g = read_expt(tmp_path / "x.expt")
    d = plan_of(argv).detector
    c = plan_of(argv).crystal
    pix0 = (-g.xclose * np.array(g.fdet) - g.yclose * np.array(g.sdet)
            + g.close_distance * np.array(g.odet))
    a_g = np.linalg.inv(g.a_star_matrix / 1.1).T        # real-space columns, angstrom
    a_r = np.column_stack([c.a0, c.b0, c.c0]) * 1e10
    frame_g = np.column_stack([g.beam_vector, g.spindle_axis, g.fdet, g.sdet, pix0, a_g])
    frame_r = np.column_stack([d.beam, d.spindle, d.fdet, d.sdet, d.pix0, a_r])
    np.testing.assert_allclose(frame_g.T @ frame_g, frame_r.T @ frame_r, rtol=1e-10,
                               atol=1e-9)     # entries up to 3600 A^2: rounding
    # and handedness: a rotation, never a mirror
    assert np.linalg.det(frame_g[:, :3]) == pytest.approx(np.linalg.det(frame_r[:, :3]))


def test_stills_one_experiment_per_frame(tmp_path):
    rc, _, err = run(BASE + ["-distance", "80", "-stills", "3", "-misset", "random",
                             "-nexus_compression", "gzip", "-nexus", "s.h5",
                             "-write_expt", "s.expt"], tmp_path)
    assert rc == 0, err
    doc = json.loads((tmp_path / "s.expt").read_text())
    assert len(doc["experiment"]) == 3 and len(doc["crystal"]) == 3
    assert doc["goniometer"] == [] and doc["scan"] == []
    assert [e["imageset"] for e in doc["experiment"]] == [0, 1, 2]
    assert [i["single_file_indices"] for i in doc["imageset"]] == [[0], [1], [2]]
    # three different orientations, the crystal of each frame's plan
    a = [np.array(c["real_space_a"]) for c in doc["crystal"]]
    assert min(np.linalg.norm(a[0] - a[1]), np.linalg.norm(a[1] - a[2])) > 1.0
    for k in range(3):
        g = read_expt(tmp_path / "s.expt", index=k)
        real = np.linalg.inv(g.a_star_matrix / 1.1).T
        assert sorted(np.linalg.norm(real, axis=0)) == pytest.approx([40, 50, 60])
    # NXsample carries the same three orientations (McStas: x -> -x, z -> -z of imgCIF)
    import h5py
    with h5py.File(tmp_path / "s.h5") as f:
        ub = f["entry/sample/ub_matrix"][()]
        cell = f["entry/sample/unit_cell"][()]
    assert ub.shape == (3, 3, 3)
    np.testing.assert_allclose(cell[:, :3], [[40, 50, 60]] * 3, rtol=1e-10)
    M = np.diag([-1.0, 1.0, -1.0])
    for k in range(3):
        real = np.array([doc["crystal"][k][f"real_space_{x}"] for x in "abc"])  # rows
        # UB's columns a*, b*, c*: UB^T (M real^T) = identity
        np.testing.assert_allclose(ub[k].T @ (M @ real.T), np.eye(3), atol=1e-10)


def test_multipanel_expt_round_trip(tmp_path):
    panels = []
    for k in range(4):
        panels.append({"origin": [0.08, 0.003 - 0.0035 * (k // 2), -0.003 + 0.0035 * (k % 2)],
                       "fast": [0, 0, 1], "slow": [0, -1, 0], "fpixels": 24,
                       "spixels": 24, "pixel_size": 1e-4, "name": f"m{k}"})
    (tmp_path / "p.json").write_text(json.dumps({"panels": panels}))
    rc, _, err = run(BASE + ["-distance", "80", "-panels", "p.json", "-osc", "1",
                             "-nonoise", "-write_expt", "p.expt", "-floatfile", "f.bin"],
                     tmp_path)
    assert rc == 0, err
    g = read_expt(tmp_path / "p.expt")
    assert g.panels is not None and g.panels.count == 4
    for k, p in enumerate(g.panels.panels):
        np.testing.assert_allclose(p.origin, panels[k]["origin"], atol=1e-12)
        np.testing.assert_allclose(p.fast, panels[k]["fast"], atol=1e-12)
        np.testing.assert_allclose(p.slow, panels[k]["slow"], atol=1e-12)
        assert p.name == f"m{k}"


def _parallax_shift_px(mu_mm, t0_mm, angle_rad, pixel_mm):
    """dxtbx's parallax shift (parallax_correction.h): o = 1/mu - (t0/cos + 1/mu)
    exp(-mu t0/cos), times sin(angle) along the panel, in pixels."""
    c = math.cos(angle_rad)
    o = 1.0 / mu_mm - (t0_mm / c + 1.0 / mu_mm) * math.exp(-mu_mm * t0_mm / c)
    return abs(o * math.sin(angle_rad)) / pixel_mm


def test_no_sensor_is_a_negligible_1nm_sensor(tmp_path):
    from nbsim.io.dials_expt import NO_SENSOR_THICKNESS_MM
    assert NO_SENSOR_THICKNESS_MM == 1e-6
    # Si at 0.5..2.5 A (mu 0.6..60 /mm), rays up to 70 deg, 0.05 mm pixels
    worst = max(_parallax_shift_px(mu, NO_SENSOR_THICKNESS_MM, math.radians(t), 0.05)
                for mu in (0.6, 4.2, 60.0) for t in (5, 30, 60, 70))
    assert 1e-10 < worst < 1e-8      # ~ mu t0^2 / (2 cos^2): 5e-9 px at 60 /mm, 70 deg
    rc, _, err = run(BASE + ["-distance", "80", "-nimages", "1", "-nexus", "n.h5",
                             "-nexus_compression", "gzip", "-cbf", "c_#.cbf"], tmp_path)
    assert rc == 0, err
    import h5py
    with h5py.File(tmp_path / "n.h5") as f:
        t = f["entry/instrument/detector/sensor_thickness"]
        assert t[()] == pytest.approx(1e-6) and t.attrs["units"] == "mm"
    head = (tmp_path / "c_1.cbf").read_bytes()[:3000].decode("ascii", "replace")
    assert "# Silicon sensor, thickness 0.000000001 m" in head
    # a real sensor is written as given
    rc, _, err = run(BASE + ["-distance", "80", "-nimages", "1", "-nexus", "t.h5",
                             "-nexus_compression", "gzip", "-detector_thick", "320"],
                     tmp_path)
    assert rc == 0, err
    with h5py.File(tmp_path / "t.h5") as f:
        assert f["entry/instrument/detector/sensor_thickness"][()] == pytest.approx(0.32)


def test_nxmx_polarisation_flux_and_sample(tmp_path):
    argv = BASE + ["-distance", "80", "-osc", "1", "-polar", "0.8", "-flux", "1e12",
                   "-exposure", "2", "-beamsize", "0.05"]
    rc, _, err = run(argv + ["-nimages", "2", "-nexus", "n.h5", "-nexus_compression",
                             "gzip", "-write_expt", "n.expt"], tmp_path)
    assert rc == 0, err
    import h5py
    with h5py.File(tmp_path / "n.h5") as f:
        s = f["entry/instrument/beam/incident_polarisation_stokes"][()]
        flux = f["entry/instrument/beam/total_flux"][()]
        ub = f["entry/sample/ub_matrix"][()][0]
        u = f["entry/sample/orientation_matrix"][()][0]
        cell = f["entry/sample/unit_cell"][()][0]
    # MOSFLM's E-vector (+z) is McStas -x: psi = pi, S1 = +K
    np.testing.assert_allclose(s, [[1.0, 0.8, 0.0, 0.0]], atol=1e-12)
    assert flux == pytest.approx(1e12)            # fluence x area / exposure: the flux
    np.testing.assert_allclose(cell, [40, 50, 60, 90, 90, 90], rtol=1e-10)
    np.testing.assert_allclose(u @ u.T, np.eye(3), atol=1e-12)
    b = np.linalg.solve(u, ub)                     # Busing-Levy B: upper triangular
    assert np.allclose(np.tril(b, -1), 0, atol=1e-12) and np.all(np.diag(b) > 0)
    doc = json.loads((tmp_path / "n.expt").read_text())
    real = np.array([doc["crystal"][0][f"real_space_{x}"] for x in "abc"])
    M = np.diag([-1.0, 1.0, -1.0])                 # imgCIF -> McStas
    np.testing.assert_allclose(ub.T @ (M @ real.T), np.eye(3), atol=1e-10)
    assert doc["beam"][0]["flux"] == pytest.approx(1e12)
    assert doc["beam"][0]["polarization_fraction"] == pytest.approx(0.9)


def test_bad_target_and_geometry_write_nothing(tmp_path):
    rc, out, err = run(BASE + ["-distance", "80", "-write_expt", "nodir/x.expt",
                               "-floatfile", "f.bin"], tmp_path)
    assert rc == 2 and err.count("\n") == 1 and "-write_expt" in err
    rc, out, err = run(BASE + ["-distance", "80", "-curved_det", "-write_expt", "x.expt",
                               "-floatfile", "f.bin"], tmp_path)
    assert rc == 2 and "-write_expt" in err and "curved" in err
    rc, out, err = run(BASE + ["-distance", "80", "-curved_det", "-nimages", "2",
                               "-cbf", "c_#.cbf", "-write_expt", "x.expt"], tmp_path)
    assert rc == 2 and "-write_expt" in err
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.skipif(not have_dxtbx(), reason="no dxtbx under /usr/bin/python3 (DIALS)")
def test_dxtbx_loads_the_expt_and_the_images(tmp_path):
    rc, _, err = run(BASE + ["-distance", "80", "-Xbeam", "2.1", "-Ybeam", "2.6",
                             "-osc", "1", "-nimages", "2", "-cbf", "c_##.cbf",
                             "-noisefile", "n_##.img", "-write_expt", "j.expt"], tmp_path)
    assert rc == 0, err
    script = r"""
import json, sys
from dxtbx.model.experiment_list import ExperimentListFactory as F
el = F.from_json_file("j.expt", check_format=True)
e = el[0]
p = e.detector[0]
print(json.dumps({"n": len(e.imageset), "centre": list(p.get_beam_centre(e.beam.get_s0())),
                  "dist": p.get_distance(), "ped": p.get_pedestal(),
                  "raw": int(e.imageset.get_raw_data(0)[0].all()[0]),
                  "cell": list(e.crystal.get_unit_cell().parameters())}))
"""
    r = subprocess.run([DIALS_PY, "-c", script], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env={k: v for k, v in os.environ.items()
                                                    if k != "PYTHONPATH"})
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["n"] == 2 and got["raw"] == 48
    # MOSFLM Xbeam/Ybeam (mm): nanoBragg's beam spot is (Fbeam, Sbeam) = (Ybeam, Xbeam)
    # + half a pixel (MOSFLM's convention), where dxtbx finds it
    assert got["centre"] == pytest.approx([2.65, 2.15], abs=1e-9)
    assert got["dist"] == pytest.approx(80.0, abs=1e-9)
    assert got["ped"] == 40.0                        # the SMV frames' ADC offset
    assert got["cell"] == pytest.approx([40, 50, 60, 90, 90, 90], rel=1e-10)


@pytest.mark.skipif(not have_dxtbx(), reason="no dxtbx under /usr/bin/python3 (DIALS)")
def test_dxtbx_loads_stills_from_nexus(tmp_path):
    """Stills: one experiment per frame, each with its own crystal and the matching
    frame of the NeXus file (gzip: any HDF5 reads it)."""
    rc, _, err = run(BASE + ["-distance", "80", "-stills", "3", "-misset", "random",
                             "-nexus_compression", "gzip", "-nexus", "s.h5",
                             "-write_expt", "s.expt"], tmp_path)
    assert rc == 0, err
    script = r"""
import json
from dxtbx.model.experiment_list import ExperimentListFactory as F
el = F.from_json_file("s.expt", check_format=True)
print(json.dumps([[len(e.imageset), e.imageset.indices()[0],
                   float(sum(e.imageset.get_raw_data(0)[0].as_1d().as_double())),
                   list(e.crystal.get_real_space_vectors()[0])] for e in el]))
"""
    r = subprocess.run([DIALS_PY, "-c", script], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env={k: v for k, v in os.environ.items()
                                                    if k != "PYTHONPATH"})
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    import h5py
    with h5py.File(tmp_path / "s.h5") as f:
        sums = [float(f["entry/data/data"][k].astype(np.float64).sum()) for k in range(3)]
    doc = json.loads((tmp_path / "s.expt").read_text())
    assert [g[0] for g in got] == [1, 1, 1]
    assert [g[1] for g in got] == [0, 1, 2]
    assert [g[2] for g in got] == pytest.approx(sums)      # each its own frame
    for k in range(3):
        assert got[k][3] == pytest.approx(doc["crystal"][k]["real_space_a"], abs=1e-9)


def test_crystal_carries_the_structure_factors_space_group(tmp_path):
    """-mtz gives the crystal's symmetry (rendered as its P1 expansion); without a
    reflection file the crystal is P 1."""
    gemmi = pytest.importorskip("gemmi")
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup("P 21 21 21")
    mtz.set_cell_for_all(gemmi.UnitCell(40, 50, 60, 90, 90, 90))
    mtz.add_dataset("sim")
    mtz.add_column("FP", "F")
    mtz.add_column("SIGFP", "Q")
    hkl = gemmi.make_miller_array(mtz.cell, mtz.spacegroup, 4.0)
    mtz.set_data(np.column_stack([hkl, np.full(len(hkl), 100.0), np.ones(len(hkl))]))
    mtz.write_to_file(str(tmp_path / "x.mtz"))
    argv = [a for a in BASE if a not in ("-default_F", "100")]
    rc, _, err = run(argv + ["-mtz", "x.mtz", "-nimages", "2", "-floatfile", "f_#.bin",
                             "-write_expt", "sg.expt"], tmp_path)
    assert rc == 0, err
    hall = json.loads((tmp_path / "sg.expt").read_text())["crystal"][0][
        "space_group_hall_symbol"]
    assert hall.split() == gemmi.SpaceGroup("P 21 21 21").hall.split()   # P 2ac 2ab
    rc, _, err = run(BASE + ["-nimages", "2", "-floatfile", "g_#.bin", "-write_expt",
                             "p1.expt"], tmp_path)
    assert rc == 0, err
    assert json.loads((tmp_path / "p1.expt").read_text())["crystal"][0][
        "space_group_hall_symbol"].split() == ["P", "1"]

"""Multi-panel detectors (issue 11, acceptance 3 and 5): every panel of a multi-panel
render equals the single-panel render of that panel's geometry, made the ordinary way
(the flags of one flat detector), to 1e-12 of the maximum; the c-parity carryover follows
the documented (panel, slow, fast) order; bad panel sets are refused."""
import json

import numpy as np
import pytest

import nbsim
from nbsim.args import parse_args
from nbsim.errors import ConfigError
from nbsim.geometry import panels as pnl

TOL = 1e-12
PX_MM = 0.075

CRYSTAL = ["-cell", "70", "80", "90", "90", "90", "90", "-default_F", "100", "-N", "5",
           "-misset", "10", "20", "30", "-lambda", "1.0", "-nonoise", "-nopgm"]


def _render(flags, mode=None, panels=None, mask=None):
    parsed = parse_args(list(flags))
    cfg = parsed.config
    if mode is not None:
        cfg.mode = mode
    if panels is not None:
        cfg.detector.panels = panels
    if mask is not None:
        cfg.detector.mask = mask
    sim = nbsim.Simulator(cfg)
    return sim, sim.run()


def _module_flags(layout, k, xbeam_mm, ybeam_mm, pixel_mm):
    """One flat MOSFLM detector of module k's size where module k is: the beam centre
    moves by the module's offset in the frame (MOSFLM: Xbeam along slow, Ybeam along
    fast)."""
    f0, s0 = layout.tiles()[k]
    return ["-detpixels_f", str(layout.module_f), "-detpixels_s", str(layout.module_s),
            "-pixel", repr(pixel_mm), "-Xbeam", repr(xbeam_mm - s0 * pixel_mm),
            "-Ybeam", repr(ybeam_mm - f0 * pixel_mm)]


def _assert_close(got, want, what):
    scale = max(np.max(np.abs(want)), np.max(np.abs(got)))
    assert scale > 0, what
    err = np.max(np.abs(got - want)) / scale
    assert err <= TOL, f"{what}: max|diff|/max = {err:.3e}"


# ------------------------------------------------------------------------- presets
def test_eiger2_16m_layout():
    lay = pnl.PRESETS["eiger2_16m"]
    assert (lay.frame_fpixels, lay.frame_spixels) == (4 * 1028 + 3 * 12, 8 * 512 + 7 * 38)
    assert (lay.frame_fpixels, lay.frame_spixels) == (4148, 4362)
    tiles = lay.tiles()
    assert len(tiles) == 32
    assert tiles[0] == (0, 0) and tiles[1] == (1040, 0) and tiles[4] == (0, 550)
    assert tiles[31] == (3 * 1040, 7 * 550)
    assert tiles[31][0] + 1028 == 4148 and tiles[31][1] + 512 == 4362
    jf = pnl.PRESETS["jungfrau_4m"]
    assert len(jf.tiles()) == 8 and (jf.module_f, jf.module_s) == (1024, 512)
    assert (jf.frame_fpixels, jf.frame_spixels) == (2 * 1024 + 8, 4 * 512 + 3 * 36)


def test_preset_modules_do_not_overlap_and_tile_roundtrips():
    sim, _ = _render(CRYSTAL + ["-roi", "0", "0", "0", "0"], panels="eiger2_16m")
    ps = sim.plan.panels
    assert ps.shape == (32, 512, 1028)
    pnl.validate_panels(ps)                       # no overlap, no zero size
    img = np.random.default_rng(1).random(ps.shape)
    frame = ps.tiled(img)
    assert frame.shape == (4362, 4148)
    assert np.all(frame[:, 1028:1040] == 0) and np.all(frame[512:550, :] == 0)
    assert np.array_equal(ps.untiled(frame), img)
    # the flat index is panel-major
    assert ps.flat_index(3, 2, 1) == (3 * 512 + 2) * 1028 + 1


@pytest.mark.parametrize("mode", ["spec", "c-parity"])
def test_eiger2_16m_each_panel_equals_its_single_panel_render(mode):
    """The real preset (32 modules), a window of every module (-roi applies per panel),
    sensor thickness and a detector rotation: each module as rendered in the one launch
    equals a flat detector of the module's size placed by its beam centre."""
    lay = pnl.PRESETS["eiger2_16m"]
    geo = ["-distance", "120", "-oversample", "2", "-detector_thick", "450",
           "-detector_abs", "300", "-thicksteps", "2", "-detector_roty", "2.5", "-detector_rotz", "-1.5"]
    xb, yb = 161.0, 152.5
    roi = ["-roi", "500", "517", "250", "257"]
    sim, img = _render(CRYSTAL + geo + roi + ["-Xbeam", repr(xb), "-Ybeam", repr(yb)],
                       mode=mode, panels="eiger2_16m")
    assert img.shape == (32, 512, 1028)
    win = (slice(250, 258), slice(500, 518))
    assert np.all(img[:, :250] == 0) and np.all(img[:, :, 518:] == 0)
    scale = np.max(img)
    assert scale > 0
    for k in range(32):
        _, ref = _render(CRYSTAL + geo + roi + _module_flags(lay, k, xb, yb, PX_MM), mode=mode)
        err = np.max(np.abs(img[k][win] - ref[win])) / scale
        assert err <= TOL, f"module {k}: {err:.3e}"
        assert np.max(ref[win]) > 0


@pytest.mark.slow
def test_eiger2_16m_full_render_each_panel():
    """The whole 18 M-pixel preset, every pixel of every module."""
    lay = pnl.PRESETS["eiger2_16m"]
    geo = ["-distance", "150", "-oversample", "1"]
    xb, yb = 160.0, 150.0
    _, img = _render(CRYSTAL + geo + ["-Xbeam", repr(xb), "-Ybeam", repr(yb)],
                     panels="eiger2_16m")
    for k in range(32):
        _, ref = _render(CRYSTAL + geo + _module_flags(lay, k, xb, yb, PX_MM))
        _assert_close(img[k], ref, f"module {k}")


MINI = pnl.TiledLayout("mini", 2, 3, 10, 6, 2, 3, 1e-4)


def test_small_layout_all_pixels_general_kernel():
    """Every pixel of a small layout through the general (per-pixel) kernel: -dmin sends
    the render there; also the pre-pass of the c-parity carryover with -dmin."""
    geo = ["-distance", "20", "-oversample", "2", "-dmin", "20"]
    xb, yb = 1.0, 1.15
    for mode in ("spec", "c-parity"):
        _, img = _render(CRYSTAL + geo + ["-Xbeam", repr(xb), "-Ybeam", repr(yb)], mode=mode,
                         panels=MINI)
        assert img.shape == (6, 6, 10)
        assert np.any(img == 0) and np.any(img > 0)      # the cut bites somewhere
        for k in range(6):
            _, ref = _render(CRYSTAL + geo + _module_flags(MINI, k, xb, yb, 0.1), mode=mode)
            np.testing.assert_array_equal(img[k] == 0, ref == 0)
            _assert_close(img[k], ref, f"{mode} module {k}")


# ----------------------------------------------------------- c-parity carryover order
CARRY = CRYSTAL + ["-phi", "0", "-osc", "20", "-phisteps", "2", "-distance", "20",
                   "-oversample", "1", "-Xbeam", "1.0", "-Ybeam", "1.15"]
# the steady state the carryover leaves: both phi steps at the last nonzero step
STEADY = [a if a != "20" or CARRY[i - 1] != "-osc" else "0" for i, a in enumerate(CARRY)]
STEADY[STEADY.index("-phi") + 1] = "10"


def _module(k, flags, mode, mask=None):
    return _render(flags + _module_flags(MINI, k, 1.0, 1.15, 0.1), mode=mode, mask=mask)[1]


def test_carryover_first_subpath_is_first_in_panel_order():
    sim, img = _render(CARRY, mode="c-parity", panels=MINI)
    assert sim.plan.carry_needed and sim._carry_pixel == 0
    fresh = [_module(k, CARRY, "c-parity") for k in range(6)]
    steady = [_module(k, STEADY, "spec") for k in range(6)]
    # module 0 holds the run's first sub-path: exactly its own single-panel c-parity image
    _assert_close(img[0], fresh[0], "module 0")
    for k in range(1, 6):
        # later modules: the first pixel is not the run's first sub-path any more
        assert abs(fresh[k][0, 0] - steady[k][0, 0]) > 1e-6 * abs(steady[k][0, 0])
        _assert_close(img[k].ravel()[:1], steady[k].ravel()[:1], f"module {k} first pixel")
        _assert_close(img[k].ravel()[1:], fresh[k].ravel()[1:], f"module {k} other pixels")


def test_carryover_crosses_masked_panels():
    """Modules 0 and 1 masked out: the run's first sub-path is module 2's pixel (0, 0)."""
    mask = np.ones(MINI.modules_f * MINI.modules_s * 60, dtype=np.uint8).reshape(6, 6, 10)
    mask[:2] = 0
    mask[2, 0, 0] = 0                     # and module 2's first pixel: (0, 1) then
    sim, img = _render(CARRY, mode="c-parity", panels=MINI, mask=mask)
    assert sim._carry_pixel == (2 * 6 + 0) * 10 + 1
    assert np.all(img[:2] == 0) and img[2, 0, 0] == 0
    m2 = np.ones((6, 10), dtype=np.uint8)
    m2[0, 0] = 0
    fresh2 = _module(2, CARRY, "c-parity", mask=m2)
    _assert_close(img[2], fresh2, "module 2")
    steady3 = _module(3, STEADY, "spec")
    assert img[3, 0, 0] == pytest.approx(steady3[0, 0], rel=1e-12)


# ------------------------------------------------------------------- panel files
def _json_panels():
    """Three panels of 12 x 8 pixels of 0.1 mm, not coplanar (MOSFLM frame: beam +x)."""
    def rot_z(v, deg):
        c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
        return [c * v[0] - s * v[1], s * v[0] + c * v[1], v[2]]
    fast = [0.0, 0.0, 1.0]
    slow = [0.0, -1.0, 0.0]
    panels = [
        {"name": "centre", "origin": [0.03, 0.0004, -0.0006], "fast": fast, "slow": slow,
         "fpixels": 12, "spixels": 8, "pixel_size": 1e-4, "thickness": 3e-4},
        {"name": "tilted", "origin": rot_z([0.03, 0.0040, -0.0006], 20.0),
         "fast": fast, "slow": rot_z(slow, 20.0), "fpixels": 12, "spixels": 8,
         "pixel_size": 1e-4, "thickness": 3e-4},
        {"name": "bigpix", "origin": [0.031, 0.0005, 0.0021], "fast": [0.0, 0.6, 0.8],
         "slow": [0.0, -0.8, 0.6], "fpixels": 12, "spixels": 8, "pixel_size": 1.5e-4,
         "thickness": 3e-4},
    ]
    return {"format": "nbsim-panels", "version": 1, "panels": panels}


def _custom_flags(p):
    ps = pnl.panels_from_dict({"panels": [p]})
    q = ps.panels[0]
    o = q.odet()
    vec = lambda v: [repr(float(x)) for x in v]  # noqa: E731
    return (["-fdet_vector"] + vec(q.fast) + ["-sdet_vector"] + vec(q.slow)
            + ["-odet_vector"] + vec(o) + ["-pix0_vector"] + vec(q.origin)
            + ["-beam_vector", "1", "0", "0", "-polar_vector", "0", "0", "1",
               "-spindle_axis", "0", "0", "1", "-detpixels_f", str(q.fpixels),
               "-detpixels_s", str(q.spixels), "-pixel", repr(q.pixel_size * 1e3)])


SENSOR = ["-oversample", "2", "-detector_abs", "250", "-thicksteps", "3"]


def test_panel_file_each_panel_equals_single_panel(tmp_path):
    doc = _json_panels()
    path = tmp_path / "panels.json"
    path.write_text(json.dumps(doc))
    ps = pnl.load_panels_json(str(path))
    assert ps.shape == (3, 8, 12)
    _, img = _render(CRYSTAL + SENSOR + ["-detector_thick", "300"], panels=ps)
    assert img.shape == (3, 8, 12)
    for k, p in enumerate(doc["panels"]):
        _, ref = _render(CRYSTAL + SENSOR + ["-detector_thick", "300"] + _custom_flags(p))
        _assert_close(img[k], ref, f"panel {k}")


def test_panel_file_via_flag_and_cli(tmp_path):
    from nbsim.cli.main import main
    path = tmp_path / "panels.json"
    path.write_text(json.dumps(_json_panels()))
    parsed = parse_args(CRYSTAL + SENSOR + ["-panels", str(path)])
    assert isinstance(parsed.config.detector.panels, pnl.PanelSet)
    img = nbsim.Simulator(parsed.config).run()
    out = tmp_path / "f.bin"
    rc = main(CRYSTAL + SENSOR + ["-panels", str(path), "-floatfile", str(out),
                                  "-intfile", str(tmp_path / "i.img")])
    assert rc == 0
    got = np.fromfile(out, dtype=np.float32).reshape(3, 8, 12)
    np.testing.assert_array_equal(got, img.astype(np.float32))


# ------------------------------------------------------------------- bad inputs
def _bad(doc, tmp_path, capsys):
    from nbsim.cli.main import main
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "never.bin"
    rc = main(CRYSTAL + ["-panels", str(path), "-floatfile", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("nbsim: error:"), err
    assert "bad.json" in err[0]
    assert not out.exists()
    return err[0]


def test_overlapping_panels_refused(tmp_path, capsys):
    doc = _json_panels()
    doc["panels"][1] = dict(doc["panels"][0], name="copy",
                            origin=[0.03, 0.0004 - 3e-4, -0.0006 + 2e-4])
    msg = _bad(doc, tmp_path, capsys)
    assert "overlapping" in msg and "panels 0 and 1" in msg


def test_overlap_seen_from_the_sample_refused():
    """A panel further away that hides behind another (same directions) overlaps."""
    doc = _json_panels()
    p0 = doc["panels"][0]
    far = dict(p0, name="behind", origin=[2 * x for x in p0["origin"]], pixel_size=2e-4)
    with pytest.raises(ConfigError, match="overlapping"):
        pnl.panels_from_dict({"panels": [p0, far]})
    # touching edges are not an overlap
    side = dict(p0, name="side", origin=[0.03, 0.0004, -0.0006 + 12 * 1e-4])
    pnl.panels_from_dict({"panels": [p0, side]})


@pytest.mark.parametrize("key,value,why", [("fpixels", 0, "zero-size panel"),
                                           ("spixels", -3, "zero-size panel"),
                                           ("pixel_size", 0.0, "zero-size pixels")])
def test_zero_size_panels_refused(tmp_path, capsys, key, value, why):
    doc = _json_panels()
    doc["panels"][2][key] = value
    msg = _bad(doc, tmp_path, capsys)
    assert why in msg and "panel 2" in msg


@pytest.mark.parametrize("edit,why", [
    (lambda d: d["panels"][0].pop("origin"), "missing 'origin'"),
    (lambda d: d["panels"][0].update(fast=[0, 0, 0]), "zero vector"),
    (lambda d: d["panels"][0].update(slow=[0, 0, 1]), "not perpendicular"),
    (lambda d: d["panels"][1].update(fpixels=13), "same pixel counts"),
    (lambda d: d["panels"][0].update(colour="red"), "unknown key 'colour'"),
    (lambda d: d.update(panels=[]), "empty"),
    (lambda d: d["panels"][0].update(mask=[[0, 20, 0, 1]]), "outside the panel"),
    (lambda d: d["panels"][0].update(normal=[-1, 0, 0]), "points towards the sample"),
    (lambda d: d["panels"][0].update(origin=[0.0, 0.0004, -0.0006]), "passes through"),
])
def test_bad_panel_files_refused(tmp_path, capsys, edit, why):
    doc = _json_panels()
    edit(doc)
    assert why in _bad(doc, tmp_path, capsys)


def test_not_json_and_unknown_preset(tmp_path, capsys):
    from nbsim.cli.main import main
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    rc = main(CRYSTAL + ["-panels", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not valid JSON" in err[0]
    rc = main(CRYSTAL + ["-detector_preset", "pilatus_99m"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "eiger2_16m" in err[0]


def test_panel_mask_rectangles():
    doc = _json_panels()
    doc["panels"][1]["mask"] = [[0, 3, 0, 1], [11, 11, 7, 7]]
    ps = pnl.panels_from_dict(doc)
    _, img = _render(CRYSTAL + SENSOR + ["-detector_thick", "300"], panels=ps)
    assert np.all(img[1, 0:2, 0:4] == 0) and img[1, 7, 11] == 0
    doc["panels"][1].pop("mask")
    _, full = _render(CRYSTAL + SENSOR + ["-detector_thick", "300"],
                      panels=pnl.panels_from_dict(doc))
    keep = np.ones_like(full, dtype=bool)
    keep[1, 0:2, 0:4] = False
    keep[1, 7, 11] = False
    np.testing.assert_array_equal(img[keep], full[keep])


# ------------------------------------------------------------ DIALS experiments
# rows: nanoBragg x, y, z in DIALS X, Y, Z (nbsim.inputs.expt); DIALS = M^T nanoBragg
_M = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def _expt_doc(doc):
    """The -panels JSON ``doc`` as a DIALS experiment list (dxtbx's frame, mm), with
    MOSFLM's beam (+x), spindle (+z) and an unpolarized beam (Kahn factor 0)."""
    d = lambda v, s=1.0: [float(x) for x in (_M.T @ np.asarray(v, float)) * s]  # noqa: E731
    panels = [{"name": p["name"], "type": "SENSOR_PAD", "fast_axis": d(p["fast"]),
               "slow_axis": d(p["slow"]), "origin": d(p["origin"], 1e3),
               "image_size": [p["fpixels"], p["spixels"]],
               "pixel_size": [p["pixel_size"] * 1e3] * 2, "thickness": p["thickness"] * 1e3,
               "mu": 1.0 / 0.25, "mask": []} for p in doc["panels"]]
    return {"__id__": "ExperimentList",
            "experiment": [{"__id__": "Experiment", "beam": 0, "detector": 0,
                            "goniometer": 0}],
            "beam": [{"__id__": "monochromatic", "direction": [0.0, 0.0, 1.0],
                      "wavelength": 1.0, "polarization_normal": [0.0, -1.0, 0.0],
                      "polarization_fraction": 0.5}],
            "detector": [{"panels": panels}],
            "goniometer": [{"rotation_axis": [1.0, 0.0, 0.0],
                            "fixed_rotation": [1, 0, 0, 0, 1, 0, 0, 0, 1],
                            "setting_rotation": [1, 0, 0, 0, 1, 0, 0, 0, 1]}]}


def test_dials_experiment_panels_equal_panel_file(tmp_path):
    doc = _json_panels()
    (tmp_path / "p.json").write_text(json.dumps(doc))
    (tmp_path / "x.expt").write_text(json.dumps(_expt_doc(doc)))
    crystal = [a for a in CRYSTAL if a not in ("-lambda", "1.0")]
    _, ref = _render(CRYSTAL + SENSOR + ["-panels", str(tmp_path / "p.json")])
    sim, img = _render(crystal + ["-oversample", "2", "-thicksteps", "3",
                                  "-expt", str(tmp_path / "x.expt")])
    ps = sim.plan.panels
    assert ps is not None and ps.shape == (3, 8, 12)
    assert [p.name for p in ps.panels] == ["centre", "tilted", "bigpix"]
    assert img.shape == ref.shape == (3, 8, 12)
    _assert_close(img, ref, "expt vs -panels")
    # the image depends on the panels' placement (the test can fail)
    moved = _expt_doc(doc)
    moved["detector"][0]["panels"][2]["origin"][1] += 0.05
    (tmp_path / "y.expt").write_text(json.dumps(moved))
    _, other = _render(crystal + ["-oversample", "2", "-thicksteps", "3",
                                  "-expt", str(tmp_path / "y.expt")])
    assert np.max(np.abs(other[2] - ref[2])) > 1e-6 * np.max(ref)
    _assert_close(other[:2], ref[:2], "unmoved panels")


# ---------------------------------------------------------------------- NeXus
def test_nexus_one_module_per_panel(tmp_path):
    """Each panel's NXdetector_module, read the way dxtbx reads it (nxmx), gives the pixel
    centres the kernel renders for that panel, and that panel's rows of the data."""
    h5py = pytest.importorskip("h5py")
    pytest.importorskip("hdf5plugin")
    nxmx = pytest.importorskip("nxmx")
    from nbsim.io.labframe import mcstas_rotation
    from nbsim.io.nexus import NexusSink
    from nbsim.io.sinks import DatasetInfo, FrameScan
    from nbsim.physics import subpixel_position
    ps = pnl.panels_from_dict(_json_panels())
    sim, img = _render(CRYSTAL + ["-oversample", "1"], panels=ps)
    plan = sim.plan
    path = tmp_path / "p.h5"
    sink = NexusSink(path)
    sink.open(DatasetInfo(plan=plan, nframes=1, scans=[FrameScan(0.0, 0.1)],
                          dtype="float32", command=("nbsim",)))
    sink.write(0, img.astype(np.float32))
    sink.close()
    det = plan.detector
    R = mcstas_rotation(det.beam, det.spindle, det.polar)
    with h5py.File(path, "r", swmr=True) as fh:
        entry = nxmx.NXmx(fh).entries[0]
        modules = entry.instruments[0].detectors[0].modules
        assert len(modules) == 3
        data = fh["entry/data/data"][0]
        assert data.shape == (3 * 8, 12)
        for k, (m, p) in enumerate(zip(modules, ps.panels)):
            assert [int(v) for v in m.data_origin] == [k * 8, 0]
            assert [int(v) for v in m.data_size] == [8, 12]
            chain = nxmx.get_dependency_chain(m.fast_pixel_direction.depends_on)
            origin_mm = nxmx.get_cumulative_transformation(chain)[0, :3, 3]
            pf = m.fast_pixel_direction[()].to("mm").magnitude.item()
            fv = np.asarray(m.fast_pixel_direction.vector, dtype=np.float64)
            sv = np.asarray(m.slow_pixel_direction.vector, dtype=np.float64)
            s, f = np.mgrid[0:8, 0:12].astype(np.float64)
            got = (origin_mm + (f[..., None] + 0.5) * pf * fv
                   + (s[..., None] + 0.5) * pf * sv) * 1e-3
            px = p.pixel_size
            o = p.odet()
            _, _, x, y, z = subpixel_position(px, f, s, px / 2.0, 0.0, *p.fast, *p.slow, *o,
                                              *p.origin)
            want = np.stack([x, y, z], axis=-1) @ R.T
            assert np.max(np.abs(got - want)) < 1e-12
            np.testing.assert_array_equal(data[k * 8:(k + 1) * 8], img[k].astype(np.float32))


# ------------------------------------------------------------- float32 and CUDA
def test_float32_lanes_kernel_panels():
    """-dtype float32 (the float32 SIMD kernel): each module as its single-panel render."""
    geo = ["-distance", "20", "-oversample", "2", "-dtype", "float32"]
    _, img = _render(CRYSTAL + geo + ["-Xbeam", "1.0", "-Ybeam", "1.15"], panels=MINI)
    for k in range(6):
        _, ref = _render(CRYSTAL + geo + _module_flags(MINI, k, 1.0, 1.15, 0.1))
        err = np.max(np.abs(img[k] - ref)) / np.max(ref)
        assert err <= 1e-6, f"module {k}: {err:.3e}"


_CUDA_WORKER = r"""
import json, os, sys
import numpy as np
sys.path[:0] = [os.environ["NBSIM_ROOT"], os.path.join(os.environ["NBSIM_ROOT"], "tests")]
from test_panels import CRYSTAL, SENSOR, _json_panels, _render, _custom_flags
from nbsim.geometry import panels as pnl
doc = _json_panels()
flags = CRYSTAL + SENSOR + ["-detector_thick", "300"]
sim, img = _render(flags + ["-device", "cuda"], panels=pnl.panels_from_dict(doc))
assert sim.config.device == "cuda"
_, cpu = _render(flags, panels=pnl.panels_from_dict(doc))
refs = [_render(flags + _custom_flags(p))[1] for p in doc["panels"]]
print(json.dumps({"shape": list(img.shape),
                  "vs_cpu": float(np.max(np.abs(img - cpu)) / np.max(cpu)),
                  "vs_single": [float(np.max(np.abs(img[k] - r)) / np.max(r))
                                for k, r in enumerate(refs)]}))
"""


@pytest.mark.slow
def test_cuda_kernel_panels_in_simulator():
    """The CUDA kernel (Numba's CUDA simulator, in a subprocess: the variable must be set
    before numba.cuda is imported) renders all panels in one launch like the CPU."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    pytest.importorskip("numba.cuda")
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", NBSIM_ROOT=root)
    out = subprocess.run([sys.executable, "-c", _CUDA_WORKER], env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["shape"] == [3, 8, 12]
    assert res["vs_cpu"] <= 1e-12
    assert max(res["vs_single"]) <= 1e-12


# ----------------------------------------------------------------- CLI outputs
def test_cli_tiled_frame_from_panel_file_with_layout(tmp_path):
    """A panel file with 'frame' and 'tile' (here: the MINI layout written out): the CLI's
    float and SMV files hold the tiled frame with zero gaps and the frame's size."""
    from nbsim.cli.main import main
    from nbsim.io.smv import read_smv
    geo = ["-distance", "20", "-oversample", "1", "-Xbeam", "1.0", "-Ybeam", "1.15"]
    sim, img = _render(CRYSTAL + geo, panels=MINI)
    doc = pnl.panels_to_dict(sim.plan.panels)
    assert doc["frame"] == [MINI.frame_fpixels, MINI.frame_spixels]
    (tmp_path / "mini.json").write_text(json.dumps(doc))
    back = pnl.load_panels_json(str(tmp_path / "mini.json"))
    _, img2 = _render(CRYSTAL + geo, panels=back)
    _assert_close(img2, img, "JSON round trip")
    out = tmp_path / "f.bin"
    rc = main(CRYSTAL + geo + ["-panels", str(tmp_path / "mini.json"), "-floatfile",
                               str(out), "-intfile", str(tmp_path / "i.img"), "-noprogress"])
    assert rc == 0
    frame = np.fromfile(out, dtype=np.float32).reshape(MINI.frame_spixels, MINI.frame_fpixels)
    np.testing.assert_array_equal(frame, sim.plan.panels.tiled(img).astype(np.float32))
    assert np.all(frame[:, 10:12] == 0) and np.all(frame[6:9] == 0)
    hdr, ints = read_smv(str(tmp_path / "i.img"))
    assert ints.shape == (MINI.frame_spixels, MINI.frame_fpixels)
    assert int(hdr["SIZE1"]) == MINI.frame_fpixels and int(hdr["SIZE2"]) == MINI.frame_spixels
    # the frame header's beam centre is the frame detector's (the flags')
    det = sim.plan.frame_detector
    assert float(hdr["PIXEL_SIZE"]) == pytest.approx(0.1)
    assert det.fpixels == MINI.frame_fpixels


def test_cli_refuses_printout_with_panels(tmp_path, capsys):
    from nbsim.cli.main import main
    rc = main(CRYSTAL + ["-detector_preset", "jungfrau_4m", "-roi", "0", "1", "0", "1",
                         "-printout_pixel", "0", "0", "-floatfile", str(tmp_path / "f.bin")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "-printout" in err[0]
    assert not (tmp_path / "f.bin").exists()


def test_jungfrau_4m_each_module_equals_its_single_panel_render():
    lay = pnl.PRESETS["jungfrau_4m"]
    geo = ["-distance", "90", "-oversample", "1"]
    xb, yb = 80.0, 78.0
    roi = ["-roi", "480", "499", "240", "251"]
    _, img = _render(CRYSTAL + geo + roi + ["-Xbeam", repr(xb), "-Ybeam", repr(yb)],
                     panels="jungfrau_4m")
    assert img.shape == (8, 512, 1024)
    win = (slice(240, 252), slice(480, 500))
    for k in range(8):
        _, ref = _render(CRYSTAL + geo + roi + _module_flags(lay, k, xb, yb, PX_MM))
        _assert_close(img[k][win], ref[win], f"module {k}")


def test_frame_mask_for_a_layout_and_bad_mask_shape():
    geo = CRYSTAL + ["-distance", "20", "-oversample", "1", "-Xbeam", "1.0", "-Ybeam", "1.15"]
    _, full = _render(geo, panels=MINI)
    frame_mask = np.ones((MINI.frame_spixels, MINI.frame_fpixels), dtype=np.uint8)
    frame_mask[7:11, 9:14] = 0            # across a gap: module 2 / 3 corner pixels
    _, img = _render(geo, panels=MINI, mask=frame_mask)
    want = full.copy()
    want[2, 0:2, 9] = 0                   # module 2 starts at frame (0, 9)
    want[3, 0:2, 0:2] = 0                 # module 3 starts at frame (12, 9)
    np.testing.assert_array_equal(img, want)
    with pytest.raises(ConfigError, match="must have 6 x 6 x 10"):
        _render(geo, panels=MINI, mask=np.ones((5, 5), dtype=np.uint8))
    with pytest.raises(ConfigError, match="overlapping"):
        _render(geo, panels=pnl.TiledLayout("bad", 2, 1, 10, 6, -3, 0, 1e-4))


# ------------------------------------------------- c-parity tricubic switch order
TWO = pnl.TiledLayout("two", 2, 1, 10, 8, 2, 0, 1e-4)


@pytest.mark.slow          # a unique kernel variant (~30 s cold on CI's 2 cores)
def test_cparity_tricubic_switch_crosses_panels(tmp_path):
    """C turns interpolation off for the rest of the run at the first out-of-range
    evaluation; with panels 'the rest' is (panel, slow, fast) order.  Module 0 (far from
    the beam) goes out of range at its first pixel, so module 1 (near the beam, all in
    range) is nearest-neighbour in c-parity mode and interpolated in spec mode."""
    import itertools
    hkl = tmp_path / "small.hkl"
    hkl.write_text("".join(f"{h} {k} {l} {10 + (h * 7 + k * 3 + l * 5) % 11}\n"
                           for h, k, l in itertools.product(range(-4, 5), repeat=3)))
    flags = ["-cell", "30", "30", "30", "90", "90", "90", "-hkl", str(hkl), "-N", "3",
             "-interpolate", "-lambda", "1", "-distance", "20", "-oversample", "1",
             "-nonoise", "-nopgm"]
    frame = flags + ["-Xbeam", "0.4", "-Ybeam", "1.7"]

    def module(k, extra, mode):
        return _render(flags + extra + _module_flags(TWO, k, 0.4, 1.7, 0.1), mode=mode)[1]

    sim, img = _render(frame, mode="c-parity", panels=TWO)
    assert sim._switch_pixel == 0
    _assert_close(img[0], module(0, [], "c-parity"), "module 0")
    nearest1 = module(1, ["-nointerpolate"], "spec")
    interp1 = module(1, [], "c-parity")        # alone, module 1 never leaves the grid
    assert np.max(np.abs(interp1 - nearest1)) > 1e-3 * np.max(nearest1)
    _assert_close(img[1], nearest1, "module 1 after the switch")
    _, spec = _render(frame, mode="spec", panels=TWO)
    _assert_close(spec[1], module(1, [], "spec"), "spec module 1")
    _assert_close(spec[1], interp1, "spec module 1 interpolated")


# ------------------------------------------------------------------------ CBF
def _cbf_beam_xy(path):
    text = open(path, "rb").read(4096).decode("latin-1")
    line = next(l for l in text.splitlines() if l.startswith("# Beam_xy"))
    bx, by = line.split("(")[1].split(")")[0].split(",")
    return float(bx), float(by)


def test_cbf_one_file_per_panel_or_tiled_frame(tmp_path):
    fabio = pytest.importorskip("fabio")
    from nbsim.io.cbf import CbfSink
    from nbsim.io.labframe import beam_centre_px
    from nbsim.io.sinks import DatasetInfo, FrameScan
    # a panel file without a layout: one file per panel, each with its panel's header
    ps = pnl.panels_from_dict(_json_panels())
    sim, img = _render(CRYSTAL + ["-oversample", "1"], panels=ps)
    counts = np.rint(img * 10).astype(np.int32)
    sink = CbfSink(str(tmp_path / "scan_#####.cbf"))
    sink.open(DatasetInfo(plan=sim.plan, nframes=1, scans=[FrameScan(0.0, 0.1)]))
    sink.write(0, counts)
    sink.close()
    for k in range(3):
        path = tmp_path / f"scan_00001_p{k:02d}.cbf"
        assert np.array_equal(fabio.open(str(path)).data, counts[k])
        bx, by, _ = beam_centre_px(pnl.panel_detector(sim.plan, k))
        got = _cbf_beam_xy(path)
        assert got[0] == pytest.approx(bx, abs=1e-3) and got[1] == pytest.approx(by, abs=1e-3)
    # a layout: one file holding the tiled frame, the frame detector's beam centre
    geo = CRYSTAL + ["-distance", "20", "-oversample", "1", "-Xbeam", "1.0", "-Ybeam", "1.15"]
    sim, img = _render(geo, panels=MINI)
    counts = np.rint(img * 10).astype(np.int32)
    sink = CbfSink(str(tmp_path / "mini_#####.cbf"))
    sink.open(DatasetInfo(plan=sim.plan, nframes=1, scans=[FrameScan(0.0, 0.1)]))
    sink.write(0, counts)
    sink.close()
    data = fabio.open(str(tmp_path / "mini_00001.cbf")).data
    assert np.array_equal(data, sim.plan.panels.tiled(counts, fill=-1))   # gaps: -1
    bx, by, _ = beam_centre_px(sim.plan.frame_detector)
    got = _cbf_beam_xy(tmp_path / "mini_00001.cbf")
    assert got[0] == pytest.approx(bx, abs=1e-3) and got[1] == pytest.approx(by, abs=1e-3)
    # the beam centre of the MOSFLM frame: Ybeam along fast, Xbeam along slow (+ half)
    assert bx == pytest.approx(1.15 / 0.1 + 0.5) and by == pytest.approx(1.0 / 0.1 + 0.5)

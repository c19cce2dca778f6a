"""Composition (issue 17): an all-pairs covering design over the features of ``nbsim``.

Axes (``AXES``): the job (single image, rotation scan, random stills, stills from an
orientation file), the detector (flat, curved, thick sensor, the two presets with a
small ROI, a panels JSON, one- and two-panel DIALS ``.expt``), the structure factors
(-default_F, HKL text, MTZ, SF-mmCIF, -model, anomalous MTZ), the beam (mosaic,
divergence, dispersion, source file, a seeded SASE spectrum per frame, radiation damage
per frame), the detector effects (-nonoise, noise, -stol,
noisify flags, both), every output kind, both modes, both dtypes, and where it runs
(in process, Dask ``-workers 2``, ``-resume`` of a job cut short, the single image
streamed in row blocks).  ``allpairspy`` builds the cases; ``CONSTRAINTS`` are the
combinations that cannot be asked for (e.g. ``-orientations`` is the stills' file,
Dask and ``-resume`` run datasets, streaming is the single-image path); the combinations
that *can* be typed but mean nothing are refused at parse time and tested as such
(``REFUSED``, listed in docs/validation.md).

Every case runs the real command (``python -m nbsim``) in its own directory and checks:
exit status 0, nothing on stderr but notes, each output asked for readable by
h5py / nxmx / fabio / Pillow, of the detector's size, without NaN, and the same bytes as
the single-image run of the same frame (frame i of a rotation = ``-phi i*osc``, a random
still = ``-misset random -misset_seed frame_seed(M, i, "misset")``, a still of the file =
``-misset x y z``, noise seeded ``-seed frame_seed(S, i)``).  Case ids name the axis
values (``pytest tests/test_composition.py -k eiger``), so a failing set can be re-run.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import OrderedDict
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

allpairspy = pytest.importorskip("allpairspy")
gemmi = pytest.importorskip("gemmi")

from nbsim.dataset import frame_seed  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WATER = REPO / "tests" / "fixtures" / "nonbragg" / "water.stol"

AXES = OrderedDict([
    ("job", ["single", "rotation", "stills", "orient", "vary", "lattices"]),
    ("det", ["flat", "curved", "thick", "eiger", "jungfrau", "panels", "expt1", "expt2"]),
    ("F", ["defF", "hkl", "mtz", "sfcif", "model", "anom"]),
    ("beam", ["plain", "mosaic", "div", "disp", "srcfile", "sase", "dose"]),
    # (-stol with the noisify chain: tests/test_dataset_effects.py; CI's time)
    ("fx", ["nonoise", "noise", "stol", "noisify", "ice", "stop+bad", "counting",
            "jungfrau"]),
    ("out", ["float", "int", "noise", "pgm", "cbf", "nexus", "png", "write_hkl", "defaults",
             "write_expt", "truth"]),
    ("mode", ["spec", "cpar"]),
    ("dtype", ["f64", "f32"]),
    ("exec", ["inproc", "dask", "resume", "streamed"]),
])
SINGLE_ONLY_OUT = {"float", "int", "noise", "pgm", "write_hkl", "defaults"}
DATASET_OUT = {"cbf", "nexus", "png"}       # these flags make a dataset (1 frame here)
FLAT = {"flat", "curved", "thick"}
PER_FRAME_BEAM = {"sase", "dose"}           # dataset flags (a single image: 1 frame)
STILLS = {"stills", "orient", "vary", "lattices"}
# -lattices 2: frame i is the sum of two single renders, so there is no single run to
# compare every file with; the float image (float32 of the float64 sum), the counts
# drawn from it, the NeXus file, the .expt and the truth are checked (one panel)
LATTICE_OUT = {"float", "nexus", "write_expt", "truth"}
LATTICE_DET = {"flat", "curved", "thick", "expt1"}


def _allowed(a, va, b, vb) -> bool:
    """Pairwise constraints (each ``if a = va then b must ...``), both ways round."""
    for (x, vx), (y, vy) in (((a, va), (b, vb)), ((b, vb), (a, va))):
        if x == "exec" and vx in ("dask", "resume"):
            # a job of frames: Dask and the job record are the dataset's
            if y == "job" and vy == "single":
                return False
            if y == "out" and vy == "defaults":
                return False
        if x == "exec" and vx == "streamed":
            # the single-image command streams row blocks of one flat panel; -stol and
            # the noisify chain need the whole image (refused, docs/architecture.md)
            if y == "job" and vy != "single":
                return False
            if y == "out" and vy not in SINGLE_ONLY_OUT:
                return False
            if y == "det" and vy not in FLAT:
                return False
            if y == "fx" and vy not in ("nonoise", "noise"):
                return False
        if x == "out" and vx == "defaults" and y == "job" and vy != "single":
            return False                    # a dataset writes only what it is asked for
        if x == "beam" and vx in PER_FRAME_BEAM:
            # per-frame spectra and damage are the dataset's: it writes only what it is
            # asked for, and the streamed single image is not a dataset
            if y == "out" and vy == "defaults":
                return False
            if y == "exec" and vy == "streamed":
                return False
        if x == "out" and vx == "write_hkl" and y == "F" and vy in ("defF", "hkl"):
            return False                    # the P1 list of -mtz / -sfcif / -model
        if x == "out" and vx == "noise" and y == "fx" and vy == "nonoise":
            return False
        if x == "out" and vx in ("nexus", "write_expt") and y == "det" and vy == "curved":
            return False                    # refused: see REFUSED
        if x == "job" and vx == "lattices":
            if (y == "out" and vy not in LATTICE_OUT) or (y == "det" and vy not in
                                                           LATTICE_DET):
                return False
            if y == "fx" and vy not in ("nonoise", "noise"):
                return False
            if y == "beam" and vy in PER_FRAME_BEAM:
                return False                # the lattice reference sums plain renders
        if x == "job" and vx == "vary" and y == "beam" and vy == "sase":
            return False                    # -vary lambda moves the SASE centre
    return True


def _row_ok(row) -> bool:
    keys = list(AXES)[:len(row)]
    return all(_allowed(keys[i], row[i], keys[j], row[j])
               for i, j in combinations(range(len(row)), 2))


def _pairs(c):
    return {(a, c[a], b, c[b]) for a, b in combinations(AXES, 2)}


def _all_allowed_pairs():
    return {(a, va, b, vb) for a, b in combinations(AXES, 2) for va in AXES[a]
            for vb in AXES[b] if _allowed(a, va, b, vb)}


def design():
    """allpairspy's cases, then (its greedy search under a filter can leave some allowed
    pairs out) one case per pair still missing: the pair, the other axes filled in
    order with the allowed value covering the most pairs not yet seen."""
    cases = [dict(zip(AXES, r)) for r in allpairspy.AllPairs(list(AXES.values()),
                                                              filter_func=_row_ok)]
    seen = set().union(*map(_pairs, cases))
    for pair in sorted(_all_allowed_pairs()):
        if pair in seen:
            continue
        a, va, b, vb = pair
        row = {a: va, b: vb}
        for k in AXES:
            if k in row:
                continue
            ok = [v for v in AXES[k] if all(_allowed(k, v, x, row[x]) for x in row)]
            row[k] = max(ok, key=lambda v: len({(x, row[x], k, v) if list(AXES).index(x)
                                                < list(AXES).index(k) else
                                                (k, v, x, row[x]) for x in row} - seen))
        row = {k: row[k] for k in AXES}
        cases.append(row)
        seen |= _pairs(row)
    return cases


CASES = design()


def _case_id(c):
    return "-".join(c[k] for k in AXES)


def test_design_covers_every_allowed_pair():
    keys = list(AXES)
    seen = {(a, c[a], b, c[b]) for c in CASES for a, b in combinations(keys, 2)}
    missing = [(a, va, b, vb) for a, b in combinations(keys, 2)
               for va in AXES[a] for vb in AXES[b]
               if _allowed(a, va, b, vb) and (a, va, b, vb) not in seen]
    assert not missing, missing[:10]
    assert all(_row_ok([c[k] for k in keys]) for c in CASES)
    assert sum(c["exec"] == "dask" for c in CASES) <= 18
    assert len(CASES) <= 125


# ------------------------------------------------------------------ shared inputs
CELL = (31.0, 37.0, 43.0, 90.0, 90.0, 90.0)
MISSETS = [(10.0, 20.0, 30.0), (-5.0, 40.0, 12.0)]
_M = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])   # DIALS = M^T nb


def _panels_doc():
    """Three 12 x 8 panels (0.1 mm; one tilted, one of 0.15 mm pixels), as test_panels."""
    def rot_z(v, deg):
        c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
        return [c * v[0] - s * v[1], s * v[0] + c * v[1], v[2]]
    fast, slow = [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]
    return {"format": "nbsim-panels", "version": 1, "panels": [
        {"name": "centre", "origin": [0.03, 0.0004, -0.0006], "fast": fast, "slow": slow,
         "fpixels": 12, "spixels": 8, "pixel_size": 1e-4, "thickness": 3e-4},
        {"name": "tilted", "origin": rot_z([0.03, 0.0040, -0.0006], 20.0), "fast": fast,
         "slow": rot_z(slow, 20.0), "fpixels": 12, "spixels": 8, "pixel_size": 1e-4,
         "thickness": 3e-4},
        {"name": "bigpix", "origin": [0.031, 0.0005, 0.0021], "fast": [0.0, 0.6, 0.8],
         "slow": [0.0, -0.8, 0.6], "fpixels": 12, "spixels": 8, "pixel_size": 1.5e-4,
         "thickness": 3e-4}]}


def _expt_doc(panels):
    d = lambda v, s=1.0: [float(x) for x in (_M.T @ np.asarray(v, float)) * s]  # noqa: E731
    return {"__id__": "ExperimentList",
            "experiment": [{"__id__": "Experiment", "beam": 0, "detector": 0,
                            "goniometer": 0}],
            "beam": [{"__id__": "monochromatic", "direction": [0.0, 0.0, 1.0],
                      "wavelength": 1.0, "polarization_normal": [0.0, -1.0, 0.0],
                      "polarization_fraction": 0.5}],
            "detector": [{"panels": [
                {"name": p["name"], "type": "SENSOR_PAD", "fast_axis": d(p["fast"]),
                 "slow_axis": d(p["slow"]), "origin": d(p["origin"], 1e3),
                 "image_size": [p["fpixels"], p["spixels"]],
                 "pixel_size": [p["pixel_size"] * 1e3] * 2,
                 "thickness": p["thickness"] * 1e3, "mu": 4.0, "mask": []}
                for p in panels]}],
            "goniometer": [{"rotation_axis": [1.0, 0.0, 0.0],
                            "fixed_rotation": [1, 0, 0, 0, 1, 0, 0, 0, 1],
                            "setting_rotation": [1, 0, 0, 0, 1, 0, 0, 0, 1]}]}


def _write_mtz(path, anomalous=False):
    rng = np.random.default_rng(3)
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup("P 21 21 21")
    mtz.set_cell_for_all(gemmi.UnitCell(*CELL))
    mtz.add_dataset("sim")
    hkl = gemmi.make_miller_array(mtz.cell, mtz.spacegroup, 1.8)
    if anomalous:
        # a real anomalous MTZ: centric reflections (one index 0 here, which is all the
        # low-angle spots of an unrotated crystal) have F(+) = F(-)
        mtz.add_column("F(+)", "G")
        mtz.add_column("F(-)", "G")
        fplus = rng.uniform(10, 100, len(hkl))
        fminus = rng.uniform(10, 100, len(hkl))
        centric = mtz.spacegroup.operations().centric_flag_array(hkl)
        fminus[centric] = fplus[centric]
        cols = [fplus, fminus]
    else:
        mtz.add_column("FP", "F")
        mtz.add_column("SIGFP", "Q")
        cols = [rng.uniform(10, 100, len(hkl)), np.ones(len(hkl))]
    mtz.set_data(np.column_stack([hkl] + cols))
    mtz.write_to_file(str(path))
    return hkl, cols[0]


def _write_model(path):
    rng = np.random.default_rng(4)
    st = gemmi.Structure()
    st.cell = gemmi.UnitCell(*CELL)
    st.spacegroup_hm = "P 21 21 21"
    model, chain = gemmi.Model("1"), gemmi.Chain("A")
    for i in range(12):
        res = gemmi.Residue()
        res.name, res.seqid = "UNK", gemmi.SeqId(i + 1, " ")
        atom = gemmi.Atom()
        el = ("C", "N", "O", "S")[i % 4]
        atom.name, atom.element = el, gemmi.Element(el)
        atom.pos = st.cell.orthogonalize(gemmi.Fractional(*rng.random(3)))
        atom.b_iso, atom.occ = 15.0, 1.0
        res.add_atom(atom)
        chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    st.write_pdb(str(path))


INPUTS = []          # the session's input folder (set by the fixture)


@pytest.fixture(scope="session")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("composition_inputs")
    hkl, F = _write_mtz(d / "f.mtz")
    _write_mtz(d / "anom.mtz", anomalous=True)
    rows = "".join(f"{h} {k} {l} {f!r} 1.0\n" for (h, k, l), f in zip(hkl.tolist(),
                                                                     F.tolist()))
    (d / "f.cif").write_text(
        "data_r0000sf\n_cell.length_a 31\n_cell.length_b 37\n_cell.length_c 43\n"
        "_cell.angle_alpha 90\n_cell.angle_beta 90\n_cell.angle_gamma 90\n"
        "_symmetry.space_group_name_H-M 'P 21 21 21'\nloop_\n_refln.index_h\n"
        "_refln.index_k\n_refln.index_l\n_refln.F_meas_au\n_refln.F_meas_sigma_au\n"
        + rows)
    rng = np.random.default_rng(5)
    (d / "f.hkl").write_text("".join(f"{h} {k} {l} {rng.uniform(10, 100):.2f}\n"
                                     for h in range(-20, 21) for k in range(-20, 21)
                                     for l in range(-20, 21)))
    _write_model(d / "m.pdb")
    (d / "src.txt").write_text("-10 0 0 1 1.0e-10\n-10 0.002 0.001 1 1.02e-10\n")
    (d / "orient.txt").write_text("".join("%g %g %g\n" % m for m in MISSETS))
    (d / "vary_crystal.json").write_text(json.dumps(VARY_CRYSTAL))
    (d / "vary_all.json").write_text(json.dumps({**VARY_FRAME, **VARY_CRYSTAL}))
    INPUTS[:] = [d]
    doc = _panels_doc()
    (d / "panels.json").write_text(json.dumps(doc))
    # one panel: the tilted one (the centre panel sees only F000's neighbourhood)
    (d / "one.expt").write_text(json.dumps(_expt_doc(doc["panels"][1:2])))
    (d / "two.expt").write_text(json.dumps(_expt_doc(doc["panels"][:2])))
    return d


# ------------------------------------------------------------------ the command lines
NFRAMES = 2
OSC = 0.3
SEED, MSEED = 7, 5
ADC = 40.0
# pixel counts of the file image each detector writes
FILE_PIXELS = {"flat": 24 * 24, "curved": 24 * 24, "thick": 24 * 24,
               "eiger": 4148 * 4362, "jungfrau": 2056 * 2156, "panels": 3 * 8 * 12,
               "expt1": 8 * 12, "expt2": 2 * 8 * 12}


# the per-frame beam values: a SASE spectrum per shot; damage with a B factor and a
# damaged set (the HKL file) at a half dose
SASE = ["-sase_bandwidth", "0.003", "-sase_jitter", "0.001", "-sase_duration", "10",
        "-spectrum_channels", "6"]
DOSE = 0.5
DAMAGE = ["-dose", str(DOSE), "-b_per_mgy", "20", "-half_dose", "0.6"]


def _physics(c, inp, ref=None):
    """Every flag of the case but the job, its outputs and the seed.  ``ref``: (frame,
    folder) of the single-image reference run: a SASE spectrum becomes that frame's
    -sourcefile, damage that frame's structure factors as -hkl (written there)."""
    f = ["-cell", *map(str, CELL), "-N", "3", "-oversample", "1", "-noprogress"]
    det = c["det"]
    if not det.startswith("expt"):
        f += ["-lambda", "1.0"]
    f += {"flat": ["-distance", "60", "-detpixels", "24", "-pixel", "0.4"],
          "curved": ["-distance", "60", "-detpixels", "24", "-pixel", "0.4", "-curved_det"],
          "thick": ["-distance", "60", "-detpixels", "24", "-pixel", "0.4",
                    "-detector_thick", "300", "-thicksteps", "2"],
          "eiger": ["-distance", "200", "-detector_preset", "eiger2_16m",
                    "-roi", "0", "3", "0", "3"],
          "jungfrau": ["-distance", "200", "-detector_preset", "jungfrau_4m",
                       "-roi", "0", "3", "0", "3"],
          "panels": ["-panels", str(inp / "panels.json")],
          "expt1": ["-expt", str(inp / "one.expt")],
          "expt2": ["-expt", str(inp / "two.expt")]}[det]
    f += {"defF": ["-default_F", "100"], "hkl": ["-hkl", str(inp / "f.hkl")],
          "mtz": ["-mtz", str(inp / "f.mtz")], "sfcif": ["-sfcif", str(inp / "f.cif")],
          "model": ["-model", str(inp / "m.pdb")],
          "anom": ["-mtz", str(inp / "anom.mtz"), "-anomalous"]}[c["F"]]
    f += {"plain": [], "mosaic": ["-mosaic", "0.5", "-mosaic_domains", "3"],
          "div": ["-divergence", "0.4", "-divsteps", "2"],
          "disp": ["-dispersion", "1", "-dispsteps", "2"],
          "srcfile": ["-sourcefile", str(inp / "src.txt")], "sase": SASE,
          "dose": DAMAGE + ["-damaged_mtz", str(inp / "f.hkl")]}[c["beam"]]
    noisify = ["-psf", "gauss", "-psf_fwhm", "300", "-psf_radius", "2", "-readout", "2"]
    # nanoBragg's default fluence on 0.3 mm of water saturates int32 counts (~2e13
    # photons/pixel): a film thin enough that the background and the spots are comparable
    stol = ["-stol", str(WATER), "-thickness", "1e-10"]
    # ice rings (a film thin enough for nanoBragg's default fluence), the beamstop with its
    # arm and bad pixels (issue 20): nbsim extensions, in both modes
    ice = ["-ice", "1e-8", "-ice_crystallite", "20"]
    stop = ["-beamstop", "1", "-beamstop_arm", "0.5", "45", "-bad_pixels", "0.05"]
    # the detector models (docs/effects.md): a short frame with a long dead time and a
    # shallow counter, so the dead time and the counter's saturation both act
    counting = ["-detector_model", "counting", "-deadtime", "2000", "-frame_time", "1e-3",
                "-counter_bits", "10", "-charge_cloud", "12", "-threshold", "5"]
    jungfrau = ["-detector_model", "jungfrau", "-jungfrau_output", "adu"]
    f += {"nonoise": ["-nonoise"], "noise": [], "stol": stol, "noisify": noisify,
          "stol+noisify": stol + noisify, "ice": ice, "stop+bad": stop,
          "counting": counting, "jungfrau": jungfrau}[c["fx"]]
    f += ["-c_parity"] if c["mode"] == "cpar" else []
    f += ["-dtype", "float32" if c["dtype"] == "f32" else "float64"]
    if ref is not None and c["beam"] in PER_FRAME_BEAM:
        f = _frame_beam_reference(c, inp, f, *ref)
    return f


def _frame_spectrum(flags, i):
    """Frame i's SASE channels (m): the model of the flags, seeded frame_seed(SEED, i,
    "spectrum")."""
    from nbsim.args import parse_args
    from nbsim.geometry.spectrum import SaseSpectrum
    lam0 = parse_args(flags).config.beam.wavelength
    return SaseSpectrum(0.003, 0.001, 10.0, 6).wavelengths(
        lam0, frame_seed(SEED, i, "spectrum"))


def _frame_beam_reference(c, inp, f, i, folder):
    """The single-image flags of frame i of a SASE / damage case: the frame's channels
    as -sourcefile lines, or the frame's damaged table (what the dataset renders, from
    nbsim.dataset) as an -hkl file with every entry."""
    if c["beam"] == "sase":
        k = f.index(SASE[0])
        f = f[:k] + f[k + len(SASE):]
        src = folder / f"sase_{i}.txt"
        src.write_text("".join(f"nan nan nan 1 {float(v)!r}\n"
                               for v in _frame_spectrum(f, i)))
        if "-model" in f:
            # the run's Fcalc resolution (its detector at -lambda), not the channels'
            from nbsim.args import parse_args
            from nbsim.inputs.resolution import detector_dmin
            f = f + ["-model_dmin", repr(detector_dmin(parse_args(f).config))]
        return f + ["-sourcefile", str(src)]
    from nbsim.dataset import Dataset, Stills
    from nbsim.dataset.damage import DamageSpec
    from nbsim.io.hkl import read_hkl
    k = f.index(DAMAGE[0])
    f = f[:k] + f[k + len(DAMAGE) + 2:]
    ds = Dataset.from_args(f, Stills(1, None), noise=False,
                           damage=DamageSpec(dose_per_frame=DOSE, b_per_mgy=20.0,
                                             damaged=read_hkl(str(inp / "f.hkl")),
                                             half_dose=0.6))
    import dataclasses
    plan = ds.renderer.plan_for(dataclasses.replace(ds.frame(0), dose=DOSE * (i + 0.5)))
    h0, k0, l0 = (int(v) for v in plan.fgrid_meta[:3])
    F = plan.Fgrid
    h, k_, l_ = np.meshgrid(np.arange(F.shape[0]) + h0, np.arange(F.shape[1]) + k0,
                            np.arange(F.shape[2]) + l0, indexing="ij")
    table = folder / f"damaged_{i}.hkl"
    table.write_text("".join(f"{a} {b} {g} {v!r}\n" for a, b, g, v in zip(
        h.ravel().tolist(), k_.ravel().tolist(), l_.ravel().tolist(), F.ravel().tolist())))
    drop = {"-hkl", "-mtz", "-sfcif", "-model"}
    out, skip = [], 0
    for t in f:
        if skip:
            skip -= 1
        elif t in drop:
            skip = 1
        elif t == "-anomalous":
            pass
        else:
            out.append(t)
    return out + ["-hkl", str(table)]


def _is_dataset(c):
    return c["job"] != "single" or c["out"] in DATASET_OUT or c["beam"] in PER_FRAME_BEAM


def _nframes(c):
    return NFRAMES if c["job"] != "single" else 1


def _job(c, inp):
    return {"single": [], "rotation": ["-nimages", str(NFRAMES), "-osc", str(OSC)],
            "stills": ["-stills", str(NFRAMES), "-misset_seed", str(MSEED),
                       "-misset", "random"],
            "orient": ["-stills", str(NFRAMES), "-orientations",
                       str(inp / "orient.txt")],
            "vary": ["-stills", str(NFRAMES), "-misset_seed", str(MSEED),
                     "-misset", "random", "-vary", str(_vary_file(c, inp))],
            "lattices": ["-stills", str(NFRAMES), "-misset_seed", str(MSEED),
                         "-misset", "random", "-lattices", "2",
                         "-vary", str(inp / "vary_crystal.json")]}[c["job"]]


# -vary (docs/datasets.md): crystal keys always; the detector and beam keys where the
# run has a -distance / -lambda (not the .expt detectors); a background (-stol, -ice)
# then follows each frame's geometry
VARY_CRYSTAL = {"misset": {"normal": 1.0}, "N": {"uniform": [2.6, 4.4]}}
VARY_FRAME = {"distance": {"normal": 0.5}, "lambda": {"normal": 0.002}}


def _vary_file(c, inp):
    if c["det"].startswith("expt"):
        return inp / "vary_crystal.json"
    return inp / "vary_all.json"


def _lattice_specs(c, inp, i):
    """The FrameSpecs of frame i's lattices (orientation and -vary values), from the
    dataset API (drawn, not rendered)."""
    from nbsim.dataset import Dataset, Stills
    from nbsim.dataset.vary import read_vary
    job = _job(c, inp)
    vary = read_vary(job[job.index("-vary") + 1])
    k = 2 if c["job"] == "lattices" else 1
    ds = Dataset.from_args(_physics(c, inp) + job, Stills(NFRAMES, "random", vary=vary,
                                                          lattices=k), seed=SEED)
    return ds.frame(i).all_lattices


def _spec_flags(spec):
    from nbsim.dataset.vary import as_flags
    return ["-misset", "random", "-misset_seed", str(spec.misset_seed)] + \
        as_flags(spec.parameters)


def _name(c, stem, ext):
    """A per-frame template for a series, a plain name for one image."""
    return f"{stem}_#{ext}" if _is_dataset(c) and _nframes(c) > 1 else f"{stem}{ext}"


def _outputs(c):
    """(flags, {kind: path or template}) of the case's outputs."""
    out = c["out"]
    single_file = {"float": ("-floatfile", "f", ".bin"), "int": ("-intfile", "i", ".img"),
                   "noise": ("-noisefile", "n", ".img"), "pgm": ("-pgmfile", "p", ".pgm"),
                   "cbf": ("-cbf", "c", ".cbf")}
    if out in single_file:
        flag, stem, ext = single_file[out]
        t = _name(c, stem, ext)
        return [flag, t], {out: t}
    if out == "nexus":
        return ["-nexus", "x.h5"], {"nexus": "x.h5"}
    if out == "png":
        return ["-png", "q.png"], {"png": "q.png"}
    if out == "defaults":
        return [], {}
    # -write_hkl / -write_expt: a file for the run; a series also needs frame files
    flag, path = {"write_hkl": ("-write_hkl", "p1.hkl"),
                  "write_expt": ("-write_expt", "w.expt"),
                  "truth": ("-truth", "t.refl")}[out]
    extra = ["-floatfile", _name(c, "f", ".bin")] if _is_dataset(c) else []
    files = {out: path}
    if extra:
        files["float"] = extra[1]
    return [flag, path] + extra, files


def _frame_flags(c, i, inp=None):
    """The single-image flags that give frame i of the case's job (-vary: the frame's
    orientation, then its drawn values as flags, which win)."""
    if c["job"] == "vary":
        return _spec_flags(_lattice_specs(c, inp, i)[0])
    if c["job"] == "rotation":
        return ["-phi", repr(i * OSC), "-osc", str(OSC)]
    if c["job"] == "stills":
        return ["-misset", "random", "-misset_seed", str(frame_seed(MSEED, i, "misset"))]
    if c["job"] == "orient":
        return ["-misset", *("%g" % v for v in MISSETS[i])]
    return []


def _run(argv, cwd, env=None, timeout=300):
    e = dict(os.environ)
    e.pop("NBSIM_STREAM_ROWS", None)
    e.pop("NBSIM_MEMORY_LIMIT", None)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    p = subprocess.run([sys.executable, "-m", "nbsim", *map(str, argv)], cwd=cwd, env=e,
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def _errors(stderr):
    return [ln for ln in stderr.splitlines()
            if ln.strip() and not ln.startswith(("nbsim: note:", "nbsim: rendering",
                                                 "nbsim: rendered", "WARNING"))]


def _frame_file(template, i):
    if "#" not in template:
        return template
    from nbsim.io.sinks import frame_path
    return frame_path(template, i)


PANEL_COUNT = {"panels": 3, "expt2": 2}     # panel files: one CBF per panel and frame


def _files_of(c, kind, target, i):
    """The files frame i of output ``kind`` is written to (a multi-panel CBF frame of a
    panel file: one per panel, ``_p00``...; a preset's: the tiled frame)."""
    path = _frame_file(target, i)
    if kind == "cbf" and c["det"] in PANEL_COUNT:
        from nbsim.geometry.panels import panel_file_path
        n = PANEL_COUNT[c["det"]]
        return [panel_file_path(path, k, n) for k in range(n)]
    return [path]


def _listing(d):
    return sorted(str(p.relative_to(d)) for p in Path(d).rglob("*"))


# ------------------------------------------------------------------ the checks
def _reference(c, inp, d, i):
    """The single-image run of frame i: its float, int, PGM, noise (and -write_hkl)."""
    ref = d / "ref"
    ref.mkdir(exist_ok=True)
    seed = frame_seed(SEED, i, "noise") if _is_dataset(c) else SEED
    if c["job"] == "lattices":
        return _lattice_reference(c, inp, ref, i)
    argv = _physics(c, inp, ref=(i, ref)) + _frame_flags(c, i, inp) + [
        "-seed", str(seed), "-floatfile", "r.bin", "-intfile", "r.img", "-pgmfile", "r.pgm",
        "-noisefile", "r_noise.img"]
    if c["out"] == "write_hkl" and c["beam"] != "dose":
        argv += ["-write_hkl", "r.hkl"]
    rc, _o, err = _run(argv, ref)
    assert rc == 0 and not _errors(err), f"reference run of frame {i}: {err}"
    if c["out"] == "write_hkl" and c["beam"] == "dose":
        # the frame's reference reads its damaged table as -hkl; the P1 list is the
        # input's, from the flags without damage
        f = _physics(c, inp)
        k = f.index(DAMAGE[0])
        rc, _o, err = _run(f[:k] + f[k + len(DAMAGE) + 2:] + [
            "-write_hkl", "r.hkl", "-floatfile", "w.bin", "-nonoise"], ref)
        assert rc == 0 and not _errors(err), f"reference -write_hkl: {err}"
    return ref


def _lattice_reference(c, inp, ref, i):
    """-lattices 2: frame i's float file is float32 of the sum of its two lattices'
    single renders (float64, in process); the counts are drawn from it."""
    # in a fresh process, as the job's kernels (loaded from Numba's cache: a kernel
    # compiled in this process may differ in float32's last bit, docs/performance.md)
    code = ("import json, sys, numpy as np\n"
            "from nbsim.simulator import Simulator\n"
            "r = [Simulator.from_args(a).run() for a in json.loads(sys.argv[1])]\n"
            "assert all(x.max() > 0 for x in r)\n"
            "open(sys.argv[2], 'wb').write(np.ascontiguousarray(r[0] + r[1], "
            "dtype='<f4').tobytes())\n")
    flags = [_physics(c, inp) + _spec_flags(s) for s in _lattice_specs(c, inp, i)]
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-c", code, json.dumps(flags), str(ref / "r.bin")],
                       env=e, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return ref


def _lattice_close(got, want):
    """-lattices: the job's float32 frame and the float32 of the two lattices' renders
    summed in another process agree to float32 rounding (the in-process sum is exact:
    tests/test_dataset_vary.py; a kernel compiled in one process and loaded from Numba's
    cache in another may differ in the last bit, docs/performance.md)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert want.max() > 0 and np.isfinite(got).all()
    assert np.max(np.abs(got - want)) <= 1e-6 * want.max()


def _assert_lattice_floats(path, c, ref_bytes):
    raw = Path(path).read_bytes()
    assert len(raw) == 4 * FILE_PIXELS[c["det"]], (path, len(raw))
    _lattice_close(np.frombuffer(raw, "<f4"), np.frombuffer(ref_bytes, "<f4"))


def _assert_float_file(path, c, ref_bytes):
    raw = Path(path).read_bytes()
    assert len(raw) == 4 * FILE_PIXELS[c["det"]], (path, len(raw))
    img = np.frombuffer(raw, "<f4")
    assert np.isfinite(img).all() and img.max() > 0
    assert raw == ref_bytes, f"{path} differs from the single-image run"


def _check_outputs(c, inp, d, files, stdout):
    n = _nframes(c)
    last = n - 1
    ref = _reference(c, inp, d, last)
    noise = c["fx"] != "nonoise"
    rfloat = (ref / "r.bin").read_bytes()
    npix = FILE_PIXELS[c["det"]]
    out = c["out"]
    if out == "defaults":
        files = {"float": "floatimage.bin", "int": "intimage.img", "pgm": "image.pgm"}
        if noise:
            files["noise"] = "noiseimage.img"
    for kind, target in files.items():
        for i in range(n):
            for f in _files_of(c, kind, target, i):
                assert (d / f).exists(), (kind, f, _listing(d))
        path = d / _frame_file(target, last)
        if kind == "float" and c["job"] == "lattices":
            _assert_lattice_floats(path, c, rfloat)
        elif kind == "float":
            _assert_float_file(path, c, rfloat)
        elif kind == "noise" and _counter_noise(c):
            # the dataset's own Poisson generator (docs/datasets.md, "Noise"): the single
            # run's header, the counter generator's counts of the single run's photons
            from nbsim.io import read_smv
            raw = path.read_bytes()
            assert raw[:512] == (ref / "r_noise.img").read_bytes()[:512]
            _h, data = read_smv(path)
            rf = np.frombuffer(rfloat, "<f4").reshape(data.shape)
            _assert_counter_counts(c, data.astype(np.int64) - int(ADC), rf, last)
        elif kind in ("int", "noise", "pgm"):
            rname = {"int": "r.img", "noise": "r_noise.img", "pgm": "r.pgm"}[kind]
            raw = path.read_bytes()
            assert raw == (ref / rname).read_bytes(), f"{path} differs from the single run"
            if kind == "noise" and _model(c) is not None:
                from nbsim.io import read_smv
                _assert_model_output(c, read_smv(path)[1], np.frombuffer(rfloat, "<f4"))
            if kind == "pgm":
                from PIL import Image
                with Image.open(path) as im:
                    assert im.size[0] * im.size[1] == npix
            else:
                from nbsim.io import read_smv
                _h, data = read_smv(path)
                assert data.size == npix
        elif kind == "cbf":
            fabio = pytest.importorskip("fabio")
            data = np.concatenate([fabio.open(str(d / f)).data.ravel()
                                   for f in _files_of(c, kind, target, last)])
            assert data.size == npix and np.issubdtype(data.dtype, np.integer)
            # pixels without data, as Pilatus writes them: module gaps -1 (a preset's
            # tiled frame), the beamstop's shadow and bad pixels -2
            if c["det"] in PRESET_TILES:
                gaps = _tile(c["det"], np.ones(NEXUS_PIXELS[c["det"]], np.int8)).ravel() == 0
                assert np.all(data[gaps] == -1) and not np.any(data[~gaps] == -1)
            else:
                gaps = np.zeros(data.size, dtype=bool)
            bad = data == -2
            assert bad.any() == (c["fx"] == "stop+bad")
            _assert_counts(c, data, ref, skip=gaps | bad)
        elif kind == "nexus":
            _check_nexus(c, path, n, ref, inp)
        elif kind == "png":
            from PIL import Image
            with Image.open(path) as im:
                assert im.format == "PNG" and im.size[0] > 0 and im.size[1] > 0
                im.load()
                assert np.asarray(im).std() > 0
        elif kind == "write_hkl":
            text = path.read_text()
            assert text == (ref / "r.hkl").read_text()
            rows = np.loadtxt(path, ndmin=2)
            assert rows.shape[0] > 100 and rows.shape[1] == 4
            assert np.isfinite(rows).all() and rows[:, 3].max() > 0
        elif kind == "write_expt":
            _check_expt(c, path)
        elif kind == "truth":
            _check_truth(c, path, np.frombuffer(rfloat, "<f4"))
    _check_extensions(c, np.frombuffer(rfloat, "<f4"), stdout)


def _check_extensions(c, rf, stdout):
    """-ice: its line with the ice's unit cells; -beamstop / -bad_pixels on a flat detector
    (24 x 24, 5 % bad: round(28.8) = 29 drawn, 14 dead and 15 hot): the single run's float
    file holds 15 hot pixels' photons and 0 at least in the 14 dead pixels and the shadow
    of the 1 mm stop around the beam centre (the pixel nearest it)."""
    if c["fx"] == "ice":
        # the composition detectors reach 8 A at most: no ring on them (the rings'
        # positions and scale are tests/test_backgrounds.py's); the cells are counted
        m = re.search(r"ice Ih rings: 1e-08 um of ice, ([0-9.e+]+) unit cells", stdout)
        # 1e-14 m x (0.1 mm)^2 over the 128.2 A^3 cell
        assert m and float(m.group(1)) == pytest.approx(1e-22 / 128.24e-30, rel=1e-3), stdout
    if c["fx"] == "stop+bad" and c["det"] in FLAT:
        assert int(np.sum(rf == HOT_PIXEL_PHOTONS)) == 15
        assert int(np.sum(rf == 0)) >= 14 + 1


SINGLE_PANEL = {"flat", "curved", "thick", "expt1"}


def _check_truth(c, path, rf):
    """-truth: the DIALS reflection file (read back), the labels file beside it; the last
    frame's reflections hold the Bragg photons of the single run's float image."""
    from nbsim.io.refl import read_refl
    t, ids = read_refl(path)
    n = _nframes(c)
    stills = c["job"] in STILLS
    lat = 2 if c["job"] == "lattices" else 1
    assert len(ids) == (n * lat if stills else 1)
    assert np.isfinite(t["intensity.true.value"]).all() and (t["intensity.true.value"] > 0).all()
    assert (t["panel"] < PANELS.get(c["det"], 1)).all()
    if c["job"] == "rotation":
        last = np.floor(t["xyzcal.px"][:, 2]) == n - 1
    else:
        last = (t["id"] // lat) == (n - 1 if stills else 0)
        if lat > 1:                    # rows of both lattices of the last still
            assert set(t["id"][last].tolist()) == {2 * (n - 1), 2 * (n - 1) + 1}
    bragg = float(t["intensity.true.value"][last].sum())
    if c["fx"] in ("nonoise", "noise", "noisify"):  # the float file: the Bragg image alone
        assert bragg == pytest.approx(float(rf.astype(np.float64).sum()), rel=1e-4)
    import h5py
    with h5py.File(str(path)[:-len(".refl")] + "_labels.h5", "r") as f:
        labels = f["labels"][()]
        frac = f["bragg_fraction"][()]
    assert labels.shape[0] == n and labels.max() < t["id"].shape[0] and labels.min() >= -1
    if c["beam"] == "dose":            # every row: its frame's dose, (i + 1/2) x -dose
        frame = (t["id"] if stills else np.floor(t["xyzcal.px"][:, 2]))
        assert np.allclose(t["dose"], (frame + 0.5) * DOSE, rtol=1e-15)
    assert np.all((frac >= 0) & (frac <= 1.0 + 1e-6))
    if c["fx"] == "stop+bad" and c["det"] in FLAT:
        # shadowed, dead and hot pixels: no Bragg photons, no reflection (the last frame
        # of the single run's float file: 0 or a hot pixel's photons there)
        blocked = (rf == 0) | (rf == HOT_PIXEL_PHOTONS)
        assert np.all(labels[-1].ravel()[blocked] == -1)
        assert np.all(frac[-1].ravel()[blocked] == 0)
PANELS = {"eiger": 32, "jungfrau": 8, "panels": 3, "expt2": 2}


def _check_expt(c, path):
    """The DIALS experiment list of the job: one experiment per still (each with its
    own crystal), one sweep with its scan for a rotation, every panel, the beam's
    wavelength; nbsim's own .expt reader takes it back."""
    doc = json.loads(path.read_text())
    n = _nframes(c)
    stills = c["job"] in STILLS
    lat = 2 if c["job"] == "lattices" else 1
    assert len(doc["experiment"]) == (n * lat if stills else 1)
    assert len(doc["crystal"]) == len(doc["experiment"])
    assert len(doc["detector"][0]["panels"]) == PANELS.get(c["det"], 1)
    if c["job"] == "rotation":
        assert doc["scan"][0]["image_range"] == [1, n]
        assert doc["scan"][0]["oscillation"][1] == pytest.approx(OSC)
    varied = c["job"] == "vary" and "lambda" in json.loads(
        Path(_job(c, INPUTS[0])[-1]).read_text())
    if not c["det"].startswith("expt") and c["beam"] not in ("srcfile", "sase") and not varied:
        assert doc["beam"][0]["wavelength"] == pytest.approx(1.0, rel=1e-12)
    if varied:                         # every still its own beam and detector
        assert len(doc["beam"]) == len(doc["detector"]) == n
    for cr in doc["crystal"]:
        a = np.array([cr[f"real_space_{x}"] for x in "abc"])
        assert np.allclose(np.linalg.norm(a, axis=1), CELL[:3], rtol=1e-9)
    from nbsim.inputs.expt import read_expt
    assert read_expt(path) is not None


#: effects whose noise is plain Poisson counts of the float image
PLAIN_POISSON = ("noise", "stol", "ice", "stop+bad")
HOT_PIXEL_PHOTONS = 65535.0          # docs/effects.md: what a hot pixel holds


def _counter_noise(c):
    """Plain Poisson noise of a default-mode dataset: nbsim's counter generator, keyed by
    the frame seed -- not nanoBragg's ran1 stream of the single run (c-parity datasets
    use that one, and the noisify chain is the same in both)."""
    return (_is_dataset(c) and c["mode"] == "spec" and c["fx"] in PLAIN_POISSON
            and _model(c) is None)


def _model(c):
    """The case's detector model (docs/effects.md): -detector_model, else the preset's
    (eiger2_16m: counting, jungfrau_4m: jungfrau) with noise; none under -c_parity."""
    if c["mode"] != "spec" or c["fx"] in ("nonoise", "noisify", "stol+noisify"):
        return None
    if c["fx"] in ("counting", "jungfrau"):
        return c["fx"]
    return {"eiger": "counting", "jungfrau": "jungfrau"}.get(c["det"])


def _assert_model_output(c, counts, rf):
    """What a detector model's output must be (``counts``: the detector's integers,
    clipped to 0..65535 by the noise file; ``rf`` the single run's photons): 0 where no
    photon is expected, within the counter (counting: the flags' 10 bits, the preset's
    16), JUNGFRAU words with valid gain bits and 14-bit ADC values."""
    model = _model(c)
    counts = np.asarray(counts, np.int64).ravel()
    rf = np.asarray(rf, np.float64).ravel()
    assert counts.min() >= 0
    if model == "counting":
        bits = 10 if c["fx"] == "counting" else 16
        assert counts.max() <= 2 ** bits - 1
        if c["fx"] != "counting":                 # no charge cloud reaches a dark pixel
            assert not counts[rf <= 0].any()
    elif model == "jungfrau":
        if c["fx"] == "jungfrau":                 # raw words: gain bits 00 / 01 / 11
            assert set(np.unique(counts >> 14)) <= {0, 1, 3}
        else:                                     # converted photons: Poisson-like
            lit = rf > 0
            assert not counts[~lit].any() or counts[~lit].max() <= 1


def _assert_counter_counts(c, counts, rf, i, keep=None):
    """``counts`` (photon counts, file layout) of frame i from the counter generator
    (where ``keep``, if given)."""
    from nbsim.dataset.noise import counter_counts
    if keep is None:
        keep = np.ones(np.shape(counts), dtype=bool)
    if c["det"] in PRESET_TILES:
        # the generator keys a pixel by its index in the render's stacked panels
        rf, counts = _untile(c["det"], rf), _untile(c["det"], counts)
        keep = _untile(c["det"], keep)
    want = counter_counts(np.ascontiguousarray(rf, dtype=np.float32).reshape(-1, rf.shape[-1]),
                          frame_seed(SEED, i, "noise")).reshape(counts.shape)
    # outside -roi the SMV noise pixels are 0 (C's rule), -ADC counts here; the photons
    # there are 0, so the generator's counts are 0
    counts = np.where(counts == -int(ADC), 0, counts)
    assert np.array_equal(np.clip(counts, -int(ADC), 65535 - int(ADC))[keep],
                          np.clip(want.astype(np.int64), -int(ADC), 65535 - int(ADC))[keep])


def _assert_counts(c, data, ref, skip=None):
    """CBF / NeXus pixels: the counts of the single run's noise image (without -adc,
    within 0..65535), or its photons without noise; ``skip``: pixels (flat) not compared
    (a CBF's pixels without data)."""
    rf = np.frombuffer((ref / "r.bin").read_bytes(), "<f4").reshape(np.shape(data))
    keep = np.ones(np.shape(data), dtype=bool) if skip is None else \
        ~np.asarray(skip).reshape(np.shape(data))
    if c["job"] == "lattices" and c["fx"] == "nonoise":
        _lattice_close(data, rf)
        return
    if c["fx"] == "nonoise":
        if np.issubdtype(data.dtype, np.integer):
            want = np.rint(np.clip(rf, -2.0**31, 2.0**31 - 128)).astype(np.int64)
            assert np.array_equal(np.asarray(data, np.int64)[keep], want[keep])
        else:
            assert np.array_equal(np.asarray(data, np.float32)[keep], rf[keep])
        return
    if c["job"] == "lattices":         # the frame's noise drawn from the summed image
        from nbsim.dataset.noise import poisson_counts
        want = poisson_counts(rf.reshape((1,) + rf.shape[-2:]),
                              frame_seed(SEED, _nframes(c) - 1, "noise"),
                              "c-parity" if c["mode"] == "cpar" else "spec")
        same = np.asarray(data, np.int64).ravel() == np.asarray(want, np.int64).ravel()
        assert same.mean() >= 0.999     # a mean one float32 ulp off may move a count
        return
    from nbsim.io import read_smv
    _h, noise = read_smv(ref / "r_noise.img")
    counts = np.asarray(data, np.int64).reshape(noise.shape)
    keep = keep.reshape(noise.shape)
    if _counter_noise(c):
        _assert_counter_counts(c, counts, rf.reshape(noise.shape), _nframes(c) - 1, keep)
        return
    if _model(c) is not None:   # the detector model's integers: the single run's
        assert np.array_equal(np.clip(counts, 0, 65535)[keep], noise.astype(np.int64)[keep])
        _assert_model_output(c, counts[keep], rf.reshape(noise.shape)[keep])
        return
    if c["fx"] in PLAIN_POISSON + ("counting", "jungfrau"):   # (the models: off in c-parity)
        inside = (rf.reshape(noise.shape) > 0) & keep
        assert np.array_equal(np.clip(counts + ADC, 0, 65535)[inside],
                              noise.astype(np.int64)[inside])
    else:           # noisify's ADU integers (offset, gain and readout noise in them)
        assert np.array_equal(np.clip(counts, 0, 65535)[keep], noise.astype(np.int64)[keep])


def _check_nexus(c, path, n, ref, inp=None):
    h5py = pytest.importorskip("h5py")
    pytest.importorskip("hdf5plugin")
    nxmx = pytest.importorskip("nxmx")
    with h5py.File(path, "r") as fh:
        if c["beam"] == "sase":         # every frame's channels, as the model draws them
            f = _physics(c, inp)
            k = f.index(SASE[0])
            f = f[:k] + f[k + len(SASE):]
            want = np.array([_frame_spectrum(f, i) for i in range(n)]) * 1e10
            got = fh["/entry/instrument/beam/incident_wavelength_spectrum"][()]
            assert np.array_equal(got, want)
        if c["beam"] == "dose":
            assert np.allclose(fh["/entry/nbsim/damage/dose"][()],
                               (np.arange(n) + 0.5) * DOSE, rtol=1e-15)
        data = fh["/entry/data/data"]
        assert data.shape[0] == n
        frames = data[()]
        if frames.dtype.kind == "f":
            assert np.isfinite(frames).all()
        last = frames[n - 1]
        if c["det"] in PRESET_TILES:
            # NXmx holds the modules stacked (one NXdetector_module each, as dxtbx's
            # detector is a list of panels); the per-frame files hold the tiled frame
            assert int(np.prod(data.shape[1:])) == NEXUS_PIXELS[c["det"]]
            last = _tile(c["det"], last)
        assert last.size == FILE_PIXELS[c["det"]]
        _assert_counts(c, last, ref)
        det = fh["/entry/instrument/detector"]
        if _model(c) == "counting":     # the counting detector's NXdetector fields
            bits, t = (10, 1e-3) if c["fx"] == "counting" else (16, 1.0)
            assert det["saturation_value"][()] == 2 ** bits - 1
            assert det["count_time"][()] == det["frame_time"][()] == pytest.approx(t)
            if c["fx"] == "counting":
                assert det["threshold_energy"][()] == pytest.approx(5000.0)
            elif c["beam"] != "srcfile":      # half the photon energy of -lambda 1
                assert det["threshold_energy"][()] == pytest.approx(12398.419843320026 / 2)
        else:
            assert "threshold_energy" not in det
        entry = nxmx.NXmx(fh).entries[0]
        assert entry.definition == "NXmx"
        modules = entry.instruments[0].detectors[0].modules
        assert len(modules) == {"eiger": 32, "jungfrau": 8, "panels": 3,
                                "expt2": 2}.get(c["det"], 1)


# the presets' layouts (docs/panels.md), written out here independently of nbsim:
# modules across, down, module fast x slow pixels, gaps fast / slow
PRESET_TILES = {"eiger": (4, 8, 1028, 512, 12, 38), "jungfrau": (2, 4, 1024, 512, 8, 36)}
NEXUS_PIXELS = {k: a * d * mf * ms for k, (a, d, mf, ms, _gf, _gs) in PRESET_TILES.items()}


def _untile(det, frame):
    """The modules of a preset's tiled frame, stacked in panel order (P, slow, fast)."""
    across, down, mf, ms, gf, gs = PRESET_TILES[det]
    frame = np.asarray(frame).reshape(down * ms + (down - 1) * gs,
                                      across * mf + (across - 1) * gf)
    return np.stack([frame[j * (ms + gs):j * (ms + gs) + ms, i * (mf + gf):i * (mf + gf) + mf]
                     for j in range(down) for i in range(across)])


def _tile(det, stacked):
    """The preset's frame with zero gaps from its modules stacked in panel order
    (panel j * across + i is module i across, j down)."""
    across, down, mf, ms, gf, gs = PRESET_TILES[det]
    mods = np.asarray(stacked).reshape(across * down, ms, mf)
    frame = np.zeros((down * ms + (down - 1) * gs, across * mf + (across - 1) * gf),
                     dtype=mods.dtype)
    for j in range(down):
        for i in range(across):
            frame[j * (ms + gs):j * (ms + gs) + ms,
                  i * (mf + gf):i * (mf + gf) + mf] = mods[j * across + i]
    return frame


@pytest.mark.parametrize("c", CASES, ids=[_case_id(c) for c in CASES])
def test_composition(c, inputs, tmp_path):
    d = tmp_path / "case"
    d.mkdir()
    flags, files = _outputs(c)
    argv = _physics(c, inputs) + _job(c, inputs) + ["-seed", str(SEED)] + flags
    env = {}
    if c["exec"] == "dask":
        # one worker process: the Dask path (scatter, tasks, results written by the
        # driver in order) at half the cold-cache compiles; several workers and a killed
        # worker are tests/test_dataset_dask.py's
        argv += ["-workers", "1"]
    if c["exec"] == "streamed":
        env = {"NBSIM_MEMORY_LIMIT": "1", "NBSIM_STREAM_ROWS": "5"}
    rc, out, err = _run(argv, d, env)
    assert rc == 0 and not _errors(err), f"exit {rc}: {err.strip()}"
    if c["exec"] == "resume":
        _cut_short_and_resume(c, d, files, argv)
    _check_outputs(c, inputs, d, files, out)


def _stable_bytes(path):
    """The file's bytes; a miniCBF header's time stamp line (the time the frame was
    written, ``# 2026-12-07T21:15:23.563``) left out."""
    raw = path.read_bytes()
    if path.suffix == ".cbf":
        raw = re.sub(rb"\r\n# \d{4}-\d\d-\d\dT[0-9:.]+\r\n", b"\r\n", raw, count=1)
    return raw


def _assert_same_refl(raw_a, raw_b):
    """Two -truth files of the same job: the same rows and columns, bit for bit (a kernel
    compiled in the process and the same kernel loaded from Numba's cache give the same
    bits: nbsim._numba_setup, patch ``cpu_local_linkage``; tests/test_cache_bits.py)."""
    import tempfile
    from nbsim.io.refl import read_refl
    tables = []
    for raw in (raw_a, raw_b):
        with tempfile.NamedTemporaryFile(suffix=".refl") as fh:
            fh.write(raw)
            fh.flush()
            tables.append(read_refl(fh.name))
    (ta, ia), (tb, ib) = tables
    assert ia == ib and ta.keys() == tb.keys()
    for k in ta:
        a, b = np.asarray(ta[k]), np.asarray(tb[k])
        assert a.shape == b.shape, k
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), k


def _cut_short_and_resume(c, d, files, argv):
    """What a job stopped after its first frame leaves (frame 0's files, the record
    saying so; the NeXus file as it is), then ``-resume``: the same files as the whole run."""
    from nbsim.dataset.manifest import JobRecord
    records = list(d.glob("*.nbsim-job.json"))
    assert len(records) == 1, _listing(d)
    before = {p: _stable_bytes(p) for p in d.iterdir() if p.suffix not in (".h5", ".json")}
    rec = JobRecord.load(str(records[0]))
    assert rec.done == set(range(_nframes(c)))
    rec.done = {0}
    rec.save()
    for kind, target in files.items():
        if "#" in target:
            for i in range(1, _nframes(c)):
                for f in _files_of(c, kind, target, i):
                    (d / f).unlink()
    for p in d.glob("*.png"):
        p.unlink()
    rc, out, err = _run(argv + ["-resume"], d)
    assert rc == 0 and not _errors(err), f"-resume: exit {rc}: {err.strip()}"
    # a finished -truth job has joined its per-frame parts into the .refl and removed
    # them, so its frame 0 is not kept but rendered again (an interrupted job keeps its
    # parts: tests/test_truth_outputs.py)
    kept = 0 if c["out"] == "truth" else 1
    assert f"({_nframes(c) - kept} rendered, {kept} kept)" in out
    after = {p: _stable_bytes(p) for p in d.iterdir() if p.suffix not in (".h5", ".json")}
    assert after.keys() == before.keys()
    for p in before:
        if p.suffix == ".refl" and after[p] != before[p]:
            _assert_same_refl(before[p], after[p])
            continue
        assert after[p] == before[p], f"{p.name} differs after -resume"
    assert JobRecord.load(str(records[0])).done == set(range(_nframes(c)))


# ------------------------------------------------------------------ refused up front
REFUSED = [
    # (id, case whose flags are used, extra flags, words the one line must hold)
    ("curved_det-nexus", dict(job="rotation", det="curved", out="nexus"), [],
     ["-curved_det", "-nexus"]),
    ("curved_det-nexus-single", dict(job="single", det="curved", out="nexus"), [],
     ["-curved_det", "-nexus"]),
    ("curved_det-write_expt", dict(job="rotation", det="curved", out="write_expt"), [],
     ["-curved_det", "-write_expt"]),
    ("curved_det-write_expt-single", dict(job="single", det="curved", out="write_expt"), [],
     ["-curved_det", "-write_expt"]),
    ("write_hkl-default_F", dict(job="rotation", F="defF", out="write_hkl"), [],
     ["-write_hkl"]),
    ("orientations-without-stills", dict(job="single", out="float"),
     ["-orientations", "orient.txt"], ["-orientations"]),
    # the file gives every frame's orientation: a -misset as well was silently ignored
    ("orientations-misset_random", dict(job="orient"), ["-misset", "random"],
     ["-orientations", "-misset random"]),
    ("orientations-misset_angles", dict(job="orient"), ["-misset", "1", "2", "3"],
     ["-orientations", "-misset 1 2 3"]),
    # -vary / -lattices (docs/datasets.md): stills only; the -stol background is one
    ("vary-rotation", dict(job="rotation"), ["-vary", "vary_all.json"], ["-vary", "-stills"]),
    ("lattices-rotation", dict(job="rotation"), ["-lattices", "2"], ["-lattices", "-stills"]),
    ("lattices-orientations", dict(job="orient"), ["-lattices", "2"],
     ["-lattices", "-orientations"]),
]


@pytest.mark.parametrize("rid,over,extra,words", REFUSED, ids=[r[0] for r in REFUSED])
def test_meaningless_combination_refused(rid, over, extra, words, inputs, tmp_path):
    c = dict(job="rotation", det="flat", F="defF", beam="plain", fx="noise", out="float",
             mode="spec", dtype="f64", exec="inproc")
    c.update(over)
    d = tmp_path / "case"
    d.mkdir()
    flags, _files = _outputs(c)
    extra = [str(inputs / e) if (inputs / e).exists() else e for e in extra]
    argv = _physics(c, inputs) + _job(c, inputs) + ["-seed", str(SEED)] + flags + extra
    before = _listing(d)
    rc, out, err = _run(argv, d)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, (rc, err)
    assert lines[0].startswith("nbsim: error:") and all(w in lines[0] for w in words), lines
    assert _listing(d) == before


def test_write_hkl_with_a_dataset_writes_the_p1_list_once(inputs, tmp_path):
    """Regression: -write_hkl with dataset flags was accepted and silently not written;
    now the job writes it once (after its frames), the single run's bytes."""
    c = dict(job="rotation", det="flat", F="mtz", beam="plain", fx="nonoise",
             out="write_hkl", mode="spec", dtype="f64", exec="inproc")
    d = tmp_path / "case"
    d.mkdir()
    flags, files = _outputs(c)
    rc, out, err = _run(_physics(c, inputs) + _job(c, inputs) + flags, d)
    assert rc == 0 and not _errors(err), err
    assert "-write_hkl p1.hkl" in out
    rc, _o, err = _run(_physics(c, inputs) + ["-write_hkl", "r.hkl", "-floatfile", "r.bin"],
                       d)
    assert rc == 0, err
    text = (d / "p1.hkl").read_text()
    assert text == (d / "r.hkl").read_text() and len(text.splitlines()) > 100
    # the file's directory is checked before anything is written
    before = _listing(d)
    rc, _o, err = _run(_physics(c, inputs) + _job(c, inputs)
                       + ["-write_hkl", "no/such/dir/p.hkl", "-floatfile", "g_#.bin"], d)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "-write_hkl" in err
    assert _listing(d) == before


# ------------------------------------------------------------------ regressions found
def test_model_resolution_covers_every_panel(inputs):
    """Regression: -model's default resolution came from the flags' flat detector only:
    panel 0 of a panel file / .expt, and the default 1024^2 detector for a preset."""
    from nbsim.args import parse_args
    from nbsim.inputs.resolution import MARGIN, detector_dmin

    lam = 1.0
    base = ["-cell", *map(str, CELL), "-default_F", "1", "-lambda", str(lam)]
    cfg = parse_args(base + ["-panels", str(inputs / "panels.json")]).config
    q = 0.0
    for p in _panels_doc()["panels"]:
        o, f, s = (np.asarray(p[k], float) for k in ("origin", "fast", "slow"))
        for cf in (0, p["fpixels"]):
            for cs in (0, p["spixels"]):
                v = o + p["pixel_size"] * (cf * f + cs * s)
                q = max(q, np.linalg.norm(v / np.linalg.norm(v) - [1.0, 0.0, 0.0]) / lam)
    assert detector_dmin(cfg) == pytest.approx(1.0 / q / MARGIN, rel=1e-12)
    one = parse_args(base[:-2] + ["-expt", str(inputs / "two.expt")]).config
    assert detector_dmin(one) < 3.0          # the tilted panel reaches ~2.2 A
    # a preset: its frame (4148 x 4362 pixels of 75 um), placed by the flags
    flags = ["-distance", "200"]
    preset = parse_args(base + flags + ["-detector_preset", "eiger2_16m"]).config
    frame = parse_args(base + flags + ["-detpixels_f", "4148", "-detpixels_s", "4362",
                                       "-pixel", "0.075"]).config
    assert detector_dmin(preset) == pytest.approx(detector_dmin(frame), rel=1e-12)
    assert detector_dmin(preset) < 0.8 * detector_dmin(parse_args(base + flags).config)


def _panel_flags(p):
    """nanoBragg flags of panel ``p`` (a -panels JSON entry) alone, as a flat detector."""
    from nbsim.geometry import panels as pnl
    q = pnl.panels_from_dict({"panels": [p]}).panels[0]
    vec = lambda v: [repr(float(x)) for x in v]  # noqa: E731
    return (["-fdet_vector"] + vec(q.fast) + ["-sdet_vector"] + vec(q.slow)
            + ["-odet_vector"] + vec(q.odet()) + ["-pix0_vector"] + vec(q.origin)
            + ["-beam_vector", "1", "0", "0", "-polar_vector", "0", "0", "1",
               "-spindle_axis", "0", "0", "1", "-detpixels_f", str(q.fpixels),
               "-detpixels_s", str(q.spixels), "-pixel", repr(q.pixel_size * 1e3)])


def test_stol_background_of_each_panel_is_that_panels_own(inputs, tmp_path):
    """Regression: the -stol background of a multi-panel detector was computed on the
    stacked raster the kernels index (every panel in the frame detector's plane), not
    where the panels are."""
    base = ["-cell", *map(str, CELL), "-N", "3", "-oversample", "1", "-noprogress",
            "-lambda", "1.0", "-default_F", "100", "-nonoise", "-nopgm"]
    # nanoBragg's default fluence on 0.3 mm of water saturates int32 counts (~2e13
    # photons/pixel): a film thin enough that the background and the spots are comparable
    stol = ["-stol", str(WATER), "-thickness", "1e-10"]

    def floats(flags, tag):
        rc, _o, err = _run(base + flags + ["-floatfile", f"{tag}.bin", "-intfile",
                                           f"{tag}.img"], tmp_path)
        assert rc == 0, err
        return np.fromfile(tmp_path / f"{tag}.bin", "<f4").astype(np.float64)

    panels = ["-panels", str(inputs / "panels.json")]
    bg = (floats(panels + stol, "ps") - floats(panels, "p")).reshape(3, 8, 12)
    doc = _panels_doc()
    for k in (0, 1, 2):
        one = _panel_flags(doc["panels"][k])
        ref = (floats(one + stol, "os") - floats(one, "o")).reshape(8, 12)
        assert ref.max() > 0
        tol = 1e-6 * ref.max() + 2.4e-7 * (ref.max() + 1e3)
        assert np.max(np.abs(bg[k] - ref)) <= tol, k
    # the panels see different backgrounds (the test can tell them apart)
    assert abs(bg[1].mean() - bg[0].mean()) > 0.05 * bg[0].mean()


def test_resume_keeps_multi_panel_cbf_frames(inputs, tmp_path):
    """Regression: -resume looked for c_1.cbf where a panel file's frames are
    c_1_p00.cbf, c_1_p01.cbf...: no frame was ever kept.  A frame missing one panel file
    is rendered again."""
    from nbsim.dataset.manifest import JobRecord
    c = dict(job="rotation", det="panels", F="defF", beam="plain", fx="nonoise",
             out="cbf", mode="spec", dtype="f64", exec="resume")
    flags, files = _outputs(c)
    argv = _physics(c, inputs) + _job(c, inputs) + flags
    rc, _o, err = _run(argv, tmp_path)
    assert rc == 0, err
    first = _files_of(c, "cbf", files["cbf"], 0)
    assert first == ["c_1_p00.cbf", "c_1_p01.cbf", "c_1_p02.cbf"]
    keep = {f: _stable_bytes(tmp_path / f) for f in first}
    rec_path = str(tmp_path / "c_.cbf.nbsim-job.json")
    rec = JobRecord.load(rec_path)
    rec.done = {0}
    rec.save()
    for f in _files_of(c, "cbf", files["cbf"], 1):
        (tmp_path / f).unlink()
    rc, out, err = _run(argv + ["-resume"], tmp_path)
    assert rc == 0 and "(1 rendered, 1 kept)" in out, (out, err)
    assert {f: _stable_bytes(tmp_path / f) for f in first} == keep
    (tmp_path / "c_2_p01.cbf").unlink()           # frame 2 lacks a panel: not complete
    rc, out, err = _run(argv + ["-resume"], tmp_path)
    assert rc == 0 and "(1 rendered, 1 kept)" in out, (out, err)
    assert (tmp_path / "c_2_p01.cbf").is_file()


def test_expt_without_a_scan_keeps_phi(inputs):
    """Regression: an .expt without a scan set phi to 0, silently replacing -phi (so a
    rotation dataset's frame i was not the single run with -phi i*osc)."""
    import math
    import nbsim
    flags = ["-cell", *map(str, CELL), "-N", "3", "-oversample", "1", "-default_F", "100",
             "-expt", str(inputs / "one.expt"), "-osc", "0.3"]
    at0 = nbsim.Simulator.from_args(flags)
    at30 = nbsim.Simulator.from_args(flags + ["-phi", "30"])
    assert at30.plan.config.crystal.phi0 == pytest.approx(math.radians(30), rel=1e-15)
    a, b = at0.run(), at30.run()
    assert a.max() > 0 and np.max(np.abs(a - b)) > 0.1 * a.max()

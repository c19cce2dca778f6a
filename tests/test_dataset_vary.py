"""Issue 19 (part A): ``-vary FILE.json`` (per-frame random flag values of stills) and
``-lattices K`` (several crystals in the beam): frames equal the single renders with the
drawn values as flags / the sum of the lattices' renders, the draws follow the documented
rule and distributions, the values are recorded (API, NeXus, -write_expt, -truth), bad
input is refused."""
import io
import json
import math
import shutil
import subprocess

import numpy as np
import pytest

from nbsim.cli.main import main
from nbsim.dataset import Dataset, Stills, frame_seed
from nbsim.dataset.vary import VARY_KEYS, as_flags, parse_vary
from nbsim.simulator import Simulator
from nbsim.units import RTD

BASE = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5",
        "-lambda", "1", "-distance", "100", "-detpixels", "64", "-pixel", "0.1",
        "-oversample", "1"]
RANDOM = ["-misset", "random", "-misset_seed", "5"]


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    rc = main([str(a) for a in argv], stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def lattice_flags(spec):
    """The single-render flags of one lattice of a frame: its orientation then its
    -vary values (later flags win, as on the command line)."""
    f = ["-misset", *(repr(float(m) * RTD) for m in spec.misset)] if spec.misset else []
    return f + as_flags(spec.parameters or {})


# ------------------------------------------------------------------ acceptance 1
def test_varied_still_is_the_single_render_with_the_drawn_flags(tmp_path):
    doc = {"distance": {"normal": 3.0}, "lambda": {"uniform": [0.9, 1.1]},
           "Xbeam": {"normal": 0.2}, "detector_rotx": {"normal": 0.5},
           "N": {"uniform": [3.5, 6.5]}, "cell": {"normal": [1, 1, 1, 0.5, 0, 0]},
           "misset": {"normal": 2.0}, "fluence": {"lognormal": 0.1}}
    (tmp_path / "v.json").write_text(json.dumps(doc))
    rc, _o, err = run_cli(BASE + RANDOM + ["-stills", 2, "-vary", tmp_path / "v.json",
                                           "-nonoise", "-noprogress", "-seed", 3,
                                           "-floatfile", tmp_path / "s_#.bin"])
    assert rc == 0, err
    ds = Dataset.from_args(BASE + RANDOM, Stills(2, "random", vary=parse_vary(doc)),
                           seed=3, noise=False)
    p0, p1 = ds.frame_parameters(0), ds.frame_parameters(1)
    assert set(p0) == set(doc) and p0["distance"] != p1["distance"]
    assert p0["N"] == round(p0["N"]) and len(p0["cell"]) == 6 and len(p0["misset"]) == 3
    i = 1
    spec = ds.frame(i)
    assert spec.parameters == ds.frame_parameters(i)
    # the single run of those values as flags: the same float file, byte for byte
    rc, _o, err = run_cli(BASE + lattice_flags(spec) + ["-nonoise", "-nopgm", "-noprogress",
                                                        "-floatfile", tmp_path / "one.bin",
                                                        "-intfile", tmp_path / "one.img"])
    assert rc == 0, err
    assert (tmp_path / f"s_{i + 1}.bin").read_bytes() == (tmp_path / "one.bin").read_bytes()
    frame = ds.render(i)
    assert frame.parameters == ds.frame_parameters(i)
    assert frame.image.max() > 0


def _rule(seed, i, lattice, name, n):
    """The documented stream of -vary: numpy's default_rng([frame_seed(S, i, "vary"),
    lattice, position of the key in VARY_KEYS])."""
    code = [k.name for k in VARY_KEYS].index(name)
    return np.random.default_rng([frame_seed(seed, i, "vary"), lattice, code]), n


def test_vary_draws_follow_the_documented_rule_and_distributions():
    """200 stills, drawn without rendering: each key's values follow the documented
    stream, and their mean and SD match the request within 3 standard errors."""
    n, S = 200, 11
    doc = {"distance": {"normal": 0.5}, "lambda": {"uniform": [0.95, 1.05]},
           "mosaic": {"lognormal": 0.3}, "cell": {"normal": [0.4, 0.4, 0.8, 0, 0, 0.2]},
           "Ybeam": {"normal": 0.05}}
    ds = Dataset.from_args(BASE + ["-mosaic", "0.2"] + RANDOM,
                           Stills(n, "random", vary=parse_vary(doc)), seed=S, noise=False)
    rows = [ds.frame_parameters(i) for i in range(n)]
    # the documented rule, reimplemented: frame 7's distance and cell
    rng, _ = _rule(S, 7, 0, "distance", 1)
    assert rows[7]["distance"] == 100.0 + 0.5 * rng.standard_normal()
    rng, _ = _rule(S, 7, 0, "cell", 6)
    sd = [0.4, 0.4, 0.8, 0, 0, 0.2]
    base = [100, 100, 100, 90, 90, 90]
    want = [b + s * rng.standard_normal() for b, s in zip(base, sd)]
    assert rows[7]["cell"] == pytest.approx(want, rel=0, abs=1e-12)

    def check(x, mean, sd):
        x = np.asarray(x, dtype=np.float64)
        se_mean = sd / math.sqrt(n)
        se_sd = sd / math.sqrt(2 * (n - 1))
        assert abs(x.mean() - mean) <= 3 * se_mean, (x.mean(), mean, se_mean)
        assert abs(x.std(ddof=1) - sd) <= 3 * se_sd, (x.std(ddof=1), sd, se_sd)

    check([r["distance"] for r in rows], 100.0, 0.5)
    check([r["lambda"] for r in rows], 1.0, 0.1 / math.sqrt(12))
    check([math.log(r["mosaic"] / 0.2) for r in rows], 0.0, 0.3)
    Y0 = ds.vary_base()["Ybeam"]
    check([r["Ybeam"] for r in rows], Y0, 0.05)
    cells = np.array([r["cell"] for r in rows])
    for k in (0, 1, 2, 5):
        check(cells[:, k], base[k], sd[k])
    assert np.all(cells[:, 3:5] == 90.0)            # SD 0: unchanged
    # keys and lattices are independent streams: a key less or a lattice more leaves
    # the others' values alone (lattice 0 = the still itself)
    fewer = {k: v for k, v in doc.items() if k != "lambda"}
    ds2 = Dataset.from_args(BASE + ["-mosaic", "0.2"] + RANDOM,
                            Stills(3, "random", vary=parse_vary(fewer), lattices=2),
                            seed=S, noise=False)
    p = ds2.frame_parameters(2)
    assert p["distance"] == rows[2]["distance"] and p["cell"][0] == rows[2]["cell"]
    assert p["cell"][1] != rows[2]["cell"] and "lambda" not in p


def test_invalid_draws_are_redrawn_and_N_is_rounded():
    # a normal of SD 60 mm about 100 mm: ~5 % would be <= 0 -> redrawn (truncated)
    doc = {"distance": {"normal": 60.0}, "N": {"normal": 3.0}}
    ds = Dataset.from_args(BASE + RANDOM, Stills(300, "random", vary=parse_vary(doc)),
                           seed=1, noise=False)
    rows = [ds.frame_parameters(i) for i in range(300)]
    d = np.array([r["distance"] for r in rows])
    N = np.array([r["N"] for r in rows])
    assert d.min() > 0 and (N >= 1).all() and np.all(N == np.rint(N))
    # the redraw is the documented one: the same key's stream continues
    i = int(np.argmin(d))
    rng, _ = _rule(1, i, 0, "distance", 1)
    v = 100.0 + 60.0 * rng.standard_normal()
    while v <= 0:
        v = 100.0 + 60.0 * rng.standard_normal()
    assert d[i] == v


BAD = [
    ({"distance": {"normal": -1}}, "SD must be >= 0"),
    ({"pixel": {"normal": 0.01}}, "not a flag -vary can change"),
    ({"distance": {"gauss": 1}}, "unknown distribution"),
    ({"distance": {"normal": 1, "uniform": [1, 2]}}, "one distribution"),
    ({"distance": {"uniform": [-5, 100]}}, "outside the valid range"),
    ({"lambda": {"uniform": [1.2, 1.1]}}, "LO 1.2 > HI 1.1"),
    ({"Xbeam": {"lognormal": 0.1}}, "lognormal keeps the sign"),
    ({"cell": {"normal": [1, 1]}}, "expected one number or 6"),
    ({"distance": {"normal": "1"}}, "finite numbers"),
    ({"N": {"normal": 1}, "Na": {"normal": 1}}, "not both"),
    ({"mosaic": {"lognormal": 0.1}}, "which is 0"),
    ([1, 2], "JSON object"),
]


@pytest.mark.parametrize("doc,words", BAD, ids=[w.split()[0] for _d, w in BAD])
def test_bad_vary_files_are_refused_with_one_line(doc, words, tmp_path):
    path = tmp_path / "v.json"
    path.write_text(json.dumps(doc))
    rc, out, err = run_cli(BASE + RANDOM + ["-stills", 2, "-vary", path,
                                            "-nexus", tmp_path / "x.h5"])
    assert rc == 2 and words in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("nbsim: error: -vary")
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("argv,words", [
    (["-nimages", 2, "-vary", "v.json"], "-vary: needs -stills N"),
    (["-nimages", 2, "-lattices", 2], "-lattices: needs -stills N"),
    (["-stills", 2, "-lattices", 2], "needs -misset random"),
    (["-stills", 2, "-lattices", 0] + RANDOM, "at least 1 crystal"),
    (["-stills", 2, "-vary", "missing.json"], "-vary: cannot open missing.json"),
    (["-stills", 2, "-vary", "bad.json"], "not JSON"),
    (["-stills", 2, "-vary", "v.json", "-flux", "1e12"], "-flux decides the fluence"),
    (["-stills", 2, "-vary", "lam.json", "-sase_bandwidth", "0.003"] + RANDOM,
     "lambda cannot vary with -sase_bandwidth"),
], ids=["rotation", "rotation-lattices", "not-random", "zero", "missing", "json", "flux",
        "lambda-sase"])
def test_vary_and_lattices_misuse_is_refused(argv, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "v.json").write_text(json.dumps({"fluence": {"normal": 1e27}}))
    (tmp_path / "bad.json").write_text("{distance: 1")
    (tmp_path / "lam.json").write_text(json.dumps({"lambda": {"normal": 0.01}}))
    rc, _o, err = run_cli(BASE + argv + ["-nexus", "x.h5"])
    assert rc == 2 and words in err, err
    assert len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ acceptance 2
def test_two_lattices_are_the_sum_of_their_single_renders_with_truth_and_expt(tmp_path):
    doc = {"misset": {"normal": 1.0}, "N": {"uniform": [4, 6]}, "lambda": {"normal": 0.01}}
    (tmp_path / "v.json").write_text(json.dumps(doc))
    flags = BASE + RANDOM
    rc, _o, err = run_cli(flags + ["-stills", 2, "-lattices", 2, "-vary", tmp_path / "v.json",
                                   "-nonoise", "-noprogress", "-seed", 4,
                                   "-truth", tmp_path / "t.refl",
                                   "-write_expt", tmp_path / "t.expt",
                                   "-nexus", tmp_path / "t.h5"])
    assert rc == 0, err
    ds = Dataset.from_args(flags, Stills(2, "random", vary=parse_vary(doc), lattices=2),
                           seed=4, noise=False, truth=True)
    i = 1
    spec = ds.frame(i)
    assert len(spec.all_lattices) == 2
    # lattice 0 is the still's own random orientation; lattice 1's seed is the documented
    # frame_seed(frame_seed(M, i, "misset"), 1, "lattice")
    m0 = frame_seed(5, i, "misset")
    assert spec.misset_seed == m0
    assert spec.lattices[0].misset_seed == frame_seed(m0, 1, "lattice")
    singles = [Simulator.from_args(flags + lattice_flags(s)).run() for s in spec.all_lattices]
    # each lattice's own values: lambda is the frame's (one beam), N and misset its own
    assert singles[0].max() > 0 and singles[1].max() > 0
    want = singles[0] + singles[1]
    frame = ds.render(i)
    assert np.max(np.abs(frame.image[0] - want)) <= 1e-12 * want.max()
    p = frame.parameters
    assert isinstance(p["lambda"], float) and len(p["N"]) == 2 and len(p["misset"]) == 2
    # truth: the rows of lattice k have id = i*2 + k and hold that lattice's photons
    t = frame.truth
    for k in range(2):
        sel = t["id"] == i * 2 + k
        assert sel.any()
        assert t["intensity.true.value"][sel].sum() == pytest.approx(singles[k].sum(),
                                                                     rel=1e-9)
    assert frame.labels.max() < t["id"].shape[0]
    # the truth file names 4 experiments, the .expt has them: 2 per still sharing the
    # still's imageset, beam and detector, each crystal the rendered lattice's
    from nbsim.io.refl import read_refl
    table, ids = read_refl(tmp_path / "t.refl")
    assert sorted(ids) == [0, 1, 2, 3] and set(table["id"].tolist()) == {0, 1, 2, 3}
    e = json.loads((tmp_path / "t.expt").read_text())
    assert len(e["experiment"]) == 4 and len(e["crystal"]) == 4
    assert [x["imageset"] for x in e["experiment"]] == [0, 0, 1, 1]
    assert [x["beam"] for x in e["experiment"]] == [0, 0, 1, 1]
    assert [x["identifier"] for x in e["experiment"]] == [ids[k] for k in range(4)]
    assert e["beam"][1]["wavelength"] == pytest.approx(p["lambda"], rel=1e-12)
    # the crystal of experiment 3 (frame 1, lattice 1): its real-space axes are as long
    # as the cell (100 A) and differ from lattice 0's
    a3 = np.array(e["crystal"][3]["real_space_a"])
    a2 = np.array(e["crystal"][2]["real_space_a"])
    assert np.linalg.norm(a3) == pytest.approx(100.0) and not np.allclose(a2, a3)
    # NeXus: the per-frame record and the per-frame wavelength
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "t.h5", "r") as f:
        fp = f["entry/nbsim/frame_parameters"]
        assert fp["N"].shape == (2, 2) and fp["misset"].shape == (2, 2, 3)
        assert fp["lambda"].attrs["units"] == "A"
        assert fp["lambda"][i] == p["lambda"] and list(fp["N"][i]) == p["N"]
        lam = f["entry/instrument/beam/incident_wavelength"][()]
        assert lam.shape == (2,) and lam[i] == pytest.approx(p["lambda"], rel=1e-12)
        assert f["entry/sample/unit_cell"].shape == (2, 6)


# ------------------------------------------------------------------ DIALS
def _dials_env():
    import os
    hdf5plugin = pytest.importorskip("hdf5plugin")
    env = dict(os.environ)
    env["HDF5_PLUGIN_PATH"] = hdf5plugin.PLUGIN_PATH
    env.pop("PYTHONPATH", None)
    return env


_READ_MODELS = r"""
import json, sys
from dxtbx.model.experiment_list import ExperimentListFactory as F
el = F.from_json_file(sys.argv[1], check_format=False)
print(json.dumps([[e.beam.get_wavelength(), e.detector[0].get_distance(),
                   e.detector[0].get_beam_centre(e.beam.get_s0())] for e in el]))
"""


@pytest.mark.dials
@pytest.mark.skipif(shutil.which("dials.import") is None, reason="DIALS is not installed")
def test_dials_import_sees_each_stills_drawn_distance_and_wavelength(tmp_path):
    pytest.importorskip("h5py")
    doc = {"distance": {"normal": 4.0}, "lambda": {"normal": 0.03}, "Xbeam": {"normal": 0.3}}
    (tmp_path / "v.json").write_text(json.dumps(doc))
    n = 3
    rc, _o, err = run_cli(BASE + RANDOM + ["-stills", n, "-vary", tmp_path / "v.json",
                                           "-noprogress", "-seed", 9,
                                           "-nexus", tmp_path / "x.h5",
                                           "-write_expt", tmp_path / "x.expt"])
    assert rc == 0, err
    ds = Dataset.from_args(BASE + RANDOM, Stills(n, "random", vary=parse_vary(doc)), seed=9)
    drawn = [ds.frame_parameters(i) for i in range(n)]
    env = _dials_env()

    def models(args, name):
        r = subprocess.run(["dials.import", *args, f"output.experiments={name}"],
                           cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
        r = subprocess.run(["/usr/bin/python3", "-c", _READ_MODELS, name], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-1500:]
        return json.loads(r.stdout)

    via_expt = models(["input.experiments=x.expt"], "ie.expt")
    via_nexus = models(["x.h5"], "in.expt")
    assert len(via_expt) == len(via_nexus) == n
    for i in range(n):
        lam, dist, (bx, _by) = via_expt[i]
        # MOSFLM: -distance is the beam-spot distance of a detector normal to the beam
        assert dist == pytest.approx(drawn[i]["distance"], abs=1e-9)
        assert lam == pytest.approx(drawn[i]["lambda"], rel=1e-12)
        # MOSFLM's Xbeam is the beam centre along dxtbx's slow axis (+0.5 px convention
        # aside, nanoBragg's Fbeam = Ybeam + 0.5 px, Sbeam = Xbeam + 0.5 px)
        assert via_expt[i][2][1] == pytest.approx(drawn[i]["Xbeam"] + 0.05, abs=1e-9)
        # NeXus: DIALS reads the wavelength per image (NXbeam incident_wavelength[nP]);
        # its detector is frame 0's (the transformations are not per frame)
        assert via_nexus[i][0] == pytest.approx(drawn[i]["lambda"], rel=1e-6)
        assert via_nexus[i][1] == pytest.approx(drawn[0]["distance"], abs=1e-6)
        del bx


# Run with DIALS' python: the misorientation (deg) of each rendered lattice of still i
# (experiments 2i, 2i+1 of nbsim's -write_expt) to the nearest crystal DIALS indexed,
# over the point group 222 of the orthorhombic lattice (the indexing basis may differ by
# a two-fold); None where indexing failed.
_MISORIENTATION = r"""
import itertools, json, sys
import numpy as np
from dxtbx.model.experiment_list import ExperimentListFactory as F
truth = F.from_json_file(sys.argv[1], check_format=False)
def u_of(real_rows):
    q, r = np.linalg.qr(np.asarray(real_rows).T)
    return q * np.sign(np.diag(r))
ops = [np.diag(s) for s in itertools.product([1, -1], repeat=3) if np.prod(s) > 0]
out = []
for i, fn in enumerate(sys.argv[2:]):
    try:
        found = F.from_json_file(fn, check_format=False)
    except Exception:
        out.append([None, None])
        continue
    # d[k][j]: misorientation of true lattice k and found crystal j, the least over the
    # four P222 operations; each found crystal is given to one true lattice (the
    # assignment of least total), a true lattice without a crystal gets 180
    d = []
    for k in range(2):
        ut = u_of(np.array(truth[2 * i + k].crystal.get_real_space_vectors()))
        dk = []
        for e in found:
            a = np.array(e.crystal.get_real_space_vectors())
            cs = [(np.trace(ut @ u_of(op @ a).T) - 1.0) / 2.0 for op in ops]
            dk.append(float(np.degrees(np.arccos(np.clip(max(cs), -1.0, 1.0)))))
        d.append(dk + [180.0, 180.0])
    m = len(found) + 2
    out.append(min(([d[0][j0], d[1][j1]] for j0 in range(m) for j1 in range(m)
                    if j0 != j1), key=sum))
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.dials
@pytest.mark.skipif(shutil.which("dials.index") is None, reason="DIALS is not installed")
def test_dials_indexes_both_lattices_of_two_lattice_stills(tmp_path):
    """Issue 19: 20 strong stills of 2 lattices -- orthorhombic 70x80x90 A, N 10
    (gauss_xtal), a monochromatic 1 A beam, 1024^2 pixels of 0.1 mm at 80 mm (1.8 A at the
    edge), Poisson noise, miniCBF frames: a few thousand spots of 1-3 pixels per still --;
    per still dials.index (sequences indexer -- Debian's stills indexer and stills_process
    need cctbx.xfel --, max_lattices=2, the known cell and P222, detector and beam fixed,
    Tukey outlier rejection: the stills default sauter_poon failed in its LBFGS on a still)
    finds both lattices within 0.2 deg on >= 80 % of the stills (the orientation against
    the rendered one from -write_expt, over the four 222 operations, each found crystal
    given to one lattice).  Measured (docs/datasets.md): both lattices found and
    within 0.2 deg on 100 % of the stills (40/40 lattices), median 0.007 deg, worst
    0.025 deg; about 10 min on 2 shared cores."""
    from concurrent.futures import ThreadPoolExecutor
    n = 20
    rc, _o, err = run_cli(["-cell", 70, 80, 90, 90, 90, 90, "-default_F", 100, "-N", 10,
                           "-gauss_xtal", "-water", 0.1, "-fluence", 1e29, "-lambda", 1,
                           "-distance", 80, "-detpixels", 1024, "-pixel", 0.1,
                           "-oversample", 2,
                           "-misset", "random", "-stills", n, "-lattices", 2, "-seed", 7,
                           "-cbf", tmp_path / "x_##.cbf", "-write_expt", tmp_path / "x.expt",
                           "-noprogress"])
    assert rc == 0, err
    env = _dials_env()

    def dials(*cmd):
        r = subprocess.run([str(c) for c in cmd], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=1800)
        return r.returncode, r.stdout

    frames = sorted(p.name for p in tmp_path.glob("x_*.cbf"))
    for cmd in (["dials.import", *frames, "convert_sequences_to_stills=True"],
                ["dials.find_spots", "imported.expt", "nproc=2"],
                ["dials.split_experiments", "imported.expt", "strong.refl"]):
        rc, out = dials(*cmd)
        assert rc == 0, out[-2000:]
    splits = sorted(p.stem for p in tmp_path.glob("split_*.expt"))
    assert len(splits) == n

    def index(stem):
        dials("dials.index", f"{stem}.expt", f"{stem}.refl",
              "unit_cell=70,80,90,90,90,90", "space_group=P222", "max_lattices=2",
              "stills.indexer=sequences", "detector.fix=all", "beam.fix=all",
              "basis_vector_combinations.max_refine=5",
              "refinement.reflections.outlier.algorithm=tukey",
              f"output.experiments=idx_{stem}.expt", f"output.reflections=idx_{stem}.refl",
              f"output.log=idx_{stem}.log")
        return f"idx_{stem}.expt"

    with ThreadPoolExecutor(2) as pool:
        found = list(pool.map(index, splits))
    r = subprocess.run(["/usr/bin/python3", "-c", _MISORIENTATION, "x.expt", *found],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    angles = np.array([[180.0 if a is None else a for a in row]
                       for row in json.loads(r.stdout)])
    print("misorientation (deg) per still and lattice:", np.round(angles, 3).tolist())
    both = np.all(angles <= 0.2, axis=1)
    print(f"both lattices within 0.2 deg: {both.mean():.0%} of stills; lattices within "
          f"0.2 deg: {(angles <= 0.2).mean():.0%}; median {np.median(angles):.3f} deg, "
          f"worst {angles.max():.3f} deg")
    assert both.mean() >= 0.8

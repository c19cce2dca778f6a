"""-truth FILE.refl: the DIALS reflection file, the label images, sweeps (partiality),
stills, -resume, Dask, bad input (docs/truth.md)."""
from __future__ import annotations

import io
import shutil
import subprocess
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from nbsim.cli.main import main
from nbsim.io.refl import read_refl
from nbsim.truth import COLUMNS

BASE = ["-cell", "50", "60", "70", "90", "90", "90", "-N", "5", "-lambda", "1",
        "-distance", "60", "-pixel", "0.5", "-misset", "10", "20", "30", "-detpixels", "32",
        "-oversample", "1", "-default_F", "100", "-noprogress"]
SWEEP = BASE + ["-phi", "0", "-osc", "0.5", "-phisteps", "2", "-mosaic", "0.2",
                "-mosaic_domains", "2"]


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    rc = main([str(a) for a in argv], stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def _expt_identifiers(path):
    """The experiment identifiers of a -write_expt file, in experiment order."""
    import json
    return [e["identifier"] for e in json.loads(Path(path).read_text())["experiment"]]


# Gaussian spots (no sinc tails on every frame) of a larger crystal: some reflections
# rise and set inside the sweep
GAUSS = ["-gauss_xtal", "-N", "10", "-oversample", "2"]


def test_sweep_truth_sums_to_the_wide_frame_and_partialities_to_one(tmp_path):
    n = 12
    rc, _, err = run_cli(SWEEP + GAUSS + ["-nimages", n, "-nexus", tmp_path / "s.h5",
                                  "-truth", tmp_path / "s.refl",
                                  "-write_expt", tmp_path / "s.expt"])
    assert rc == 0, err
    t, ids = read_refl(tmp_path / "s.refl")
    # the sweep's one experiment, named as -write_expt names it (DIALS matches by name)
    assert ids == {0: _expt_identifiers(tmp_path / "s.expt")[0]} and np.all(t["id"] == 0)
    assert not (tmp_path / "s.refl.parts").exists()
    z = t["xyzcal.px"][:, 2]
    frame = np.floor(z).astype(int)
    assert frame.min() == 0 and frame.max() == n - 1
    # one wide frame with the same phi samples holds the sweep's photons per reflection
    from nbsim import Simulator
    wide = Simulator.from_args(BASE[:-1] + ["-phi", "0", "-osc", str(0.5 * n), "-phisteps",
                                            str(2 * n), "-mosaic", "0.2",
                                            "-mosaic_domains", "2"] + GAUSS)
    wide.run(truth=True)
    w = wide.truth
    key = lambda hkl, p: (tuple(int(v) for v in hkl), int(p))  # noqa: E731
    wide_I = {key(h, p): v for h, p, v in zip(w["miller_index"], w["panel"],
                                               w["intensity.true.value"])}
    sweep_I = {}
    for h, p, v in zip(t["miller_index"], t["panel"], t["intensity.true.value"]):
        sweep_I[key(h, p)] = sweep_I.get(key(h, p), 0.0) + v
    assert set(sweep_I) == set(wide_I)
    # nanoBragg divides by the steps of the frame: n times the wide frame's phi steps
    for k, v in wide_I.items():
        assert abs(sweep_I[k] / n - v) <= 1e-9 * v + 1e-300, k
    # reflections the sweep crosses completely: less than 1e-7 of their photons in its
    # first and last frames
    hkl = [tuple(h) for h in t["miller_index"]]
    total, edge = {}, {}
    for h, f, v in zip(hkl, frame, t["intensity.true.value"]):
        total[h] = total.get(h, 0.0) + v
        if f in (0, n - 1):
            edge[h] = edge.get(h, 0.0) + v
    inner = {h for h in total if edge.get(h, 0.0) < 1e-7 * total[h] and total[h] > 1e-3}
    assert len(inner) >= 5
    for h in inner:
        rows = [r for r, g in enumerate(hkl) if g == h]
        assert abs(t["partiality"][rows].sum() - 1.0) <= 1e-6
        assert np.all((t["partiality"][rows] > 0) & (t["partiality"][rows] <= 1))
    # the labels beside the data in the NeXus file, one chunk per frame
    with h5py.File(tmp_path / "s.h5", "r") as f:
        lab = f["entry/truth/labels"]
        assert lab.shape == f["entry/data/data"].shape and lab.chunks == (1, 32, 32)
        first_row = f["entry/truth/first_row"][()]
        labels = lab[()]
        frac = f["entry/truth/bragg_fraction"][()]
    counts = np.bincount(frame, minlength=n)
    assert np.array_equal(first_row, np.concatenate([[0], np.cumsum(counts)[:-1]]))
    for i in range(n):
        assert labels[i].max() <= counts[i] - 1 and labels[i].min() >= -1
    lit = labels >= 0
    assert lit.sum() > 0
    assert np.allclose(frac[lit], 1.0, rtol=1e-6) and np.all(frac[~lit] == 0)


def test_stills_ids_and_labels_file(tmp_path):
    rc, _, err = run_cli(NO_MISSET + ["-stills", 3, "-orientations", _orientations(tmp_path),
                                 "-truth", tmp_path / "st.refl",
                                 "-write_expt", tmp_path / "st.expt"])
    assert rc == 0, err
    t, ids = read_refl(tmp_path / "st.refl")
    expt_ids = _expt_identifiers(tmp_path / "st.expt")
    assert len(set(expt_ids)) == 3
    assert ids == {0: expt_ids[0], 1: expt_ids[1], 2: expt_ids[2]}
    assert sorted(set(t["id"].tolist())) == [0, 1, 2]
    assert np.all(t["xyzcal.px"][:, 2] == 0.0) and np.all(t["xyzcal.mm"][:, 2] == 0.0)
    assert np.all(np.isnan(t["partiality"]))
    with h5py.File(tmp_path / "st_labels.h5", "r") as f:
        assert f["labels"].shape == (3, 32, 32)
        assert f["bragg_fraction"].shape == (3, 32, 32)
        # the three orientations differ: so do their labels' reflections
        fr = f["first_row"][()]
    assert fr[0] == 0 and fr[1] == np.sum(t["id"] == 0)


# -orientations gives every still's orientation: a -misset as well is refused
NO_MISSET = [a for i, a in enumerate(BASE)
             if not 0 <= i - BASE.index("-misset") <= 3]


def _orientations(tmp_path):
    p = tmp_path / "orient.txt"
    p.write_text("10 20 30\n40 10 5\n70 80 90\n")
    return p


def test_resume_gives_the_same_truth(tmp_path, monkeypatch):
    job = SWEEP + ["-nimages", 4]
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir()
    b.mkdir()
    rc, _, err = run_cli(job + ["-truth", a / "t.refl"])
    assert rc == 0, err
    from nbsim.dataset import job as jobmod
    real = jobmod.Dataset.render

    def stop_at_2(self, i):
        if i == 2:
            raise KeyboardInterrupt
        return real(self, i)
    monkeypatch.setattr(jobmod.Dataset, "render", stop_at_2)
    rc, _, err = run_cli(job + ["-truth", b / "t.refl"])
    assert rc == 130
    assert not (b / "t.refl").exists()
    assert sorted(p.name for p in (b / "t.refl.parts").iterdir()) == [
        "frame_000000.npz", "frame_000001.npz"]
    monkeypatch.setattr(jobmod.Dataset, "render", real)
    rc, out, err = run_cli(job + ["-truth", b / "t.refl", "-resume"])
    assert rc == 0, err
    assert "2 rendered, 2 kept" in out
    ta, _ = read_refl(a / "t.refl")
    tb, _ = read_refl(b / "t.refl")
    for c in COLUMNS:
        assert np.array_equal(ta[c], tb[c], equal_nan=True), c
    with h5py.File(a / "t_labels.h5") as fa, h5py.File(b / "t_labels.h5") as fb:
        assert np.array_equal(fa["labels"][()], fb["labels"][()])


def test_dask_workers_give_the_same_truth(tmp_path):
    pytest.importorskip("distributed")
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for d, extra in ((a, []), (b, ["-workers", "2"])):
        rc, _, err = run_cli(SWEEP + ["-nimages", 3, "-truth", d / "t.refl"] + extra)
        assert rc == 0, err
    ta, _ = read_refl(a / "t.refl")
    tb, _ = read_refl(b / "t.refl")
    for c in COLUMNS:
        assert np.array_equal(ta[c], tb[c], equal_nan=True), c


@pytest.mark.parametrize("argv,msg", [
    (["-truth", "x.txt"], "-truth x.txt: the truth file is a DIALS reflection file"),
    (["-truth", "nodir/x.refl"], "-truth: cannot write nodir/x.refl"),
    (["-nimages", "2", "-truth", "x.txt"], "-truth x.txt"),
    (["-nimages", "2", "-truth", "t.refl", "-nexus", "s.h5", "-workers", "1",
      "-worker_blocks", "1"], "-truth: not available with worker-written"),
])
def test_bad_truth_flags_exit_2_and_write_nothing(argv, msg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(SWEEP + argv)
    assert rc == 2
    assert err.count("\n") == 1 and msg in err, err
    assert list(tmp_path.iterdir()) == []


SEED = 11
DIALS_CHECK = textwrap.dedent("""
    import sys
    from dials.array_family import flex
    t = flex.reflection_table.from_file(sys.argv[1])
    types = {k: type(t[k]).__name__ for k in t.keys()}
    assert types["miller_index"] == "miller_index", types
    assert types["xyzcal.px"] == "vec3_double" and types["xyzcal.mm"] == "vec3_double"
    assert types["panel"] == "size_t" and types["id"] == "int", types
    assert types["intensity.true.value"] == "double" and types["d"] == "double"
    assert types["num_pixels.true"] == "int" and types["partiality"] == "double"
    ids = dict(t.experiment_identifiers())
    print(t.size(), sorted(ids.items()), t["miller_index"][0],
          "%.12g" % flex.sum(t["intensity.true.value"]))
""")


def test_refl_loads_in_dials(tmp_path):
    if shutil.which("dials.import") is None:
        pytest.skip("DIALS is not installed (dials.import is not on PATH)")
    rc, _, err = run_cli(SWEEP + ["-nimages", 2, "-seed", SEED, "-truth", tmp_path / "t.refl"])
    assert rc == 0, err
    t, _ = read_refl(tmp_path / "t.refl")
    script = tmp_path / "check.py"
    script.write_text(DIALS_CHECK)
    p = subprocess.run(["/usr/bin/python3", str(script), str(tmp_path / "t.refl")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    n = p.stdout.split(" ", 1)[0]
    assert int(n) == t["id"].shape[0]
    from nbsim.io.dials_expt import experiment_identifier
    assert str([(0, experiment_identifier(str(SEED), 0))]) in p.stdout
    assert p.stdout.split()[-1] == "%.12g" % t["intensity.true.value"].sum()
    assert str(tuple(int(v) for v in t["miller_index"][0])) in p.stdout


def test_bragg_fraction_counts_the_stol_background(tmp_path):
    from pathlib import Path
    from nbsim import Simulator
    water = str(Path(__file__).resolve().parent / "fixtures" / "nonbragg" / "water.stol")
    rc, _, err = run_cli(BASE + ["-stol", water, "-nonoise", "-nopgm",
                                 "-floatfile", tmp_path / "f.bin",
                                 "-intfile", tmp_path / "i.img",
                                 "-truth", tmp_path / "one.refl"])
    assert rc == 0, err
    total = np.fromfile(tmp_path / "f.bin", dtype=np.float32).reshape(32, 32)
    with h5py.File(tmp_path / "one_labels.h5", "r") as f:
        frac = f["bragg_fraction"][0]
        assert f["labels"].shape == (1, 32, 32)
    sim = Simulator.from_args(BASE[:-1])
    bragg = sim.run(truth=True)
    assert np.all(frac < 1.0) and frac.max() > 0.0
    # the Bragg share of the float image (render + -stol background, float32)
    assert np.allclose(frac * total, bragg, rtol=1e-5, atol=1e-6 * bragg.max())
    t, ids = read_refl(tmp_path / "one.refl")
    from nbsim.io.dials_expt import experiment_identifier
    assert ids == {0: experiment_identifier(None, 0)}     # -write_expt's single image
    assert np.allclose(t["intensity.true.value"], sim.truth["intensity.true.value"],
                       rtol=1e-12)


def test_frames_reuse_the_slot_arrays_bit_identically():
    """A dataset's truth renders reuse one set of slot arrays frame after frame (the
    lanes kernels empty the rows they fill): frame 2 after frames 0 and 1 has the same
    bits as frame 2 rendered alone."""
    from nbsim.dataset.frames import RotationScan
    from nbsim.dataset.job import Dataset

    def dataset():
        return Dataset.from_args([a for a in SWEEP if a != "-noprogress"], RotationScan(3), noise=False, truth=True)
    ds = dataset()
    seq = [ds.render(i) for i in range(3)]
    assert len(ds.renderer._truth_buffers) == 1
    alone = dataset().render(2)
    assert seq[2].image.tobytes() == alone.image.tobytes()
    for c in COLUMNS:
        a, b = np.asarray(seq[2].truth[c]), np.asarray(alone.truth[c])
        assert a.tobytes() == b.tobytes(), c
    assert seq[2].labels.tobytes() == alone.labels.tobytes()
    assert len(seq[2].truth["id"]) > 0

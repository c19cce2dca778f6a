"""Input-file costs (issue 10, acceptance 4): best of N wall times, in-process.

    python bench/bench_inputs.py [--repeats 3]

1. a 2 A MTZ of a 100 x 100 x 100 A cell in P2(1)2(1)2(1) (random amplitudes, written
   with gemmi): read + P1 expansion + grid (:func:`nbsim.inputs.read_mtz`,
   :func:`nbsim.inputs.p1_hkl_data`); limit 1 s;
2. Fcalc of a 2,000-atom model (same cell and group, random positions, C/N/O/S, B
   10-30) to 2 A with the CLI's choice (``method="auto"``, i.e. gemmi's FFT at this
   size); limit 10 s.  The direct sum's cost is estimated from 300 reflections.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def make_mtz(path, d_min=2.0):
    import gemmi
    rng = np.random.default_rng(0)
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup("P 21 21 21")
    mtz.set_cell_for_all(gemmi.UnitCell(100, 100, 100, 90, 90, 90))
    mtz.add_dataset("bench")
    mtz.add_column("FP", "F")
    mtz.add_column("SIGFP", "Q")
    hkl = gemmi.make_miller_array(mtz.cell, mtz.spacegroup, d_min)
    mtz.set_data(np.column_stack([hkl, rng.uniform(1, 1000, len(hkl)), np.ones(len(hkl))]))
    mtz.write_to_file(str(path))
    return len(hkl)


def make_model(path, n_atoms=2000):
    import gemmi
    rng = np.random.default_rng(1)
    st = gemmi.Structure()
    st.cell = gemmi.UnitCell(100, 100, 100, 90, 90, 90)
    st.spacegroup_hm = "P 21 21 21"
    model, chain = gemmi.Model("1"), gemmi.Chain("A")
    for i in range(n_atoms):
        res = gemmi.Residue()
        res.name, res.seqid = "UNK", gemmi.SeqId(i + 1, " ")
        atom = gemmi.Atom()
        el = ("C", "N", "O", "S")[i % 4]
        atom.name, atom.element = el, gemmi.Element(el)
        atom.pos = gemmi.Position(*(rng.random(3) * 100))
        atom.b_iso, atom.occ = float(rng.uniform(10, 30)), 1.0
        res.add_atom(atom)
        chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    st.write_pdb(str(path))


def best(fn, repeats):
    times = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), times, out


def run(repeats: int = 3) -> dict:
    from nbsim.inputs import fcalc_from_file, p1_hkl_data, read_mtz
    from nbsim.inputs.model import _direct, read_model
    import gemmi
    with tempfile.TemporaryDirectory() as tmp:
        mtz = Path(tmp) / "b.mtz"
        n_asu = make_mtz(mtz)
        t_mtz, all_mtz, (grid, p1) = best(lambda: p1_hkl_data(read_mtz(mtz)), repeats)
        pdb = Path(tmp) / "b.pdb"
        make_model(pdb)
        t_fc, all_fc, refl = best(lambda: fcalc_from_file(pdb, 2.0), repeats)
        st = read_model(pdb)
        st.setup_cell_images()
        hkl = np.asarray(gemmi.make_miller_array(st.cell, st.find_spacegroup(), 2.0))
        t0 = time.perf_counter()
        _direct(gemmi, st, hkl[:300])
        per = (time.perf_counter() - t0) / 300
    return {"mtz_asu": n_asu, "mtz_p1": int(p1[0].size), "mtz_s": t_mtz, "mtz_all": all_mtz,
            "fcalc_refl": len(refl), "fcalc_s": t_fc, "fcalc_all": all_fc,
            "fcalc_source": refl.source, "direct_estimate_s": per * len(hkl)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    r = run(ap.parse_args().repeats)
    print(f"MTZ 2 A, 100^3 A, P212121: {r['mtz_asu']} reflections -> {r['mtz_p1']} in P1: "
          f"best {r['mtz_s']:.3f} s of {', '.join(f'{t:.3f}' for t in r['mtz_all'])} "
          f"(limit 1 s)")
    print(f"Fcalc 2000 atoms to 2 A: {r['fcalc_refl']} reflections, {r['fcalc_source']}: "
          f"best {r['fcalc_s']:.3f} s of {', '.join(f'{t:.3f}' for t in r['fcalc_all'])} "
          f"(limit 10 s); the direct sum would take ~{r['direct_estimate_s']:.0f} s")

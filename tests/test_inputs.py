"""nbsim.inputs: MTZ / SF-mmCIF / model Fcalc through gemmi, P1 expansion, DIALS .expt.

Every file is written here with gemmi (or by hand, for the JSON); the references are
computed independently in the test: symmetry applied by our own loop over gemmi's
operator table, Fcalc summed over atoms and symmetry copies with the IT92 coefficients,
the DIALS geometry derived from nanoBragg's resolved geometry.
"""
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

gemmi = pytest.importorskip("gemmi")

import nbsim  # noqa: E402
from nbsim.args import parse_args  # noqa: E402
from nbsim.cli.main import main  # noqa: E402

DEN = 24   # gemmi stores rotations and translations x 24


# ---------------------------------------------------------------- helpers
def write_mtz(path, sg_name, cell, d_min, seed, label="FP", intensities=False):
    rng = np.random.default_rng(seed)
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup(sg_name)
    mtz.set_cell_for_all(gemmi.UnitCell(*cell))
    mtz.add_dataset("sim")
    mtz.add_column(label, "J" if intensities else "F")
    mtz.add_column("SIG" + label, "Q")
    hkl = gemmi.make_miller_array(mtz.cell, mtz.spacegroup, d_min)
    values = rng.uniform(1.0, 1000.0, len(hkl))
    if intensities:
        values[::7] *= -1          # some negative intensities
    mtz.set_data(np.column_stack([hkl, values, np.ones(len(hkl))]))
    mtz.write_to_file(str(path))
    # the values as the file stores them (float32)
    return hkl.astype(int), values.astype(np.float32).astype(np.float64)


def p1_by_hand(sg_name, hkl, F, friedel=True):
    """Our own expansion: h' = h R / 24 for every operator of gemmi's table (centring
    included, harmless), then -h'; the first value placed at an index wins."""
    ops = list(gemmi.SpaceGroup(sg_name).operations())
    out = {}
    for (h, k, l), f in zip(hkl.tolist(), F.tolist()):
        out.setdefault((h, k, l), f)
    for (h, k, l), f in zip(hkl.tolist(), F.tolist()):
        for op in ops:
            R = op.rot
            hp = tuple(sum((h, k, l)[i] * R[i][j] for i in range(3)) // DEN for j in range(3))
            out.setdefault(hp, f)
            if friedel:
                out.setdefault((-hp[0], -hp[1], -hp[2]), f)
    return out


def write_hkl_text(path, table):
    path.write_text("".join(f"{h} {k} {l} {f!r}\n" for (h, k, l), f in table.items()))


def cell_flags(cell):
    return ["-cell"] + [repr(float(v)) for v in cell]


RENDER = ["-N", "4", "-misset", "10", "25", "40", "-detpixels", "48", "-pixel", "0.5",
          "-distance", "60", "-lambda", "1.2", "-oversample", "1"]


# ---------------------------------------------------- 1. MTZ -> image equals P1 -hkl
@pytest.mark.parametrize("sg_name, cell", [
    ("P 21 21 21", (31.0, 37.0, 43.0, 90.0, 90.0, 90.0)),
    ("P 61 2 2", (34.0, 34.0, 52.0, 90.0, 90.0, 120.0)),
])
def test_mtz_image_equals_hand_expanded_hkl(tmp_path, sg_name, cell):
    hkl, F = write_mtz(tmp_path / "x.mtz", sg_name, cell, 3.5, seed=len(sg_name))
    table = p1_by_hand(sg_name, hkl, F)
    write_hkl_text(tmp_path / "p1.hkl", table)

    parsed = parse_args(["-mtz", str(tmp_path / "x.mtz")] + RENDER)
    g = parsed.hkl_data
    # every hand-expanded reflection holds its value, and nothing else is nonzero
    for (h, k, l), f in table.items():
        assert g.F[h - g.h_min, k - g.k_min, l - g.l_min] == f
    assert np.count_nonzero(g.F) == len(table)
    assert g.hkls == len(table)
    # the cell came from the file (no -cell given)
    assert np.allclose(np.array(parsed.config.crystal.cell[:3]) * 1e10, cell[:3], rtol=0)

    img_mtz = nbsim.Simulator.from_args(["-mtz", str(tmp_path / "x.mtz")] + RENDER).run()
    img_hkl = nbsim.Simulator.from_args(["-hkl", str(tmp_path / "p1.hkl")] + cell_flags(cell)
                                        + RENDER).run()
    assert img_hkl.max() > 0 and np.count_nonzero(img_hkl > 1e-3 * img_hkl.max()) > 20
    assert np.max(np.abs(img_mtz - img_hkl)) <= 1e-12 * img_hkl.max()
    # without the expansion most of the spots would be dark: the test can fail
    asu = {tuple(x): f for x, f in zip(hkl.tolist(), F.tolist())}
    write_hkl_text(tmp_path / "asu.hkl", asu)
    img_asu = nbsim.Simulator.from_args(["-hkl", str(tmp_path / "asu.hkl")] + cell_flags(cell)
                                        + RENDER).run()
    assert np.max(np.abs(img_asu - img_hkl)) > 0.1 * img_hkl.max()


def test_python_api_grid_in_config(tmp_path):
    from nbsim.inputs import mtz_structure_factors
    cell = (34.0, 34.0, 52.0, 90.0, 90.0, 120.0)
    write_mtz(tmp_path / "x.mtz", "P 61 2 2", cell, 4.0, seed=8)
    cfg = parse_args(["-default_F", "1", "-cell", "1", "1", "1", "90", "90", "90"]
                     + RENDER).config
    cfg.crystal.cell = None
    sf = mtz_structure_factors(tmp_path / "x.mtz")
    sf.apply_to(cfg)
    assert cfg.structure.default_F == 0.0
    img = nbsim.Simulator(cfg).run()
    ref = nbsim.Simulator.from_args(["-mtz", str(tmp_path / "x.mtz")] + RENDER).run()
    assert ref.max() > 0 and np.array_equal(img, ref)


def test_c_parity_uses_the_same_p1_list(tmp_path):
    hkl, F = write_mtz(tmp_path / "x.mtz", "P 21 21 21", (31, 37, 43, 90, 90, 90), 4.0, 3)
    spec = parse_args(["-mtz", str(tmp_path / "x.mtz")] + RENDER).hkl_data
    cpar = parse_args(["-mtz", str(tmp_path / "x.mtz"), "-c_parity"] + RENDER).hkl_data
    assert np.array_equal(spec.F, cpar.F) and spec.h_min == cpar.h_min


def test_intensities_and_anomalous_pairs(tmp_path):
    hkl, I = write_mtz(tmp_path / "i.mtz", "P 21 21 21", (31, 37, 43, 90, 90, 90), 4.0, 5,
                       label="IMEAN", intensities=True)
    parsed = parse_args(["-mtz", str(tmp_path / "i.mtz")] + RENDER)
    g = parsed.hkl_data
    for (h, k, l), i in zip(hkl.tolist(), I.tolist()):
        assert g.F[h - g.h_min, k - g.k_min, l - g.l_min] == math.sqrt(max(i, 0.0))
    neg = int(np.count_nonzero(I < 0))
    assert any(f"{neg} negative intensities set to 0" in n for n in parsed.notes)

    # F(+)/F(-): F(+) at h R, F(-) at -h R (P212121 has proper rotations only)
    rng = np.random.default_rng(9)
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup("P 21 21 21")
    mtz.set_cell_for_all(gemmi.UnitCell(31, 37, 43, 90, 90, 90))
    mtz.add_dataset("sim")
    mtz.add_column("F(+)", "G")
    mtz.add_column("F(-)", "G")
    hkl = gemmi.make_miller_array(mtz.cell, mtz.spacegroup, 4.0).astype(int)
    acentric = ~gemmi.SpaceGroup("P 21 21 21").operations().centric_flag_array(hkl)
    hkl = hkl[acentric]
    Fp = rng.uniform(10, 100, len(hkl)).astype(np.float32)
    Fm = rng.uniform(10, 100, len(hkl)).astype(np.float32)
    mtz.set_data(np.column_stack([hkl, Fp, Fm]))
    mtz.write_to_file(str(tmp_path / "ano.mtz"))
    g = parse_args(["-mtz", str(tmp_path / "ano.mtz"), "-anomalous"] + RENDER).hkl_data
    for op in gemmi.SpaceGroup("P 21 21 21").operations().sym_ops:
        R = np.array(op.rot) // DEN
        for x, fp, fm in zip(hkl, Fp.astype(float), Fm.astype(float)):
            hp = x @ R
            assert g.F[tuple(hp - (g.h_min, g.k_min, g.l_min))] == fp
            assert g.F[tuple(-hp - (g.h_min, g.k_min, g.l_min))] == fm


def test_anomalous_rule_for_improper_operators():
    """Pm (x,y,z and x,-y,z): |F(h R)| = |F(-h)| for the mirror, so F(-) goes to h R."""
    from nbsim.inputs.symmetry import expand_with_rotations, rotations_of
    R = rotations_of("P 1 m 1")
    assert sorted(int(round(np.linalg.det(r))) for r in R) == [-1, 1]
    h, k, l, F = expand_with_rotations([1], [2], [3], [10.0], R, F_minus=np.array([7.0]))
    got = {(a, b, c): f for a, b, c, f in zip(h.tolist(), k.tolist(), l.tolist(), F.tolist())}
    assert got == {(1, 2, 3): 10.0, (-1, -2, -3): 7.0, (1, -2, 3): 7.0, (-1, 2, -3): 10.0}
    # without anomalous data: the four indices all hold F
    h, k, l, F = expand_with_rotations([1], [2], [3], [10.0], R)
    assert len(F) == 4 and np.all(F == 10.0)


def test_sfcif_first_block_same_label_rule(tmp_path):
    hkl, F = write_mtz(tmp_path / "x.mtz", "P 21 21 21", (31, 37, 43, 90, 90, 90), 4.0, 11)
    rows = "".join(f"{h} {k} {l} {f!r} 1.0\n" for (h, k, l), f in zip(hkl.tolist(), F.tolist()))
    (tmp_path / "x.cif").write_text(
        "data_r0000sf\n_cell.length_a 31\n_cell.length_b 37\n_cell.length_c 43\n"
        "_cell.angle_alpha 90\n_cell.angle_beta 90\n_cell.angle_gamma 90\n"
        "_symmetry.space_group_name_H-M 'P 21 21 21'\nloop_\n_refln.index_h\n"
        "_refln.index_k\n_refln.index_l\n_refln.F_meas_au\n_refln.F_meas_sigma_au\n" + rows
        + "data_second\n_cell.length_a 99\n")
    a = parse_args(["-sfcif", str(tmp_path / "x.cif")] + RENDER).hkl_data
    b = parse_args(["-mtz", str(tmp_path / "x.mtz")] + RENDER).hkl_data
    assert np.array_equal(a.F, b.F)
    c = parse_args(["-sfcif", str(tmp_path / "x.cif"), "-mtz_label", "F_meas_au"]
                   + RENDER).hkl_data
    assert np.array_equal(a.F, c.F)
    # intensities (intensity_meas -> IMEAN in gemmi's mapping) become sqrt(max(I, 0))
    (tmp_path / "i.cif").write_text(
        "data_i\n_cell.length_a 31\n_cell.length_b 37\n_cell.length_c 43\n"
        "_cell.angle_alpha 90\n_cell.angle_beta 90\n_cell.angle_gamma 90\n"
        "_symmetry.space_group_name_H-M 'P 21 21 21'\nloop_\n_refln.index_h\n"
        "_refln.index_k\n_refln.index_l\n_refln.intensity_meas\n"
        "1 2 3 16.0\n2 0 1 -4.0\n0 0 2 ?\n")
    p = parse_args(["-sfcif", str(tmp_path / "i.cif")] + RENDER)
    g = p.hkl_data
    assert g.F[1 - g.h_min, 2 - g.k_min, 3 - g.l_min] == 4.0
    assert g.F[-1 - g.h_min, 2 - g.k_min, -3 - g.l_min] == 4.0      # 2-fold about y
    assert g.F[2 - g.h_min, 0 - g.k_min, 1 - g.l_min] == 0.0
    assert g.F[0 - g.h_min, 0 - g.k_min, 2 - g.l_min] == 0.0 and g.hkls == 8 + 4
    assert any("1 negative intensity set to 0" in n for n in p.notes)


def test_cell_disagreement_is_a_warning_and_write_hkl_roundtrip(tmp_path):
    hkl, F = write_mtz(tmp_path / "x.mtz", "P 21 21 21", (31, 37, 43, 90, 90, 90), 4.0, 2)
    p = parse_args(["-mtz", str(tmp_path / "x.mtz"), "-cell", "31", "37", "44", "90", "90",
                    "90"] + RENDER)
    assert any(n.startswith("WARNING") and "c 44 vs 43" in n for n in p.notes)
    p = parse_args(["-mtz", str(tmp_path / "x.mtz"), "-cell", "31.1", "37", "43", "90", "90",
                    "90"] + RENDER)
    assert not any(n.startswith("WARNING") for n in p.notes)
    # -write_hkl text (and .bin = Fdump) read back give the same grid
    rc = main(["-mtz", str(tmp_path / "x.mtz"), "-write_hkl", str(tmp_path / "p1.hkl"),
               "-nonoise", "-nopgm", "-noprogress"] + RENDER + ["-detpixels", "8"],
              stdout=io.StringIO(), stderr=io.StringIO())
    assert rc == 0
    from nbsim.io.fdump import read_fdump
    from nbsim.io.hkl import read_hkl
    back = read_hkl(tmp_path / "p1.hkl")
    g = parse_args(["-mtz", str(tmp_path / "x.mtz")] + RENDER).hkl_data
    assert np.array_equal(back.F, g.F) and back.hkls == g.hkls
    rc = main(["-mtz", str(tmp_path / "x.mtz"), "-write_hkl", str(tmp_path / "p1.bin"),
               "-nonoise", "-nopgm", "-noprogress"] + RENDER + ["-detpixels", "8"],
              stdout=io.StringIO(), stderr=io.StringIO())
    assert rc == 0 and np.array_equal(read_fdump(tmp_path / "p1.bin").F, g.F)


# ------------------------------------------------- 2. Fcalc equals a direct summation
def small_model(path, n_atoms=36, seed=4):
    rng = np.random.default_rng(seed)
    st = gemmi.Structure()
    st.cell = gemmi.UnitCell(21.0, 27.0, 24.0, 90.0, 104.0, 90.0)
    st.spacegroup_hm = "P 1 21 1"
    model = gemmi.Model("1")
    chain = gemmi.Chain("A")
    for i in range(n_atoms):
        res = gemmi.Residue()
        res.name = "UNK"
        res.seqid = gemmi.SeqId(i + 1, " ")
        atom = gemmi.Atom()
        el = ("C", "N", "O", "S", "Fe")[i % 5]
        atom.name = el.upper()
        atom.element = gemmi.Element(el)
        frac = gemmi.Fractional(*rng.random(3))
        atom.pos = st.cell.orthogonalize(frac)
        atom.b_iso = float(rng.uniform(5, 40))
        atom.occ = float(rng.uniform(0.3, 1.0))
        if i % 4 == 0:
            u = rng.uniform(0.05, 0.3, 3)
            atom.aniso = gemmi.SMat33f(u[0], u[1], u[2], 0.01, -0.02, 0.015)
        res.add_atom(atom)
        chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    st.write_pdb(str(path))


def direct_sum(path, hkl):
    """|F(h)| = |sum over atoms and symmetry copies of occ f0(s) T(h) exp(2 pi i h.x)|."""
    st = gemmi.read_structure(str(path))
    cell = st.cell
    O = np.array(cell.orth.mat.tolist())
    Oinv = np.linalg.inv(O)
    ops = list(gemmi.SpaceGroup(st.spacegroup_hm).operations())
    hkl = np.asarray(hkl, dtype=float)
    q = hkl @ Oinv                                   # Cartesian reciprocal vectors (1/A)
    s2 = np.sum(q * q, axis=1) / 4.0                 # (sin theta / lambda)^2
    F = np.zeros(len(hkl), dtype=complex)
    for cra in st[0].all():
        atom = cra.atom
        it = atom.element.it92
        f0 = sum(a * np.exp(-b * s2) for a, b in zip(it.a, it.b)) + it.c
        x = np.array(cell.fractionalize(atom.pos).tolist())
        for op in ops:
            R = np.array(op.rot, dtype=float) / DEN
            t = np.array(op.tran, dtype=float) / DEN
            xs = R @ x + t
            if atom.aniso.nonzero():
                a = atom.aniso
                U = np.array([[a.u11, a.u12, a.u13], [a.u12, a.u22, a.u23],
                              [a.u13, a.u23, a.u33]])
                Rc = O @ R @ Oinv
                Us = Rc @ U @ Rc.T
                T = np.exp(-2 * np.pi ** 2 * np.einsum("ni,ij,nj->n", q, Us, q))
            else:
                T = np.exp(-atom.b_iso * s2)
            F += atom.occ * f0 * T * np.exp(2j * np.pi * (hkl @ xs))
    return np.abs(F)


def test_fcalc_equals_direct_summation(tmp_path):
    from nbsim.inputs.model import fcalc_from_file
    small_model(tmp_path / "m.pdb")
    refl = fcalc_from_file(tmp_path / "m.pdb", 2.5, method="direct")
    hkl = np.column_stack([refl.h, refl.k, refl.l])
    assert tuple(hkl[0]) == (0, 0, 0) and len(refl) > 500
    ref = direct_sum(tmp_path / "m.pdb", hkl)
    nonzero = ref > 1e-6 * ref.max()             # systematic absences are ~0 in both
    assert np.all(np.abs(refl.F[nonzero] - ref[nonzero]) <= 1e-4 * ref[nonzero])
    assert np.all(refl.F[~nonzero] <= 1e-6 * ref.max())
    # every reflection to 2.5 A is there (gemmi's asymmetric unit, F000 first)
    d = 1 / np.sqrt(np.array([gemmi.UnitCell(21, 27, 24, 90, 104, 90).calculate_1_d2(
        [int(a) for a in x]) for x in hkl[1:]]))
    assert d.min() >= 2.5 - 1e-9
    # the FFT path agrees to its documented accuracy
    fft = fcalc_from_file(tmp_path / "m.pdb", 2.5, method="fft")
    fmap = {(a, b, c): f for a, b, c, f in zip(fft.h, fft.k, fft.l, fft.F)}
    diff = [abs(fmap[tuple(x)] - f) for x, f in zip(hkl.tolist(), refl.F) if tuple(x) in fmap]
    rms = np.sqrt(np.mean(ref[1:] ** 2))
    assert len(diff) > 0.95 * len(refl) and max(diff) <= 1e-4 * rms


def test_model_flags_and_solvent(tmp_path):
    small_model(tmp_path / "m.pdb")
    base = ["-model", str(tmp_path / "m.pdb"), "-model_dmin", "3"] + RENDER
    g = parse_args(base).hkl_data
    F000 = g.F[-g.h_min, -g.k_min, -g.l_min]
    st = gemmi.read_structure(str(tmp_path / "m.pdb"))
    electrons = sum(c.atom.occ * (sum(c.atom.element.it92.a) + c.atom.element.it92.c)
                    for c in st[0].all()) * 2                 # two copies in P21
    assert F000 == pytest.approx(electrons, rel=1e-6)   # gemmi keeps float32 inputs
    # a flat solvent that fades at once changes only F000, by k_sol x solvent volume
    gs = parse_args(base + ["-solvent", "0.35", "1e6"]).hkl_data
    F000s = gs.F[-g.h_min, -g.k_min, -g.l_min]
    assert 0.5 * 0.35 * st.cell.volume < F000s - F000 < 0.35 * st.cell.volume
    off = np.ones_like(g.F, dtype=bool)
    off[-g.h_min, -g.k_min, -g.l_min] = False
    assert np.allclose(gs.F[off], g.F[off], rtol=1e-6, atol=1e-6 * F000)


def test_model_resolution_from_detector_corners(tmp_path):
    from nbsim.inputs.resolution import MARGIN, detector_dmin
    cfg = parse_args(["-default_F", "1", "-cell", "30", "30", "30", "90", "90", "90",
                      "-detpixels", "100", "-pixel", "0.2", "-distance", "50",
                      "-lambda", "1.5"]).config
    # MOSFLM's default beam centre: (20 + 0.2)/2 mm + half a pixel = 10.2 mm from the
    # first pixel's corner along both axes: that corner is the farthest one
    r = math.hypot(10.2, 10.2)
    two_theta = math.atan2(r, 50.0)
    d = 1.5 / (2 * math.sin(two_theta / 2)) / MARGIN
    assert detector_dmin(cfg) == pytest.approx(d, rel=1e-12)
    # -model without -model_dmin computes Fcalc to exactly that resolution
    small_model(tmp_path / "m.pdb")
    p = parse_args(["-model", str(tmp_path / "m.pdb"), "-detpixels", "100", "-pixel", "0.2",
                    "-distance", "50", "-lambda", "1.5"])
    assert any(f"d_min {detector_dmin(cfg):g} A" in n for n in p.notes), p.notes
    g = p.hkl_data
    hkl = np.argwhere(g.F > 0) + (g.h_min, g.k_min, g.l_min)
    inv_d2 = [gemmi.UnitCell(21, 27, 24, 90, 104, 90).calculate_1_d2([int(v) for v in x])
              for x in hkl]
    assert 1 / math.sqrt(max(inv_d2)) >= detector_dmin(cfg) - 1e-9


# ----------------------------------------------- 3. -expt equals the nanoBragg flags
def nb_to_dials(v):
    x, y, z = v
    return [z, y, -x]          # nanoBragg.c's DIALS_ORIGIN rule


def expt_case(tmp_path):
    """nanoBragg flags for a known geometry, and the DIALS experiment list of it."""
    from nbsim.geometry.detector import resolve_detector
    rng = np.random.default_rng(1)
    lam = 1.1
    # a known crystal orientation: a MOSFLM A matrix (columns a*, b*, c* times lambda)
    cell = gemmi.UnitCell(33, 41, 47, 90, 90, 90)
    B = np.array(cell.frac.mat.tolist()).T           # columns: reciprocal vectors (1/A)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    U = np.eye(3) + math.sin(1.1) * K + (1 - math.cos(1.1)) * K @ K     # Rodrigues
    A = U @ B * lam
    (tmp_path / "A.mat").write_text("".join(" ".join(repr(float(v)) for v in row) + "\n"
                                            for row in A))
    flags = ["-mat", str(tmp_path / "A.mat"), "-lambda", repr(lam), "-default_F", "50",
             "-N", "5", "-detpixels_f", "40", "-detpixels_s", "36", "-pixel", "0.4",
             "-distance", "70", "-Xbeam", "8.1", "-Ybeam", "6.7", "-detector_rotx", "3",
             "-detector_roty", "-4", "-detector_rotz", "7", "-polar", "0.9",
             "-phi", "12", "-osc", "0.6", "-detector_thick", "300",
             "-detector_absorb", "250", "-oversample", "1"]
    cfg = parse_args(flags).config
    det = resolve_detector(cfg)
    real = np.linalg.inv(A / lam).T                  # columns a, b, c (A), nanoBragg frame
    panel = {"name": "P", "type": "SENSOR_PAD", "fast_axis": nb_to_dials(det.fdet),
             "slow_axis": nb_to_dials(det.sdet),
             "origin": nb_to_dials(det.pix0 * 1e3), "image_size": [40, 36],
             "pixel_size": [0.4, 0.4], "thickness": 0.3, "mu": 1 / 0.25,
             "raw_image_offset": [0, 0], "trusted_range": [0, 65535], "material": "Si",
             "mask": [], "gain": 1.0, "pedestal": 0.0, "identifier": "",
             "px_mm_strategy": {"type": "SimplePxMmStrategy"}}
    doc = {"__id__": "ExperimentList",
           "experiment": [{"__id__": "Experiment", "identifier": "x", "beam": 0,
                           "detector": 0, "goniometer": 0, "scan": 0, "crystal": 0,
                           "imageset": 0}],
           "imageset": [{"__id__": "ImageSequence", "template": "x_#####.cbf"}],
           "beam": [{"__id__": "monochromatic", "direction": [0.0, 0.0, 1.0],
                     "wavelength": lam, "divergence": 0.0, "sigma_divergence": 0.0,
                     "polarization_normal": [0.0, 1.0, 0.0],
                     "polarization_fraction": 0.95, "flux": 0.0, "transmission": 1.0}],
           "detector": [{"panels": [panel], "hierarchy": {"name": "", "children": [0]}}],
           "goniometer": [{"rotation_axis": [1.0, 0.0, 0.0],
                           "fixed_rotation": [1, 0, 0, 0, 1, 0, 0, 0, 1],
                           "setting_rotation": [1, 0, 0, 0, 1, 0, 0, 0, 1]}],
           "scan": [{"image_range": [1, 10], "batch_offset": 0, "oscillation": [12.0, 0.6],
                     "exposure_time": [0.1] * 10, "epochs": [0.0] * 10}],
           "crystal": [{"__id__": "crystal",
                        "real_space_a": nb_to_dials(real[:, 0]),
                        "real_space_b": nb_to_dials(real[:, 1]),
                        "real_space_c": nb_to_dials(real[:, 2]),
                        "space_group_hall_symbol": " P 1"}],
           "profile": [], "scaling_model": []}
    return flags, doc


def rotation(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


EXPT_TAIL = ["-default_F", "50", "-N", "5", "-oversample", "1"]


def test_expt_image_equals_nanobragg_flags(tmp_path):
    flags, doc = expt_case(tmp_path)
    (tmp_path / "x.expt").write_text(json.dumps(doc))
    expt_flags = ["-expt", str(tmp_path / "x.expt")] + EXPT_TAIL
    for mode in ("spec", "c-parity"):
        ref = nbsim.Simulator.from_args(flags, mode=mode).run()
        img = nbsim.Simulator.from_args(expt_flags, mode=mode).run()
        assert ref.max() > 0 and np.count_nonzero(ref > 1e-3 * ref.max()) > 10
        print(mode, "max |expt - flags| / max =", np.max(np.abs(img - ref)) / ref.max())
        assert np.max(np.abs(img - ref)) <= 1e-12 * ref.max(), mode
    # the experiment index and a wrong polarization would change the image: can fail
    doc["beam"][0]["polarization_fraction"] = 0.5
    (tmp_path / "y.expt").write_text(json.dumps(doc))
    other = nbsim.Simulator.from_args(["-expt", str(tmp_path / "y.expt")] + expt_flags[2:]).run()
    assert np.max(np.abs(other - ref)) > 1e-6 * ref.max()


def test_expt_goniometer_rotations_and_index(tmp_path):
    """lab = S R(axis, phi) F x: moving rotations between S, F, the axis and the crystal
    leaves the image alone; -expt_index picks the experiment."""
    flags, doc = expt_case(tmp_path)
    ref = nbsim.Simulator.from_args(flags).run()
    S = rotation([0.3, -1.0, 0.4], 0.7)
    F = rotation([1.0, 0.2, -0.5], -1.3)
    g = doc["goniometer"][0]
    g["setting_rotation"] = S.ravel().tolist()
    g["fixed_rotation"] = F.ravel().tolist()
    g["rotation_axis"] = (S.T @ np.array(g["rotation_axis"], float)).tolist()
    xtal = dict(doc["crystal"][0])
    for key in ("real_space_a", "real_space_b", "real_space_c"):
        xtal[key] = (F.T @ S.T @ np.array(xtal[key], float)).tolist()
    # experiment 0 points at a wrong crystal; experiment 1 at the rotated one
    wrong = dict(xtal, real_space_a=(1.05 * np.array(xtal["real_space_a"])).tolist())
    doc["crystal"] = [wrong, xtal]
    doc["experiment"] = [dict(doc["experiment"][0], crystal=0),
                         dict(doc["experiment"][0], crystal=1)]
    (tmp_path / "r.expt").write_text(json.dumps(doc))
    img = nbsim.Simulator.from_args(["-expt", str(tmp_path / "r.expt"), "-expt_index", "1"]
                                    + EXPT_TAIL).run()
    assert np.max(np.abs(img - ref)) <= 1e-12 * ref.max()
    img0 = nbsim.Simulator.from_args(["-expt", str(tmp_path / "r.expt")] + EXPT_TAIL).run()
    assert np.max(np.abs(img0 - ref)) > 1e-3 * ref.max()
    rc = main(["-expt", str(tmp_path / "r.expt"), "-expt_index", "2"] + EXPT_TAIL,
              stdout=io.StringIO(), stderr=(err := io.StringIO()))
    assert rc == 2 and "the file has 2 experiments" in err.getvalue()


# ------------------------------------------------------------------ 5. bad input
def run_cli(args, tmp_path):
    err = io.StringIO()
    rc = main(args + ["-floatfile", str(tmp_path / "out.bin"), "-nonoise", "-nopgm",
                      "-intfile", str(tmp_path / "out.img"), "-noprogress"],
              stdout=io.StringIO(), stderr=err)
    return rc, err.getvalue()


def assert_refused(rc, err, tmp_path, *words):
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nbsim: error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not (tmp_path / "out.bin").exists() and not (tmp_path / "out.img").exists()


def test_bad_inputs_one_line_exit_2(tmp_path):
    (tmp_path / "junk.txt").write_text("this is not a reflection file\n")
    rc, err = run_cli(["-mtz", str(tmp_path / "junk.txt")], tmp_path)
    assert_refused(rc, err, tmp_path, "-mtz", "junk.txt", "not an MTZ file")
    rc, err = run_cli(["-sfcif", str(tmp_path / "junk.txt")], tmp_path)
    assert_refused(rc, err, tmp_path, "-sfcif", "junk.txt", "not an mmCIF file")
    rc, err = run_cli(["-model", str(tmp_path / "junk.txt")], tmp_path)
    assert_refused(rc, err, tmp_path, "-model", "junk.txt")

    write_mtz(tmp_path / "x.mtz", "P 21 21 21", (31, 37, 43, 90, 90, 90), 5.0, 1)
    rc, err = run_cli(["-mtz", str(tmp_path / "x.mtz"), "-mtz_label", "FOO"], tmp_path)
    assert_refused(rc, err, tmp_path, "-mtz", "no column 'FOO'", "H K L FP SIGFP")
    rc, err = run_cli(["-mtz", str(tmp_path / "x.mtz"), "-mtz_label", "SIGFP"], tmp_path)
    assert_refused(rc, err, tmp_path, "SIGFP", "not an amplitude")

    # a model without a cell, and one without a space group
    (tmp_path / "nocell.pdb").write_text(
        "ATOM      1  C   UNK A   1       1.000   2.000   3.000  1.00 20.00           C\nEND\n")
    rc, err = run_cli(["-model", str(tmp_path / "nocell.pdb")], tmp_path)
    assert_refused(rc, err, tmp_path, "-model", "no unit cell")
    st = gemmi.Structure()
    st.cell = gemmi.UnitCell(20, 20, 20, 90, 90, 90)          # a cell, no space group
    model, chain, res, atom = gemmi.Model("1"), gemmi.Chain("A"), gemmi.Residue(), gemmi.Atom()
    res.name, res.seqid = "UNK", gemmi.SeqId(1, " ")
    atom.name, atom.element, atom.pos = "C", gemmi.Element("C"), gemmi.Position(1, 2, 3)
    res.add_atom(atom)
    chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    st.setup_entities()
    st.make_mmcif_document().write_file(str(tmp_path / "nosg.cif"))
    rc, err = run_cli(["-model", str(tmp_path / "nosg.cif")], tmp_path)
    assert_refused(rc, err, tmp_path, "-model", "no space group")

    # a multi-panel detector
    panel = {"fast_axis": [1, 0, 0], "slow_axis": [0, -1, 0], "origin": [-10, 10, -100],
             "image_size": [10, 10], "pixel_size": [0.1, 0.1]}
    doc = {"__id__": "ExperimentList", "experiment": [{"beam": 0, "detector": 0}],
           "beam": [{"direction": [0, 0, 1], "wavelength": 1.0}],
           "detector": [{"panels": [panel, dict(panel, origin=[-9.5, 10, -100])]}]}
    (tmp_path / "two.expt").write_text(json.dumps(doc))
    rc, err = run_cli(["-expt", str(tmp_path / "two.expt"), "-default_F", "1", "-cell",
                       "30", "30", "30", "90", "90", "90"], tmp_path)
    assert_refused(rc, err, tmp_path, "-expt", "overlapping")
    # a flag that also sets what the experiment sets
    doc["detector"][0]["panels"] = [panel]
    (tmp_path / "one.expt").write_text(json.dumps(doc))
    rc, err = run_cli(["-expt", str(tmp_path / "one.expt"), "-distance", "80",
                       "-default_F", "1"], tmp_path)
    assert_refused(rc, err, tmp_path, "-distance", "conflicts with -expt")
    # two sources of structure factors
    rc, err = run_cli(["-mtz", str(tmp_path / "x.mtz"), "-hkl", str(tmp_path / "junk.txt")],
                      tmp_path)
    assert_refused(rc, err, tmp_path, "-hkl and -mtz")


def test_without_gemmi_one_line(tmp_path, monkeypatch):
    write_mtz(tmp_path / "x.mtz", "P 21 21 21", (31, 37, 43, 90, 90, 90), 5.0, 1)
    monkeypatch.setitem(sys.modules, "gemmi", None)      # import gemmi -> ImportError
    rc, err = run_cli(["-mtz", str(tmp_path / "x.mtz")], tmp_path)
    assert_refused(rc, err, tmp_path, "-mtz", 'pip install -e ".[formats]"')


# ------------------------------------------------------------------ 4. costs
@pytest.mark.slow
def test_costs_within_limits():
    """Acceptance 4 on this machine: MTZ load + expansion <= 1 s, Fcalc <= 10 s."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "bench_inputs", Path(__file__).resolve().parent.parent / "bench" / "bench_inputs.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = bench.run(repeats=2)
    assert r["mtz_p1"] > 500000
    assert r["mtz_s"] <= 1.0, r
    assert r["fcalc_s"] <= 10.0, r

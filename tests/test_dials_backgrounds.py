"""DIALS reads nbsim's masks and sees its ice rings (issue 20, part B).

One small NeXus frame with ice Ih rings, a beamstop with its arm and bad pixels, Poisson
noise:

* dxtbx (Debian's, /usr/bin/python3) reads the NXmx ``pixel_mask`` and the miniCBF
  frame's -2 pixels: the imageset's mask of the frame is False exactly at the
  beamstop's shadow and the bad pixels, as the plan computes them here;
* ``dials.find_spots`` finds the rings' pixels as strong spots at the ice d-spacings, and
  with ``ice_rings.filter=True`` (DIALS' own ice Ih table) removes (nearly) all of them.

Skipped where DIALS is not installed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytestmark = [pytest.mark.dials,
              pytest.mark.skipif(shutil.which("dials.import") is None,
                                 reason="DIALS is not installed (dials.import not on PATH)")]
h5py = pytest.importorskip("h5py")
hdf5plugin = pytest.importorskip("hdf5plugin")

DIALS_PY = "/usr/bin/python3"
FLAGS = ["-cell", "40", "40", "40", "90", "90", "90", "-default_F", "1", "-N", "1",
         "-lambda", "1", "-distance", "60", "-detpixels", "200", "-pixel", "0.2",
         "-fluence", "1e19", "-ice", "1", "-beamstop", "2", "-beamstop_arm", "1", "90",
         "-bad_pixels", "0.002", "-seed", "3", "-oversample", "1", "-noprogress"]


def _env():
    env = dict(os.environ)
    env["HDF5_PLUGIN_PATH"] = hdf5plugin.PLUGIN_PATH
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture(scope="module")
def ice_nexus(tmp_path_factory):
    d = tmp_path_factory.mktemp("ice")
    r = subprocess.run([sys.executable, "-m", "nbsim", *FLAGS, "-nexus", "ice.nxs",
                        "-cbf", "ice_#####.cbf"],
                       cwd=d, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["dials.import", "ice.nxs"], cwd=d, capture_output=True, text=True,
                       env=_env())
    assert r.returncode == 0, r.stdout + r.stderr
    return d


def test_dxtbx_masks_the_shadow_and_bad_pixels(ice_nexus):
    from nbsim.args import parse_args
    from nbsim.plan import make_plan
    defects = make_plan(parse_args(FLAGS).config).defects
    # the NeXus file (dials.import's experiments) and the miniCBF frame (pixels -2)
    code = ("import sys, json; from dxtbx.model.experiment_list import "
            "ExperimentListFactory as F; "
            "ms = [F.from_json_file('imported.expt').imagesets()[0].get_mask(0)[0], "
            "F.from_filenames(['ice_00001.cbf']).imagesets()[0].get_mask(0)[0]]; "
            "print(json.dumps([[list(m.all()), [int(v) for v in m.as_numpy_array().ravel()]] "
            "for m in ms]))")
    r = subprocess.run([DIALS_PY, "-c", code], cwd=ice_nexus, capture_output=True,
                       text=True, env=_env())
    assert r.returncode == 0, r.stderr
    blocked = defects.blocked[0]
    assert defects.shadow.sum() > 300 and defects.dead.sum() == 40 and defects.hot.sum() == 40
    for shape, good in json.loads(r.stdout.strip().splitlines()[-1]):
        good = np.array(good, dtype=bool).reshape(shape)
        assert np.array_equal(~good, blocked)
    with h5py.File(ice_nexus / "ice.nxs", "r") as f:
        pm = f["/entry/instrument/detector/pixel_mask"][()]
        data = f["/entry/data/data"][0]
    assert np.all(pm[defects.dead[0]] == 2) and np.all(pm[defects.hot[0]] == 8)
    assert np.all(pm[defects.shadow[0]] == 256)
    # shadowed and dead pixels count no photon; hot ones about 65535
    assert np.all(data[defects.shadow[0] | defects.dead[0]] == 0)
    assert np.all(abs(data[defects.hot[0]] - 65535) < 6 * 256)


def _strong_d(d):
    """d-spacings (A) of dials.find_spots' strong spots without and with
    ``ice_rings.filter=True``."""
    for filt in (False, True):
        r = subprocess.run(["dials.find_spots", "imported.expt", f"ice_rings.filter={filt}",
                            f"output.reflections=strong_{filt}.refl", "output.log=/dev/null"],
                           cwd=d, capture_output=True, text=True, env=_env())
        assert r.returncode == 0, r.stdout + r.stderr
    code = ("from dials.array_family import flex; from dxtbx.model.experiment_list import "
            "ExperimentListFactory as F; e = F.from_json_file('imported.expt')\n"
            "for f in ('False', 'True'):\n"
            "    t = flex.reflection_table.from_file('strong_%s.refl' % f)\n"
            "    t.centroid_px_to_mm(e); t.map_centroids_to_reciprocal_space(e)\n"
            "    print(' '.join('%.4f' % v for v in (1 / flex.sqrt(t['rlp'].dot(t['rlp'])))))")
    r = subprocess.run([DIALS_PY, "-c", code], cwd=d, capture_output=True, text=True,
                       env=_env())
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()[-2:]
    return [np.array([float(v) for v in ln.split()]) for ln in lines]


def test_dials_ice_ring_filter_removes_the_rings(ice_nexus):
    rings = np.array([3.897, 3.669, 3.441, 2.671, 2.249, 2.072, 1.948, 1.918, 1.883])
    d_all, d_filtered = _strong_d(ice_nexus)
    on_ring = np.min(abs(d_all[:, None] / rings[None, :] - 1), axis=1) < 0.005
    assert d_all.size > 50 and on_ring.mean() > 0.9, (d_all.size, on_ring.mean())
    assert d_filtered.size <= 0.05 * d_all.size, (d_filtered.size, d_all.size)

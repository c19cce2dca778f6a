"""Reflection truth (docs/truth.md): exactness against single-reflection renders,
conservation, labels, the DIALS reflection file, the CLI and datasets."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nbsim import Simulator
from nbsim.truth import COLUMNS

CELL = ["-cell", "50", "60", "70", "90", "90", "90", "-N", "5", "-lambda", "1",
        "-distance", "60", "-pixel", "0.5", "-misset", "10", "20", "30"]

ROTATION = CELL + ["-detpixels", "32", "-oversample", "2", "-phi", "0", "-osc", "0.4",
                   "-phisteps", "3", "-mosaic", "0.6", "-mosaic_domains", "3"]
STILL = CELL + ["-detpixels", "32", "-oversample", "1", "-dispersion", "2",
                "-dispsteps", "3"]


def two_panels(tmp_path):
    """Two flat 20 x 16 panels of 0.5 mm side by side (MOSFLM frame: beam +x)."""
    fast = [0.0, 0.0, 1.0]
    slow = [0.0, -1.0, 0.0]
    panels = [
        {"name": "left", "origin": [0.06, 0.004, -0.010], "fast": fast, "slow": slow,
         "fpixels": 20, "spixels": 16, "pixel_size": 5e-4},
        {"name": "right", "origin": [0.06, 0.004, 0.0002], "fast": fast, "slow": slow,
         "fpixels": 20, "spixels": 16, "pixel_size": 5e-4},
    ]
    path = tmp_path / "panels.json"
    path.write_text(json.dumps({"format": "nbsim-panels", "version": 1,
                                "panels": panels}))
    return CELL + ["-panels", str(path), "-oversample", "2", "-phi", "0", "-osc", "0.2",
                   "-phisteps", "2"]


def _render_truth(args, mode):
    sim = Simulator.from_args(args + ["-default_F", "100"], mode=mode)
    image = sim.run(truth=True)
    return sim, np.asarray(image).reshape(sim.labels.shape)


def _single_reflection(args, mode, hkl, tmp_path):
    path = tmp_path / ("F_%d_%d_%d.hkl" % tuple(int(v) for v in hkl))
    path.write_text("%d %d %d 100\n" % tuple(int(v) for v in hkl))
    sim = Simulator.from_args(args + ["-hkl", str(path), "-default_F", "0"], mode=mode)
    return np.asarray(sim.run(), dtype=np.float64).reshape(sim.plan.panels.shape
                                                            if sim.plan.panels is not None
                                                            else (1,) + sim.plan.shape)


def _centroid(img2d):
    s, f = np.indices(img2d.shape)
    tot = img2d.sum()
    return (img2d * (f + 0.5)).sum() / tot, (img2d * (s + 0.5)).sum() / tot


@pytest.mark.parametrize("mode", ["spec", "c-parity"])
@pytest.mark.parametrize("case", ["rotation", "still_spectrum", "two_panels"])
def test_intensity_and_centroid_equal_single_reflection_render(case, mode, tmp_path):
    args = {"rotation": ROTATION, "still_spectrum": STILL}.get(case)
    if args is None:
        args = two_panels(tmp_path)
    sim, image = _render_truth(args, mode)
    t = sim.truth
    assert set(COLUMNS) <= set(t)
    order = np.argsort(-t["intensity.true.value"])[:5]
    assert order.size == 5
    if case == "two_panels":
        assert set(t["panel"].tolist()) == {0, 1}
    for r in order:
        hkl = t["miller_index"][r]
        one = _single_reflection(args, mode, hkl, tmp_path)
        panel = int(t["panel"][r])
        ref = one[panel].sum()
        assert ref > 0
        assert abs(t["intensity.true.value"][r] - ref) <= 1e-9 * ref, (hkl, ref)
        x, y = _centroid(one[panel])
        assert abs(t["xyzcal.px"][r, 0] - x) <= 1e-6
        assert abs(t["xyzcal.px"][r, 1] - y) <= 1e-6
    # conservation: every photon of the (water-free) image is in some reflection
    assert abs(t["intensity.true.value"].sum() - image.sum()) <= 1e-9 * image.sum()
    assert np.allclose(sim.frame_truth.bragg, image, rtol=1e-12, atol=0)


def test_truth_image_matches_plain_render_and_labels(tmp_path):
    sim, image = _render_truth(ROTATION, "spec")
    plain = Simulator.from_args(ROTATION + ["-default_F", "100"]).run()
    # the general kernel vs the SIMD kernel: rounding only
    assert np.max(np.abs(image - plain.reshape(image.shape))) <= 1e-12 * image.max()
    t = sim.truth
    labels = sim.labels
    assert labels.shape == (1, 32, 32) and labels.dtype == np.int32
    assert labels.min() >= 0           # a lattice tail reaches every pixel
    # acceptance 4: where one reflection's own image holds >= 50 % of the pixel's
    # Bragg photons, the pixel carries its label
    order = np.argsort(-t["intensity.true.value"])[:5]
    checked = 0
    for r in order:
        one = _single_reflection(ROTATION, "spec", t["miller_index"][r], tmp_path)
        own = one >= 0.5 * image
        assert np.all(labels[own] == r)
        checked += int(own.sum())
        # num_pixels.true counts the same pixels
        assert t["num_pixels.true"][r] == int(own.sum())
    assert checked > 10
    # z: frame 0, photon-weighted rotation fraction within the frame's osc
    z = t["xyzcal.px"][:, 2]
    assert np.all((z >= 0.0) & (z <= 2.0 / 3.0 + 1e-12))
    assert np.allclose(t["xyzcal.mm"][:, 0], t["xyzcal.px"][:, 0] * 0.5)
    assert np.allclose(t["xyzcal.mm"][:, 2], np.radians(0.4) * z)
    # d from the reciprocal cell
    h, k, l_ = t["miller_index"].T
    with np.errstate(divide="ignore"):
        d = 1.0 / np.sqrt((h / 50.0) ** 2 + (k / 60.0) ** 2 + (l_ / 70.0) ** 2)
    assert np.allclose(t["d"], d, rtol=1e-12)
    assert np.all(np.isnan(t["partiality"]))
    # Bragg fraction: 1 without water
    assert np.allclose(sim.bragg_fraction, 1.0, rtol=1e-12)


@pytest.mark.parametrize("mode", ["spec", "c-parity"])
def test_bragg_fraction_with_water_and_c_parity_running_sum(mode):
    args = ROTATION + ["-water", "0.06", "-oversample_omega", "-oversample_polar"]
    sim, image = _render_truth(args, mode)
    t = sim.truth
    # the water term: the same render with F ~ 0 everywhere (F^2 = 1e-40)
    water = Simulator.from_args(args + ["-default_F", "1e-20"], mode=mode).run()
    water = np.asarray(water).reshape(image.shape)
    bragg = image - water
    assert abs(t["intensity.true.value"].sum() - bragg.sum()) <= 1e-9 * bragg.sum()
    frac = sim.bragg_fraction
    assert np.allclose(frac, bragg / image, rtol=1e-8, atol=1e-12)
    assert 0.0 < frac.min() and frac.max() <= 1.0 + 1e-12


def test_overflowing_pixels_are_exact():
    # a wide mosaic and many phi steps: more than 4 lattice points in some pixels
    args = CELL + ["-detpixels", "16", "-oversample", "2", "-phi", "0", "-osc", "5",
                   "-phisteps", "6", "-mosaic", "3", "-mosaic_domains", "4",
                   "-default_F", "100"]
    sim = Simulator.from_args(args)
    from nbsim.kernels.bundle import truth_slots
    from nbsim.truth import NSLOTS, cell_phase
    p = sim.plan
    slots = truth_slots(p.pixel_index.size, NSLOTS, cell_phase(p))
    img = np.zeros(p.pixel_index.size)
    sim._launch(p.options._replace(truth=True), p.pixel_index, img, -1,
                np.iinfo(np.int64).max, np.zeros(1, np.uint8), np.zeros((1, 32)), slots)
    assert slots.overflow.sum() > 0
    image = sim.run(truth=True)
    assert abs(sim.truth["intensity.true.value"].sum() - image.sum()) <= 1e-9 * image.sum()
    assert np.allclose(sim.frame_truth.bragg.reshape(image.shape), image, rtol=1e-12)


def test_float32_truth_exact_and_conserved(tmp_path):
    # -dtype float32: the float32 lanes kernel fills the slots
    args = ROTATION + ["-dtype", "float32"]
    sim = Simulator.from_args(args + ["-default_F", "100"])
    image = sim.run(truth=True)
    t = sim.truth
    assert abs(t["intensity.true.value"].sum() - image.sum()) <= 1e-9 * image.sum()
    for r in np.argsort(-t["intensity.true.value"])[:3]:
        one = _single_reflection(args, "spec", t["miller_index"][r], tmp_path)
        ref = one.sum()
        # float32 lattice factors: the kernel with an HKL grid (the reference) and the
        # one without compile to differently rounded float32 code (observed 1.7e-8)
        assert abs(t["intensity.true.value"][r] - ref) <= 1e-6 * ref


CUDA_SIM_SCRIPT = """
import sys, json
import numpy as np
from nbsim import Simulator
args = sys.argv[1:]
out = {}
for device in ("cpu", "cuda"):
    sim = Simulator.from_args(args + ["-device", device])
    image = sim.run(truth=True)
    t = sim.truth
    out[device] = dict(image=np.asarray(image).ravel().tolist(),
                       hkl=t["miller_index"].tolist(), panel=t["panel"].tolist(),
                       I=t["intensity.true.value"].tolist(), xyz=t["xyzcal.px"].tolist(),
                       labels=sim.labels.ravel().tolist())
print(json.dumps(out))
"""


def test_cuda_kernel_truth_equals_cpu():
    """The CUDA kernel compiles the same per-pixel body with the slots: its truth equals
    the CPU's.  In the CUDA simulator, or on the GPU with NBSIM_TEST_REAL_GPU=1
    (bench/gpu_check.sh)."""
    pytest.importorskip("numba.cuda")
    args = CELL + ["-detpixels", "12", "-oversample", "1", "-phi", "0", "-osc", "0.4",
                   "-phisteps", "2", "-mosaic", "0.6", "-mosaic_domains", "2",
                   "-default_F", "100", "-roi", "2", "9", "3", "10"]
    env = dict(os.environ)
    if os.environ.get("NBSIM_TEST_REAL_GPU") != "1":
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    p = subprocess.run([sys.executable, "-c", CUDA_SIM_SCRIPT] + args, env=env,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    cpu, gpu = res["cpu"], res["cuda"]
    assert len(cpu["I"]) > 5
    assert cpu["hkl"] == gpu["hkl"] and cpu["panel"] == gpu["panel"]
    assert cpu["labels"] == gpu["labels"]
    assert np.allclose(gpu["I"], cpu["I"], rtol=1e-12, atol=0)
    assert np.allclose(gpu["xyz"], cpu["xyz"], rtol=0, atol=1e-9)
    assert abs(sum(gpu["I"]) - sum(gpu["image"])) <= 1e-9 * sum(gpu["image"])


def test_masked_pixels_hold_no_truth(tmp_path):
    args = two_panels(tmp_path)
    path = args[args.index("-panels") + 1]
    spec = json.loads(open(path).read())
    spec["panels"][0]["mask"] = [[2, 9, 3, 7]]          # fast 2..9, slow 3..7: not rendered
    open(path, "w").write(json.dumps(spec))
    sim, image = _render_truth(args, "spec")
    assert np.all(image[0, 3:8, 2:10] == 0)
    assert np.all(sim.labels[0, 3:8, 2:10] == -1)
    assert np.all(sim.frame_truth.bragg[0, 3:8, 2:10] == 0)
    assert (sim.labels[0] >= 0).sum() == 20 * 16 - 8 * 5
    t = sim.truth
    assert abs(t["intensity.true.value"].sum() - image.sum()) <= 1e-9 * image.sum()
    # the lanes kernels empty the rows they fill: the slot arrays of the first render,
    # reused as they were left, give the same truth again
    labels = sim.labels.copy()
    sim.run(truth=True)
    assert np.array_equal(sim.labels, labels)
    for c in COLUMNS:
        assert np.array_equal(sim.truth[c], t[c], equal_nan=True), c


def test_sorted_grouping_equals_lookup_table(monkeypatch):
    """Boxes of lattice points too large for the lookup table are grouped by sorting:
    the same table."""
    import nbsim.truth as tr
    sim, _ = _render_truth(ROTATION, "spec")
    a = sim.truth
    monkeypatch.setattr(tr, "DENSE_GROUP_LIMIT", 1)
    sim.run(truth=True)
    b = sim.truth
    for c in COLUMNS:
        assert np.array_equal(a[c], b[c], equal_nan=True), c


def test_huge_indices_use_the_general_kernel():
    """Miller indices beyond the lanes kernels' packed point (|h| >= 2^16): the general
    kernel fills the slots, still exact."""
    from nbsim.kernels import cpu_lanes
    args = ["-cell", "20000", "60", "70", "90", "90", "90", "-N", "2", "-lambda", "0.5",
            "-distance", "60", "-pixel", "0.5", "-detpixels", "12", "-oversample", "1",
            "-default_F", "100", "-nointerpolate", "-misset", "10", "20", "30"]
    sim = Simulator.from_args(args)
    assert not cpu_lanes.lanes_truth_fits(sim.plan)
    image = sim.run(truth=True)
    t = sim.truth
    assert abs(t["intensity.true.value"].sum() - image.sum()) <= 1e-9 * image.sum()
    assert np.abs(t["miller_index"][:, 0]).max() > 1000


def test_aggregation_bits_do_not_depend_on_the_thread_count(monkeypatch):
    """The aggregation runs in parallel over fixed chunks of slot rows whose partial rows
    are added in chunk order: 1 and 2 threads give the same bits (image, table, labels,
    Bragg photons); another chunking gives the same labels and Bragg photons and the same
    sums to rounding."""
    import nbsim.truth_kernels as tk

    def render(threads):
        sim = Simulator.from_args(ROTATION + ["-default_F", "100"], threads=threads)
        image = sim.run(truth=True)
        return image, sim.frame_truth

    whole = render(1)
    monkeypatch.setattr(tk, "CHUNK_ROWS", 8)      # many chunks (>= the row count each)
    one, two = render(1), render(2)
    for a, b in ((one, two), (one, whole)):
        assert a[0].tobytes() == b[0].tobytes()
        assert a[1].labels.tobytes() == b[1].labels.tobytes()
        assert a[1].bragg.tobytes() == b[1].bragg.tobytes()
    for c in COLUMNS:
        x, y = np.asarray(one[1].table[c]), np.asarray(two[1].table[c])
        assert x.tobytes() == y.tobytes(), c
        z = np.asarray(whole[1].table[c])
        if x.dtype.kind == "f":
            assert np.allclose(x, z, rtol=1e-12, atol=0, equal_nan=True), c
        else:
            assert np.array_equal(x, z), c
    assert one[1].nrows > 8

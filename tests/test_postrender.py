"""The compiled post-render loops (nbsim.postrender) against the NumPy reference
conversions (themselves checked against nanoBragg.c's files in test_io / the golden
suite): identical bytes on values that exercise every rule -- NaN, infinities, negative
values, clipping at 0 / 65535 / 255, values next to the float32 rounding of x + 0.5,
wrap-around of the PGM's int conversion -- and on ROIs partly or wholly off a block."""
import numpy as np
import pytest

from nbsim import postrender
from nbsim.io import int_image, pgm_image
from nbsim.io._roi import roi_tuple


def _special_image(seed, shape=(29, 31)):
    rng = np.random.default_rng(seed)
    img = rng.normal(0.0, 300.0, shape).astype(np.float32)
    flat = img.reshape(-1)
    k = flat.size
    picks = rng.choice(k, size=k // 3, replace=False)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e30, -1e30, 65535.0, 65534.5,
                         65536.0, -40.0, -40.5, 254.9, 255.0, 256.0, -1.0, -3e9, 3e9,
                         2 ** 24 + 1.0, 0.49999997, 1.5, -2147483648.0],
                        dtype=np.float32)
    flat[picks] = specials[rng.integers(0, specials.size, picks.size)]
    return img


ROIS = [None, (3, 20, 2, 25), (0, 1000, 10, 10), (5, 4, 0, 28), (-1, 12, -1, 40)]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("roi", ROIS)
@pytest.mark.parametrize("scale, adc", [(1.0, 40.0), (355.636, 40.0), (1e-3, 0.0),
                                        (-2.0, 10.0), (7e7, 1.0)])
def test_int_rows_equal_the_numpy_conversion(seed, roi, scale, adc):
    img = _special_image(seed)
    want = int_image(img, scale, adc, roi)
    r = roi_tuple(roi, img.shape[1], img.shape[0])
    whole = np.zeros_like(want)
    postrender.int_rows(img, 0, r, scale, adc, whole)
    np.testing.assert_array_equal(whole, want)
    # in blocks of rows (the streamed path)
    blocks = np.zeros_like(want)
    for r0 in range(0, img.shape[0], 4):
        postrender.int_rows(img[r0:r0 + 4], r0, r, scale, adc, blocks[r0:r0 + 4])
    np.testing.assert_array_equal(blocks, want)
    if roi is None and scale == 1.0:
        assert {0, 65535} <= set(np.unique(want).tolist()) and np.unique(want).size > 50


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("roi", ROIS)
@pytest.mark.parametrize("scale", [1.0, 128.565, 1e-4, -3.0, 1e9])
def test_pgm_rows_equal_the_numpy_conversion(seed, roi, scale):
    img = _special_image(seed)
    want = pgm_image(img, scale, roi)
    r = roi_tuple(roi, img.shape[1], img.shape[0])
    got = np.zeros_like(want)
    for r0 in range(0, img.shape[0], 5):
        postrender.pgm_rows(img[r0:r0 + 5], r0, r, scale, got[r0:r0 + 5])
    np.testing.assert_array_equal(got, want)
    if roi is None and scale == 1.0:
        assert np.unique(want).size > 50          # the cases span the value range


@pytest.mark.parametrize("extra", [[], ["-roi", "3", "40", "5", "30", "-seed", "4"],
                                   ["-pgmscale", "2", "-scale", "7", "-adc", "0"]])
def test_image_outputs_compiled_equal_numpy(extra, tmp_path, monkeypatch):
    """The CLI's output step with the compiled loops and with NumPy: the same lines and
    the same file bytes (a real render, with its NaN-free but wide range of values)."""
    from nbsim import Simulator
    from nbsim.args import parse_args
    from nbsim.outputs import image_outputs
    monkeypatch.chdir(tmp_path)
    argv = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5",
            "-lambda", "6.2", "-distance", "100", "-detpixels", "48", "-pixel", "0.1",
            "-oversample", "1"] + extra
    parsed = parse_args(argv)
    sim = Simulator(parsed.config)
    img = sim.run().astype(np.float32)
    got = {}
    for compiled in (True, False):
        lines, steps = image_outputs(img, sim.plan, parsed.outputs, noise_idum=-4,
                                     compiled=compiled)
        files = {}
        for st in steps:
            path = tmp_path / f"{compiled}-{st.flag[1:]}"
            st.writer(str(path))
            files[st.flag] = path.read_bytes()
        got[compiled] = (lines, files)
    assert got[True] == got[False]
    lines, files = got[True]
    assert any(x.startswith("max_I = ") for x in lines)
    assert set(files) >= {"-floatfile", "-intfile"}


@pytest.mark.parametrize("flags", [
    "-detpixels 40 -oversample 1",
    "-detpixels 30 -oversample 2 -oversample_omega",
    "-detpixels 26 -oversample 3 -detector_thick 100 -detector_thicksteps 3 -oversample_omega",
    "-detpixels 27 -point_pixel",
    "-detpixels 36 -roi 3 30 5 20 -detector_rotx 10 -twotheta 20",
    "-detpixels 32 -oversample 2 -detector_thick 50 -detector_thicksteps 2",
])
def test_compiled_solid_angle_sum_equals_numpy(flags):
    """postrender.omega_flat gives the NumPy path's solid angles bit for bit (the same
    sum, in the same blocks), with sub-pixels, layers, point pixels, ROI and tilts; small
    blocks so that several are summed."""
    import nbsim
    from nbsim.stats import solid_angle_sum
    sim = nbsim.Simulator.from_args(
        "-cell 100 100 100 90 90 90 -default_F 100 -N 2 -distance 100".split() + flags.split())
    for block in (1 << 18, 97):
        a = solid_angle_sum(sim.plan, block=block)
        b = solid_angle_sum(sim.plan, block=block, compiled=True)
        assert a == b and a > 0

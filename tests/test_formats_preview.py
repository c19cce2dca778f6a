"""Quick-look PNG previews (nbsim.io.preview): stretch, colour map, montage, sink."""
from __future__ import annotations

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")
matplotlib = pytest.importorskip("matplotlib")

from nbsim.io.preview import (PngSink, montage_indices, preview_rgb,  # noqa: E402
                              stretch_params, stretch_unit, write_png)
from nbsim.io.sinks import DatasetInfo                               # noqa: E402
from nbsim.simulator import Simulator                                # noqa: E402


def _table(name):
    """255 evenly spaced colours of a matplotlib map, bottom to top."""
    return np.rint(matplotlib.colormaps[name](np.linspace(0, 1, 255))[:, :3] * 255
                   ).astype(np.uint8)


def _read(path):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "P"       # indexed colour
        return np.asarray(im.convert("RGB"))


def test_asinh_and_log_stretch_values():
    rng = np.random.default_rng(2)
    img = rng.poisson(5.0, (60, 70)).astype(np.float64)
    img[10, 10] = 1e5                          # a spot far above the background
    vmin = np.percentile(img, 0.5)
    vmax = np.percentile(img, 99.9)
    above = img[img > vmin] - vmin
    knee = max(np.median(above), 1e-3 * (vmax - vmin))
    assert stretch_params(img, "asinh") == pytest.approx((vmin, vmax, knee))
    t = img - vmin
    want = np.clip(np.sign(t) * np.arcsinh(np.abs(t) / knee) / np.arcsinh((vmax - vmin) / knee),
                   0, 1)
    assert np.allclose(stretch_unit(img, "asinh"), want, atol=1e-15)
    want_log = np.clip(np.sign(t) * np.log1p(np.abs(t) / knee) / np.log1p((vmax - vmin) / knee),
                       0, 1)
    assert np.allclose(stretch_unit(img, "log"), want_log, atol=1e-15)
    # background is visible (not all black) while the spot is at the top
    u = stretch_unit(img, "asinh")
    assert u[10, 10] == 1.0 and 0.2 < np.median(u) < 0.9
    lin = stretch_unit(img, "linear", vmin=0, vmax=1e5)
    assert lin[10, 10] == 1.0 and np.median(lin) < 1e-3


def test_single_image_orientation_and_colours(tmp_path):
    img = np.zeros((20, 30))
    img[2, 5] = 100.0
    img[np.isnan(img)] = 0
    path = tmp_path / "one.png"
    write_png(path, img, "asinh", "magma", vmin=0, vmax=100)
    rgb = _read(path)
    magma = _table("magma")
    assert rgb.shape == (20, 30, 3)            # rows = slow, columns = fast
    assert tuple(rgb[2, 5]) == tuple(magma[254])
    assert tuple(rgb[0, 0]) == tuple(magma[0])
    nan = img.copy()
    nan[7, 7] = np.nan
    assert tuple(preview_rgb(nan, cmap="viridis", vmin=0, vmax=100)[7, 7]) == \
        tuple(_table("viridis")[0])


def test_montage_layout_shared_scale_and_gaps(tmp_path):
    frames = [np.full((10, 12), float(k)) for k in range(5)]
    path = tmp_path / "m.png"
    write_png(path, frames, "linear", "gray", vmin=0, vmax=4)
    rgb = _read(path)
    assert rgb.shape == (2 * 10 + 2, 3 * 12 + 2 * 2, 3)   # 3 columns, 2 rows, 2-px gaps
    gray = _table("gray")
    for k in range(5):
        r, c = divmod(k, 3)
        tile = rgb[r * 12:r * 12 + 10, c * 14:c * 14 + 12]
        assert np.all(tile == gray[int(np.rint(k / 4 * 254))])
    assert np.all(rgb[10:12] == 255) and np.all(rgb[:, 12:14] == 255)
    assert np.all(rgb[12:, 2 * 14:] == 255)                 # the empty sixth tile
    # a 3-D array is a montage too, and the scale is shared (frame 4 is the brightest)
    auto = preview_rgb(np.stack(frames), "linear", "gray")
    assert auto.shape == rgb.shape
    assert auto[0, 0, 0] < auto[12, 14, 0]


def test_max_pooling_keeps_a_single_pixel_spot():
    img = np.ones((100, 100))
    img[37, 61] = 1e4
    rgb = preview_rgb(img, "asinh", "magma", max_size=30)
    assert rgb.shape == (25, 25, 3)
    assert tuple(rgb[37 // 4, 61 // 4]) == tuple(_table("magma")[254])


def test_bad_options_refused():
    with pytest.raises(ValueError, match="stretch"):
        stretch_unit(np.ones((2, 2)), "sqrt")
    with pytest.raises(ValueError, match="colour map"):
        preview_rgb(np.ones((2, 2)), cmap="not_a_map")
    with pytest.raises(ValueError, match="same shape"):
        preview_rgb([np.ones((2, 2)), np.ones((3, 2))])


def test_montage_indices():
    assert montage_indices(5, 16) == [0, 1, 2, 3, 4]
    idx = montage_indices(100, 16)
    assert len(idx) == 16 and idx[0] == 0 and idx[-1] == 99
    assert all(b > a for a, b in zip(idx, idx[1:]))


def test_png_sink_keeps_only_montage_frames(tmp_path):
    plan = Simulator.from_args(["-cell", "50", "50", "50", "90", "90", "90",
                                "-default_F", "1", "-detpixels", "16"]).plan
    info = DatasetInfo(plan=plan, nframes=40, scans=None)
    sink = PngSink(tmp_path / "p.png", max_frames=4)
    assert sink.open(info) == set()
    for i in range(40):
        sink.write(i, np.full(plan.shape, float(i)))
    assert sorted(sink._frames) == montage_indices(40, 4) == [0, 13, 26, 39]
    sink.close()
    rgb = _read(tmp_path / "p.png")
    assert rgb.shape == (2 * 16 + 2, 2 * 16 + 2, 3)
    assert PngSink(tmp_path / "q.png").open(info, resume=True) == set(range(40))


def test_compare_previews_use_preview_and_skip_without_pillow(tmp_path, monkeypatch):
    import io
    import sys
    from nbsim.cli.compare import _write_outputs
    rng = np.random.default_rng(4)
    c = rng.poisson(4.0, (24, 32)).astype(np.float64)
    n = c.copy()
    n[5, 6] += 50.0
    _write_outputs(tmp_path, c, n, {"x": 1}, None)
    diff = _read(tmp_path / "diff.png")
    coolwarm = _table("coolwarm")
    assert tuple(diff[5, 6]) == tuple(coolwarm[254])          # nbsim higher: top colour
    assert tuple(diff[0, 0]) == tuple(coolwarm[127])          # equal: the middle
    cp, npng = _read(tmp_path / "c.png"), _read(tmp_path / "nbsim.png")
    same = np.all(cp == npng, axis=-1)
    assert not same[5, 6] and same.sum() == same.size - 1     # one scale for both
    # without Pillow: one line on stderr, summary still written, no pictures
    monkeypatch.setitem(sys.modules, "PIL", None)
    err = io.StringIO()
    out = tmp_path / "nopil"
    out.mkdir()
    _write_outputs(out, c, n, {"x": 1}, None, err)
    assert (out / "summary.json").exists() and not list(out.glob("*.png"))
    assert err.getvalue().count("\n") == 1 and "pip install" in err.getvalue()

"""Quick-look PNG pictures of images and datasets (Pillow + a matplotlib colour map).

A diffraction image spans many decades (a few background photons, spots of 1e4+), so a
linear grey scale shows either the spots or the background.  The default here is an
asinh stretch -- linear near the background level, logarithmic above it -- into a
perceptually uniform colour map (``magma``)::

    y = asinh((x - vmin) / knee) / asinh((vmax - vmin) / knee),   clipped to [0, 1]

with ``vmin``/``vmax`` the 0.5th / 99.9th percentiles of the finite pixels (so a few hot
pixels do not set the scale) and ``knee`` the median of ``x - vmin`` over the pixels
above ``vmin`` (the background level; at least 1e-3 of the range).  ``stretch="log"``
uses ``log1p`` instead of ``asinh``; ``"linear"`` is ``(x - vmin) / (vmax - vmin)``.
Pass ``vmin``/``vmax``/``knee`` (:func:`stretch_params`) to put several pictures on one
scale.  A list of frames becomes a montage (rows of tiles, frame 0 top left, white
gaps), every tile on the same scale, max-pooled so the picture
stays within ``max_size`` pixels (max-pooling keeps one-pixel spots visible).  Rows are
the slow axis, top to bottom; columns the fast axis, left to right.

Pillow writes the file (an indexed-colour PNG: 255 colour levels + the gap colour,
through :mod:`nbsim.io._atomic`); matplotlib supplies only the colour table (no pyplot,
no figure).  Both are in the ``formats`` extra.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Set, Union

import numpy as np

from ._atomic import atomic_open

__all__ = ["write_png", "preview_rgb", "preview_indexed", "stretch_unit", "stretch_params", "montage_indices",
           "PngSink", "STRETCHES"]

STRETCHES = ("asinh", "log", "linear")
_MISSING_EXTRA = 'Pillow and matplotlib are needed for PNG previews: pip install -e ".[formats]"'
_GAP_RGB = (255, 255, 255)
_LEVELS = 255                     # colour levels; palette index 255 is the gap
_SAMPLE = 1 << 20                 # pixels enough to set a display scale


def _palette(cmap: str) -> np.ndarray:
    """(256, 3) uint8 palette: entries 0..254 sample the matplotlib colour map evenly
    from its bottom to its top colour, entry 255 is the montage gap colour."""
    try:
        import matplotlib
    except ImportError as exc:                # pragma: no cover - extras installed in CI
        raise ImportError(_MISSING_EXTRA) from exc
    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"unknown colour map {cmap!r} (any matplotlib colour map name, "
                         f"e.g. magma, viridis, gray)") from None
    table = np.rint(cm(np.linspace(0.0, 1.0, _LEVELS))[:, :3] * 255.0).astype(np.uint8)
    return np.vstack([table, np.array([_GAP_RGB], dtype=np.uint8)])


def stretch_params(img, stretch: str = "asinh", vmin: Optional[float] = None,
                   vmax: Optional[float] = None, knee: Optional[float] = None):
    """``(vmin, vmax, knee)`` of the stretch for ``img`` (module docstring); given values
    are kept.  Use them to put several pictures on exactly one scale.  Above 2**20
    finite pixels the statistics come from an even subsample (every k-th pixel)."""
    if stretch not in STRETCHES:
        raise ValueError(f"stretch must be one of {', '.join(STRETCHES)}, not {stretch!r}")
    x = np.asarray(img, dtype=np.float64)
    vals = x[np.isfinite(x)]
    if vals.size > _SAMPLE:           # display scale: an even subsample is plenty
        vals = vals[::vals.size // _SAMPLE]
    if vmin is None:
        vmin = float(np.percentile(vals, 0.5)) if vals.size else 0.0
    if vmax is None:
        vmax = float(np.percentile(vals, 99.9)) if vals.size else 1.0
        if vmax <= vmin and vals.size:
            vmax = float(vals.max())
    span = float(vmax) - float(vmin)
    if knee is None:
        above = vals[vals > vmin] - vmin
        knee = float(np.median(above)) if above.size else span
        knee = max(knee, 1e-3 * span) if span > 0 else 1.0
    return float(vmin), float(vmax), float(knee)


def stretch_unit(img, stretch: str = "asinh", vmin: Optional[float] = None,
                 vmax: Optional[float] = None, knee: Optional[float] = None) -> np.ndarray:
    """Map pixel values to [0, 1] (float64) by the stretch of the module docstring.
    Non-finite pixels become 0."""
    vmin, vmax, knee = stretch_params(img, stretch, vmin, vmax, knee)
    x = np.asarray(img, dtype=np.float64)
    finite = np.isfinite(x)
    span = vmax - vmin
    if not span > 0:
        return np.zeros(x.shape)
    t = np.where(finite, x, vmin) - vmin
    if stretch == "linear":
        y = t / span
    else:
        f = np.arcsinh if stretch == "asinh" else np.log1p
        y = np.sign(t) * f(np.abs(t) / knee) / f(span / knee)
    return np.clip(y, 0.0, 1.0)


def _max_pool(img: np.ndarray, factor: int) -> np.ndarray:
    if factor <= 1:
        return img
    s, f = img.shape
    ps, pf = -s % factor, -f % factor
    padded = np.pad(img, ((0, ps), (0, pf)), constant_values=np.nan)
    # factor**2 strided maxima (much faster than a reduction over a reshaped view);
    # fmax ignores NaN, so a block is NaN only if all its pixels are
    out = padded[0::factor, 0::factor].copy()
    for i in range(factor):
        for j in range(factor):
            if i or j:
                np.fmax(out, padded[i::factor, j::factor], out=out)
    return out


def montage_indices(nframes: int, max_frames: int = 16) -> List[int]:
    """Up to ``max_frames`` frame indices spread evenly over a dataset, first and last
    included: the frames a dataset preview shows."""
    if nframes <= max_frames:
        return list(range(nframes))
    return sorted({int(round(k * (nframes - 1) / (max_frames - 1)))
                   for k in range(max_frames)})


def preview_indexed(images, stretch: str = "asinh", cmap: str = "magma", *,
                    vmin: Optional[float] = None, vmax: Optional[float] = None,
                    knee: Optional[float] = None, max_size: int = 2048, gap: int = 2):
    """The picture as palette indices (height, width) uint8 and the (256, 3) palette:
    level ``rint(254 * y)`` for a stretched value y, 255 for the montage gaps."""
    frames = [np.asarray(images, dtype=np.float64)] if _is_single(images) else \
        [np.asarray(im, dtype=np.float64) for im in images]
    if not frames:
        raise ValueError("no image to preview")
    shape = frames[0].shape
    if len(shape) != 2 or any(fr.shape != shape for fr in frames):
        raise ValueError("preview images must be 2-D and all the same shape")
    palette = _palette(cmap)
    n = len(frames)
    ncols = int(math.ceil(math.sqrt(n)))
    nrows = int(math.ceil(n / ncols))
    s, f = shape
    factor = max(1, int(math.ceil(max(ncols * f, nrows * s) / max_size)))
    tiles = [_max_pool(fr, factor) for fr in frames]
    ts, tf = tiles[0].shape
    # one scale for all tiles: the percentiles of all of them together
    units = stretch_unit(np.stack(tiles), stretch, vmin, vmax, knee)
    levels = np.rint(units * (_LEVELS - 1)).astype(np.uint8)
    if n == 1:
        return np.ascontiguousarray(levels[0]), palette
    g = gap
    out = np.full((nrows * ts + (nrows - 1) * g, ncols * tf + (ncols - 1) * g), _LEVELS,
                  dtype=np.uint8)
    for k in range(n):
        r, c = divmod(k, ncols)
        out[r * (ts + g):r * (ts + g) + ts, c * (tf + g):c * (tf + g) + tf] = levels[k]
    return out, palette


def preview_rgb(images, stretch: str = "asinh", cmap: str = "magma", **kw) -> np.ndarray:
    """The picture as an (height, width, 3) uint8 RGB array (see :func:`preview_indexed`)."""
    index, palette = preview_indexed(images, stretch, cmap, **kw)
    return palette[index]


def _is_single(images) -> bool:
    return isinstance(images, np.ndarray) and images.ndim == 2


def write_png(path, images: Union[np.ndarray, Sequence[np.ndarray]],
              stretch: str = "asinh", cmap: str = "magma", *,
              vmin: Optional[float] = None, vmax: Optional[float] = None,
              knee: Optional[float] = None, max_size: int = 2048) -> None:
    """Write a quick-look PNG of one image (2-D array) or a montage of frames (a list,
    or a 3-D array [frames, slow, fast]), atomically."""
    try:
        from PIL import Image
    except ImportError as exc:                # pragma: no cover - extras installed in CI
        raise ImportError(_MISSING_EXTRA) from exc
    index, palette = preview_indexed(images, stretch, cmap, vmin=vmin, vmax=vmax,
                                     knee=knee, max_size=max_size)
    picture = Image.fromarray(index, "P")
    picture.putpalette(palette.ravel().tolist())
    # an indexed PNG at zlib level 1: ~20x faster than RGB at level 6, half the size
    with atomic_open(path, "wb") as fh:
        picture.save(fh, format="PNG", compress_level=1)


class PngSink:
    """A dataset preview as a frame sink: keeps (max-pooled) copies of the frames of
    :func:`montage_indices` only, and writes the montage at ``close``.

    A preview never forces a frame to be rendered again: ``open(..., resume=True)``
    reports every frame complete, and the montage of a resumed job holds the frames
    rendered in that run (all of them if the job ran in one go)."""

    def __init__(self, path, stretch: str = "asinh", cmap: str = "magma",
                 max_frames: int = 16, max_size: int = 2048):
        if stretch not in STRETCHES:
            raise ValueError(f"stretch must be one of {', '.join(STRETCHES)}, "
                             f"not {stretch!r}")
        _palette(cmap)                        # unknown map or missing matplotlib: now
        self.path, self.stretch, self.cmap = path, stretch, cmap
        self.max_frames, self.max_size = max_frames, max_size
        self._keep: Set[int] = set()
        self._frames = {}
        self._factor = 1

    def open(self, info, resume: bool = False) -> Set[int]:
        idx = montage_indices(info.nframes, self.max_frames)
        self._keep = set(idx)
        n = len(idx)
        ncols = int(math.ceil(math.sqrt(n)))
        nrows = int(math.ceil(n / ncols))
        from ..image_model import FileLayout
        self._layout = FileLayout(info.plan)    # a preset's tiled frame, stacked panels
        s, f = self._layout.file_shape
        # pool as frames arrive so memory stays at max_frames small tiles
        self._factor = max(1, int(math.ceil(max(ncols * f, nrows * s) / self.max_size)))
        self._frames = {}
        return set(range(info.nframes)) if resume else set()

    def write(self, index: int, data: np.ndarray) -> None:
        if index in self._keep:
            a = np.asarray(data)
            if a.shape != self._layout.file_shape:      # (panels, slow, fast)
                a = self._layout.file(a)
            self._frames[index] = _max_pool(np.asarray(a, dtype=np.float64), self._factor)

    def close(self) -> None:
        if self._frames:
            frames = [self._frames[i] for i in sorted(self._frames)]
            write_png(self.path, frames[0] if len(frames) == 1 else frames, self.stretch,
                      self.cmap, max_size=self.max_size)
        self._frames = {}

    def abort(self) -> None:
        self._frames = {}

"""The per-image output steps of a nanoBragg run: statistics, the float, int (SMV), PGM and
noise images, in C's order and with C's printed lines, and their writing as one set.

A run hands over the rendered image (float64 or float32, (slow, fast)); nothing here
renders or knows the command line beyond :class:`nbsim.args.Outputs`.  The steps are
separate functions so that a dataset (many images) can call them per frame:

* :func:`smv_header` -- the SMV header of the plan's detector and scan;
* :func:`render_mask` -- the bool (slow, fast) "C renders this pixel" mask, or None;
* :func:`image_outputs` -- everything C prints after the render and the files to write,
  for an image held whole (the one-piece path);
* :class:`OutputSet` -- writes outputs under temporary names beside their targets and
  renames them all at the end (:meth:`OutputSet.commit`), or removes every temporary file
  (:meth:`OutputSet.discard`, also on an interrupt): an output appears complete or not at
  all.  The streamed path (:mod:`nbsim.streaming`) writes into the same temporary files
  block by block.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np

__all__ = ["OutputError", "OutputStep", "OutputSet", "smv_header", "render_mask",
           "image_outputs", "solid_angle_and_float_lines", "rendered_index_blocks"]


class OutputError(Exception):
    """An output file cannot be written (the message names the flag and the file)."""


@dataclass
class OutputStep:
    """One file to write: ``writer(path)`` writes it (to the temporary name it is given)."""
    flag: str
    path: str
    writer: Callable[[str], None]
    optional: bool = False          # failure only warns (C: the dump file)


def smv_header(plan, det=None):
    """The :class:`nbsim.io.SMVHeader` C writes for ``plan``'s detector (or ``det``, the
    file layout of a multi-panel render), beam and scan."""
    from .io import SMVHeader
    det = plan.detector if det is None else det
    return SMVHeader(fpixels=det.fpixels, spixels=det.spixels, pixel_size=det.pixel_size,
                     distance=det.distance, lambda0=plan.config.beam.wavelength,
                     Xbeam=det.Xbeam, Ybeam=det.Ybeam, Fbeam=det.Fbeam, Sbeam=det.Sbeam,
                     detsize_s=det.detsize_s, dials_origin=tuple(det.dials_origin),
                     ORGX=det.ORGX, ORGY=det.ORGY, close_distance=det.close_distance,
                     phi0=plan.crystal.phi0, osc=plan.crystal.osc,
                     detector_twotheta=det.twotheta)


def render_mask(plan) -> Optional[np.ndarray]:
    """bool (slow, fast): True where C renders (mask value != 0); None without -mask."""
    if not plan.options.has_mask:
        return None
    det = plan.detector
    return plan.mask.reshape(det.spixels, det.fpixels) != 0


def rendered_index_blocks(plan, block: int = 1 << 18, rows: int = 256):
    """The rendered pixels (ROI, unmasked) in raster order as arrays of ``block`` raster
    indices (the last shorter), built ``rows`` detector rows at a time: the blocks
    :func:`nbsim.stats.solid_angle_sum` takes from ``plan.rendered_pixels``, without
    the whole index."""
    sp = plan.detector.spixels
    x0, x1, y0, y1 = plan.roi_bounds
    pending: List[np.ndarray] = []
    n = 0
    for r0 in range(max(y0, 0), y1 + 1, rows):
        idx = plan.roi_rows_index(r0, min(sp, r0 + rows, y1 + 1))
        if plan.options.has_mask:
            idx = idx[plan.mask[idx] != 0]
        pending.append(idx)
        n += idx.size
        while n >= block:
            allidx = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield allidx[:block]
            rest = allidx[block:]
            pending, n = [rest], rest.size
    if n:
        yield np.concatenate(pending)


def solid_angle_and_float_lines(plan, floatfile: str, n_pixels: Optional[int] = None,
                                compiled: bool = False) -> List[str]:
    """C's "solid angle subtended" and "writing <floatfile>" lines (``n_pixels``: the
    file's pixel count, by default the detector's; ``compiled``: see
    :func:`nbsim.stats.solid_angle_sum`)."""
    from . import report
    from .stats import solid_angle_sum
    det = plan.detector
    if n_pixels is None:
        n_pixels = det.fpixels * det.spixels
    return (report.solid_angle_lines(solid_angle_sum(
                plan, index_blocks=rendered_index_blocks(plan), compiled=compiled))
            + report.float_lines(floatfile, n_pixels))


def image_outputs(image, plan, outs, *, noise_idum: Optional[int] = None,
                  previous_state: Optional[np.ndarray] = None, compiled: bool = True,
                  detector=None, suite=None) -> Tuple[List[str], List[OutputStep]]:
    """What C prints after rendering ``image`` and the files it writes, in C's order.

    ``image``: the render ((slow, fast), float64 or float32; C stores float32; a panel
    set's (panels, slow, fast)).
    ``outs``: :class:`nbsim.args.Outputs` (file names, scales, ADC offset, which outputs).
    ``noise_idum``: C's noise seed (required when ``outs.calculate_noise``);
    ``previous_state``: ran1's state C leaves before the noise image (positive idum only).
    ``compiled``: the statistics, int image and PGM by :mod:`nbsim.postrender` (one pass
    each; needs Numba's CPU target) rather than NumPy (same bytes; a GPU run without
    noise then never sets the CPU target up).
    ``detector``: the files' detector when it is not ``plan.detector`` (statistics then
    by NumPy over the whole file image).  A multi-panel plan (without ``detector``)
    takes ``image`` as ``(panels, slow, fast)`` (any shape of its pixels in the flat
    order): every product is computed on the panels and laid out by
    :class:`nbsim.image_model.FileLayout` (:func:`_panel_image_outputs`).  ``suite``: :class:`nbsim.suite.Suite`;
    with noisify's flags its chain makes the noise image.
    Returns ``(stdout lines, output steps)``; nothing is written here.
    """
    from . import report
    from .io import int_image, pgm_image, write_float_image, write_pgm, write_smv
    from .io._roi import roi_tuple
    from .stats import StreamingStats, image_stats, intfile_scale_rule, pgm_scale_rule

    if getattr(plan, "panels", None) is not None and detector is None:
        return _panel_image_outputs(image, plan, outs, noise_idum, previous_state, suite)
    det = plan.detector if detector is None else detector
    img32 = image if (image.dtype == np.float32 and image.flags.c_contiguous) else \
        np.ascontiguousarray(image, dtype=np.float32)
    img32 = img32.reshape(det.spixels, det.fpixels)
    roi = roi_tuple(det.roi, det.fpixels, det.spixels)
    if compiled:
        from . import postrender
        acc = StreamingStats(det.roi, det.fpixels, det.spixels,
                             plan.mask if plan.options.has_mask else None)
        acc.add_rows(img32, 0)
        acc.add_deviation_rows(img32, 0)
        stats = acc.result(det.pixel_size, plan.oversample)
    else:
        stats = image_stats(img32, mask=render_mask(plan) if detector is None else None,
                            roi=det.roi,
                            pixel_size=det.pixel_size, oversample=plan.oversample)
    lines: List[str] = []
    steps: List[OutputStep] = []
    steps.append(OutputStep("-floatfile", outs.floatfile,
                            lambda p: write_float_image(p, img32)))
    lines += solid_angle_and_float_lines(plan, outs.floatfile, img32.size,
                                         compiled=compiled and detector is None)
    intfile_scale = intfile_scale_rule(stats.max_I, outs.intfile_scale)
    lines += report.stats_lines(stats, intfile_scale)
    header = smv_header(plan, det)
    if compiled:
        ints = np.zeros(img32.shape, dtype=np.uint16)
        postrender.int_rows(img32, 0, roi, float(intfile_scale), float(outs.adc_offset), ints)
    else:
        ints = int_image(img32, intfile_scale, outs.adc_offset, det.roi)
    steps.append(OutputStep("-intfile", outs.intfile, lambda p: write_smv(p, ints, header)))
    lines += report.int_lines(outs.intfile)
    if outs.write_pgm:
        pgm_scale = pgm_scale_rule(stats.rmsd, intfile_scale, outs.pgm_scale)
        if compiled:
            pgm = np.zeros(img32.shape, dtype=np.uint8)
            postrender.pgm_rows(img32, 0, roi, float(pgm_scale), pgm)
        else:
            pgm = pgm_image(img32, pgm_scale, det.roi)
        steps.append(OutputStep("-pgmfile", outs.pgmfile,
                                lambda p: write_pgm(p, pgm, pgm_scale)))
        lines += report.pgm_lines(outs.pgmfile, pgm_scale)
    if outs.calculate_noise and getattr(suite, "detector", None) is not None:
        # the counting / JUNGFRAU detector's output (docs/effects.md)
        det_pixels, noise_lines = suite.detector_noise(img32, noise_idum, roi=roi)
        steps.append(OutputStep("-noisefile", outs.noisefile,
                                lambda p: write_smv(p, det_pixels, header, noise=True)))
        lines += noise_lines
    elif outs.calculate_noise and suite is not None and suite.effects is not None:
        from .suite import write_noise_smv    # noisify.c's chain
        noise_ints, bits, noise_lines = suite.noise(img32, noise_idum)
        steps.append(OutputStep("-noisefile", outs.noisefile,
                                lambda p: write_noise_smv(p, noise_ints, header, bits)))
        lines += noise_lines
    elif outs.calculate_noise:
        from .noise import noise_image
        noisy = noise_image(img32, idum=noise_idum, adc_offset=outs.adc_offset, roi=det.roi,
                            previous_state=previous_state)
        steps.append(OutputStep("-noisefile", outs.noisefile,
                                lambda p: write_smv(p, noisy.image, header, noise=True)))
        lines += report.noise_lines(noisy, outs.noisefile)
    return lines, steps


def _panel_image_outputs(image, plan, outs, noise_idum, previous_state, suite):
    """:func:`image_outputs` of a multi-panel render: every product is computed on the
    (panels, slow, fast) image (statistics over the panels' ROI pixels, noise in raster
    order over panels, noisify's PSF inside each panel) and laid out for its file by
    :class:`nbsim.image_model.FileLayout` (a preset's tiled frame with zero gaps and the
    frame's header, else the stacked panels); a dataset frame's files are the same."""
    from . import report
    from .image_model import FileLayout, frame_stats, int_pixels, panel_roi, pgm_pixels
    from .io import write_float_image, write_pgm, write_smv
    from .stats import intfile_scale_rule, pgm_scale_rule

    layout = FileLayout(plan)
    img3 = np.ascontiguousarray(image, dtype=np.float32).reshape(layout.shape)
    stats = frame_stats(plan, img3)
    lines: List[str] = []
    steps: List[OutputStep] = []
    float_file = layout.file(img3)
    steps.append(OutputStep("-floatfile", outs.floatfile,
                            lambda p: write_float_image(p, float_file)))
    lines += solid_angle_and_float_lines(plan, outs.floatfile, float_file.size)
    intfile_scale = intfile_scale_rule(stats.max_I, outs.intfile_scale)
    lines += report.stats_lines(stats, intfile_scale)
    header = smv_header(plan, layout.detector)
    ints = layout.file(int_pixels(plan, img3, intfile_scale, outs.adc_offset))
    steps.append(OutputStep("-intfile", outs.intfile, lambda p: write_smv(p, ints, header)))
    lines += report.int_lines(outs.intfile)
    if outs.write_pgm:
        pgm_scale = pgm_scale_rule(stats.rmsd, intfile_scale, outs.pgm_scale)
        pgm = layout.file(pgm_pixels(plan, img3, pgm_scale))
        steps.append(OutputStep("-pgmfile", outs.pgmfile,
                                lambda p: write_pgm(p, pgm, pgm_scale)))
        lines += report.pgm_lines(outs.pgmfile, pgm_scale)
    if outs.calculate_noise and getattr(suite, "detector", None) is not None:
        # the counting / JUNGFRAU detector's output (docs/effects.md)
        det_pixels, noise_lines = suite.detector_noise(img3, noise_idum, roi=panel_roi(plan))
        det_file = layout.file(det_pixels)
        steps.append(OutputStep("-noisefile", outs.noisefile,
                                lambda p: write_smv(p, det_file, header, noise=True)))
        lines += noise_lines
    elif outs.calculate_noise and suite is not None and suite.effects is not None:
        from .suite import write_noise_smv    # noisify.c's chain
        noise_ints, bits, noise_lines = suite.noise(img3, noise_idum)
        noise_file = layout.file(noise_ints)
        steps.append(OutputStep("-noisefile", outs.noisefile,
                                lambda p: write_noise_smv(p, noise_file, header, bits)))
        lines += noise_lines
    elif outs.calculate_noise:
        from .noise import noise_image
        noisy = noise_image(img3, idum=noise_idum, adc_offset=outs.adc_offset,
                            roi=panel_roi(plan), previous_state=previous_state)
        noise_file = layout.file(noisy.image)
        steps.append(OutputStep("-noisefile", outs.noisefile,
                                lambda p: write_smv(p, noise_file, header, noise=True)))
        lines += report.noise_lines(noisy, outs.noisefile)
    return lines, steps


class OutputSet:
    """Output files written under temporary names beside their targets, renamed together.

    ``note(msg)`` receives warnings (an optional output that failed).  Use as::

        outputs = OutputSet(note)
        try:
            outputs.write(steps)           # or: path = outputs.temp_for(flag, target)
            outputs.commit()
        finally:
            outputs.discard()              # no-op after a commit

    Temporary names are ``.<name>.nbsim-<pid>-<n>.tmp`` in the target's directory, so a
    rename never crosses file systems.
    """

    def __init__(self, note: Callable[[str], None] = lambda msg: None):
        self.note = note
        self._temps: List[Tuple[str, str]] = []      # (temporary, target)
        self._n = 0

    def temp_for(self, flag: str, path: str) -> str:
        """A registered temporary name for ``path`` (removed by :meth:`discard`)."""
        p = Path(path)
        tmp = str(p.with_name(f".{p.name}.nbsim-{os.getpid()}-{self._n}.tmp"))
        self._n += 1
        self._temps.append((tmp, path))
        return tmp

    def forget(self, tmp: str):
        _unlink(tmp)
        self._temps = [(t, p) for t, p in self._temps if t != tmp]

    def write(self, steps: List[OutputStep]):
        """Run every step into its temporary file (OSError -> :class:`OutputError` naming
        the flag and file, or a warning for an optional step)."""
        for st in steps:
            tmp = self.temp_for(st.flag, st.path)
            try:
                st.writer(tmp)
            except OSError as e:
                self.forget(tmp)
                reason = e.strerror or str(e)
                if st.optional:
                    self.note(f"WARNING: unable to write {st.flag} {st.path}: {reason}")
                    continue
                raise OutputError(f"{st.flag}: cannot write {st.path}: {reason}") from None

    def commit(self):
        """Rename every temporary file to its target (in the order they were made)."""
        temps, self._temps = self._temps, []
        for i, (tmp, path) in enumerate(temps):
            try:
                os.replace(tmp, path)
            except BaseException:
                self._temps = temps[i:]
                raise

    def discard(self):
        """Remove every temporary file not yet renamed."""
        temps, self._temps = self._temps, []
        for tmp, _ in temps:
            _unlink(tmp)


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def write_file_set(files) -> None:
    """Write ``(path, bytes)`` pairs as one set (temporary names, then all renamed): the
    files appear complete or not at all; an OSError raises :class:`OutputError` naming the
    file (nbsim-noisify and nbsim-nonbragg write their outputs so)."""
    def writer(data):
        def w(tmp):
            with open(tmp, "wb") as fh:
                fh.write(data)
        return w
    outputs = OutputSet()
    try:
        outputs.write([OutputStep("output", path, writer(data)) for path, data in files])
        outputs.commit()
    finally:
        outputs.discard()

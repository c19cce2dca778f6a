"""The detector suite per frame: the backgrounds and noisify.c's chain on every frame.

A dataset applies the same suite flags as the single-image ``nbsim`` run
(:mod:`nbsim.suite`), so frame ``i`` is the single run with ``-phi``/``-misset``
of the frame and ``-seed <frame seed>``:

* **amorphous background** (``-stol FILE -thickness -density -MW``, default mode): it
  depends on the detector, the sources and the fluence, never on the crystal's
  orientation, so it is computed **once per dataset** (float64 photons/pixel, (panels,
  slow, fast), every panel from its own geometry) and added
  to every frame's float32 image before noise, rounded once to float32 as the single run
  does.  Under ``-c_parity`` the flags change nothing (a note says so).  A SASE spectrum
  per shot (-sase_bandwidth) changes the sources of every frame: the background is then
  computed per frame from the frame's channels.
* **ice rings and bad pixels** (``-ice UM``, ``-bad_pixels``; both modes): the ice Ih
  rings (:mod:`nbsim.amorphous.ice`) join that background, once per dataset; the
  beamstop's shadow and the bad pixels are 0 in it (they are masked: not rendered) and
  hot pixels hold :data:`nbsim.geometry.defects.HOT_PIXEL_PHOTONS` in every frame.
* **noisify chain** (any of ``-psf -psf_fwhm -psf_radius -psf_method -readout -flicker
  -calibration -calib_seed -gain -bits``, with noise on): the frame's noise image is
  :func:`nbsim.effects.noisify` of its (panels, slow, fast) float image (streams in
  raster order over panels, a PSF inside each panel) with the noise idum of the frame's
  seed (``idum_from_seed_flag(frame_seed(seed, i, "noise"))``) and the calibration idum
  of ``-calib_seed`` (noisify.c's 123456789 by default) -- the **same for every frame**:
  a pixel's calibration error is a property of the detector, not of the exposure.
  The frame's ``counts`` (NeXus / CBF data) are then those ADU integers (adc offset,
  gain and readout noise included) as int32; ``-noisefile`` frames hold them as
  noisify.c writes them (16-bit, or 32-bit ``TYPE=long_integer`` with ``-bits 32``).
* **detector model** (``-detector_model counting|jungfrau``, or the preset's, with noise
  on, default mode; :mod:`nbsim.detector_model`): the frame's counts are the model's
  output for the frame's ``-seed`` value (its streams are named streams of that seed,
  :mod:`nbsim.dataset.seeds`) -- the single run's with ``-seed <frame seed>``;
  ``-noisefile`` frames hold them clipped to 0..65535.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["FrameEffects"]

_INT32_MAX = np.iinfo(np.int32).max


class FrameEffects:
    """What the suite flags do to each frame (picklable: sent to Dask workers whole).

    ``background``: float64 (panels, slow, fast) photons/pixel added to every frame (each
    panel's from its own geometry), or None;
    ``noisify_params``: :class:`nbsim.effects.NoisifyParams`, or None (Poisson counts);
    ``calib_idum``: the calibration stream's idum, shared by all frames;
    ``lines``: what the run prints about them; ``notes``: flags that change nothing.
    """

    def __init__(self, background: Optional[np.ndarray] = None, noisify_params=None,
                 calib_idum: int = 123456789, lines: Sequence[str] = (),
                 notes: Sequence[str] = (), detector=None):
        self.background = background
        self.noisify_params = noisify_params
        self.calib_idum = int(calib_idum)
        self.lines: List[str] = list(lines)
        self.notes: List[str] = list(notes)
        #: the counting / JUNGFRAU model (:class:`nbsim.detector_model.DetectorModel`)
        self.detector = detector
        self._suite = None          # the run's Suite: background_of (a shot's own sources)

    @classmethod
    def from_parsed(cls, parsed, plan_of_run) -> Optional["FrameEffects"]:
        """The suite flags of ``parsed`` (:func:`nbsim.args.parse_args`), checked as the
        single run checks them (:class:`nbsim.suite.SuiteError`: exit 2);
        ``plan_of_run()`` gives the frame-independent plan (called only for -stol).
        None when no suite flag is given."""
        from .. import suite as suite_flags
        from ..detector_model import PRESET_MODELS, preset_name
        model_preset = preset_name(parsed.config) in PRESET_MODELS
        if not parsed.outputs.suite and parsed.config.detector.bad_pixel_fraction <= 0 \
                and not model_preset:
            return None
        suite = suite_flags.prepare(parsed, parsed.outputs.adc_offset)
        background, lines = None, []
        if suite_flags.wants_background(parsed, suite):
            from ..image_model import as_frame
            plan = plan_of_run()
            background, lines = suite_flags.detector_background(suite, plan)
            if background is not None:
                background = as_frame(plan, background)    # (panels, slow, fast)
        if background is None and not parsed.outputs.suite and suite.detector is None:
            return None         # (a preset's model is off with -nonoise, -c_parity)
        calib = suite_flags.calib_idum(parsed) if suite.effects is not None else 123456789
        if suite.detector is not None:
            lines = lines + list(suite.detector.lines)
        fx = cls(background, suite.effects, calib, lines, suite.notes,
                 detector=suite.detector)
        # a spectrum per shot (-sase_bandwidth) changes the sources: its frames'
        # backgrounds are computed again (background_of)
        fx._suite = suite
        return fx

    def background_of(self, plan) -> np.ndarray:
        """The background (-stol, -ice, bad pixels) of ``plan``'s sources (a frame whose
        spectrum is its own), float64 (panels, slow, fast)."""
        from .. import suite as suite_flags
        from ..image_model import as_frame
        return as_frame(plan, suite_flags.detector_background(self._suite, plan)[0])

    def add_background(self, image32: np.ndarray, background=None) -> np.ndarray:
        """The frame's float32 image with the background (``background``, or the run's)."""
        bg = self.background if background is None else background
        if bg is None:
            return image32
        from ..suite import add_background
        return add_background(image32, bg)

    def detector_counts(self, image32: np.ndarray, noise_seed: int, roi=None):
        """``(counts int32, noise-file pixels uint16)`` of the detector model."""
        from ..suite import detector_file_pixels
        counts = self.detector.counts(image32, int(noise_seed), roi=roi)
        return counts, detector_file_pixels(counts)

    def noise(self, image32: np.ndarray, noise_seed: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(counts int32, noise-file pixels uint16|uint32)`` of one frame by noisify.c's
        chain, from the frame's ``-seed`` value ``noise_seed``."""
        from ..effects import NoisifyStreams, noisify
        from ..rng import idum_from_seed_flag
        p = self.noisify_params
        res = noisify(image32, p, NoisifyStreams(idum_from_seed_flag(int(noise_seed)),
                                                 self.calib_idum))
        pixels = res.noisy.image(p.bits)
        counts = np.minimum(pixels.astype(np.int64), _INT32_MAX).astype(np.int32)
        return counts, pixels

"""Which detector makes a run's noise image / counts: the flags and presets -> a model.

``-detector_model integrating|counting|jungfrau`` chooses; without it the run's flags
do: a photon-counting flag (``-deadtime -deadtime_model -frame_time -counter_bits
-counter_overflow -charge_cloud -threshold``) means ``counting``, ``-jungfrau_output``
means ``jungfrau``, noisify.c's flags (``-psf -readout -gain ...``) mean noisify.c's
integrating chain, and otherwise the preset decides (``eiger2_16m``: counting,
``jungfrau_4m``: jungfrau; any other detector: integrating, i.e. nanoBragg's Poisson
noise).  ``integrating`` is nbsim's noise as before (Poisson, or noisify.c's chain).

The counting and JUNGFRAU models are nbsim extensions (docs/effects.md): under
``-c_parity`` they are off (the noise is nanoBragg.c's) and their flags change nothing
(a note says so); with ``-nonoise`` likewise.  Bad values: :class:`SuiteError` (exit 2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from .args import ArgError

__all__ = ["DetectorModel", "resolve_detector_model", "COUNTING_KEYS", "JUNGFRAU_KEYS",
           "MODEL_KEYS", "PRESET_MODELS", "EIGER2_DEFAULTS"]

COUNTING_KEYS = ("deadtime", "deadtime_model", "frame_time", "counter_bits",
                 "counter_overflow", "charge_cloud", "threshold")
JUNGFRAU_KEYS = ("jungfrau_output",)
MODEL_KEYS = ("detector_model",) + COUNTING_KEYS + JUNGFRAU_KEYS
#: the detector model a preset selects (docs/effects.md)
PRESET_MODELS = {"eiger2_16m": "counting", "jungfrau_4m": "jungfrau"}
#: the counting defaults (DECTRIS EIGER2: instant retrigger = non-paralyzable, 16-bit
#: counters, threshold at half the photon energy; dead time and charge cloud: see
#: docs/effects.md)
EIGER2_DEFAULTS = dict(deadtime_ns=100.0, counter_bits=16, charge_cloud_um=5.0)
_NOISIFY_KEYS = ("psf", "psf_fwhm", "psf_radius", "psf_method", "readout", "flicker",
                 "calibration", "calib_seed", "gain", "bits")


class SuiteError(ArgError):
    """Bad suite flag value or file: -stol, noisify's, the detector models' (the message
    names the flag); exit 2.  (:mod:`nbsim.suite` re-exports it.)"""


@dataclass
class DetectorModel:
    """A resolved counting or JUNGFRAU detector (``kind``), its parameters
    (:class:`nbsim.effects.counting.CountingParams` /
    :class:`nbsim.effects.jungfrau.JungfrauParams`) and the calibration seed
    (``-calib_seed``, JUNGFRAU's per-pixel gains and pedestals)."""
    kind: str
    params: object
    calib_seed: int = 123456789
    kernel: Optional[np.ndarray] = None          # counting: the charge-sharing kernel
    lines: List[str] = field(default_factory=list)

    def counts(self, image32: np.ndarray, seed: int, roi=None) -> np.ndarray:
        """The frame's counts (int32, the image's shape) for its ``-seed`` value."""
        from .counter_rng import counter_key, stream_key
        if self.kind == "counting":
            from .effects.counting import photon_counting
            return photon_counting(image32, self.params, counter_key(seed),
                                   stream_key(seed, "counting"), roi=roi, kernel=self.kernel)
        from .effects.jungfrau import jungfrau
        return jungfrau(image32, self.params, counter_key(seed), stream_key(seed, "jungfrau"),
                        stream_key(self.calib_seed, "jungfrau_calibration"), roi=roi)

    @property
    def saturation(self) -> Optional[int]:
        """NXdetector saturation_value: the counter's maximum (counting), the 16-bit
        word (JUNGFRAU ADU), else None (int32's)."""
        if self.kind == "counting":
            return int(self.params.counter_max)
        return 65535 if self.params.output == "adu" else None

    def nexus_fields(self) -> dict:
        """NXdetector fields of the model: count_time, frame_time (s),
        threshold_energy (eV)."""
        if self.kind == "counting":
            p = self.params
            return {"count_time": p.count_time, "frame_time": p.count_time,
                    "threshold_energy": p.threshold_kev * 1e3}
        return {}


def _get(s, key, conv, default):
    if key not in s:
        return default
    flag, v = s[key]
    try:
        x = conv(v)
    except (TypeError, ValueError):
        raise SuiteError(f"{flag}: not a valid value: {v!r}") from None
    if isinstance(x, float) and not math.isfinite(x):
        raise SuiteError(f"{flag}: must be finite, got {v!r}")
    return x


def preset_name(cfg) -> Optional[str]:
    p = cfg.detector.panels
    if isinstance(p, str):
        return p
    return getattr(p, "name", None) if p is not None and hasattr(p, "modules_f") else None


def _pixel_size(cfg) -> float:
    p = cfg.detector.panels
    if p is not None and getattr(p, "pixel_size", None):
        return float(p.pixel_size)
    panels = getattr(p, "panels", None)
    if panels:
        return float(panels[0].pixel_size)
    return float(cfg.detector.pixel_size)


def model_kind(parsed) -> str:
    """The model the flags and the preset choose (before c-parity / -nonoise)."""
    s = parsed.outputs.suite
    if "detector_model" in s:
        flag, v = s["detector_model"]
        kind = str(v).lower()
        if kind not in ("integrating", "counting", "jungfrau"):
            raise SuiteError(f"{flag}: must be integrating, counting or jungfrau, got {v!r}")
    elif any(k in s for k in COUNTING_KEYS):
        kind = "counting"
    elif any(k in s for k in JUNGFRAU_KEYS):
        kind = "jungfrau"
    elif any(k in s for k in _NOISIFY_KEYS):
        kind = "integrating"
    else:
        kind = PRESET_MODELS.get(preset_name(parsed.config) or "", "integrating")
    # flags of another model than the chosen one are a mistake
    own = {"counting": COUNTING_KEYS, "jungfrau": JUNGFRAU_KEYS + ("calib_seed",),
           "integrating": _NOISIFY_KEYS}[kind]
    for k in COUNTING_KEYS + JUNGFRAU_KEYS + _NOISIFY_KEYS:
        if k in s and k not in own:
            raise SuiteError(f"{s[k][0]}: not a flag of the {kind} detector model "
                             f"(-detector_model {kind})")
    return kind


def resolve_detector_model(parsed) -> Optional[DetectorModel]:
    """The run's counting / JUNGFRAU model, or None (integrating, -nonoise, c-parity)."""
    kind = model_kind(parsed)
    cfg = parsed.config
    if kind == "integrating" or not parsed.outputs.calculate_noise or cfg.mode != "spec":
        return None
    s = parsed.outputs.suite
    photon_kev = 12.398419843320026 / (float(cfg.beam.wavelength) * 1e10)
    if kind == "jungfrau":
        from .effects.jungfrau import JungfrauParams
        out = str(_get(s, "jungfrau_output", str, "photons")).lower()
        if out not in ("photons", "adu"):
            raise SuiteError(f"{s['jungfrau_output'][0]}: must be photons or adu, got {out!r}")
        calib = _get(s, "calib_seed", int, 123456789)
        p = JungfrauParams(photon_kev=photon_kev, output=out)
        return DetectorModel("jungfrau", p, calib_seed=int(calib), lines=[
            "JUNGFRAU detector: gain switching at %g / %g keV, %s out (%.4g keV photons)"
            % (p.switch[0], p.switch[1], "converted photons" if out == "photons"
               else "raw ADU words with gain bits", photon_kev)])
    from .effects.counting import CountingParams, charge_sharing_kernel
    dead_ns = _get(s, "deadtime", float, EIGER2_DEFAULTS["deadtime_ns"])
    if dead_ns < 0 or dead_ns > 1e9:
        raise SuiteError(f"{s['deadtime'][0]}: must be 0 .. 1e9 ns, got {dead_ns:g}")
    model = str(_get(s, "deadtime_model", str, "nonparalyzable")).lower()
    if model not in ("nonparalyzable", "paralyzable"):
        raise SuiteError(f"{s['deadtime_model'][0]}: must be nonparalyzable or paralyzable, "
                         f"got {model!r}")
    frame_time = _get(s, "frame_time", float, float(cfg.beam.exposure))
    if not frame_time > 0 or frame_time > 1e6:
        raise SuiteError(f"{s['frame_time'][0] if 'frame_time' in s else '-exposure'}: "
                         f"the frame time must be > 0 and <= 1e6 s, got {frame_time:g}")
    bits = _get(s, "counter_bits", int, EIGER2_DEFAULTS["counter_bits"])
    if not 1 <= bits <= 31:
        raise SuiteError(f"{s['counter_bits'][0]}: must be 1 .. 31 bits, got {bits}")
    overflow = str(_get(s, "counter_overflow", str, "saturate")).lower()
    if overflow not in ("saturate", "rollover"):
        raise SuiteError(f"{s['counter_overflow'][0]}: must be saturate or rollover, "
                         f"got {overflow!r}")
    pixel = _pixel_size(cfg)
    cloud = _get(s, "charge_cloud", float, EIGER2_DEFAULTS["charge_cloud_um"]) * 1e-6
    if cloud < 0 or cloud > 2.0 * pixel:
        raise SuiteError(f"{s['charge_cloud'][0]}: must be 0 .. {2e6 * pixel:g} um "
                         f"(two pixels), got {cloud * 1e6:g}")
    thr = _get(s, "threshold", float, 0.5 * photon_kev)
    if not thr > 0 or thr > photon_kev:
        raise SuiteError(f"{s['threshold'][0]}: must be > 0 and at most the photon energy "
                         f"{photon_kev:.4g} keV (no photon would count), got {thr:g}")
    p = CountingParams(count_time=float(frame_time), deadtime=dead_ns * 1e-9,
                       paralyzable=model == "paralyzable", counter_bits=int(bits),
                       overflow=overflow, charge_cloud=cloud, pixel_size=pixel,
                       threshold_fraction=thr / photon_kev, threshold_kev=thr,
                       photon_kev=photon_kev)
    kernel = charge_sharing_kernel(cloud / pixel, p.threshold_fraction)
    return DetectorModel("counting", p, kernel=kernel, lines=[
        "photon-counting detector: dead time %g ns (%s), frame time %g s, %d-bit counter "
        "(%s), charge cloud %g um, threshold %.4g keV (%.4g keV photons): %.4f counts "
        "per photon" % (dead_ns, model, frame_time, bits, overflow, cloud * 1e6, thr,
                        photon_kev, float(kernel.sum()))])


def model_notes(parsed) -> List[str]:
    """Notes for detector-model flags that change nothing in this run."""
    s = parsed.outputs.suite
    given = [s[k][0] for k in MODEL_KEYS if k in s]
    if not given:
        return []
    if parsed.config.mode != "spec":
        return [f"{f} changes nothing: the counting / JUNGFRAU detector models are nbsim "
                f"extensions, off under -c_parity (nanoBragg.c's noise)" for f in given]
    if not parsed.outputs.calculate_noise:
        return [f"{f} changes nothing without a noise image (-nonoise)" for f in given]
    return []

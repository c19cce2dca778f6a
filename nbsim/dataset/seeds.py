"""The per-frame seed rule: every random number of frame ``i`` comes from (run seed, i).

A frame's seeds depend only on the run's seeds and the frame index, never on which
worker renders it or in what order, so any frame can be re-rendered alone and a dataset
is the same on one core or on many machines.

Rule (documented in docs/datasets.md)::

    frame_seed(S, i, stream) = 1 + mix64(mix64(S + K_stream) + i * G) mod (2**31 - 2)

with ``G = 0x9E3779B97F4A7C15`` (the golden-ratio increment of SplitMix64), ``mix64``
SplitMix64's output function (Steele, Lea & Flood 2014), arithmetic modulo 2**64,
``K_noise = 1 * G``, ``K_misset = 2 * G``, ``K_spectrum = 3 * G`` (the seed of a frame's
SASE spectrum, :mod:`nbsim.geometry.spectrum`, drawn from the run's noise seed),
``K_vary = 4 * G`` (the -vary draws of frame ``i``: :mod:`nbsim.dataset.vary`) and
``K_lattice = 5 * G`` (the orientation of lattice ``k >= 1`` of still ``i`` under
-lattices: ``-misset_seed frame_seed(m_i, k, "lattice")`` with ``m_i = frame_seed(M, i,
"misset")``, lattice 0 being the still's own).  The result is a positive 31-bit integer,
a value nanoBragg.c accepts as ``-seed`` / ``-misset_seed``: frame ``i`` of a c-parity
dataset is what ``nanoBragg -seed frame_seed(S, i, "noise")`` draws, and a random still's
orientation is ``nanoBragg -misset_seed frame_seed(M, i, "misset") -misset random``
(in that order: nanoBragg.c's substring match also reads ``-misset_seed`` as ``-misset``).
A hash (rather than ``S + i``) keeps neighbouring frames' ran1 streams unrelated.

The detector models' own randomness (docs/effects.md, "Photon-counting and JUNGFRAU
detectors") comes from named counter streams of the frame's noise seed, so that frame
``i`` stays the single run with ``-seed frame_seed(S, i, "noise")``:
``stream_key(frame_seed(S, i, "noise"), name)`` (:func:`nbsim.counter_rng.stream_key`)
for ``name`` in ``"counting"`` (dead-time renewal process), ``"jungfrau"`` (electronic
noise); ``"jungfrau_calibration"`` (per-pixel gains and pedestals) is keyed by
``-calib_seed`` and is the same for every frame.
"""
from __future__ import annotations

__all__ = ["frame_seed", "mix64", "STREAMS"]

from ..counter_rng import STREAMS as DETECTOR_STREAMS
from ..counter_rng import mix64

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
STREAMS = {"noise": 1, "misset": 2, "spectrum": 3, "vary": 4, "lattice": 5,
           **DETECTOR_STREAMS}
_SEED_RANGE = (1 << 31) - 2          # seeds 1 .. 2**31 - 2


def frame_seed(run_seed: int, index: int, stream: str = "noise") -> int:
    """The seed (a positive C ``-seed`` value, 1 .. 2**31-2) of frame ``index`` (0-based)
    for ``stream`` ("noise", "misset", "spectrum", "vary" or "lattice") of a run seeded
    with ``run_seed``."""
    k = STREAMS[stream]
    base = mix64((int(run_seed) + k * _GOLDEN) & _M64)
    return 1 + mix64((base + int(index) * _GOLDEN) & _M64) % _SEED_RANGE

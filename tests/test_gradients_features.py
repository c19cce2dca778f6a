"""Every feature, both modes: vjp against finite differences for every scalar parameter
that applies (float64, agreement 1e-6 relative; see test_gradients_helpers.compare).

Marked slow: each case compiles its own forward-kernel variant the first time.
"""
import pytest

from nbsim import gradients as gr
from test_gradients_helpers import CPAR_CASES, SPEC_CASES, compare, cotangent, scalar_params

pytestmark = pytest.mark.slow


def _run(flags, mode, seed=0):
    sim = gr.as_simulator(flags.split(), mode=mode)
    G = cotangent(sim.plan.shape, seed)
    params = scalar_params(sim)
    bad = compare(sim, G, [p for p in params if p != "mosaic_spread"])
    if "mosaic_spread" in params:
        bad += compare(sim, G, ["mosaic_spread"], tol=1e-5)
    return bad


@pytest.mark.parametrize("name", sorted(SPEC_CASES))
@pytest.mark.parametrize("mode", ["spec", "c-parity"])
def test_feature(name, mode):
    assert _run(SPEC_CASES[name], mode) == []


@pytest.mark.parametrize("name", sorted(CPAR_CASES))
def test_c_parity_feature(name):
    assert _run(CPAR_CASES[name], "c-parity", seed=1) == []

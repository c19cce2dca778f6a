"""nbsim: a fast, exact, differentiable re-implementation of nanoBragg.

>>> import nbsim
>>> sim = nbsim.Simulator.from_args(["-cell", "100", "100", "100", "90", "90", "90",
...                                  "-default_F", "100", "-N", "5", "-detpixels", "64"])
>>> img = sim.run()

The public names are imported on first use (PEP 562), so that ``nbsim.cli`` can start
the GPU's driver initialisation (:mod:`nbsim.kernels.cuda_warmup`) before Numba is
imported.
"""
from importlib import import_module

from . import _numba_setup

__version__ = "0.1.0"

# before any cache=True kernel is defined: a writable Numba cache directory (or a note)
_numba_setup.ensure_cache_dir()

_PUBLIC = {
    "Config": ".config", "DetectorConfig": ".config", "BeamConfig": ".config",
    "CrystalConfig": ".config", "StructureConfig": ".config", "SamplingConfig": ".config",
    "ConfigError": ".errors",
    "Simulator": ".simulator", "PixelTrace": ".simulator", "simulate": ".simulator",
}

__all__ = list(_PUBLIC)


def __getattr__(name):
    mod = _PUBLIC.get(name)
    if mod is None:
        raise AttributeError(f"module 'nbsim' has no attribute {name!r}")
    value = getattr(import_module(mod, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))

"""nbsim: a fast, exact, differentiable re-implementation of nanoBragg.

>>> import nbsim
>>> sim = nbsim.Simulator.from_args(["-cell", "100", "100", "100", "90", "90", "90",
...                                  "-default_F", "100", "-N", "5", "-detpixels", "64"])
>>> img = sim.run()
"""
from .config import (BeamConfig, Config, CrystalConfig, DetectorConfig, SamplingConfig,
                     StructureConfig)
from .errors import ConfigError
from .simulator import PixelTrace, Simulator, simulate

__version__ = "0.1.0"

__all__ = ["Config", "DetectorConfig", "BeamConfig", "CrystalConfig", "StructureConfig",
           "SamplingConfig", "ConfigError", "Simulator", "PixelTrace", "simulate"]

"""Geometry: detector conventions and pivots, crystal cell and orientation, sources."""
from .detector import DetectorGeometry, resolve_detector
from .crystal import CrystalGeometry, resolve_crystal
from .sources import SourceSet, resolve_sources

__all__ = ["DetectorGeometry", "resolve_detector", "CrystalGeometry", "resolve_crystal",
           "SourceSet", "resolve_sources"]

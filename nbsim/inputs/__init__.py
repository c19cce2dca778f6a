"""Inputs from the files crystallographers have (through gemmi) and from DIALS.

Each reader returns nbsim's own data, never gemmi objects:

* structure factors as :class:`~nbsim.inputs.reflections.Reflections` (the file's
  asymmetric unit, its cell and space group), expanded to the P1 grid the engine looks up
  (:class:`nbsim.io.hkl.HKLData`) by :func:`~nbsim.inputs.symmetry.p1_hkl_data`;
* geometry as values of :class:`nbsim.config.Config` (:mod:`nbsim.inputs.expt`).

| module | reads |
| --- | --- |
| :mod:`.mtz` | MTZ (``-mtz``, ``-mtz_label``) |
| :mod:`.sfcif` | SF-mmCIF (``-sfcif``), through gemmi's mmCIF -> MTZ column mapping |
| :mod:`.model` | PDB / mmCIF atomic models -> Fcalc (``-model``, ``-model_dmin``, ``-solvent``) |
| :mod:`.symmetry` | P1 expansion with the space group's operators and Friedel mates |
| :mod:`.resolution` | the resolution a detector reaches (its corners) |
| :mod:`.expt` | DIALS experiment lists (``-expt``, ``-expt_index``) |
| :mod:`.api` | one call per source -> :class:`~nbsim.inputs.api.StructureFactors` (grid + cell) |
| :mod:`.export` | ``-write_hkl``: the P1 list as HKL text or Fdump |
| :mod:`.flags` | the command-line glue called by :mod:`nbsim.args` |

gemmi is an optional dependency (extra ``formats``); it is imported only inside the
functions that need it (:func:`nbsim.inputs._gemmi.import_gemmi`).  The DIALS reader
needs only the standard library.
"""
from importlib import import_module

_PUBLIC = {
    "Reflections": ".reflections",
    "read_mtz": ".mtz", "reflections_from_mtz": ".mtz",
    "read_sfcif": ".sfcif",
    "read_model": ".model", "fcalc": ".model", "fcalc_from_file": ".model",
    "expand_to_p1": ".symmetry", "p1_hkl_data": ".symmetry",
    "detector_dmin": ".resolution",
    "ExperimentGeometry": ".expt", "read_expt": ".expt",
    "MissingDependency": "._gemmi",
    "StructureFactors": ".api", "mtz_structure_factors": ".api",
    "sfcif_structure_factors": ".api", "model_structure_factors": ".api",
    "structure_factors_from_reflections": ".api",
}

__all__ = list(_PUBLIC)


def __getattr__(name):
    mod = _PUBLIC.get(name)
    if mod is None:
        raise AttributeError(f"module 'nbsim.inputs' has no attribute {name!r}")
    value = getattr(import_module(mod, __name__), name)
    globals()[name] = value
    return value

"""DIALS reflection files (``.refl``, msgpack) written from NumPy columns.

The layout is DIALS' own (``dials/array_family/reflection_table_msgpack_adapter.h``)::

    ["dials::af::reflection_table", 1,
     {"identifiers": {experiment id (uint): identifier (str)},
      "nrows": N,
      "data": {column name: [type name, [N, raw little-endian bytes]]}}]

Column types: ``int`` (int32), ``std::size_t`` (uint64), ``double`` (float64),
``vec3<double>`` (3 float64 a row), ``cctbx::miller::index<>`` (3 int32 a row),
``bool`` (1 byte).  Written atomically (a temporary file renamed).
"""
from __future__ import annotations

from typing import Dict, Mapping

import numpy as np

__all__ = ["write_refl", "read_refl", "column_type"]

#: DIALS type name -> (NumPy dtype, values per row)
_TYPES = {
    "int": (np.dtype("<i4"), 1),
    "std::size_t": (np.dtype("<u8"), 1),
    "double": (np.dtype("<f8"), 1),
    "bool": (np.dtype("u1"), 1),
    "vec3<double>": (np.dtype("<f8"), 3),
    "cctbx::miller::index<>": (np.dtype("<i4"), 3),
}

#: the type of each column nbsim writes (by name, as DIALS uses it)
_COLUMN_TYPES = {"miller_index": "cctbx::miller::index<>", "id": "int",
                 "panel": "std::size_t", "flags": "std::size_t",
                 "xyzcal.px": "vec3<double>", "xyzcal.mm": "vec3<double>",
                 "num_pixels.true": "int"}


def column_type(name: str, values: np.ndarray) -> str:
    """The DIALS type name nbsim stores column ``name`` as."""
    t = _COLUMN_TYPES.get(name)
    if t is not None:
        return t
    v = np.asarray(values)
    if v.ndim == 2 and v.shape[1] == 3:
        return "vec3<double>"
    if v.dtype == np.bool_:
        return "bool"
    if np.issubdtype(v.dtype, np.integer):
        return "int"
    return "double"


def write_refl(path: str, columns: Mapping[str, np.ndarray],
               identifiers: Mapping[int, str]) -> None:
    """Write ``columns`` (name -> array, all of one length) as a DIALS reflection file
    with the experiment ``identifiers`` (id -> string)."""
    import msgpack
    n = None
    data = {}
    for name, values in columns.items():
        tname = column_type(name, values)
        dtype, width = _TYPES[tname]
        v = np.ascontiguousarray(values, dtype=dtype)
        rows = v.shape[0] if v.ndim else 0
        if width == 3 and (v.ndim != 2 or v.shape[1] != 3):
            raise ValueError(f"column {name}: expected (n, 3), got {v.shape}")
        if n is None:
            n = rows
        elif rows != n:
            raise ValueError(f"column {name}: {rows} rows, expected {n}")
        data[name] = [tname, [int(rows), v.tobytes()]]
    payload = ["dials::af::reflection_table", 1,
               {"identifiers": {int(k): str(s) for k, s in identifiers.items()},
                "nrows": int(n or 0), "data": data}]
    blob = msgpack.packb(payload, use_bin_type=True)
    from ._atomic import atomic_open
    with atomic_open(path) as f:
        f.write(blob)


def read_refl(path: str):
    """``(columns, identifiers)`` of a reflection file nbsim wrote (its column types)."""
    import msgpack
    with open(path, "rb") as f:
        kind, version, head = msgpack.unpackb(f.read(), raw=False, strict_map_key=False)
    if kind != "dials::af::reflection_table" or version != 1:
        raise ValueError(f"{path}: not a DIALS reflection table")
    cols: Dict[str, np.ndarray] = {}
    for name, (tname, (rows, raw)) in head["data"].items():
        dtype, width = _TYPES[tname]
        v = np.frombuffer(raw, dtype=dtype)
        cols[name] = v.reshape(rows, 3) if width == 3 else v.copy()
    return cols, dict(head["identifiers"])

"""TIFF output of the float image (not a nanoBragg format; for viewers and pipelines that
read TIFF).  Written with tifffile, to a temporary name then renamed."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["write_tiff", "read_tiff"]


def write_tiff(path, image, dtype=np.float32) -> None:
    """Write a (spixels, fpixels) image as a single-page TIFF (float32 by default)."""
    import tifffile
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tifffile.imwrite(tmp, np.ascontiguousarray(image, dtype=dtype))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_tiff(path) -> np.ndarray:
    import tifffile
    return tifffile.imread(path)

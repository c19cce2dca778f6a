"""nbsim.io: nanoBragg's file formats (readers and writers), byte-compatible with nanoBragg.c.

Writers go through a temporary file in the target directory and ``os.replace``.
"""
from .errors import FormatError
from .smv import (SMVHeader, read_smv, read_smv_header_text, smv_value_of, smv_c_values,
                  c_overrides_from_smv, read_smv_mask, read_smv_float, mask_from_image,
                  write_smv, format_smv_header)
from .float_image import write_float_image, read_float_image
from .int_image import int_image
from .pgm import pgm_image, write_pgm, pgm_header, read_pgm
from .hkl import HKLData, read_hkl, hkl_from_entries
from .fdump import write_fdump, read_fdump, fdump_bytes
from .matrix import read_mosflm_matrix
from .sources import SourceTable, read_sources
from .cformat import c_g, c_atof
from .tiff import write_tiff, read_tiff

__all__ = [
    "write_tiff", "read_tiff",
    "FormatError",
    "SMVHeader", "read_smv", "read_smv_header_text", "smv_value_of", "smv_c_values",
    "c_overrides_from_smv", "read_smv_mask", "read_smv_float", "mask_from_image",
    "write_smv", "format_smv_header",
    "write_float_image", "read_float_image",
    "int_image",
    "pgm_image", "write_pgm", "pgm_header", "read_pgm",
    "HKLData", "read_hkl", "hkl_from_entries",
    "write_fdump", "read_fdump", "fdump_bytes",
    "read_mosflm_matrix",
    "SourceTable", "read_sources",
    "c_g", "c_atof",
]

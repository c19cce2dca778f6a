"""Exception raised by the nbsim.io readers for malformed input files (defined in
:mod:`nbsim.errors` so that the validation layer can raise it without importing nbsim.io)."""
from ..errors import FormatError

__all__ = ["FormatError"]

"""Exception raised by the nbsim.io readers for malformed input files."""


class FormatError(ValueError):
    """A file could not be parsed; the message names the file (and line where known)."""

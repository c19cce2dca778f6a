"""Exceptions raised for bad user input (never Numba typing errors or NaN images).

They live here, at the bottom of the import graph, so that any layer can raise them
(:mod:`nbsim.io.errors` and :mod:`nbsim.args` re-export theirs)."""


class ConfigError(ValueError):
    """A configuration value is invalid. ``param`` names the parameter (or flag)."""

    def __init__(self, param: str, value, why: str):
        self.param = param
        self.value = value
        self.why = why
        super().__init__(f"{param}={value!r}: {why}")


class FormatError(ValueError):
    """A file could not be parsed; the message names the file (and line where known)."""


class ArgError(ValueError):
    """A command-line problem; the message names the flag (or file) and what is wrong."""

"""Exceptions raised for bad user input (never Numba typing errors or NaN images)."""


class ConfigError(ValueError):
    """A configuration value is invalid. ``param`` names the parameter (or flag)."""

    def __init__(self, param: str, value, why: str):
        self.param = param
        self.value = value
        self.why = why
        super().__init__(f"{param}={value!r}: {why}")

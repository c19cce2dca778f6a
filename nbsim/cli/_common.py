"""What ``nbsim``'s single-image and dataset front ends (and ``nbsim-compare``) share: the
user-facing error and the one-line messages.  Imported by :mod:`nbsim.cli.main` and
:mod:`nbsim.cli.dataset`, never the other way round."""
from __future__ import annotations

import math

__all__ = ["NbsimError", "config_message", "fmt_time"]


class NbsimError(Exception):
    """A user-facing error (exit status 2); the message is the one line printed."""


def config_message(e, parsed) -> str:
    """One line for a ConfigError, naming the flag (and the values) that set the parameter."""
    from ..args import flag_for_param
    param = getattr(e, "param", "")
    why = getattr(e, "why", str(e))
    given = parsed.given.get(param)
    if given is not None:
        flag, raw = given
        return f"{flag} {' '.join(raw)}: {why}".replace("  ", " ")
    headers = [f"-mask {parsed.mask_file}" if parsed.mask_file else None,
               f"-img {parsed.img_file}" if parsed.img_file else None]
    headers = [h for h in headers if h]
    if headers and param.startswith(("detector.", "beam.wavelength", "crystal.phi0",
                                     "crystal.osc")):
        return f"{headers[-1]}: the header gives {param}={e.value!r}: {why}"
    flag = flag_for_param(param)
    if flag:
        return f"{flag}: {why} ({param}={e.value!r})"
    return str(e)


def fmt_time(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"

"""The one place gemmi is imported (lazily): a missing extra is one clear message."""
from __future__ import annotations

INSTALL_HINT = 'pip install -e ".[formats]"'


class MissingDependency(ImportError):
    """An optional dependency is not installed; the message says how to install it."""


def import_gemmi(what: str):
    """``gemmi`` or :class:`MissingDependency` naming ``what`` needs it."""
    try:
        import gemmi
    except ImportError:
        raise MissingDependency(f"{what} needs gemmi, which is not installed: "
                                f"{INSTALL_HINT}") from None
    return gemmi

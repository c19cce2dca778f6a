"""What the suite's small programs (nbsim-noisify, nbsim-nonbragg) share: the usage error,
the output set and the ``main`` wrapper (one error line, exit 2, no traceback)."""
from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad command line or input file: one line, exit 2."""


NUMBER_RE = re.compile(r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")


def number(flag: str, text: str) -> float:
    """A flag's finite decimal value (C's atof would read garbage as 0: refused here)."""
    if not NUMBER_RE.match(text):
        raise UsageError(f"{flag}: expected a number, got {text!r}")
    v = float(text)
    if not math.isfinite(v):
        raise UsageError(f"{flag}: value {text!r} is out of range")
    return v


def integer(flag: str, text: str) -> int:
    """A flag's value as a 32-bit integer (C's atoi range)."""
    v = number(flag, text)
    if v != int(v) or not -2 ** 31 < v < 2 ** 31:
        raise UsageError(f"{flag}: expected a 32-bit integer, got {text!r}")
    return int(v)


def check_writable(path: str, flag: str) -> None:
    """``flag``'s output ``path`` can be created: its directory exists and is writable."""
    d = Path(path).parent if str(Path(path).parent) else Path(".")
    if not d.is_dir():
        raise UsageError(f"{flag} {path}: directory {d} does not exist")
    if not os.access(d, os.W_OK):
        raise UsageError(f"{flag} {path}: directory {d} is not writable")


def write_all(files) -> None:
    """Every ``(path, bytes)`` file to a temporary name beside it, then all renamed
    (nbsim's output set): an output appears complete or not at all, and a failure leaves
    none of them."""
    from ..outputs import OutputError, write_file_set
    try:
        write_file_set(files)
    except OutputError as e:
        raise UsageError(str(e)) from None


def tool_main(prog: str, help_text: str, run: Callable[[list], int],
              argv: Optional[Sequence[str]] = None) -> int:
    """``prog``'s exit status: the help text without flags (exit 2) or with -h (exit 0);
    a :class:`UsageError` or ``ValueError`` as one ``prog: error:`` line, exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "-help", "--help"):
        print(help_text, end="")
        return 0 if argv else EXIT_USAGE
    try:
        return run(argv)
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as e:
        print(f"{prog}: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED

"""What the suite's small programs (nbsim-noisify, nbsim-nonbragg) share: the usage error,
the output set and the ``main`` wrapper (one error line, exit 2, no traceback)."""
from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad command line or input file: one line, exit 2."""


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

"""``python -m nbsim``: the ``nbsim`` command."""
from .cli._exit import exit_now
from .cli.main import main

if __name__ == "__main__":
    exit_now(main())

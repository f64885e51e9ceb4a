"""The ``smtpscript`` command and ``python -m smtpscript``.

``smtpscript --version`` alone is answered here, before typer is imported: importing
typer and building the commands' options costs ~110 ms of cold start, the version
nothing. Every other command line goes to smtpscript.cli.
"""

import os
import sys


def main() -> None:
    if sys.argv[1:] == ["--version"] and "_SMTPSCRIPT_COMPLETE" not in os.environ:
        _version()
    from smtpscript.cli import main as cli_main

    cli_main()


def _version() -> None:
    """What cli's --version prints, and how it exits; a reader gone (| true) is no error."""
    from smtpscript import __version__

    try:
        sys.stdout.write(f"smtpscript {__version__}\n")
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


if __name__ == "__main__":
    main()

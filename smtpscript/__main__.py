"""The ``smtpscript`` command and ``python -m smtpscript``.

Two command lines are answered here, before typer is imported: importing typer and
building the commands' options costs ~50-110 ms of every start.

- ``smtpscript --version`` alone;
- ``smtpscript validate [PATH...]`` with no option (nothing starting with ``-``): the
  same body and the same error boundary as through smtpscript.cli, without its parser.

Every other command line, shell completion included, goes to smtpscript.cli.
"""

import os
import sys


def main() -> None:
    args = sys.argv[1:]
    if "_SMTPSCRIPT_COMPLETE" not in os.environ:
        if args == ["--version"]:
            _version()
        if args[:1] == ["validate"] and not any(arg.startswith("-") for arg in args[1:]):
            _validate(args[1:])
    from smtpscript.cli import main as cli_main

    cli_main()


def _version() -> None:
    """What cli's --version prints, and how it exits."""
    from smtpscript import __version__, shell

    shell.out(f"smtpscript {__version__}")
    shell.exit_with(0)


def _validate(paths: list[str]) -> None:
    from pathlib import Path

    from smtpscript import commands, shell

    def command() -> int:
        return commands.validate([Path(path) for path in paths] or None, var=None, config=None)

    shell.exit_with(shell.run_guarded(command, show_traceback=False))


if __name__ == "__main__":
    main()

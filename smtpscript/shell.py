"""The command line's error boundary and output, without typer.

Every user error becomes one line on stderr and an exit code from ExitStatus; any other
exception is a bug in smtpscript and says so (exit 3); ``--traceback`` re-raises for
debugging. Text from files and servers is escaped before it reaches the terminal. SIGTERM
unwinds like Ctrl-C (sandbox and temporary files cleaned up); a reader that closes stdout
early (``| head``) changes nothing but what it sees.

smtpscript.cli puts typer's own exceptions in front of this boundary; the commands that
can be answered without typer (``validate`` of plain paths, see __main__) use it alone,
so that they start without importing typer (~50 ms).
"""

import contextlib
import enum
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import TextIO


class ExitStatus(enum.IntEnum):
    OK = 0
    FAILED = 1  # a scenario failed or could not be judged
    USAGE = 2  # usage, validation or configuration error; a report that could not be written
    INTERNAL = 3  # a bug in smtpscript
    INTERRUPTED = 130  # SIGINT (Ctrl-C): 128 + 2
    TERMINATED = 143  # SIGTERM: 128 + 15


REPORT_BUG = (
    "smtpscript: this is a bug in smtpscript, not in your scenarios or servers: please "
    "re-run as 'smtpscript --traceback ...' and file an issue with the output"
)


class Terminated(BaseException):
    """SIGTERM outside a run: unwinds like Ctrl-C, so every ``finally`` (sandbox) runs.

    A BaseException, not a KeyboardInterrupt: typer would turn that into exit 130.
    """


def err(message: str) -> None:
    """Lines on stderr, each escaped: messages quote file names, values and server text."""
    from smtpscript.protocol import escape_controls

    text = "\n".join(escape_controls(line) for line in message.split("\n"))
    with contextlib.suppress(OSError):  # stderr gone too: nothing left to tell
        _write(sys.stderr, text + "\n")


def out(line: str = "", nl: bool = True) -> None:
    """A line on stdout. A reader that went away (| head) is no error: the exit status stands."""
    with contextlib.suppress(BrokenPipeError):
        _write(sys.stdout, line + "\n" if nl else line)


def _write(stream: TextIO | None, text: str) -> None:
    if stream is None:  # no console at all (pythonw): nowhere to write
        return
    stream.write(text)
    stream.flush()


def warn(warnings: list[str]) -> None:
    for warning in warnings:
        err(f"smtpscript: warning: {warning}")


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def run_guarded(command: Callable[[], int], show_traceback: bool) -> int:
    """``command``'s exit status, with SIGTERM unwinding it and every exception one line."""
    try:
        with _sigterm_unwinds():
            status = guarded(command, show_traceback)
    except Terminated:  # arrived between guarded's handlers and its return
        status = ExitStatus.TERMINATED
    if status in (ExitStatus.INTERRUPTED, ExitStatus.TERMINATED):
        err("smtpscript: interrupted")
    return status


def guarded(command: Callable[[], int], show_traceback: bool) -> int:
    """The command's exit status; every exception becomes one line and a status."""
    from smtpscript.errors import ScenarioError, SmtpscriptError

    try:
        return command()
    except KeyboardInterrupt:
        return ExitStatus.INTERRUPTED
    except Terminated:
        return ExitStatus.TERMINATED
    except ScenarioError as exc:  # the library config or a vars file: every problem
        if show_traceback:
            raise
        for problem in exc.problems:
            err(str(problem))
        return ExitStatus.USAGE
    except SmtpscriptError as exc:
        if show_traceback:
            raise
        err(f"smtpscript: error: {exc}")
        return ExitStatus.USAGE
    except OSError as exc:  # a file we were told to read or write
        if show_traceback:
            raise
        err(f"smtpscript: error: {exc.filename or ''}: {exc.strerror or exc}")
        return ExitStatus.USAGE
    except Exception as exc:  # anything else is a bug in smtpscript
        if show_traceback:
            raise
        err(f"smtpscript: internal error: {type(exc).__name__}: {exc}")
        err(REPORT_BUG)
        return ExitStatus.INTERNAL


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def exit_with(status: int) -> None:
    """Leave with ``status``; if stdout's reader went away (| head), point stdout at
    /dev/null first, so that the interpreter's last flush prints no error ("Note on
    SIGPIPE", Python docs)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(status)

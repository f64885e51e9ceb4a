"""One error hierarchy; the CLI turns each into one readable line.

- ScenarioError: the user's file is wrong (carries file, line, column, JSON path).
- LocalProtocolError: we were asked to send something SMTP does not allow.
- RemoteProtocolError: the server broke the protocol (or a limit).
- ConfigError: command line, library config or target is wrong.
Any other exception escaping to the CLI is a bug in smtpscript.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


class SmtpscriptError(Exception):
    """Base of every error the user is meant to see as one line."""


@dataclass(frozen=True, order=True)
class Problem:
    """One validation finding, sortable by position."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ScenarioError(SmtpscriptError):
    """A scenario (or library) file is invalid; holds every problem found, sorted."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ConfigError(SmtpscriptError):
    """Bad command line value, target, library configuration or variable."""


class LocalProtocolError(SmtpscriptError):
    """We were about to send something the protocol forbids (e.g. CR/LF in a command)."""


class RemoteProtocolError(SmtpscriptError):
    """The server's bytes are not valid SMTP, or exceed our limits."""


def did_you_mean(word: str, options: Iterable[object]) -> str:
    """' (did you mean 'expect'?)' for a near miss (or a case slip), else ''."""
    words = [str(o) for o in options]
    same = [w for w in words if w.lower() == word.lower() and w != word]
    close = same or difflib.get_close_matches(word, words, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class LimitExceeded(SmtpscriptError):
    """A scenario run went over one of its resource limits (steps, kept bytes)."""

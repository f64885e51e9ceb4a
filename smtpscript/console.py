"""Console view of results: one line per scenario, the conversation with -v.

Fed plain results; knows nothing of the runner. Every field it prints is escaped
(servers, scenario files and file names may hold terminal control sequences);
colour only on a terminal and never with NO_COLOR. A reader that goes away
(``| head -1``) stops the view, never the run: the reports still get written.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from smtpscript.model import Scenario
from smtpscript.protocol import escape_controls
from smtpscript.results import RunResult, ScenarioResult

_LABELS = {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "skipped": "SKIP"}
_COLOURS = {"passed": "32", "failed": "31", "error": "35", "skipped": "33"}


def wants_colour(out: TextIO) -> bool:
    """Colour only on a terminal, and not when NO_COLOR has any value (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # no isatty, or already closed
        return False


class ConsoleView:
    def __init__(
        self, out: TextIO | None = None, *, verbose: bool = False, colour: bool | None = None
    ):
        self.out = out or sys.stdout
        self.verbose = verbose
        self.colour = wants_colour(self.out) if colour is None else colour
        self.closed = False  # the reader went away: print nothing more

    def _paint(self, text: str, verdict: str) -> str:
        return f"\x1b[{_COLOURS[verdict]}m{text}\x1b[0m" if self.colour else text

    def scenario(self, result: ScenarioResult) -> None:
        label = self._paint(f"{_LABELS[result.verdict]:<5}", result.verdict)
        seconds = result.duration_ms / 1000
        where = f"{result.file}:{result.line}"
        self._line(
            f"{label} {_safe(result.target.name)}  {_safe(result.title)}  "
            f"[{_safe(result.severity)}] {_safe(where)}  {seconds:.2f}s"
        )
        if result.reason and result.verdict != "passed":
            self._line(f"      {_safe(result.reason)}")
        if self.verbose:
            self.conversation(result)

    def conversation(self, result: ScenarioResult) -> None:
        for entry in result.transcript:
            marker = {"C": "C:", "S": "S:", "*": "  *"}.get(entry.direction, "?:")
            self._line(f"      {entry.t * 1000:8.1f}ms {marker} {_safe(entry.text)}")
        for note in result.warnings:
            self._line(f"      ? {escape_controls(note)}")
        for note in result.protocol_violations:
            self._line(f"      ! {_safe(note)}")

    def summary(self, run: RunResult) -> None:
        counts = run.counts()
        parts = [f"{counts['passed']} passed", f"{counts['failed']} failed"]
        parts += [f"{counts[k]} {k}" for k in ("error", "skipped") if counts[k]]
        findings = ", ".join(f"{n} {_safe(s)}" for s, n in run.findings_by_severity() if n)
        tail = f"; findings: {findings}" if findings else ""
        if run.incomplete:
            tail += f"; INCOMPLETE: {_safe(run.incomplete)}"
        self._line(
            f"smtpscript: {len(run.scenarios)} scenario runs: {', '.join(parts)} "
            f"in {run.duration_ms / 1000:.2f}s{tail}"
        )

    def _line(self, text: str) -> None:
        if self.closed:
            return
        try:
            _write(self.out, text + "\n")
            self.out.flush()
        except (OSError, ValueError):  # a closed pipe (| head), a terminal gone, a closed file
            self.closed = True  # the run goes on: the reports are what matters


def _write(out: TextIO, text: str) -> None:
    try:
        out.write(text)
    except UnicodeEncodeError:  # a terminal that cannot show é (PYTHONIOENCODING=ascii)
        encoding = getattr(out, "encoding", None) or "ascii"
        out.write(text.encode(encoding, "backslashreplace").decode(encoding))


def _safe(text: str) -> str:
    """Text from a server, a scenario or a file name, made unable to drive the terminal."""
    return escape_controls(str(text))


_TABLE_HEADERS = ("SEVERITY", "TITLE", "TAGS", "FILE")


def scenario_table(scenarios: list[Scenario]) -> list[str]:
    """`smtpscript list`: aligned columns, a header line when there is anything to list."""
    rows = [
        tuple(_safe(c) for c in (s.severity, s.title, ",".join(s.tags), f"{s.file}:{s.pos.line}"))
        for s in scenarios
    ]
    if not rows:
        return []
    columns = zip(_TABLE_HEADERS, *rows, strict=True)
    widths = [max(len(cell) for cell in column) for column in columns]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (_TABLE_HEADERS, *rows)
    ]

"""Console view of results: one line per scenario, the conversation with -v.

Fed plain results; knows nothing of the runner. Colour only on a terminal.
"""

from __future__ import annotations

import sys
from typing import TextIO

from smtpscript.model import Scenario
from smtpscript.results import RunResult, ScenarioResult

_LABELS = {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "skipped": "SKIP"}
_COLOURS = {"passed": "32", "failed": "31", "error": "35", "skipped": "33"}


class ConsoleView:
    def __init__(
        self, out: TextIO | None = None, *, verbose: bool = False, colour: bool | None = None
    ):
        self.out = out or sys.stdout
        self.verbose = verbose
        self.colour = self.out.isatty() if colour is None else colour

    def _paint(self, text: str, verdict: str) -> str:
        return f"\x1b[{_COLOURS[verdict]}m{text}\x1b[0m" if self.colour else text

    def scenario(self, result: ScenarioResult) -> None:
        label = self._paint(f"{_LABELS[result.verdict]:<5}", result.verdict)
        seconds = result.duration_ms / 1000
        self._line(
            f"{label} {result.target.name}  {result.title}  "
            f"[{result.severity}] {result.file}:{result.line}  {seconds:.2f}s"
        )
        if result.reason and result.verdict != "passed":
            self._line(f"      {result.reason}")
        if self.verbose:
            self.conversation(result)

    def conversation(self, result: ScenarioResult) -> None:
        for entry in result.transcript:
            marker = {"C": "C:", "S": "S:", "*": "  *"}[entry.direction]
            self._line(f"      {entry.t * 1000:8.1f}ms {marker} {entry.text}")
        for note in result.protocol_violations:
            self._line(f"      ! {note}")

    def summary(self, run: RunResult) -> None:
        counts = run.counts()
        parts = [f"{counts['passed']} passed", f"{counts['failed']} failed"]
        parts += [f"{counts[k]} {k}" for k in ("error", "skipped") if counts[k]]
        findings = ", ".join(f"{n} {s}" for s, n in run.findings_by_severity() if n)
        tail = f"; findings: {findings}" if findings else ""
        self._line(
            f"smtpscript: {len(run.scenarios)} scenario runs: {', '.join(parts)} "
            f"in {run.duration_ms / 1000:.2f}s{tail}"
        )

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


_TABLE_HEADERS = ("SEVERITY", "TITLE", "TAGS", "FILE")


def scenario_table(scenarios: list[Scenario]) -> list[str]:
    """`smtpscript list`: aligned columns, a header line when there is anything to list."""
    rows = [(s.severity, s.title, ",".join(s.tags), f"{s.file}:{s.pos.line}") for s in scenarios]
    if not rows:
        return []
    columns = zip(_TABLE_HEADERS, *rows, strict=True)
    widths = [max(len(cell) for cell in column) for column in columns]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (_TABLE_HEADERS, *rows)
    ]

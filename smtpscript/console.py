"""Console view of results: one line per scenario run, a recap of what failed, -v the conversation.

Fed plain results; knows nothing of the runner. Runs finish in any order, but their lines
come out in planned order: a result waits until every run before it has been printed.
On a terminal one progress line at the bottom says how far the run is.

Every field it prints is escaped (servers, scenario files and file names may hold terminal
control sequences). A reader that goes away (``| head -1``) stops the view, never the run:
the reports still get written.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, NamedTuple, TextIO

from smtpscript.model import SEVERITIES
from smtpscript.protocol import escape_controls

if TYPE_CHECKING:
    from smtpscript.model import Scenario
    from smtpscript.results import RunResult, ScenarioResult, StepResult, TranscriptEntry

_LABELS = {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "skipped": "SKIP"}
_COLOURS = {"passed": "32", "failed": "31", "error": "35", "skipped": "33"}
_RED = "31"
_CLEAR = "\r\x1b[K"  # back to the start of the line, and erase it
_INDENT = " " * 6  # under a result line: its reason, the steps
_ENTRY = " " * 8  # a conversation line
_MARK = "     >> "  # a conversation line that failed its step (as wide as _ENTRY)
_NO_TIME = " " * 10  # the width of "{t:8.1f}ms", for lines that have no time


def colour_wanted(mode: str, out: TextIO) -> bool:
    """--colour auto|always|never; auto follows NO_COLOR, FORCE_COLOR, TERM=dumb, then the tty."""
    if mode in ("always", "never"):
        return mode == "always"
    if mode != "auto":
        raise ValueError(f"colour mode {mode!r}: expected auto, always or never")
    if os.environ.get("NO_COLOR"):  # set and not empty (no-color.org)
        return False
    if os.environ.get("FORCE_COLOR", "0") not in ("", "0"):
        return True
    return os.environ.get("TERM") != "dumb" and _isatty(out)


def progress_wanted(out: TextIO) -> bool:
    """A progress line only where a line can be rewritten: a terminal that is not dumb."""
    return os.environ.get("TERM") != "dumb" and _isatty(out)


def _isatty(out: TextIO) -> bool:
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or already closed
        return False


class ConsoleView:
    """Call ``start(total)``, then ``result(index, result)`` as runs end, then ``summary``."""

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        verbose: bool = False,
        quiet: bool = False,
        colour: bool | None = None,
        progress: bool | None = None,
        fail_on: str = "info",
    ):
        self.out = out or sys.stdout
        self.quiet = quiet
        self.verbose = verbose and not quiet
        self.colour = colour_wanted("auto", self.out) if colour is None else colour
        wanted = progress_wanted(self.out) if progress is None else progress
        self.progress = wanted and not quiet
        self.fail_on = fail_on  # summary()'s default: the severity from which failures count
        self.closed = False  # the reader went away: print nothing more
        self.total: int | None = None
        self._waiting: dict[int, ScenarioResult] = {}  # finished, but a run before them has not
        self._next = 0  # the index of the next result line
        self._after_last = 0  # where scenario() appends
        self._finished: dict[str, int] = {"all": 0, "failed": 0, "error": 0}
        self._progress_shown = False

    def start(self, total: int) -> None:
        self.total = total
        self._draw_progress()

    def result(self, index: int, result: ScenarioResult) -> None:
        """Run ``index`` (its place in the planned order) ended; print what can be printed."""
        self._waiting[index] = result
        self._after_last = max(self._after_last, index + 1)
        self._finished["all"] += 1
        if result.verdict in self._finished:
            self._finished[result.verdict] += 1
        while self._next in self._waiting:
            self._show(self._waiting.pop(self._next))
            self._next += 1
        self._draw_progress()

    def scenario(self, result: ScenarioResult) -> None:
        """For callers that deliver in order: the result after the last one given."""
        self.result(self._after_last, result)

    def summary(self, run: RunResult, *, fail_on: str | None = None) -> None:
        """Results still waiting (a run before them never ended), the recap, the totals."""
        for index in sorted(self._waiting):
            self._show(self._waiting.pop(index))
        self._recap(run)
        self._line(summary_line(run))
        note = below_fail_on(run, fail_on or self.fail_on)
        if note:
            self._line(note)
        self.clear()

    def clear(self) -> None:
        """Erase the progress line (summary() does; a caller stopping early should)."""
        if self._progress_shown:
            self._progress_shown = False
            self._emit(_CLEAR)

    # --- one result ----------------------------------------------------------------

    def _show(self, result: ScenarioResult) -> None:
        if self.quiet:
            return
        seconds = result.duration_ms / 1000
        self._headline(result, f"  {seconds:.2f}s")
        if self.verbose:
            self.conversation(result)

    def _headline(self, result: ScenarioResult, tail: str = "") -> None:
        """The verdict line and, unless passed, the one-line reason under it."""
        label = self._paint(f"{_LABELS[result.verdict]:<5}", _COLOURS[result.verdict])
        where = f"{result.file}:{result.line}"
        self._line(
            f"{label} {_safe(result.target.name)}  {_safe(result.title)}  "
            f"[{_safe(result.severity)}] {_safe(where)}{tail}"
        )
        if result.reason and result.verdict != "passed":
            self._line(f"{_INDENT}{_safe(result.reason)}")

    def conversation(self, result: ScenarioResult) -> None:
        """The conversation, each step's lines under a label; the failing reply marked."""
        for kind, text in conversation_lines(result):
            if kind == "label":
                self._line(f"{_INDENT}{text}")
            elif kind == "marked":
                self._line(self._paint(f"{_MARK}{text}", _RED))
            elif kind == "message":
                self._line(self._paint(f"{_ENTRY}{_NO_TIME} {text}", _RED))
            else:
                self._line(f"{_ENTRY}{text}")
        for note in result.warnings:
            self._line(f"{_INDENT}? {_safe(note)}")
        for note in result.protocol_violations:
            self._line(f"{_INDENT}! {_safe(note)}")

    def _recap(self, run: RunResult) -> None:
        bad = [r for r in run.scenarios if r.verdict in ("failed", "error")]
        if not bad:
            return
        self._line(f"failures and errors ({len(bad)}):")
        for result in bad:
            self._headline(result)
            fix = getattr(result, "remediation", None)
            if fix:
                self._line(f"{_INDENT}fix: {_safe(fix)}")

    # --- the terminal --------------------------------------------------------------

    def _paint(self, text: str, colour: str) -> str:
        return f"\x1b[{colour}m{text}\x1b[0m" if self.colour else text

    def _draw_progress(self) -> None:
        if not self.progress or self.total is None:
            return
        counts = [f"{self._finished[k]} {k}" for k in ("failed", "error") if self._finished[k]]
        text = f"[{self._finished['all']}/{self.total}] {', '.join(counts)}".rstrip()
        self._progress_shown = True
        self._emit(_CLEAR + text)

    def _line(self, text: str) -> None:
        """One whole line, the progress line erased first (it is drawn again after)."""
        clear = _CLEAR if self._progress_shown else ""
        self._progress_shown = False
        self._emit(f"{clear}{text}\n")

    def _emit(self, text: str) -> None:
        if self.closed:
            return
        try:
            _write(self.out, text)
            self.out.flush()
        except (OSError, ValueError):  # a closed pipe (| head), a terminal gone, a closed file
            self.closed = True  # the run goes on: the reports are what matters


def summary_line(run: RunResult) -> str:
    counts = run.counts()
    parts = [f"{counts['passed']} passed", f"{counts['failed']} failed"]
    parts += [f"{counts[k]} {k}" for k in ("error", "skipped") if counts[k]]
    findings = ", ".join(f"{n} {_safe(s)}" for s, n in run.findings_by_severity() if n)
    tail = f"; findings: {findings}" if findings else ""
    if run.incomplete:
        tail += f"; INCOMPLETE: {_safe(run.incomplete)}"
    return (
        f"smtpscript: {len(run.scenarios)} scenario runs: {', '.join(parts)} "
        f"in {run.duration_ms / 1000:.2f}s{tail}"
    )


def below_fail_on(run: RunResult, fail_on: str) -> str | None:
    """Failures too mild for --fail-on do not fail the run: say so, or they look ignored."""
    threshold = SEVERITIES.index(fail_on)  # type: ignore[arg-type]
    mild = sum(
        1
        for r in run.scenarios
        if r.verdict == "failed"
        and r.severity in SEVERITIES
        and SEVERITIES.index(r.severity) < threshold  # type: ignore[arg-type]
    )
    if not mild:
        return None
    runs, verb = ("1 failed run is", "does") if mild == 1 else (f"{mild} failed runs are", "do")
    return f"smtpscript: {runs} below --fail-on {fail_on} and {verb} not fail the run"


def _write(out: TextIO, text: str) -> None:
    try:
        out.write(text)
    except UnicodeEncodeError:  # a terminal that cannot show é (PYTHONIOENCODING=ascii)
        encoding = getattr(out, "encoding", None) or "ascii"
        out.write(text.encode(encoding, "backslashreplace").decode(encoding))


def _safe(text: object) -> str:
    """Text from a server, a scenario or a file name, made unable to drive the terminal."""
    return escape_controls(str(text))


# --- the conversation, step by step -------------------------------------------------
#
# Transcript entries do not say which step they belong to, so the steps are found again:
# replies are read in order and every one is recorded in its step, so the n-th received
# line belongs to the step whose replies hold the n-th reply line (checked: it must start
# with that reply's code); a command starts a step when it is that step's first sent line,
# or when the step before has had all its replies. Notes (connected, TLS up) stay with the
# step they follow, except before a step that sends nothing first (a banner): they open it.
# When the received lines do not line up with the replies, each step is shown from its own
# sent and reply records instead (without times or notes).


class _Row(NamedTuple):
    step: int  # position in result.steps; len(result.steps): after the last step
    text: str  # escaped, without the indentation
    marked: bool = False  # a line of the reply that failed its step


def conversation_lines(result: ScenarioResult) -> list[tuple[str, str]]:
    """(kind, text) pairs: kind is "label", "line", "marked" (the failing reply) or "message"."""
    if not result.steps:
        return [("line", _entry_text(e)) for e in result.transcript]
    rows = _Aligner(result.steps).rows(result.transcript) if result.transcript else None
    if rows is None:
        rows = [row for p, step in enumerate(result.steps) for row in _record_rows(p, step)]
    return _labelled(result, rows)


def _labelled(result: ScenarioResult, rows: list[_Row]) -> list[tuple[str, str]]:
    """Rows with a label where the step changes; steps with no rows labelled in their place."""
    steps = result.steps
    message_after = _message_positions(steps, rows)
    out: list[tuple[str, str]] = []
    owned = {row.step for row in rows}
    labelled = 0  # steps before this have been labelled at least once
    current: int | None = None
    for n, row in enumerate(rows):
        if row.step != current:
            for p in range(labelled, row.step):
                if p not in owned:
                    out += _empty_step(result, p)
            labelled = max(labelled, row.step + 1)
            current = row.step
            label = _label(result, steps[current]) if current < len(steps) else "after the steps"
            out.append(("label", label))
        out.append(("marked" if row.marked else "line", row.text))
        if n in message_after:
            out.append(("message", _safe(steps[message_after[n]].message)))
    for p in range(labelled, len(steps)):
        out += _empty_step(result, p)
    return out


def _message_positions(steps: list[StepResult], rows: list[_Row]) -> dict[int, int]:
    """Row number -> step: a failed step's message under its marked reply, else its last row."""
    where: dict[int, int] = {}
    for p, step in enumerate(steps):
        if step.verdict not in ("failed", "error") or not step.message:
            continue
        mine = [n for n, r in enumerate(rows) if r.step == p]
        marked = [n for n in mine if rows[n].marked]
        if marked or mine:
            where[(marked or mine)[-1]] = p
    return where


def _empty_step(result: ScenarioResult, p: int) -> list[tuple[str, str]]:
    step = result.steps[p]
    out = [("label", _label(result, step))]
    if step.verdict in ("failed", "error") and step.message:
        out.append(("message", _safe(step.message)))
    return out


def _label(result: ScenarioResult, step: StepResult) -> str:
    """``step 3 (rcpt outsider) line 14``; the file when it is another one; any verdict but
    passed (why, for a skipped step: a failure's message goes under its reply)."""
    where = f"{step.file}:{step.line}" if step.file and step.file != result.file else step.line
    repeat = f", repeat {step.repeat_index}" if step.repeat_index is not None else ""
    verdict = f": {step.verdict}" if step.verdict != "passed" else ""
    if step.verdict == "skipped" and step.message:
        verdict += f" ({step.message})"  # why: the when: that was false
    return _safe(f"step {step.index} ({step.name}) line {where}{repeat}{verdict}")


def _entry_text(entry: TranscriptEntry) -> str:
    marker = {"C": "C:", "S": "S:", "*": "  *"}.get(entry.direction, "?:")
    return f"{entry.t * 1000:8.1f}ms {marker} {_safe(entry.text)}"


def _record_rows(p: int, step: StepResult) -> list[_Row]:
    """A step's conversation from its own records: what it sent, each reply."""
    rows = [_Row(p, f"{_NO_TIME} C: {_safe(text)}") for text in step.sent]
    failing = _failing_reply(step)
    for n, reply in enumerate(step.replies):
        if reply.code is None:
            rows.append(_Row(p, f"{_NO_TIME}   * connection closed", n == failing))
            continue
        last = len(reply.lines) - 1
        for i, text in enumerate(reply.lines or [""]):
            line = f"{reply.code}{'-' if i < last else ' '}{text}".rstrip()
            rows.append(_Row(p, f"{_NO_TIME} S: {_safe(line)}", n == failing))
    return rows


def _failing_reply(step: StepResult) -> int | None:
    """The reply a failed step was judged on: its last one."""
    if step.verdict in ("failed", "error") and step.replies:
        return len(step.replies) - 1
    return None


class _Aligner:
    """Finds the step of each transcript entry (see the comment above)."""

    def __init__(self, steps: list[StepResult]):
        self.steps = steps
        # one (step, reply number, code) per reply line, in the order they were read
        self.slots = [
            (p, n, reply.code)
            for p, step in enumerate(steps)
            for n, reply in enumerate(step.replies)
            if reply.code is not None
            for _ in reply.lines or [""]
        ]
        self.expected = [sum(1 for slot in self.slots if slot[0] == p) for p in range(len(steps))]
        self.heard = [0] * len(steps)  # reply lines seen, per step
        self.speaker = -1  # the step whose commands are going out
        self.said = 0  # how many of its sent lines have been seen
        self.closing = len(steps)  # what comes after the last step (QUIT, closing notes)

    def rows(self, transcript: list[TranscriptEntry]) -> list[_Row] | None:
        rows: list[_Row] = []
        notes: list[TranscriptEntry] = []
        current: int | None = None
        received = 0
        for entry in transcript:
            if entry.direction == "S":
                slot = self.slots[received] if received < len(self.slots) else None
                received += 1
                if slot is not None and not entry.text.startswith(str(slot[2])):
                    return None  # not the reply the steps recorded: do not guess
                step = self.closing if slot is None else slot[0]
                marked = slot is not None and slot[1] == _failing_reply(self.steps[slot[0]])
                if slot is not None:
                    self.heard[slot[0]] += 1
            elif entry.direction == "C":
                step, marked = self._speaker(entry.text), False
            else:
                notes.append(entry)
                continue
            rows += self._place(notes, current, step)
            notes = []
            rows.append(_Row(step, _entry_text(entry), marked))
            current = step
        return rows + self._place(notes, current, 0 if current is None else current)

    def _place(self, notes: list[TranscriptEntry], current: int | None, coming: int) -> list[_Row]:
        """Notes go with the step before them, or open a step that starts by listening."""
        listens = coming < len(self.steps) and not self.steps[coming].sent
        owner = coming if current is None or (coming != current and listens) else current
        return [_Row(owner, _entry_text(note)) for note in notes]

    def _speaker(self, text: str) -> int:
        """The step a command line belongs to (``closing``: none, QUIT on closing)."""
        if self.speaker >= 0:
            sent = self.steps[self.speaker].sent
            if self.said < len(sent) and text == sent[self.said]:
                self.said += 1
                return self.speaker
        after = next(
            (p for p in range(self.speaker + 1, len(self.steps)) if self.steps[p].sent), None
        )
        answered = self.speaker < 0 or self.heard[self.speaker] >= self.expected[self.speaker]
        if after is None:
            return self.closing if answered else self.speaker
        if text == self.steps[after].sent[0] or answered:
            self.speaker, self.said = after, 1
        return self.speaker


# --- tables ---------------------------------------------------------------------------


def scenario_table(scenarios: list[Scenario]) -> list[str]:
    """`smtpscript list`: aligned columns, a header line when there is anything to list."""
    rows = [(s.severity, s.title, ",".join(s.tags), f"{s.file}:{s.pos.line}") for s in scenarios]
    return _table(("SEVERITY", "TITLE", "TAGS", "FILE"), rows)


def target_table(rows: list[tuple[str, str, str]]) -> list[str]:
    """Targets as (name, address, tags), in aligned columns under a header."""
    return _table(("NAME", "ADDRESS", "TAGS"), rows)


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Escaped cells in columns two spaces apart; nothing at all when there are no rows."""
    if not rows:
        return []
    cells = [tuple(_safe(c) for c in row) for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *cells, strict=True)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *cells)
    ]

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
from collections import deque
from typing import TYPE_CHECKING, TextIO

from smtpscript.model import SEVERITIES
from smtpscript.protocol import escape_controls

if TYPE_CHECKING:
    from smtpscript.latency import LatencySummary
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
        if run.load is not None:  # load mode: aggregates, not one line per session
            for line in load_lines(run):
                self._line(line)
            self.clear()
            return
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

    baseline: RunResult | None = None  # run --baseline: findings marked new / still open

    def _recap(self, run: RunResult) -> None:
        """Every failure and error: the reason in words (smtpscript.wording, as in every
        report), the technical expectation under it, the fix; then the baseline counts."""
        from smtpscript.baseline import LABELS, compare
        from smtpscript.wording import story

        comparison = compare(run, self.baseline) if self.baseline is not None else None
        bad = [r for r in run.scenarios if r.verdict in ("failed", "error")]
        fixes_shown: dict[str, str] = {}  # remediation -> the title it was first shown for
        if bad:
            self._line(f"failures and errors ({len(bad)}):")
        for result in bad:
            label = self._paint(f"{_LABELS[result.verdict]:<5}", _COLOURS[result.verdict])
            status = comparison.of(result) if comparison is not None else None
            self._line(
                f"{label} {_safe(result.target.name)}  {_safe(result.title)}  "
                f"[{_safe(result.severity)}] {_safe(f'{result.file}:{result.line}')}"
                + (f"  ({LABELS[status]})" if status else "")
            )
            told = story(result)
            for line in (told.words, told.beneath):
                if line:
                    self._line(f"{_INDENT}{_safe(line)}")
            fix = getattr(result, "remediation", None)
            if fix and result.verdict == "failed":
                self._line(f"{_INDENT}fix: {_safe(_fix_line(fix, fixes_shown, result.title))}")
        if comparison is not None:
            when = comparison.baseline_started_at or "unknown time"
            self._line(f"since the baseline of {_safe(when)}: {comparison.summary()}")

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


FIX_CHARS = 200  # of a remediation in the recap; the reports have all of it


def _fix_line(fix: str, shown: dict[str, str], title: str) -> str:
    """A remediation in the recap: its first sentence (the reports have the rest), and
    'as for ...' when an earlier failure had the same one (nine smuggling findings, one
    fix)."""
    if fix in shown:
        return f"as for {shown[fix]}"
    shown[fix] = title
    text = " ".join(fix.split())
    first, more, _ = text.partition(". ")
    if not more and len(text) <= FIX_CHARS:
        return text  # one sentence: as written
    first = first if len(first) <= FIX_CHARS else first[: FIX_CHARS - 1].rstrip() + "…"
    return f"{first.rstrip('.')}. (more in the report)"


def load_lines(run: RunResult) -> list[str]:
    """Load mode's summary: throughput, verdicts, latency per session and step, reasons."""
    load = run.load
    assert load is not None
    verdicts = ", ".join(f"{n} {v}" for v, n in sorted(load.verdicts.items()))
    lines = [
        f"smtpscript: load: {_safe(load.title)} on {_safe(load.target)}: {load.sessions} "
        f"sessions in {load.elapsed_ms / 1000:.2f}s = {load.sessions_per_s:g} sessions/s "
        f"({load.concurrency} at once): {verdicts or 'none'}",
        *([f"  engine: {_safe(load.engine)}"] if load.engine else []),
        f"  {'':<34} {'min':>9} {'median':>9} {'p90':>9} {'p99':>9} {'max':>9}  (ms)",
        _latency_row("session", load.session),
    ]
    lines += [_latency_row(f"{step.path} {step.name}", step.latency) for step in load.steps]
    if load.reasons:
        lines.append("  failures and errors by reason:")
        lines += [f"  {r.count:>8} x {_safe(r.reason)}" for r in load.reasons[:10]]
        if len(load.reasons) > 10:
            lines.append(f"  ... and {len(load.reasons) - 10} more reasons (in the JSON results)")
    if run.incomplete:
        lines.append(f"  INCOMPLETE: {_safe(run.incomplete)}")
    return lines


def _latency_row(label: str, latency: LatencySummary) -> str:
    shown = _safe(label)
    shown = shown if len(shown) <= 34 else shown[:33] + "…"
    values = (latency.min_ms, latency.median_ms, latency.p90_ms, latency.p99_ms, latency.max_ms)
    return f"  {shown:<34} " + " ".join(f"{v:>9.2f}" for v in values)


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
# Every transcript entry says which step it belongs to (entry.step, the step's index;
# None outside every step), so the entries are shown in the order they happened, under
# the label of their step, the label repeated whenever the step changes (a pipeline's
# commands go out together and its replies come back after them).


def conversation_lines(result: ScenarioResult) -> list[tuple[str, str]]:
    """(kind, text) pairs: kind is "label", "line", "marked" (the failing reply) or "message".

    A step without lines (skipped, or stopped before it sent anything) is labelled where
    it ran; lines outside every step come last, under "after the steps" (a transcript
    that says nothing of steps, from older results: after the labels of all the steps).
    """
    steps = {step.index: step for step in result.steps}
    if not steps:
        return [("line", _entry_text(e)) for e in result.transcript]
    owners = [e.step if e.step in steps else None for e in result.transcript]
    marked, message_after = _failing_replies(result, owners)
    last_owned = max((n for n, owner in enumerate(owners) if owner is not None), default=-1)
    with_lines = set(owners)
    silent = deque(step for step in result.steps if step.index not in with_lines)
    out: list[tuple[str, str]] = []

    def silent_steps(before: float) -> None:
        """Label the steps without lines that ran before step ``before``."""
        while silent and silent[0].index < before:
            step = silent.popleft()
            out.append(("label", _label(result, step)))
            if step.verdict in ("failed", "error") and step.message:
                out.append(("message", _safe(step.message)))

    current: int | str | None = ""  # the step being shown ("": none yet)
    for n, (entry, owner) in enumerate(zip(result.transcript, owners, strict=True)):
        if owner != current:
            current = owner
            if owner is not None:
                silent_steps(owner)
                out.append(("label", _label(result, steps[owner])))
            else:
                if n > last_owned:  # no step comes later
                    silent_steps(float("inf"))
                after = last_owned >= 0 and n > last_owned
                out.append(("label", "after the steps" if after else "outside the steps"))
        out.append(("marked" if n in marked else "line", _entry_text(entry)))
        if n in message_after:
            out.append(("message", _safe(message_after[n].message)))
    silent_steps(float("inf"))
    return out


def _failing_replies(
    result: ScenarioResult, owners: list[int | None]
) -> tuple[set[int], dict[int, StepResult]]:
    """The entries of the reply each failed step was judged on (its last), and after
    which entry each failed or errored step's message goes: its failing reply, else its
    last line."""
    received: dict[int, list[int]] = {}  # step index -> its received lines, in order
    last: dict[int, int] = {}
    for n, owner in enumerate(owners):
        if owner is not None:
            last[owner] = n
            if result.transcript[n].direction == "S":
                received.setdefault(owner, []).append(n)
    marked: set[int] = set()
    message_after: dict[int, StepResult] = {}
    for step in result.steps:
        if step.verdict not in ("failed", "error") or step.index not in last:
            continue
        lines = _reply_lines(step, received.get(step.index, []), result.transcript)
        marked.update(lines)
        if step.message:
            message_after[lines[-1] if lines else last[step.index]] = step
    return marked, message_after


def _reply_lines(
    step: StepResult, received: list[int], transcript: list[TranscriptEntry]
) -> list[int]:
    """The received lines of a failed step's last reply: a step's received lines are its
    replies, in the order it read them (then any bytes nobody read)."""
    if step.verdict != "failed" or not step.replies or step.replies[-1].code is None:
        return []  # an error was not judged on a reply; a close has no reply lines
    before = sum(len(r.lines) or 1 for r in step.replies[:-1] if r.code is not None)
    lines = received[before : before + (len(step.replies[-1].lines) or 1)]
    code = str(step.replies[-1].code)
    return lines if lines and all(transcript[n].text.startswith(code) for n in lines) else []


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

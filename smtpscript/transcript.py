"""Turn a session's raw events into display lines, redacted, each with its step.

Received bytes arrive in arbitrary chunks; lines are rebuilt across chunks so
that a reply split over several reads shows as whole lines, each stamped with
the time its first byte arrived.

The runner says which step each event belongs to with marks: ``Mark(event, step)``
means "from events[event] on, step" (``None``: outside every step). A mark can point
inside an event: at a line of a sent event (the commands of a pipeline go out in one
write, one line per step), or at a byte of a received one (replies read by several
steps can arrive in one read). A line takes the step of its first byte. Marks need
not come in order: where several point at the same place, the one given last wins.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import NamedTuple

from smtpscript.protocol import escape_bytes
from smtpscript.results import TranscriptEntry
from smtpscript.session import RawEvent
from smtpscript.templating import SecretTracker

MAX_LINES_PER_EVENT = 200  # a big DATA payload shows its start, then a count


class Mark(NamedTuple):
    """From ``events[event]`` (its line or byte ``offset``) on, the lines belong to ``step``."""

    event: int
    step: int | None
    offset: int = 0  # a sent event's or note's line; a received event's byte


def reply_mark(events: Sequence[RawEvent], unread: int, step: int | None) -> Mark:
    """The mark for a step about to read a reply: at the first of the last ``unread``
    bytes received (not read yet: they start its reply), else at the next event."""
    for n in range(len(events) - 1, -1, -1):
        if unread <= 0:
            break
        event = events[n]
        if event.direction == "S":
            if unread <= len(event.data):
                return Mark(n, step, len(event.data) - unread)
            unread -= len(event.data)
    return Mark(len(events), step)


class _Steps:
    """The step at a place in the events, from the marks."""

    def __init__(self, marks: Sequence[tuple[int, int | None] | Mark]):
        given = [mark if type(mark) is Mark else Mark(*mark) for mark in marks]
        ordered = sorted(given, key=_place)
        self.places = [_place(m) for m in ordered]
        self.steps = [m.step for m in ordered]
        # events with a mark inside them: elsewhere, an event's lines all share one step
        self.split = {m.event for m in ordered if m.offset}

    def at(self, event: int, offset: int = 0) -> int | None:
        n = bisect_right(self.places, (event, offset))  # stable sort: the last given wins
        return self.steps[n - 1] if n else None


def build(
    events: list[RawEvent],
    tracker: SecretTracker,
    marks: Sequence[tuple[int, int | None] | Mark] = (),
) -> list[TranscriptEntry]:
    steps = _Steps(marks)
    at, split = steps.at, steps.split
    show = _show if tracker else _show_plain  # no secret: nothing to redact
    out: list[TranscriptEntry] = []
    pending = b""  # received bytes of an unfinished line
    pending_t, pending_step = 0.0, None  # when its first byte came, and its step
    for n, event in enumerate(events):
        whole = n not in split
        step = at(n) if whole else None  # the step of all its lines, when they share one
        if event.direction == "S":
            assert isinstance(event.data, bytes)
            data, start, size = event.data, 0, len(event.data)
            while start < size:
                if not pending:
                    pending_t, pending_step = event.t, step if whole else at(n, start)
                end = data.find(b"\n", start)
                if end < 0:
                    pending += data[start:]
                    break
                line, pending = pending + data[start:end], b""
                out.append(TranscriptEntry(pending_t, "S", show(line, tracker), pending_step))
                start = end + 1
            continue
        if pending:  # a partial line before something else happened
            out.append(TranscriptEntry(pending_t, "S", show(pending, tracker), pending_step))
            pending = b""
        for line, entry in enumerate(_local(event, tracker, show)):
            entry.step = step if whole else at(n, line)
            out.append(entry)
    if pending:
        out.append(TranscriptEntry(pending_t, "S", show(pending, tracker), pending_step))
    return out


def _local(
    event: RawEvent, tracker: SecretTracker, show: Callable[[bytes, SecretTracker], str]
) -> list[TranscriptEntry]:
    if event.direction == "*" or event.display is not None:
        text = event.display if event.display is not None else str(event.data)
        direction = event.direction
        if not tracker:
            return [TranscriptEntry(event.t, direction, line) for line in text.split("\n")]  # type: ignore[arg-type]
        return [
            TranscriptEntry(event.t, direction, tracker.redact(line))  # type: ignore[arg-type]
            for line in text.split("\n")
        ]
    assert isinstance(event.data, bytes)
    lines = event.data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    shown = [
        TranscriptEntry(event.t, "C", show(line, tracker)) for line in lines[:MAX_LINES_PER_EVENT]
    ]
    if len(lines) > MAX_LINES_PER_EVENT:
        shown.append(
            TranscriptEntry(
                event.t, "*", f"... {len(lines) - MAX_LINES_PER_EVENT} more lines sent, not shown"
            )
        )
    elif event.size > len(event.data):
        shown.append(
            TranscriptEntry(event.t, "*", f"... {event.size - len(event.data)} more bytes sent")
        )
    return shown


def _place(mark: Mark) -> tuple[int, int]:
    return mark.event, mark.offset


def _show_plain(line: bytes, tracker: SecretTracker) -> str:
    """_show when no secret is known: only escaped."""
    return escape_bytes(line[:-1] if line.endswith(b"\r") else line)


def _show(line: bytes, tracker: SecretTracker) -> str:
    """A line without its CRLF, escaped for display."""
    if line.endswith(b"\r"):
        line = line[:-1]
    # redact the bytes first: escaping (TAB, backslash, invisible characters) would hide
    # a secret's shape from the text pass
    return tracker.redact(escape_bytes(tracker.redact_bytes(line)))

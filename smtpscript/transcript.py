"""Turn a session's raw events into display lines, redacted.

Received bytes arrive in arbitrary chunks; lines are rebuilt across chunks so
that a reply split over several reads shows as whole lines, each stamped with
the time its first byte arrived.
"""

from __future__ import annotations

from smtpscript.protocol import escape_bytes
from smtpscript.results import TranscriptEntry
from smtpscript.session import RawEvent
from smtpscript.templating import SecretTracker

MAX_LINES_PER_EVENT = 200  # a big DATA payload shows its start, then a count


def build(events: list[RawEvent], tracker: SecretTracker) -> list[TranscriptEntry]:
    out: list[TranscriptEntry] = []
    pending = b""  # received bytes of an unfinished line
    pending_t = 0.0
    for event in events:
        if event.direction == "S":
            assert isinstance(event.data, bytes)
            if not pending:
                pending_t = event.t
            pending += event.data
            *lines, pending = pending.split(b"\n")
            out += [TranscriptEntry(pending_t, "S", _show(line, tracker)) for line in lines]
            pending_t = event.t
            continue
        if pending:  # a partial line before something else happened
            out.append(TranscriptEntry(pending_t, "S", _show(pending, tracker)))
            pending = b""
        out += _local(event, tracker)
    if pending:
        out.append(TranscriptEntry(pending_t, "S", _show(pending, tracker)))
    return out


def _local(event: RawEvent, tracker: SecretTracker) -> list[TranscriptEntry]:
    if event.direction == "*" or event.display is not None:
        text = event.display if event.display is not None else str(event.data)
        return [
            TranscriptEntry(event.t, event.direction, tracker.redact(line))  # type: ignore[arg-type]
            for line in text.split("\n")
        ]
    assert isinstance(event.data, bytes)
    lines = event.data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    shown = [
        TranscriptEntry(event.t, "C", _show(line, tracker)) for line in lines[:MAX_LINES_PER_EVENT]
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


def _show(line: bytes, tracker: SecretTracker) -> str:
    """A line without its CRLF, escaped for display."""
    if line.endswith(b"\r"):
        line = line[:-1]
    # redact the bytes first: escaping (TAB, backslash, invisible characters) would hide
    # a secret's shape from the text pass
    return tracker.redact(escape_bytes(tracker.redact_bytes(line)))

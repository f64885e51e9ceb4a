"""A message to send with DATA (and BDAT): written whole, or as headers and a body.

Shared by the actions that carry a message: its model, how it is built from
YAML, its schema, its checks, and how it is rendered into text just before
sending (Date and Message-ID added when missing).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smtpscript import protocol
from smtpscript.actions.base import Checker, JsonPath, StepContext
from smtpscript.errors import LocalProtocolError
from smtpscript.schemaparts import HEADER_NAME, obj, template


@dataclass(frozen=True)
class Message:
    """Message content: either ``text`` or ``headers`` + ``body``."""

    text: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""


def build(value: str | dict[str, Any]) -> Message:
    if isinstance(value, str):
        return Message(text=value)
    headers = tuple((k, str(v)) for k, v in (value.get("headers") or {}).items())
    return Message(headers=headers, body=value.get("body", ""))


def schema(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "anyOf": [
            template("The whole message (headers, blank line, body)."),
            obj(
                {
                    "headers": {
                        "type": "object",
                        "description": "Header fields; Date and Message-ID are added when missing.",
                        "additionalProperties": {"type": ["string", "number"]},
                        "propertyNames": HEADER_NAME,
                    },
                    "body": template("The message body."),
                },
                "Headers and body, assembled into a message.",
            ),
        ],
    }


def check(value: Any, path: JsonPath, checker: Checker) -> None:
    if isinstance(value, str):
        checker.template(value, path)
    elif isinstance(value, dict):
        if isinstance(value.get("body"), str):
            checker.template(value["body"], (*path, "body"))
        headers = value.get("headers")
        for name, header in headers.items() if isinstance(headers, dict) else ():
            if isinstance(header, str):
                checker.template(header, (*path, "headers", name))


def compose(
    message: Message,
    render: Callable[[str], str],
    date: str | None = None,
    message_id: str | None = None,
) -> str:
    """The message as text, rendered; a header value may not break its line.

    Date and Message-ID are added when missing: ``date`` and ``message_id`` if given,
    else now's and a new one (load mode's compiled plan gives markers, and fills them in
    for each session).
    """
    if message.text is not None:
        text = render(message.text)
        head, sep, _ = text.replace("\r\n", "\n").partition("\n\n")
        names = {line.split(":", 1)[0].strip().lower() for line in head.split("\n") if ":" in line}
        extra = _missing_headers(names, date, message_id)
        return "".join(f"{k}: {v}\n" for k, v in extra) + text if sep else text
    headers = [(name, _header_value(name, render(value))) for name, value in message.headers]
    headers += _missing_headers({name.lower() for name, _ in headers}, date, message_id)
    body = render(message.body)
    return "".join(f"{name}: {value}\n" for name, value in headers) + "\n" + body


def _header_value(name: str, value: str) -> str:
    """CR/LF from a variable would inject headers (write the whole message as text to send
    unusual headers on purpose)."""
    if "\r" in value or "\n" in value:
        raise LocalProtocolError(
            f"header {name} contains CR or LF after rendering; use the text form of data "
            "to send folded or unusual headers"
        )
    return value


def _missing_headers(
    present: set[str], date: str | None, message_id: str | None
) -> list[tuple[str, str]]:
    extra = []
    if "date" not in present:
        extra.append(("Date", date if date is not None else new_date()))
    if "message-id" not in present:
        extra.append(("Message-ID", message_id if message_id is not None else new_message_id()))
    return extra


def new_date() -> str:
    """Now as an RFC 5322 Date (UTC); made once a second, however many messages."""
    return _date_at(int(time.time()))


@functools.lru_cache(maxsize=1)
def _date_at(second: int) -> str:
    import email.utils  # when a message is sent: validate's cold start does without it

    return email.utils.formatdate(second, localtime=False)


def new_message_id() -> str:
    """A new Message-ID: 128 random bits (uuid4's, without making a UUID object)."""
    return f"<{os.urandom(16).hex()}@smtpscript.invalid>"


async def judge_end(ctx: StepContext) -> None:
    """The reply to the end of a message; in LMTP one per accepted recipient (RFC 2033
    4.2), each judged, all read before the step fails so the session stays in step."""
    recipients = ctx.lmtp_recipients()
    if recipients is None:
        ctx.judge(await ctx.read())
        return
    problems = []
    for index, recipient in enumerate(recipients):
        problem = ctx.check_recipient(await ctx.read(), index, recipient)
        if problem:
            problems.append(problem)
    ctx.transaction_done()
    if problems:
        ctx.fail("; ".join(problems))


def display(payload: bytes, max_lines: int = 40) -> str:
    """The start of a payload as lines for the transcript and reports."""
    lines = payload.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    head = lines[:max_lines]
    text = _plain(head)
    if text is not None:  # no line has anything to escape: the lines as they are
        shown = [text] if head else []
    else:
        shown = [protocol.escape_bytes(line) for line in head]
    if len(lines) > max_lines:
        shown.append(f"... {len(lines) - max_lines} more lines ({len(payload)} bytes in all)")
    return "\n".join(shown)


_PLAIN_LINES = protocol.PLAIN_BYTES + b"\n"


def _plain(lines: list[bytes]) -> str | None:
    """The lines joined by LF, when escape_bytes would leave every one as it is."""
    data = b"\n".join(lines)
    if data.translate(None, _PLAIN_LINES) or data.count(b"\n") != max(len(lines) - 1, 0):
        return None  # something to escape, or an LF inside a line
    return data.decode("ascii")

"""send: one command line, CRLF appended, one reply read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smtpscript.actions.base import ActionSpec, Checker, JsonPath, StepContext
from smtpscript.patterns import DEFAULT_REPLY
from smtpscript.schemaparts import template


@dataclass(frozen=True)
class Send:
    """One command line (a template): CR/LF inside refused, CRLF added, one reply read."""

    line: str


async def run(ctx: StepContext, action: Send) -> None:
    line = ctx.render(action.line)
    ctx.label(line)
    await ctx.send_line(line)
    ctx.judge(await ctx.read())


def check(value: Any, path: JsonPath, checker: Checker) -> None:
    if not isinstance(value, str):
        return
    one_line(value, path, checker, block=checker.is_block(path))
    checker.template(value, path)


def one_line(line: str, path: JsonPath, checker: Checker, block: bool = False) -> None:
    """A send line gets its CRLF added; a CR or LF inside would smuggle a command."""
    found = next((c for c in ("\r", "\n") if c in line), None)
    if found is None:
        return
    where = line.index(found) + 1
    hint = " (a 'send: |' block ends with a line break; use a quoted string)" if block else ""
    checker.add(
        path,
        f"a send line cannot contain {'CR' if found == chr(13) else 'LF'} (character "
        f"{where}): send adds CRLF itself; use raw: to send exact bytes{hint}",
    )


SPEC = ActionSpec(
    name="send",
    order=20,
    schema=template(
        "A command line (template); CRLF is appended; CR or LF inside is refused. "
        "Default expect: 2xx or 3xx.",
        examples=["MAIL FROM:<{{ sender }}>", "RCPT TO:<{{ victim }}>", "QUIT"],
    ),
    build=Send,
    run=run,
    default_expect=DEFAULT_REPLY,
    check=check,
    summary="render, refuse CR/LF inside, append CRLF, send, read one reply",
)

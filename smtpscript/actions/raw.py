"""raw: exact bytes, no CRLF added; a reply is read only when expect is given."""

from __future__ import annotations

from dataclasses import dataclass

from smtpscript import protocol
from smtpscript.actions.base import ActionSpec, StepContext, templates
from smtpscript.patterns import CodePattern
from smtpscript.schemaparts import template


@dataclass(frozen=True)
class Raw:
    """Exact bytes (a template), no CRLF added; a reply is read only when expect is given."""

    data: str


async def run(ctx: StepContext, action: Raw) -> None:
    text = ctx.render(action.data)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        ctx.label(f"raw {protocol.escape_controls(text)}")
        raise
    shown = protocol.escape_bytes(data)
    ctx.label(f"raw {shown}")
    await ctx.send(data, shown)
    if ctx.expects_codes():
        ctx.judge(await ctx.read())
    else:
        ctx.replies_pending()  # its replies, if any, are read later: not a desync


SPEC = ActionSpec(
    name="raw",
    order=30,
    schema=template(
        "Exact bytes to send (template; YAML escapes such as \\r\\n are kept), no CRLF added. "
        "No reply is read unless expect is given.",
        examples=["DATA\r\n"],
    ),
    build=Raw,
    run=run,
    default_expect=CodePattern(("any",)),
    check=templates(),
    summary="send exactly these bytes; no reply read unless expect is given",
)

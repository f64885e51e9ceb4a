"""data: DATA, 354, the dot-stuffed message and CRLF.CRLF (RFC 5321 4.1.1.4)."""

from __future__ import annotations

from smtpscript import notes, protocol
from smtpscript.actions import message
from smtpscript.actions.base import ActionSpec, StepContext
from smtpscript.patterns import CodePattern


async def run(ctx: StepContext, action: message.Message) -> None:
    ctx.label("DATA")
    # render first: a template error must not leave the server waiting for message text
    payload = protocol.message_payload(message.compose(action, ctx.render))
    await ctx.send_line("DATA")
    reply = await ctx.read()
    if not (isinstance(reply, protocol.Reply) and reply.code == 354):
        if not ctx.expects_codes():
            ctx.fail(notes.data_refused(ctx.got(reply)))
        ctx.judge(reply)  # e.g. expect: 554 for "no valid recipients"
        return
    await ctx.send(payload, message.display(payload))
    await message.judge_end(ctx)


SPEC = ActionSpec(
    name="data",
    order=70,
    schema=message.schema(
        "DATA, expect 354, then send the message dot-stuffed and ended with CRLF.CRLF. "
        "Default expect 250 for the final reply."
    ),
    build=message.build,
    run=run,
    default_expect=CodePattern(("250",)),
    check=message.check,
    per_recipient=True,
    summary="DATA, expect 354, send the dot-stuffed message and CRLF.CRLF",
)

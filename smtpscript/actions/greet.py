"""ehlo, helo, lhlo: greet; EHLO and LHLO store the capabilities in `caps`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from smtpscript import protocol
from smtpscript.actions.base import ActionSpec, StepContext, templates
from smtpscript.patterns import CodePattern
from smtpscript.schemaparts import template


@dataclass(frozen=True)
class Greet:
    """EHLO, HELO or LHLO with a client name."""

    verb: Literal["EHLO", "HELO", "LHLO"]
    name: str


async def run(ctx: StepContext, action: Greet) -> None:
    line = f"{action.verb} {ctx.render(action.name)}"
    ctx.label(line)
    await ctx.send_line(line)
    reply = await ctx.read()
    if isinstance(reply, protocol.Reply) and action.verb != "HELO" and reply.code == 250:
        ctx.set_caps(protocol.parse_ehlo(reply))
    ctx.judge(reply)


def _spec(verb: Literal["EHLO", "HELO", "LHLO"], order: int, description: str) -> ActionSpec:
    return ActionSpec(
        name=verb.lower(),
        order=order,
        schema=template(description),
        build=lambda name: Greet(verb, name),
        run=run,
        default_expect=CodePattern(("250",)),
        check=templates(),
        summary=description,
    )


SPECS = (
    _spec("EHLO", 40, "EHLO with this name; stores capabilities in `caps`. Default expect 250."),
    _spec("HELO", 41, "HELO with this name. Default expect 250."),
    _spec("LHLO", 42, "LHLO (LMTP) with this name; stores capabilities in `caps`."),
)

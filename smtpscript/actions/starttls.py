"""starttls: STARTTLS, then upgrade the same connection (RFC 3207)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smtpscript import protocol
from smtpscript.actions.base import ActionSpec, StepContext
from smtpscript.model import TlsOptions, tls_options_from
from smtpscript.patterns import CodePattern
from smtpscript.schemaparts import TLS_OPTIONS, obj


@dataclass(frozen=True)
class StartTls:
    """STARTTLS, then the TLS upgrade of the same connection."""

    tls_options: TlsOptions = field(default_factory=TlsOptions)


async def run(ctx: StepContext, action: StartTls) -> None:
    ctx.label("STARTTLS")
    await ctx.send_line("STARTTLS")
    reply = await ctx.read()
    ctx.judge(reply)
    if not (isinstance(reply, protocol.Reply) and reply.code == 220):
        return  # the scenario asserted a refusal; nothing to upgrade
    await ctx.starttls(ctx.base_endpoint.tls_options.overlay(action.tls_options))
    ctx.check_tls()


def build(value: Any) -> StartTls:
    return StartTls(tls_options_from(value or {}))


SPEC = ActionSpec(
    name="starttls",
    order=50,
    schema={
        "description": "Send STARTTLS, expect 220, upgrade the connection to TLS.",
        "anyOf": [obj(TLS_OPTIONS, "TLS options for this upgrade."), {"type": "null"}],
    },
    build=build,
    run=run,
    default_expect=CodePattern(("220",)),
    tls_expectations=True,
    summary="STARTTLS, then upgrade the same connection; caps is emptied",
)

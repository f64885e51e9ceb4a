"""connect: (re)open the connection and read the banner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smtpscript.actions.base import ActionSpec, StepContext, templates
from smtpscript.model import Endpoint, endpoint_from
from smtpscript.patterns import CodePattern
from smtpscript.schemaparts import ENDPOINT, obj


@dataclass(frozen=True)
class Connect:
    endpoint: Endpoint = field(default_factory=Endpoint)


async def run(ctx: StepContext, action: Connect) -> None:
    endpoint = ctx.base_endpoint.overlay(action.endpoint)
    ctx.label(f"connect {endpoint.where()}")
    await ctx.open(endpoint)
    ctx.judge(await ctx.read())
    ctx.check_tls()


def build(value: Any) -> Connect:
    return Connect(endpoint_from(value or {}))


SPEC = ActionSpec(
    name="connect",
    order=10,
    schema={
        "description": "(Re)open the connection and read the banner (default expect 220). Its "
        "keys override the target's.",
        "anyOf": [obj(ENDPOINT, "Connection settings for this connection."), {"type": "null"}],
    },
    build=build,
    run=run,
    default_expect=CodePattern(("220",)),
    check=templates("host"),
    needs_connection=False,
    tls_expectations=True,
    summary="(re)open the connection, read the banner",
)

"""connect: (re)open the connection and read the banner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smtpscript import proxyheader
from smtpscript.actions.base import (
    ActionSpec,
    Checker,
    JsonPath,
    StepContext,
    overlay,
    templates,
)
from smtpscript.model import Endpoint, endpoint_from
from smtpscript.patterns import CodePattern
from smtpscript.schemaparts import ENDPOINT, obj


@dataclass(frozen=True)
class Connect:
    """Open a connection: the scenario's target, overlaid with this step's endpoint."""

    endpoint: Endpoint = field(default_factory=Endpoint)


async def run(ctx: StepContext, action: Connect) -> None:
    endpoint = overlay(ctx.base_endpoint, action.endpoint)
    ctx.label(f"connect {endpoint.where()}")
    await ctx.open(endpoint)
    ctx.judge(await ctx.read())
    ctx.check_tls()


def build(value: Any) -> Connect:
    return Connect(endpoint_from(value or {}))


def check(value: Any, path: JsonPath, checker: Checker) -> None:
    templates("host")(value, path, checker)
    if isinstance(value, dict):
        check_proxy(value.get("proxy"), (*path, "proxy"), checker)


def check_proxy(proxy: Any, path: JsonPath, checker: Checker) -> None:
    """PROXY header addresses the header can carry: found now, not when connecting."""
    if not isinstance(proxy, dict):
        return
    ends: dict[str, proxyheader.IPAddress] = {}
    for key in ("source", "destination"):
        if not isinstance(proxy.get(key), str):
            continue  # the schema says what is wrong with it
        try:
            ends[key] = proxyheader.parse_address(proxy[key])[0]
        except proxyheader.ProxyHeaderError as exc:
            checker.add((*path, key), str(exc))
    if len(ends) == 2 and ends["source"].version != ends["destination"].version:
        message = proxyheader.family_message(ends["source"], ends["destination"])
        checker.add((*path, "destination"), message)


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
    check=check,
    needs_connection=False,
    tls_expectations=True,
    summary="(re)open the connection, read the banner",
)

"""xclient: Postfix's XCLIENT command, overriding the server's idea of the client.

An authorized client (smtpd_authorized_xclient_hosts) may claim another client
name, address, HELO name and so on for the rest of the session; the server
answers with a new 220 greeting and starts the session over, so what EHLO
taught us is forgotten (https://www.postfix.org/XCLIENT_README.html).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smtpscript import protocol
from smtpscript.actions.base import ActionSpec, Checker, JsonPath, StepContext
from smtpscript.errors import LocalProtocolError
from smtpscript.patterns import CodePattern
from smtpscript.schemaparts import obj

# the attribute names of XCLIENT_README, in the order Postfix advertises them
ATTRIBUTES: dict[str, str] = {
    "NAME": "The client host name (e.g. client.example).",
    "ADDR": "The client address: IPv4, or IPV6: followed by an IPv6 address.",
    "PROTO": "The protocol the client used: SMTP or ESMTP.",
    "HELO": "The client's HELO/EHLO name.",
    "REVERSE_NAME": "The client name found by a reverse DNS lookup of ADDR.",
    "PORT": "The client's TCP port.",
    "LOGIN": "The SASL login name the client authenticated with.",
    "DESTADDR": "The server address the client connected to.",
    "DESTPORT": "The server port the client connected to.",
}


@dataclass(frozen=True)
class Xclient:
    """Postfix XCLIENT: attributes of the client the server should believe it has."""

    attributes: tuple[tuple[str, str | int], ...]  # in the order written; values are templates


def xtext(value: str) -> str:
    """RFC 1891 xtext: printable ASCII except '+' and '=' as is, every other byte as +XX.

    So no value can carry a space, CR or LF into the command line; [UNAVAILABLE] and
    [TEMPUNAVAIL] are printable and pass unchanged.
    """
    return "".join(
        chr(byte) if 33 <= byte <= 126 and byte not in b"+=" else f"+{byte:02X}"
        for byte in value.encode("utf-8")
    )


async def run(ctx: StepContext, action: Xclient) -> None:
    values = [
        (name, ctx.render(v) if isinstance(v, str) else str(v)) for name, v in action.attributes
    ]
    line = "XCLIENT " + " ".join(f"{name}={xtext(value)}" for name, value in values)
    ctx.label(line)
    _refuse_unadvertised(ctx, [name for name, _ in values])
    await ctx.send_line(line)
    reply = await ctx.read()
    if isinstance(reply, protocol.Reply) and reply.code == 220:
        ctx.set_caps({})  # a new greeting: the session starts over, EHLO comes again
    ctx.judge(reply)


def _refuse_unadvertised(ctx: StepContext, names: list[str]) -> None:
    """An attribute the server did not list would only earn a 501: say so before sending.

    When XCLIENT is not advertised at all the command is still sent: the scenario may be
    checking that the server refuses it.
    """
    advertised = _advertised(ctx)
    if advertised is None:
        return
    missing = [name for name in names if name not in advertised]
    if missing:
        offered = " ".join(advertised) or "no attributes"
        raise LocalProtocolError(
            f"XCLIENT {', '.join(missing)} not sent: the server advertised only XCLIENT {offered}"
        )


def _advertised(ctx: StepContext) -> list[str] | None:
    """The attribute names after XCLIENT in the EHLO reply; None when it is not there."""
    if "XCLIENT" not in ctx.caps:
        return None
    return ctx.caps["XCLIENT"].upper().split()


def build(value: dict[str, Any]) -> Xclient:
    return Xclient(tuple(value.items()))


def check(value: Any, path: JsonPath, checker: Checker) -> None:
    if not isinstance(value, dict):
        return
    if not value:
        names = ", ".join(ATTRIBUTES)
        checker.add(path, f"XCLIENT needs at least one attribute ({names})")
    for name, item in value.items():
        if isinstance(item, str):
            checker.template(item, (*path, name))


def _schema() -> dict[str, Any]:
    value = {"type": ["string", "integer"]}
    props = {
        name: {**value, "description": f"{text} (template)"} for name, text in ATTRIBUTES.items()
    }
    return obj(
        props,
        "Send XCLIENT with these attributes (values are templates, xtext-encoded; "
        "[UNAVAILABLE] and [TEMPUNAVAIL] pass as is). Default expect 220 (the new greeting); "
        "the capabilities are forgotten, send EHLO again.",
        examples=[{"NAME": "client.example", "ADDR": "203.0.113.7"}],
    )


SPEC = ActionSpec(
    name="xclient",
    order=65,
    schema=_schema(),
    build=build,
    run=run,
    default_expect=CodePattern(("220",)),
    check=check,
    summary="XCLIENT (Postfix): claim another client name, address, HELO...; caps is emptied",
)

"""auth: SASL authentication (RFC 4954) with the full challenge exchange; secrets masked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smtpscript import protocol
from smtpscript.actions.base import ActionSpec, Checker, JsonPath, StepContext, templates
from smtpscript.patterns import CodePattern
from smtpscript.redaction import REDACTED
from smtpscript.schemaparts import obj, template

MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2")


@dataclass(frozen=True)
class Auth:
    """AUTH with a mechanism and credentials (templates; the secrets never shown)."""

    mechanism: str
    username: str
    password: str | None = None
    token: str | None = None
    authzid: str | None = None


async def run(ctx: StepContext, action: Auth) -> None:
    username = ctx.render(action.username)
    secret = ctx.render(action.password or action.token or "")
    ctx.secret(secret)
    mechanism = action.mechanism
    ctx.label(f"AUTH {mechanism} as {username}")
    if mechanism in ("PLAIN", "XOAUTH2"):
        payload = (
            protocol.auth_plain(username, secret, ctx.render(action.authzid or ""))
            if mechanism == "PLAIN"
            else protocol.xoauth2(username, secret)
        )
        ctx.secret_payload(payload)
        await ctx.send_line(f"AUTH {mechanism} {payload}", f"AUTH {mechanism} {REDACTED}")
        reply = await ctx.read()
        if mechanism == "XOAUTH2" and isinstance(reply, protocol.Reply) and reply.code == 334:
            await ctx.send_line("", "")  # the error challenge wants an empty reply
            reply = await ctx.read()
    else:
        reply = await _challenges(ctx, mechanism, username, secret)
    ctx.judge(reply)


async def _challenges(ctx: StepContext, mechanism: str, username: str, secret: str) -> Any:
    await ctx.send_line(f"AUTH {mechanism}")
    reply = await ctx.read()
    # LOGIN: the user name (no secret, shown) then the password; CRAM-MD5: one answer
    answers = [protocol.b64(username), None] if mechanism == "LOGIN" else [None]
    for n, answer in enumerate(answers):
        if not (isinstance(reply, protocol.Reply) and reply.code == 334):
            return reply  # refused early (530, 538, 504): that is the final reply
        if answer is None:
            answer = (
                protocol.b64(secret)
                if mechanism == "LOGIN"
                else protocol.cram_md5_response(username, secret, reply.text.strip())
            )
            ctx.secret_payload(answer)
        await ctx.send_line(answer, answer if mechanism == "LOGIN" and n == 0 else REDACTED)
        reply = await ctx.read()
    return reply


def check(value: Any, path: JsonPath, checker: Checker) -> None:
    if not isinstance(value, dict):
        return
    templates("username", "password", "token", "authzid")(value, path, checker)
    mechanism = value.get("mechanism")
    needs = "token" if mechanism == "XOAUTH2" else "password"
    if mechanism in MECHANISMS and needs not in value:
        example = "{{ env.SMTP_TOKEN }}" if needs == "token" else "{{ env.SMTP_PASSWORD }}"
        checker.add(path, f"AUTH {mechanism} needs '{needs}' (e.g. {needs}: \"{example}\")")


SPEC = ActionSpec(
    name="auth",
    order=60,
    schema=obj(
        {
            "mechanism": {"enum": list(MECHANISMS), "description": "SASL mechanism."},
            "username": template("User name (template)."),
            "password": template("Password (template; a secret, never shown)."),
            "token": template("OAuth 2 bearer token for XOAUTH2 (a secret, never shown)."),
            "authzid": template("Authorisation identity for PLAIN (rarely needed)."),
        },
        "Authenticate (RFC 4954) with the full challenge exchange. Default expect 235.",
        required=["mechanism", "username"],
    ),
    build=lambda value: Auth(**value),
    run=run,
    default_expect=CodePattern(("235",)),
    check=check,
    summary="PLAIN, LOGIN, CRAM-MD5, XOAUTH2 with the full challenge exchange",
)

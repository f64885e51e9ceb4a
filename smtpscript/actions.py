"""What each step action does on the wire: one coroutine per action kind.

Each handler gets the ScenarioRun (session, variables, recording), the step,
its action and the StepResult under construction; it sends, reads and judges
through the run's methods and raises StepFailed / StepError (expectations.py)
when the step does not pass. Orchestration (order, repeat, when, pipeline,
verdicts) stays in runner.py.
"""

from __future__ import annotations

import asyncio
import email.utils
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from smtpscript import expectations, protocol
from smtpscript import model as m
from smtpscript.errors import LocalProtocolError
from smtpscript.expectations import StepFailed
from smtpscript.protocol import Reply
from smtpscript.results import REDACTED
from smtpscript.session import Closed, hostport
from smtpscript.tlsinfo import make_context

if TYPE_CHECKING:
    from smtpscript.runner import ScenarioRun, _Record


async def connect(run: ScenarioRun, step: m.Step, action: m.Connect, record: _Record) -> None:
    endpoint = run.base_endpoint.overlay(action.endpoint)
    run.label(record, f"connect {hostport(endpoint.host or '', endpoint.port or m.DEFAULT_PORT)}")
    await run.open(endpoint, step)
    assert run.session is not None
    record.result.tls = run.session.tls
    reply = await run.read(step, record)
    run.judge(step, reply, record=record)
    _judge_tls(step, run)


async def send(run: ScenarioRun, step: m.Step, action: m.Send, record: _Record) -> None:
    line = run.render(action.line)
    run.label(record, line)
    await run.send_line(record, line)
    run.judge(step, await run.read(step, record), record=record)


async def raw(run: ScenarioRun, step: m.Step, action: m.Raw, record: _Record) -> None:
    text = run.render(action.data)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        run.label(record, f"raw {protocol.escape_controls(text)}")
        raise
    shown = protocol.escape_bytes(data)
    run.label(record, f"raw {shown}")
    await run.send(record, data, shown)
    if step.expect.codes is not None:
        run.judge(step, await run.read(step, record), record=record)
    else:
        run.expect_unread = True  # its replies, if any, are read later: not a desync


async def greet(run: ScenarioRun, step: m.Step, action: m.Greet, record: _Record) -> None:
    line = f"{action.verb} {run.render(action.name)}"
    run.label(record, line)
    await run.send_line(record, line)
    reply = await run.read(step, record)
    if isinstance(reply, Reply) and action.verb != "HELO" and reply.code == 250:
        run.builtins["caps"] = protocol.parse_ehlo(reply)
    run.judge(step, reply, record=record)


async def starttls(run: ScenarioRun, step: m.Step, action: m.StartTls, record: _Record) -> None:
    run.label(record, "STARTTLS")
    await run.send_line(record, "STARTTLS")
    reply = await run.read(step, record)
    run.judge(step, reply, record=record)
    if not (isinstance(reply, Reply) and reply.code == 220):
        return  # the scenario asserted a refusal; nothing to upgrade
    options = run.base_endpoint.tls_options.overlay(action.tls_options)
    assert run.session is not None
    server_name = options.server_name or run.render(run.base_endpoint.host or "")
    try:
        await run.session.starttls(make_context(options), server_name, run.timeout(step))
    finally:
        _note_injection(run, step)
    record.result.tls = run.session.tls
    run.builtins["caps"] = {}  # RFC 3207: forget what was learnt before TLS
    _judge_tls(step, run)


def _note_injection(run: ScenarioRun, step: m.Step) -> None:
    if run.session and run.session.injected:
        run.violations.append(
            f"{step.path}: server sent data after its STARTTLS reply, "
            "before TLS (possible response injection)"
        )


def _judge_tls(step: m.Step, run: ScenarioRun) -> None:
    if step.expect.tls and run.session is not None:
        problem = expectations.check_tls(step.expect.tls, run.session.tls)
        if problem:
            raise StepFailed(problem)


async def auth(run: ScenarioRun, step: m.Step, action: m.Auth, record: _Record) -> None:
    username = run.render(action.username)
    secret = run.render(action.password or action.token or "")
    run.tracker.add(secret)
    mechanism = action.mechanism
    run.label(record, f"AUTH {mechanism} as {username}")
    if mechanism in ("PLAIN", "XOAUTH2"):
        payload = (
            protocol.auth_plain(username, secret, run.render(action.authzid or ""))
            if mechanism == "PLAIN"
            else protocol.xoauth2(username, secret)
        )
        run.tracker.add_payload(payload)
        await run.send_line(record, f"AUTH {mechanism} {payload}", f"AUTH {mechanism} {REDACTED}")
        reply = await run.read(step, record)
        if mechanism == "XOAUTH2" and isinstance(reply, Reply) and reply.code == 334:
            await run.send_line(record, "", "")  # the error challenge wants an empty reply
            reply = await run.read(step, record)
    else:
        reply = await _auth_challenges(run, step, record, mechanism, username, secret)
    run.judge(step, reply, record=record)


async def _auth_challenges(
    run: ScenarioRun, step: m.Step, record: _Record, mechanism: str, username: str, secret: str
) -> Reply | Closed:
    await run.send_line(record, f"AUTH {mechanism}")
    reply = await run.read(step, record)
    # LOGIN: the user name (no secret, shown) then the password; CRAM-MD5: one answer
    answers = [protocol.b64(username), None] if mechanism == "LOGIN" else [None]
    for n, answer in enumerate(answers):
        if not (isinstance(reply, Reply) and reply.code == 334):
            return reply  # refused early (530, 538, 504): that is the final reply
        if answer is None:
            answer = (
                protocol.b64(secret)
                if mechanism == "LOGIN"
                else protocol.cram_md5_response(username, secret, reply.text.strip())
            )
            run.tracker.add_payload(answer)
        await run.send_line(record, answer, answer if mechanism == "LOGIN" and n == 0 else REDACTED)
        reply = await run.read(step, record)
    return reply


async def data(run: ScenarioRun, step: m.Step, action: m.Data, record: _Record) -> None:
    run.label(record, "DATA")
    # render first: a template error must not leave the server waiting for message text
    payload = protocol.message_payload(_message_text(run, action))
    await run.send_line(record, "DATA")
    reply = await run.read(step, record)
    if not (isinstance(reply, Reply) and reply.code == 354):
        if step.expect.codes is None:
            raise StepFailed(f"expected 354 to DATA, got {expectations.got(reply)}")
        run.judge(step, reply, record=record)  # e.g. expect: 554 for "no valid recipients"
        return
    await run.send(record, payload, _payload_display(payload))
    run.judge(step, await run.read(step, record), record=record)


def _message_text(run: ScenarioRun, action: m.Data) -> str:
    if action.text is not None:
        text = run.render(action.text)
        head, sep, _ = text.replace("\r\n", "\n").partition("\n\n")
        names = {line.split(":", 1)[0].strip().lower() for line in head.split("\n") if ":" in line}
        extra = _missing_headers(names)
        return "".join(f"{k}: {v}\n" for k, v in extra) + text if sep else text
    headers = [(name, _header_value(name, run.render(value))) for name, value in action.headers]
    headers += _missing_headers({name.lower() for name, _ in headers})
    body = run.render(action.body)
    return "".join(f"{name}: {value}\n" for name, value in headers) + "\n" + body


def _header_value(name: str, value: str) -> str:
    """A rendered header value may not break its line: CR/LF from a variable would inject
    headers (write the whole message as text to send unusual headers on purpose)."""
    if "\r" in value or "\n" in value:
        raise LocalProtocolError(
            f"header {name} contains CR or LF after rendering; use the text form of data "
            "to send folded or unusual headers"
        )
    return value


def _missing_headers(present: set[str]) -> list[tuple[str, str]]:
    extra = []
    if "date" not in present:
        extra.append(("Date", email.utils.formatdate(localtime=False)))
    if "message-id" not in present:
        extra.append(("Message-ID", f"<{uuid.uuid4().hex}@smtpscript.invalid>"))
    return extra


async def sleep(run: ScenarioRun, step: m.Step, action: m.Sleep, record: _Record) -> None:
    run.label(record, f"sleep {action.seconds:g} s")
    await asyncio.sleep(action.seconds)


async def read(run: ScenarioRun, step: m.Step, action: m.Read, record: _Record) -> None:
    run.label(record, "read")
    run.judge(step, await run.read(step, record), record=record)


HANDLERS: dict[type, Callable[..., Any]] = {
    m.Connect: connect,
    m.Send: send,
    m.Raw: raw,
    m.Greet: greet,
    m.StartTls: starttls,
    m.Auth: auth,
    m.Data: data,
    m.Sleep: sleep,
    m.Read: read,
}


def _payload_display(payload: bytes, max_lines: int = 40) -> str:
    lines = payload.split(b"\r\n")[:-1]
    shown = [protocol.escape_bytes(line) for line in lines[:max_lines]]
    if len(lines) > max_lines:
        shown.append(f"... {len(lines) - max_lines} more lines ({len(payload)} bytes in all)")
    return "\n".join(shown)

"""XOAUTH2 against a scripted server that checks the exact SASL payload (neither the
sandbox nor the test Postfix offers XOAUTH2): success, and the error-challenge path."""

from __future__ import annotations

import base64
import json

from hostile import Conn, Hostile
from scenario_helpers import write

from smtpscript.loading import load_paths
from smtpscript.runner import RunOptions, run
from smtpscript.targets import parse_target

GOOD_TOKEN = "ya29.good-token-1"
EXPECTED = f"user=alice@example.org\x01auth=Bearer {GOOD_TOKEN}\x01\x01".encode()
ERROR_CHALLENGE = base64.b64encode(json.dumps({"status": "401"}).encode())


async def xoauth2_server(conn: Conn) -> None:
    await conn.send(b"220 oauth.test ESMTP\r\n")
    while line := await conn.line():
        words = line.split()
        verb = words[0].upper() if words else b""
        if verb == b"EHLO":
            await conn.send(b"250-oauth.test\r\n250 AUTH XOAUTH2\r\n")
        elif verb == b"AUTH" and len(words) == 3 and words[1] == b"XOAUTH2":
            if base64.b64decode(words[2]) == EXPECTED:
                await conn.send(b"235 2.7.0 Accepted\r\n")
                continue
            await conn.send(b"334 " + ERROR_CHALLENGE + b"\r\n")
            empty = await conn.line()  # RFC 7628: the client answers the challenge empty
            await conn.send(b"535 5.7.8 Bad credentials\r\n" if empty == b"\r\n" else b"501 x\r\n")
        elif verb == b"QUIT":
            await conn.send(b"221 2.0.0 Bye\r\n")
            return
        else:
            await conn.send(b"502 5.5.2 Not here\r\n")


SCENARIO = """
smtpscript: 1
title: XOAUTH2
steps:
  - ehlo: client.example
  - auth: {{mechanism: XOAUTH2, username: alice@example.org, token: "{{{{ env.TOKEN }}}}"}}
    expect: {expect}
  - send: QUIT
    expect: 221
"""


def _run(tmp_path, server: Hostile, token: str, expect: int):
    loaded = load_paths([write(tmp_path, SCENARIO.format(expect=expect))])
    assert not loaded.problems
    target = parse_target(f"{server.host}:{server.port}")
    options = RunOptions(environ={"TOKEN": token})
    return run(loaded.scenarios, [target], options).scenarios[0]


def test_xoauth2_sends_the_exact_payload_and_is_accepted(tmp_path):
    with Hostile(xoauth2_server) as server:
        result = _run(tmp_path, server, GOOD_TOKEN, 235)
    assert result.verdict == "passed", result.reason
    shown = [e.text for e in result.transcript if e.direction == "C"]
    assert "AUTH XOAUTH2 ********" in shown
    assert all(GOOD_TOKEN not in text for text in shown)


def test_xoauth2_error_challenge_is_answered_empty_then_535_is_judged(tmp_path):
    with Hostile(xoauth2_server) as server:
        result = _run(tmp_path, server, "expired-token", 535)
    assert result.verdict == "passed", result.reason
    auth = next(s for s in result.steps if s.kind == "auth")
    assert [r.code for r in auth.replies] == [334, 535]
    assert auth.replies[-1].status == "5.7.8"

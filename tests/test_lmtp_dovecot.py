"""smtpscript against real servers for the extension scenarios: Dovecot's LMTP (TCP and a
UNIX socket) judged per recipient, and the SMTPUTF8 and DSN example scenarios on Postfix."""

from __future__ import annotations

import pytest
from dovecot_env import DovecotServer
from postfix_env import PostfixServer
from scenario_helpers import SCENARIOS, explain, run_file, write

from smtpscript.targets import parse_target

LMTP = """smtpscript: 1
title: LMTP, one reply per accepted recipient
steps:
  - lhlo: client.test
  - send: "MAIL FROM:<probe@client.test>"
  - send: "RCPT TO:<alice@{domain}>"
  - send: "RCPT TO:<nobody@{domain}>"
    expect: 550
    status: 5.1.1
  - send: "RCPT TO:<{last}@{domain}>"
  - data: "Subject: per recipient\\n\\n.dot line\\nhello\\n"
    expect_each: [250, {last_code}]
  - send: QUIT
    expect: 221
"""


@pytest.mark.dovecot
@pytest.mark.parametrize("over", ["tcp", "unix"])
@pytest.mark.parametrize(("last", "last_code"), [("bob", 250), ("full", 552)])
def test_three_recipients_one_unknown_judged_per_recipient(
    tmp_path, dovecot: DovecotServer, over: str, last: str, last_code: int
):
    path = write(tmp_path, LMTP.format(domain=dovecot.domain, last=last, last_code=last_code))
    where = f"unix:{dovecot.socket_path}" if over == "unix" else f"lmtp://{dovecot.host}:"
    target = parse_target(where + ("" if over == "unix" else str(dovecot.port)))
    result = run_file(path, target)
    assert result.verdict == "passed", explain(result)
    rcpts = [s.replies[-1].code for s in result.steps if s.name.startswith("RCPT")]
    assert rcpts == [250, 550, 250]
    data = next(step for step in result.steps if step.kind == "data")
    assert [reply.code for reply in data.replies] == [354, 250, last_code]
    stored = dovecot.find_message("alice", b"per recipient")
    assert stored is not None and b"\r\n.dot line\r\n" in stored  # dot-unstuffed, CRLF


@pytest.mark.postfix
@pytest.mark.parametrize("name", ["smtputf8.yaml", "dsn-notify.yaml"])
def test_extension_scenarios_against_postfix(postfix: PostfixServer, name: str):
    target = parse_target(f"{postfix.host}:{postfix.port}")
    result = run_file(
        SCENARIOS / "extensions" / name, target, recipient=f"alice@{postfix.domain}"
    )
    assert result.verdict == "passed", explain(result)
    # every step ran and passed, but the skip step, whose when: is false here
    judged = [step for step in result.steps if step.kind != "skip"]
    assert all(step.verdict == "passed" for step in judged), explain(result)
    assert result.protocol_violations == [] and result.warnings == []

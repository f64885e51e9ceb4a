"""LMTP replies judged per recipient, UNIX-socket targets, and commands checked against the
extensions the server advertised (SMTPUTF8, DSN). Scripted servers on real sockets."""

from __future__ import annotations

import textwrap
from pathlib import Path

from hostile import Conn, Hostile

from smtpscript.loading import load_paths
from smtpscript.results import ScenarioResult
from smtpscript.runner import run
from smtpscript.targets import parse_target

LHLO = b"250-lmtp.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"


async def lmtp(conn: Conn) -> None:
    """An LMTP server: nobody@ is refused at RCPT; bob's delivery fails after the message."""
    await conn.send(b"220 lmtp.test LMTP\r\n")
    recipients: list[bytes] = []
    while line := await conn.line():
        verb = line.split(b" ")[0].split(b":")[0].upper().strip()
        if verb == b"LHLO":
            await conn.send(LHLO)
        elif verb == b"RCPT":
            ok = b"nobody" not in line
            recipients += [line] if ok else []
            await conn.send(b"250 2.1.5 ok\r\n" if ok else b"550 5.1.1 no such user\r\n")
        elif verb == b"DATA":
            await conn.send(b"354 go\r\n")
            while (await conn.line()) not in (b".\r\n", b""):
                pass
            for rcpt in recipients:
                full = b"bob" in rcpt
                await conn.send(b"452 4.2.2 over quota\r\n" if full else b"250 2.0.0 saved\r\n")
            recipients = []
        elif verb == b"QUIT":
            await conn.send(b"221 bye\r\n")
            return
        else:
            await conn.send(b"250 ok\r\n")


def scenario(tmp_path: Path, data_key: str) -> Path:
    """Three recipients, one refused at RCPT; ``data_key`` judges the end of the message."""
    path = tmp_path / "lmtp.yaml"
    steps = [
        "- lhlo: client.test",
        '- send: "MAIL FROM:<a@client.test>"',
        '- send: "RCPT TO:<alice@lmtp.test>"',
        '- send: "RCPT TO:<nobody@lmtp.test>"',
        "  expect: 550",
        '- send: "RCPT TO:<bob@lmtp.test>"',
        '- data: "Subject: hi\\n\\nhello\\n"',
        f"  {data_key}",
        "- send: QUIT",
        "  expect: 221",
    ]
    body = "".join(f"  {line}\n" for line in steps)
    path.write_text(f"smtpscript: 1\ntitle: per recipient\nsteps:\n{body}", encoding="utf-8")
    return path


def run_on(path: Path, target: str) -> ScenarioResult:
    loaded = load_paths([path])
    assert not loaded.problems, [str(p) for p in loaded.problems]
    return run(loaded.scenarios, [parse_target(target)]).scenarios[0]


def test_each_accepted_recipient_gets_its_own_reply_in_rcpt_order(tmp_path):
    path = scenario(tmp_path, "expect_each: [250, 452]")
    with Hostile(lmtp) as server:
        result = run_on(path, f"lmtp://127.0.0.1:{server.port}")
    assert result.verdict == "passed", result.reason
    data = next(step for step in result.steps if step.kind == "data")
    assert [reply.code for reply in data.replies] == [354, 250, 452]
    assert data.expected == "per recipient 250, 452"


def test_expect_applies_to_each_recipient_and_names_the_one_that_failed(tmp_path):
    path = scenario(tmp_path, "expect: 250")
    with Hostile(lmtp) as server:
        result = run_on(path, f"lmtp://127.0.0.1:{server.port}")
    assert result.verdict == "failed"
    data = next(step for step in result.steps if step.kind == "data")
    assert data.message == "recipient 2 <bob@lmtp.test>: expected 250, got 452 4.2.2 over quota"
    assert result.steps[-1].kind == "data"  # a failed step ends the scenario


def test_lmtp_over_a_unix_socket(tmp_path):
    path = scenario(tmp_path, "expect_each: [250, 452]")
    socket_path = str(tmp_path / "lmtp.sock")
    with Hostile(lmtp, unix_path=socket_path):
        result = run_on(path, f"unix:{socket_path}")
    assert result.verdict == "passed", result.reason
    assert result.steps[0].name == "connect (implicit)"
    assert result.transcript[0].text == f"connected to unix:{socket_path}"


async def no_extensions(conn: Conn) -> None:
    await conn.send(b"220 plain.test ESMTP\r\n")
    await conn.serve({b"EHLO": b"250-plain.test\r\n250 PIPELINING\r\n"})


def test_utf8_without_smtputf8_and_dsn_without_dsn_are_noted(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        textwrap.dedent(
            """
            smtpscript: 1
            title: extensions not offered
            steps:
              - ehlo: client.test
              - send: "MAIL FROM:<jörg@example.org> SMTPUTF8"
              - send: "RCPT TO:<alice@plain.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b"
              - send: QUIT
                expect: 221
            """
        ),
        encoding="utf-8",
    )
    with Hostile(no_extensions) as server:
        result = run_on(path, f"127.0.0.1:{server.port}")
    assert result.verdict == "passed", result.reason
    assert result.protocol_violations == [
        "steps[1]: MAIL FROM carries non-ASCII but the server did not advertise SMTPUTF8 "
        "(RFC 6531)"
    ]
    assert result.warnings == [
        "steps[2]: DSN parameters (NOTIFY, ORCPT) used but the server did not advertise DSN "
        "(RFC 3461)"
    ]


def test_expect_each_belongs_to_a_message_step(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "smtpscript: 1\ntitle: t\nsteps:\n  - send: NOOP\n    expect_each: [250]\n",
        encoding="utf-8",
    )
    problems = [str(p) for p in load_paths([path]).problems]
    assert problems == [
        f"{path}:5:5: steps[0].expect_each: 'expect_each' judges the per-recipient replies of "
        "LMTP: it goes with a data or bdat step"
    ]

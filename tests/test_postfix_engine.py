"""The engine against a real Postfix on loopback (tests/postfix/setup.sh; `postfix` fixture).

What only a real MTA shows: its banner and EHLO, delivery to a Maildir on disk
(byte-exact body, dot-stuffing undone by the server), relay refusal for an
outsider, unknown users, and RFC 2920 pipelining.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from smtpscript.loading import load_paths
from smtpscript.model import Endpoint, Target, TlsOptions
from smtpscript.results import ScenarioResult
from smtpscript.runner import RunOptions, run

pytestmark = pytest.mark.postfix

REPO = Path(__file__).resolve().parent.parent
DELIVERY_WAIT = 15.0  # seconds for Postfix to move a queued message into the Maildir


def target_of(postfix) -> Target:  # type: ignore[no-untyped-def]
    endpoint = Endpoint(
        host=postfix.host, port=postfix.port, tls_options=TlsOptions(ca_file=postfix.ca_file)
    )
    return Target(name="postfix", endpoint=endpoint)


def run_file(path: Path, postfix, **overrides: str) -> ScenarioResult:  # type: ignore[no-untyped-def]
    loaded = load_paths([path], extra_names=overrides)
    assert not loaded.problems, [str(p) for p in loaded.problems]
    options = RunOptions(overrides=dict(overrides))
    return run(loaded.scenarios, [target_of(postfix)], options).scenarios[0]


def run_yaml(tmp_path: Path, body: str, postfix, **overrides: str) -> ScenarioResult:  # type: ignore[no-untyped-def]
    path = tmp_path / "postfix.yaml"
    text = "smtpscript: 1\ntitle: postfix test\n" + textwrap.dedent(body).lstrip()
    path.write_text(text, encoding="utf-8")
    return run_file(path, postfix, **overrides)


def delivered(postfix, queue_id: str) -> bytes:  # type: ignore[no-untyped-def]
    """The Maildir file of the message Postfix queued as ``queue_id`` (waits for delivery)."""
    new = postfix.maildir / postfix.domain / "alice" / "new"
    marker = f" id {queue_id}".encode()
    deadline = time.monotonic() + DELIVERY_WAIT
    while time.monotonic() < deadline:
        for path in new.glob("*") if new.is_dir() else ():
            data = path.read_bytes()
            if marker in data.split(b"\n\n", 1)[0]:
                return data
        time.sleep(0.1)
    raise AssertionError(f"message {queue_id} not in {new} after {DELIVERY_WAIT:g} s")


def headers_and_body(message: bytes) -> tuple[dict[str, str], bytes]:
    head, _, body = message.partition(b"\n\n")
    headers: dict[str, str] = {}
    for line in head.decode().split("\n"):
        if line[:1] not in (" ", "\t"):
            name, _, value = line.partition(":")
            headers.setdefault(name.lower(), value.strip())
    return headers, body


def test_banner_and_ehlo_are_parsed(tmp_path, postfix):
    result = run_yaml(
        tmp_path,
        """
        steps:
          - connect: {}
            expect: 220
            match: "ESMTP Postfix$"
          - ehlo: client.example.org
          - send: NOOP
            name: capabilities seen
            when: "'STARTTLS' in caps and 'PIPELINING' in caps and caps.SIZE | int > 0"
          - send: NOOP
            name: no AUTH for an outsider before TLS
            when: "'AUTH' in caps"
          - starttls: {}
            tls: {verified: true}
          - ehlo: client.example.org
          - send: NOOP
            name: AUTH offered after TLS
            when: "'AUTH' in caps and 'PLAIN' in caps.AUTH and 'STARTTLS' not in caps"
        """,
        postfix,
    )
    assert result.verdict == "passed", result.reason
    names = {s.name: s.verdict for s in result.steps}
    assert names["capabilities seen"] == "passed"
    assert names["no AUTH for an outsider before TLS"] == "skipped"
    assert names["AUTH offered after TLS"] == "passed"
    assert result.steps[0].replies[0].lines == ["mx.postfix.test ESMTP Postfix"]
    ehlo = result.steps[1].replies[0].lines
    assert ehlo[0] == "mx.postfix.test"
    assert {"PIPELINING", "STARTTLS", "ENHANCEDSTATUSCODES"} <= set(ehlo)
    assert any(line.startswith("SIZE ") for line in ehlo)
    tls = result.steps[4].tls
    assert tls is not None and tls.verified and tls.version in ("TLSv1.2", "TLSv1.3")
    assert result.protocol_violations == []


def test_telnet_delivery_scenario_lands_in_the_maildir(postfix):
    recipient = f"alice@{postfix.domain}"
    path = REPO / "scenarios" / "basics" / "telnet-delivery.yaml"
    result = run_file(path, postfix, recipient=recipient)
    assert result.verdict == "passed", result.reason
    data_step = next(s for s in result.steps if s.kind == "data")
    queue_id = data_step.captures["queue_id"]
    assert data_step.replies[-1].lines == [f"2.0.0 Ok: queued as {queue_id}"]
    headers, body = headers_and_body(delivered(postfix, queue_id))
    assert body == b"Where are you server?\n"
    assert headers["return-path"] == "<guyt@exchguy.example>"
    assert headers["delivered-to"] == recipient
    assert headers["to"] == f"<{recipient}>"
    assert headers["subject"] == "smtpscript delivery check"
    assert headers["message-id"].endswith("@smtpscript.invalid>")
    assert headers["date"]
    assert "received" in headers  # Postfix added its trace; the id matched in delivered()


def test_dot_lines_arrive_byte_exact(tmp_path, postfix):
    result = run_yaml(
        tmp_path,
        """
        vars:
          to: alice@postfix.test
        steps:
          - ehlo: client.example.org
          - send: "MAIL FROM:<probe@example.org>"
          - send: "RCPT TO:<{{ to }}>"
          - data:
              headers:
                Subject: dots
              body: |
                first line
                .leading dot
                ..two dots
                .
                . space
                last line
            capture:
              queue_id: "queued as ([A-Z0-9]+)"
          - send: QUIT
            expect: 221
        """,
        postfix,
    )
    assert result.verdict == "passed", result.reason
    wire = [e.text for e in result.transcript if e.direction == "C"]
    start = wire.index("first line")
    assert wire[start : start + 7] == [
        "first line", "..leading dot", "...two dots", "..", ".. space", "last line", ".",
    ]  # fmt: skip
    _, body = headers_and_body(delivered(postfix, result.steps[4].captures["queue_id"]))
    assert body == b"first line\n.leading dot\n..two dots\n.\n. space\nlast line\n"


def test_no_open_relay_scenario_passes(postfix):
    result = run_file(REPO / "scenarios" / "relay" / "no-open-relay.yaml", postfix)
    assert result.verdict == "passed", result.reason
    rcpt = next(s for s in result.steps if s.name.startswith("RCPT TO:"))
    reply = rcpt.replies[0]
    assert (reply.code, reply.status) == (554, "5.7.1")
    assert reply.lines == ["5.7.1 <victim@example.net>: Relay access denied"]


def test_unknown_recipient_scenario_passes(postfix):
    path = REPO / "scenarios" / "basics" / "unknown-recipient.yaml"
    result = run_file(path, postfix, nobody=f"nobody-x@{postfix.domain}")
    assert result.verdict == "passed", result.reason
    rcpt = next(s for s in result.steps if s.name.startswith("RCPT TO:"))
    assert (rcpt.replies[0].code, rcpt.replies[0].status) == (550, "5.1.1")


def test_pipeline_against_postfix(tmp_path, postfix):
    result = run_yaml(
        tmp_path,
        """
        steps:
          - ehlo: client.example.org
          - send: NOOP
            when: "'PIPELINING' in caps"
          - pipeline:
              - send: "MAIL FROM:<probe@example.org>"
                expect: 250
                status: 2.1.0
              - send: "RCPT TO:<alice@postfix.test>"
                expect: 250
                status: 2.1.5
              - send: "RCPT TO:<victim@example.net>"
                expect: 554
                status: 5.7.1
              - send: "RCPT TO:<nobody-y@postfix.test>"
                expect: 550
                status: 5.1.1
              - send: RSET
                expect: 250
          - send: QUIT
            expect: 221
        """,
        postfix,
    )
    assert result.verdict == "passed", result.reason
    inner = [s for s in result.steps if ".pipeline[" in s.path]
    assert [s.replies[0].code for s in inner] == [250, 250, 554, 550, 250]
    assert all(s.verdict == "passed" for s in inner)
    pipelined = [e for e in result.transcript if e.direction == "C"][2:7]
    assert [e.text.split(":")[0] for e in pipelined] == ["MAIL FROM", "RCPT TO", "RCPT TO",
                                                        "RCPT TO", "RSET"]  # fmt: skip
    assert len({e.t for e in pipelined}) == 1  # written in one go

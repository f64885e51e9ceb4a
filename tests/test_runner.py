"""The runner against the embedded sandbox, in-process over real loopback sockets.

Scenarios are written as YAML to tmp_path and loaded like a user's, so every
test also goes through validation and model building.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
from pathlib import Path

import pytest

from smtpscript import results
from smtpscript.loading import load_paths
from smtpscript.model import Target
from smtpscript.results import ScenarioResult, StepResult
from smtpscript.runner import RunOptions, run
from smtpscript.sandbox import Sandbox, StoredMessage

HEAD = "smtpscript: 1\ntitle: {title}\n"


@pytest.fixture
def target(sandbox_target: Target) -> Target:
    """The shared sandbox (conftest) as a target, its CA trusted."""
    return sandbox_target


def write(tmp_path: Path, body: str, title: str = "runner test", name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(HEAD.format(title=title) + textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


def run_yaml(tmp_path: Path, body: str, target: Target, **options: object) -> ScenarioResult:
    path = write(tmp_path, body)
    overrides = options.get("overrides") or {}
    loaded = load_paths([path], extra_names=overrides)  # type: ignore[arg-type]
    assert not loaded.problems, [str(p) for p in loaded.problems]
    return run(loaded.scenarios, [target], RunOptions(**options)).scenarios[0]  # type: ignore[arg-type]


def verdicts(result: ScenarioResult) -> list[tuple[str, str]]:
    return [(s.path, s.verdict) for s in result.steps]


def sent(result: ScenarioResult) -> list[str]:
    return [e.text for e in result.transcript if e.direction == "C"]


def step(result: ScenarioResult, path: str) -> StepResult:
    return next(s for s in result.steps if s.path == path)


def stored(sandbox: Sandbox, marker: str) -> StoredMessage:
    found = [m for m in sandbox.messages if marker.encode() in m.data]
    assert len(found) == 1, f"{len(found)} messages contain {marker!r}"
    return found[0]


# --- connect, send, raw, read, expect: closed ----------------------------------------------


def test_conversation_with_explicit_connect_and_close_after_quit(tmp_path, target, sandbox):
    result = run_yaml(
        tmp_path,
        """
        steps:
          - connect: {}
            expect: 220
            match: ESMTP
          - send: NOOP
            expect: 250
            status: 2.0.0
          - send: QUIT
            expect: 221
          - read: {}
            expect: closed
        """,
        target,
    )
    assert result.verdict == "passed", result.reason
    assert [s.kind for s in result.steps] == ["connect", "send", "send", "read"]
    assert result.steps[0].name == f"connect {sandbox.host}:{sandbox.port}"
    assert result.steps[0].replies[0].lines == ["sandbox.test ESMTP smtpscript sandbox"]
    assert result.steps[3].replies[0].code is None  # closed: no reply
    assert sent(result) == ["NOOP", "QUIT"]  # no second QUIT from the runner
    assert result.transcript[-1].text == "connection closed by the server"
    times = [e.t for e in result.transcript]
    assert times == sorted(times)


def test_connect_is_implicit_before_the_first_step(tmp_path, target):
    result = run_yaml(tmp_path, "steps:\n  - send: NOOP\n", target)
    assert result.verdict == "passed", result.reason
    assert [(s.kind, s.name) for s in result.steps] == [
        ("connect", "connect (implicit)"),
        ("send", "NOOP"),
    ]
    assert sent(result) == ["NOOP", "QUIT"]  # the runner says goodbye itself


def test_raw_with_and_without_expect_then_read(tmp_path, target):
    result = run_yaml(
        tmp_path,
        r"""
        steps:
          - ehlo: client.test
          - raw: "NOOP\r\n"
            expect: 250
          - raw: "NOOP\r\nRSET\r\n"
          - read: {}
            expect: 250
          - read: {}
            expect: 250
            match: "(?i)ok"
        """,
        target,
    )
    assert result.verdict == "passed", result.reason
    raw_expect, raw_only = result.steps[2], result.steps[3]
    assert raw_expect.name == "raw NOOP\\r\\n"
    assert len(raw_expect.replies) == 1
    assert raw_only.replies == []  # no reply read without expect
    assert raw_only.sent == ["NOOP\\r\\nRSET\\r\\n"]
    assert sent(result)[-2:] == ["NOOP\\r\\nRSET\\r\\n", "QUIT"]  # raw bytes shown escaped


# --- greetings and capabilities ------------------------------------------------------------------


def test_ehlo_capabilities_drive_when_and_templates(tmp_path, target):
    result = run_yaml(
        tmp_path,
        """
        steps:
          - ehlo: client.test
          - send: "MAIL FROM:<a@client.test> SIZE={{ caps.SIZE }}"
            when: "'STARTTLS' in caps and caps.SIZE == '10240000'"
          - send: "AUTH PLAIN"
            name: auth before TLS
            when: "'AUTH' in caps"
          - send: RSET
            when: "'PIPELINING' in caps and 'SIZE' in caps"
        """,
        target,
    )
    assert result.verdict == "passed", result.reason
    ehlo = result.steps[1]
    assert ehlo.sent == ["EHLO client.test"]
    assert ehlo.replies[0].lines[:2] == ["sandbox.test", "SIZE 10240000"]
    assert result.steps[2].sent == ["MAIL FROM:<a@client.test> SIZE=10240000"]
    assert (result.steps[3].verdict, result.steps[3].message) == (
        "skipped",
        "when: 'AUTH' in caps is false",
    )
    assert sent(result) == ["EHLO client.test", "MAIL FROM:<a@client.test> SIZE=10240000",
                            "RSET", "QUIT"]  # fmt: skip


def test_helo_greets_without_capabilities(tmp_path, target):
    result = run_yaml(
        tmp_path,
        """
        steps:
          - helo: old.client.test
            expect: 250
          - send: NOOP
            name: would need caps
            when: "caps | length > 0"
          - send: "MAIL FROM:<a@client.test>"
        """,
        target,
    )
    assert result.verdict == "passed", result.reason
    assert result.steps[1].sent == ["HELO old.client.test"]
    assert result.steps[1].replies[0].lines == ["sandbox.test"]
    assert result.steps[2].verdict == "skipped"


def test_starttls_and_implicit_tls_record_verified_facts(tmp_path, target):
    result = run_yaml(
        tmp_path,
        """
        steps:
          - ehlo: client.test
          - starttls: {server_name: localhost}
            tls: {verified: true, min_version: TLSv1.2}
          - ehlo: client.test
          - send: NOOP
            name: STARTTLS must not be offered twice
            when: "'STARTTLS' in caps"
            expect: 554
          - connect: {tls: implicit, server_name: localhost}
            tls: {verified: true}
          - ehlo: client.test
        """,
        target,
    )
    assert result.verdict == "passed", result.reason
    starttls, implicit = result.steps[2], result.steps[5]
    assert starttls.tls is not None and starttls.tls.verified and starttls.tls.version
    assert result.steps[4].verdict == "skipped"  # caps were re-learnt after TLS
    assert implicit.tls is not None and implicit.tls.verified
    assert result.protocol_violations == []


# --- DATA ------------------------------------------------------------------------------------

BODY_LINES = ["first line", ".leading dot", "..two dots", ".", "last line"]


def test_data_text_is_dot_stuffed_on_the_wire_and_stored_byte_exact(tmp_path, target, sandbox):
    result = run_yaml(
        tmp_path,
        """
        steps:
          - ehlo: client.test
          - send: "MAIL FROM:<a@client.test>"
          - send: "RCPT TO:<alice@sandbox.test>"
          - data: |
              From: <a@client.test>
              To: <alice@sandbox.test>
              Subject: text-form-7c1

              first line
              .leading dot
              ..two dots
              .
              last line
            capture:
              queue_id: "queued as ([A-F0-9]+)"
        """,
        target,
    )
    assert result.verdict == "passed", result.reason
    message = stored(sandbox, "text-form-7c1")
    head, _, body = message.data.partition(b"\r\n\r\n")
    assert body == ("\r\n".join(BODY_LINES) + "\r\n").encode()
    headers = head.decode().split("\r\n")
    assert headers[:2] == ["Date: " + headers[0][6:], "Message-ID: " + headers[1][12:]]
    assert re.fullmatch(r"Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [-+]\d{4}", headers[0])
    assert re.fullmatch(r"Message-ID: <[0-9a-f]{32}@smtpscript\.invalid>", headers[1])
    assert headers[2:] == ["From: <a@client.test>", "To: <alice@sandbox.test>",
                           "Subject: text-form-7c1"]  # fmt: skip
    assert message.rcpt_tos == ("alice@sandbox.test",)
    data = result.steps[4]
    assert data.captures == {"queue_id": message.queue_id}
    wire = sent(result)
    body_sent = wire[wire.index("first line") : wire.index("last line") + 2]
    assert body_sent == ["first line", "..leading dot", "...two dots", "..", "last line", "."]


def test_data_headers_and_body_keeps_given_date_and_message_id(tmp_path, target, sandbox):
    result = run_yaml(
        tmp_path,
        """
        vars:
          who: bob@sandbox.test
        steps:
          - ehlo: client.test
          - send: "MAIL FROM:<a@client.test>"
          - send: "RCPT TO:<{{ who }}>"
          - data:
              headers:
                Subject: headers-form-51d
                To: "<{{ who }}>"
                Message-ID: "<fixed-id@client.test>"
              body: "one\\n.\\n..\\nend"
        """,
        target,
    )
    assert result.verdict == "passed", result.reason
    message = stored(sandbox, "headers-form-51d")
    lines = message.data.decode().split("\r\n")
    date = next(line for line in lines if line.startswith("Date: "))
    assert lines == [
        "Subject: headers-form-51d",
        "To: <bob@sandbox.test>",
        "Message-ID: <fixed-id@client.test>",
        date,
        "",
        "one",
        ".",
        "..",
        "end",
        "",
    ]


def test_data_refused_before_354_can_be_the_expected_outcome(tmp_path, target):
    result = run_yaml(
        tmp_path,
        """
        steps:
          - ehlo: client.test
          - send: "MAIL FROM:<a@client.test>"
          - data: "Subject: none\\n\\nno recipients"
            name: DATA without recipients
            expect: 503
          - data: "Subject: none\\n\\nno recipients"
            name: DATA without recipients, default expectation
        """,
        target,
    )
    assert result.verdict == "failed"
    assert verdicts(result)[3:] == [("steps[2]", "passed"), ("steps[3]", "failed")]
    assert result.steps[4].message == "expected 354 to DATA, got 503 5.5.1 Error: need RCPT command"
    assert "no recipients" not in sent(result)  # the content never went out


# --- pipeline ------------------------------------------------------------------------------


def test_pipeline_writes_once_and_checks_each_reply(tmp_path, target):
    result = run_yaml(
        tmp_path,
        """
        steps:
          - ehlo: client.test
          - pipeline:
              - send: "MAIL FROM:<a@client.test>"
                expect: 250
                status: 2.1.0
              - send: "RCPT TO:<alice@sandbox.test>"
              - send: "RCPT TO:<nobody@sandbox.test>"
                expect: 550
                status: 5.1.1
              - send: "RCPT TO:<victim@example.net>"
                expect: 550
                match: relay
              - send: RSET
        """,
        target,
    )
    assert result.verdict == "passed", result.reason
    inner = result.steps[2:]
    assert [s.path for s in inner] == [f"steps[1].pipeline[{i}]" for i in range(5)]
    assert [s.replies[0].code for s in inner] == [250, 250, 550, 550, 250]
    pipelined = [e for e in result.transcript if e.direction == "C"][1:6]
    assert len({e.t for e in pipelined}) == 1  # one write for all five lines


def test_pipeline_failure_is_per_line(tmp_path, target):
    result = run_yaml(
        tmp_path,
        """
        steps:
          - ehlo: client.test
          - pipeline:
              - send: "MAIL FROM:<a@client.test>"
              - send: "RCPT TO:<victim@example.net>"
              - send: RSET
          - send: NOOP
            name: not reached
        """,
        target,
    )
    assert result.verdict == "failed"
    assert verdicts(result)[2:] == [
        ("steps[1].pipeline[0]", "passed"),
        ("steps[1].pipeline[1]", "failed"),
        ("steps[1].pipeline[2]", "passed"),
    ]
    assert result.steps[3].message == "expected 2xx or 3xx, got 550 5.7.1 Unable to relay"


# --- sleep, include, capture, when, repeat ------------------------------------------------------


def test_sleep_waits(tmp_path, target):
    result = run_yaml(tmp_path, "steps:\n  - sleep: 0.2\n  - send: NOOP\n", target)
    assert result.verdict == "passed", result.reason
    assert result.steps[0].kind == "sleep" and result.steps[0].name == "sleep 0.2 s"
    # uvloop's timers have millisecond granularity: a 200 ms sleep may end at 199.6 ms
    assert 195 <= result.steps[0].duration_ms < 2000


def test_include_with_vars(tmp_path, target):
    (tmp_path / "fragments").mkdir()
    (tmp_path / "fragments" / "hello.yaml").write_text(
        textwrap.dedent("""
            smtpscript: 1
            fragment: true
            vars:
              helo: default.client.test
              sender: default@client.test
            steps:
              - ehlo: "{{ helo }}"
              - send: "MAIL FROM:<{{ sender }}>"
            """),
        encoding="utf-8",
    )
    result = run_yaml(
        tmp_path,
        """
        vars:
          me: given.client.test
        steps:
          - include: fragments/hello.yaml
            with:
              helo: "{{ me }}"
          - send: "RCPT TO:<alice@sandbox.test>"
        """,
        target,
    )
    assert result.verdict == "passed", result.reason
    assert sent(result)[:3] == [
        "EHLO given.client.test",
        "MAIL FROM:<default@client.test>",
        "RCPT TO:<alice@sandbox.test>",
    ]
    assert [s.path for s in result.steps[1:3]] == [
        "steps[0].include.steps[0]",
        "steps[0].include.steps[1]",
    ]


def test_capture_then_use_in_a_later_step(tmp_path, target):
    result = run_yaml(
        tmp_path,
        r"""
        steps:
          - ehlo: client.test
            capture:
              domain: "^(\\S+)"
              size: "SIZE (\\d+)"
          - send: "MAIL FROM:<a@client.test> SIZE={{ size }}"
          - send: "RCPT TO:<bob@{{ domain }}>"
            expect: 250
        """,
        target,
    )
    assert result.verdict == "passed", result.reason
    assert result.steps[1].captures == {"domain": "sandbox.test", "size": "10240000"}
    assert sent(result)[1:3] == ["MAIL FROM:<a@client.test> SIZE=10240000",
                                 "RCPT TO:<bob@sandbox.test>"]  # fmt: skip


def test_capture_that_does_not_match_fails(tmp_path, target):
    result = run_yaml(
        tmp_path,
        "steps:\n  - send: NOOP\n    capture:\n      id: 'id=(\\d+)'\n",
        target,
    )
    assert result.verdict == "failed"
    assert result.steps[1].message == (
        "expected the reply to contain /id=(\\d+)/ to capture id, got 250 2.0.0 Ok"
    )


def test_repeat_counts_index_from_one(tmp_path, target):
    result = run_yaml(
        tmp_path,
        """
        steps:
          - ehlo: client.test
          - send: "MAIL FROM:<a@client.test>"
          - send: "RCPT TO:<{{ ['alice', 'bob', 'postmaster'][index - 1] }}@sandbox.test>"
            repeat: 3
            expect: 250
          - send: "VRFY user{{ index }}"
            repeat: "{{ 1 + 1 }}"
            expect: 252
        """,
        target,
    )
    assert result.verdict == "passed", result.reason
    assert [s.repeat_index for s in result.steps[3:]] == [1, 2, 3, 1, 2]
    assert sent(result)[2:7] == [
        "RCPT TO:<alice@sandbox.test>",
        "RCPT TO:<bob@sandbox.test>",
        "RCPT TO:<postmaster@sandbox.test>",
        "VRFY user1",
        "VRFY user2",
    ]


# --- judging and failing -------------------------------------------------------------------


def test_expected_vs_got_and_quit_after_a_failed_step(tmp_path, target):
    result = run_yaml(
        tmp_path,
        """
        steps:
          - ehlo: client.test
          - send: "MAIL FROM:<a@client.test>"
          - send: "RCPT TO:<alice@sandbox.test>"
            expect: [550, 554]
          - send: NOOP
            name: never sent
        """,
        target,
    )
    assert result.verdict == "failed"
    message = "expected 550 or 554, got 250 2.1.5 Recipient OK"
    assert result.steps[3].message == message
    # the reason names where the step is written, then which step it is
    assert result.reason == f"{result.file}:6: steps[2] (RCPT TO:<alice@sandbox.test>): {message}"
    assert len(result.steps) == 4  # stopped at the failure
    tail = [(e.direction, e.text) for e in result.transcript][-3:]
    assert tail == [("S", "250 2.1.5 Recipient OK"), ("C", "QUIT"), ("S", "221 2.0.0 Bye")]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("expect: [550, 554]\n    status: 5.7.x\n    match: '(?i)relay'", None),
        ("expect: 554", "expected 554, got 550 5.7.1 Unable to relay"),
        (
            "expect: 5xx\n    status: 5.1.x",
            "expected status 5.1.x, got 5.7.1 in 550 5.7.1 Unable to relay",
        ),
        (
            "expect: 5xx\n    match: open",
            "expected a reply matching /open/, got 550 5.7.1 Unable to relay",
        ),
        (
            "expect: closed",
            "expected the server to close the connection, got 550 5.7.1 Unable to relay",
        ),
        ("{}", "expected 2xx or 3xx, got 550 5.7.1 Unable to relay"),
    ],
    ids=["all-met", "code", "status", "match", "closed", "default"],
)
def test_relay_reply_checks(tmp_path, target, keys, message):
    keys = "" if keys == "{}" else "\n    " + keys
    body = (
        "steps:\n  - ehlo: client.test\n  - send: 'MAIL FROM:<a@client.test>'\n"
        f"  - send: 'RCPT TO:<victim@example.net>'{keys}\n"
    )
    result = run_yaml(tmp_path, body, target)
    assert result.steps[3].message == message
    assert result.verdict == ("passed" if message is None else "failed")


def test_continue_on_fail_keeps_going_but_the_scenario_fails(tmp_path, target):
    result = run_yaml(
        tmp_path,
        """
        steps:
          - ehlo: client.test
          - send: "VRFY alice"
            expect: 250
            continue_on_fail: true
          - send: "MAIL FROM:<a@client.test>"
          - send: QUIT
            expect: 221
        """,
        target,
    )
    assert result.verdict == "failed"
    assert [s.verdict for s in result.steps] == ["passed", "passed", "failed", "passed", "passed"]
    assert result.reason and result.reason.startswith(
        f"{result.file}:5: steps[1] (VRFY alice): expected 250, got 252"
    )
    assert sent(result) == ["EHLO client.test", "VRFY alice", "MAIL FROM:<a@client.test>", "QUIT"]


# --- templates -------------------------------------------------------------------------------


def test_cr_lf_from_a_var_into_send_is_refused_and_nothing_is_sent(tmp_path, target, sandbox):
    smuggled = "alice@sandbox.test>\r\nRCPT TO:<victim@example.net"
    before = len(sandbox.messages)
    result = run_yaml(
        tmp_path,
        """
        steps:
          - ehlo: client.test
          - send: "MAIL FROM:<a@client.test>"
          - send: "RCPT TO:<{{ who }}>"
        """,
        target,
        overrides={"who": smuggled},
    )
    assert result.verdict == "error"
    assert result.steps[3].message == (
        "command contains CR or LF; use a raw step to send exact bytes (first one at offset 28)"
    )
    assert result.steps[3].sent == []
    assert sent(result) == ["EHLO client.test", "MAIL FROM:<a@client.test>", "QUIT"]
    assert len(sandbox.messages) == before


def test_undefined_variable_at_runtime_is_an_error(tmp_path, target):
    result = run_yaml(
        tmp_path,
        """
        steps:
          - send: NOOP
            when: "false"
            capture: {token: ".+"}
          - send: "VRFY {{ token }}"
        """,
        target,
    )
    assert result.verdict == "error"
    assert verdicts(result) == [
        ("steps[0]", "skipped"),
        ("steps[1]", "passed"),
        ("steps[1]", "error"),
    ]
    assert result.steps[2].message == "undefined variable: 'token' is undefined"
    assert sent(result) == ["QUIT"]


def test_scenario_level_when_skips_with_the_reason(tmp_path, target):
    started = time.monotonic()
    result = run_yaml(
        tmp_path,
        """
        when: "env.SMTPSCRIPT_TEST_PASSWORD is defined"
        steps:
          - send: NOOP
        """,
        target,
        environ={},
    )
    assert result.verdict == "skipped"
    assert result.reason == "when: env.SMTPSCRIPT_TEST_PASSWORD is defined is false"
    assert result.steps == [] and result.transcript == []  # never connected
    assert time.monotonic() - started < 5


def test_run_result_json_round_trip(tmp_path, target):
    path = write(tmp_path, "steps:\n  - ehlo: client.test\n  - send: NOOP\n    expect: 500\n")
    loaded = load_paths([path])
    run_result = run(loaded.scenarios, [target], RunOptions())
    text = results.to_json(run_result)
    again = results.from_dict(json.loads(text))
    assert again == run_result
    assert results.to_json(again) == text
    scenario = again.scenarios[0]
    assert scenario.verdict == "failed"
    assert scenario.steps[2].replies[0].code == 250
    assert scenario.target.name == "sandbox"


def test_many_scenarios_at_once(tmp_path, target):
    paths = [
        write(tmp_path, f"steps:\n  - send: 'VRFY user{i}'\n", title=f"run {i}", name=f"s{i}.yaml")
        for i in range(12)
    ]
    loaded = load_paths(paths)
    outcome = run(loaded.scenarios, [target], RunOptions(concurrency=5))
    assert [s.title for s in outcome.scenarios] == [f"run {i}" for i in range(12)]
    assert outcome.ok and outcome.counts()["passed"] == 12
    assert outcome.targets[0].name == "sandbox"


def test_repeat_on_an_include_and_a_pipeline_repeats_the_group(tmp_path, target):
    (tmp_path / "vrfy.yaml").write_text(
        "smtpscript: 1\nfragment: true\nsteps:\n"
        "  - send: 'VRFY a{{ index }}'\n    expect: 252\n"
        "  - send: 'VRFY b{{ index }}'\n    expect: 252\n",
        encoding="utf-8",
    )
    result = run_yaml(
        tmp_path,
        """
        steps:
          - ehlo: client.test
          - include: vrfy.yaml
            repeat: 2
          - pipeline:
              - send: "VRFY p{{ index }}"
              - send: NOOP
            repeat: 2
        """,
        target,
    )
    assert result.verdict == "passed", result.reason
    assert sent(result)[1:] == [
        "VRFY a1", "VRFY b1", "VRFY a2", "VRFY b2",
        "VRFY p1", "NOOP", "VRFY p2", "NOOP", "QUIT",
    ]  # fmt: skip


def test_expect_closed_passes_when_the_server_already_hung_up(tmp_path, target):
    body = """
        steps:
        - send: QUIT
          expect: 221
        - send: NOOP
          expect: closed
    """
    result = run_yaml(tmp_path, body, target)
    assert result.verdict == "passed", result.reason
    assert step(result, "steps[1]").replies[-1].code is None


def test_a_send_after_hang_up_without_expect_closed_fails(tmp_path, target):
    body = """
        steps:
        - send: QUIT
          expect: 221
        - send: NOOP
    """
    result = run_yaml(tmp_path, body, target)
    assert result.verdict == "failed"
    # FIN or, once our NOOP hit the closed socket, RST: both are the server hanging up
    assert step(result, "steps[1]").message in (
        "expected 2xx or 3xx, got server closed the connection",
        "expected 2xx or 3xx, got server reset the connection",
    )


def test_step_names_are_templates(tmp_path, target):
    body = """
        steps:
        - ehlo: client.example
          name: "greet {{ target.name }} as {{ who }}"
        - send: NOOP
          name: "{{ no_such_var }} stays as written"
    """
    result = run_yaml(tmp_path, body, target, overrides={"who": "auditor"})
    assert result.steps[1].name == "greet sandbox as auditor"
    assert step(result, "steps[1]").name == "{{ no_such_var }} stays as written"


def test_cr_lf_from_a_var_into_a_header_is_refused(tmp_path, target, sandbox):
    body = """
        steps:
          - ehlo: client.test
          - send: "MAIL FROM:<a@client.test>"
          - send: "RCPT TO:<alice@sandbox.test>"
          - data:
              headers: {Subject: "{{ subject }}"}
              body: header injection probe
    """
    injected = "hello\r\nBcc: victim@example.net"
    result = run_yaml(tmp_path, body, target, overrides={"subject": injected})
    assert result.verdict == "error"
    data = next(s for s in result.steps if s.kind == "data")
    assert data.message.startswith("header Subject contains CR or LF after rendering")
    assert not any(b"header injection probe" in m.data for m in sandbox.messages)
    assert "DATA" not in sent(result)  # refused before the server was told to expect a message
    assert sent(result)[-1] == "QUIT"


def test_a_reply_or_closed_expectation_names_both_when_neither_came(tmp_path, target):
    result = run_yaml(tmp_path, "steps:\n  - send: NOOP\n    expect: [221, closed]\n", target)
    assert result.verdict == "failed"
    assert result.steps[-1].message.startswith("expected 221 or closed, got 250")


def test_a_skip_says_why_in_words_when_the_scenario_does(tmp_path, target):
    body = "when: \"1 == 2\"\nskip_reason: 'not configured: set X'\nsteps:\n  - send: NOOP\n"
    result = run_yaml(tmp_path, body, target)
    assert result.verdict == "skipped"
    assert result.reason == "not configured: set X (when: 1 == 2 is false)"


def test_a_skip_step_ends_the_scenario_as_skipped_with_its_reason(tmp_path, target):
    body = """
    steps:
      - ehlo: c.example.org
      - skip: "{{ 'NOSUCH' }} is not offered: nothing to judge"
        when: "'NOSUCH' not in caps"
      - send: "this never goes out"
    """
    result = run_yaml(tmp_path, body, target)
    assert result.verdict == "skipped"
    assert result.reason == "NOSUCH is not offered: nothing to judge"
    assert [(s.kind, s.verdict) for s in result.steps] == [
        ("connect", "passed"),
        ("ehlo", "passed"),
        ("skip", "skipped"),
    ]
    assert not any("this never goes out" in e.text for e in result.transcript)


def test_a_skip_step_whose_when_is_false_changes_nothing(tmp_path, target):
    body = "steps:\n  - ehlo: c.example.org\n  - skip: never\n    when: 'false'\n  - send: NOOP\n"
    result = run_yaml(tmp_path, body, target)
    assert result.verdict == "passed", result.reason


def test_a_capture_group_that_matched_nothing_is_empty_not_none(tmp_path, target):
    body = """
    steps:
      - ehlo: c.example.org
        capture: {x: "(?:(NOSUCH)|PIPELINING)"}
      - send: "NOOP [{{ x }}]"
    """
    result = run_yaml(tmp_path, body, target)
    assert result.verdict == "passed", result.reason
    assert result.steps[-1].sent == ["NOOP []"]


def test_a_fail_step_states_the_finding_in_its_own_words(tmp_path, target):
    body = """
    vars: {mode: testing}
    steps:
      - fail: "the policy is in {{ mode }} mode, not enforce"
        when: "mode != 'enforce'"
      - send: "this never goes out"
    """
    result = run_yaml(tmp_path, body, target)
    assert result.verdict == "failed"
    assert result.reason.endswith("the policy is in testing mode, not enforce")
    assert result.steps[-1].message == "the policy is in testing mode, not enforce"
    assert not any("this never goes out" in e.text for e in result.transcript)

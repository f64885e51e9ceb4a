"""Redaction that cannot be escaped around: secrets with characters that escaping changes
(backslash, TAB, NBSP, zero-width), secrets cut by a length limit, and no over-reach."""

from __future__ import annotations

import textwrap

from hostile import Conn, Hostile
from output_helpers import all_outputs

from smtpscript.loading import load_paths
from smtpscript.protocol import _escape_text as escape_text
from smtpscript.protocol import escape_bytes
from smtpscript.redaction import REDACTED, EnvView, SecretTracker, b64
from smtpscript.runner import RunOptions, run
from smtpscript.targets import parse_target

# escaping turns each of these into something else: \\, \t, \u00a0, \u200b
SECRET = "Zq\\7\t9\u00a0x\u200bPa55-w0rd"
SHAPES = [SECRET, escape_bytes(SECRET.encode()), escape_text(SECRET), b64(SECRET)]
PREFIXES = [SECRET[:n] for n in range(4, len(SECRET))]  # what a cut would leave


# --- the tracker on its own ---------------------------------------------------------------


def test_every_shape_of_a_secret_is_blanked():
    tracker = SecretTracker([SECRET])
    for shape in SHAPES:
        assert tracker.redact(f"<{shape}>") == f"<{REDACTED}>"
    assert tracker.redact_bytes(SECRET.encode() + b"!") == REDACTED.encode() + b"!"


def test_the_start_of_a_secret_before_a_cut_marker_is_blanked():
    tracker = SecretTracker(["hunter2-and-more"])
    assert tracker.redact("NOOP hunter2-a…") == f"NOOP {REDACTED}…"
    assert tracker.redact("partial 'hunt...'") == f"partial '{REDACTED}...'"
    # too short to say, or not at a cut: left alone
    assert tracker.redact("hu…") == "hu…"
    assert tracker.redact("hunter and more") == "hunter and more"


def test_short_env_values_and_user_names_are_not_secrets():
    tracker = SecretTracker()
    env = EnvView(tracker, source={"CODE": "220", "PASSWORD": "s3cret-env"})
    assert env["CODE"] == "220" and env["PASSWORD"] == "s3cret-env"
    assert tracker.redact("220 ready; s3cret-env") == f"220 ready; {REDACTED}"
    tracker.add_payload(b64("\0alice\0s3cret-env"))
    assert tracker.redact("AUTH PLAIN as alice") == "AUTH PLAIN as alice"


# --- a run against a server that repeats back whatever it is sent ---------------------------


async def echo(conn: Conn) -> None:
    await conn.send(b"220 echo.test ESMTP\r\n")
    while line := await conn.line():
        text = line.rstrip(b"\r\n")
        if text.upper() == b"QUIT":
            await conn.send(b"221 bye\r\n")
            return
        if text.upper().startswith(b"AUTH"):
            await conn.send(b"235 2.7.0 you are " + text + b"\r\n")
            continue
        await conn.send(b"250 you said: " + text + b"\r\n")


SCENARIO = """
smtpscript: 1
title: a server that repeats everything
vars:
  code: "{{ env.SHORT_CODE }}"
steps:
  - ehlo: client.test
  - auth: {mechanism: PLAIN, username: alice, password: "{{ env.SMTP_PASSWORD }}"}
  - auth: {mechanism: LOGIN, username: alice, password: "{{ env.SMTP_PASSWORD }}"}
    expect: any
  - send: "NOOP {{ env.SMTP_PASSWORD }}"
  - send: "NOOP {{ 'a' * 70 }} {{ env.SMTP_PASSWORD }}"
  - send: "NOOP {{ 'b' * 270 }} {{ env.SMTP_PASSWORD }}"
    expect: 550
    continue_on_fail: true
  - send: "NOOP code {{ code }}"
    match: "code 250$"
"""


def test_no_shape_or_start_of_a_secret_in_any_output(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(SCENARIO), encoding="utf-8")
    loaded = load_paths([path])
    assert not loaded.problems, loaded.problems
    environ = {"SMTP_PASSWORD": SECRET, "SHORT_CODE": "250"}
    with Hostile(echo) as server:
        result = run(
            loaded.scenarios,
            [parse_target(f"127.0.0.1:{server.port}")],
            RunOptions(environ=environ),
        )
        sent = b"".join(server.received)
    assert SECRET.encode() in sent  # the server did get it: the test is not vacuous
    scenario = result.scenarios[0]
    assert [s.verdict for s in scenario.steps][-2:] == ["failed", "passed"]
    for where, text in all_outputs(result).items():
        for shape in SHAPES:
            assert shape not in text, f"{shape!r} in {where}"
        for prefix in PREFIXES:
            for shown in (prefix, escape_bytes(prefix.encode()), escape_text(prefix)):
                assert shown not in text, f"the start {shown!r} in {where}"
        assert "code 250" in text, where  # no over-reach: a short env value stays readable
    failure = scenario.steps[-2].message or ""
    assert failure.endswith(f"bbb {REDACTED}…")  # the cut fell inside the secret
    names = [step.name for step in scenario.steps]
    assert "AUTH PLAIN as alice" in names  # no over-reach: the user name stays readable

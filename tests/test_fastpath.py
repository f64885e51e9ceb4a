"""Load mode's compiled plan (smtpscript.plan + smtpscript.fastpath) against the general
runner: on the same server behaviour, the same verdict, reason and whole result.

Each case runs one scenario once through the general runner and once as a compiled
plan, against the real sandbox or a scripted misbehaving server (tests/hostile.py) on
loopback, and compares the two ScenarioResults field by field (times and the random
Message-ID aside).
"""

from __future__ import annotations

import asyncio
import difflib
import json
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from hostile import Conn, Hostile, full_backlog

from smtpscript import fastpath, loadmode
from smtpscript.loading import load_paths
from smtpscript.model import Target
from smtpscript.plan import Plan, compile_plan
from smtpscript.runner import MAX_RECEIVED_PER_RUN, RunOptions, run_scenario
from smtpscript.targets import parse_target

BANNER = b"220 hostile.test ESMTP\r\n"
EHLO = b"250-hostile.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"
DELIVERY = """
- ehlo: client.test
- send: "MAIL FROM:<{{ sender }}>"
- send: RCPT TO:<alice@sandbox.test>
- data:
    headers: {Subject: test}
    body: "hello\\n.dot line\\n"
- send: QUIT
  expect: 221
"""
TIMING_KEYS = {"t", "elapsed_ms", "duration_ms", "started_at"}


def scenario_file(tmp_path: Path, steps: str, timeout: float = 3, extra: str = "") -> Path:
    path = tmp_path / "fast.yaml"
    body = textwrap.indent(textwrap.dedent(steps).strip(), "  ")
    path.write_text(
        f"smtpscript: 1\ntitle: fast\nvars:\n  sender: me@client.test\n{extra}"
        f"target:\n  timeout: {timeout}\nsteps:\n{body}\n",
        encoding="utf-8",
    )
    return path


def _comparable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    if isinstance(value, str):  # what differs from one session to the next
        value = re.sub(r"<[0-9a-f]{32}@smtpscript\.invalid>", "<ID>", value)
        value = re.sub(r"queued as \w+", "queued as ID", value)
        return re.sub(r"^Date: .*", "Date: DATE", value)
    return value


def both(path: Path, target: Target | str, options: RunOptions | None = None) -> tuple[Any, Any]:
    """(general runner's result, compiled plan's result) of one session each."""
    loaded = load_paths([path])
    assert not loaded.problems, loaded.problems
    scenario = loaded.scenarios[0]
    target = parse_target(target) if isinstance(target, str) else target
    options = options or RunOptions()
    plan = compile_plan(scenario, target, options)
    assert isinstance(plan, Plan), plan

    async def go() -> tuple[Any, Any]:
        general = await run_scenario(scenario, target, options)
        outcome = await fastpath.run_plan(plan, MAX_RECEIVED_PER_RUN)
        compiled = fastpath.result_of(plan, options, outcome)
        assert (outcome.verdict, outcome.reason) == (compiled.verdict, compiled.reason)
        return general, compiled

    return asyncio.run(go())


def assert_same(general: Any, compiled: Any, closing: bool = True, transcript: bool = True) -> None:
    """``closing=False``: leave out the transcript after the steps (the closing QUIT), for a
    server whose late bytes may or may not have come by then; ``transcript=False``: all of
    it (where bytes ahead of their command fall depends on how they were read)."""
    fast, slow = _comparable(asdict(compiled)), _comparable(asdict(general))
    if not transcript:
        fast["transcript"] = slow["transcript"] = []
    if not closing:
        for result in (fast, slow):
            result["transcript"] = [e for e in result["transcript"] if e["step"] is not None]
    for key in slow:  # key by key, shown as a diff
        if fast[key] != slow[key]:
            lines = [
                json.dumps(v, indent=1, default=str).splitlines() for v in (slow[key], fast[key])
            ]
            diff = difflib.unified_diff(*lines, "general runner", "compiled plan", lineterm="")
            pytest.fail(f"{key} differs:\n" + "\n".join(diff))


def test_a_delivery_on_the_sandbox_reads_the_same(tmp_path, sandbox_target):
    general, compiled = both(scenario_file(tmp_path, DELIVERY), sandbox_target)
    assert general.verdict == "passed", general.reason
    assert_same(general, compiled)
    assert [s.name for s in compiled.steps][:3] == [
        "connect (implicit)",
        "EHLO client.test",
        "MAIL FROM:<me@client.test>",
    ]


# --- misbehaving servers: each case is (script, steps, expected verdict) ---------------------


async def bare_lf(conn: Conn) -> None:
    await conn.send(b"220 hostile.test ESMTP\n")
    await conn.serve({b"EHLO": b"250-hostile.test\n250 PIPELINING\n", b"QUIT": b"221 bye\n"})


async def closes_after_mail(conn: Conn) -> None:
    await conn.send(BANNER)
    await conn.serve({b"EHLO": EHLO, b"MAIL": b"421 4.3.0 going away\r\n"}, stop_after=b"MAIL")


async def resets_after_mail(conn: Conn) -> None:
    await conn.send(BANNER)
    await conn.serve({b"EHLO": EHLO}, stop_after=b"MAIL")
    conn.reset()


async def silent_on_rcpt(conn: Conn) -> None:
    await conn.send(BANNER)
    await conn.serve({b"EHLO": EHLO}, stop_after=b"MAIL")
    await conn.drain_until_eof()


async def malformed(conn: Conn) -> None:
    await conn.send(BANNER)
    await conn.serve({b"EHLO": EHLO, b"MAIL": b"2x0 what\r\n"})


async def ahead_of_command(conn: Conn) -> None:
    await conn.send(BANNER)
    await conn.serve({b"EHLO": EHLO + b"250 2.1.0 early\r\n"})


async def refuses_banner(conn: Conn) -> None:
    await conn.send(b"554 5.7.1 go away\r\n")
    await conn.serve({})


async def refuses_data(conn: Conn) -> None:
    await conn.send(BANNER)
    await conn.serve({b"EHLO": EHLO, b"DATA": b"554 5.5.1 no valid recipients\r\n"})


async def rejects_sender(conn: Conn) -> None:
    await conn.send(BANNER)
    await conn.serve({b"EHLO": EHLO, b"MAIL": b"550 5.7.1 <me@client.test> not welcome\r\n"})


async def endless_reply(conn: Conn) -> None:
    await conn.send(BANNER)
    await conn.line()
    await conn.send(b"250-more\r\n" * 2000)  # more lines than a reply may have, in one write
    await conn.drain_until_eof()


async def long_line(conn: Conn) -> None:
    await conn.send(BANNER)
    await conn.line()
    await conn.send(b"250-" + b"x" * 5000 + b"\r\n")
    await conn.drain_until_eof()


async def slowloris(conn: Conn) -> None:
    await conn.send(BANNER)
    await conn.line()
    await conn.dribble(b"250-hostile.test\r\n250 OK\r\n", 0.2)  # 4 s: past the deadline
    await conn.drain_until_eof()


async def multiline(conn: Conn) -> None:
    await conn.send(b"220-hostile.test\r\n220-\x1b[31mred\xff\r\n220 ESMTP\r\n")
    await conn.serve({b"EHLO": EHLO, b"DATA": b"354 go\r\n"})


async def stops_reading(conn: Conn) -> None:
    await conn.send(BANNER)
    await conn.serve({b"EHLO": EHLO, b"DATA": b"354 go ahead\r\n"}, stop_after=b"DATA")
    await asyncio.sleep(60)  # read nothing more: the client's writes pile up


async def closes_at_mail(conn: Conn) -> None:
    """Reads MAIL and closes without a reply: what follows finds the connection gone."""
    await conn.send(BANNER)
    await conn.serve({b"EHLO": EHLO}, stop_after=b"EHLO")
    await conn.line()


CASES = {
    "bare LF": (bare_lf, "- ehlo: client.test\n- send: QUIT\n  expect: 221", "passed"),
    "closes after MAIL": (closes_after_mail, DELIVERY, "failed"),
    "silent on RCPT": (silent_on_rcpt, DELIVERY, "error"),
    "malformed reply": (malformed, DELIVERY, "error"),
    "banner refused": (refuses_banner, DELIVERY, "failed"),
    "banner refused, expected": (
        refuses_banner,
        "- connect: {}\n  expect: 554\n- send: QUIT\n  expect: 221",
        "passed",
    ),
    "DATA refused": (refuses_data, DELIVERY, "failed"),
    "DATA refused, expected": (
        refuses_data,
        "- ehlo: c.test\n- data: hi\n  expect: 554\n- send: QUIT",
        "passed",
    ),
    "sender rejected, carried on": (
        rejects_sender,
        '- ehlo: c.test\n- send: "MAIL FROM:<{{ sender }}>"\n  continue_on_fail: true\n'
        "- send: NOOP\n- send: NOOP\n  expect: 550\n  match: nope",
        "failed",
    ),
    "endless reply": (endless_reply, DELIVERY, "error"),
    # 24 MB cannot all sit in loopback socket buffers: the write must wait, then give up
    "stops reading": (stops_reading, "- ehlo: c.test\n- data: \"{{ 'x' * 24000000 }}\"", "error"),
    "closed before DATA, carried on": (
        closes_at_mail,
        '- ehlo: c.test\n- send: "MAIL FROM:<{{ sender }}>"\n  continue_on_fail: true\n'
        "- data: hi\n  continue_on_fail: true\n- send: NOOP\n  expect: closed",
        "failed",
    ),
    "reply line too long": (long_line, DELIVERY, "error"),
    "slowloris": (slowloris, DELIVERY, "error"),
    "escaped multiline banner": (
        multiline,
        "- ehlo: c.test\n- send: NOOP\n- send: QUIT\n  expect: 221",
        "passed",
    ),
}


# --- TLS: implicit, STARTTLS, refusals and failures --------------------------------------

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


@pytest.mark.parametrize(
    "name", ["tls/starttls-works.yaml", "tls/implicit-tls-banner.yaml", "tls/starttls-offered.yaml"]
)
def test_the_tls_audit_scenarios_read_the_same_on_the_sandbox(name, sandbox_target):
    general, compiled = both(SCENARIOS / name, sandbox_target)
    assert general.verdict == "passed", general.reason
    assert_same(general, compiled)
    assert any(step.tls is not None for step in compiled.steps)


def test_a_certificate_that_does_not_verify_reads_the_same(tmp_path, sandbox_target):
    steps = "- ehlo: c.test\n- starttls: {}\n  tls: {verified: true}\n- send: QUIT"
    untrusted = parse_target(f"127.0.0.1:{sandbox_target.endpoint.port}")  # no sandbox CA
    general, compiled = both(scenario_file(tmp_path, steps), untrusted)
    assert general.verdict == "failed" and "certificate" in (general.reason or "")
    assert_same(general, compiled)


async def refuses_starttls(conn: Conn) -> None:
    await conn.send(BANNER)
    await conn.serve({b"EHLO": EHLO, b"STARTTLS": b"454 4.7.0 TLS not available\r\n"})


async def fake_starttls(conn: Conn) -> None:
    """220 to STARTTLS, then plain text where the handshake should be."""
    await conn.send(BANNER)
    await conn.serve({b"EHLO": EHLO, b"STARTTLS": b"220 go ahead\r\n"}, stop_after=b"STARTTLS")
    await conn.line()  # the ClientHello (no line end): whatever came
    await conn.send(b"500 this is not TLS\r\n")


async def injects_after_starttls(conn: Conn) -> None:
    await conn.send(BANNER)
    injected = b"220 go ahead\r\n250 injected\r\n"
    await conn.serve({b"EHLO": EHLO, b"STARTTLS": injected}, stop_after=b"STARTTLS")
    await conn.drain_until_eof()


TLS_CASES = {
    "STARTTLS refused, expected": (
        refuses_starttls,
        "- ehlo: c.test\n- starttls: {}\n  expect: 454\n- send: QUIT\n  expect: 221",
        "passed",
    ),
    "STARTTLS refused": (refuses_starttls, "- ehlo: c.test\n- starttls: {}", "failed"),
    "no TLS after 220": (fake_starttls, "- ehlo: c.test\n- starttls: {}\n- send: NOOP", "error"),
    "no TLS after 220, refusal expected": (
        fake_starttls,
        "- ehlo: c.test\n- starttls: {}\n  tls: {established: false}\n- send: NOOP\n"
        "  expect: closed",
        "passed",
    ),
    "bytes injected after 220": (
        injects_after_starttls,
        "- ehlo: c.test\n- starttls: {}\n- send: NOOP",
        "error",
    ),
}


@pytest.mark.parametrize("name", [*CASES, *TLS_CASES])
def test_a_misbehaving_server_reads_the_same(tmp_path, name):
    script, steps, verdict = {**CASES, **TLS_CASES}[name]
    with Hostile(script) as server:
        general, compiled = both(scenario_file(tmp_path, steps, 1), f"127.0.0.1:{server.port}")
    assert general.verdict == verdict, general.reason
    # a server that misbehaves may close or reset under the closing QUIT: a race in both
    assert_same(general, compiled, closing=False)


def test_a_reset_reads_the_same_but_for_the_race(tmp_path):
    """Whether a reset is seen by the next write (judged as a close) or by the read after
    it is a race in either engine: the verdict and the failing step must not depend on it."""
    with Hostile(resets_after_mail) as server:
        path = scenario_file(tmp_path, DELIVERY, 1)
        general, compiled = both(path, f"127.0.0.1:{server.port}")
    for result in (general, compiled):
        assert result.verdict == "failed"
        assert re.search(r"steps\[2\] .* got server (reset|closed) the connection", result.reason)
    assert [s.verdict for s in compiled.steps] == [s.verdict for s in general.steps]


def test_a_reply_ahead_of_its_command_reads_the_same_but_for_the_race(tmp_path):
    """Once out of step, whether the next reply has come before the next command is sent
    is a race in either engine: the first desync and every judgement must not depend on it."""
    with Hostile(ahead_of_command) as server:
        path = scenario_file(tmp_path, DELIVERY, 1)
        general, compiled = both(path, f"127.0.0.1:{server.port}")
    assert general.verdict == compiled.verdict == "failed"
    assert general.reason == compiled.reason
    assert general.protocol_violations[0] == compiled.protocol_violations[0]
    assert "17 bytes before this command" in compiled.protocol_violations[0]
    assert [(s.verdict, s.message) for s in compiled.steps] == [
        (s.verdict, s.message) for s in general.steps
    ]


def test_a_refused_connection_reads_the_same(tmp_path):
    with Hostile(refuses_banner) as server:
        port = server.port  # closed once the server stops: nobody listens there
    general, compiled = both(scenario_file(tmp_path, DELIVERY), f"127.0.0.1:{port}")
    assert general.verdict == "error" and "connection refused" in (general.reason or "")
    assert_same(general, compiled)


def test_a_connect_that_times_out_reads_the_same(tmp_path):
    """A server that never answers the SYN: the connect step's own timeout, in both."""
    with full_backlog() as port:
        started = time.monotonic()
        general, compiled = both(scenario_file(tmp_path, DELIVERY, 0.5), f"127.0.0.1:{port}")
        took = time.monotonic() - started
    if general.verdict == "passed" or "refused" in (general.reason or ""):
        pytest.skip("this kernel accepted the connection despite a full backlog")
    assert general.verdict == "error", general.reason
    assert f"connection to 127.0.0.1:{port} timed out after 0.5 s" in (compiled.reason or "")
    assert_same(general, compiled)
    assert took < 2 * 0.5 + 2


def test_secrets_stay_hidden_in_a_kept_session(tmp_path, monkeypatch):
    monkeypatch.setenv("FAST_SECRET", "hunter2-secret")

    async def echoes(conn: Conn) -> None:
        await conn.send(BANNER)
        await conn.serve({b"EHLO": EHLO, b"MAIL": b"550 no hunter2-secret here\r\n"})

    extra = '  token: "{{ env.FAST_SECRET }}"\n'
    steps = '- ehlo: c.test\n- send: "MAIL FROM:<{{ token }}@client.test>"'
    with Hostile(echoes) as server:
        path = scenario_file(tmp_path, steps, 1, extra=extra)
        general, compiled = both(path, f"127.0.0.1:{server.port}")
    assert general.verdict == "failed"
    assert_same(general, compiled)
    assert "hunter2" not in repr(asdict(compiled))


# --- what compiles, and what load mode says about it ----------------------------------------


@pytest.mark.parametrize(
    ("steps", "why"),
    [
        ('- raw: "NOOP\\r\\n"', "raw steps are not compiled"),
        ('- send: NOOP\n  when: "true"', "when:"),
        ("- send: NOOP\n  capture: {x: '(.*)'}", "capture:"),
        ('- send: "NOOP {{ reply.code }}"', "changes between sessions"),
        ('- send: "NOOP {{ index }}"', "changes between sessions"),
        ("- send: NOOP\n  repeat: 2", "repeat:"),
    ],
)
def test_what_does_not_compile_says_why(tmp_path, steps, why):
    loaded = load_paths([scenario_file(tmp_path, steps)])
    assert not loaded.problems, loaded.problems
    plan = compile_plan(loaded.scenarios[0], parse_target("127.0.0.1:25"), RunOptions())
    assert isinstance(plan, str) and why in plan


def test_load_mode_on_a_compiled_plan_and_on_the_runner_agree(tmp_path, sandbox_target):
    loaded = load_paths([scenario_file(tmp_path, DELIVERY)])
    scenario, target = loaded.scenarios[0], sandbox_target
    runs = {
        compiled: loadmode.run(
            scenario,
            target,
            RunOptions(),
            loadmode.LoadPlan(repeat=40, concurrency=5, compiled=compiled),
        )
        for compiled in (True, False)
    }
    fast, general = runs[True].load, runs[False].load
    assert fast.engine == "compiled plan"
    assert general.engine.startswith("general runner")
    assert fast.verdicts == general.verdicts == {"passed": 40}
    assert [s.name for s in fast.steps] == [s.name for s in general.steps]
    assert [s.latency.count for s in fast.steps] == [40] * 6
    assert fast.kept == general.kept == 3
    assert_same(runs[False].scenarios[0], runs[True].scenarios[0])


@pytest.mark.parametrize(
    "expect",
    [
        "",
        "expect: 250",
        "expect: [2xx, 354]",
        "expect: closed",
        "expect: [closed, 25x]",
        "expect: any",
        "expect: 250\n  status: 2.1.x",
        "expect: 250\n  match: ok",
    ],
)
def test_the_passing_shortcut_judges_as_expectations_check(tmp_path, expect):
    from smtpscript import expectations
    from smtpscript.protocol import parse_replies
    from smtpscript.session import Closed

    steps = f"- send: NOOP\n  {expect}" if expect else "- send: NOOP"
    loaded = load_paths([scenario_file(tmp_path, steps)])
    plan = compile_plan(loaded.scenarios[0], parse_target("127.0.0.1:25"), RunOptions())
    assert isinstance(plan, Plan), plan
    step = plan.steps[1]
    for code in (c for c in range(200, 560) if c // 10 % 10 <= 5):  # what the parser passes
        for text in (b"2.1.0 ok", b"5.7.1 no"):
            reply = parse_replies(b"%d %s\r\n" % (code, text))[0]
            assert step.check(reply) == expectations.check(step.step.expect, step.default, reply)
    assert step.check(Closed()) == expectations.check(step.step.expect, step.default, Closed())


def _sent_rcpt(server: Hostile) -> int:
    """How many connections have sent RCPT (not only connected: the signal must find each
    session waiting for that reply)."""
    return sum(any(line[:4] == b"RCPT" for line in conn.received) for conn in server.connections)


def test_ctrl_c_stops_a_compiled_load_run_and_keeps_what_finished(tmp_path):
    """Sessions waiting on a silent server end as 'interrupted' errors, without a QUIT wait;
    the finished ones count; the JSON is written; exit 130."""
    out = tmp_path / "r.json"
    with Hostile(silent_on_rcpt) as server:
        path = scenario_file(tmp_path, DELIVERY, 30)
        command = [sys.executable, "-m", "smtpscript", "run", str(path), "--repeat", "1000"]
        command += ["-t", f"127.0.0.1:{server.port}", "-j", "4", "--json", str(out), "-q"]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            deadline = time.monotonic() + 20
            while _sent_rcpt(server) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)  # four sessions wait for their RCPT reply
            started = time.monotonic()
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=20)
    assert time.monotonic() - started < 5
    assert proc.returncode == 130
    load = json.loads(out.read_text("utf-8"))["load"]
    assert load["engine"] == "compiled plan"
    assert load["verdicts"] == {"error": 4}
    assert load["reasons"][0]["reason"].endswith(
        "steps[2] (RCPT TO:<alice@sandbox.test>): interrupted"
    )


@pytest.mark.parametrize(
    "data",
    [
        '{headers: {Subject: hi}, body: "a\\n.b\\n"}',
        '"Subject: hi\\n\\nbody\\n.\\n"',
        '"no headers at all, no blank line"',
        '"Date: Thu, 1 Jan 2026 00:00:00 +0000\\nSubject: hi\\n\\nbody"',
        "{headers: {Message-ID: <own@x>}, body: b}",
        '"Subject: \\ue000date\\ue000\\n\\nmarked on purpose"',
    ],
)
def test_a_payload_made_once_is_the_one_compose_makes(tmp_path, monkeypatch, data):
    from smtpscript import plan as planning
    from smtpscript import protocol
    from smtpscript.actions import message

    loaded = load_paths([scenario_file(tmp_path, f"- data: {data}")])
    assert not loaded.problems, loaded.problems
    plan = compile_plan(loaded.scenarios[0], parse_target("127.0.0.1:25"), RunOptions())
    assert isinstance(plan, Plan), plan
    step = plan.steps[1]
    stamps = iter(range(1000))
    monkeypatch.setitem(planning._STAMPS, "date", lambda: f"D{next(stamps)}")
    monkeypatch.setitem(planning._STAMPS, "message_id", lambda: f"<M{next(stamps)}>")
    monkeypatch.setattr(message, "new_date", planning._STAMPS["date"])
    monkeypatch.setattr(message, "new_message_id", planning._STAMPS["message_id"])
    for _ in range(2):
        made = plan.payload(step)
        expected = protocol.message_payload(message.compose(step.message, plan.rendered.get))
        # made took stamps n, n+1 (when it has marks); compose took the next ones: align
        assert re.sub(rb"[DM]\d+", b"S", made) == re.sub(rb"[DM]\d+", b"S", expected)
    if "\\ue000" in data:
        assert step.payload_parts is None  # a mark in the text itself: composed each time
    else:
        assert step.payload_parts is not None


def test_a_var_smuggling_a_command_is_refused_in_every_session(tmp_path, capsys):
    """CR/LF from --var: the plan does not compile, and the general runner refuses the line in
    each session (nothing sent), as outside load mode."""
    from scenario_helpers import cli

    path = scenario_file(tmp_path, DELIVERY)
    out_file = tmp_path / "r.json"
    smuggled = "sender=a@b.test>\r\nRCPT TO:<victim@x.test"
    args = ("run", path, "-t", "sandbox", "--repeat", "4", "--var", smuggled, "--json", out_file)
    status, _, _ = cli(capsys, *args)
    load = json.loads(out_file.read_text("utf-8"))["load"]
    assert status == 1
    assert load["engine"].startswith("general runner (a step does not render (LocalProtocolError")
    assert load["verdicts"] == {"error": 4}
    assert "contains CR or LF" in load["reasons"][0]["reason"]


def test_a_bug_recording_a_kept_session_costs_only_that_record(
    monkeypatch, sandbox_target, tmp_path
):
    """An exception nobody foresaw while writing up a kept session: that record becomes an
    internal error; every session still runs and is counted."""

    def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(fastpath, "result_of", broken)
    loaded = load_paths([scenario_file(tmp_path, DELIVERY)])
    plan = loadmode.LoadPlan(repeat=12, concurrency=3)
    run = loadmode.run(loaded.scenarios[0], sandbox_target, RunOptions(), plan)
    assert run.load is not None and run.load.verdicts == {"passed": 12}
    assert len(run.scenarios) == 3
    for kept in run.scenarios:
        assert kept.internal_error and kept.verdict == "error"
        assert "recording a passed session failed" in (kept.reason or "")


def test_a_bug_in_load_bookkeeping_is_an_internal_error_not_a_silent_loss(
    monkeypatch, sandbox_target, tmp_path
):
    """An exception nobody foresaw outside any session (here: counting one) ends that
    worker loop; the run says so as an internal error, and the other loops go on."""
    real = loadmode.LoadAggregate.add_outcome
    calls = 0

    def add_outcome(self, *args):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("a bug in the bookkeeping")
        return real(self, *args)

    monkeypatch.setattr(loadmode.LoadAggregate, "add_outcome", add_outcome)
    loaded = load_paths([scenario_file(tmp_path, DELIVERY)])
    plan = loadmode.LoadPlan(repeat=12, concurrency=3)
    run = loadmode.run(loaded.scenarios[0], sandbox_target, RunOptions(), plan)
    assert run.load is not None
    # the worker that hit the bug stopped: 11 sessions counted, and the bug as one error
    assert run.load.verdicts == {"passed": 11, "error": 1}
    lost = [r for r in run.scenarios if r.verdict == "error"]
    assert len(lost) == 1 and lost[0].internal_error
    assert "a load worker stopped early: " in (lost[0].reason or "")
    assert "a bug in the bookkeeping" in (lost[0].reason or "")

"""Misbehaving servers (tests/hostile.py, real loopback sockets): each costs one failed or
error step within its timeout, bounded memory, and an escaped transcript."""

from __future__ import annotations

import asyncio
import ssl
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest
from hostile import Conn, Hostile

from smtpscript.loading import load_paths
from smtpscript.report import render_html
from smtpscript.results import RunResult, ScenarioResult
from smtpscript.runner import QUIT_TIMEOUT, RunOptions, run
from smtpscript.sandbox import _make_certificate
from smtpscript.targets import parse_target

BANNER = b"220 hostile.test ESMTP\r\n"
EHLO = b"250-hostile.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
SLACK = 1.5  # seconds of scheduling slack on a loaded machine


def quit_bound(timeout: float) -> float:
    """Upper bound on a run that timed out: the timeout, the QUIT wait, slack."""
    return timeout + min(QUIT_TIMEOUT, timeout) + SLACK


def scenario(tmp_path: Path, steps: str, timeout: float = 5) -> Path:
    path = tmp_path / "hostile.yaml"
    body = textwrap.indent(textwrap.dedent(steps).strip(), "  ")
    path.write_text(
        f"smtpscript: 1\ntitle: hostile\ntarget:\n  timeout: {timeout}\nsteps:\n{body}\n",
        encoding="utf-8",
    )
    return path


def run_against(server: Hostile, path: Path) -> tuple[ScenarioResult, float, RunResult]:
    loaded = load_paths([path])
    assert not loaded.problems, loaded.problems
    t0 = time.monotonic()
    result = run(loaded.scenarios, [parse_target(f"{server.host}:{server.port}")], RunOptions())
    elapsed = time.monotonic() - t0
    assert not server.errors, server.errors  # the script itself must not have broken
    return result.scenarios[0], elapsed, result


def s_lines(result: ScenarioResult) -> list[str]:
    return [e.text for e in result.transcript if e.direction == "S"]


GREET = """
- connect: {}
- ehlo: client.test
"""


# --- line endings and bytes ----------------------------------------------------------------


async def bare_lf(conn: Conn) -> None:
    await conn.send(b"220 hostile.test ESMTP\n")
    await conn.serve({b"EHLO": b"250-hostile.test\n250 PIPELINING\n", b"QUIT": b"221 bye\n"})


def test_bare_lf_is_accepted_and_recorded_as_a_violation(tmp_path):
    path = scenario(tmp_path, GREET + "- send: QUIT\n  expect: 221\n")
    with Hostile(bare_lf) as server:
        result, _, _ = run_against(server, path)
    assert result.verdict == "passed", result.reason
    assert len(result.protocol_violations) == 3
    assert all("bare LF" in v for v in result.protocol_violations)
    assert result.protocol_violations[0].startswith("steps[0]: reply 220")
    assert [r.bare_lf for s in result.steps for r in s.replies] == [True, True, True]


async def non_utf8(conn: Conn) -> None:
    await conn.send(b"220 caf\xe9 \xff\xfe \x1b[31mred\x1b[0m back\\slash\r\n")
    await conn.serve({b"EHLO": EHLO})


def test_non_utf8_and_control_bytes_are_escaped_in_the_transcript(tmp_path):
    path = scenario(tmp_path, GREET)
    with Hostile(non_utf8) as server:
        result, _, _ = run_against(server, path)
    assert result.verdict == "passed", result.reason
    banner = s_lines(result)[0]
    assert banner == "220 caf\\xe9 \\xff\\xfe \\x1b[31mred\\x1b[0m back\\\\slash"
    assert result.steps[0].replies[0].lines == [
        "caf\\xe9 \\xff\\xfe \\x1b[31mred\\x1b[0m back\\\\slash"
    ]
    everything = repr([e.text for e in result.transcript])
    assert "\x1b" not in everything and "\udcff" not in everything


async def script_banner(conn: Conn) -> None:
    await conn.send(b"220 <script>alert(1)</script> ESMTP\r\n")
    await conn.serve({b"EHLO": b"250 <img src=x onerror=alert(2)>\r\n"})


def test_markup_in_replies_is_kept_as_text_and_escaped_in_the_html_report(tmp_path):
    path = scenario(tmp_path, GREET)
    with Hostile(script_banner) as server:
        result, _, run_result = run_against(server, path)
    assert result.verdict == "passed", result.reason
    assert s_lines(result)[0] == "220 <script>alert(1)</script> ESMTP"
    html = render_html(run_result)
    assert "<script>alert(1)" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)" in html


async def not_smtp(conn: Conn) -> None:
    await conn.send(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    await conn.drain_until_eof()


def test_a_server_that_is_not_smtp_is_an_error(tmp_path):
    path = scenario(tmp_path, GREET)
    with Hostile(not_smtp) as server:
        result, elapsed, _ = run_against(server, path)
    assert result.verdict == "error"
    assert result.steps[0].message == "malformed reply line: 'HTTP/1.1 400 Bad Request\\r\\n'"
    assert elapsed < 5 + SLACK


# --- silence, slowness, floods -----------------------------------------------------------


async def silent(conn: Conn) -> None:
    await conn.drain_until_eof()


def test_a_server_that_never_answers_times_out(tmp_path):
    path = scenario(tmp_path, GREET, timeout=0.5)
    with Hostile(silent) as server:
        result, elapsed, _ = run_against(server, path)
        received = server.received
    assert result.verdict == "error"
    assert result.steps[0].message == "no complete reply within 0.5 s"
    connect = f"connect 127.0.0.1:{server.port}"
    where = f"{result.file}:{result.steps[0].line}"
    assert result.reason == f"{where}: steps[0] ({connect}): no complete reply within 0.5 s"
    assert len(result.steps) == 1  # the scenario stopped there
    assert received == [b"QUIT\r\n"]  # best-effort QUIT, then close
    assert 0.5 <= elapsed < quit_bound(0.5)


async def slowloris(conn: Conn) -> None:
    await conn.dribble(b"220 slowly, slowly, one byte at a time\r\n", 0.05)
    await conn.drain_until_eof()


def test_slowloris_banner_times_out_on_the_whole_reply_not_per_byte(tmp_path):
    path = scenario(tmp_path, GREET, timeout=0.6)
    with Hostile(slowloris) as server:
        result, elapsed, _ = run_against(server, path)
    assert result.verdict == "error"
    assert result.steps[0].message == "no complete reply within 0.6 s"
    assert elapsed < quit_bound(0.6)
    assert s_lines(result)[0].startswith("220 slow")  # the partial banner is evidence


async def endless_reply(conn: Conn) -> None:
    await conn.send(BANNER)
    await conn.line()
    while True:  # a multi-line reply that never ends, one line every 50 ms
        await conn.send(b"250-still going\r\n")
        await asyncio.sleep(0.05)


def test_a_multiline_reply_that_never_ends_times_out(tmp_path):
    path = scenario(tmp_path, GREET, timeout=0.6)
    with Hostile(endless_reply) as server:
        result, elapsed, _ = run_against(server, path)
    assert result.verdict == "error"
    assert result.steps[1].message == "no complete reply within 0.6 s"
    assert elapsed < quit_bound(0.6)


async def flood(conn: Conn) -> None:
    await conn.send(b"220 ")
    chunk = b"x" * 65536
    for _ in range(160):  # 10 MiB without a line end
        await conn.send(chunk)


def test_a_10_mb_line_is_a_protocol_error_with_bounded_memory(tmp_path):
    path = scenario(tmp_path, GREET, timeout=10)
    with Hostile(flood) as server:
        tracemalloc.start()
        try:
            result, elapsed, _ = run_against(server, path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.verdict == "error"
    message = result.steps[0].message or ""
    assert message.startswith("reply line longer than 65536 bytes: '220 xxxx")
    assert len(message) < 200
    assert elapsed < 10  # not the timeout: refused as soon as the limit is crossed
    assert peak < 8 * 1024 * 1024
    received = sum(len(e.text) for e in result.transcript if e.direction == "S")
    assert received < 1024 * 1024


async def stops_reading(conn: Conn) -> None:
    await conn.send(BANNER)
    await conn.serve({b"EHLO": EHLO, b"DATA": b"354 go ahead\r\n"}, stop_after=b"DATA")
    await asyncio.sleep(60)  # read nothing more: the client's writes pile up


def test_a_server_that_stops_reading_cannot_block_a_send(tmp_path):
    # 24 MB cannot all sit in loopback socket buffers, so the client's drain would block
    steps = "- ehlo: client.test\n- data: \"{{ 'x' * 24000000 }}\"\n"
    path = scenario(tmp_path, steps, timeout=1)
    with Hostile(stops_reading) as server:
        result, elapsed, _ = run_against(server, path)
    assert result.verdict == "error"
    assert result.steps[2].message == (
        "the server did not take our data within 1 s (it stopped reading)"
    )
    assert result.transcript[-1].text == "connection aborted: the server stopped reading"
    assert elapsed < 1 + 5  # the timeout, plus rendering and encoding 24 MB


# --- closing and resetting -----------------------------------------------------------------


async def close_mid_reply(conn: Conn) -> None:
    await conn.send(BANNER)
    await conn.line()
    await conn.send(b"250-hostile.test\r\n250-PIPEL")


def test_close_in_the_middle_of_a_reply_fails_the_step_with_the_partial_reply(tmp_path):
    path = scenario(tmp_path, GREET + "- send: NOOP\n")
    with Hostile(close_mid_reply) as server:
        result, elapsed, _ = run_against(server, path)
    assert result.verdict == "failed"
    assert result.steps[1].message == (
        "expected 250, got server closed the connection after a partial reply "
        "'250-hostile.test\\r\\n250-PIPEL'"
    )
    assert len(result.steps) == 2
    assert elapsed < 5


async def close_after_banner(conn: Conn) -> None:
    await conn.send(BANNER)
    await conn.line()


def test_close_instead_of_a_reply(tmp_path):
    path = scenario(tmp_path, GREET)
    with Hostile(close_after_banner) as server:
        result, _, _ = run_against(server, path)
    assert result.verdict == "failed"
    assert result.steps[1].message == "expected 250, got server closed the connection"
    assert result.transcript[-1].text == "connection closed by the server"


async def reset_after_ehlo(conn: Conn) -> None:
    await conn.send(BANNER)
    await conn.line()
    conn.reset()


def test_reset_is_reported_as_a_reset(tmp_path):
    path = scenario(tmp_path, GREET + "- send: NOOP\n")
    with Hostile(reset_after_ehlo) as server:
        result, elapsed, _ = run_against(server, path)
    assert result.verdict == "failed"
    assert result.steps[1].message == "expected 250, got server reset the connection"
    assert len(result.steps) == 2
    assert elapsed < 5


def test_reset_counts_as_closed_when_closing_is_expected(tmp_path):
    path = scenario(tmp_path, "- connect: {}\n- ehlo: client.test\n  expect: closed\n")
    with Hostile(reset_after_ehlo) as server:
        result, _, _ = run_against(server, path)
    assert result.verdict == "passed", result.reason


async def hang_up_at_once(conn: Conn) -> None:
    return


def test_a_server_that_hangs_up_before_the_banner(tmp_path):
    path = scenario(tmp_path, GREET)
    with Hostile(hang_up_at_once) as server:
        result, _, _ = run_against(server, path)
    assert result.verdict == "failed"
    assert result.steps[0].message == "expected 220, got server closed the connection"


# --- pipelining ------------------------------------------------------------------------------


async def answers_one_of_three(conn: Conn) -> None:
    await conn.send(BANNER)
    await conn.line()
    await conn.send(EHLO)
    await conn.line()
    await conn.send(b"250 2.1.0 Ok\r\n")
    await conn.drain_until_eof()


def test_a_pipeline_with_missing_replies_times_out_and_judges_no_more(tmp_path):
    steps = GREET + textwrap.dedent("""
        - pipeline:
            - send: "MAIL FROM:<a@client.test>"
            - send: "RCPT TO:<b@hostile.test>"
            - send: DATA
              expect: 354
        """)
    path = scenario(tmp_path, steps, timeout=0.5)
    with Hostile(answers_one_of_three) as server:
        result, elapsed, _ = run_against(server, path)
    verdicts = [(s.path, s.verdict) for s in result.steps[2:]]
    assert verdicts == [
        ("steps[2].pipeline[0]", "passed"),
        ("steps[2].pipeline[1]", "error"),
        ("steps[2].pipeline[2]", "skipped"),
    ]
    assert result.steps[3].message == "no complete reply within 0.5 s"
    assert result.verdict == "error"
    assert elapsed < quit_bound(0.5)


# --- STARTTLS response injection ---------------------------------------------------------------


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    cert, key = _make_certificate("hostile.test", tmp_path_factory.mktemp("cert"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def injector(extra: bytes, context: ssl.SSLContext):  # type: ignore[no-untyped-def]
    async def script(conn: Conn) -> None:
        await conn.send(BANNER)
        await conn.line()
        await conn.send(EHLO)
        await conn.line()  # STARTTLS
        await conn.send(b"220 2.0.0 Ready to start TLS\r\n" + extra)
        await conn.starttls(context)
        await conn.serve({b"EHLO": b"250-hostile.test\r\n250 AUTH PLAIN\r\n"})

    return script


STARTTLS = GREET + textwrap.dedent("""
    - starttls: {verify: false}
    - ehlo: client.test
    - send: QUIT
      expect: 221
    """)


@pytest.mark.parametrize(
    "extra",
    [b"250 2.0.0 injected\r\n", b"250-injected\r\n250 AUTH PLAIN", b"2"],
    ids=["complete-reply", "partial-reply", "one-byte"],
)
def test_bytes_after_the_starttls_reply_are_a_protocol_violation(tmp_path, server_tls, extra):
    path = scenario(tmp_path, STARTTLS)
    with Hostile(injector(extra, server_tls)) as server:
        result, _, _ = run_against(server, path)
    assert result.verdict == "passed", result.reason
    assert result.protocol_violations == [
        "steps[2]: server sent data after its STARTTLS reply, "
        "before TLS (possible response injection)"
    ]
    notes = [e.text for e in result.transcript if e.direction == "*"]
    assert f"protocol violation: {len(extra)} bytes after the STARTTLS reply" in " ".join(notes)
    # the injected reply was discarded: the EHLO after TLS got the real answer
    assert result.steps[3].replies[0].lines == ["hostile.test", "AUTH PLAIN"]
    assert result.steps[2].tls is not None and result.steps[2].tls.version


def test_a_clean_starttls_is_not_a_violation(tmp_path, server_tls):
    path = scenario(tmp_path, STARTTLS)
    with Hostile(injector(b"", server_tls)) as server:
        result, _, _ = run_against(server, path)
    assert result.verdict == "passed", result.reason
    assert result.protocol_violations == []

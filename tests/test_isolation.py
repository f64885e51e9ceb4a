"""One scenario never sinks a run: whatever goes wrong inside one scenario run becomes that
run's verdict with a positioned reason, and the runs beside it keep their results in every
report. Real sockets throughout (the sandbox, scripted hostile servers)."""

from __future__ import annotations

import json
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hostile import Conn, Hostile
from lxml import etree

from smtpscript import model as m
from smtpscript.actions import ACTIONS
from smtpscript.cli import run_cli
from smtpscript.loading import load_paths
from smtpscript.regexes import MATCH_TIMEOUT
from smtpscript.results import RunResult, ScenarioResult
from smtpscript.runner import MAX_RECEIVED_PER_RUN, MAX_STEPS_PER_RUN, RunOptions, run
from smtpscript.targets import parse_target

GOOD = """
smtpscript: 1
title: {title}
steps:
  - ehlo: client.test
  - send: NOOP
  - send: QUIT
    expect: 221
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def run_folder(
    folder: Path, target: m.Target, overrides: dict[str, str] | None = None
) -> RunResult:
    loaded = load_paths([folder], extra_names=overrides or {})
    assert not loaded.problems, [str(p) for p in loaded.problems]
    return run(loaded.scenarios, [target], RunOptions(overrides=dict(overrides or {})))


def by_title(run_result: RunResult) -> dict[str, ScenarioResult]:
    return {r.title: r for r in run_result.scenarios}


# Each middle scenario fails in its own way; a.yaml and c.yaml around it must pass.
CRASHES = {
    "surrogate in raw": (
        """
        smtpscript: 1
        title: middle
        steps:
          - ehlo: client.test
          - raw: "NOOP {{ odd }}\\r\\n"
            expect: 250
        """,
        {"odd": "\udc80"},
        "b.yaml:5: steps[1] (raw NOOP \\udc80\\r\\n): cannot encode '\\udc80' as utf-8",
    ),
    "undefined value in when": (
        """
        smtpscript: 1
        title: middle
        steps:
          - ehlo: client.test
          - send: NOOP
            when: "caps.NO_SUCH_EXTENSION == 'yes'"
        """,
        {},
        "b.yaml:5: steps[1] (send): when: undefined variable:",
    ),
    "missing TLS file": (
        """
        smtpscript: 1
        title: middle
        steps:
          - connect: {tls: implicit, ca_file: /nonexistent/ca.pem}
        """,
        {},
        "b.yaml:4: steps[0] (connect ",
    ),
    "runaway recursion in a template": (
        """
        smtpscript: 1
        title: middle
        vars:
          deep: "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"
        steps:
          - send: "NOOP {{ deep }}"
        """,
        {},
        "b.yaml:4: vars.deep: ",
    ),
    "unset env variable": (
        """
        smtpscript: 1
        title: middle
        vars:
          password: "{{ env.SMTPSCRIPT_SURELY_UNSET_VARIABLE }}"
        steps:
          - send: NOOP
        """,
        {},
        "b.yaml:4: vars.password: environment variable SMTPSCRIPT_SURELY_UNSET_VARIABLE is not set",
    ),
}


@pytest.mark.parametrize("kind", sorted(CRASHES))
def test_a_crashing_scenario_between_two_good_ones(tmp_path, sandbox_target, kind):
    text, overrides, reason = CRASHES[kind]
    write(tmp_path, "a.yaml", GOOD.format(title="first"))
    write(tmp_path, "b.yaml", text)
    write(tmp_path, "c.yaml", GOOD.format(title="last"))
    results = by_title(run_folder(tmp_path, sandbox_target, overrides))
    assert results["first"].verdict == "passed"
    assert results["last"].verdict == "passed"
    middle = results["middle"]
    assert middle.verdict == "error", middle.reason
    assert middle.reason is not None
    assert middle.reason.startswith(str(tmp_path / reason)), middle.reason
    assert "\n" not in middle.reason
    assert not middle.internal_error  # the scenario's doing, not a bug in smtpscript


def test_missing_tls_file_names_the_file(tmp_path, sandbox_target):
    write(tmp_path, "b.yaml", CRASHES["missing TLS file"][0])
    middle = run_folder(tmp_path, sandbox_target).scenarios[0]
    assert middle.reason and middle.reason.endswith(
        "cannot read /nonexistent/ca.pem: No such file or directory"
    )


def _bug(*args: object) -> None:
    raise ZeroDivisionError("division by zero")


def _out_of_memory(*args: object) -> None:
    raise MemoryError


def _too_deep(*args: object) -> None:
    raise RecursionError("maximum recursion depth exceeded")


# Exceptions no input can provoke on purpose: injected into one action (a fault in the
# code, not a fake socket); the conversation around it still runs against the sandbox.
INJECTED = {
    "internal bug": (_bug, "internal error: ZeroDivisionError: division by zero", True),
    "memory": (_out_of_memory, "out of memory while running this step", False),
    "recursion": (_too_deep, "nesting too deep (recursion limit reached)", False),
}

SLEEPER = """
smtpscript: 1
title: middle
steps:
  - ehlo: client.test
  - sleep: 0
"""


@pytest.mark.parametrize("kind", sorted(INJECTED))
def test_unforeseen_exceptions_end_only_their_run(tmp_path, sandbox_target, monkeypatch, kind):
    handler, message, internal = INJECTED[kind]
    monkeypatch.setitem(ACTIONS, "sleep", replace(ACTIONS["sleep"], run=handler))
    write(tmp_path, "a.yaml", GOOD.format(title="first"))
    write(tmp_path, "b.yaml", SLEEPER)
    write(tmp_path, "c.yaml", GOOD.format(title="last"))
    results = by_title(run_folder(tmp_path, sandbox_target))
    assert results["first"].verdict == results["last"].verdict == "passed"
    middle = results["middle"]
    assert middle.verdict == "error"
    assert middle.reason == f"{tmp_path / 'b.yaml'}:5: steps[1] (sleep): {message}"
    assert middle.steps[-1].verdict == "error"  # steps[0] is the implicit connect
    assert middle.internal_error is internal
    # the run still said goodbye: QUIT went out after the failed step
    assert [e.text for e in middle.transcript if e.direction == "C"][-1] == "QUIT"


def test_cli_writes_every_report_and_exits_3_for_an_internal_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(ACTIONS, "sleep", replace(ACTIONS["sleep"], run=_bug))
    folder = tmp_path / "lib"
    folder.mkdir()
    write(folder, "a.yaml", GOOD.format(title="first"))
    write(folder, "b.yaml", SLEEPER)
    write(folder, "c.yaml", GOOD.format(title="last"))
    out = {k: tmp_path / f"out.{k}" for k in ("json", "html", "xml")}
    reports = ["--json", str(out["json"]), "--html", str(out["html"]), "--junit", str(out["xml"])]
    status = run_cli(["run", str(folder), "-t", "sandbox", *reports])
    err = capsys.readouterr().err
    assert status == 3, err
    assert "internal error" in err
    data = json.loads(out["json"].read_text(encoding="utf-8"))
    verdicts = {r["title"]: r["verdict"] for r in data["scenarios"]}
    assert verdicts == {"first": "passed", "middle": "error", "last": "passed"}
    html = out["html"].read_text(encoding="utf-8")
    assert all(title in html for title in ("first", "middle", "last"))
    cases = etree.parse(str(out["xml"])).getroot().iter("testcase")
    assert sorted(c.get("name") for c in cases) == ["first", "last", "middle"]


def test_nested_repeats_stop_at_the_step_limit(tmp_path, sandbox_target):
    write(
        tmp_path,
        "frag.yaml",
        """
        smtpscript: 1
        fragment: true
        steps:
          - sleep: 0
            repeat: 1000
        """,
    )
    write(
        tmp_path,
        "s.yaml",
        """
        smtpscript: 1
        title: nested
        steps:
          - include: frag.yaml
            repeat: 1000
        """,
    )
    loaded = load_paths([tmp_path / "s.yaml"])
    result = run(loaded.scenarios, [sandbox_target]).scenarios[0]
    assert result.verdict == "error"
    assert f"more than {MAX_STEPS_PER_RUN:,} steps in one run" in (result.reason or "")
    assert len(result.steps) == MAX_STEPS_PER_RUN


async def megabyte_replies(conn: Conn) -> None:
    await conn.send(b"220 hostile.test ESMTP\r\n")
    line = b"250-" + b"x" * 60_000 + b"\r\n"
    reply = line * 16 + b"250 ok\r\n"  # just under 1 MiB: within the per-reply limit
    while data := await conn.line():
        await conn.send(b"221 bye\r\n" if data.startswith(b"QUIT") else reply)


def test_a_server_sending_megabytes_without_end_is_stopped(tmp_path):
    write(
        tmp_path,
        "s.yaml",
        """
        smtpscript: 1
        title: flood
        steps:
          - send: NOOP
            repeat: 300
        """,
    )
    loaded = load_paths([tmp_path / "s.yaml"])
    with Hostile(megabyte_replies) as server:
        target = parse_target(f"127.0.0.1:{server.port}")
        result = run(loaded.scenarios, [target]).scenarios[0]
    assert result.verdict == "error"
    limit = MAX_RECEIVED_PER_RUN // (1024 * 1024)
    assert f"the server sent more than {limit} MiB in this run" in (result.reason or "")
    assert len(result.steps) < 40  # stopped near the limit, not after 300 replies
    kept = sum(len(line) for step in result.steps for r in step.replies for line in r.lines)
    assert kept < 2 * MAX_RECEIVED_PER_RUN


async def backtracking_bait(conn: Conn) -> None:
    await conn.send(b"220 hostile.test ESMTP\r\n")
    await conn.serve({b"NOOP": b"250 " + b"a" * 5000 + b"!\r\n"})


def test_a_catastrophic_match_pattern_gives_up_within_its_budget(tmp_path):
    write(
        tmp_path,
        "s.yaml",
        """
        smtpscript: 1
        title: backtracking
        steps:
          - send: NOOP
            match: "(a|aa)+$"
          - send: QUIT
            expect: 221
        """,
    )
    loaded = load_paths([tmp_path / "s.yaml"])
    with Hostile(backtracking_bait) as server:
        started = time.monotonic()
        result = run(loaded.scenarios, [parse_target(f"127.0.0.1:{server.port}")]).scenarios[0]
        elapsed = time.monotonic() - started
    assert result.verdict == "error"
    assert "/(a|aa)+$/ gave up after 1 s of matching" in (result.reason or "")
    assert elapsed < MATCH_TIMEOUT + 5  # bounded, not the hours the pattern would take


async def early_talker(conn: Conn) -> None:
    # a second reply to EHLO: the next command's reply arrives before the command
    await conn.send(b"220 hostile.test ESMTP\r\n")
    await conn.line()
    await conn.send(b"250 hostile.test\r\n250 2.0.0 surprise\r\n")
    await conn.serve({})


def test_a_reply_ahead_of_its_command_is_a_protocol_violation(tmp_path):
    write(
        tmp_path,
        "s.yaml",
        """
        smtpscript: 1
        title: desync
        steps:
          - ehlo: client.test
          - sleep: 0.2
          - send: NOOP
        """,
    )
    loaded = load_paths([tmp_path / "s.yaml"])
    with Hostile(early_talker) as server:
        result = run(loaded.scenarios, [parse_target(f"127.0.0.1:{server.port}")]).scenarios[0]
    assert result.protocol_violations == [
        "steps[2]: the server sent 20 bytes before this command was sent (a reply ahead of "
        "its command: desynchronised)"
    ]


def test_no_desync_is_noted_after_raw_bytes_left_unread(tmp_path, sandbox_target):
    write(
        tmp_path,
        "s.yaml",
        """
        smtpscript: 1
        title: raw then read
        steps:
          - ehlo: client.test
          - raw: "NOOP\\r\\n"
          - sleep: 0.2
          - send: NOOP
            expect: 250
          - read: {}
            expect: 250
        """,
    )
    loaded = load_paths([tmp_path / "s.yaml"])
    result = run(loaded.scenarios, [sandbox_target]).scenarios[0]
    assert result.verdict == "passed", result.reason
    assert result.protocol_violations == []


# --- variables: precedence and the env ----------------------------------------------------

ENV_BACKED = """
smtpscript: 1
title: env-backed
vars:
  password: "{{ env.SMTPSCRIPT_SURELY_UNSET_VARIABLE }}"
steps:
  - send: "NOOP {{ password | length }}"
"""


def test_a_var_overrides_an_env_backed_var_without_reading_the_env(tmp_path, sandbox_target):
    write(tmp_path, "s.yaml", ENV_BACKED)
    result = run_folder(tmp_path, sandbox_target, {"password": "given"})
    assert result.scenarios[0].verdict == "passed", result.scenarios[0].reason
    assert result.scenarios[0].steps[1].sent == ["NOOP 5"]


def test_a_secret_var_is_secret_before_later_vars_render(tmp_path, sandbox_target):
    write(
        tmp_path,
        "s.yaml",
        """
        smtpscript: 1
        title: order
        secrets: [token]
        vars:
          token: tok-3141592653
          line: "NOOP {{ token }}"
        steps:
          - send: "{{ line }}"
        """,
    )
    result = run_folder(tmp_path, sandbox_target).scenarios[0]
    assert result.verdict == "passed", result.reason
    assert result.steps[1].sent == ["NOOP ********"]
    assert "tok-3141592653" not in json.dumps([s.name for s in result.steps])


def test_a_var_no_scenario_uses_is_warned_about(tmp_path, capsys):
    write(tmp_path, "s.yaml", GOOD.format(title="x"))
    status = run_cli(["run", str(tmp_path), "-t", "sandbox", "--var", "helo=x"])
    err = capsys.readouterr().err
    assert status == 0
    assert err.splitlines() == ["smtpscript: warning: --var helo: no selected scenario uses it"]


def test_a_var_a_fragment_reads_counts_as_used(tmp_path, capsys):
    write(tmp_path, "f.yaml", "smtpscript: 1\nfragment: true\nsteps:\n  - ehlo: '{{ helo }}'\n")
    write(tmp_path, "s.yaml", "smtpscript: 1\ntitle: x\nsteps:\n  - include: f.yaml\n")
    status = run_cli(["run", str(tmp_path / "s.yaml"), "-t", "sandbox", "--var", "helo=x.test"])
    assert status == 0
    assert "warning" not in capsys.readouterr().err

"""`smtpscript run` in-process: exit codes, console lines, -v conversation, --json."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from hostile import Conn, Hostile
from scenario_helpers import cli, steps_file

from smtpscript.loading import display_name
from smtpscript.results import from_dict

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"
RELAY_FILE = display_name(SCENARIOS / "relay" / "no-open-relay.yaml")  # as reasons name it
# the line of its connect step, where a connection problem is placed
RELAY_CONNECT = next(
    n
    for n, line in enumerate(
        (SCENARIOS / "relay" / "no-open-relay.yaml").read_text().splitlines(), 1
    )
    if line.startswith("  - connect:")
)


def scenario(tmp_path: Path, steps: str, extra: str = "", name: str = "s.yaml") -> Path:
    return steps_file(tmp_path, steps, name=name, extra=extra)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


RCPT_ALICE = """
- ehlo: client.test
- send: "MAIL FROM:<a@client.test>"
- send: "RCPT TO:<alice@sandbox.test>"
  expect: [550, 554]
"""


def test_the_built_in_scenarios_pass_against_the_sandbox(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    status, out, err = cli(capsys, "run", "scenarios/", "--target", "sandbox")
    assert status == 0, out + err
    *lines, summary = out.splitlines()
    verdicts = [line for line in lines if not line.startswith(" ")]  # reasons are indented
    count = len([p for p in SCENARIOS.rglob("*.yaml") if "fragment: true" not in p.read_text()])
    assert count >= 5 and len(verdicts) == count
    # the built-ins pass, or are skipped where the sandbox lacks what they need (PROXY)
    assert all(line.startswith(("PASS  sandbox  ", "SKIP  sandbox  ")) for line in verdicts)
    skipped = sum(line.startswith("SKIP") for line in verdicts)
    assert summary.startswith(
        f"smtpscript: {count} scenario runs: {count - skipped} passed, 0 failed, "
        f"{skipped} skipped in "
        if skipped
        else f"smtpscript: {count} scenario runs: {count} passed, 0 failed in "
    )
    assert "C:" not in out  # the conversation only with -v
    assert err == ""


def test_verbose_shows_the_conversation(capsys):
    status, out, _ = cli(capsys, "run", SCENARIOS / "relay", "-t", "sandbox", "-v")
    assert status == 0
    assert " C: EHLO audit.example.org" in out
    assert " S: 250-PIPELINING" in out
    assert " S: 554 5.7.1" in out or " S: 550 5.7.1 Unable to relay" in out
    assert "   * connected to 127.0.0.1:" in out


def test_a_wrong_expectation_fails_with_expected_vs_got(capsys, tmp_path):
    path = scenario(tmp_path, RCPT_ALICE)
    status, out, _ = cli(capsys, "run", path, "-t", "sandbox")
    assert status == 1
    assert out.splitlines()[0].startswith("FAIL  sandbox  cli test  [medium] ")
    assert out.splitlines()[1] == (
        f"      {path}:6: steps[2] (RCPT TO:<alice@sandbox.test>): "
        "expected 550 or 554, got 250 2.1.5 Recipient OK"
    )
    assert "1 failed" in out and "findings: 1 medium" in out


def test_var_overrides_reach_the_scenario(capsys):
    path = SCENARIOS / "basics" / "unknown-recipient.yaml"
    status, out, _ = cli(capsys, "run", path, "-t", "sandbox", "--var", "nobody=bob@sandbox.test")
    assert status == 1  # bob exists, so RCPT gets 250 and the 550 expectation fails
    assert "expected 550, status 5.1.1, got 250 2.1.5 Recipient OK" in out


def _before_recap(out: str) -> list[str]:
    """The result lines: the recap at the end repeats each failure's reason."""
    return out.split("failures and errors")[0].splitlines()


def test_unreachable_host_is_one_clear_line(capsys):
    port = closed_port()
    status, out, err = cli(
        capsys, "run", SCENARIOS / "relay" / "no-open-relay.yaml", "-t", f"127.0.0.1:{port}"
    )
    assert status == 1
    assert out.splitlines()[0].startswith(f"ERROR 127.0.0.1:{port}  Refuses to relay")
    problem = [line for line in _before_recap(out) if "refused" in line]
    assert problem == [
        f"      {RELAY_FILE}:{RELAY_CONNECT}: steps[0] (connect 127.0.0.1:{port}): "
        f"connection refused by 127.0.0.1:{port}"
    ]
    assert err == ""


def test_dns_failure_is_one_clear_line(capsys):
    started = time.monotonic()
    status, out, _ = cli(
        capsys, "run", SCENARIOS / "relay" / "no-open-relay.yaml", "-t", "nonexistent.invalid:2525"
    )
    assert status == 1
    problem = [line for line in _before_recap(out) if "resolve" in line]
    assert len(problem) == 1
    assert problem[0].startswith(
        f"      {RELAY_FILE}:{RELAY_CONNECT}: steps[0] (connect nonexistent.invalid:2525): "
        "cannot resolve host 'nonexistent.invalid': "
    )
    assert time.monotonic() - started < 15


async def silent(conn: Conn) -> None:
    await conn.drain_until_eof()


def test_timeout_is_one_clear_line(capsys, tmp_path):
    path = scenario(tmp_path, "- connect: {}", extra="target:\n  timeout: 0.5\n")
    with Hostile(silent) as server:
        started = time.monotonic()
        status, out, _ = cli(capsys, "run", path, "-t", f"127.0.0.1:{server.port}")
    assert status == 1
    problem = [line for line in _before_recap(out) if "within" in line]
    assert problem == [
        f"      {path}:6: steps[0] (connect 127.0.0.1:{server.port}): "
        "no complete reply within 0.5 s"
    ]
    assert time.monotonic() - started < 0.5 + 0.5 + 1.5


def test_validation_problem_exits_2_and_runs_nothing(capsys, tmp_path):
    path = scenario(tmp_path, "- send: NOOP\n  expect: '2x'")
    status, out, err = cli(capsys, "run", path, "-t", "127.0.0.1:1")
    assert status == 2
    assert out == ""
    assert err.strip().endswith(
        "s.yaml:5:13: steps[0].expect: '2x' is not a reply-code pattern "
        '(use e.g. 250, "2xx", "25x", "any" or "closed")'
    )


def test_bad_target_and_bad_var_exit_2(capsys):
    status, _, err = cli(capsys, "run", SCENARIOS / "relay", "-t", "127.0.0.1:99999")
    assert status == 2 and "port must be a number from 1 to 65535" in err
    status, _, err = cli(capsys, "run", SCENARIOS / "relay", "-t", "sandbox", "--var", "x")
    assert status == 2 and "expected NAME=VALUE" in err


def test_json_results_are_written_and_read_back(capsys, tmp_path):
    failing = scenario(tmp_path, RCPT_ALICE, name="failing.yaml")
    out_file = tmp_path / "results.json"
    status, _, _ = cli(
        capsys,
        "run",
        SCENARIOS / "relay" / "no-open-relay.yaml",
        failing,
        "-t",
        "sandbox",
        "--json",
        out_file,
    )
    assert status == 1
    data = json.loads(out_file.read_text(encoding="utf-8"))
    assert data["format"] == 1
    run = from_dict(data)
    assert sorted(s.verdict for s in run.scenarios) == ["failed", "passed"]
    failed = next(s for s in run.scenarios if s.verdict == "failed")
    assert failed.steps[-1].message == "expected 550 or 554, got 250 2.1.5 Recipient OK"
    assert any(e.direction == "C" and e.text == "QUIT" for e in failed.transcript)


def test_ctrl_c_stops_the_run_with_130_and_one_line(tmp_path):
    import signal
    import subprocess
    import sys

    path = scenario(tmp_path, "- ehlo: client.example\n- sleep: 60\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "smtpscript", "run", str(path), "-t", "sandbox"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)  # started, connected, sleeping
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, out + err
    assert err == "smtpscript: interrupted\n"
    assert time.monotonic() - started < 10


def test_fail_on_choices_are_the_model_severities():
    from smtpscript.cli import Severity
    from smtpscript.model import SEVERITIES

    assert tuple(Severity) == SEVERITIES

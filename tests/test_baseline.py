"""Comparison with a baseline (smtpscript.baseline) on real runs, and duplicate inputs.

The relay battery runs against the sandbox as an open relay (every variant a critical
finding) and closed (every variant refused): closed after open is "fixed", open after
closed is "new", open after open "still open", and a finding whose check did not run
again is "not re-checked", never "fixed".
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from scenario_helpers import REPO

from smtpscript.api import run_paths
from smtpscript.baseline import compare
from smtpscript.cli import run_cli
from smtpscript.report import render_html, render_markdown
from smtpscript.results import RunResult, from_dict
from smtpscript.sandbox import Sandbox, SandboxConfig

RELAY = "scenarios/relay"
VARIANTS = 16  # relay-after-auth is skipped without credentials


def _relay_run(open_relay: bool, paths: tuple[str, ...] = (RELAY,)) -> RunResult:
    with Sandbox(SandboxConfig(open_relay=open_relay)) as server:
        outcome = run_paths(
            [REPO / p for p in paths],
            targets=[f"{server.host}:{server.port}"],
            ca_file=server.cert_path,
            environ={},
        )
    run = outcome.run
    # both runs name the target alike, so the keys (scenario id, target name) meet
    for result in run.scenarios:
        result.target.name = "mx1"
    run.targets = [result.target for result in run.scenarios[:1]]
    return run


@pytest.fixture(scope="module")
def open_run() -> RunResult:
    run = _relay_run(open_relay=True)
    assert sum(r.verdict == "failed" for r in run.scenarios) == VARIANTS
    return run


@pytest.fixture(scope="module")
def closed_run() -> RunResult:
    run = _relay_run(open_relay=False)
    assert sum(r.verdict == "passed" for r in run.scenarios) == VARIANTS
    return run


def test_closed_after_open_fixes_every_relay_finding(open_run, closed_run):
    comparison = compare(closed_run, open_run)
    assert comparison.counts() == {"new": 0, "open": 0, "fixed": VARIANTS, "unverified": 0}
    assert {r.severity for r in comparison.fixed} == {"critical"}
    assert comparison.summary() == f"0 new, 0 still open, {VARIANTS} fixed"
    assert all(comparison.of(r) is None for r in closed_run.scenarios)


def test_open_after_closed_makes_every_relay_finding_new(open_run, closed_run):
    comparison = compare(open_run, closed_run)
    assert comparison.counts() == {"new": VARIANTS, "open": 0, "fixed": 0, "unverified": 0}
    failed = [r for r in open_run.scenarios if r.verdict == "failed"]
    assert {comparison.of(r) for r in failed} == {"new"}


def test_open_after_open_leaves_every_finding_open(open_run):
    again = _relay_run(open_relay=True)
    comparison = compare(again, open_run)
    assert comparison.counts() == {"new": 0, "open": VARIANTS, "fixed": 0, "unverified": 0}
    assert comparison.summary("mx1") == f"0 new, {VARIANTS} still open, 0 fixed"
    assert comparison.summary("elsewhere") == "0 new, 0 still open, 0 fixed"


def test_a_check_that_did_not_run_again_is_not_re_checked_never_fixed(open_run):
    one = _relay_run(open_relay=False, paths=(f"{RELAY}/no-open-relay.yaml",))
    comparison = compare(one, open_run)
    assert comparison.counts() == {
        "new": 0,
        "open": 0,
        "fixed": 1,
        "unverified": VARIANTS - 1,
    }
    assert [r.scenario_id for r in comparison.fixed] == [one.scenarios[0].scenario_id]
    assert comparison.summary().endswith(f"1 fixed, {VARIANTS - 1} not re-checked")


def test_the_html_report_marks_each_finding_and_lists_what_was_fixed(open_run, closed_run):
    html = render_html(open_run, compare(open_run, closed_run))
    assert html.count('<span class="since since-new">new</span>') == 2 * VARIANTS  # table, card
    counts = dict(re.findall(r'data-since="(\w+)"><span class="num">(\d+)</span>', html))
    assert counts == {"new": str(VARIANTS), "open": "0", "fixed": "0"}
    fixed = render_html(closed_run, compare(closed_run, open_run))
    assert 'id="fixed"' in fixed and fixed.count("the check passed") == VARIANTS
    assert "Since the baseline: 0 new, 0 still open, 16 fixed" in fixed
    assert 'id="fixed"' not in render_html(closed_run)  # no baseline, no comparison


def test_markdown_and_console_show_the_same_counts(open_run, closed_run):
    markdown = render_markdown(closed_run, compare(closed_run, open_run))
    assert f"0 new, 0 still open, {VARIANTS} fixed" in markdown
    assert markdown.count("- fixed: **") == VARIANTS


# --- through the command line: run --baseline, report --baseline -------------------------


def _cli_run(tmp_path: Path, open_relay: bool, *extra: str) -> int:
    with Sandbox(SandboxConfig(open_relay=open_relay)) as server:
        status = run_cli(
            [
                "run",
                str(REPO / RELAY),
                "-t",
                "mx1",
                "--config",
                str(_config(tmp_path, server)),
                "--color",
                "never",
                *extra,
            ]
        )
    return status


def _config(tmp_path: Path, server: Sandbox) -> Path:
    """A library naming the sandbox mx1, so that every run's target has one name."""
    path = tmp_path / "smtpscript.yaml"
    path.write_text(
        "smtpscript: 1\n"
        "description: Relay audit of mx1\n"
        f"targets:\n  mx1: {{host: {server.host}, port: {server.port}, "
        f"ca_file: {server.cert_path}}}\n",
        encoding="utf-8",
    )
    return path


def test_run_and_report_with_a_baseline_agree_byte_for_byte(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status = _cli_run(tmp_path, True, "--json", "old.json")
    assert status == 1
    capsys.readouterr()
    status = _cli_run(
        tmp_path,
        False,
        "--baseline",
        "old.json",
        "--json",
        "new.json",
        "--html",
        "new.html",
        "--markdown",
        "new.md",
    )
    out = capsys.readouterr().out
    assert status == 0
    # the console recap: counts against the baseline
    assert re.search(r"since the baseline of \S+: 0 new, 0 still open, 16 fixed", out), out
    assert (
        run_cli(
            [
                *("report", "new.json", "--baseline", "old.json"),
                *("--html", "again.html", "--markdown", "again.md"),
            ]
        )
        == 0
    )
    assert (tmp_path / "again.html").read_bytes() == (tmp_path / "new.html").read_bytes()
    assert (tmp_path / "again.md").read_bytes() == (tmp_path / "new.md").read_bytes()
    # the title came from the library's description, and is in the results
    assert json.loads((tmp_path / "new.json").read_text())["title"] == "Relay audit of mx1"
    assert "<h1>Relay audit of mx1</h1>" in (tmp_path / "new.html").read_text()


def test_run_with_a_baseline_marks_new_findings_in_the_recap(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _cli_run(tmp_path, False, "--json", "old.json") == 0
    capsys.readouterr()
    assert _cli_run(tmp_path, True, "--baseline", "old.json", "--title", "Weekly") == 1
    out = capsys.readouterr().out
    recap = out.split("failures and errors (16):\n")[1]
    assert recap.count("  (new)\n") == VARIANTS
    assert "The server accepted the message for <" in recap
    assert re.search(r"since the baseline of \S+: 16 new, 0 still open, 0 fixed", recap)


def test_a_baseline_that_is_not_results_stops_before_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text("[]")
    assert run_cli(["run", str(REPO / RELAY), "-t", "sandbox", "--baseline", "bad.json"]) == 2
    err = capsys.readouterr().err
    assert "bad.json: not smtpscript results" in err
    assert "Traceback" not in err


# --- duplicate inputs ---------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path, open_run) -> Path:
    from smtpscript.results import write_json

    path = tmp_path / "a.json"
    write_json(open_run, path)
    return path


def test_the_same_file_twice_is_counted_once_with_a_warning(saved, tmp_path, capsys):
    merged = tmp_path / "merged.json"
    assert run_cli(["report", str(saved), str(saved), "--json", str(merged)]) == 0
    err = capsys.readouterr().err
    runs = len(json.loads(saved.read_text())["scenarios"])
    assert err.splitlines() == [
        f"smtpscript: warning: {saved}: {runs} scenario runs already read from {saved} "
        "(same scenario, target and start time): counted once: "
        + err.split("counted once: ")[1].splitlines()[0]
    ]
    assert "relay/bang-path-ip-literal.yaml on mx1" in err
    assert len(json.loads(merged.read_text())["scenarios"]) == runs


def test_a_run_in_two_files_is_counted_once(saved, tmp_path, capsys):
    data = json.loads(saved.read_text())
    first = data["scenarios"][0]
    other = dict(data, scenarios=[first])
    (tmp_path / "b.json").write_text(json.dumps(other))
    assert run_cli(["report", str(saved), str(tmp_path / "b.json"), "--json", "-"]) == 0
    captured = capsys.readouterr()
    merged = from_dict(json.loads(captured.out))
    assert len(merged.scenarios) == len(data["scenarios"])
    assert captured.err.count("smtpscript: warning:") == 1
    assert f"b.json: 1 scenario run already read from {saved}" in captured.err
    # the same check at another time is another run: kept
    later = dict(data, scenarios=[dict(first, started_at="2099-01-01T00:00:00+00:00")])
    (tmp_path / "c.json").write_text(json.dumps(later))
    assert run_cli(["report", str(saved), str(tmp_path / "c.json"), "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)["scenarios"]) == len(data["scenarios"]) + 1
    assert "warning" not in captured.err

"""`run --json --html` then `report results.json --html`: the same report, byte for byte."""

from __future__ import annotations

import json

import pytest
from scenario_helpers import SCENARIOS, write

from smtpscript.cli import run_cli

FAILING = """
smtpscript: 1
title: Expects the sandbox to be an open relay (it is not)
severity: critical
steps:
  - ehlo: client.example
  - send: "MAIL FROM:<a@example.org>"
  - send: "RCPT TO:<b@example.net>"
    expect: 250
"""


@pytest.fixture
def run_outputs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    failing = write(tmp_path, FAILING, "failing.yaml")
    status = run_cli(
        [
            "run",
            str(SCENARIOS / "relay"),
            str(failing),
            "-t",
            "sandbox",
            "--json",
            "r.json",
            "--html",
            "r.html",
            "--junit",
            "j.xml",
        ]
    )
    capsys.readouterr()
    assert status == 1
    return tmp_path


def test_report_from_json_equals_report_from_run(run_outputs, capsys):
    assert run_cli(["report", "r.json", "--html", "again.html", "--junit", "again.xml"]) == 0
    direct = (run_outputs / "r.html").read_text(encoding="utf-8")
    assert (run_outputs / "again.html").read_text(encoding="utf-8") == direct
    assert (run_outputs / "again.xml").read_text() == (run_outputs / "j.xml").read_text()
    assert "expected 250, got 550 5.7.1 Unable to relay" in direct


def test_several_json_files_merge_into_one_report(run_outputs, capsys):
    first = json.loads((run_outputs / "r.json").read_text())
    # another job's run of one scenario (another start time: another run)
    later = dict(first["scenarios"][0], started_at="2099-01-02T03:04:05+00:00")
    second = dict(first, scenarios=[later])
    (run_outputs / "second.json").write_text(json.dumps(second))
    assert run_cli(["report", "r.json", "second.json", "--json", "merged.json"]) == 0
    merged = json.loads((run_outputs / "merged.json").read_text())
    assert len(merged["scenarios"]) == len(first["scenarios"]) + 1
    assert "warning" not in capsys.readouterr().err  # duplicates: tests/test_baseline.py


def test_report_refuses_a_file_that_is_not_results(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text('{"format": 1, "scenarios": [{"title": 3}]}')
    (tmp_path / "broken.json").write_text('{"format": ')
    assert run_cli(["report", "bad.json", "--html", "x.html"]) == 2
    assert run_cli(["report", "broken.json", "--html", "x.html"]) == 2
    err = capsys.readouterr().err
    assert "bad.json: " in err and "not smtpscript results" in err
    assert "broken.json:1:" in err and "not JSON" in err
    assert "Traceback" not in err
    assert not (tmp_path / "x.html").exists()

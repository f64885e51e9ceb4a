"""The top-level `remediation:` key: schema, model, results JSON, HTML and JUnit."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from scenario_helpers import REPO, run_file, write

from smtpscript.loading import load_paths
from smtpscript.report import render_html, render_junit
from smtpscript.results import RunResult, from_dict, to_dict, to_json

HOSTILE = 'Set <script>alert(1)</script> & "quotes" </p><img src=x onerror=alert(2)>'

FAILING = """\
smtpscript: 1
title: Expects the sandbox to relay (it does not)
severity: critical
steps:
  - ehlo: client.example
  - send: "MAIL FROM:<a@example.org>"
  - send: "RCPT TO:<b@example.net>"
    expect: 250
remediation: >-
  Postfix: smtpd_relay_restrictions = permit_mynetworks,
  permit_sasl_authenticated, reject_unauth_destination.
  {hostile}
"""


def _scenario(tmp_path: Path, remediation: str, name: str = "s.yaml") -> Path:
    return write(
        tmp_path,
        f"smtpscript: 1\ntitle: t\nremediation: {remediation}\nsteps:\n  - send: NOOP\n",
        name,
    )


def test_the_schema_describes_remediation_as_an_optional_string():
    schema = json.loads((REPO / "schemas" / "scenario.schema.json").read_text("utf-8"))
    spec = schema["properties"]["remediation"]
    assert spec["type"] == "string" and spec["description"]
    assert "remediation" not in schema["required"]
    assert schema["properties"]["smtpscript"]["const"] == 1  # additive: format stays 1


def test_validation_accepts_remediation_and_the_model_keeps_it(tmp_path):
    path = write(tmp_path, FAILING.format(hostile=""), "relay.yaml")
    loaded = load_paths([path])
    assert not loaded.problems, [str(p) for p in loaded.problems]
    [scenario] = loaded.scenarios
    assert scenario.remediation == (
        "Postfix: smtpd_relay_restrictions = permit_mynetworks, "
        "permit_sasl_authenticated, reject_unauth_destination."
    )


def test_without_remediation_the_model_has_an_empty_one(tmp_path):
    path = write(tmp_path, "smtpscript: 1\ntitle: t\nsteps:\n  - send: NOOP\n")
    [scenario] = load_paths([path]).scenarios
    assert scenario.remediation == ""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[a, b]", "remediation: must be a string, not a list"),
        ("42", "remediation: must be a string, not a number"),
        ("{postfix: x}", "remediation: must be a string, not a mapping"),
    ],
)
def test_a_remediation_that_is_not_a_string_is_a_positioned_error(tmp_path, value, message):
    path = _scenario(tmp_path, value)
    loaded = load_paths([path])
    assert loaded.scenarios == []
    problems = [str(p) for p in loaded.problems]
    assert len(problems) == 1
    # line 3, column 14: where the value stands
    assert problems[0].endswith(f"s.yaml:3:14: {message}"), problems


def test_remediation_goes_into_results_and_survives_json(tmp_path, sandbox_target):
    path = write(tmp_path, FAILING.format(hostile=HOSTILE), "relay.yaml")
    result = run_file(path, sandbox_target)
    assert result.verdict == "failed"
    assert result.remediation.startswith("Postfix: smtpd_relay_restrictions = ")
    assert result.remediation.endswith(HOSTILE)
    run = RunResult(targets=[result.target], scenarios=[result])
    data = json.loads(to_json(run))
    assert data["scenarios"][0]["remediation"] == result.remediation
    assert from_dict(data).scenarios[0].remediation == result.remediation
    schema = json.loads((REPO / "schemas" / "results.schema.json").read_text("utf-8"))
    assert list(Draft202012Validator(schema).iter_errors(data)) == []


def test_results_written_before_remediation_existed_still_load():
    old = to_dict(RunResult())
    old["scenarios"] = [
        {
            "scenario_id": "a.yaml",
            "file": "a.yaml",
            "line": 1,
            "title": "t",
            "description": "",
            "severity": "low",
            "tags": [],
            "references": [],
            "target": {"name": "mx", "host": "mx", "port": 25},
            "verdict": "passed",
            "reason": None,
            "started_at": "2026-01-02T03:04:05+00:00",
            "duration_ms": 1.0,
            "steps": [],
            "transcript": [],
            "protocol_violations": [],
        }
    ]
    schema = json.loads((REPO / "schemas" / "results.schema.json").read_text("utf-8"))
    assert list(Draft202012Validator(schema).iter_errors(old)) == []
    assert from_dict(old).scenarios[0].remediation == ""


@pytest.fixture
def hostile_run(tmp_path, sandbox_target) -> RunResult:
    failing = write(tmp_path, FAILING.format(hostile=HOSTILE), "relay.yaml")
    passing = write(
        tmp_path,
        "smtpscript: 1\ntitle: NOOP works\nsteps:\n  - send: NOOP\n"
        "remediation: PASSING-REMEDIATION-NOT-SHOWN\n",
        "noop.yaml",
    )
    results = [run_file(failing, sandbox_target), run_file(passing, sandbox_target)]
    assert [r.verdict for r in results] == ["failed", "passed"]
    return RunResult(targets=[results[0].target], scenarios=results)


def test_html_shows_the_remediation_with_the_finding_as_text(hostile_run):
    html = render_html(hostile_run)
    assert "How to fix" in html
    assert "smtpd_relay_restrictions = permit_mynetworks," in html
    # hostile text stays text: escaped, never markup
    assert "<script>alert(1)</script>" not in html
    assert "<img src=x" not in html
    assert "Set &lt;script&gt;alert(1)&lt;/script&gt; &amp; " in html
    assert "&lt;/p&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    # a passed check has no finding, so no advice on fixing one
    assert "PASSING-REMEDIATION-NOT-SHOWN" not in html


def test_html_without_remediation_has_no_empty_fix_box(tmp_path, sandbox_target):
    path = write(tmp_path, FAILING.format(hostile="").split("remediation:")[0], "r.yaml")
    result = run_file(path, sandbox_target)
    assert result.verdict == "failed" and result.remediation == ""
    html = render_html(RunResult(targets=[result.target], scenarios=[result]))
    assert "How to fix" not in html


def test_junit_failure_body_carries_the_remediation(hostile_run):
    xml = render_junit(hostile_run)
    root = ET.fromstring(xml)
    failure = root.find(".//failure")
    assert failure is not None and failure.text is not None
    assert failure.text.splitlines()[-1] == (
        "remediation: Postfix: smtpd_relay_restrictions = permit_mynetworks, "
        f"permit_sasl_authenticated, reject_unauth_destination. {HOSTILE}"
    )
    assert "PASSING-REMEDIATION-NOT-SHOWN" not in xml

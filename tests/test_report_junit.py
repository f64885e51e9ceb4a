"""JUnit XML: valid against the Jenkins xUnit junit-10.xsd, always well-formed, counts right."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from lxml import etree

from smtpscript.report import render_junit, write_junit
from smtpscript.report.junit import clean, seconds
from smtpscript.results import (
    ReplyRecord,
    RunResult,
    ScenarioResult,
    StepResult,
    TargetInfo,
    TranscriptEntry,
)

XSD = Path(__file__).parent / "data" / "junit-10.xsd"
# Raw bytes a hostile server could make reach a result if the engine missed them.
CONTROL = "".join(chr(c) for c in range(32) if chr(c) not in "\t\n\r") + "\x7f\x85\x9b\ud800\ufffe"
MX1 = TargetInfo("mx1", "192.0.2.10", 25)
MX2 = TargetInfo("mx2.example.org:2525", "mx2.example.org", 2525)


def _result(sid: str, target: TargetInfo, verdict: str, **kw) -> ScenarioResult:
    base = {
        "file": f"scenarios/{sid}",
        "line": 3,
        "title": f"Scenario {sid}",
        "description": "",
        "severity": "medium",
        "tags": [],
        "references": [],
        "duration_ms": 1234.5,
    }
    base.update(kw)
    return ScenarioResult(scenario_id=sid, target=target, verdict=verdict, **base)


def _failed_step(message: str) -> StepResult:
    return StepResult(
        index=4,
        path="steps[3]",
        kind="send",
        name="RCPT TO:<victim@example.net>",
        line=14,
        verdict="failed",
        expected="550 or 554",
        message=message,
        sent=["RCPT TO:<victim@example.net>"],
        replies=[ReplyRecord(250, "2.1.5", ["2.1.5 Ok"], 2.0)],
    )


def junit_run() -> RunResult:
    """Two targets; passed, failed (hostile text), error, skipped; one duplicate title."""
    hostile = f"got 250 <script>alert(1)</script> {{{{7*7}}}} ]]> \"'& {CONTROL}"
    relay = _result(
        "relay.yaml",
        MX1,
        "failed",
        severity="high",
        reason=f"expected 550 or 554; {hostile}",
        steps=[_failed_step(f"expected 550 or 554; {hostile}")],
        transcript=[
            TranscriptEntry(0.0, "S", f"220 mx {CONTROL}"),
            TranscriptEntry(0.1, "C", "RCPT TO:<victim@example.net>"),
            TranscriptEntry(0.2, "S", "250 2.1.5 Ok"),
            TranscriptEntry(0.3, "*", "connection closed"),
        ],
    )
    return RunResult(
        tool_version="0.1.0",
        started_at="2026-01-02T03:04:05+00:00",
        finished_at="2026-01-02T03:04:09+00:00",
        duration_ms=4000.0,
        targets=[MX1, MX2],
        scenarios=[
            _result("banner.yaml", MX1, "passed", title="Same title"),
            relay,
            _result("other/banner.yaml", MX1, "passed", title="Same title"),
            _result("auth.yaml", MX2, "error", reason="connection refused"),
            _result(
                "oauth.yaml",
                MX2,
                "skipped",
                reason="env.SMTP_TOKEN is not defined",
                duration_ms=0.0,
            ),
            _result(
                "relay.yaml",
                MX2,
                "passed",
                severity="high",
                steps=[
                    StepResult(
                        index=1,
                        path="steps[0]",
                        kind="connect",
                        name="connect",
                        line=2,
                        verdict="passed",
                        expected="220",
                        replies=[
                            ReplyRecord(220, None, ["mx2 ESMTP", "second"], 1.0),
                            ReplyRecord(None, None, [], 1.0),
                        ],
                    )
                ],
            ),
        ],
    )


@pytest.fixture(scope="module")
def xml_text() -> str:
    return render_junit(junit_run())


@pytest.fixture(scope="module")
def root(xml_text: str) -> ET.Element:
    return ET.fromstring(xml_text)


def test_valid_against_published_xsd(xml_text: str) -> None:
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    document = etree.fromstring(xml_text.encode("utf-8"))
    assert schema.validate(document), schema.error_log


def test_hostile_control_characters_keep_it_well_formed(xml_text: str) -> None:
    etree.fromstring(xml_text.encode("utf-8"))  # strict parser raises on any illegal char
    for char in CONTROL:
        assert char not in xml_text
    assert "<script>" not in xml_text  # escaped as &lt;script&gt;


def test_hostile_text_round_trips_as_text(root: ET.Element) -> None:
    failure = root.find("./testsuite[@name='mx1']/testcase/failure")
    assert failure is not None
    assert "<script>alert(1)</script> {{7*7}} ]]> \"'&" in failure.get("message", "")
    assert "\ufffd" in failure.get("message", "")


def test_top_level_counts(root: ET.Element) -> None:
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("6", "1", "1")
    assert root.get("time") == "4.000"


def test_one_suite_per_target_with_counts(root: ET.Element) -> None:
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["mx1", "mx2.example.org:2525"]
    mx1, mx2 = suites["mx1"], suites["mx2.example.org:2525"]
    assert [mx1.get(k) for k in ("tests", "failures", "errors", "skipped")] == ["3", "1", "0", "0"]
    assert [mx2.get(k) for k in ("tests", "failures", "errors", "skipped")] == ["3", "0", "1", "1"]
    assert mx1.get("time") == "3.704" and mx1.get("timestamp") == "2026-01-02T03:04:05+00:00"
    props = {p.get("name"): p.get("value") for p in mx2.iter("property")}
    assert props == {"host": "mx2.example.org", "port": "2525"}


def test_testcases_and_verdict_elements(root: ET.Element) -> None:
    cases = root.findall(".//testcase")
    assert len(cases) == 6
    assert {c.get("classname") for c in cases} == {"mx1", "mx2.example.org:2525"}
    failure = root.find(".//testcase/failure")
    assert failure is not None and failure.get("type") == "high"
    # words first, the technical expectation after it (the same story as the HTML)
    assert failure.get("message", "").startswith(
        "The server accepted RCPT TO:<victim@example.net> where a refusal was expected. "
        "[step 4: expected 550 or 554; got 250 <script>"
    )
    body = (failure.text or "").splitlines()
    assert (
        body[0] == "The server accepted RCPT TO:<victim@example.net> where a refusal was expected."
    )
    assert body[1].startswith("step 4: expected 550 or 554; got 250")
    assert "scenarios/relay.yaml:14 steps[3], expected 550 or 554" in (failure.text or "")
    error = root.find(".//testcase/error")
    assert error is not None and error.get("message") == "Could not be judged: connection refused."
    skipped = root.find(".//testcase/skipped")
    assert skipped is not None and skipped.get("message") == "env.SMTP_TOKEN is not defined"
    assert (
        sum(
            len(c.findall("failure")) + len(c.findall("error")) + len(c.findall("skipped"))
            for c in cases
        )
        == 3
    )


def test_names_unique_per_target(root: ET.Element) -> None:
    for suite in root.findall("testsuite"):
        keys = [(c.get("classname"), c.get("name")) for c in suite.findall("testcase")]
        assert len(keys) == len(set(keys))
    names = [c.get("name") for c in root.findall("./testsuite[@name='mx1']/testcase")]
    assert "Same title [banner.yaml]" in names and "Same title [other/banner.yaml]" in names


def test_system_out_is_the_conversation(root: ET.Element) -> None:
    relay = root.find("./testsuite[@name='mx1']/testcase/failure/..")
    assert relay is not None
    out = relay.findtext("system-out") or ""
    assert "C: RCPT TO:<victim@example.net>\nS: 250 2.1.5 Ok\n*: connection closed" in out
    from_steps = root.find("./testsuite[@name='mx2.example.org:2525']/testcase[last()]")
    assert from_steps is not None
    assert "S: 220 mx2 ESMTP\nS: 220 second\n*: connection closed" in (
        from_steps.findtext("system-out") or ""
    )


def test_empty_run_is_valid() -> None:
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    assert schema.validate(etree.fromstring(render_junit(RunResult()).encode()))


def test_write_junit(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit(junit_run(), path)
    assert path.read_bytes().startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    etree.parse(str(path))


@pytest.mark.parametrize(
    ("ms", "text"), [(0, "0.000"), (1234.5, "1.234"), (-1, "0.000"), (3_600_000, "3600.000")]
)
def test_seconds(ms: float, text: str) -> None:
    assert seconds(ms) == text


def test_clean_keeps_what_xml_allows() -> None:
    keep = "tab\tlf\ncr\r é 😀 \ud7ff\ue000"
    assert clean(keep) == keep
    assert clean("a\x00b\x1bcd\uffff\x9b") == "a\ufffdb\ufffdcd\ufffd\ufffd"
    assert clean("caf\udce9 \ud800") == "caf\\udce9 \\ud800"  # as every view shows them

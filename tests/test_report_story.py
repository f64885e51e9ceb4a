"""One clear story per finding: the reason in words first, the technical expectation
beneath, the same words in every view (HTML, console recap, JUnit, Markdown); why it
matters and how to fix it; the evidence a click away; one step numbering; severity
muted on checks that did not fail."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from scenario_helpers import REPO, write

from smtpscript.api import run_paths
from smtpscript.console import ConsoleView
from smtpscript.report import render_html, render_junit, render_markdown, write_html
from smtpscript.report.markdown import text as md_text
from smtpscript.results import (
    ReplyRecord,
    RunResult,
    ScenarioResult,
    StepResult,
    TargetInfo,
    TlsFacts,
)
from smtpscript.wording import story

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
MX = TargetInfo("mx1", "192.0.2.1", 25)


def _step(kind: str, sent: list[str], replies: list[ReplyRecord], **kw) -> StepResult:
    """Step 4 (``steps[3]``), failed unless said otherwise."""
    fields = {"index": 4, "path": "steps[3]", "name": "", "line": 9, "verdict": "failed"}
    fields |= {"expected": ""} | kw
    return StepResult(kind=kind, sent=sent, replies=replies, **fields)


def _reply(code: int | None, *lines: str) -> ReplyRecord:
    return ReplyRecord(code=code, status=None, lines=list(lines), elapsed_ms=1.0)


def _result(step: StepResult, verdict: str = "failed", **kw) -> ScenarioResult:
    return ScenarioResult(
        scenario_id="s.yaml",
        file="s.yaml",
        line=1,
        title="t",
        description="",
        severity="high",
        tags=[],
        references=[],
        target=MX,
        verdict=verdict,
        steps=[step],
        **kw,
    )


# --- the words, from the step data ------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "words", "beneath"),
    [
        (
            _step(
                "send",
                ["RCPT TO:<victim@example.net>"],
                [_reply(250, "2.1.5 Ok")],
                expected="550 or 554, status 5.7.x",
                message="expected 550 or 554, status 5.7.x, got 250 2.1.5 Ok",
            ),
            "The server accepted RCPT TO:<victim@example.net> where a refusal was expected.",
            "step 4: expected 550 or 554, status 5.7.x, got 250 2.1.5 Ok",
        ),
        (
            _step(
                "send",
                ["RCPT TO:<alice@example.org>"],
                [_reply(550, "5.1.1 unknown")],
                expected="2xx",
                message="expected 2xx, got 550 5.1.1 unknown",
                name="a local mailbox is accepted",
            ),
            "The server refused RCPT TO:<alice@example.org> where it should have accepted it.",
            "step 4 (a local mailbox is accepted): expected 2xx, got 550 5.1.1 unknown",
        ),
        (
            _step(
                "send",
                ["MAIL FROM:<a@example.org>"],
                [_reply(451, "4.3.0 try later")],
                expected="250",
                message="expected 250, got 451 4.3.0 try later",
            ),
            "The server temporarily refused MAIL FROM:<a@example.org> where it should have "
            "accepted it.",
            "step 4: expected 250, got 451 4.3.0 try later",
        ),
        (
            _step(
                "ehlo",
                ["EHLO audit.example"],
                [_reply(None)],
                expected="250",
                message="expected 250, got server closed the connection",
            ),
            "The server closed the connection instead of answering EHLO audit.example.",
            "step 4: expected 250, got server closed the connection",
        ),
        (
            _step(
                "ehlo",
                ["EHLO audit.example"],
                [_reply(250, "mx", "PIPELINING")],
                expected="250, matching /STARTTLS/",
                message="expected a reply matching /STARTTLS/, got 250 mx (+1 more lines)",
                name="EHLO advertises STARTTLS",
            ),
            "The server's reply to EHLO audit.example fails the check: EHLO advertises STARTTLS.",
            "step 4: expected a reply matching /STARTTLS/, got 250 mx (+1 more lines)",
        ),
        (
            _step(
                "starttls",
                ["STARTTLS"],
                [_reply(220, "ready")],
                expected="220",
                message="expected the certificate to verify, got not verified (self-signed)",
                tls=TlsFacts(version="TLSv1.3", verify_error="self-signed certificate"),
            ),
            "TLS: its certificate did not verify (self-signed certificate).",
            "step 4: expected the certificate to verify, got not verified (self-signed)",
        ),
    ],
)
def test_words_come_from_the_step_data(step, words, beneath):
    told = story(_result(step))
    assert told.words == words
    assert told.beneath == beneath
    assert told.line() == f"{words} [{beneath}]"


def test_an_error_says_it_could_not_be_judged_and_where():
    step = _step(
        "send",
        ["DATA"],
        [],
        verdict="error",
        expected="354",
        message="no complete reply within 10 s",
    )
    told = story(_result(step, "error"))
    assert told.words == (
        "The server did not answer DATA in time (no complete reply within 10 s); the check "
        "could not be judged."
    )
    assert told.beneath == "step 4"


def test_passed_has_no_story_and_skipped_says_why():
    step = _step("send", ["NOOP"], [_reply(250, "ok")], verdict="passed", expected="250")
    assert story(_result(step, "passed")).words == ""
    skipped = _result(step, "skipped", reason="not configured: pass --var x=yes")
    assert story(skipped).words == "Skipped: not configured: pass --var x=yes."


def test_a_scenario_finding_sentence_comes_first():
    step = _step(
        "send",
        ["RCPT TO:<victim@example.net>"],
        [_reply(250, "ok")],
        expected="5xx",
        message="expected 5xx, got 250 ok",
    )
    result = _result(step)
    result.finding = "the server relays mail for anyone"  # type: ignore[attr-defined]
    told = story(result)
    assert told.words == "The server relays mail for anyone."
    assert told.beneath == "step 4: expected 5xx, got 250 ok"


# --- a real run: the same story in every view ---------------------------------------------

FAILING = """\
smtpscript: 1
title: Accepts mail for an outside domain from an authenticated-looking client
description: WHY-IT-MATTERS the sandbox must refuse outsiders, this check expects otherwise.
severity: critical
steps:
  - ehlo: client.example
  - send: "MAIL FROM:<a@example.org>"
  - send: "RCPT TO:<b@example.net>"
    expect: 250
remediation: HOW-TO-FIX nothing, the expectation is wrong.
"""
NO_FIX = FAILING.split("remediation:")[0].replace("title: Accepts", "title: Also accepts")


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> RunResult:
    folder = tmp_path_factory.mktemp("story")
    files = [
        write(folder, FAILING, "failing.yaml"),
        write(folder, NO_FIX, "nofix.yaml"),
        REPO / "scenarios" / "relay" / "no-open-relay.yaml",  # critical, passes
    ]
    run = run_paths(files, targets=["sandbox"], environ={}).run
    assert sorted(r.verdict for r in run.scenarios) == ["failed", "failed", "passed"]
    return run


WORDS = "The server refused RCPT TO:<b@example.net> where it should have accepted it."


def test_every_view_tells_the_same_story(real):
    told = story(next(r for r in real.scenarios if r.remediation))
    assert told.words == WORDS
    assert told.beneath == "step 4: expected 250, got 550 5.7.1 Unable to relay"
    html = render_html(real)
    assert html.count("The server refused RCPT TO:&lt;b@example.net&gt; where it should") == 4
    assert '<p class="beneath">step 4: expected 250, got 550 5.7.1 Unable to relay</p>' in html
    junit = ET.fromstring(render_junit(real))
    messages = [f.get("message") for f in junit.iter("failure")]
    assert messages == [told.line(), told.line()]
    out = io.StringIO()
    ConsoleView(out, colour=False, progress=False).summary(real)
    recap = out.getvalue().split("failures and errors (2):\n")[1].splitlines()
    assert recap[1:3] == [f"      {WORDS}", f"      {told.beneath}"]
    assert md_text(WORDS) in render_markdown(real)


def test_the_finding_card_says_why_and_how_to_fix_once(real):
    html = render_html(real)
    cards = re.findall(r'<article class="result finding v-failed".*?</article>', html, re.S)
    card = next(c for c in cards if "HOW-TO-FIX" in c)
    assert card.count("WHY-IT-MATTERS") == 1 and card.count("HOW-TO-FIX") == 1
    assert card.count(">How to fix<") == 1
    assert card.count('class="words"') == 1  # the reason once
    without = next(c for c in cards if "Also accepts" in c)
    assert "How to fix" not in without  # no advice given: no empty box
    assert "HOW-TO-FIX" not in html.split('id="checks"')[1]  # not on passed checks


def test_one_step_numbering_with_the_yaml_path_as_a_tooltip(real):
    html = render_html(real)
    heads = re.findall(r'<div class="step-head">(.*?)</div>', html)
    assert heads
    for head in heads:
        visible = re.sub(r'title="[^"]*"', "", head)
        assert "steps[" not in visible, head
        assert re.search(r'<span class="n">Step \d+</span>', head)
    assert 'title="steps[2] in ' in html
    # the scenarios above have no connect step: the implicit one is not given a line
    assert re.search(
        r'<span class="src" title="the scenario has no connect step[^"]*">implicit', html
    )


# --- in a browser: severity muted on passed checks, evidence one click away ------------------


@pytest.mark.chromium
def test_no_severity_on_a_passed_check_looks_like_a_failure(real, tmp_path, browser):
    path = tmp_path / "story.html"
    write_html(real, path)
    browser.open(path.as_uri(), width=1280, height=1000)
    passed = browser.evaluate(
        "[...document.querySelectorAll('.result.v-passed .sev, .m-ok .sev')]"
        ".map(e => [e.textContent, getComputedStyle(e).backgroundColor])"
    )
    assert passed and {sev for sev, _ in passed} == {"critical"}
    assert {bg for _, bg in passed} == {"rgba(0, 0, 0, 0)"}  # an outline, no fill
    failed = browser.evaluate(
        "[...document.querySelectorAll('.finding .sev')].map(e => getComputedStyle(e)"
        ".backgroundColor)"
    )
    assert len(failed) == 2 and "rgba(0, 0, 0, 0)" not in failed
    assert browser.log.errors() == []


@pytest.mark.chromium
def test_the_evidence_is_one_click_away(real, tmp_path, browser):
    path = tmp_path / "story.html"
    write_html(real, path)
    browser.open(path.as_uri(), width=1280, height=1000)
    card = "document.querySelector('.finding')"
    assert browser.evaluate(f"{card}.querySelector('.words').checkVisibility()") is True
    assert browser.evaluate(f"{card}.querySelector('.evidence').open") is False
    assert browser.evaluate(f"{card}.querySelector('.evidence pre').checkVisibility()") is False
    browser.evaluate(f"{card}.querySelector('.evidence summary').click()")
    shown = browser.evaluate(f"{card}.querySelector('.evidence pre').innerText")
    assert "C: RCPT TO:<b@example.net>\nS: 550 5.7.1 Unable to relay" in shown
    browser.evaluate(f"{card}.scrollIntoView()")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.screenshot(ARTIFACTS / "report-story-evidence.png", full_page=False)


def test_the_finding_key_goes_from_the_scenario_to_every_view():
    """relay/no-open-relay.yaml says in its own words what a failure means."""
    from smtpscript.loading import load_paths
    from smtpscript.sandbox import Sandbox, SandboxConfig

    path = REPO / "scenarios" / "relay" / "no-open-relay.yaml"
    [scenario] = load_paths([path]).scenarios
    assert scenario.finding.startswith("The server is an open relay: it took a message")
    with Sandbox(SandboxConfig(open_relay=True)) as server:
        run = run_paths([path], targets=[f"{server.host}:{server.port}"], environ={}).run
    [result] = run.scenarios
    assert result.verdict == "failed" and result.finding == scenario.finding
    told = story(result)
    assert told.words == scenario.finding
    assert told.beneath.startswith("step 5 (RCPT was accepted, so the message must be refused")
    assert scenario.finding in render_html(run).replace("\n", " ")
    [failure] = ET.fromstring(render_junit(run)).iter("failure")
    assert failure.get("message", "").startswith(scenario.finding + " [step 5 (")

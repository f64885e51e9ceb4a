"""Print and small screens: a real report printed by headless Chromium, pages counted.

30 scenario runs against the sandbox, one of them a finding: printed to A4 with
``chromium --headless --print-to-pdf`` it takes at most 4 pages (passing checks one
line each, the finding whole with its evidence). At 400 px the page does not overflow
sideways; a table wider than the screen scrolls inside its own box.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from scenario_helpers import SCENARIOS, write

from smtpscript.api import run_paths
from smtpscript.report import write_html
from smtpscript.results import RunResult

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
MAX_PAGES = 4

FAILING = """\
smtpscript: 1
title: Expects the sandbox to relay for an outsider (it rightly refuses)
description: A deliberately wrong expectation, so that the report has one finding.
severity: critical
steps:
  - ehlo: client.example
  - send: "MAIL FROM:<a@example.org>"
  - send: "RCPT TO:<b@example.net>"
    expect: 250
remediation: Nothing to fix on the server; this check expects the wrong thing.
"""


@pytest.fixture(scope="module")
def thirty(tmp_path_factory) -> RunResult:
    """29 checks of the audit library that pass (or skip) and one that fails."""
    folder = tmp_path_factory.mktemp("print")
    failing = write(folder, FAILING, "failing.yaml")
    outcome = run_paths([SCENARIOS, failing], targets=["sandbox"], environ={})
    assert not outcome.problems, outcome.problems
    run = outcome.run
    bad = [r for r in run.scenarios if r.verdict == "failed"]
    good = [r for r in run.scenarios if r.verdict in ("passed", "skipped")]
    assert len(bad) == 1 and len(good) >= 29
    run.scenarios = good[:29] + bad
    return run


def _pages(pdf: Path) -> int:
    pdfinfo = shutil.which("pdfinfo")
    if pdfinfo:
        info = subprocess.run([pdfinfo, str(pdf)], capture_output=True, text=True, check=True)
        return int(re.search(r"^Pages:\s+(\d+)", info.stdout, re.M).group(1))  # type: ignore[union-attr]
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", pdf.read_bytes()))


@pytest.mark.chromium
def test_thirty_runs_with_one_finding_print_to_at_most_four_a4_pages(thirty, tmp_path, browser):
    from chromium import find_chromium

    html = tmp_path / "report.html"
    write_html(thirty, html)
    pdf = ARTIFACTS / "report-print-30-runs.pdf"
    ARTIFACTS.mkdir(exist_ok=True)
    pdf.unlink(missing_ok=True)
    subprocess.run(
        [
            find_chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--print-to-pdf={pdf}",
            html.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pages = _pages(pdf)
    assert 1 <= pages <= MAX_PAGES, f"{pages} pages (see {pdf})"
    # and on paper, as the browser lays it out: the finding whole, the passes one line
    browser.open(html.as_uri())
    browser.emulate_media([], media="print")
    visible = "sel => [...document.querySelectorAll(sel)].map(e => e.checkVisibility())"
    assert browser.evaluate(f"({visible})('.finding .words')") == [True]
    assert browser.evaluate(f"({visible})('.finding .evidence pre.conv')") == [True]
    assert browser.evaluate(f"({visible})('.finding .remedy')") == [True]
    bodies = browser.evaluate(f"({visible})('.quiet .result .r-body')")
    assert len(bodies) == 29 and not any(bodies)


@pytest.mark.chromium
def test_at_400_px_nothing_overflows_the_page_and_tables_scroll_in_their_box(
    thirty, tmp_path, browser
):
    html = tmp_path / "report.html"
    write_html(thirty, html)
    browser.open(html.as_uri(), width=400, height=900)
    browser.settle(0.2)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.screenshot(ARTIFACTS / "report-print-test-400px.png", full_page=False)
    assert browser.evaluate("document.documentElement.scrollWidth") <= 400
    boxes = browser.evaluate(
        "[...document.querySelectorAll('.scroll')].map(e => [e.scrollWidth, e.clientWidth,"
        " getComputedStyle(e).overflowX])"
    )
    assert boxes
    for scroll_width, client_width, overflow in boxes:
        assert scroll_width <= client_width or overflow == "auto"
    # the matrix: scenario and verdicts side by side, the severity under the title
    assert (
        browser.evaluate("getComputedStyle(document.querySelector('.grid td.sev-col')).display")
        == "none"
    )
    grid = browser.evaluate(
        "(() => { const e = document.querySelector('.grid').parentElement;"
        " return e.scrollWidth <= e.clientWidth; })()"
    )
    assert grid is True  # one target: it fits at 400 px without scrolling


def test_no_time_chart_when_every_run_is_quick(thirty):
    from smtpscript.report import render_html

    assert max(r.duration_ms for r in thirty.scenarios) < 1000
    assert "<svg" not in render_html(thirty)
